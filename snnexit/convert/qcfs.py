"""QCFS conversion: every QCFS activation becomes a soft-reset IF neuron.

theta = the layer's trained ``lam``; v(0) = theta / 2; fire on ``>=``; each spike carries
theta. The output layer stays non-spiking and its per-step outputs are accumulated, so
``Y[t] / t`` estimates the ANN's logits and Dynamic Confidence uses alpha = t.

BatchNorm stays as it is by default: the SNN then applies each layer's affine map in the same
order as the ANN, which keeps the QCFS exactness (T = L steps reproduce the quantized
activation) bit for bit. ``fold_bn=True`` folds it into the layer before (one op fewer per
layer; the same function up to float rounding), as QFFS, data-based normalisation and the NIR
export always do.
"""

from __future__ import annotations

from torch import nn

from snnexit.convert.base import register_converter, replace_modules
from snnexit.convert.bn_fold import fold_batchnorm
from snnexit.errors import SnnexitError
from snnexit.neurons.modules import IFNeuron
from snnexit.quant.qcfs import QCFS
from snnexit.simulate.network import SpikingNetwork


@register_converter("qcfs")
def convert_qcfs(model: nn.Module, fold_bn: bool = False) -> SpikingNetwork:
    levels = set()
    if fold_bn:
        model = fold_batchnorm(model)

    def swap(path, module):
        if isinstance(module, QCFS):
            levels.add(module.levels)
            theta = module.threshold.detach().item()
            if not theta > 0:
                raise SnnexitError(f"QCFS threshold at {path!r} is {theta}: a spiking threshold must be > 0")
            return IFNeuron(threshold=theta, v_init=0.5)
        return None

    body = replace_modules(model, swap).eval()
    return SpikingNetwork(body, meta={"converter": "qcfs", "alpha": "t",
                                      "levels": sorted(levels)[0] if len(levels) == 1 else sorted(levels)})
