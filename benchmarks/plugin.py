"""The suite's pytest plugin: its hooks, gluing the run's jobs to pytest and pytest-benchmark.

Here: loading a user's plugin files and --perf-against's bases, variant
parametrization, collection (the core budget, what cannot run), the session,
what a saved run holds, and the gates at the end. The jobs themselves live in
`benchmarks.run` (options, state, interruption, the terminal's sections) and
the rooms beside it. Loaded from the root ``conftest.py``.
"""

from __future__ import annotations

# Hooks that live with the job they do (`benchmarks.run`); pytest finds them here.
__all__ = ["pytest_addoption", "pytest_terminal_summary"]

import contextlib
import dataclasses
import re
import sys
from pathlib import Path
from typing import Any

import pytest

import models
import pipelines
from benchmarks.judging import compare, gates
from benchmarks.judging.against import base_versions, check_bases
from benchmarks.measuring.cores import apply_core_budget
from benchmarks.measuring.progress import ProgressLine
from benchmarks.measuring.session import PerfOptions, PerfSession, machine_details
from benchmarks.report import page as report
from benchmarks.run.interruption import Interruption, stop_run
from benchmarks.run.options import perf_options, pytest_addoption, selected_variants
from benchmarks.run.state import (
    AGAINST_PROBLEMS_KEY,
    PAIRS_KEY,
    SESSION_KEY,
    STATE_KEY,
    RunState,
    measurement_doubts,
    run_result,
)
from benchmarks.run.terminal import pytest_terminal_summary
from benchmarks.saving import bench_adapter, schema
from benchmarks.saving import storage as storage_files
from pipelines.data.opening import open_data
from pipelines.errors import DataError, InputError
from pipelines.functions import FunctionPipeline
from pipelines.plugins import load_plugins
from pipelines.steps import image_shape_for


def pytest_configure(config: pytest.Config) -> None:
    bench_adapter.check_version()
    config.pluginmanager.register(Interruption(config), "perf-interruption")
    # A user's registrations, before anything reads the registry (collection).
    plugins = config.getoption("perf_plugin", None) or []
    threads = config.getoption("perf_model_threads", None)
    if plugins and (threads is None or threads >= 0):
        # A user's file may run a TensorFlow op as it loads (a module-level
        # tf.constant), which starts the runtime: the model's threads are set
        # first. The collection hook sets them again, or says why it cannot.
        with contextlib.suppress(RuntimeError):
            apply_core_budget(threads)
    try:
        load_plugins(plugins)
        pairs, problems = base_versions(plugins, config.getoption("perf_against", None))
        config.stash[PAIRS_KEY], config.stash[AGAINST_PROBLEMS_KEY] = pairs, problems
    except InputError as error:
        raise pytest.UsageError(str(error)) from None
    warn_if_conftest_ignored(config)
    # Fail fast, before collection, on a variant name that does not exist.
    if config.getoption("perf_variants", None):
        selected_variants(config)


def checked_bases(
    config: pytest.Config, items: list[pytest.Item], options: PerfOptions
) -> PerfOptions:
    """--perf-against: ``options`` with only the pairs whose base builds (`check_bases`);
    a dropped base's benchmarks are deselected, and every problem kept for the summary."""
    pairs, problems = check_bases(config.stash.get(PAIRS_KEY, {}))
    dropped = set(config.stash.get(PAIRS_KEY, {}).values()) - set(pairs.values())
    config.stash[PAIRS_KEY] = pairs
    config.stash[AGAINST_PROBLEMS_KEY] = [*config.stash.get(AGAINST_PROBLEMS_KEY, []), *problems]
    gone = [item for item in items if _variant_of(item) in dropped]
    if gone:
        config.hook.pytest_deselected(items=gone)
        items[:] = [item for item in items if item not in gone]
    return dataclasses.replace(options, pairs=tuple(pairs.items()))


def _variant_of(item: pytest.Item) -> str | None:
    """The variant a benchmark item is parametrized with (None: not one of those)."""
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("variant_name") if callspec else None


def warn_if_conftest_ignored(config: pytest.Config) -> None:
    """A ``conftest.py`` in the current folder that pytest does not load (the folder is
    outside the tests' root) would be ignored in silence: say so, and what to do."""
    mine = (Path.cwd() / "conftest.py").resolve()
    if not mine.is_file():
        return
    loaded = {
        Path(module.__file__).resolve()
        for module in config.pluginmanager.get_plugins()
        if getattr(module, "__file__", None)
    }
    if mine not in loaded and not mine.parent.is_relative_to(config.rootpath):
        config.issue_config_time_warning(
            pytest.PytestConfigWarning(
                f"{mine} is not loaded: this folder is outside {config.rootpath}, where"
                f" pytest looks for conftest files; load it with --perf-plugin {mine}"
            ),
            stacklevel=2,
        )


