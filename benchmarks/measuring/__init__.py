"""How a run measures: the session and its trials, interleaved passes, head and base
epoch by epoch, start-up apart from steady state, the core budget, the typed records
of what each benchmark measured, paired ratios and their intervals.
"""
