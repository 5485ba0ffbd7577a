"""snnexit: make spiking neural networks answer sooner.

Data flows one way::

    data -> ANN (quantized activations) -> train -> calibrate -> convert -> SNN
         -> trace -> policy.fit(val trace) -> evaluate(test trace) / runtime -> report

Every offline decision is a pure function of a :class:`~snnexit.simulate.trace.Trace`.
"""

from snnexit.errors import SnnexitError

__version__ = "0.1.0"
__all__ = ["SnnexitError", "Trace", "__version__"]


def __getattr__(name: str):
    # Trace imports torch (seconds): load it on first use, so `snnexit --version` stays fast
    if name == "Trace":
        from snnexit.simulate.trace import Trace  # torch: on first use, not at `snnexit --version`

        return Trace
    raise AttributeError(f"module 'snnexit' has no attribute {name!r}")