def _benchmarks_selected(items: list[pytest.Item]) -> bool:
    return any("benchmarks" in Path(str(item.fspath)).parts for item in items)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "variant_name" in metafunc.fixturenames:
        metafunc.parametrize("variant_name", selected_variants(metafunc.config))
    if "service_workers" in metafunc.fixturenames:
        # An external dispatcher has the workers it has (0: not ours to count).
        external = metafunc.config.getoption("perf_data_service")
        metafunc.parametrize(
            "service_workers",
            [0] if external else LOCAL_SERVICE_WORKERS,
            ids=lambda workers: service_setup(workers).replace(" ", "_"),
        )


# The variant test_data_service times (dynamic sharding: each example once per epoch).
SERVICE_VARIANT = "distributed"


# The local tf.data service setups timed: one worker, then two.
LOCAL_SERVICE_WORKERS = (1, 2)


def service_setup(workers: int) -> str:
    """ "1 worker", "2 workers", or "external service" (0: an external dispatcher's)."""
    return "external service" if not workers else f"{workers} worker{'s' if workers > 1 else ''}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check every option and file the benchmarks will use before any of them runs.

    A bad one is a one-line usage error (exit 4) before anything is timed or
    saved: the data is opened (and validated) here, not by the first benchmark.
    """
    asked = {
        "test_suggestions": config.getoption("perf_verify_suggestions"),
        "test_profiler_capture": config.getoption("perf_profiler"),
        # Each pipeline alone: asked for, or untimed. Out of the default passes, whose
        # time goes to the training trials' precision (docs/measurements.md, 2026-12-03).
        "test_pipeline": config.getoption("perf_alone")
        or config.getoption("benchmark_disable", False),
        # The tf.data service is timed when its variant is selected, not always; an
        # untimed run (the test job) runs every benchmark once, so none can rot.
        "test_data_service": SERVICE_VARIANT in selected_variants(config)
        or config.getoption("benchmark_disable", False),
    }
    unasked = [i for i in items if asked.get(getattr(i, "originalname", None)) is False]
    if unasked:
        config.hook.pytest_deselected(items=unasked)
        items[:] = [item for item in items if item not in unasked]
    if not _benchmarks_selected(items):
        return
    options = perf_options(config)
    try:
        # Before anything starts TensorFlow's runtime (opening the data does).
        budget = apply_core_budget(options.model_threads)
    except RuntimeError as error:
        raise pytest.UsageError(f"--perf-model-threads: {error}") from None
    options = dataclasses.replace(options, model_threads=budget)
    options = checked_bases(config, items, options)
    service = config.getoption("perf_data_service")
    if service and not re.fullmatch(r"(grpcs?://)?[\w.\-\[\]:]+:\d+", service):
        raise pytest.UsageError(
            f"--perf-data-service: {service!r} is not a dispatcher address (grpc://HOST:PORT)"
        )
    try:
        state = RunState(
            options,
            open_data(options.data),
            gates.load_thresholds(config.getoption("perf_thresholds"), pipelines.VARIANTS),
        )
        # The model must fit the data: one line now, not a failure mid-run.
        train = state.data[0]
        models.build_for(
            options.model, image_shape_for(train, options.image_size), train.num_classes
        )
        baseline = config.getoption("perf_baseline")
        if baseline:
            path = storage_files.find_saved_run(baseline, _storage(config))
            state.baseline = (path, gates.load_saved_metrics(path))
    except InputError as error:
        raise pytest.UsageError(str(error)) from None
    config.stash[STATE_KEY] = state
    skip_what_cannot_run(items, state)


def might_not_fit(variant: pipelines.Variant) -> bool:
    """Whether ``variant`` may fail to build on some data the suite opens: a tf.data service
    variant (over a source that reads through Python), or a user's pipeline function."""
    return variant.served or isinstance(variant.steps[0], FunctionPipeline)


def skip_what_cannot_run(items: list[pytest.Item], state: RunState) -> None:
    """Skip, with the reason in one line, each benchmark of a variant that cannot run on
    this data, so that it does not stop the run part way.

    Only variants that `might_not_fit` are checked: the rest run on any source
    the suite opens, and building every variant here would cost seconds at every start.
    """
    unfit = {}
    candidates = {*state.options.variants, SERVICE_VARIANT} & set(pipelines.VARIANTS)
    for variant in sorted(name for name in candidates if might_not_fit(pipelines.get(name))):
        try:
            pipelines.check_fits(variant, state.data[0], state.options.image_size)
        except DataError as error:
            unfit[variant] = str(error)
    for item in items:
        variant = _variant_of(item)
        if getattr(item, "originalname", None) == "test_data_service":
            variant = SERVICE_VARIANT
        if variant in unfit:
            item.add_marker(pytest.mark.skip(reason=f"cannot run on this data: {unfit[variant]}"))


