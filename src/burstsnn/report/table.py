"""Sweep results → Table 1 (markdown + CSV) beside the paper's numbers, plus the Fig. 5 panels.

    python -m burstsnn.report <sweep_dir> [--out DIR] [--T 16 32]

Reads every `results.json` under the sweep dir (a Hydra multirun dir, nested dirs, or one
run dir). Columns are models × T; rows are the knobs that varied across the sweep.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from burstsnn.atomic import write_atomic
from burstsnn.measure.frontier import pareto_front, t_within

RESULTS = "results.json"

# The paper's Table 1 (CIFAR100): row name → conversion knobs, and accuracy (%) at T = 16, 32.
PAPER_DATA = "CIFAR100"
PAPER_ANN = {"vgg16": 78.49, "resnet20": 80.69}
PAPER_ROWS: dict[str, dict[str, Any]] = {
    "Max-norm": {"p": 100, "pooling": "spikemax", "gamma": 1},
    "p-Norm": {"p": 99.9, "pooling": "spikemax", "gamma": 1},
    "LIPooling": {"p": 99.9, "pooling": "lipool", "gamma": 1},
    "Burst (Γ=2)": {"p": 99.9, "pooling": "lipool", "gamma": 2},
    "Burst (Γ=5)": {"p": 99.9, "pooling": "lipool", "gamma": 5},
}
PAPER_ACC: dict[str, dict[str, dict[int, float]]] = {
    "Max-norm": {"vgg16": {16: 2.99, 32: 10.91}, "resnet20": {16: 3.16, 32: 27.78}},
    "p-Norm": {"vgg16": {16: 25.72, 32: 58.51}, "resnet20": {16: 8.82, 32: 45.83}},
    "LIPooling": {"vgg16": {16: 24.37, 32: 65.63}, "resnet20": {16: 12.73, 32: 53.35}},
    "Burst (Γ=2)": {"vgg16": {16: 54.88, 32: 70.96}, "resnet20": {16: 38.13, 32: 67.85}},
    "Burst (Γ=5)": {"vgg16": {16: 57.21, 32: 71.41}, "resnet20": {16: 58.10, 32: 76.30}},
}
PAPER_TS = (16, 32)
# Our method presets beyond the paper's rows (conf/method/<name>.yaml) → row title.
OUR_METHODS = {"lowlatency": "Low latency (ours)"}

# The knobs every CSV line carries (plus any other that varied), in this order.
CORE_KNOBS = ("p", "gamma", "pooling", "reset", "v_init", "theta_scale", "channel_wise", "lambda_rule",
              "bias_correction", "calib_batches", "seed", "model.width")
# Config keys that never make rows: the table's columns, and settings that do not change results.
NOT_KNOBS = ("T", "model.name", "chunk", "cache_dir", "skip_done", "data.root", "data.download",
             "data.num_workers", "data.eval_batch_size")
NOT_KNOB_PREFIXES = ("trainer.", "logger.")

MODEL_NAMES = {"vgg16": "VGG16", "resnet20": "ResNet20"}
DATA_NAMES = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar10": "CIFAR10",
              "cifar100": "CIFAR100", "imagenet": "ImageNet"}

# The figures write_report draws: file name → caption.
FIGURES = {
    "acc_over_t.png": "Accuracy over time steps t, one curve per row (cf. paper Fig. 5a)",
    "pooling_ratio.png": "Pooling correct ratio per pooling layer (cf. paper Fig. 5b)",
    "firing_rates.png": "Firing rate per spiking layer (cf. paper Fig. 5c)",
    "frontier.png": "Accuracy against SNN/ANN energy ratio: a point per step t of each row's run, "
                    "the Pareto front over all of them (t labelled), the ANN dashed",
}


class ReportError(ValueError):
    """A sweep that cannot be reported (no results, a malformed file): one line for the user."""


@dataclass(frozen=True)
class Cell:
    """One (row, model, T) entry, read from the shortest run simulated for at least T steps."""

    acc: float                   # accuracy (%) at t = T
    best_acc: float              # best accuracy (%) over t ≤ T ...
    best_t: int                  # ... reached at this step
    ann_acc: float               # the run's ANN test accuracy (%)
    energy_ratio: float | None   # SNN/ANN energy had the run stopped at t = T
    t_within_1pt: int | None     # first t ≤ T within 1 point of the ANN (None: not reached)
    energy_within_1pt: float | None  # SNN/ANN energy at that t
    run: dict[str, Any]          # the results.json it was read from (with "path")


@dataclass
class Row:
    """Runs that share every varied knob; `runs[model]` lists them, longest simulation first."""

    label: str
    knobs: dict[str, Any]
    paper_name: str | None
    runs: dict[str, list[dict[str, Any]]]
    cells: dict[tuple[str, int], Cell] = field(default_factory=dict)

    def longest(self, model: str) -> dict[str, Any] | None:
        """The run of `model` simulated for the most steps (None if the row has none)."""
        runs = self.runs.get(model)
        return runs[0] if runs else None

    def last_cell(self, model: str) -> tuple[int | None, Cell | None]:
        """(T, cell) of ``model`` at the largest T the row has a cell for ((None, None) if
        none): a row simulated for fewer steps than the table's last T is read there."""
        T = max((T for m, T in self.cells if m == model), default=None)
        return T, None if T is None else self.cells[(model, T)]


