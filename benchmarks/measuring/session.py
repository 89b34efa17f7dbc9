"""One benchmark session: its options, data and model, and how each kind of round runs.

The benchmarks are thin (`bench_training.py`); how a round is set up and run
lives here, once. What the rounds measured is kept by the session's
`benchmarks.measuring.records.RunRecords` (``session.records``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

import models
import pipelines
from benchmarks.measuring.accuracy import ACCURACY, accuracy_trials, merge_accuracy
from benchmarks.measuring.alternation import BASE, HEAD, Alternation, AlternationPlan, alternate
from benchmarks.measuring.cores import own_threads
from benchmarks.measuring.pass_figures import pass_estimates, run_totals, startup_estimates
from benchmarks.measuring.passes import UNOBSERVED, Passes, PassPlan, Trial, run_passes
from benchmarks.measuring.progress import ProgressLine
from benchmarks.measuring.records import PipelineEpoch, RunRecords
from models.devices import configure_gpus, default_strategy, precision, strategy_name
from models.stand_in import ALONE, DeviceChoice, StandIn
from models.trainer import EpochLoop, EpochStats, InitialModel, Trainer
from pipelines.data.opening import DataChoice
from pipelines.element import IMAGE, LABEL
from pipelines.errors import DataError
from pipelines.observing.runtime_model import Legend
from pipelines.observing.timeline import Timeline, TimelineRecorder
from pipelines.service import LocalService
from pipelines.steps import image_shape_for
from pipelines.variants import EVALUATION

# The exit status when a tf.data service worker dies mid-run (pytest's own go up to 5).
DIED_WORKER_EXIT = 3


@dataclasses.dataclass(frozen=True)
class PerfProfile:
    """How big a benchmark run is, and how many interleaved passes measure it."""

    name: str
    model: str
    epochs: int
    batch_size: int
    passes: PassPlan


PERF_PROFILES = {
    # Minutes on two CPU cores: the embedded smoke set and a small CNN; 3 to 10
    # passes, adding passes for 280 s at most (the whole run: under 6 minutes).
    "smoke": PerfProfile(
        "smoke", model="tiny", epochs=3, batch_size=64, passes=PassPlan(3, 10, 280.0)
    ),
    # The embedded check set (640 training images) and the tiny CNN, 2 passes: whether
    # every benchmark runs, in seconds (the test job's untimed benchmarks use it).
    "check": PerfProfile(
        "check", model="tiny", epochs=2, batch_size=64, passes=PassPlan(2, 2, 60.0)
    ),
    # CIFAR-size data and the lab's CIFAR model, 2 epochs as in the lab; meant for a
    # GPU (`python3 tasks.py full`), within about 10 minutes: 2 passes, a third or
    # fourth only while the first two took under 4 minutes.
    "full": PerfProfile(
        "full", model="cifar_cnn_bn", epochs=2, batch_size=128, passes=PassPlan(2, 4, 240.0)
    ),
}


@dataclasses.dataclass(frozen=True)
class PerfOptions:
    """The ``--perf-*`` options of a run."""

    profile: PerfProfile
    data: DataChoice
    epochs: int
    variants: tuple[str, ...]
    seed: int = 0
    mixed_precision: bool = False
    jit_compile: bool = False
    # Passes: the profile's plan, or one pass (untimed runs).
    passes: PassPlan | None = None
    # Threads for the model's ops on a CPU-only machine (None: shared, or a GPU).
    model_threads: int | None = None
    # The model: a seed model's name or a user's module:callable (None: the profile's).
    model_spec: str | None = None
    batch_size_asked: int | None = None
    # (height, width) the model sees; None: the source's (`--perf-image-size`).
    image_size: tuple[int, int] | None = None
    # Where the TensorFlow profiler's captures go (`--perf-profiler`); None: none made.
    capture_dir: Path | None = None
    # --perf-against: (current variant, its base version) pairs, run side by side.
    pairs: tuple[tuple[str, str], ...] = ()
    # And then epoch by epoch (`benchmarks.measuring.alternation`): how many rounds.
    alternation: AlternationPlan = dataclasses.field(default_factory=AlternationPlan)
    # --perf-yardstick: each variant's steady epochs alternated with the ceiling's too.
    yardstick: bool = False
    # What the timed trials feed: a stand-in device, the real model, or nothing (alone).
    device: DeviceChoice = dataclasses.field(default_factory=DeviceChoice)

    @property
    def model(self) -> str:
        """The model trained: ``--perf-model``, or the profile's."""
        return self.model_spec or self.profile.model

    @property
    def batch_size(self) -> int:
        """Examples per batch: ``--perf-batch-size``, or the profile's."""
        return self.batch_size_asked or self.profile.batch_size

    @property
    def build_options(self) -> dict[str, Any]:
        """What every build of the run gets (`pipelines.build`'s keywords)."""
        return {"batch_size": self.batch_size, "seed": self.seed, "image_size": self.image_size}

    @property
    def plan(self) -> PassPlan:
        """How many interleaved passes this run makes."""
        return self.passes or self.profile.passes


