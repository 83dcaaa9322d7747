"""The paper's Table 1 (Li & Zeng, CIFAR100), typed from the paper, and which runs reproduce a row.

A run carries a paper row's name only when every conversion knob matches that row as the
paper runs it: its p, pooling and Γ, soft reset, V(0) = 0, one λ per layer at the p-th
percentile of one calibration batch, no bias correction; θ = λ (as written) or λ/Γ (as its
released code), which the row's label then says.
"""

from __future__ import annotations

from typing import Any

PAPER_DATA = "CIFAR100"
PAPER_ANN = {"vgg16": 78.49, "resnet20": 80.69}
PAPER_TS = (16, 32)
# The knobs every paper row shares.
_PAPER_CONVERSION = {"reset": "soft", "v_init": 0.0, "channel_wise": False, "lambda_rule": "percentile",
                     "bias_correction": False, "calib_batches": 1}
PAPER_ROWS: dict[str, dict[str, Any]] = {
    "Max-norm": {"p": 100, "pooling": "spikemax", "gamma": 1, **_PAPER_CONVERSION},
    "p-Norm": {"p": 99.9, "pooling": "spikemax", "gamma": 1, **_PAPER_CONVERSION},
    "LIPooling": {"p": 99.9, "pooling": "lipool", "gamma": 1, **_PAPER_CONVERSION},
    "Burst (Γ=2)": {"p": 99.9, "pooling": "lipool", "gamma": 2, **_PAPER_CONVERSION},
    "Burst (Γ=5)": {"p": 99.9, "pooling": "lipool", "gamma": 5, **_PAPER_CONVERSION},
}
PAPER_THETA_SCALES = (1, "1/gamma")  # θ = λ (the method as written) or λ/Γ (its released code)
# Accuracy (%) at T = 16, 32 (the paper's Table 1).
PAPER_ACC: dict[str, dict[str, dict[int, float]]] = {
    "Max-norm": {"vgg16": {16: 2.99, 32: 10.91}, "resnet20": {16: 3.16, 32: 27.78}},
    "p-Norm": {"vgg16": {16: 25.72, 32: 58.51}, "resnet20": {16: 8.82, 32: 45.83}},
    "LIPooling": {"vgg16": {16: 24.37, 32: 65.63}, "resnet20": {16: 12.73, 32: 53.35}},
    "Burst (Γ=2)": {"vgg16": {16: 54.88, 32: 70.96}, "resnet20": {16: 38.13, 32: 67.85}},
    "Burst (Γ=5)": {"vgg16": {16: 57.21, 32: 71.41}, "resnet20": {16: 58.10, 32: 76.30}},
}
# Our method presets beyond the paper's rows (conf/method/<name>.yaml) → row title.
OUR_METHODS = {"lowlatency": "Low latency (ours)", "onestep": "One step (ours, quantised ANN)"}


def paper_name(config: dict[str, Any]) -> str | None:
    """The paper's Table 1 row whose every conversion knob ``config`` matches, if any."""
    if config.get("theta_scale") not in PAPER_THETA_SCALES:
        return None
    for name, knobs in PAPER_ROWS.items():
        if all(config.get(key) == value for key, value in knobs.items()):
            return name
    return None


def row_name(config: dict[str, Any], method: str | None) -> str | None:
    """Our preset's title when the run was started with one (``method``, as results.json
    records it), else the paper's row that the knobs reproduce, else None."""
    return OUR_METHODS[method] if method in OUR_METHODS else paper_name(config)
