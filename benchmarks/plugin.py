"""The suite's pytest plugin: ``--perf-*`` options, variant parametrization, machine info, gates.

It plugs into pytest and pytest-benchmark through their hooks; it does not
run anything beside them. Loaded from the root ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

import pytest

import models
import pipelines
from benchmarks.diagnosing.bottleneck import Bottleneck
from benchmarks.diagnosing.effects import no_gain_lines
from benchmarks.judging import gates
from benchmarks.judging.against import BaseProblem, base_versions, check_bases
from benchmarks.judging.decide import Verdict
from benchmarks.measuring.alternation import UNTIMED, AlternationPlan
from benchmarks.measuring.cores import apply_core_budget
from benchmarks.measuring.progress import ProgressLine
from benchmarks.measuring.records import Unreliable, unreliable
from benchmarks.measuring.session import PERF_PROFILES, PerfOptions, PerfSession, machine_details
from benchmarks.report import page as report
from benchmarks.report.summary import (
    FULL_EPOCH_COLUMNS,
    STARTUP_COLUMNS,
    STEADY_COLUMNS,
    summary_table,
)
from benchmarks.saving import bench_adapter, schema
from benchmarks.saving import storage as storage_files
from benchmarks.saving.schema import Kind
from pipelines.data import DataChoice, default_latency, open_data, parse_image_size
from pipelines.errors import DataError, InputError
from pipelines.functions import FunctionPipeline
from pipelines.plugins import load_plugins
from pipelines.sources import Source
from pipelines.sources.latency import parse_latency
from pipelines.steps import image_shape_for

SESSION_KEY = pytest.StashKey[PerfSession]()
STATE_KEY = pytest.StashKey["RunState"]()
# --perf-against: each current variant's name -> its base version's (`pipelines.versions`).
PAIRS_KEY = pytest.StashKey[dict[str, str]]()
# What went wrong with --perf-against's bases, a line each (`base_versions`).
AGAINST_PROBLEMS_KEY = pytest.StashKey[list[BaseProblem]]()
# --perf-against: passes allowed within the profile's time limit.
AGAINST_MAX_PASSES = 60


@dataclasses.dataclass
class RunState:
    """What the plugin knows of a benchmark run, from collection to the terminal summary."""

    options: PerfOptions
    data: tuple[Source, Source]
    thresholds: gates.Thresholds
    # --perf-baseline: the saved run's path and its gated metrics.
    baseline: tuple[Path, dict[str, dict[str, Any]]] | None = None
    # Each compared metric's verdict against the baseline (`benchmarks.judging.decide`).
    verdicts: list[Verdict] = dataclasses.field(default_factory=list)
    # --perf-against: each metric's verdict, head against base in the same passes.
    pair_verdicts: list[Verdict] = dataclasses.field(default_factory=list)
    # Bad data stopped the run: nothing is gated, saved or reported.
    abandoned: bool = False
    # The run as pytest-benchmark saves it, once it has been written.
    run_json: dict[str, Any] | None = None
    # The gates' failed checks, evaluated once after every benchmark ran.
    failures: list[gates.Failure] | None = None
    report: Path | None = None
    report_error: str | None = None
    # Ctrl-C: the run stopped part way (and is abandoned).
    interrupted: bool = False


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("perf", "tf.data pipeline benchmarks")
    _add_run_options(group)
    _add_training_options(group)
    _add_judging_options(group)


def _add_run_options(group: pytest.OptionGroup) -> None:
    """What runs: profile, data, variants, epochs, pipelines alone, latency, corrupt
    records, image size."""
    group.addoption(
        "--perf-image-size",
        default=None,
        metavar="N|HxW",
        help="the size of the images the model sees: image folders and TFRecords are resized"
        " to it, CIFAR images centre-cropped or padded; a pipeline function gets the source's"
        " images and must yield this size (default: the source's, 32x32)",
    )
    group.addoption(
        "--perf-profile",
        default="smoke",
        choices=sorted(PERF_PROFILES),
        help="smoke (minutes on a CPU) or full (CIFAR-size, for a GPU)",
    )
    group.addoption(
        "--perf-data",
        default="embedded",
        help="'embedded', or a path: image folder, CIFAR-10 python folder, TFRecords",
    )
    group.addoption(
        "--perf-format",
        default="tfrecord",
        help="on-disk format of the embedded data: tfrecord, cifar, image_folder",
    )
    group.addoption(
        "--perf-variants",
        default=None,
        help="comma-separated variants to run (default: every registered one marked benchmarked)",
    )
    group.addoption(
        "--perf-epochs", type=int, default=None, help="epochs per run (default: the profile's)"
    )
    group.addoption(
        "--perf-alone",
        action="store_true",
        default=False,
        help="also time each pipeline alone, with no model (test_pipeline: how fast it can"
        " feed, and its CPU per example); adds about a quarter to every pass",
    )
    group.addoption(
        "--perf-latency",
        default=None,
        help="simulated storage latency: none, remote, or open=20ms,read=1ms (default: remote"
        " on the embedded data, where it shows what each optimization does; none on your own"
        " --perf-data, which is read as it is)",
    )
    group.addoption(
        "--skip-corrupt",
        action="store_true",
        default=False,
        help="leave out corrupt records (images that do not decode, cut TFRecords,"
        " labels out of range) instead of failing; their count is saved with the run",
    )


def _add_training_options(group: pytest.OptionGroup) -> None:
    """How it trains and is measured: your registrations and model, batch, seed, threads,
    passes, precision."""
    group.addoption(
        "--perf-mixed-precision",
        action="store_true",
        default=False,
        help="train in mixed float16/float32 (loss-scaled); pays off on GPUs with tensor cores",
    )
    group.addoption(
        "--perf-plugin",
        action="append",
        default=[],
        metavar="FILE_OR_MODULE",
        help="load your own registrations (pipelines.register, register_transform) from a"
        " .py file or a module in the current folder; repeat for several",
    )
    group.addoption(
        "--perf-model",
        default=None,
        metavar="NAME|MODULE:CALLABLE",
        help="the model to train: a seed model's name, or your own module:callable returning"
        " a Keras model (given input_shape and num_classes where it takes them; its compiled"
        " loss and optimizer are used). Default: the profile's",
    )
    group.addoption("--perf-batch-size", type=int, default=None, help="default: the profile's")
    group.addoption(
        "--perf-seed",
        type=int,
        default=0,
        help="seed of the model's initial weights, the shuffles and the augmentation",
    )
    group.addoption(
        "--perf-model-threads",
        type=int,
        default=None,
        metavar="N",
        help="without a GPU: threads for the model's ops, standing in for an accelerator"
        " (default: half the cores, at least 1; 0: the model and the pipeline share every"
        " core); the input pipeline runs on threads of its own",
    )
    group.addoption(
        "--perf-passes",
        type=int,
        default=None,
        metavar="K",
        help="interleaved passes to make, exactly (default: the profile's, adding passes"
        " while a ratio's interval is wider than +-5%%, within its time limit)",
    )
    group.addoption(
        "--perf-xla",
        action="store_true",
        default=False,
        help="compile the train and test steps with XLA (jit_compile)",
    )


def _add_judging_options(group: pytest.OptionGroup) -> None:
    """How the run is served, judged and reported: service, thresholds, baseline, report."""
    group.addoption(
        "--perf-thresholds",
        default=str(gates.DEFAULT_THRESHOLDS),
        help="the thresholds file the gates read",
    )
    group.addoption(
        "--perf-report",
        default=None,
        help="write the HTML performance report here at the end of the run",
    )
    group.addoption(
        "--perf-data-service",
        default=None,
        metavar="grpc://HOST:PORT",
        help="time the tf.data service variant on this dispatcher instead of local ones"
        " (1 and 2 worker processes started on localhost)",
    )
    group.addoption(
        "--perf-verify-suggestions",
        action="store_true",
        default=False,
        help="apply each change the bottleneck analysis suggests to a copy of the variant,"
        " check the copy against the variant's contract, and time it in the same run"
        " (adds a set of interleaved passes: minutes)",
    )
    group.addoption(
        "--perf-profiler",
        action="store_true",
        default=False,
        help="also capture one epoch of each traced variant with the TensorFlow profiler"
        " (for xprof or TensorBoard), beside the report in profiles/",
    )
    group.addoption(
        "--perf-against",
        default=None,
        metavar="REF|FOLDER",
        help="also load your --perf-plugin files as they are at this git ref (of the"
        " repository holding them) or in this folder, as variants NAME@REF, time them in"
        " the same passes as the current ones, and gate each current variant on its base,"
        " pass by pass, and its steady state epoch by epoch ([base_vs_head] tolerances)",
    )
    group.addoption(
        "--perf-epoch-pairs",
        type=int,
        default=None,
        metavar="N",
        help="--perf-against: exactly N rounds of a head's and its base's steady epochs"
        " in alternation (default: until the ratio is within about 1.2%%, 10 to 80 rounds,"
        " at most 150 s a pair)",
    )
    group.addoption(
        "--perf-baseline",
        default=None,
        help="compare throughput and accuracy with a saved run: its id, path, or 'latest'",
    )


def selected_variants(config: pytest.Config) -> list[str]:
    """The variants to benchmark, naive first (speedups are measured against it).

    By default every registered variant marked ``benchmarked``.
    """
    option = config.getoption("perf_variants")
    names = (
        [name for name, variant in pipelines.VARIANTS.items() if variant.benchmarked]
        if not option
        else [n.strip() for n in option.split(",") if n.strip()]
    )
    unknown = [name for name in names if name not in pipelines.VARIANTS]
    if unknown:
        raise pytest.UsageError(
            f"--perf-variants: unknown variant {unknown[0]!r};"
            f" known variants: {', '.join(pipelines.VARIANTS)}"
        )
    # --perf-against: each selected variant's base version beside it.
    pairs = config.stash.get(PAIRS_KEY, {})
    names += [pairs[name] for name in names if name in pairs and pairs[name] not in names]
    return sorted(names, key=lambda name: name != "naive")


def perf_options(config: pytest.Config) -> PerfOptions:
    """The run's options, validated (a bad value is a one-line usage error)."""
    profile = PERF_PROFILES[config.getoption("perf_profile")]
    epochs = config.getoption("perf_epochs") or profile.epochs
    if epochs < 1:
        raise pytest.UsageError("--perf-epochs: must be at least 1")
    latency = config.getoption("perf_latency") or default_latency(config.getoption("perf_data"))
    asked_size = config.getoption("perf_image_size")
    try:
        parse_latency(latency)
        image_size = parse_image_size(asked_size, "--perf-image-size") if asked_size else None
    except InputError as error:
        raise pytest.UsageError(str(error)) from None
    data = DataChoice(
        data=config.getoption("perf_data"),
        profile=profile.name,
        fmt=config.getoption("perf_format"),
        latency=latency,
        skip_corrupt=config.getoption("skip_corrupt"),
        **({"image_size": image_size} if image_size else {}),
    )
    threads = config.getoption("perf_model_threads")
    if threads is not None and threads < 0:
        raise pytest.UsageError(f"--perf-model-threads: must be 0 or more, got {threads}")
    batch_size = config.getoption("perf_batch_size")
    if batch_size is not None and batch_size < 1:
        raise pytest.UsageError(f"--perf-batch-size: must be 1 or more, got {batch_size}")
    plan = profile.passes
    if config.stash.get(PAIRS_KEY, {}):
        # Head against base: a pass is short (few trials) and a pair's per-pass spread
        # was 10% here (docs/measurements.md, 2026-12-03), so the time limit decides;
        # half the profile's, as steady state is decided from the alternated epochs after.
        plan = dataclasses.replace(
            plan, max_passes=AGAINST_MAX_PASSES, time_limit_s=plan.time_limit_s / 2
        )
    count = config.getoption("perf_passes")
    if count is not None and count < 1:
        raise pytest.UsageError(f"--perf-passes: must be 1 or more, got {count}")
    if config.getoption("benchmark_disable", False):
        count = 1  # untimed: every benchmark runs once
    if count is not None:
        plan = plan.exactly(count)
    return PerfOptions(
        profile,
        data,
        epochs,
        tuple(selected_variants(config)),
        mixed_precision=config.getoption("perf_mixed_precision"),
        jit_compile=config.getoption("perf_xla"),
        passes=plan,
        # As asked; the collection hook applies it and keeps the budget in force.
        model_threads=threads,
        model_spec=config.getoption("perf_model"),
        batch_size_asked=batch_size,
        seed=config.getoption("perf_seed", 0),
        image_size=image_size,
        profile_dir=profile_dir(config) if config.getoption("perf_profiler") else None,
        pairs=tuple(config.stash.get(PAIRS_KEY, {}).items()),
        alternation=alternation_plan(config),
    )


