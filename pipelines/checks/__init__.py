"""Checking a variant against its contract: on a tagged source, with stated error rates.

`contract.check_variant` is what the property tests run on every variant
and what ``--perf-verify-suggestions`` runs on each changed copy of one;
`tagged` makes the source whose images carry their ids; `chance` holds the
statistics that keep the randomness checks at a stated false-failure rate.
"""