@dataclass
class Table:
    """Table 1: rows × (model × T) cells, with the header facts and notes to print beside it."""

    data: list[str]
    models: list[str]
    Ts: list[int]
    varied: list[str]
    rows: list[Row]
    ann_acc: dict[str, list[float]]   # model → the distinct ANN accuracies (%) of its runs
    notes: list[str]

    def row(self, label: str) -> Row:
        """The row called `label`."""
        for row in self.rows:
            if row.label == label:
                return row
        raise KeyError(f"no row {label!r}; rows: {[r.label for r in self.rows]}")

    def cell(self, label: str, model: str, T: int) -> Cell | None:
        """The cell of row `label`, `model` at `T` (None where no run reached T)."""
        return self.row(label).cells.get((model, T))

    def model_header(self, model: str) -> str:
        """E.g. "VGG16 (ANN 91.50 %)"."""
        accs = self.ann_acc[model]
        ann = f"{accs[0]:.2f}" if len(accs) == 1 else f"{min(accs):.2f}–{max(accs):.2f}"
        return f"{MODEL_NAMES.get(model, model)} (ANN {ann} %)"


# --- loading -----------------------------------------------------------------------------------

def _natural_key(path: Path) -> list[Any]:
    """Sort job dirs 0, 1, 2, ..., 10 rather than 0, 1, 10, 2."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in path.parts]


def _require(result: Any, file: Path, *keys: str) -> Any:
    node = result
    for depth, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            raise ReportError(f"malformed {file}: no {'.'.join(keys[:depth + 1])}")
        node = node[key]
    return node


def _check(result: Any, file: Path) -> None:
    for keys in (("config", "model", "name"), ("config", "data", "name"), ("ann", "test_acc")):
        _require(result, file, *keys)
    T = _require(result, file, "snn", "T")
    curve = _require(result, file, "snn", "acc_over_t")
    if not isinstance(T, int) or T < 1 or not isinstance(curve, list) or len(curve) != T:
        raise ReportError(f"malformed {file}: snn.acc_over_t must list snn.T = {T!r} accuracies")


def load_results(sweep_dir: Path | str) -> list[dict[str, Any]]:
    """Every results.json under `sweep_dir` (any depth), each with its file in "path"."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise ReportError(f"{root} is not a directory")
    files = sorted(root.glob(f"**/{RESULTS}"), key=_natural_key)
    if not files:
        raise ReportError(f"no {RESULTS} found under {root}")
    results = []
    for file in files:
        try:
            result = json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ReportError(f"malformed {file}: {error}") from None
        _check(result, file)
        results.append({**result, "path": str(file)})
    return results


# --- rows ----------------------------------------------------------------------------------------

def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"width": 0.25}} → {"model.width": 0.25}; lists become tuples (hashable)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return flat


def _is_knob(key: str) -> bool:
    return key not in NOT_KNOBS and not key.startswith(NOT_KNOB_PREFIXES)


def _knob_order(key: str) -> tuple[int, str]:
    return (CORE_KNOBS.index(key), "") if key in CORE_KNOBS else (len(CORE_KNOBS), key)


def varied_knobs(results: Sequence[dict[str, Any]]) -> list[str]:
    """Config keys whose value differs between runs, besides T, the model and its derived keys."""
    flats = [flatten(r["config"]) for r in results]
    keys = sorted({key for flat in flats for key in flat if _is_knob(key)}, key=_knob_order)
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


