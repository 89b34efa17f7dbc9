"""Where the time goes and what to do: the bottleneck analysis of a traced run, why a
variant shows no gain, suggestions verified by measurement.
"""
