"""Planted slow stages: does tf.data's runtime view name them, and agree with the timeline?

    python -m trials.runtime_trials --trials 10 [--plants serial_map,...]

Each plant is a variant with one stage made slow (`PLANTS`). Per trial, on the
embedded smoke set and a stand-in device of 2 ms a step: two epochs timed with the
runtime model read (`models.trainer.EpochLoop.fit` with ``runtime``), whose later
epoch names the busiest stage (`benchmarks.diagnosing.runtime_view`); then one
traced epoch, whose bottleneck analysis names the limiting stage
(`benchmarks.diagnosing.bottleneck`), set against the runtime view's first epoch.
Prints a line per trial and a count per plant.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

import tensorflow as tf

import pipelines
import trials.inject  # noqa: F401  (registers the _inject_blur transform)
from benchmarks.diagnosing.bottleneck import StageTimes, analyze
from benchmarks.diagnosing.runtime_view import runtime_view, shares_over
from models.stand_in import StandIn, StepTime
from models.trainer import input_bound_of
from pipelines.data.opening import DataChoice, open_data
from pipelines.observing.runtime_model import Legend
from pipelines.observing.timeline import TimelineRecorder
from pipelines.steps import Batch, Map, Prefetch, Read, Shuffle
from pipelines.variants import AUGMENTED, Contract, Variant

STEP = StepTime(0.002, "runtime trials")


def slow_sharpen(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """A user's own slow step: many small blurs, one example per call."""
    for _ in range(80):
        image = tf.nn.avg_pool2d(image[tf.newaxis], 3, 1, "SAME")[0]
    return image, label


def sharpened(ds: tf.data.Dataset, params: pipelines.BuildParams) -> tf.data.Dataset:
    """A plain function with the slow step, and a map that does nothing after it."""
    ds = ds.map(slow_sharpen).map(lambda image, label: (image, label))
    return ds.batch(params.batch_size).prefetch(1)


@dataclasses.dataclass(frozen=True)
class Plant:
    """A variant with a slow stage, the storage latency it runs with, the stage to name."""

    variant: Variant
    latency: str
    expected: str


_UNORDERED = dataclasses.replace(AUGMENTED, deterministic=False)
_PARALLEL = dict(parallel=True, deterministic=False)
PLANTS = {
    "serial_map": Plant(
        Variant(
            "plant_serial_map",
            (
                Read(parallel=True, deterministic=False),
                Map(("decode",), **_PARALLEL),
                Shuffle(),
                Map(("_inject_blur",)),
                Map(("augment",), **_PARALLEL),
                Batch(),
                Prefetch(),
            ),
            _UNORDERED,
        ),
        "none",
        "map(_inject_blur)",
    ),
    "serial_read": Plant(
        Variant(
            "plant_serial_read",
            (
                Read(),
                Map(("decode",), **_PARALLEL),
                Shuffle(),
                Map(("augment",), **_PARALLEL),
                Batch(),
                Prefetch(),
            ),
            _UNORDERED,
        ),
        "open=5ms,read=0.5ms",
        "read",
    ),
    # `optimized` reading its shards one at a time, on the default (remote) storage.
    "sequential_read": Plant(
        Variant(
            "plant_sequential_read",
            (
                Read(),
                Map(("decode",), **_PARALLEL),
                Map(("standardize",), **_PARALLEL),
                Shuffle(),
                Batch(),
                Map(("augment",), **_PARALLEL),
                Prefetch(),
            ),
            _UNORDERED,
        ),
        "remote",
        "read",
    ),
    "function_slow_step": Plant(
        pipelines.function_variant(sharpened, Contract(), name="plant_function"),
        "none",
        "map(slow_sharpen)",
    ),
}


def trial(plant: Plant, source: pipelines.Source, legend: Legend, seed: int) -> dict[str, str]:
    """One trial: the runtime view's busiest stages and the traced analysis' limiting one."""
    device = StandIn(STEP)
    built = pipelines.build(plant.variant, source, seed=seed)
    info = runtime_view([device.fit(built, 2, runtime=True, progress=False)], legend).to_dict()
    first = shares_over(info, 1)
    traced = pipelines.build_traced(plant.variant, source, seed=seed)
    recorder = TimelineRecorder(traced.stages, traced.log)
    stats = device.fit(traced.dataset, 1, recorder=recorder, progress=False)
    timeline = recorder.timeline().to_dict()
    times = StageTimes.from_timeline(timeline, input_bound_of(stats), plant.variant, True)
    return {
        "runtime": str(info["limiting"]),
        "runtime_epoch_1": max(first, key=first.__getitem__),
        "timeline": analyze(times).limiting_stage,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--plants", default=",".join(PLANTS))
    parser.add_argument("--profile", default="smoke", help="the embedded set's profile")
    args = parser.parse_args(argv)
    for name in args.plants.split(","):
        plant = PLANTS[name]
        source, _ = open_data(DataChoice(profile=args.profile, latency=plant.latency))
        legend = pipelines.legend(plant.variant, source)
        found = [trial(plant, source, legend, seed) for seed in range(args.trials)]
        for seed, row in enumerate(found):
            print(name, seed, row, flush=True)
        named = sum(row["runtime"] == plant.expected for row in found)
        agree = sum(row["runtime_epoch_1"] == row["timeline"] for row in found)
        print(
            f"{name}: the runtime statistics name {plant.expected} in {named} of {args.trials};"
            f" they agree with the timeline over epoch 1 in {agree} of {args.trials}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
