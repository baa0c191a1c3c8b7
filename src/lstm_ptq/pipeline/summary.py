"""Stage ``summary``: the few headline numbers a researcher compares first, as the project's only DVC metric.

Per dataset and model: the float accuracy (Table 1) and the accuracy at 4 and 3 bits under class-conditional
and class-unconditional calibration (sections 5.3, 5.4), so that ``dvc exp show`` stays a readable table.
Every per-cell result stays in its own JSON file under metrics/ (``dvc metrics show <file>`` reads it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifacts import read_json, write_json
from ..paths import ProjectPaths
from ..settings import GridSettings

HEADLINE_BIT_WIDTHS = (4, 3)
HEADLINE_SCHEMES = ("class_conditional", "class_unconditional")


def summary_stage(root: Path, grid: GridSettings) -> dict[str, Any]:
    paths = ProjectPaths(root)
    bit_widths = [b for b in HEADLINE_BIT_WIDTHS if b in grid.bit_widths]
    schemes = [s for s in HEADLINE_SCHEMES if s in grid.calibration_schemes]
    summary: dict[str, Any] = {}
    for dataset in grid.datasets:
        for model_type in grid.model_types:
            cell: dict[str, Any] = {"float": round(read_json(paths.evaluate_metrics(dataset, model_type))["accuracy"], 4)}
            for bit_width in bit_widths:
                cell[f"w{bit_width}"] = {
                    scheme: round(read_json(paths.calibrate_metrics(dataset, model_type, bit_width, scheme))["accuracy"], 4) for scheme in schemes
                }
            summary.setdefault(dataset, {})[model_type] = cell
    write_json(paths.summary(), summary)
    return summary
