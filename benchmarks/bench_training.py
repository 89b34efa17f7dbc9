"""Benchmarks: full training epochs per variant, the ceiling, and each pipeline alone.

Thin cases over `benchmarks.session.PerfSession`, which owns how a round is
set up and run, and its `benchmarks.records.RunRecords`, which keeps what it
measured. Every registered variant is benchmarked (or the ``--perf-variants``
subset); naive runs first.
"""

from __future__ import annotations

import contextlib

import pytest

import pipelines
from benchmarks.plugin import SERVICE_VARIANT, perf_session, service_setup
from pipelines.service import LocalService

# Traced and untraced runs alternate, so drifts in machine load hit both
# alike, and which goes first alternates too (untraced-traced, then
# traced-untraced), so that whatever the run after another pays hits both
# alike. Single epochs on this project's two-core machine vary by 20% and
# more from run to run, hence several pairs and their medians.
OVERHEAD_PAIRS = 4
# Traced runs: one epoch shows every stage; a second shows what a cache stops
# doing, so variants with a cache get two. More adds time (the suite has five
# minutes), not insight: without a cache every epoch runs the same stages.
TIMELINE_EPOCHS = {"cached": 2, "uncached": 1}


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
        perf.records.training(benchmark.name, "ceiling", runs, kind="ceiling")
    )


def skip_if_served(variant_name: str) -> None:
    """A variant that needs the tf.data service is timed by `test_data_service` only."""
    if pipelines.get(variant_name).served:
        pytest.skip(f"{variant_name} goes through the tf.data service: timed by test_data_service")


def timed_rounds(benchmark, perf, variant_name: str, work, service: str | None = None) -> list:
    """Time ``work(dataset)`` over the profile's rounds, each on a freshly built dataset."""
    if service is None:
        skip_if_served(variant_name)
    results = []

    def setup():
        # A fresh build per round: no cache carries over from the previous one.
        return (perf.build(variant_name, service),), {}

    def run(dataset):
        results.append(work(dataset))

    benchmark.pedantic(run, setup=setup, rounds=perf.options.profile.rounds, warmup_rounds=0)
    return results


def test_training(benchmark, perf, variant_name):
    """Full epochs of training and test evaluation through one variant."""
    runs = timed_rounds(benchmark, perf, variant_name, perf.train)
    benchmark.extra_info.update(perf.records.training(benchmark.name, variant_name, runs))


def test_pipeline(benchmark, perf, variant_name):
    """One epoch of the variant's pipeline with no model: how fast it can feed."""
    runs = timed_rounds(benchmark, perf, variant_name, perf.iterate)
    benchmark.extra_info.update(perf.records.pipeline(benchmark.name, variant_name, runs))


def test_data_service(benchmark, perf, service_workers, request):
    """The `distributed` variant through the tf.data service: local workers, or an external one."""
    external = request.config.getoption("perf_data_service")
    with contextlib.ExitStack() as stack:
        local = None if external else stack.enter_context(LocalService(service_workers))
        address = external or local.address
        with perf.served(local):
            runs = timed_rounds(benchmark, perf, SERVICE_VARIANT, perf.train, service=address)
        for stats in runs:
            perf.check_complete(SERVICE_VARIANT, stats, service_workers or 1, address)
    label = f"{SERVICE_VARIANT} ({service_setup(service_workers)})"
    info = perf.records.training(benchmark.name, label, runs)
    info.update(service=address, service_workers=service_workers or None)
    benchmark.extra_info.update(info)


def test_timeline(benchmark, perf, variant_name):
    """A traced run of the variant (not gated): its timeline and bottleneck analysis."""
    skip_if_served(variant_name)
    results = []
    caches = pipelines.get(variant_name).caches
    epochs = min(perf.options.epochs, TIMELINE_EPOCHS["cached" if caches else "uncached"])
    benchmark.pedantic(
        lambda: results.append(perf.train_traced(variant_name, epochs)),
        rounds=1,
        iterations=1,
        warmup_rounds=0,
    )
    stats, timeline = results[-1]
    info = perf.records.timeline(
        benchmark.name, variant_name, stats, timeline, perf.fits_in_memory()
    )
    benchmark.extra_info.update(info)


def test_tracing_overhead(benchmark, perf):
    """What tracing costs: traced and untraced training of `optimized`, alternately."""
    variant = "optimized" if "optimized" in perf.options.variants else perf.options.variants[0]
    untraced, traced = [], []

    def run():
        for pair in range(OVERHEAD_PAIRS):
            for is_traced in (False, True) if pair % 2 == 0 else (True, False):
                if is_traced:
                    traced.append(perf.train_traced(variant)[0])
                else:
                    untraced.append(perf.train(perf.build(variant)))

    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(
        perf.records.tracing_overhead(benchmark.name, variant, untraced, traced)
    )
