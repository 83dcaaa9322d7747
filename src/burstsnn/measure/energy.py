"""The energy model (paper §4.4, after Rathi & Roy 2021): a MAC costs E_MAC, an AC E_AC.

An ANN layer costs one MAC per weight use; an SNN layer fed by spikes one AC per synaptic
event, and a layer fed by analog values (the first, fed by the image, and any fed by another
layer's current with no neuron between) its MACs at every step: the "MAC layers". The counts
come from ``burstsnn.measure.synapses``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

E_MAC_PJ = 4.6  # pJ per 32-bit floating-point multiply-accumulate (paper §4.4)
E_AC_PJ = 0.9   # pJ per accumulate


def energy_over_t(
    macs: Mapping[str, int],
    acs_per_step: Mapping[str, Sequence[float]],
    T: int,
    mac_layers: Sequence[str],
    e_mac: float = E_MAC_PJ,
    e_ac: float = E_AC_PJ,
) -> list[float]:
    """SNN/ANN energy ratio had the simulation stopped after step t, for t = 1..T.

    At t: (t·Σ_{MAC layers} MACs·E_MAC + Σ_{τ ≤ t} Σ_{other layers} ACs(τ)·E_AC) / (Σ MACs·E_MAC).
    ``acs_per_step``: each other layer's ACs per image at steps 1..T (T values each).
    """
    acs = torch.zeros(T, dtype=torch.float64)
    for name, values in acs_per_step.items():
        values = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
        if values.numel() != T:
            raise ValueError(f"layer '{name}': {values.numel()} ACs per step, expected T={T}")
        acs += values
    t = torch.arange(1, T + 1, dtype=torch.float64)
    mac_energy = sum(macs[name] for name in mac_layers) * e_mac
    ann_energy = sum(macs.values()) * e_mac
    return ((t * mac_energy + acs.cumsum(0) * e_ac) / ann_energy).tolist()


def energy_report(
    macs: dict[str, int],
    acs_per_image: dict[str, float],
    T: int,
    mac_layers: Sequence[str],
    e_mac: float = E_MAC_PJ,
    e_ac: float = E_AC_PJ,
) -> dict[str, Any]:
    """Energy per image in pJ (paper §4.4, after Rathi & Roy 2021).

    ANN = Σ MACs·E_MAC.  SNN = T·Σ_{MAC layers} MACs·E_MAC (analog input: MACs at every
    step) + Σ_{other layers} ACs·E_AC.  ``macs``: every layer's MACs per image;
    ``acs_per_image``: ACs per image of every layer not in ``mac_layers``.
    Returns ann_macs, snn_macs, snn_acs, ann_energy_pj, snn_energy_pj, energy_ratio
    (SNN / ANN), e_mac_pj, e_ac_pj, acs_per_layer and mac_layers (their names).
    """
    analog = set(mac_layers)
    if not analog <= macs.keys():
        raise ValueError(f"MAC layers without MACs: {sorted(analog - macs.keys())}")
    others = macs.keys() - analog
    if others != acs_per_image.keys():
        raise ValueError(
            f"ACs must be given for exactly the spike-fed layers {sorted(others)}; got {sorted(acs_per_image)}"
        )
    ann_macs = sum(macs.values())
    snn_macs = T * sum(macs[name] for name in analog)
    snn_acs = float(sum(acs_per_image.values()))
    ann_energy = ann_macs * e_mac
    snn_energy = snn_macs * e_mac + snn_acs * e_ac
    return {
        "ann_macs": ann_macs,
        "snn_macs": snn_macs,
        "snn_acs": snn_acs,
        "ann_energy_pj": ann_energy,
        "snn_energy_pj": snn_energy,
        "energy_ratio": snn_energy / ann_energy,
        "e_mac_pj": e_mac,
        "e_ac_pj": e_ac,
        "acs_per_layer": {name: float(v) for name, v in acs_per_image.items()},
        "mac_layers": list(mac_layers),
    }
