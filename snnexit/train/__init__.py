"""Training loops (ANN with quantized activations; later: direct SNN training)."""

from snnexit.train.loop import TrainConfig, evaluate_logits, load_checkpoint, save_checkpoint, train

__all__ = ["TrainConfig", "evaluate_logits", "load_checkpoint", "save_checkpoint", "train"]
