"""What tells the runs of a sweep apart: the knobs that varied, and each row's label."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from burstsnn.report.paper import PAPER_ROWS

# The knobs every CSV line carries (plus any other that varied), in this order.
CORE_KNOBS = ("p", "gamma", "pooling", "reset", "v_init", "theta_scale", "channel_wise", "lambda_rule",
              "bias_correction", "calib_batches", "seed", "model.width")
# Config keys that never make rows: the table's columns, and settings that do not change results.
NOT_KNOBS = ("T", "model.name", "chunk", "cache_dir", "skip_done", "data.root", "data.download",
             "data.num_workers", "data.eval_batch_size")
NOT_KNOB_PREFIXES = ("trainer.", "logger.")
# Runs that differ only in this key are repeats of one row: its cells are their mean ± std.
REPEAT_KEY = "seed"


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"width": 0.25}} → {"model.width": 0.25}; lists become tuples (hashable)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return flat


def is_knob(key: str) -> bool:
    return key not in NOT_KNOBS and not key.startswith(NOT_KNOB_PREFIXES)


def _knob_order(key: str) -> tuple[int, str]:
    return (CORE_KNOBS.index(key), "") if key in CORE_KNOBS else (len(CORE_KNOBS), key)


def varied_knobs(results: Sequence[dict[str, Any]]) -> list[str]:
    """Config keys whose value differs between runs, besides T, the model and its derived keys
    and the seed (runs over seeds are repeats of a row)."""
    flats = [flatten(r["config"]) for r in results]
    keys = sorted({key for flat in flats for key in flat if is_knob(key) and key != REPEAT_KEY},
                  key=_knob_order)
    varied = []
    for key in keys:
        if len({flat.get(key) for flat in flats}) < 2:
            continue
        by_model: dict[str, set[Any]] = {}
        for flat in flats:
            by_model.setdefault(flat["model.name"], set()).add(flat.get(key))
        if key.startswith("model.") and all(len(values) == 1 for values in by_model.values()):
            continue  # follows from the model (e.g. model.image_size), not a knob of the sweep
        varied.append(key)
    return varied


def theta_label(theta_scale: Any, gamma: Any = None) -> str:
    """The threshold rule as written: "θ = λ", "θ = λ/Γ" ("θ = λ/Γ (= λ)" when Γ=1) or "θ = 0.5·λ"."""
    if theta_scale == "1/gamma":
        return "θ = λ/Γ (= λ)" if gamma == 1 else "θ = λ/Γ"
    if theta_scale == 1:
        return "θ = λ"
    return f"θ = {theta_scale}·λ"


def knob_label(key: str, value: Any, gamma: Any = None) -> str:
    if key == "theta_scale":
        return theta_label(value, gamma)
    if key == "gamma":
        return f"Γ={value}"
    return f"{key}={value}"


def row_label(knobs: dict[str, Any], config: dict[str, Any], name: str | None, shown: Sequence[str]) -> str:
    """``name`` (see row_name) plus the knobs in ``shown`` (those that tell rows of that name
    apart), else the varied knobs, else the core ones."""
    gamma = config.get("gamma")
    if name is not None:
        own = PAPER_ROWS.get(name, {})
        return ", ".join([name, *(knob_label(k, knobs[k], gamma) for k in shown if k not in own)])
    if knobs:
        return ", ".join(knob_label(k, v, gamma) for k, v in knobs.items())
    return ", ".join(knob_label(k, config.get(k), gamma) for k in ("p", "pooling", "gamma", "theta_scale"))


def sortable(value: Any) -> tuple[int, Any]:
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, "" if value is None else str(value))
