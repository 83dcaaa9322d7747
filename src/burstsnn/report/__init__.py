"""The report station: sweep results -> Table 1 (markdown, CSV), the figures and the
accuracy-energy frontier. ``python -m burstsnn.report <sweep dir>``; in Python::

    from burstsnn.report import write_report
    paths = write_report(sweep_dir)   # {"table1.md": Path, ..., "frontier.png": Path}
"""

from burstsnn.report.load import ReportError, load_results
from burstsnn.report.table import build_table
from burstsnn.report.write import write_report

__all__ = ["ReportError", "build_table", "load_results", "write_report"]
