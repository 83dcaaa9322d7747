"""Operating points (a run stopped at step t), their Pareto front over accuracy and energy, and
the command that simulates each front point again."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from burstsnn.measure.frontier import pareto_front
from burstsnn.report.load import energy_over_t
from burstsnn.report.table import Table


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
_RERUN_DROPS = ("T=", "data.limit_test_samples=", "data.eval_split=", "hydra.", "hydra/", "skip_done=")


def rerun_command(point: Point) -> str:
    """`python run.py ...` that simulates this point again, on the full test set (a search
    scores on held-out validation images), for T = t."""
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