def alternation_plan(config: pytest.Config) -> AlternationPlan:
    """How many rounds of alternated epochs a head and its base get (--perf-epoch-pairs)."""
    count = config.getoption("perf_epoch_pairs")
    if count is not None and count < 2:
        raise pytest.UsageError(f"--perf-epoch-pairs: must be 2 or more, got {count}")
    if config.getoption("benchmark_disable", False):
        return UNTIMED
    if count is not None:
        return AlternationPlan(count, count, math.inf)
    return AlternationPlan()


def profile_dir(config: pytest.Config) -> Path:
    """Where the TensorFlow profiler's captures go: ``profiles/`` beside the report (or
    under ``reports/`` when no report is asked for), one folder per variant."""
    report_path = config.getoption("perf_report")
    return (Path(report_path).parent if report_path else Path("reports")) / report.PROFILES


def pytest_configure(config: pytest.Config) -> None:
    bench_adapter.check_version()
    config.pluginmanager.register(Interruption(config), "perf-interruption")
    # A user's registrations, before anything reads the registry (collection).
    plugins = config.getoption("perf_plugin", None) or []
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
        "test_profile": config.getoption("perf_profiler"),
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


def stop_run(config: pytest.Config, error: DataError) -> NoReturn:
    """End the session with one line; this run is not saved or reported as if nothing happened."""
    abandon(config)
    pytest.exit(f"error: {error}", returncode=2)


