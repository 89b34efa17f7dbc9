"""Benchmarks: full training epochs per variant, the ceiling, and each pipeline alone.

Thin cases over `benchmarks.measuring.session.PerfSession`, which owns how a round is
set up and run, and its `benchmarks.measuring.records.RunRecords`, which keeps what it
measured as typed records (they become each benchmark's ``extra_info`` when
the run is saved: `benchmarks.plugin.pytest_benchmark_update_json`). Every
registered variant is benchmarked (or the ``--perf-variants`` subset). The
timed trials (the ceiling, training and pipeline of each variant, the traced
run) are measured together in randomized interleaved passes
(`benchmarks.measuring.passes`); each benchmark then reports one round per pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import pytest

import pipelines
from benchmarks.diagnosing.verify import analyses_so_far, verify
from benchmarks.measuring.pass_figures import CEILING
from benchmarks.measuring.passes import UNOBSERVED, Passes, Trial
from benchmarks.plugin import SERVICE_VARIANT, perf_session, service_setup
from benchmarks.report import page as report_names
from benchmarks.saving.bench_adapter import report_rounds
from pipelines.service import LocalService

# A minute or more in all: the test job starts this module first (conftest.py).
pytestmark = pytest.mark.slow

# Traced runs: one epoch shows every stage; a second shows what a cache stops
# doing, so variants with a cache get two. More adds time (the suite has five
# minutes), not insight: without a cache every epoch runs the same stages.
TIMELINE_EPOCHS = {"cached": 2, "uncached": 1}
# Benchmarks measured in the interleaved passes, and the kind of trial each runs.
PASS_KINDS = {"test_ceiling": "ceiling", "test_training": "training", "test_pipeline": "pipeline"}


@pytest.fixture(scope="session")
def perf(request: pytest.FixtureRequest):
    session = perf_session(request.config)
    session.warm_up()
    return session


def overhead_variant(perf) -> str:
    """The variant whose tracing overhead is measured: `optimized`, or the first selected."""
    return "optimized" if "optimized" in perf.options.variants else perf.options.variants[0]


def planned_trials(items: Iterable[pytest.Item], perf) -> set[Trial]:
    """What the run's selected (and not skipped) benchmarks need timed in the passes."""
    trials = set()
    for item in items:
        name = getattr(item, "originalname", item.name)
        if item.get_closest_marker("skip") or name not in {*PASS_KINDS, "test_tracing_overhead"}:
            continue
        if name == "test_ceiling":
            trials.add(CEILING)
        elif name == "test_tracing_overhead":
            variant = overhead_variant(perf)
            # Training with and without reading tf.data's runtime model, and traced.
            trials |= {Trial(kind, variant) for kind in ("traced", "training", UNOBSERVED)}
        else:
            variant = item.callspec.params["variant_name"]
            if not pipelines.get(variant).served:
                trials.add(Trial(PASS_KINDS[name], variant))
    return trials


@pytest.fixture(scope="session")
def passes(perf, request: pytest.FixtureRequest) -> Passes:
    """Every timed benchmark of the run, measured in randomized interleaved passes.

    The first benchmark to ask runs them all; each then reports its own rounds.
    """
    return perf.measure(planned_trials(request.session.items, perf))


def skip_if_served(variant_name: str) -> None:
    """A variant that needs the tf.data service is timed by `test_data_service` only."""
    if pipelines.get(variant_name).served:
        pytest.skip(f"{variant_name} goes through the tf.data service: timed by test_data_service")


def test_ceiling(benchmark, perf, passes):
    """The same model on batches already in memory: the fastest it can train here."""
    report_rounds(benchmark, passes.seconds[CEILING])
    perf.records.training(benchmark.name, "ceiling", passes.of(CEILING), kind="ceiling")


def test_training(benchmark, perf, passes, variant_name):
    """Full epochs of training and test evaluation through one variant."""
    skip_if_served(variant_name)
    trial = Trial("training", variant_name)
    report_rounds(benchmark, passes.seconds[trial])
    reference = pipelines.get(variant_name).contract.accuracy_reference
    legend = perf.legend(variant_name)
    perf.records.training(
        benchmark.name, variant_name, passes.of(trial), reference=reference, legend=legend
    )


