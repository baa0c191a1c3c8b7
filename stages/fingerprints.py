"""Stage ``fingerprints``: fingerprints/<script>.sha256 for every stage script, the hash of the code that
decides its outputs (the script and the package modules it imports). Every other stage depends on its
own fingerprint, so a code change reruns exactly the stages whose code changed."""

import argparse
from collections.abc import Mapping
from typing import Any

from lstm_ptq import warm

warm.delegate(__file__)  # with LSTM_PTQ_WARM=1 a warm runner runs this stage, without the imports' cost (lstm_ptq/warm.py)

from lstm_ptq.artifacts import atomic_write_text
from lstm_ptq.cli import run_stage, stage_parser
from lstm_ptq.fingerprints import fingerprint, fingerprint_path

parser = stage_parser(__doc__)


def read_settings(args: argparse.Namespace, params: Mapping[str, Any]) -> Any:
    return None


def main(args: argparse.Namespace, settings: Any) -> None:
    for script in sorted((args.root / "stages").glob("*.py")):
        if script.name == "fingerprints.py":  # this stage depends on the code itself
            continue
        relative = script.relative_to(args.root).as_posix()
        atomic_write_text(fingerprint_path(args.root, relative), fingerprint(args.root, relative) + "\n")


if __name__ == "__main__":
    run_stage(parser, read_settings, main)
