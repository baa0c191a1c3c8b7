"""Stage bodies of the DVC pipeline, one module per part of it; ``stages/*.py`` parse argv and call them.

- :mod:`.data`: ``download``, ``tokenize``, ``noisy_test``, ``noise_train_data``;
- :mod:`.float`: ``train``, ``evaluate``, ``table1``, ``noise_float``;
- :mod:`.calibration_sets`: ``calibration_sets``;
- :mod:`.ptq`: ``quantize``, ``activation_ranges``, ``calibrate``, ``ptq_report``;
- :mod:`.noise`: ``noise_quantized``, ``noise_report``, ``figure16``.

A stage imports only the module of its own part, so one that needs no Brevitas (or no torch) loads none.

Library modules (training, evaluation, noise, calibration, quantization...) hold the reusable logic;
every output path comes from :class:`lstm_ptq.paths.ProjectPaths`.
"""

from __future__ import annotations

import sys


def log(stage: str, message: str) -> None:
    """One line on stderr (wall times and the like: never written into a tracked output)."""
    print(f"{stage}: {message}", file=sys.stderr, flush=True)
