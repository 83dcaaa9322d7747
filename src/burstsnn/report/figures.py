"""The paper's Fig. 5 panels from a report Table, one panel per model, one colour per row.

Drawn on bare `matplotlib.figure.Figure`s (Agg canvas, no pyplot state), written atomically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from burstsnn.atomic import write_atomic
from burstsnn.report.points import frontier, operating_points
from burstsnn.report.table import Row, Table


def _colour(index: int, count: int) -> Any:
    palette = colormaps["tab10" if count <= 10 else "tab20"]
    return palette(index % palette.N)


def _figure(panels: int, width: float) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(width * panels, 4.5), layout="constrained")
    return figure, list(figure.subplots(1, panels, squeeze=False)[0])


def _save(figure: Figure, path: Path) -> Path:
    write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))
    return path


def _legend(figure: Figure, axes: list[Axes]) -> None:
    """One legend below the panels, each label once."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    figure.legend(list(entries.values()), list(entries), loc="outside lower center",
                  ncols=min(3, len(entries)), fontsize="small")


def plot_accuracy_over_t(table: Table, path: Path) -> Path:
    """Accuracy (%) against t for each row's longest run, the ANN as a dashed line (Fig. 5a)."""
    figure, axes = _figure(len(table.models), 6.0)
    for ax, model in zip(axes, table.models):
        for index, row in enumerate(table.rows):
            run = row.longest(model)
            if run is not None:
                curve = run["snn"]["acc_over_t"]
                ax.plot(range(1, len(curve) + 1), [100 * a for a in curve], label=row.label,
                        color=_colour(index, len(table.rows)))
        for acc in table.ann_acc[model]:
            ax.axhline(acc, linestyle="--", color="black", linewidth=1, label="ANN")
        ax.set(title=table.model_header(model), xlabel="time step t", ylabel="accuracy (%)")
        ax.grid(alpha=0.3)
    _legend(figure, axes)
    return _save(figure, path)


def _grouped_bars(table: Table, path: Path, values: Callable[[Row, str], dict[str, float]],
                  ylabel: str) -> Path | None:
    """Bars per layer (x), one per row, one panel per model that has any values; None if none has."""
    data = {m: [(i, row, v) for i, row in enumerate(table.rows) if (v := values(row, m))]
            for m in table.models}
    models = [m for m in table.models if data[m]]
    if not models:
        return None
    layers_per_model = {m: list(dict.fromkeys(layer for *_, v in data[m] for layer in v))
                        for m in models}
    figure, axes = _figure(len(models), max(6.0, 0.5 * max(map(len, layers_per_model.values()))))
    for ax, model in zip(axes, models):
        layers, entries = layers_per_model[model], data[model]
        width = 0.8 / len(entries)
        for slot, (index, row, by_layer) in enumerate(entries):
            xs = [x + (slot - (len(entries) - 1) / 2) * width for x in range(len(layers))]
            ax.bar(xs, [by_layer.get(layer, 0.0) for layer in layers], width, label=row.label,
                   color=_colour(index, len(table.rows)))
        ax.set_xticks(range(len(layers)), layers, rotation=60, ha="right", fontsize="small")
        ax.set(title=table.model_header(model), ylabel=ylabel)
        ax.grid(axis="y", alpha=0.3)
    _legend(figure, axes)
    return _save(figure, path)


def _longest_snn(row: Row, model: str, key: str) -> dict[str, float]:
    run = row.longest(model)
    return (run["snn"].get(key) or {}) if run is not None else {}


def plot_firing_rates(table: Table, path: Path) -> Path | None:
    """Firing rate (spikes per neuron per step) per spiking layer, bars per row (Fig. 5c)."""
    return _grouped_bars(table, path, lambda row, m: _longest_snn(row, m, "firing_rates"),
                         "firing rate (spikes / neuron / step)")


def plot_pooling_ratio(table: Table, path: Path) -> Path | None:
    """Pooling correct ratio per pooling layer, bars per row (Fig. 5b); None if no run has pools."""
    return _grouped_bars(table, path, lambda row, m: _longest_snn(row, m, "pooling_correct_ratio"),
                         "pooling correct ratio")


