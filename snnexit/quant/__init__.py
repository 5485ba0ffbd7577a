"""Quantized activations for ANNs that convert to low-latency SNNs."""

from snnexit.quant.factories import QUANTIZERS
from snnexit.quant.lsq import LSQ, lsq
from snnexit.quant.qcfs import QCFS, qcfs

__all__ = ["LSQ", "QCFS", "QUANTIZERS", "lsq", "qcfs"]
