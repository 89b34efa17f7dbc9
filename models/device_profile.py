"""python -m models.device_profile: measure a device's training step times into a profile.

On a machine with an accelerator (``python3 tasks.py full`` runs it first), this
times the real model's training step on batches already on the device, for each
workload of the suite's profiles (model, batch size, image shape), and writes a
TOML file that the stand-in device reads (`models.stand_in.load_profile`). Ship it
in ``models/device_profiles/`` and every run without a GPU times its pipelines at
that device's pace, saying where the step time came from.

    python -m models.device_profile --out models/device_profiles/h100.toml
    python -m models.device_profile --out my.toml --workload my_models:build,32,224x224x3
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

from models.devices import configure_gpus
from models.trainer import InitialModel, Trainer
from models.zoo import build_for
from pipelines.element import IMAGE, LABEL
from pipelines.errors import InputError

# The workloads of the suite's profiles (smoke and check: the tiny CNN on the embedded
# 32x32 set; full: the lab's CIFAR model), as (model, batch size, image shape).
WORKLOADS = (("tiny", 64, (32, 32, 3)), ("cifar_cnn_bn", 128, (32, 32, 3)))
CLASSES = 10


def device_label() -> str:
    """The device a step runs on here: the first GPU's name, or the CPU."""
    gpus = configure_gpus()
    if not gpus:
        return "CPU"
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)


def step_seconds(model: str, batch_size: int, shape: Sequence[int], steps: int = 50) -> float:
    """Median seconds of one synchronised training step of ``model`` on batches already on
    the device (after warming up: the first steps trace and compile)."""
    initial = InitialModel(lambda: build_for(model, tuple(shape), CLASSES))
    trainer = Trainer(initial.fresh())
    device = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    with tf.device(device):
        batch = {
            IMAGE: tf.random.uniform((batch_size, *shape)),
            LABEL: tf.random.uniform((batch_size,), maxval=CLASSES, dtype=tf.int64),
        }
    for _ in range(5):
        trainer.step(batch)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        trainer.step(batch)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def profile_text(device: str, rows: Sequence[tuple[str, int, Sequence[int], float]]) -> str:
    """The TOML of a profile: the device, when, and one ``[[steps]]`` entry per workload."""
    lines = [
        f'device = "{device}"',
        f'measured = "{datetime.date.today().isoformat()} with TensorFlow {tf.__version__}"',
        'command = "python -m models.device_profile"',
    ]
    for model, batch, shape, seconds in rows:
        lines += [
            "",
            "[[steps]]",
            f'model = "{model}"',
            f"batch_size = {batch}",
            f"image_shape = [{', '.join(map(str, shape))}]",
            f"step_s = {seconds:.6g}",
        ]
    return "\n".join(lines) + "\n"


def parse_workload(text: str) -> tuple[str, int, tuple[int, ...]]:
    """``MODEL,BATCH,HxWxC`` -> (model, batch size, image shape)."""
    try:
        model, batch, shape = text.split(",")
        return model, int(batch), tuple(int(n) for n in shape.lower().split("x"))
    except ValueError:
        raise InputError("--workload", f"{text!r} is not MODEL,BATCH,HxWxC") from None


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2: bad input, one line)."""
    parser = argparse.ArgumentParser(prog="python -m models.device_profile", description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="the profile file to write")
    parser.add_argument(
        "--workload",
        action="append",
        default=[],
        metavar="MODEL,BATCH,HxWxC",
        help="a workload to measure (repeatable; default: the suite's profiles')",
    )
    parser.add_argument("--steps", type=int, default=50, help="timed steps per workload")
    args = parser.parse_args(argv)
    try:
        workloads = [parse_workload(w) for w in args.workload] or list(WORKLOADS)
        device = device_label()
        rows = [(m, b, s, step_seconds(m, b, s, args.steps)) for m, b, s in workloads]
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(profile_text(device, rows))
    for model, batch, shape, seconds in rows:
        size = "x".join(map(str, shape))
        print(f"{device}: {model} batch {batch} {size}: {seconds * 1e3:.3f} ms")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
