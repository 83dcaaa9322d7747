"""Fake `results.json` files with the job's schema, for report and notebook tests.

Plain functions (no pytest fixtures) so any test can build a sweep directory:

    write_fake_sweep(tmp_path)                      # Table 1 rows × models × θ = λ, λ/Γ
    write_results(tmp_path, [fake_result(gamma=g, T=t) for g in (1, 2, 5) for t in (16, 32)])
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from burstsnn.ann.models import build_model
from burstsnn.conversion.convert import convert

# The paper's Table 1 rows as conversion knobs (names as in burstsnn.report.paper).
TABLE1_ROWS: tuple[dict[str, Any], ...] = (
    {"p": 100.0, "pooling": "spikemax", "gamma": 1},  # Max-norm
    {"p": 99.9, "pooling": "spikemax", "gamma": 1},   # p-Norm
    {"p": 99.9, "pooling": "lipool", "gamma": 1},     # LIPooling
    {"p": 99.9, "pooling": "lipool", "gamma": 2},     # Burst (Γ=2)
    {"p": 99.9, "pooling": "lipool", "gamma": 5},     # Burst (Γ=5)
)

ANN_ACC = {"vgg16": 0.915, "resnet20": 0.925}


@functools.cache
def layer_names(model: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(spiking layers, pooling layers) of the real ``model`` as its converted network names
    them, in graph order: a narrow copy converted on one random image, no training."""
    ann = build_model(model, num_classes=10, in_channels=1, width=0.0625).eval()
    snn = convert(ann, [torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))])
    return tuple(name for name, _ in snn.neurons()), tuple(name for name, _ in snn.pools())


def fake_result(
    *, model: str = "vgg16", T: int = 32, data: str = "fashion_mnist", p: float = 99.9,
    gamma: int = 5, pooling: str = "lipool", theta_scale: float | str = "1/gamma", method: str | None = None,
    **knobs: Any,
) -> dict[str, Any]:
    """One job's results: a saturating accuracy curve that rises faster with Γ and LIPooling;
    ``method``: the preset it was started with (``method=<name>``), as results.json records it."""
    config = {
        "data": {"name": data, "root": "/data", "image_size": 32, "in_channels": 1, "num_classes": 10,
                 "batch_size": 128, "eval_batch_size": 256},
        "model": {"name": model, "width": 0.25, "in_channels": 1, "num_classes": 10, "image_size": 32,
                  "activation": "relu", "levels": 4, "clip_per_channel": False},
        "train": {"epochs": 8, "lr": 0.1},
        "trainer": {"accelerator": "cpu", "devices": 1},
        "logger": {"name": "none"},
        "p": p, "gamma": gamma, "T": T, "pooling": pooling, "reset": "soft", "v_init": 0.0,
        "theta_scale": theta_scale, "channel_wise": False, "calib_batches": 1, "seed": 0,
        "lambda_rule": "percentile", "bias_correction": False,
        "chunk": None, "cache_dir": "outputs/ann_cache",
    }
    for key, value in knobs.items():  # "model.width" → config["model"]["width"]
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    ann = ANN_ACC[model]
    scale = 1.0 / gamma if theta_scale == "1/gamma" else float(theta_scale)
    final = ann - (0.3 if p >= 100 else 0.02) - (0.05 if pooling == "spikemax" else 0.0)
    tau = (6.0 if p >= 100 else 3.0) / (gamma * scale) ** 0.5 * (1.5 if pooling == "spikemax" else 1.0)
    curve = [round(0.1 + (final - 0.1) * (1 - math.exp(-t / tau)), 4) for t in range(1, T + 1)]
    best_t = max(range(T), key=lambda i: curve[i]) + 1
    spiking_layers, pool_layers = layer_names(model)
    first_layer = "features.0" if model == "vgg16" else "stem.0"  # the conv fed by the image
    rates = {layer: round(0.01 + 0.005 * i * gamma * scale, 4) for i, layer in enumerate(spiking_layers)}
    pools = {} if pooling == "avg" else {
        layer: 1.0 if pooling == "lipool" else round(0.9 - 0.1 * i, 3)
        for i, layer in enumerate(pool_layers)}
    ann_macs, acs = 1.0e7, 2.0e6 * gamma * scale
    energy_ratio = round((0.9 * acs + 4.6 * 3.0e5) / (4.6 * ann_macs), 4)
    return {
        "config": config,
        "overrides": [f"model={model}", *([f"method={method}"] if method else []), f"gamma={gamma}", f"T={T}",
                      f"p={p}", f"pooling={pooling}"],
        "method": method,
        "ann": {"key": f"{model}-key", "trained": False, "test_acc": ann, "val_acc": ann + 0.005,
                "checkpoint": f"outputs/ann_cache/{model}-key/model.pt"},
        "snn": {"T": T, "theta_scale": scale, "acc_over_t": curve, "acc_at_T": curve[-1],
                "agreement_over_t": [round(min(1.0, a / ann), 4) for a in curve],
                "agreement_at_T": round(min(1.0, curve[-1] / ann), 4),
                "best_acc": curve[best_t - 1], "best_t": best_t, "conversion_loss": round(ann - curve[-1], 4),
                "firing_rates": rates, "pooling_correct_ratio": pools,
                "energy": {"ann_macs": ann_macs, "snn_acs": acs, "snn_macs": 3.0e5,
                           "ann_energy_pj": 4.6 * ann_macs, "snn_energy_pj": 0.9 * acs + 4.6 * 3.0e5,
                           "energy_ratio": energy_ratio, "mac_layers": [first_layer]},
                "energy_over_t": [round(energy_ratio * t / T, 6) for t in range(1, T + 1)],
                "t_within_1pt": next((t for t, a in enumerate(curve, 1) if a >= ann - 0.01), None)},
        "timings": {"ann_s": 1.2, "calibration_s": 0.5, "simulation_s": 40.0, "logging_s": 0.3},
    }


def write_results(root: Path, results: Iterable[Mapping[str, Any]]) -> Path:
    """Write each result to `root/<job_num>/results.json`, as Hydra multirun lays them out."""
    for num, result in enumerate(results):
        job_dir = root / str(num)
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / "results.json").write_text(json.dumps(result, indent=2))
    return root


def write_fake_sweep(
    root: Path, rows: Sequence[Mapping[str, Any]] = TABLE1_ROWS,
    models: Sequence[str] = ("vgg16", "resnet20"), T: int = 32,
    theta_scales: Sequence[float | str] = (1, "1/gamma"), **fixed: Any,
) -> Path:
    """A sweep of rows × models × theta_scales (the Table 1 experiment by default); returns `root`."""
    return write_results(root, (
        fake_result(model=model, T=T, theta_scale=scale, **{**fixed, **row})
        for row in rows for model in models for scale in theta_scales))
