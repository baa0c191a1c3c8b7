"""Stage ``noisy_test@<dataset>-<noise_model>``: the test split corrupted at every noise level (section 4.3.3).

Built once per dataset and noise model and reused by every noise evaluation.
"""

import argparse
from pathlib import Path

from lstm_ptq.artifacts import write_json
from lstm_ptq.cli import run_stage
from lstm_ptq.config import TokenizeParams, check_dataset, load_params
from lstm_ptq.noise import NoiseParams, build_noisy_test_sets, noise_model
from lstm_ptq.paths import ProjectPaths


def main(args: argparse.Namespace) -> None:
    check_dataset(args.dataset)
    noise_model(args.noise_model, "noise_model")
    params = load_params(args.params)
    noise, tokenize = NoiseParams.from_params(params), TokenizeParams.from_params(params)
    paths = ProjectPaths(Path(args.root))
    stats = build_noisy_test_sets(
        args.dataset,
        paths.raw(args.dataset),
        paths.tokenized(args.dataset),
        paths.noisy(args.dataset, args.noise_model),
        args.noise_model,
        noise.levels,
        noise.seed,
        tokenize.lowercase,
        tokenize.max_length,
    )
    write_json(paths.noisy_stats(args.dataset, args.noise_model), stats)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("noise_model")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    run_stage(main, parser)
