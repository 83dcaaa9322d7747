"""burstsnn: ANN-to-SNN conversion with burst spikes and LIPooling."""

__version__ = "0.1.0"