def abandon(config: pytest.Config, interrupted: bool = False) -> None:
    """Nothing of this run is saved, gated or reported (bad data, or Ctrl-C)."""
    bench_adapter.abandon(config)
    if STATE_KEY in config.stash:
        config.stash[STATE_KEY].abandoned = True
        config.stash[STATE_KEY].interrupted = interrupted


SWALLOWED_INTERRUPT_WARNING = (
    "ignore:(?s)Exception ignored in.*KeyboardInterrupt:pytest.PytestUnraisableExceptionWarning"
)


class Interruption:
    """Ctrl-C: nothing of the run is saved, gated or reported, in a few lines.

    A plugin object of its own, since pytest hands these hooks no config. It
    must act before pytest-benchmark saves the run, at the start of
    ``pytest_sessionfinish``.

    Python turns Ctrl-C into a KeyboardInterrupt at whatever line runs then;
    one that lands in a finalizer (``__del__``, run by the garbage collector)
    is printed as a warning and dropped, and the run went on to save. So the
    signal is also recorded here, and a recorded one stops the run at the
    next test's end, whatever became of its exception.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.pressed = False
        self.handled = False
        # Only where Python's own handler is in place: an xdist worker ignores
        # SIGINT on purpose, and its controller handles Ctrl-C.
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            signal.signal(signal.SIGINT, self._on_sigint)
        # The dropped interrupt's traceback would otherwise be a warning in the summary.
        config.addinivalue_line("filterwarnings", SWALLOWED_INTERRUPT_WARNING)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.pressed = True
        signal.default_int_handler(signum, frame)

    def pytest_unconfigure(self) -> None:
        # Give SIGINT back to Python's own handler (pytest run in-process).
        if signal.getsignal(signal.SIGINT) == self._on_sigint:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logfinish(self) -> None:
        if self.pressed and not self.handled:
            raise KeyboardInterrupt

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Any:
        if self.pressed and not self.handled:
            # Pressed as the last test ended: nothing is left to stop, nothing is saved.
            self._abandon()
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        yield

    @pytest.hookimpl(tryfirst=True)
    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        # Interrupted inside TensorFlow's C++ calls, a frame can have no line
        # number (Python 3.11), and pytest's report of the interrupt then fails
        # with a traceback of its own; such frames say nothing a user could act on.
        excinfo.traceback = excinfo.traceback.filter(_has_line_number)
        self._abandon()

    def _abandon(self) -> None:
        self.handled = True
        abandon(self.config, interrupted=True)


def _has_line_number(entry: Any) -> bool:
    try:
        entry.lineno  # noqa: B018 (the property raises TypeError without one)
    except TypeError:
        return False
    return True


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
    session = config.stash[SESSION_KEY]
    records = session.records
    records.derive()
    metrics = records.metrics
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
            "checked": sorted(records.gate_metrics()),
            "failures": [dataclasses.asdict(failure) for failure in failures],
        }
    config.stash[STATE_KEY].run_json = output_json


def measurement_doubts(config: pytest.Config) -> list[Unreliable]:
    """The run's ratios that cannot be trusted (none when untimed or without passes)."""
    if SESSION_KEY not in config.stash or config.getoption("benchmark_disable", False):
        return []
    session = config.stash[SESSION_KEY]
    return unreliable(session.records.paired(), session.options.plan.precision)


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
        session = config.stash[SESSION_KEY]
        session.records.derive()
        results = session.records.gate_metrics()
        pairs = config.stash.get(PAIRS_KEY, {})
        # A base version (--perf-against) is judged only as what the head is compared with.
        bases = set(pairs.values())
        current = {name: metrics for name, metrics in results.items() if name not in bases}
        failures = gates.check_run(state.thresholds, current)
        if state.baseline:
            path, saved = state.baseline
            found, state.verdicts = gates.compare_with_baseline(
                state.thresholds, results, saved, str(path)
            )
            failures += found
        if pairs:
            found, state.pair_verdicts = gates.compare_pairs(state.thresholds, results, pairs)
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