def test_pipeline(benchmark, perf, passes, variant_name):
    """One epoch of the variant's pipeline with no model: how fast it can feed."""
    skip_if_served(variant_name)
    trial = Trial("pipeline", variant_name)
    report_rounds(benchmark, passes.seconds[trial])
    perf.records.pipeline(benchmark.name, variant_name, passes.of(trial))


def service_rounds(benchmark, perf, address: str) -> list:
    """Time training through the tf.data service once: its worker processes are set up
    for it alone, so it is not one of the interleaved trials, and its ratios are single
    measurements (no interval)."""
    results = []

    def setup():
        return (perf.build(SERVICE_VARIANT, address),), {}

    def run(dataset):
        results.append(perf.train(dataset))

    benchmark.pedantic(run, setup=setup, rounds=1, warmup_rounds=0)
    return results


def test_data_service(benchmark, perf, service_workers, request):
    """The `distributed` variant through the tf.data service: local workers, or an external one."""
    external = request.config.getoption("perf_data_service")
    with contextlib.ExitStack() as stack:
        local = None if external else stack.enter_context(LocalService(service_workers))
        address = external or local.address
        with perf.served(local):
            runs = service_rounds(benchmark, perf, address)
        for stats in runs:
            perf.check_complete(SERVICE_VARIANT, stats, service_workers or 1, address)
    label = f"{SERVICE_VARIANT} ({service_setup(service_workers)})"
    reference = pipelines.get(SERVICE_VARIANT).contract.accuracy_reference
    service = (address, service_workers or None)
    perf.records.training(benchmark.name, label, runs, service=service, reference=reference)


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
    perf.records.timeline(benchmark.name, variant_name, stats, timeline, perf.fits_in_memory())


@pytest.fixture(scope="session")
def verification(perf):
    """--perf-verify-suggestions: the selected variants' suggestions, each applied to a copy,
    checked against the contract and timed, all in one set of interleaved passes."""
    variants = [name for name in perf.options.variants if not pipelines.get(name).served]
    return verify(perf, analyses_so_far(perf.records, variants))


def test_suggestions(benchmark, perf, verification, variant_name):
    """The variant's suggested changes, verified: its rounds are the best copy's epochs."""
    skip_if_served(variant_name)
    outcomes, passes = verification
    outcome = outcomes[variant_name]
    if not outcome.best_seconds:
        pytest.skip(f"{variant_name}: {outcome.verdict}")
    report_rounds(benchmark, outcome.best_seconds)
    verified = [v.to_dict() for v in outcome.verified]
    perf.records.suggestions(benchmark.name, variant_name, verified, outcome.verdict, passes)


def test_tracing_overhead(benchmark, perf, passes):
    """What tracing costs: traced against untraced training, paired within each pass (what
    reading tf.data's runtime model costs is the training benchmark's ``runtime_overhead``)."""
    variant = overhead_variant(perf)
    traced, untraced = Trial("traced", variant), Trial(UNOBSERVED, variant)
    report_rounds(benchmark, passes.seconds[traced])
    perf.records.tracing_overhead(benchmark.name, variant, passes.of(untraced), passes.of(traced))


def test_profiler_capture(benchmark, perf, variant_name):
    """--perf-profiler: one epoch of the variant under the TensorFlow profiler, for xprof or
    TensorBoard. Last of the run, so that no measured or traced run follows a profiler
    session in the same process (whatever the profiler leaves behind cannot reach them)."""
    skip_if_served(variant_name)
    folder = perf.options.capture_dir / report_names.file_stem(variant_name)
    benchmark.pedantic(
        lambda: perf.capture_epoch(variant_name, folder), rounds=1, iterations=1, warmup_rounds=0
    )
    perf.records.capture(benchmark.name, variant_name, str(folder))
