"""Benchmarks: full training epochs per variant, the ceiling, and each pipeline alone.

Thin cases over `benchmarks.session.PerfSession`, which owns how a round is
set up, run and recorded. Every registered variant is benchmarked (or the
``--perf-variants`` subset); naive runs first.
"""

from __future__ import annotations

import pytest

from benchmarks.plugin import perf_session

# Alternating traced and untraced runs, so drifts in machine load hit both alike.
OVERHEAD_PAIRS = 3


@pytest.fixture(scope="session")
def perf(request: pytest.FixtureRequest):
    session = perf_session(request.config)
    session.warm_up()
    return session


def rounds(perf) -> dict:
    return {"rounds": perf.options.profile.rounds, "iterations": 1, "warmup_rounds": 0}


def test_ceiling(benchmark, perf):
    """The same model on batches already in memory: the fastest it can train here."""
    batches = perf.in_memory_batches()
    runs = []

    def run():
        runs.append(perf.train(batches))

    benchmark.pedantic(run, **rounds(perf))
    benchmark.extra_info.update(
        perf.record_training(benchmark.name, "ceiling", runs, kind="ceiling")
    )


def timed_rounds(benchmark, perf, variant_name: str, work) -> list:
    """Time ``work(dataset)`` over the profile's rounds, each on a freshly built dataset."""
    results = []

    def setup():
        # A fresh build per round: no cache carries over from the previous one.
        return (perf.build(variant_name),), {}

    def run(dataset):
        results.append(work(dataset))

    benchmark.pedantic(run, setup=setup, rounds=perf.options.profile.rounds, warmup_rounds=0)
    return results


def test_training(benchmark, perf, variant_name):
    """Full epochs of training and test evaluation through one variant."""
    runs = timed_rounds(benchmark, perf, variant_name, perf.train)
    benchmark.extra_info.update(perf.record_training(benchmark.name, variant_name, runs))


def test_pipeline(benchmark, perf, variant_name):
    """One epoch of the variant's pipeline with no model: how fast it can feed."""
    runs = timed_rounds(benchmark, perf, variant_name, perf.iterate)
    benchmark.extra_info.update(perf.record_pipeline(benchmark.name, variant_name, runs))


def test_timeline(benchmark, perf, variant_name):
    """A traced run of the variant (not gated): its timeline and bottleneck analysis."""
    results = []
    benchmark.pedantic(
        lambda: results.append(perf.train_traced(variant_name)),
        rounds=1,
        iterations=1,
        warmup_rounds=0,
    )
    stats, timeline = results[-1]
    benchmark.extra_info.update(perf.record_timeline(benchmark.name, variant_name, stats, timeline))


def test_tracing_overhead(benchmark, perf):
    """What tracing costs: traced and untraced training of `optimized`, alternately."""
    variant = "optimized" if "optimized" in perf.options.variants else perf.options.variants[0]
    untraced, traced = [], []

    def run():
        for _ in range(OVERHEAD_PAIRS):
            untraced.append(sum(s.wall_s for s in perf.train(perf.build(variant))))
            traced.append(sum(s.wall_s for s in perf.train_traced(variant)[0]))

    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(
        perf.record_tracing_overhead(benchmark.name, variant, untraced, traced)
    )
