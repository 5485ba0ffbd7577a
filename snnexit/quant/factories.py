"""The ANN's activation by quantizer name (``--quantizer``), as a factory for ``create_model``.

``QUANTIZERS.get(name)(levels=L, bits=b, init_threshold=lam)`` returns a function of no
arguments that builds a fresh activation module on every call:

* ``qcfs``: ``QCFS(levels, init_threshold)``;
* ``lsq``: ``LSQ(bits, init_step=init_threshold / (2**bits - 1))``, so that its SNN threshold
  ``s * Q`` starts where QCFS's ``lam`` does (1.0 for inputs in [0, 1]);
* ``relu``: ``nn.ReLU`` (for data-based normalisation, ``max`` and ``robust``);
* ``clip``: ``nn.Hardtanh(0, init_threshold)``, a clipped ReLU.

Every factory takes the three settings and uses those its activation needs.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from snnexit.quant.lsq import LSQ
from snnexit.quant.qcfs import QCFS
from snnexit.registry import Registry

QUANTIZERS: Registry = Registry("quantizer")


@QUANTIZERS.register("qcfs")
def qcfs_activation(levels: int, bits: int, init_threshold: float) -> Callable[[], nn.Module]:
    return lambda: QCFS(levels, init_threshold)


@QUANTIZERS.register("lsq")
def lsq_activation(levels: int, bits: int, init_threshold: float) -> Callable[[], nn.Module]:
    return lambda: LSQ(bits, init_step=init_threshold / (2 ** bits - 1))


@QUANTIZERS.register("relu")
def relu_activation(levels: int, bits: int, init_threshold: float) -> Callable[[], nn.Module]:
    return nn.ReLU


@QUANTIZERS.register("clip")
def clip_activation(levels: int, bits: int, init_threshold: float) -> Callable[[], nn.Module]:
    return lambda: nn.Hardtanh(0.0, init_threshold)
