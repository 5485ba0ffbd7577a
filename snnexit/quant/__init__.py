"""Quantized activations for ANNs that convert to low-latency SNNs."""

from snnexit.quant.factories import QUANTIZERS
from snnexit.quant.lsq import LSQ, MAX_BITS, lsq
from snnexit.quant.qcfs import QCFS, QuantizerSettingError, qcfs

__all__ = ["LSQ", "MAX_BITS", "QCFS", "QUANTIZERS", "QuantizerSettingError", "lsq", "qcfs"]