def _knob_label(key: str, value: Any, gamma: Any = None) -> str:
    if key == "theta_scale":
        return theta_label(value, gamma)
    if key == "gamma":
        return f"Γ={value}"
    return f"{key}={value}"


def paper_name(config: dict[str, Any]) -> str | None:
    """The paper's Table 1 row that these knobs (p, pooling, Γ) reproduce, if any."""
    for name, knobs in PAPER_ROWS.items():
        if all(config.get(key) == value for key, value in knobs.items()):
            return name
    return None


def method_override(run: dict[str, Any]) -> str | None:
    """The `method=<name>` preset a run was started with, if any."""
    for override in run.get("overrides", []):
        if override.startswith("method="):
            return override.split("=", 1)[1]
    return None


def row_name(config: dict[str, Any], method: str | None) -> str | None:
    """Our preset's title when the run was started with one (``method``), else the paper's
    row name that the knobs reproduce, else None."""
    return OUR_METHODS[method] if method in OUR_METHODS else paper_name(config)


def row_label(knobs: dict[str, Any], config: dict[str, Any], name: str | None, shown: Sequence[str]) -> str:
    """``name`` (see row_name) plus the knobs in ``shown`` (those that tell rows of that name
    apart), else the varied knobs, else the core ones."""
    gamma = config.get("gamma")
    if name is not None:
        own = PAPER_ROWS.get(name, {})
        return ", ".join([name, *(_knob_label(k, knobs[k], gamma) for k in shown if k not in own)])
    if knobs:
        return ", ".join(_knob_label(k, v, gamma) for k, v in knobs.items())
    return ", ".join(_knob_label(k, config.get(k), gamma) for k in ("p", "pooling", "gamma", "theta_scale"))


def _sortable(value: Any) -> tuple[int, Any]:
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, "" if value is None else str(value))


# --- the table -----------------------------------------------------------------------------------

def default_Ts(results: Sequence[dict[str, Any]]) -> list[int]:
    """Each run's T, plus the paper's 16 and 32 where some run simulated that long."""
    run_Ts = {r["snn"]["T"] for r in results}
    return sorted(run_Ts | {T for T in PAPER_TS if T <= max(run_Ts)})


def _cell(runs: list[dict[str, Any]], T: int) -> tuple[Cell | None, int]:
    """The cell at T from the shortest run with ≥ T steps, and how many runs tied for it."""
    reaching = [r for r in runs if r["snn"]["T"] >= T]
    if not reaching:
        return None, 0
    shortest = min(r["snn"]["T"] for r in reaching)
    tied = [r for r in reaching if r["snn"]["T"] == shortest]
    run = tied[0]
    curve = run["snn"]["acc_over_t"][:T]
    best = max(range(T), key=lambda i: curve[i])
    energy = energy_over_t(run)
    t1 = t_within(curve, run["ann"]["test_acc"])
    return Cell(acc=100 * curve[T - 1], best_acc=100 * curve[best], best_t=best + 1,
                ann_acc=100 * run["ann"]["test_acc"], energy_ratio=energy[T - 1],
                t_within_1pt=t1, energy_within_1pt=None if t1 is None else energy[t1 - 1],
                run=run), len(tied)


def energy_over_t(run: dict[str, Any]) -> list[float | None]:
    """The run's SNN/ANN energy ratio had it stopped at t = 1..T; results written before
    energy_over_t existed only know it at their own T (None elsewhere)."""
    snn = run["snn"]
    if snn.get("energy_over_t"):
        return snn["energy_over_t"]
    return [None] * (snn["T"] - 1) + [(snn.get("energy") or {}).get("energy_ratio")]


