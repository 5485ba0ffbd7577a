"""Running SNNs step by step: the network wrapper, the stepper that records traces, their cost."""

from snnexit.simulate.network import SpikingNetwork
from snnexit.simulate.stepper import record_trace, simulate_batch
from snnexit.simulate.trace import Trace, concat

__all__ = ["SpikingNetwork", "Trace", "concat", "record_trace", "simulate_batch"]
