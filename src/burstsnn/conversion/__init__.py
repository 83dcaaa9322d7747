"""The conversion station (paper §3): fold BN, calibrate λ, swap modules, correct biases."""

from burstsnn.conversion.convert import convert, fold_bn

__all__ = ["convert", "fold_bn"]