def device_name() -> str:
    """The device training runs on: the first GPU's name, or "CPU"."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"GPU x{len(gpus)} ({details.get('device_name', gpus[0].name)})"


def machine_details() -> dict[str, Any]:
    """TensorFlow version, devices and CPU count, for pytest-benchmark's machine info."""
    gpus = tf.config.list_physical_devices("GPU")
    return {
        "tensorflow": tf.__version__,
        "device": device_name(),
        "gpu_count": len(gpus),
        "gpus": [
            tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
            for gpu in gpus
        ],
        "cpu_count": os.cpu_count(),
    }


class PerfSession:
    """Data, model and results shared by every benchmark of a pytest session."""

    def __init__(
        self, options: PerfOptions, data: tuple[pipelines.Source, pipelines.Source]
    ) -> None:
        """``data``: the (train, test) sources of ``options.data``, opened (`open_data`)."""
        self.options = options
        self.train_source, self.test_source = data
        configure_gpus()  # memory growth, before anything touches a GPU
        # Several GPUs: mirrored across them; one device: plain steps (no strategy overhead).
        strategy = default_strategy()
        self.strategy = strategy if strategy.num_replicas_in_sync > 1 else None
        self.image_shape = image_shape_for(self.train_source, options.image_size)
        shape, classes = self.image_shape, self.train_source.num_classes
        self.initial = InitialModel(
            lambda: models.build_for(options.model, shape, classes), options.seed
        )
        with precision(options.mixed_precision), strategy.scope():
            model = self.initial.fresh()
        # The real model: it trains every accuracy, and the timed trials too with
        # --perf-device real.
        self.model_trainer = Trainer(model, strategy=self.strategy, jit_compile=options.jit_compile)
        # What the timed trials, timelines and alternations feed (`models.stand_in`).
        self.step_time = options.device.step_for(
            options.model, options.batch_size, self.image_shape
        )
        self.trainer: EpochLoop = (
            self.model_trainer if self.step_time is None else StandIn(self.step_time)
        )
        # Read once, held in memory: evaluation then costs every variant the same,
        # model time only, and no pipeline is left half-iterated.
        test_ds = pipelines.build(EVALUATION, self.test_source, **options.build_options)
        with self.test_source.explain_errors():
            self.test_batches = list(test_ds)
        # What each benchmark measured, and the ratios derived between them.
        self.records = RunRecords(self.common_info)
        # Called before the process must end at once (see `served`); pytest's
        # plugin points it at suspending output capture.
        self.release_output: Callable[[], None] = lambda: None
        self._warm = False
        self._legends: dict[str, Legend] = {}
        self._batches: list[dict[str, tf.Tensor]] | None = None
        self.passes: Passes | None = None
        # Where the passes say how far they are (`benchmarks.measuring.progress`); the plugin
        # points it at the terminal for timed runs.
        self.progress: ProgressLine = ProgressLine(lambda text: None, terminal=False)

    # -- setup and runs -------------------------------------------------------------

    def build(
        self, variant: str, service: str | None = None, seed: int | None = None
    ) -> tf.data.Dataset:
        """A fresh dataset of ``variant`` (a new build: no cache survives from a previous round).

        ``service``: the tf.data service dispatcher, for variants that distribute.
        ``seed``: its shuffles' and augmentation's (default: the run's).
        """
        options = self._build_options(seed)
        dataset = pipelines.build(variant, self.train_source, service=service, **options)
        return dataset if service else own_threads(dataset, self.options.model_threads)

    def _build_options(self, seed: int | None) -> dict[str, Any]:
        """The run's build options, with ``seed`` in place of the run's seed when given."""
        options = self.options.build_options
        return options if seed is None else {**options, "seed": seed}

    @contextlib.contextmanager
    def served(self, service: LocalService | None) -> Iterator[None]:
        """Run through a local tf.data service, stopping the process if one of its workers dies.

        TensorFlow would wait forever for the lost worker's share (see
        `LocalService.guard`); nothing of this run may be saved, and none is:
        the process ends before pytest-benchmark's saving at session end.
        """
        if service is None:
            yield
            return

        def die(port: int, code: int) -> None:
            self.release_output()  # pytest's capture would swallow the last words
            sys.stderr.write(
                f"\nerror: tf.data service worker localhost:{port} died mid-run (exit {code});"
                " TensorFlow cannot finish the epoch without it (it would wait forever),"
                " so the run stops here and saves no results\n"
            )
            sys.stderr.flush()
            service.kill_workers()  # os._exit skips every cleanup: leave no orphans
            os._exit(DIED_WORKER_EXIT)

        with service.guard(die):
            yield

    def check_complete(
        self, variant: str, stats: list[EpochStats], workers: int, where: str
    ) -> None:
        """Each epoch through the service must deliver what the variant promises, or `DataError`.

        A short epoch means a worker was lost: its results are not a measurement.
        """
        expected = pipelines.get(variant).contract.total_repeats(workers) * (
            self.train_source.num_examples
        )
        for number, epoch in enumerate(stats, start=1):
            if epoch.examples != expected:
                raise DataError(
                    where,
                    f"epoch {number} delivered {epoch.examples} of {expected} examples"
                    " (a tf.data service worker was lost?); the run is not saved",
                )

    def warm_up(self) -> None:
        """Trace the train and test steps once per session, so no timed round pays for it.

        Two batch sizes (full, and a short last batch) make the traced steps
        general in the batch dimension, so no variant retraces later.
        """
        if self._warm:
            return
        shape = self.image_shape
        batches = [
            {IMAGE: tf.zeros((size, *shape)), LABEL: tf.zeros((size,), tf.int64)}
            for size in (self.options.batch_size, 1)
        ]
        self.model_trainer.fit(batches, 1, test_ds=batches, progress=False)
        self._warm = True

    def train(
        self,
        dataset: Any,
        seed: int | None = None,
        trainer: EpochLoop | None = None,
        runtime: bool = False,
    ) -> list[EpochStats]:
        """Train on ``dataset`` for the epochs with the timed device (or ``trainer``): the
        session's model from its initial weights (those ``seed`` draws, when given).
        ``runtime``: read tf.data's runtime model during each epoch (`EpochStats.runtime`)."""
        trainer = trainer or self.trainer
        trainer.reset(self.initial, seed)
        with self.train_source.explain_errors():
            return trainer.fit(
                dataset,
                self.options.epochs,
                test_ds=self.test_batches,
                progress=False,
                runtime=runtime,
            )

    def legend(self, variant: str) -> Legend:
        """What names ``variant``'s stages in tf.data's runtime model (`pipelines.legend`),
        made once per variant."""
        if variant not in self._legends:
            options = self._build_options(0)
            self._legends[variant] = pipelines.legend(variant, self.train_source, **options)
        return self._legends[variant]

    def train_traced(
        self, variant: str, epochs: int | None = None, seed: int | None = None
    ) -> tuple[list[EpochStats], Timeline]:
        """`train` through a traced build of ``variant``: the run and its timeline.

        ``epochs``: default the run's. ``seed``: as for `train` and `build`.
        """
        options = self._build_options(seed)
        dataset, stages, log = pipelines.build_traced(variant, self.train_source, **options)
        dataset = own_threads(dataset, self.options.model_threads)
        recorder = TimelineRecorder(stages, log)
        self.trainer.reset(self.initial, seed)
        with self.train_source.explain_errors():
            stats = self.trainer.fit(
                dataset,
                epochs or self.options.epochs,
                test_ds=self.test_batches,
                progress=False,
                recorder=recorder,
            )
        return stats, recorder.timeline()

    def capture_epoch(self, variant: str, logdir: Path) -> Path:
        """One epoch of training through ``variant`` under the TensorFlow profiler.

        The capture (``logdir/plugins/profile/<time>/<host>.xplane.pb``) opens in
        xprof or TensorBoard's profile plugin: the trainer marks each step, so its
        input-pipeline page splits step time into input and compute.
        """
        dataset = self.build(variant)
        self.trainer.reset(self.initial)
        logdir.mkdir(parents=True, exist_ok=True)
        tf.profiler.experimental.start(str(logdir))
        try:
            with self.train_source.explain_errors():
                self.trainer.fit(dataset, 1, test_ds=self.test_batches, progress=False)
        finally:
            tf.profiler.experimental.stop()
        return logdir

    def fits_in_memory(self) -> bool:
        """Whether the decoded training data would take under a quarter of physical memory."""
        decoded = self.train_source.num_examples * 4 * int(np.prod(self.image_shape))
        try:
            memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return True  # unknown: assume a workstation
        return decoded < memory / 4

    def in_memory_batches(self) -> list[dict[str, tf.Tensor]]:
        """The training batches held in memory (on the GPU when there is one), read once
        per session: every set of passes and the yardstick's rounds train the ceiling on them.

        No reading, decoding or augmenting is left in them.
        """
        if self._batches is None:
            device = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
            with tf.device(device):
                self._batches = [
                    {IMAGE: tf.identity(batch[IMAGE]), LABEL: tf.identity(batch[LABEL])}
                    for batch in self.build("naive")
                ]
        return self._batches

    def measure(self, trials: list[Trial]) -> Passes:
        """Run ``trials`` in randomized interleaved passes (`benchmarks.measuring.passes`), once.

        The passes are kept (``self.passes``): every benchmark of the run reads
        its rounds from them.
        """
        if self.passes is None:
            trials = set(trials)
            twins = accuracy_trials(trials) if self.step_time is not None else set()
            # Accuracy in the first passes only, unless base and head are judged on it
            # pass by pass (--perf-against).
            first_only = () if self.options.pairs else twins
            self.passes = self.interleave(
                trials | twins, self.options.plan, self.judged, first_only=first_only
            )
            merge_accuracy(self.passes)
            self.records.passes = self.passes
            self.records.alternations = self.alternate_pairs(trials)
            self.records.alone_alternations = self.alternate_pairs_alone(trials)
            self.records.yardsticks = self.alternate_with_ceiling(trials)
        return self.passes

    def judged(self, passes: Passes) -> list[Any]:
        """The estimates that decide whether the run's passes need another: the judged
        ratios, and each `--perf-against` pair's start-up head over base."""
        return pass_estimates(passes) + startup_estimates(passes, self.options.pairs)

    def interleave(
        self,
        trials: Iterable[Trial],
        plan: PassPlan,
        estimates: Callable[[Passes], list[Any]] = pass_estimates,
        first_only: Iterable[Trial] = (),
    ) -> Passes:
        """Run ``trials`` in randomized interleaved passes as ``plan`` says (not kept);
        ``estimates``: the figures whose precision decides whether another pass is needed
        (by default the run's judged ratios); ``first_only``: trials made in the plan's
        first passes only."""
        trials = list(trials)
        self.warm_up()
        batches = self.in_memory_batches() if any(t.variant == "ceiling" for t in trials) else []
        try:
            return run_passes(
                trials,
                lambda trial, seed: self.run_trial(trial, batches, seed),
                plan,
                # A new order every run, recorded with it; the passes' seeds (model,
                # shuffles, augmentation) are drawn from the run's seed (--perf-seed).
                seed=random.SystemRandom().randrange(2**32),
                estimates=estimates,
                run_seed=self.options.seed,
                progress=self.progress,
                together=[
                    (Trial(kind, head), Trial(kind, base))
                    for head, base in self.options.pairs
                    for kind in ("training", "pipeline", ACCURACY)
                ],
                first_passes_only=first_only,
            )
        finally:
            self.progress.done()

    def alternate_pairs(
        self, trials: set[Trial], consumer: EpochLoop | None = None
    ) -> dict[str, Alternation]:
        """Each `--perf-against` pair whose head is trained in this run, epoch by epoch
        (`benchmarks.measuring.alternation`) on the timed device (or ``consumer``); head
        name -> its rounds."""
        found = {}
        for head, base in self.options.pairs:
            if {Trial("training", head), Trial("training", base)} <= trials:
                found[head] = self.alternate(head, base, consumer=consumer)
        return found

    def alternate_pairs_alone(self, trials: set[Trial]) -> dict[str, Alternation]:
        """`alternate_pairs` with the pipelines alone (a device taking no time), where the
        timed device is a stand-in with a step: what a change costs the pipeline itself."""
        if self.step_time is None or self.step_time.seconds == 0:
            return {}
        return self.alternate_pairs(trials, StandIn(ALONE))

    def alternate_with_ceiling(self, trials: set[Trial]) -> dict[str, Alternation]:
        """--perf-yardstick: each variant trained in this run (not a base version), its
        steady epochs alternated with the ceiling's; variant name -> its rounds."""
        if not self.options.yardstick:
            return {}
        bases = {base for _, base in self.options.pairs}
        batches = self.in_memory_batches()
        variants = sorted(t.variant for t in trials if t.kind == "training")
        return {
            name: self.alternate(name, "ceiling", batches) for name in variants if name not in bases
        }

    def alternate(
        self,
        head: str,
        base: str,
        batches: list[dict[str, tf.Tensor]] | None = None,
        consumer: EpochLoop | None = None,
    ) -> Alternation:
        """Steady epochs of ``head`` and ``base`` in alternation on the timed device (or
        ``consumer``), each version built once (with the run's seed), as the run's
        alternation plan says. ``batches``: the base's epochs are these (the ceiling's
        batches in memory)."""
        built = {BASE: self.build(base) if batches is None else batches, HEAD: self.build(head)}
        consumer = consumer or self.trainer
        consumer.reset(self.initial)

        def run_epoch(side: int) -> float:
            with self.train_source.explain_errors():
                return consumer.train_epoch(built[side], 0, progress=False).examples_per_s

        def progress(found: Alternation) -> None:
            self.progress.note(f"{head} against {base}, epoch by epoch: round {found.rounds}")

        try:
            return alternate(
                head,
                base,
                run_epoch,
                self.options.alternation,
                self.options.seed,
                progress=progress,
            )
        finally:
            self.progress.done()

    def run_trial(
        self, trial: Trial, batches: list[dict[str, tf.Tensor]], seed: int | None = None
    ) -> tuple[Any, float]:
        """Run ``trial`` once on a fresh build (with its pass's ``seed``): its result and
        the seconds it timed."""
        if trial.kind == "pipeline":
            epoch = self.iterate(self.build(trial.variant, seed=seed))
            return epoch, epoch.seconds
        if trial.kind == ACCURACY:
            data = batches if trial.variant == "ceiling" else self.build(trial.variant, seed=seed)
            stats = self.train(data, seed, self.model_trainer)
        elif trial.kind == "ceiling":
            stats = self.train(batches, seed)
        elif trial.kind == "traced":
            stats = self.train_traced(trial.variant, seed=seed)[0]
        else:
            # Timed training reads tf.data's runtime model as it goes; the unobserved
            # twin, timed beside it for the overhead, does not.
            runtime = trial.kind != UNOBSERVED
            stats = self.train(self.build(trial.variant, seed=seed), seed, runtime=runtime)
        return stats, run_totals([stats], "wall_s")[0]

    def iterate(self, dataset: tf.data.Dataset) -> PipelineEpoch:
        """Iterate one epoch without a model; ``cpu_s`` is the process's CPU time (every thread)."""
        batches = elements = 0
        started, cpu_started = time.perf_counter(), time.process_time()
        with self.train_source.explain_errors():
            for batch in dataset:
                batches += 1
                elements += int(batch[LABEL].shape[0])
        seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
        return PipelineEpoch(batches, elements, seconds, cpu_s)

    def common_info(self) -> dict[str, Any]:
        """The parameters every figure carries."""
        profile = self.options.profile
        return {
            "dataset": self.options.data.describe(),
            "source": self.train_source.describe(),
            "profile": profile.name,
            "model": self.options.model,
            "epochs": self.options.epochs,
            "batch_size": self.options.batch_size,
            "image_shape": list(self.image_shape),
            "seed": self.options.seed,
            # What the timed figures were measured on, and where its step time came from.
            "device": self.step_time.describe() if self.step_time else device_name(),
            "step_time_s": self.step_time.seconds if self.step_time else None,
            "step_time_origin": self.step_time.origin if self.step_time else None,
            # Accuracy always comes from real training, on this device.
            "accuracy_device": device_name(),
            "strategy": strategy_name(self.strategy or tf.distribute.get_strategy()),
            "mixed_precision": self.options.mixed_precision,
            "jit_compile": self.options.jit_compile,
            # The core budget (`benchmarks.measuring.cores`): threads for the model's ops, or
            # None (a GPU, or shared cores).
            "model_threads": self.options.model_threads,
            # With --skip-corrupt: records left out of training and test data.
            "corrupt_skipped": len(self.train_source.skipped) + len(self.test_source.skipped),
        }
