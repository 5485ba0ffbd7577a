"""Quantized activations for ANNs that convert to low-latency SNNs."""

from snnexit.quant.qcfs import QCFS, qcfs

__all__ = ["QCFS", "qcfs"]
