"""``python -m burstsnn.report <sweep dir>``: see burstsnn.report.write."""

from burstsnn.report.write import main

main()
