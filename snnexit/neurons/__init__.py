"""Spiking neurons: pure step functions and the modules that hold their state."""

from snnexit.neurons.functional import IFState, if_initial_state, if_soft_reset_step
from snnexit.neurons.modules import IFNeuron, SpikingNeuron

__all__ = ["IFNeuron", "IFState", "SpikingNeuron", "if_initial_state", "if_soft_reset_step"]
