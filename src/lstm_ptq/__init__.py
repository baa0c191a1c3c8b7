"""Post-training quantization study of generative and discriminative LSTM text classifiers."""

__version__ = "0.1.0"
