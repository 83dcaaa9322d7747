"""Write a sweep's report: table1.md, table1.csv, frontier.csv and the figures; the CLI.

    python -m burstsnn.report <sweep_dir> [--out DIR] [--T 16 32]

Reads every `results.json` under the sweep dir (a Hydra multirun dir, nested dirs, or one
run dir). Columns are models × T; rows are the knobs that varied across the sweep.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from burstsnn.atomic import write_atomic
from burstsnn.report.load import ReportError, jobs_without_results, load_results
from burstsnn.report.output import to_csv, to_markdown
from burstsnn.report.points import frontier_csv
from burstsnn.report.table import build_table


def _write_text(path: Path, text: str) -> Path:
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def write_report(sweep_dir: Path | str, out_dir: Path | str | None = None,
                 Ts: Sequence[int] | None = None) -> dict[str, Path]:
    """Write table1.md, table1.csv, frontier.csv and the figures into `out_dir` (default: the
    sweep dir)."""
    from burstsnn.report.figures import FIGURES  # matplotlib only when drawing

    table = build_table(load_results(sweep_dir), Ts)
    out = Path(out_dir if out_dir is not None else sweep_dir)
    written = {
        "table1.md": _write_text(out / "table1.md", to_markdown(table)),
        "table1.csv": _write_text(out / "table1.csv", to_csv(table)),
        "frontier.csv": _write_text(out / "frontier.csv", frontier_csv(table)),
    }
    for name, figure in FIGURES.items():
        path = figure.draw(table, out / name)
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
    missing = jobs_without_results(args.sweep_dir)
    if missing:
        names = ", ".join(str(job.relative_to(args.sweep_dir)) for job in missing)
        print(f"{len(missing)} job folder(s) without results.json (failed or unfinished), not in the report: {names}")
