"""Stage ``ptq_report``: metrics/ptq_grid.csv, metrics/ptq_grid_seeds.csv and Figures 6, 7, 8, 11 under plots/ptq/."""

import argparse
from collections.abc import Mapping
from typing import Any

from lstm_ptq import warm

warm.delegate(__file__)  # with LSTM_PTQ_WARM=1 a warm runner runs this stage, without the imports' cost (lstm_ptq/warm.py)

from lstm_ptq.cli import run_stage, stage_parser
from lstm_ptq.pipeline.reports import ptq_report_stage
from lstm_ptq.pipeline.trees import is_seed_tree, tree_run
from lstm_ptq.settings import GridSettings, get_seed

parser = stage_parser(__doc__)


def read_settings(args: argparse.Namespace, params: Mapping[str, Any]) -> Any:
    seed_trees = [tree_run(args.root, params, name) for name in params.get("trees") or {} if is_seed_tree(params, name)]
    return GridSettings.from_params(params), get_seed(params), seed_trees


def main(args: argparse.Namespace, settings: Any) -> None:
    grid, seed, seed_trees = settings
    ptq_report_stage(args.root, grid, seed, seed_trees)


if __name__ == "__main__":
    run_stage(parser, read_settings, main)
