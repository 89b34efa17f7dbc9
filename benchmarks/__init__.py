"""pytest-benchmark fixtures, regression thresholds and the report generator."""