def _notes(table: Table, results: Sequence[dict[str, Any]], fixed: dict[str, Any]) -> list[str]:
    data = ", ".join(DATA_NAMES.get(d, d) for d in table.data)
    notes = [
        f"Our data set: {data}. The paper (CIFAR100) columns are the paper's Table 1, for reference "
        f"only: {'the same data set, but' if table.data == ['cifar100'] else 'another data set, and'} "
        "our ANN recipe and width may differ.",
        "acc at T: accuracy (%) at step t = T, read from the shortest run simulated for ≥ T steps "
        "(one T=32 simulation answers T=16 and T=32).",
        "best acc over t≤T: the best accuracy at any step t ≤ T (the step in parentheses), an oracle "
        "choice of t; energy: SNN/ANN energy ratio had the run stopped at t = T, or at the row's "
        "own last step where it ran fewer (marked (T=…)) (E_AC = 0.9 pJ, E_MAC = 4.6 pJ); "
        "T to ≤ 1 pt loss: the first step whose accuracy is within 1 point of the ANN, with the "
        "energy ratio there (– : not within the run's steps).",
    ]
    gammas = {r.knobs.get("gamma", fixed.get("gamma")) for r in table.rows}
    if "theta_scale" in table.varied and 1 in gammas:
        notes.append("For Γ = 1, θ = λ and θ = λ/Γ are the same threshold: "
                     "those rows repeat one experiment.")
    elif "theta_scale" not in table.varied:
        notes.append(f"Every row uses {theta_label(fixed.get('theta_scale'))}.")
    shown = {k: v for k, v in fixed.items() if k in CORE_KNOBS}
    if shown:
        notes.append("Fixed across the sweep: "
                     + ", ".join(_knob_label(k, v) for k, v in shown.items()) + ".")
    if not any(r["snn"].get("pooling_correct_ratio") for r in results):
        notes.append("No run has pooling layers with a correct ratio: pooling_ratio.png is not drawn.")
    return notes


def build_table(results: Sequence[dict[str, Any]], Ts: Sequence[int] | None = None) -> Table:
    """Group runs into rows by the varied knobs and read each (model, T) cell."""
    if not results:
        raise ReportError("no results to report")
    longest = max(r["snn"]["T"] for r in results)
    Ts = sorted(set(Ts)) if Ts else default_Ts(results)
    too_long = [T for T in Ts if not 1 <= T <= longest]
    if too_long:
        raise ReportError(f"T={too_long[0]} is out of range: runs simulate 1..{longest} steps")
    varied = varied_knobs(results)
    flats = [flatten(r["config"]) for r in results]
    groups: dict[tuple[Any, ...], dict[str, list[dict[str, Any]]]] = {}
    for result, flat in zip(results, flats):
        key = tuple(flat.get(k) for k in varied)
        groups.setdefault(key, {}).setdefault(flat["model.name"], []).append(result)
    order = list(PAPER_ROWS)
    known = list(MODEL_NAMES)
    models = sorted({f["model.name"] for f in flats},
                    key=lambda m: (known.index(m) if m in known else len(known), m))
    fixed = {k: v for k, v in flats[0].items() if _is_knob(k) and k not in varied
             and all(f.get(k) == v for f in flats)}
    rows, duplicates = [], []
    named = []  # (knobs, config, name, runs) per row
    for key, runs in groups.items():
        first = next(iter(runs.values()))[0]
        config = flatten(first["config"])
        named.append((dict(zip(varied, key)), config, row_name(config, method_override(first)), runs))
    # A named row shows the knobs that differ between rows of the same name.
    shown = {name: [k for k in varied if len({repr(kn[k]) for kn, _, n, _ in named if n == name}) > 1]
             for name in {n for _, _, n, _ in named}}
    for knobs, config, name, runs in named:
        for model_runs in runs.values():
            model_runs.sort(key=lambda r: -r["snn"]["T"])
        paper = name if name in PAPER_ROWS else None
        row = Row(row_label(knobs, config, name, shown[name]), knobs, paper, runs)
        for model in runs:
            for T in Ts:
                cell, tied = _cell(runs[model], T)
                if cell is not None:
                    row.cells[model, T] = cell
                if tied > 1:
                    duplicates.append(f"{row.label} / {model} / T={T}")
        rows.append(row)
    rows.sort(key=lambda r: (order.index(r.paper_name) if r.paper_name else len(order),
                             [_sortable(v) for v in r.knobs.values()]))
    ann_acc = {m: sorted({round(100 * r["ann"]["test_acc"], 2) for r, f in zip(results, flats)
                          if f["model.name"] == m}) for m in models}
    data = sorted({f["data.name"] for f in flats})
    table = Table(data, models, Ts, varied, rows, ann_acc, [])
    table.notes = _notes(table, results, fixed)
    if duplicates:
        table.notes.append("Several runs share a cell (showing the first by path): "
                           + "; ".join(duplicates))
    return table


