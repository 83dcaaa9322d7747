"""Spiking building blocks: burst neurons, spiking max pools, the multi-step network."""

from burstsnn.snn.network import MultiStep, SpikingNetwork
from burstsnn.snn.neurons import BurstNeuron
from burstsnn.snn.pooling import LIPool, SpikeMaxPool

__all__ = ["BurstNeuron", "LIPool", "MultiStep", "SpikeMaxPool", "SpikingNetwork"]
