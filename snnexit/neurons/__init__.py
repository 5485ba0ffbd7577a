"""Spiking neurons: pure step functions and the modules that hold their state."""

from snnexit.neurons.functional import IFState, if_initial_state, if_soft_reset_step
from snnexit.neurons.lif import NeuronParams, NeuronState, TrainableIF, TrainableLIF, if_step, lif_step
from snnexit.neurons.modules import IFNeuron, SpikingNeuron
from snnexit.neurons.qffs import QFFSNeuron, QFFSState, qffs_initial_state, qffs_step

__all__ = ["IFNeuron", "IFState", "QFFSNeuron", "QFFSState", "SpikingNeuron", "if_initial_state",
           "if_soft_reset_step", "qffs_initial_state", "qffs_step",
           "NeuronParams", "NeuronState", "TrainableIF", "TrainableLIF", "if_step", "lif_step"]