def paper_acc(row: Row, model: str, T: int) -> float | None:
    """The paper's CIFAR100 accuracy (%) for this row's configuration, if Table 1 has one."""
    return PAPER_ACC.get(row.paper_name or "", {}).get(model, {}).get(T)


# --- output ----------------------------------------------------------------------------------------

def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _md_table(header: list[str], lines: list[list[str]]) -> str:
    rule = "|" + "|".join([":---", *["---:"] * (len(header) - 1)]) + "|"
    return "\n".join(["| " + " | ".join(header) + " |", rule,
                      *("| " + " | ".join(line) + " |" for line in lines)])


def _best(cell: Cell | None) -> str:
    return "–" if cell is None else f"{cell.best_acc:.2f} (t={cell.best_t})"


def _energy(T: int | None, cell: Cell | None, last: int) -> str:
    if cell is None or cell.energy_ratio is None:
        return "–"
    return f"{cell.energy_ratio:.3f}" + ("" if T == last else f" (T={T})")


def _within(cell: Cell | None) -> str:
    if cell is None or cell.t_within_1pt is None:
        return "–"
    energy = "" if cell.energy_within_1pt is None else f" ({cell.energy_within_1pt:.3f})"
    return f"{cell.t_within_1pt}{energy}"


def to_markdown(table: Table) -> str:
    """Table 1 as markdown: accuracy at T beside the paper's, then best-over-t and energy."""
    data = ", ".join(DATA_NAMES.get(d, d) for d in table.data)
    cells = [(m, T) for m in table.models for T in table.Ts]
    paper = [(m, T) for m, T in cells if m in PAPER_ANN and T in PAPER_TS]
    if not any(r.paper_name for r in table.rows):
        paper = []
    header = ["Method", *(f"{table.model_header(m)} T={T}" for m, T in cells),
              *(f"paper ({PAPER_DATA}) {MODEL_NAMES[m]} (ANN {PAPER_ANN[m]:.2f} %) T={T}"
                for m, T in paper)]
    lines = [[row.label, *(_pct(c.acc if (c := row.cells.get(key)) else None) for key in cells),
              *(_pct(paper_acc(row, m, T)) for m, T in paper)] for row in table.rows]
    last = table.Ts[-1]
    extra_header = ["Method", *(f"{MODEL_NAMES.get(m, m)} best acc over t≤{T}" for m, T in cells),
                    *(f"{MODEL_NAMES.get(m, m)} energy ratio at T={last}" for m in table.models),
                    *(f"{MODEL_NAMES.get(m, m)} T to ≤ 1 pt loss (energy ratio)" for m in table.models)]
    extra = [[row.label, *(_best(row.cells.get(key)) for key in cells),
              *(_energy(*row.last_cell(m), last) for m in table.models),
              *(_within(row.last_cell(m)[1]) for m in table.models)] for row in table.rows]
    reference = f", then paper ({PAPER_DATA}) for reference." if paper else "."
    parts = [
        f"## Table 1 — {data}",
        f"Accuracy (%) at t = T: ours{reference}",
        _md_table(header, lines),
        "Best accuracy (%) over t ≤ T, the SNN/ANN energy ratio, and the latency to ≤ 1 point loss.",
        _md_table(extra_header, extra),
        "\n".join(f"- {note}" for note in table.notes),
    ]
    return "\n\n".join(parts) + "\n"


@dataclass(frozen=True)
class Point:
    """One operating point: a run of a row stopped at step t."""

    row: str
    model: str
    t: int
    acc: float            # accuracy (%) at t
    energy_ratio: float   # SNN/ANN energy had the run stopped at t
    run: dict[str, Any]   # the results.json (with "path")


def operating_points(table: Table, model: str) -> list[Point]:
    """Every (run, t) of `model` in the table whose energy at t is known, row by row."""
    points = []
    for row in table.rows:
        for run in row.runs.get(model, []):
            curve, energy = run["snn"]["acc_over_t"], energy_over_t(run)
            points += [Point(row.label, model, t, 100 * curve[t - 1], energy[t - 1], run)
                       for t in range(1, len(curve) + 1) if energy[t - 1] is not None]
    return points


def frontier(table: Table, model: str) -> list[Point]:
    """The Pareto front of `model`'s operating points (accuracy up, energy down), by energy."""
    points = operating_points(table, model)
    return [points[i] for i in pareto_front([(p.acc, p.energy_ratio) for p in points])]


