"""burstsnn: ANN-to-SNN conversion with burst spikes and LIPooling.

The pipeline, one folder per station (docs/architecture.md): ``ann`` (networks, training,
data) -> ``conversion`` (fold BN, calibrate λ, swap modules) -> ``snn`` (burst neurons,
spiking pools, the multi-step network) -> ``measure`` (metrics, energy) -> ``experiment``
(config, job, cache, loggers) -> ``report``. The public names below are re-exported here,
loaded on first use: ``from burstsnn import convert``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "convert": "burstsnn.conversion",
    "fold_bn": "burstsnn.conversion",
    "energy_report": "burstsnn.measure.energy",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'burstsnn' has no attribute {name!r}")
