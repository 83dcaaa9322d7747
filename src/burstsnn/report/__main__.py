"""``python -m burstsnn.report <sweep dir>``."""

from burstsnn.report.table import main

main()