# How many of the records --skip-corrupt left out the terminal lists (the count is always shown).
SKIPPED_SHOWN = 10


def _write_measurements(terminalreporter: Any, config: pytest.Config) -> None:
    """The figures with their intervals, and a line per measurement not to be trusted."""
    session = config.stash[SESSION_KEY]
    passes = session.passes
    if passes is None:
        return
    terminalreporter.section(
        f"measurements: {passes.count} interleaved passes ({passes.stopped}),"
        f" 95% intervals; model threads: {session.options.model_threads or 'not limited'}"
    )
    metrics = list(session.records.metrics.values())
    for title, columns in (
        ("steady state", STEADY_COLUMNS),
        ("start-up and full epochs", STARTUP_COLUMNS + FULL_EPOCH_COLUMNS),
    ):
        lines = summary_table(metrics, columns)
        if lines:
            terminalreporter.write_line(f"{title}:", bold=True)
        for line in lines:
            terminalreporter.write_line(line)
    trained = {info["variant"]: info for info in metrics if info["kind"] == Kind.TRAINING}
    for line in no_gain_lines(trained, pipelines.VARIANTS, session.options.plan.precision):
        terminalreporter.write_line(line, yellow=True)
    for doubt in measurement_doubts(config):
        terminalreporter.write_line(str(doubt), red=doubt.impossible, yellow=not doubt.impossible)