# Overrides that do not carry over when a front point is simulated again on the full test set.
_RERUN_DROPS = ("T=", "data.limit_test_samples=", "hydra.", "hydra/", "skip_done=")


def rerun_command(point: Point) -> str:
    """`python run.py ...` that simulates this point again, on the full test set, for T = t."""
    kept = [o for o in point.run.get("overrides", []) if not o.lstrip("+~").startswith(_RERUN_DROPS)]
    return " ".join(["python run.py", *kept, f"T={point.t}"])


def frontier_csv(table: Table) -> str:
    """The Pareto front of every model as CSV: one line per point, with the command to re-run it."""
    buffer = io.StringIO()
    fields = ["model", "row", "t", "acc_pct", "energy_ratio", "ann_acc_pct", "results", "rerun"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for model in table.models:
        for point in frontier(table, model):
            writer.writerow({
                "model": model, "row": point.row, "t": point.t, "acc_pct": round(point.acc, 4),
                "energy_ratio": round(point.energy_ratio, 6),
                "ann_acc_pct": round(100 * point.run["ann"]["test_acc"], 4),
                "results": point.run["path"], "rerun": rerun_command(point),
            })
    return buffer.getvalue()


def csv_rows(table: Table) -> list[dict[str, Any]]:
    """One dict per (row, model, T) cell: knobs, accuracies (%), energy ratio, paper value."""
    knob_keys = [*CORE_KNOBS, *(k for k in table.varied if k not in CORE_KNOBS)]
    out = []
    for row in table.rows:
        for model in table.models:
            for T in table.Ts:
                cell = row.cells.get((model, T))
                if cell is None:
                    continue
                config = flatten(cell.run["config"])
                out.append({
                    "data": config["data.name"], "model": model, "row": row.label, "T": T,
                    "acc_pct": round(cell.acc, 4), "best_acc_pct": round(cell.best_acc, 4),
                    "best_t": cell.best_t, "ann_acc_pct": round(cell.ann_acc, 4),
                    "energy_ratio": cell.energy_ratio,
                    "t_within_1pt": cell.t_within_1pt,
                    "energy_ratio_within_1pt": cell.energy_within_1pt,
                    f"paper_{PAPER_DATA.lower()}_acc_pct": paper_acc(row, model, T),
                    "run_T": cell.run["snn"]["T"],
                    "theta_scale_used": cell.run["snn"].get("theta_scale"),
                    **{key: config.get(key) for key in knob_keys}, "results": cell.run["path"],
                })
    return out


def to_csv(table: Table) -> str:
    """Table 1 as CSV text (see csv_rows); empty values where a field is unknown."""
    rows = csv_rows(table)
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def _write_text(path: Path, text: str) -> Path:
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def write_report(sweep_dir: Path | str, out_dir: Path | str | None = None,
                 Ts: Sequence[int] | None = None) -> dict[str, Path]:
    """Write table1.md, table1.csv, frontier.csv and the figures into `out_dir` (default: the
    sweep dir)."""
    from burstsnn.report import figures  # matplotlib only when drawing

    table = build_table(load_results(sweep_dir), Ts)
    out = Path(out_dir if out_dir is not None else sweep_dir)
    written = {
        "table1.md": _write_text(out / "table1.md", to_markdown(table)),
        "table1.csv": _write_text(out / "table1.csv", to_csv(table)),
        "frontier.csv": _write_text(out / "frontier.csv", frontier_csv(table)),
    }
    for name in FIGURES:
        path = figures.PLOTS[name](table, out / name)
        if path is not None:
            written[name] = path
    return written


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: write the report of a sweep dir; print the table and the files written."""
    parser = argparse.ArgumentParser(prog="python -m burstsnn.report",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path,
                        help="Hydra multirun dir (or a run dir) with results.json files")
    parser.add_argument("--out", type=Path, default=None, help="output dir (default: the sweep dir)")
    parser.add_argument("--T", type=int, nargs="+", dest="Ts", metavar="T",
                        help="T columns (default: 16 and 32 when reached, plus each run's T)")
    args = parser.parse_args(argv)
    try:
        written = write_report(args.sweep_dir, args.out, args.Ts)
    except ReportError as error:
        raise SystemExit(f"report: {error}") from None
    print(written["table1.md"].read_text(encoding="utf-8"))
    for path in written.values():
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
