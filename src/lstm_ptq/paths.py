"""Where every stage reads and writes, relative to the project root (one place, used by stages and tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProjectPaths:
    root: Path

    def raw(self, dataset: str) -> Path:
        return self.root / "data" / "raw" / dataset

    def tokenized(self, dataset: str) -> Path:
        return self.root / "data" / "tokenized" / dataset

    def float_model_dir(self, dataset: str, model_type: str) -> Path:
        return self.root / "models" / "float" / dataset / model_type

    def train_metrics(self, dataset: str, model_type: str) -> Path:
        return self.root / "metrics" / "train" / dataset / f"{model_type}.json"

    def train_curve(self, dataset: str, model_type: str) -> Path:
        return self.root / "plots" / "train" / dataset / f"{model_type}.csv"

    def resume_state(self, dataset: str, model_type: str) -> Path:
        return self.root / ".cache" / "train" / f"{dataset}-{model_type}.pt"

    def evaluate_metrics(self, dataset: str, model_type: str) -> Path:
        return self.root / "metrics" / "evaluate" / dataset / f"{model_type}.json"

    def confusion(self, dataset: str, model_type: str) -> Path:
        return self.root / "plots" / "confusion" / dataset / f"{model_type}.csv"

    def noisy(self, dataset: str, noise_model: str) -> Path:
        return self.root / "data" / "noisy" / dataset / noise_model

    def noisy_stats(self, dataset: str, noise_model: str) -> Path:
        return self.root / "metrics" / "noisy_test" / dataset / f"{noise_model}.json"

    def float_noise_metrics(self, dataset: str, model_type: str, noise_model: str) -> Path:
        return self.root / "metrics" / "noise" / "float" / dataset / model_type / f"{noise_model}.json"

    def float_noise_curve(self, dataset: str, model_type: str, noise_model: str) -> Path:
        return self.root / "plots" / "noise" / "float" / dataset / model_type / f"{noise_model}.csv"