def pytest_sessionstart(session: pytest.Session) -> None:
    bench_adapter.save_atomically(session.config)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Bad data found mid-run stops the run with one line, and nothing of it is saved.

    Only for benchmarks (tests using the session's ``perf``): elsewhere a
    `DataError` is an ordinary test failure.
    """
    try:
        return (yield)
    except DataError as error:
        if "perf" not in getattr(item, "fixturenames", ()):
            raise
        stop_run(item.config, error)


def _storage(config: pytest.Config) -> Path:
    storage = str(config.getoption("benchmark_storage", "file://./.benchmarks"))
    return Path(storage.removeprefix("file://"))


def perf_session(config: pytest.Config) -> PerfSession:
    """The session's `PerfSession`, created on first use."""
    if SESSION_KEY not in config.stash:
        try:
            state = config.stash[STATE_KEY]
            session = PerfSession(state.options, state.data)
            capture = config.pluginmanager.getplugin("capturemanager")
            if capture is not None:
                session.release_output = lambda: capture.suspend_global_capture(in_=True)
            if not config.getoption("benchmark_disable", False):
                session.progress = progress_line(capture)
            config.stash[SESSION_KEY] = session
        except DataError as error:
            stop_run(config, error)
    return config.stash[SESSION_KEY]


def progress_line(capture: Any) -> ProgressLine:
    """The passes' progress on the real standard error, past pytest's output capture: in
    place on a terminal, a line per pass in a log."""
    uncaptured = capture.global_and_fixture_disabled if capture else contextlib.nullcontext

    def write(text: str) -> None:
        with uncaptured():
            sys.stderr.write(text)
            sys.stderr.flush()

    with uncaptured():
        terminal = sys.stderr.isatty()
    return ProgressLine(write, terminal)


def pytest_benchmark_update_machine_info(
    config: pytest.Config, machine_info: dict[str, Any]
) -> None:
    machine_info.update(machine_details())
    machine_info["perf_profile"] = config.getoption("perf_profile")


def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: list[Any], output_json: dict
) -> None:
    """Write the ratios measured in this session into the saved run."""
    if SESSION_KEY not in config.stash:
        return
    records = config.stash[SESSION_KEY].records
    result = run_result(config)
    metrics = result.metrics
    schema.stamp(output_json)
    for bench in output_json.get("benchmarks", []):
        info = metrics.get(bench.get("fullname")) or metrics.get(bench.get("name"))
        if info:
            bench["extra_info"] = dict(info)
    if records.passes is not None:
        output_json["perf_passes"] = {
            **records.passes.to_dict(),
            "unreliable": [str(line) for line in measurement_doubts(config)],
        }
    failures = evaluate_gates(config)
    if failures is not None:
        # The verdicts travel with the run, so a report built later shows them.
        output_json["perf_gates"] = {
            "checked": sorted(result.gate_metrics),
            "failures": [dataclasses.asdict(failure) for failure in failures],
        }
    config.stash[STATE_KEY].run_json = output_json


def evaluate_gates(config: pytest.Config) -> list[gates.Failure] | None:
    """The failed checks of this run (None when there is nothing to gate).

    Evaluated once, after every benchmark has run (pytest-benchmark saving the
    run or the session finishing, whichever comes first), and kept.
    """
    if SESSION_KEY not in config.stash or config.getoption("benchmark_disable", False):
        return None
    state = config.stash[STATE_KEY]
    if state.abandoned:
        return None
    if state.failures is None:
        results = dict(run_result(config).gate_metrics)
        pairs = config.stash.get(PAIRS_KEY, {})
        # A base version (--perf-against) is judged only as what the head is compared with.
        bases = set(pairs.values())
        current = {name: metrics for name, metrics in results.items() if name not in bases}
        failures = gates.check_run(state.thresholds, current)
        if state.baseline:
            path, saved = state.baseline
            found, state.verdicts = compare.compare_with_baseline(
                state.thresholds, results, saved, str(path)
            )
            failures += found
        if pairs:
            found, state.pair_verdicts = compare.compare_pairs(state.thresholds, results, pairs)
            failures += found
        state.failures = failures
    return state.failures


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Gate the run (a failed check makes it exit non-zero), then write the report if asked."""
    config = session.config
    failures = evaluate_gates(config)
    if failures is None:
        return
    state = config.stash[STATE_KEY]
    impossible = any(doubt.impossible for doubt in measurement_doubts(config))
    # A base asked for (--perf-against) that could not be compared: not a green run.
    uncompared = any(not p.compared for p in config.stash.get(AGAINST_PROBLEMS_KEY, []))
    if (failures or impossible or uncompared) and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    target = config.getoption("perf_report")
    if target:
        current = state.run_json or _run_json(config)
        try:
            # Beside the report, which links them: Perfetto and chrome://tracing open them.
            report.write_traces(Path(target), config.stash[SESSION_KEY].records.traces())
            state.report = report.write_report(
                Path(target), _storage(config), current=current, thresholds=state.thresholds
            )
        except InputError as error:
            state.report_error = str(error)
            if session.exitstatus == 0:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _run_json(config: pytest.Config) -> dict[str, Any]:
    """This run as pytest-benchmark would save it (for a report when nothing was saved)."""
    benchmarks = bench_adapter.bench_session(config).benchmarks

    def update(output: dict[str, Any]) -> None:
        config.hook.pytest_benchmark_update_json(
            config=config, benchmarks=benchmarks, output_json=output
        )

    return bench_adapter.run_json(config, update)
