"""QCFS conversion: every QCFS activation becomes a soft-reset IF neuron.

theta = the layer's trained ``lam``; v(0) = theta / 2; fire on ``>=``; each spike carries
theta. The output layer stays non-spiking and its per-step outputs are accumulated, so
``Y[t] / t`` estimates the ANN's logits and Dynamic Confidence uses alpha = t.
"""

from __future__ import annotations

from torch import nn

from snnexit.convert.base import register_converter, replace_modules
from snnexit.errors import SnnexitError
from snnexit.neurons.modules import IFNeuron
from snnexit.quant.qcfs import QCFS
from snnexit.simulate.network import SpikingNetwork


@register_converter("qcfs")
def convert_qcfs(model: nn.Module) -> SpikingNetwork:
    levels = set()

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
