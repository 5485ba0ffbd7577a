"""Spiking neurons: pure step functions and the modules that hold their state."""

from snnexit.neurons.functional import (IFState, NeuronParams, if_hard_reset_step, if_initial_state,
                                        if_soft_reset_step, if_step, lif_step)
from snnexit.neurons.modules import NEURONS, IFNeuron, SpikingNeuron, TrainableIF, TrainableLIF
from snnexit.neurons.qffs import QFFSNeuron, QFFSState, qffs_initial_state, qffs_step

__all__ = ["NEURONS", "IFNeuron", "IFState", "QFFSNeuron", "QFFSState", "SpikingNeuron", "if_hard_reset_step",
           "if_initial_state", "if_soft_reset_step", "qffs_initial_state", "qffs_step",
           "NeuronParams", "TrainableIF", "TrainableLIF", "if_step", "lif_step"]
