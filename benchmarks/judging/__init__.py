"""Whether a run passes: thresholds and gates, a metric decided against a baseline or a
base version by statistics, lost optimizations, --perf-against's base versions.
"""
