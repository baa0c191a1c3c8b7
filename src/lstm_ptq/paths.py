"""Where every stage reads and writes, relative to the project root: the ONE place output paths are
built (stages, reports, plots, benchmarks and tests all ask this object)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The noise-trained variant (paper section 7, Figure 16) is a project tree of its own, laid out like
# the main one, so the same stage scripts run on it with ``--root variants/noise_trained``.
VARIANT_ROOT = Path("variants") / "noise_trained"


@dataclass(frozen=True)
class ProjectPaths:
    """Paths of one project tree. A tree that reruns only part of the study (settings.TreeSettings) reads
    the rest from another tree: the data (raw, tokenized, noisy test sets) from ``data_root`` and the float
    models with their evaluation and noise curves from ``float_root`` (both default to ``root``)."""

    root: Path
    data_root: Path | None = None
    float_root: Path | None = None

    @property
    def _data(self) -> Path:
        return self.root if self.data_root is None else self.data_root

    @property
    def _float(self) -> Path:
        return self.root if self.float_root is None else self.float_root

    # ---------------------------------------------------------------------------------------------
    # Data: download, tokenize, noisy test sets, calibration sets
    # ---------------------------------------------------------------------------------------------

    def raw(self, dataset: str) -> Path:
        return self._data / "data" / "raw" / dataset

    def tokenized(self, dataset: str) -> Path:
        return self._data / "data" / "tokenized" / dataset

    def tokenize_metrics(self, dataset: str) -> Path:
        return self._data / "metrics" / "tokenize" / f"{dataset}.json"

    def noisy(self, dataset: str, noise_model: str) -> Path:
        return self._data / "data" / "noisy" / dataset / noise_model

    def noisy_stats(self, dataset: str, noise_model: str) -> Path:
        return self._data / "metrics" / "noisy_test" / dataset / f"{noise_model}.json"

    def calibration_sets(self, dataset: str, model_type: str) -> Path:
        return self.root / "data" / "calibration" / dataset / model_type

    def calibration_rows(self, dataset: str, model_type: str) -> Path:
        return self.calibration_sets(dataset, model_type) / "rows.npz"

    def calibration_summary(self, dataset: str, model_type: str) -> Path:
        return self.calibration_sets(dataset, model_type) / "summary.json"

    # ---------------------------------------------------------------------------------------------
    # Float models
    # ---------------------------------------------------------------------------------------------

    def float_model_dir(self, dataset: str, model_type: str) -> Path:
        return self._float / "models" / "float" / dataset / model_type

    def train_metrics(self, dataset: str, model_type: str) -> Path:
        return self._float / "metrics" / "train" / dataset / f"{model_type}.json"

    def train_curve(self, dataset: str, model_type: str) -> Path:
        return self._float / "plots" / "train" / dataset / f"{model_type}.csv"

    def resume_state(self, dataset: str, model_type: str) -> Path:
        return self._float / ".cache" / "train" / f"{dataset}-{model_type}.pt"

    def evaluate_metrics(self, dataset: str, model_type: str) -> Path:
        return self._float / "metrics" / "evaluate" / dataset / f"{model_type}.json"

    def float_test_scores(self, dataset: str, model_type: str) -> Path:
        """The float model's per-document test scores (evaluation.save_test_scores)."""
        return self._float / "models" / "test_scores" / dataset / f"{model_type}.npz"

    def confusion(self, dataset: str, model_type: str) -> Path:
        return self._float / "plots" / "confusion" / dataset / f"{model_type}.csv"

    def table1_csv(self) -> Path:
        return self.root / "metrics" / "table1.csv"

    def table1_md(self) -> Path:
        return self.root / "metrics" / "table1.md"

    def float_noise_metrics(self, dataset: str, model_type: str, noise_model: str) -> Path:
        return self._float / "metrics" / "noise" / "float" / dataset / model_type / f"{noise_model}.json"

    def float_noise_predictions(self, dataset: str, model_type: str, noise_model: str) -> Path:
        """The float model's predictions at every noise level (robustness.save_noise_predictions)."""
        return self._float / "models" / "noise_predictions" / "float" / dataset / model_type / f"{noise_model}.npz"

    def float_noise_curve(self, dataset: str, model_type: str, noise_model: str) -> Path:
        return self._float / "plots" / "noise" / "float" / dataset / model_type / f"{noise_model}.csv"

    # ---------------------------------------------------------------------------------------------
    # PTQ grid
    # ---------------------------------------------------------------------------------------------

    def quantized(self, dataset: str, model_type: str, bit_width: int) -> Path:
        """The quantized model before calibration (output of ``quantize``)."""
        return self.root / "models" / "quantized" / dataset / model_type / f"w{bit_width}" / "model.pt"

    def activation_ranges(self, dataset: str, model_type: str, scheme: str) -> Path:
        """Calibrated activation ranges of one scheme, shared by every bit width (output of ``activation_ranges``)."""
        return self.root / "models" / "activation_ranges" / dataset / model_type / scheme

    def activation_ranges_file(self, dataset: str, model_type: str, scheme: str) -> Path:
        return self.activation_ranges(dataset, model_type, scheme) / "ranges.npz"

    def activation_ranges_summary(self, dataset: str, model_type: str, scheme: str) -> Path:
        return self.activation_ranges(dataset, model_type, scheme) / "summary.json"

    def calibrated(self, dataset: str, model_type: str, bit_width: int, scheme: str) -> Path:
        return self.root / "models" / "calibrated" / dataset / model_type / f"w{bit_width}" / scheme / "model.pt"

    def calibrated_test_scores(self, dataset: str, model_type: str, bit_width: int, scheme: str) -> Path:
        """The calibrated model's per-document test scores, beside it (evaluation.save_test_scores)."""
        return self.calibrated(dataset, model_type, bit_width, scheme).with_name("test_scores.npz")

    def calibrate_metrics(self, dataset: str, model_type: str, bit_width: int, scheme: str) -> Path:
        return self.root / "metrics" / "calibrate" / dataset / model_type / f"w{bit_width}" / f"{scheme}.json"

    def ptq_grid(self) -> Path:
        return self.root / "metrics" / "ptq_grid.csv"

    def ptq_plots(self) -> Path:
        """Figures 6, 7, 8 and 11 (PNG and CSV series)."""
        return self.root / "plots" / "ptq"

    # ---------------------------------------------------------------------------------------------
    # Noise on quantized models, the noise report and Figure 16
    # ---------------------------------------------------------------------------------------------

    def quantized_noise_metrics(self, dataset: str, model_type: str, bit_width: int, scheme: str, noise_model: str) -> Path:
        return self.root / "metrics" / "noise" / "quantized" / dataset / model_type / f"w{bit_width}" / scheme / f"{noise_model}.json"

    def quantized_noise_predictions(self, dataset: str, model_type: str, bit_width: int, scheme: str, noise_model: str) -> Path:
        """A calibrated cell's predictions at every noise level on its test documents."""
        return self.root / "models" / "noise_predictions" / "quantized" / dataset / model_type / f"w{bit_width}" / scheme / f"{noise_model}.npz"

    def noise_grid(self) -> Path:
        return self.root / "metrics" / "noise_grid.csv"

    def noise_plots(self) -> Path:
        """Figures 9 and 10 (PNG and CSV series)."""
        return self.root / "plots" / "noise" / "figures"

    def summary(self) -> Path:
        """The headline numbers, the project's only DVC metric (stage ``summary``)."""
        return self.root / "metrics" / "summary.json"

    def figure16_plots(self) -> Path:
        return self.root / "plots" / "noise" / "figure16"

    def figure16_metrics(self) -> Path:
        return self.root / "metrics" / "figure16.json"

    # ---------------------------------------------------------------------------------------------
    # Section 6: KS analysis, token-loss densities, per-class effects
    # ---------------------------------------------------------------------------------------------

    def analysis(self, dataset: str, model_type: str) -> Path:
        """The analysis tables of one model (stages ``ks_analysis``, ``token_losses``, ``per_class``)."""
        return self.root / "metrics" / "analysis" / dataset / model_type

    def ks_table(self, dataset: str, model_type: str) -> Path:
        """Figures 12-14: every KS comparison with its p-value and sample sizes."""
        return self.analysis(dataset, model_type) / "ks.csv"

    def token_loss_densities(self, dataset: str) -> Path:
        """Figure 15: density curves of the generative model's token-level losses and loss differences."""
        return self.analysis(dataset, "generative") / "token_loss_kde.csv"

    def token_loss_summary(self, dataset: str) -> Path:
        return self.analysis(dataset, "generative") / "token_losses.json"

    def per_class_table(self, dataset: str, model_type: str) -> Path:
        """Per-class accuracy drops and score variances of every calibrated cell against the float model."""
        return self.analysis(dataset, model_type) / "per_class.csv"

    def analysis_plots(self) -> Path:
        """Figures 12-15 and the per-class figure (PNG and CSV series)."""
        return self.root / "plots" / "analysis"

    def noise_trained(self) -> ProjectPaths:
        """The noise-trained variant's tree (section 7)."""
        return ProjectPaths(self.root / VARIANT_ROOT)
