"""Errors raised for bad input: each message names the file, row or parameter and what was expected."""


class PipelineError(Exception):
    """Base class for errors the pipeline reports to the user without a traceback."""


class ParamError(PipelineError, ValueError):
    """A value in params.yaml (or a stage argument) is missing or out of range."""


class DataError(PipelineError, ValueError):
    """An input file is missing, malformed, or does not match what the stage expects."""


class DownloadError(PipelineError, RuntimeError):
    """A remote source could not be fetched, verified or extracted."""
