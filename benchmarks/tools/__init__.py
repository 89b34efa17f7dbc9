"""Commands that study the suite itself: base against head in two processes
(``python -m benchmarks.tools.ab``), gate and power trials, injected regressions.
"""
