"""Saved runs: pytest-benchmark's storage, the schema they are read back through, and
the one adapter to pytest-benchmark's internals.
"""
