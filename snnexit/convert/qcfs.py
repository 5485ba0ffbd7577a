"""QCFS conversion: every QCFS activation becomes a soft-reset IF neuron.

theta = the layer's trained ``lam``; v(0) = theta / 2; fire on ``>=``; each spike carries
theta. The output layer stays non-spiking and its per-step outputs are accumulated, so
``Y[T] / T`` estimates the ANN's logits. Dynamic Confidence divides by alpha = T, the
simulation length of the run (a constant, the paper's rule for QCFS, Sec. 5.2), so its
confidence rises with t and meets the ANN's at t = T; ``mean_output_confidence`` keeps
alpha = t.

BatchNorm stays as it is by default: the SNN then applies each layer's affine map in the same
order as the ANN, which keeps the QCFS exactness (T = L steps reproduce the quantized
activation) bit for bit. ``fold_bn=True`` folds it into the layer before (one op fewer per
layer; the same function up to float rounding), as QFFS, data-based normalisation and the NIR
export always do.
"""

from __future__ import annotations

from torch import nn

from snnexit.convert.base import register_converter, replace_modules
from snnexit.convert.bn_fold import fold_batchnorm_pairs
from snnexit.errors import SnnexitError
from snnexit.neurons.modules import IFNeuron
from snnexit.quant.qcfs import QCFS
from snnexit.simulate.network import SpikingNetwork


@register_converter("qcfs", quantizers=("qcfs", "lsq"))
def convert_qcfs(model: nn.Module, fold_bn: bool = False) -> SpikingNetwork:
    levels = set()
    if fold_bn:
        model = fold_batchnorm_pairs(model)

    def swap(path, module):
        if isinstance(module, QCFS):
            levels.add(module.levels)
            theta = module.threshold.detach()  # in the ANN's dtype: a float64 ANN gives float64 thresholds
            if not theta.item() > 0:
                raise SnnexitError(f"QCFS threshold at {path!r} is {theta.item()}: a spiking threshold must be > 0")
            return IFNeuron(threshold=theta, v_init=0.5)
        return None

    body = replace_modules(model, swap).eval()
    if not levels:
        raise SnnexitError("qcfs conversion needs an ANN with QCFS or LSQ activations; this model has none, so its "
                           "SNN would have no spiking layer")
    return SpikingNetwork(body, meta={"converter": "qcfs", "alpha": "T",
                                      "levels": sorted(levels)[0] if len(levels) == 1 else sorted(levels)})
