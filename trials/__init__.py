"""Commands that study the suite itself, apart from what a user runs: base against head
in two processes (``python -m trials.ab``), gate and power trials, the runtime view's
trials, injected regressions (``-p trials.inject``), and the harness they share to run
the suite in a process of its own. They import the suite; nothing in pipelines/,
models/ or benchmarks/ imports them (tests/test_codebase.py).
"""
