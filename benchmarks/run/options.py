"""The ``--perf-*`` command-line options, and the run's `PerfOptions` made from them."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import tensorflow as tf

import pipelines
from benchmarks.judging import gates
from benchmarks.measuring.alternation import UNTIMED, AlternationPlan
from benchmarks.measuring.passes import PassPlan
from benchmarks.measuring.session import PERF_PROFILES, PerfOptions
from benchmarks.report import page as report
from benchmarks.run.state import PAIRS_KEY
from models.stand_in import DeviceChoice, load_profile, parse_duration
from pipelines.data.opening import DataChoice, default_latency, parse_image_size
from pipelines.errors import DataError, InputError
from pipelines.sources.latency import parse_latency

# --perf-against: passes allowed within the profile's time limit.
AGAINST_MAX_PASSES = 60


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("perf", "tf.data pipeline benchmarks")
    _add_run_options(group)
    _add_training_options(group)
    _add_device_options(group)
    _add_judging_options(group)
    _add_change_options(group)


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


def _add_device_options(group: pytest.OptionGroup) -> None:
    """What the timed trials feed: a stand-in device and its step time, or the model."""
    group.addoption(
        "--perf-device",
        default=None,
        metavar="stand-in|real|alone",
        help="what the timed trials feed: stand-in (a device whose step is a wait of its step"
        " time, using no CPU: the pipeline has the host to itself, as beside a GPU), real"
        " (the model trained where it is), alone (the pipeline with no device). Accuracy"
        " always comes from real training. Default: real with a GPU, else stand-in",
    )
    group.addoption(
        "--perf-step-time",
        default=None,
        metavar="DURATION",
        help="the stand-in's step time per batch, e.g. 2ms (your device's; default: a"
        " shipped device profile for the model, else 2 ms a batch of 64 32x32 images)",
    )
    group.addoption(
        "--perf-device-profile",
        default=None,
        metavar="FILE",
        help="the stand-in's step times from a device profile measured on a real"
        " accelerator (python -m models.device_profile writes one)",
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
        "--perf-baseline",
        default=None,
        help="compare throughput and accuracy with a saved run: its id, path, or 'latest'",
    )


def _add_change_options(group: pytest.OptionGroup) -> None:
    """Did a change make it slower: a base version in the same run, a yardstick to save."""
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
        "--perf-yardstick",
        action="store_true",
        default=False,
        help="also alternate each variant's steady epochs with the ceiling's, epoch by epoch"
        " (up to 150 s a variant): its fraction of the ceiling to within about 1.2%%, saved"
        " for later --perf-baseline comparisons (max_yardstick_drop)",
    )
    group.addoption(
        "--perf-epoch-pairs",
        type=int,
        default=None,
        metavar="N",
        help="--perf-against, --perf-yardstick: exactly N rounds of steady epochs in"
        " alternation (default: until the ratio is within about 1.2%%, 10 to 80 rounds,"
        " at most 150 s a pair)",
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
    try:
        device = device_choice(config, config.getoption("perf_model") or profile.model)
    except InputError as error:
        raise pytest.UsageError(str(error)) from None
    return PerfOptions(
        profile,
        data,
        epochs,
        tuple(selected_variants(config)),
        mixed_precision=config.getoption("perf_mixed_precision"),
        jit_compile=config.getoption("perf_xla"),
        passes=pass_plan(config, profile.passes),
        # As asked; the collection hook applies it and keeps the budget in force.
        model_threads=threads,
        model_spec=config.getoption("perf_model"),
        batch_size_asked=batch_size,
        seed=config.getoption("perf_seed", 0),
        image_size=image_size,
        capture_dir=capture_dir(config) if config.getoption("perf_profiler") else None,
        pairs=tuple(config.stash.get(PAIRS_KEY, {}).items()),
        alternation=alternation_plan(config),
        yardstick=config.getoption("perf_yardstick", False),
        device=device,
    )


def device_choice(config: pytest.Config, model: str) -> DeviceChoice:
    """--perf-device, --perf-step-time and --perf-device-profile, validated (`DataError`)."""
    name = config.getoption("perf_device")
    if name is None:
        name = "real" if tf.config.list_physical_devices("GPU") else "stand-in"
    given = config.getoption("perf_step_time")
    path = config.getoption("perf_device_profile")
    choice = DeviceChoice(name)  # an unknown name is refused here
    if given is not None and path is not None:
        raise DataError("--perf-step-time", "give a step time or a device profile, not both")
    if (given is not None or path is not None) and name != "stand-in":
        option = "--perf-step-time" if given is not None else "--perf-device-profile"
        raise DataError(option, f"sets the stand-in's step time; --perf-device is {name}")
    if given is not None:
        step = parse_duration(given, "--perf-step-time")
        return DeviceChoice(name, step_s=step, given_as=f"--perf-step-time {given}")
    if path is not None:
        profile = load_profile(path)
        profile.steps_of(model)  # refuses a profile without the model
        return DeviceChoice(name, profile=profile)
    return choice


def pass_plan(config: pytest.Config, plan: PassPlan) -> PassPlan:
    """The profile's ``plan`` as this run asks: --perf-passes, one when untimed, and with
    --perf-against many short passes in half the time."""
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
    return plan.exactly(count) if count is not None else plan


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


def capture_dir(config: pytest.Config) -> Path:
    """Where the TensorFlow profiler's captures go: ``profiles/`` beside the report (or
    under ``reports/`` when no report is asked for), one folder per variant."""
    report_path = config.getoption("perf_report")
    return (Path(report_path).parent if report_path else Path("reports")) / report.CAPTURES
