"""What a run shows: the HTML report (``python -m benchmarks.report``, `page`), its figures,
and the end-of-run tables in the terminal (`summary`).
"""
