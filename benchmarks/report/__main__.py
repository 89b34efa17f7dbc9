"""``python -m benchmarks.report``: the HTML report from saved runs (`benchmarks.report.page`)."""

import sys

from benchmarks.report.page import main

sys.exit(main())