# Rows beyond this many are drawn in grey without a legend entry (e.g. the trials of a search).
MAX_LEGEND_ROWS = 10
# At most this many Pareto points get a "t=" label per panel (evenly spread).
MAX_FRONT_LABELS = 12
# The zoomed panels show accuracy from this many points below the ANN up to 2 above it.
ZOOM_POINTS = 10.0


def plot_frontier(table: Table, path: Path) -> Path | None:
    """Accuracy (%) against SNN/ANN energy ratio (log scale): one curve per row (its longest
    run, a point per step t), the Pareto front over all runs' points (black, t labelled), the
    ANN's accuracy (dashed) and energy (dotted). Top: all points; bottom: near the ANN.
    None if no run knows its energy over t."""

    models = [m for m in table.models if operating_points(table, m)]
    if not models:
        return None
    figure = Figure(figsize=(6.5 * len(models), 9.0), layout="constrained")
    grid = figure.subplots(2, len(models), squeeze=False)
    many = len(table.rows) > MAX_LEGEND_ROWS
    for column, model in enumerate(models):
        front, everything = frontier(table, model), operating_points(table, model)
        ann = max(table.ann_acc[model])
        for zoomed, ax in enumerate(grid[:, column]):
            for index, row in enumerate(table.rows):
                points = [p for p in everything if p.row == row.label and p.run is row.longest(model)]
                if points:
                    ax.plot([p.energy_ratio for p in points], [p.acc for p in points], marker=".",
                            markersize=3, linewidth=1,
                            color="0.75" if many else _colour(index, len(table.rows)),
                            label=None if many else row.label)
            ax.plot([p.energy_ratio for p in front], [p.acc for p in front], color="black",
                    marker="o", markersize=4, linewidth=1.5, drawstyle="steps-post",
                    label="Pareto front (t labelled)")
            shown = [p for p in front if not zoomed or p.acc >= ann - ZOOM_POINTS]
            every = -(-len(shown) // MAX_FRONT_LABELS)  # label at most MAX_FRONT_LABELS points
            for p in shown[::every]:
                ax.annotate(f"t={p.t}", (p.energy_ratio, p.acc), textcoords="offset points",
                            xytext=(4, -10), fontsize="x-small")
            for acc in table.ann_acc[model]:
                ax.axhline(acc, linestyle="--", color="black", linewidth=1, label="ANN accuracy")
            ax.axvline(1.0, linestyle=":", color="black", linewidth=1, label="ANN energy")
            ax.set_xscale("log")
            if zoomed:
                ax.set_ylim(ann - ZOOM_POINTS, ann + 2)
            ax.set(title=f"{table.model_header(model)}{' — near the ANN' if zoomed else ''}",
                   xlabel="SNN/ANN energy ratio (had the run stopped at t)", ylabel="accuracy (%)")
            ax.grid(alpha=0.3, which="both")
    _legend(figure, list(grid.flat))
    return _save(figure, path)


@dataclass(frozen=True)
class Plot:
    """A figure of the report: its caption, and ``draw(table, path)`` -> the PNG written (None
    where the sweep has nothing to show)."""

    caption: str
    draw: Callable[[Table, Path], Path | None]


# The figures write_report draws, by file name.
FIGURES: dict[str, Plot] = {
    "acc_over_t.png": Plot("Accuracy over time steps t, one curve per row (cf. paper Fig. 5a)",
                           plot_accuracy_over_t),
    "pooling_ratio.png": Plot("Pooling correct ratio per pooling layer (cf. paper Fig. 5b)", plot_pooling_ratio),
    "firing_rates.png": Plot("Firing rate per spiking layer (cf. paper Fig. 5c)", plot_firing_rates),
    "frontier.png": Plot("Accuracy against SNN/ANN energy ratio: a point per step t of each row's run, the Pareto "
                         "front over all of them (t labelled), the ANN dashed", plot_frontier),
}
