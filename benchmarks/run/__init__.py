"""The pytest run: its options, what it keeps between hooks, its result derived once,
Ctrl-C and bad data mid-run, and its end-of-run sections in the terminal.
`benchmarks.plugin` holds the hooks that glue them to pytest and pytest-benchmark.
"""
