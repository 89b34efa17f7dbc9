"""One benchmark session: its options, data, model, and what each benchmark measured.

The benchmarks are thin (`bench_training.py`); timing and bookkeeping live
here, once: how a round is set up and run, and the metrics each benchmark
records. Ratios that need two measurements of the same session (speedup over
``naive``, slowdown against the ceiling) are filled in at the end, in
`derived_metrics`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

import models
import pipelines
from benchmarks.bottleneck import StageTimes, analyze, stage_gate_figures
from benchmarks.gates import metrics_by_variant
from models.devices import configure_gpus, default_strategy, precision, strategy_name
from models.trainer import EpochStats, InitialModel, Trainer, input_bound_of
from pipelines.data import DataChoice
from pipelines.element import IMAGE, LABEL
from pipelines.errors import DataError
from pipelines.service import LocalService
from pipelines.timeline import Timeline, TimelineRecorder
from pipelines.variants import EVALUATION

# The exit status when a tf.data service worker dies mid-run (pytest's own go up to 5).
DIED_WORKER_EXIT = 3


@dataclasses.dataclass(frozen=True)
class PerfProfile:
    """How big a benchmark run is."""

    name: str
    model: str
    epochs: int
    batch_size: int
    rounds: int


PROFILES = {
    # Minutes on two CPU cores: the embedded smoke set, a small CNN, one timed round.
    "smoke": PerfProfile("smoke", model="tiny", epochs=3, batch_size=64, rounds=1),
    # CIFAR-size data and the lab's CIFAR model; meant for a GPU.
    "full": PerfProfile("full", model="cifar_cnn_bn", epochs=3, batch_size=128, rounds=3),
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


class PipelineEpoch(NamedTuple):
    """One epoch of a pipeline iterated without a model."""

    batches: int
    elements: int
    seconds: float
    cpu_s: float


def run_totals(
    runs: Iterable[Sequence[EpochStats]], field: str, epochs: slice = slice(None)
) -> list[float]:
    """Per training run, ``field`` (``wall_s`` or ``cpu_s``) summed over its ``epochs`` (all)."""
    return [sum(getattr(epoch, field) for epoch in run[epochs]) for run in runs]


class PerfSession:
    """Data, model and results shared by every benchmark of a pytest session."""

    def __init__(
        self, options: PerfOptions, data: tuple[pipelines.Source, pipelines.Source]
    ) -> None:
        """``data``: the (train, test) sources of ``options.data``, opened (`open_data`)."""
        self.options = options
        profile = options.profile
        self.train_source, self.test_source = data
        model_options = (
            {"input_shape": self.train_source.image_shape} if profile.model == "tiny" else {}
        )
        configure_gpus()  # memory growth, before anything touches a GPU
        # Several GPUs: mirrored across them; one device: plain steps (no strategy overhead).
        strategy = default_strategy()
        self.strategy = strategy if strategy.num_replicas_in_sync > 1 else None
        self.initial = InitialModel(
            lambda: models.build(profile.model, **model_options), options.seed
        )
        with precision(options.mixed_precision), strategy.scope():
            model = self.initial.fresh()
        self.trainer = Trainer(model, strategy=self.strategy, jit_compile=options.jit_compile)
        # Read once, held in memory: evaluation then costs every variant the same,
        # model time only, and no pipeline is left half-iterated.
        test_ds = pipelines.build(EVALUATION, self.test_source, batch_size=profile.batch_size)
        with self.test_source.explain_errors():
            self.test_batches = list(test_ds)
        self.metrics: dict[str, dict[str, Any]] = {}  # benchmark name -> its extra_info
        # Called before the process must end at once (see `served`); pytest's
        # plugin points it at suspending output capture.
        self.release_output: Callable[[], None] = lambda: None
        self._warm = False

    # -- setup and runs -------------------------------------------------------------

    def build(self, variant: str, service: str | None = None) -> tf.data.Dataset:
        """A fresh dataset of ``variant`` (a new build: no cache survives from a previous round).

        ``service``: the tf.data service dispatcher, for variants that distribute.
        """
        return pipelines.build(
            variant,
            self.train_source,
            batch_size=self.options.profile.batch_size,
            seed=self.options.seed,
            service=service,
        )

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
        expected = pipelines.get(variant).contract.total_passes(workers) * (
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
        shape = self.train_source.image_shape
        batches = [
            {IMAGE: tf.zeros((size, *shape)), LABEL: tf.zeros((size,), tf.int64)}
            for size in (self.options.profile.batch_size, 1)
        ]
        self.trainer.fit(batches, 1, test_ds=batches, progress=False)
        self._warm = True

    def train(self, dataset: Any) -> list[EpochStats]:
        """Train the session's model from its initial weights on ``dataset`` for the epochs."""
        self.trainer.reset(self.initial)
        with self.train_source.explain_errors():
            return self.trainer.fit(
                dataset, self.options.epochs, test_ds=self.test_batches, progress=False
            )

    def train_traced(
        self, variant: str, epochs: int | None = None
    ) -> tuple[list[EpochStats], Timeline]:
        """`train` through a traced build of ``variant``: the run and its timeline.

        ``epochs``: default the run's.
        """
        dataset, stages = pipelines.build_traced(
            variant,
            self.train_source,
            batch_size=self.options.profile.batch_size,
            seed=self.options.seed,
        )
        recorder = TimelineRecorder(stages)
        self.trainer.reset(self.initial)
        with self.train_source.explain_errors():
            stats = self.trainer.fit(
                dataset,
                epochs or self.options.epochs,
                test_ds=self.test_batches,
                progress=False,
                recorder=recorder,
            )
        return stats, recorder.timeline()

    def fits_in_memory(self) -> bool:
        """Whether the decoded training data would take under a quarter of physical memory."""
        decoded = self.train_source.num_examples * 4 * int(np.prod(self.train_source.image_shape))
        try:
            memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return True  # unknown: assume a workstation
        return decoded < memory / 4

    def in_memory_batches(self) -> list[dict[str, tf.Tensor]]:
        """The training batches held in memory (on the GPU when there is one).

        The ceiling trains on these: no reading, decoding or augmenting left.
        """
        device = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
        batches = []
        with tf.device(device):
            for batch in self.build("naive"):
                batches.append({IMAGE: tf.identity(batch[IMAGE]), LABEL: tf.identity(batch[LABEL])})
        return batches

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

    # -- recording --------------------------------------------------------------------

    def common_info(self, kind: str, variant: str) -> dict[str, Any]:
        """The parameters every figure carries."""
        profile = self.options.profile
        return {
            "kind": kind,
            "variant": variant,
            "dataset": self.options.data.describe(),
            "source": self.train_source.describe(),
            "profile": profile.name,
            "model": profile.model,
            "epochs": self.options.epochs,
            "batch_size": profile.batch_size,
            "device": device_name(),
            "strategy": strategy_name(self.strategy or tf.distribute.get_strategy()),
            "mixed_precision": self.options.mixed_precision,
            "jit_compile": self.options.jit_compile,
            # With --skip-corrupt: records left out of training and test data.
            "corrupt_skipped": len(self.train_source.skipped) + len(self.test_source.skipped),
        }

    def record_training(
        self, name: str, variant: str, runs: list[list[EpochStats]], kind: str = "training"
    ) -> dict[str, Any]:
        """Metrics of a training benchmark: medians over rounds, per-epoch lists of the last."""
        train_s = statistics.median(run_totals(runs, "wall_s"))
        examples = sum(s.examples for s in runs[-1])
        last = runs[-1]
        info = {
            **self.common_info(kind, variant),
            "train_s": train_s,
            "epoch_s": train_s / len(last),
            "epoch_times_s": [s.wall_s for s in last],
            "examples_per_s": examples / train_s,
            "cpu_s": statistics.median(run_totals(runs, "cpu_s")),
            "input_bound": input_bound_of(s for run in runs for s in run),
            "train_accuracy": [s.train_accuracy for s in last],
            "test_accuracy_per_epoch": [s.test_accuracy for s in last],
            "test_accuracy": last[-1].test_accuracy,
            "rounds": len(runs),
        }
        self.metrics[name] = info
        return info

    def record_pipeline(self, name: str, variant: str, runs: list[PipelineEpoch]) -> dict[str, Any]:
        """Metrics of a pipeline-only benchmark."""
        seconds = statistics.median(run.seconds for run in runs)
        info = {
            **self.common_info("pipeline", variant),
            "seconds": seconds,
            "cpu_s": statistics.median(run.cpu_s for run in runs),
            "batches": runs[-1].batches,
            "elements": runs[-1].elements,
            "elements_per_s": runs[-1].elements / seconds if seconds else 0.0,
        }
        self.metrics[name] = info
        return info

    def record_timeline(
        self, name: str, variant: str, stats: list[EpochStats], timeline: Timeline
    ) -> dict[str, Any]:
        """Metrics of a traced run: its compact timeline (the bottleneck comes later)."""
        info = {
            **self.common_info("timeline", variant),
            "epoch_times_s": [s.wall_s for s in stats],
            "input_bound": input_bound_of(stats),
            "fits_in_memory": self.fits_in_memory(),
            "timeline": timeline.to_dict(),
        }
        self.metrics[name] = info
        return info

    def record_tracing_overhead(
        self,
        name: str,
        variant: str,
        untraced: list[list[EpochStats]],
        traced: list[list[EpochStats]],
    ) -> dict[str, Any]:
        """Traced against untraced training runs of the same variant, measured alternately.

        Wall time is what the goal is about; CPU time (every thread of the
        process) is what tracing adds, and on a shared machine it is the
        steadier figure: other work slows a run down, it does not add to its CPU.
        """
        untraced_s, traced_s = run_totals(untraced, "wall_s"), run_totals(traced, "wall_s")

        def overhead(field: str, epochs: slice = slice(None)) -> float:
            # Ratio of medians - 1: 0.05 is 5% more (0.0 if the untraced median is 0).
            below = statistics.median(run_totals(untraced, field, epochs))
            above = statistics.median(run_totals(traced, field, epochs))
            return above / below - 1 if below else 0.0

        info = {
            **self.common_info("tracing_overhead", variant),
            "untraced_s": untraced_s,
            "traced_s": traced_s,
            "tracing_overhead": overhead("wall_s"),
            "tracing_cpu_overhead": overhead("cpu_s"),
            # Where it goes: the first epoch stamps every read and decode; a
            # cached variant's later epochs stamp only its batches and maps.
            "tracing_overhead_first_epoch": overhead("wall_s", slice(0, 1)),
        }
        if min(map(len, untraced + traced)) > 1:
            info["tracing_overhead_later_epochs"] = overhead("wall_s", slice(1, None))
        self.metrics[name] = info
        return info

    def derived_metrics(self) -> None:
        """Fill in the ratios between benchmarks of this session (call once all have run)."""
        by_kind: dict[str, dict[str, dict[str, Any]]] = {}
        for info in self.metrics.values():
            by_kind.setdefault(info["kind"], {})[info["variant"]] = info
        training, pipeline = by_kind.get("training", {}), by_kind.get("pipeline", {})
        ceiling = by_kind.get("ceiling", {}).get("ceiling")
        naive = training.get("naive")
        for info in training.values():
            if naive:
                info["speedup_over_naive"] = naive["train_s"] / info["train_s"]
            if ceiling:
                info["ceiling_slowdown"] = info["train_s"] / ceiling["train_s"]
                info["fraction_of_ceiling"] = ceiling["train_s"] / info["train_s"]
            if ceiling and not info.get("service"):
                # The CPU the pipeline costs beyond the model's own: where a
                # CPU-only machine's gap to the ceiling comes from. (Service
                # workers are other processes: their CPU is not in this one's.)
                info["pipeline_cpu_s"] = info["cpu_s"] - ceiling["cpu_s"]
        one_worker = next((i for i in training.values() if i.get("service_workers") == 1), None)
        for info in training.values():
            if one_worker and info.get("service_workers"):
                info["speedup_over_1_worker"] = one_worker["train_s"] / info["train_s"]
        naive_pipeline = pipeline.get("naive")
        for info in pipeline.values():
            if naive_pipeline:
                info["speedup_over_naive"] = naive_pipeline["seconds"] / info["seconds"]
        for variant, info in by_kind.get("timeline", {}).items():
            # The untraced run's waiting share is the truer one, when there is one.
            input_bound = training.get(variant, info)["input_bound"]
            times = StageTimes.from_timeline(
                info["timeline"], input_bound, pipelines.get(variant), info["fits_in_memory"]
            )
            analysis = analyze(times)
            info["bottleneck"] = analysis.to_dict()
            info.update(stage_gate_figures(times, analysis, info["timeline"]))

    def bottlenecks(self) -> dict[str, dict[str, Any]]:
        """Per traced variant, its bottleneck analysis (after `derived_metrics`)."""
        return {
            info["variant"]: info["bottleneck"]
            for info in self.metrics.values()
            if info["kind"] == "timeline" and "bottleneck" in info
        }

    def gate_metrics(self) -> dict[str, dict[str, Any]]:
        """Per trained variant, the metrics the gates check (after `derived_metrics`)."""
        return metrics_by_variant(self.metrics.values())
