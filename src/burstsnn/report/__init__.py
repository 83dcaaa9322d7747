"""Sweep results -> Table 1, figures and the frontier: ``python -m burstsnn.report <sweep dir>``."""

from burstsnn.report.table import FIGURES, ReportError, build_table, load_results, write_report

__all__ = ["FIGURES", "ReportError", "build_table", "load_results", "write_report"]
