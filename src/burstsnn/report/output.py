"""Table 1 as text: markdown (beside the paper's numbers) and CSV (one line per cell)."""

from __future__ import annotations

import csv
import io
from typing import Any

from burstsnn.report.paper import PAPER_ANN, PAPER_DATA, PAPER_TS
from burstsnn.report.rows import CORE_KNOBS, flatten
from burstsnn.report.table import DATA_NAMES, MODEL_NAMES, Cell, Table, paper_acc


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _md_table(header: list[str], lines: list[list[str]]) -> str:
    rule = "|" + "|".join([":---", *["---:"] * (len(header) - 1)]) + "|"
    return "\n".join(["| " + " | ".join(header) + " |", rule,
                      *("| " + " | ".join(line) + " |" for line in lines)])


def _acc(cell: Cell | None) -> str:
    if cell is None or cell.acc_std is None:
        return _pct(None if cell is None else cell.acc)
    return f"{cell.acc:.2f} ± {cell.acc_std:.2f}"


def _best(cell: Cell | None) -> str:
    return "–" if cell is None else f"{cell.best_acc:.2f} (t={cell.best_t})"


def _energy(T: int | None, cell: Cell | None, last: int) -> str:
    if cell is None or cell.energy_ratio is None:
        return "–"
    return f"{cell.energy_ratio:.3f}" + ("" if T == last else f" (T={T})")


def _agreement(T: int | None, cell: Cell | None, last: int) -> str:
    if cell is None or cell.agreement is None:
        return "–"
    return f"{cell.agreement:.2f}" + ("" if T == last else f" (T={T})")


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
    lines = [[row.label, *(_acc(row.cells.get(key)) for key in cells),
              *(_pct(paper_acc(row, m, T)) for m, T in paper)] for row in table.rows]
    last = table.Ts[-1]
    extra_header = ["Method", *(f"{MODEL_NAMES.get(m, m)} best acc over t≤{T}" for m, T in cells),
                    *(f"{MODEL_NAMES.get(m, m)} energy ratio at T={last}" for m in table.models),
                    *(f"{MODEL_NAMES.get(m, m)} agreement with ANN (%) at T={last}" for m in table.models),
                    *(f"{MODEL_NAMES.get(m, m)} T to ≤ 1 pt loss (energy ratio)" for m in table.models)]
    extra = [[row.label, *(_best(row.cells.get(key)) for key in cells),
              *(_energy(*row.last_cell(m), last) for m in table.models),
              *(_agreement(*row.last_cell(m), last) for m in table.models),
              *(_within(row.last_cell(m)[1]) for m in table.models)] for row in table.rows]
    reference = f", then paper ({PAPER_DATA}) for reference." if paper else "."
    parts = [
        f"## Table 1 — {data}",
        f"Accuracy (%) at t = T: ours{reference}",
        _md_table(header, lines),
        "Best accuracy (%) over t ≤ T, the SNN/ANN energy ratio, the agreement with the ANN (images "
        "whose SNN prediction is the ANN's) and the latency to ≤ 1 point loss.",
        _md_table(extra_header, extra),
        "\n".join(f"- {note}" for note in table.notes),
    ]
    return "\n\n".join(parts) + "\n"


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
                    "acc_pct": round(cell.acc, 4),
                    "acc_std_pct": None if cell.acc_std is None else round(cell.acc_std, 4),
                    "seeds": len(cell.seeds), "best_acc_pct": round(cell.best_acc, 4),
                    "best_t": cell.best_t, "ann_acc_pct": round(cell.ann_acc, 4),
                    "energy_ratio": cell.energy_ratio,
                    "agreement_pct": None if cell.agreement is None else round(cell.agreement, 4),
                    "t_within_1pt": cell.t_within_1pt,
                    "energy_ratio_within_1pt": cell.energy_within_1pt,
                    f"paper_{PAPER_DATA.lower()}_acc_pct": paper_acc(row, model, T),
                    "run_T": cell.run["snn"]["T"],
                    "theta_scale_used": cell.run["snn"].get("theta_scale"),
                    **{key: config.get(key) for key in knob_keys},
                    "seed": " ".join(map(str, cell.seeds)), "results": cell.run["path"],
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
