"""The ANN's activation by quantizer name (``--quantizer``), as a factory for ``create_model``.

``QUANTIZERS.get(name)(levels=L, bits=b, init_threshold=lam)`` returns a function of no
arguments that builds a fresh activation module on every call:

* ``qcfs``: ``QCFS(levels, init_threshold)``;
* ``lsq``: ``LSQ(bits, init_step=init_threshold / (2**bits - 1))``, so that its SNN threshold
  ``s * Q`` starts where QCFS's ``lam`` does (1.0 for inputs in [0, 1]);
* ``relu``: ``nn.ReLU`` (for data-based normalisation, ``max`` and ``robust``);
* ``clip``: ``nn.Hardtanh(0, init_threshold)``, a clipped ReLU.

Every factory takes the three settings, declares those its activation uses (``uses``: the
command line refuses the others when given, rather than ignore them), checks those it needs (out of range:
:class:`~snnexit.quant.qcfs.QuantizerSettingError`, a SnnexitError naming the setting, raised
when the factory is called, before any model is built) and uses them.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from snnexit.quant.lsq import LSQ, MAX_BITS
from snnexit.quant.qcfs import QCFS, check_count, check_positive
from snnexit.registry import Registry

QUANTIZERS: Registry = Registry("quantizer")


@QUANTIZERS.register("qcfs")
def qcfs_activation(levels: int, bits: int, init_threshold: float) -> Callable[[], nn.Module]:
    levels = check_count("QCFS levels (L)", levels, 1)
    init_threshold = check_positive("init_threshold", init_threshold)
    return lambda: QCFS(levels, init_threshold)


qcfs_activation.uses = ("levels", "init_threshold")


@QUANTIZERS.register("lsq")
def lsq_activation(levels: int, bits: int, init_threshold: float) -> Callable[[], nn.Module]:
    bits = check_count("LSQ bits", bits, 1, MAX_BITS)
    init_threshold = check_positive("init_threshold", init_threshold)
    return lambda: LSQ(bits, init_step=init_threshold / (2 ** bits - 1))


lsq_activation.uses = ("bits", "init_threshold")  # L = 2**bits - 1


@QUANTIZERS.register("relu")
def relu_activation(levels: int, bits: int, init_threshold: float) -> Callable[[], nn.Module]:
    return nn.ReLU


relu_activation.uses = ()


@QUANTIZERS.register("clip")
def clip_activation(levels: int, bits: int, init_threshold: float) -> Callable[[], nn.Module]:
    init_threshold = check_positive("init_threshold", init_threshold)
    return lambda: nn.Hardtanh(0.0, init_threshold)


clip_activation.uses = ("init_threshold",)
