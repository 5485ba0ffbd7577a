"""Training loops (ANN with quantized activations; later: direct SNN training)."""

from snnexit.train.loop import TrainConfig, evaluate_logits, load_checkpoint, save_checkpoint, train
from snnexit.train.direct import DirectConfig, build_direct_snn, train_snn, trainable_from_converted
from snnexit.train.losses import mean_output_ce, rcs_regularizer, tet_loss

__all__ = ["TrainConfig", "evaluate_logits", "load_checkpoint", "save_checkpoint", "train",
           "DirectConfig", "build_direct_snn", "mean_output_ce", "rcs_regularizer", "tet_loss", "train_snn",
           "trainable_from_converted"]
