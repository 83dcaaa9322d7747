"""Sweep results → Table 1: runs grouped into rows by the knobs that varied, a cell per
(model, T) read from each row's runs, and the notes printed beside it."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from burstsnn.measure.frontier import t_within
from burstsnn.report.load import ReportError, energy_over_t
from burstsnn.report.paper import PAPER_ACC, PAPER_ROWS, PAPER_TS, row_name
from burstsnn.report.rows import (
    CORE_KNOBS, REPEAT_KEY, flatten, is_knob, knob_label, row_label, sortable, theta_label, varied_knobs,
)

MODEL_NAMES = {"vgg16": "VGG16", "resnet20": "ResNet20"}
DATA_NAMES = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar10": "CIFAR10",
              "cifar100": "CIFAR100", "imagenet": "ImageNet"}


@dataclass(frozen=True)
class Cell:
    """One (row, model, T) entry, read from the shortest run simulated for at least T steps;
    where runs of that length differ only in their seed, from their mean curves (accuracy,
    energy, agreement over t and the ANN's accuracy averaged over the seeds)."""

    acc: float                   # accuracy (%) at t = T
    best_acc: float              # best accuracy (%) over t ≤ T ...
    best_t: int                  # ... reached at this step
    ann_acc: float               # the run's ANN test accuracy (%)
    energy_ratio: float | None   # SNN/ANN energy had the run stopped at t = T
    t_within_1pt: int | None     # first t ≤ T within 1 point of the ANN (None: not reached)
    energy_within_1pt: float | None  # SNN/ANN energy at that t
    agreement: float | None      # share (%) of images whose prediction at t = T is the ANN's
    run: dict[str, Any]          # the results.json it was read from (with "path"; the first seed's)
    seeds: tuple[Any, ...]       # the seeds of the runs averaged (one run per seed)
    acc_std: float | None        # sample standard deviation (%) of acc over the seeds (None: one seed)


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


def default_Ts(results: Sequence[dict[str, Any]]) -> list[int]:
    """Each run's T, plus the paper's 16 and 32 where some run simulated that long."""
    run_Ts = {r["snn"]["T"] for r in results}
    return sorted(run_Ts | {T for T in PAPER_TS if T <= max(run_Ts)})


def _mean_curve(curves: Sequence[Sequence[float | None]]) -> list[float | None]:
    """Step-wise mean of equal-length curves; None at a step where any curve has none."""
    return [None if None in values else statistics.fmean(values) for values in zip(*curves)]


def _cell(runs: list[dict[str, Any]], T: int) -> tuple[Cell | None, int]:
    """The cell at T from the shortest runs with ≥ T steps (one per seed, averaged), and how
    many of those runs repeat a seed (several runs for one cell: the first by path is read)."""
    reaching = [r for r in runs if r["snn"]["T"] >= T]
    if not reaching:
        return None, 0
    shortest = min(r["snn"]["T"] for r in reaching)
    per_seed: dict[Any, dict[str, Any]] = {}
    for run in reaching:
        if run["snn"]["T"] == shortest:
            per_seed.setdefault(run["config"].get(REPEAT_KEY), run)
    repeats = sum(r["snn"]["T"] == shortest for r in reaching) - len(per_seed)
    seeds = list(per_seed.values())
    curve = _mean_curve([r["snn"]["acc_over_t"][:T] for r in seeds])
    energy = _mean_curve([energy_over_t(r)[:T] for r in seeds])
    agreements = [_agreement(r, T) for r in seeds]
    ann_acc = statistics.fmean(r["ann"]["test_acc"] for r in seeds)
    best = max(range(T), key=lambda i: curve[i])
    t1 = t_within(curve, ann_acc)
    std = statistics.stdev(100 * r["snn"]["acc_over_t"][T - 1] for r in seeds) if len(seeds) > 1 else None
    return Cell(acc=100 * curve[T - 1], best_acc=100 * curve[best], best_t=best + 1,
                ann_acc=100 * ann_acc, energy_ratio=energy[T - 1],
                t_within_1pt=t1, energy_within_1pt=None if t1 is None else energy[t1 - 1],
                agreement=None if None in agreements else statistics.fmean(agreements),
                run=seeds[0], seeds=tuple(per_seed), acc_std=std), repeats


def _agreement(run: dict[str, Any], T: int) -> float | None:
    """The run's agreement with its ANN (%) at t = T (None in results from before it was measured)."""
    curve = run["snn"].get("agreement_over_t")
    return None if curve is None else 100 * curve[T - 1]


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
                     + ", ".join(knob_label(k, v) for k, v in shown.items()) + ".")
    if any(flatten(r["config"]).get("data.eval_split") == "val" for r in results):
        notes.append("Runs with data.eval_split=val (a search's) are scored on held-out training images, "
                     "not on the test set: re-run them on the test set before reporting (frontier.csv).")
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
    fixed = {k: v for k, v in flats[0].items() if is_knob(k) and k not in varied
             and all(f.get(k) == v for f in flats)}
    rows, duplicates = [], []
    named = []  # (knobs, config, name, runs) per row
    for key, runs in groups.items():
        first = next(iter(runs.values()))[0]
        config = flatten(first["config"])
        named.append((dict(zip(varied, key)), config, row_name(config, first.get("method")), runs))
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
                cell, repeats = _cell(runs[model], T)
                if cell is not None:
                    row.cells[model, T] = cell
                if repeats:
                    duplicates.append(f"{row.label} / {model} / T={T}")
        rows.append(row)
    rows.sort(key=lambda r: (order.index(r.paper_name) if r.paper_name else len(order),
                             [sortable(v) for v in r.knobs.values()]))
    ann_acc = {m: sorted({round(100 * r["ann"]["test_acc"], 2) for r, f in zip(results, flats)
                          if f["model.name"] == m}) for m in models}
    data = sorted({f["data.name"] for f in flats})
    table = Table(data, models, Ts, varied, rows, ann_acc, [])
    table.notes = _notes(table, results, fixed)
    seeds = sorted({r["config"].get(REPEAT_KEY) for r in results}, key=sortable)
    if any(len(cell.seeds) > 1 for row in rows for cell in row.cells.values()):
        table.notes.append(f"Runs that differ only in their seed ({', '.join(map(str, seeds))}) are one row: "
                           "accuracy at T is their mean ± sample standard deviation; best accuracy, "
                           "energy, agreement and latency are read from their mean curves over t.")
    if duplicates:
        table.notes.append("Several runs with the same seed share a cell (showing the first by path): "
                           + "; ".join(duplicates))
    return table


def paper_acc(row: Row, model: str, T: int) -> float | None:
    """The paper's CIFAR100 accuracy (%) for this row's configuration, if Table 1 has one."""
    return PAPER_ACC.get(row.paper_name or "", {}).get(model, {}).get(T)