def _write_verdicts(terminalreporter: Any, title: str, verdicts: list[Verdict]) -> None:
    """A section of verdict lines, coloured by outcome (none when there are none)."""
    if not verdicts:
        return
    if title:  # none: the section is open already
        terminalreporter.section(title)
    for verdict in verdicts:
        terminalreporter.write_line(
            str(verdict),
            red=verdict.outcome == "regression",
            yellow=verdict.outcome == "inconclusive",
            green=verdict.outcome in ("ok", "improvement"),
        )


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print the records --skip-corrupt left out, then the gates' verdicts (a line per failure)."""
    state = config.stash.get(STATE_KEY, None)
    if state is None:
        return
    if state.interrupted:
        terminalreporter.write_line(
            "interrupted: the run stopped part way; nothing of it was saved, gated or reported",
            red=True,
        )
        return
    skipped = [line for source in state.data for line in source.skipped]
    if skipped:
        terminalreporter.section(f"{len(skipped)} corrupt records skipped (--skip-corrupt)")
        for line in skipped[:SKIPPED_SHOWN]:
            terminalreporter.write_line(line, yellow=True)
        if len(skipped) > SKIPPED_SHOWN:
            terminalreporter.write_line(f"... and {len(skipped) - SKIPPED_SHOWN} more", yellow=True)
    if state.failures is None:
        return
    _write_measurements(terminalreporter, config)
    _write_verdicts(terminalreporter, "against the baseline", state.verdicts)
    title = "head against base, in the same passes and epoch by epoch (--perf-against)"
    problems = config.stash.get(AGAINST_PROBLEMS_KEY, [])
    if problems:
        terminalreporter.section(title)
    for problem in problems:
        terminalreporter.write_line(problem.line, red=not problem.compared, yellow=problem.compared)
    _write_verdicts(terminalreporter, title if not problems else "", state.pair_verdicts)
    session = config.stash.get(SESSION_KEY, None)
    for alternation in session.records.alternations.values() if session else ():
        terminalreporter.write_line(str(alternation))
    terminalreporter.section("performance gates")
    for failure in state.failures:
        terminalreporter.write_line(str(failure), red=True)
    if not state.failures:
        checked = ", ".join(sorted(config.stash[SESSION_KEY].records.gate_metrics())) or "nothing"
        terminalreporter.write_line(f"all gates passed ({checked})", green=True)
    bottlenecks = config.stash[SESSION_KEY].records.bottlenecks()
    if bottlenecks:
        terminalreporter.section("bottlenecks")
        for variant, analysis in bottlenecks.items():
            terminalreporter.write_line(f"{variant}: {Bottleneck(**analysis).summary()}")
    verified = config.stash[SESSION_KEY].records.verified_suggestions()
    if verified:
        terminalreporter.section("verified suggestions (each change applied to a copy)")
        for variant, info in verified.items():
            terminalreporter.write_line(f"{variant}: {info['verdict']}")
            for line in info["verified_suggestions"]:
                terminalreporter.write_line(f"    {line['line']}")
    if state.report:
        terminalreporter.write_line(f"performance report: {state.report}", bold=True)
    if state.report_error:
        terminalreporter.write_line(f"report not written: {state.report_error}", red=True)
