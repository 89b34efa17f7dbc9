"""A stand-in accelerator: a training step that waits the device's step time.

A GPU user's host only feeds the device: the model's step runs elsewhere, and
the host's cores are the pipeline's. Trained on the CPU instead, the model
takes the cores and ~28 times longer per batch than a fast pipeline, which
hides the pipeline's cost. The stand-in consumes each batch as a device would
(the batch copied out of the pipeline's tensors, as a host-to-device copy takes
it) and then waits, without using the CPU, until the device's step time has
passed since the batch was handed over. What it times is what the pipeline
would cost training on that device. A step of 0 is the pipeline alone, the
fastest device there is.

Where the step time comes from is part of every figure (`StepTime.origin`):
a device profile measured on a real accelerator (`models.device_profile`
writes one; `load_profile` reads it), a time the user gives, or the default
for the embedded workload (`DEFAULT_STEP_S`, with its reasoning).
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
import tomllib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.trainer import EpochLoop
from pipelines.element import IMAGE, LABEL
from pipelines.errors import DataError
from pipelines.sources.base import Record

# The devices a run can time against: the stand-in (a wait of the device's step),
# the real model where it is (the GPU when there is one, else the CPU), or nothing
# (the pipeline alone: a stand-in whose step is 0).
DEVICES = ("stand-in", "real", "alone")
# The step time of the default stand-in, per batch of `DEFAULT_BATCH` 32x32x3 images,
# when no profile measured on a real accelerator is shipped for the model: 2 ms, the
# order of one training step of a small CNN on a current GPU, where a step of a few
# dozen kernels is bound by their launches rather than their arithmetic. It is an
# assumption, not a measurement, and every figure made with it says so; a profile
# measured by `python3 tasks.py full` on a GPU (models/device_profiles/) replaces it.
DEFAULT_STEP_S = 0.002
DEFAULT_BATCH = 64
DEFAULT_ORIGIN = (
    "default: 2 ms a batch of 64 images of 32x32x3, an assumed small-CNN step on a GPU,"
    " not measured (give yours: --perf-step-time or --perf-device-profile)"
)
# A step time longer than this is refused as absurd (no device takes 10 s a batch
# where an input pipeline could matter).
MAX_STEP_S = 10.0
# Where profiles measured on real accelerators are shipped, one TOML file each.
SHIPPED_PROFILES = Path(__file__).resolve().parent / "device_profiles"

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(us|ms|s)\s*$")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


@dataclasses.dataclass(frozen=True)
class StepTime:
    """A device's time for one training step of a batch, and where the figure comes from."""

    seconds: float
    origin: str

    def describe(self) -> str:
        """E.g. ``stand-in 2.00 ms a step`` (or ``pipeline alone`` for a step of 0)."""
        if self.seconds == 0:
            return "pipeline alone (a device taking no time)"
        return f"stand-in {self.seconds * 1e3:.2f} ms a step"


def check_step(seconds: float, where: str) -> float:
    """``seconds`` if it is a step time a device can have, else a `DataError` naming ``where``."""
    if not math.isfinite(seconds) or seconds < 0:
        raise DataError(where, f"a step time must be 0 or more seconds, got {seconds!r}")
    if seconds > MAX_STEP_S:
        raise DataError(
            where, f"a step time of {seconds:g} s is absurd (at most {MAX_STEP_S:g} s a batch)"
        )
    return seconds


def parse_duration(text: str, where: str) -> float:
    """``2ms``, ``0.002s`` or ``1500us`` in seconds, checked by `check_step`."""
    found = _DURATION.match(text)
    if found is None:
        raise DataError(where, f"{text!r} is not a step time; write it as 2ms, 0.002s or 500us")
    return check_step(float(found.group(1)) * _UNITS[found.group(2)], where)


@dataclasses.dataclass(frozen=True)
class ProfileStep:
    """One measured step: a model, a batch size and an image shape, and its seconds."""

    model: str
    batch_size: int
    image_shape: tuple[int, ...]
    step_s: float

    @property
    def pixels(self) -> int:
        """Values a batch holds (examples x height x width x channels)."""
        return self.batch_size * math.prod(self.image_shape)


@dataclasses.dataclass(frozen=True)
class DeviceProfile:
    """A device's measured step times (`models.device_profile` writes the file)."""

    path: Path
    device: str
    steps: tuple[ProfileStep, ...]
    measured: str = ""

    def steps_of(self, model: str) -> list[ProfileStep]:
        """The steps measured for ``model``; a `DataError` naming the file when none was."""
        mine = [step for step in self.steps if step.model == model]
        if not mine:
            names = ", ".join(sorted({step.model for step in self.steps}))
            raise DataError(self.path, f"no step time for model {model!r} (it has: {names})")
        return mine

    def step_for(self, model: str, batch_size: int, image_shape: Sequence[int]) -> StepTime:
        """The step time of ``model`` at ``batch_size`` and ``image_shape``: measured, or
        scaled from the same model's nearest measured size in proportion to the values a
        batch holds; a `DataError` naming the file when the model was not measured."""
        shape = tuple(int(n) for n in image_shape)
        mine = self.steps_of(model)
        where = f"{self.device}, {self.path.name}"
        for step in mine:
            if step.batch_size == batch_size and step.image_shape == shape:
                return StepTime(step.step_s, f"measured on {where}")
        wanted = batch_size * math.prod(shape)
        nearest = min(mine, key=lambda step: abs(math.log(step.pixels / wanted)))
        scaled = nearest.step_s * wanted / nearest.pixels
        size = "x".join(map(str, nearest.image_shape))
        return StepTime(
            scaled,
            f"scaled from {nearest.model} at batch {nearest.batch_size}, {size}, measured on"
            f" {where}",
        )


def load_profile(path: str | Path) -> DeviceProfile:
    """Read a device profile; a missing, corrupt or incomplete file is a one-line `DataError`."""
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(path, "no such device profile") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(path, f"cannot read the device profile: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise DataError(path, f"not a valid TOML device profile: {error}") from None
    device = table.get("device")
    rows = table.get("steps")
    if not isinstance(device, str) or not isinstance(rows, list) or not rows:
        raise DataError(path, 'a device profile needs device = "NAME" and [[steps]] entries')
    steps = tuple(_profile_step(row, path, number) for number, row in enumerate(rows, 1))
    return DeviceProfile(path, device, steps, str(table.get("measured", "")))


def _profile_step(row: Any, path: Path, number: int) -> ProfileStep:
    """One ``[[steps]]`` entry, validated."""
    where = f"{path} [[steps]] #{number}"
    try:
        shape = tuple(int(n) for n in row["image_shape"])
        step = ProfileStep(str(row["model"]), int(row["batch_size"]), shape, float(row["step_s"]))
    except (KeyError, TypeError, ValueError):
        raise DataError(
            where, "needs model, batch_size, image_shape = [H, W, C] and step_s (seconds)"
        ) from None
    if step.batch_size < 1 or len(shape) != 3 or min(shape) < 1:
        raise DataError(where, "batch_size and the image_shape's sides must be 1 or more")
    check_step(step.step_s, where)
    return step


def shipped_profile(model: str) -> DeviceProfile | None:
    """The first profile shipped with the suite (by file name) that measured ``model``."""
    for path in sorted(SHIPPED_PROFILES.glob("*.toml")):
        profile = load_profile(path)
        if any(step.model == model for step in profile.steps):
            return profile
    return None


def default_step(batch_size: int, image_shape: Sequence[int]) -> StepTime:
    """`DEFAULT_STEP_S` for a batch of ``batch_size`` images of ``image_shape``, scaled in
    proportion to the values a batch holds from its 64 images of 32x32x3."""
    scale = batch_size * math.prod(image_shape) / (DEFAULT_BATCH * 32 * 32 * 3)
    origin = DEFAULT_ORIGIN if scale == 1 else f"{DEFAULT_ORIGIN}; scaled to this batch"
    return StepTime(DEFAULT_STEP_S * scale, origin)


# The fastest device: none (`--perf-device alone`, and --perf-against's rounds alone).
ALONE = StepTime(0.0, "the pipeline alone: no device step")


class StandIn(EpochLoop):
    """Consumes batches as a device taking ``step.seconds`` a batch would, with no model.

    Each step copies the batch out of the pipeline's tensors (what a host-to-device
    copy reads) and then sleeps, releasing the CPU, until the step time has passed
    since the batch was handed over. It keeps the trainer's interface (`fit`,
    `train_epoch`, `reset`) so that every timed trial, timeline and alternation runs
    through it unchanged; it evaluates nothing, so its epochs carry no accuracy.
    """

    evaluates = False

    def __init__(self, step: StepTime) -> None:
        self.step_time = step

    def reset(self, initial: Any = None, seed: int | None = None) -> None:
        """Nothing to reset: a stand-in keeps no state between runs."""

    def step(
        self, batch: Record, alongside: Callable[[], None] | None = None
    ) -> tuple[float, int, int]:
        handed = time.perf_counter()
        images = np.array(batch[IMAGE], copy=True)
        np.array(batch[LABEL], copy=True)
        if alongside is not None:
            alongside()  # the host is free while the device computes
        left = handed + self.step_time.seconds - time.perf_counter()
        if left > 0:
            time.sleep(left)
        return math.nan, 0, int(images.shape[0])

    def check_fits(self, ds: Iterable[Record], where: str) -> None:
        """Any batch fits a stand-in."""


@dataclasses.dataclass(frozen=True)
class DeviceChoice:
    """What a run's timed trials consume batches on (``--perf-device``), and the step time
    asked for (``--perf-step-time``, ``--perf-device-profile``)."""

    name: str = "stand-in"
    step_s: float | None = None
    profile: DeviceProfile | None = None
    # How the step time was given, for its origin (e.g. "--perf-step-time 2ms").
    given_as: str = ""

    def __post_init__(self) -> None:
        if self.name not in DEVICES:
            raise DataError(
                "--perf-device", f"unknown device {self.name!r}; choose {', '.join(DEVICES)}"
            )

    def step_for(self, model: str, batch_size: int, image_shape: Sequence[int]) -> StepTime | None:
        """The stand-in's step time for this workload (None: the real device trains)."""
        if self.name == "real":
            return None
        if self.name == "alone":
            return ALONE
        if self.step_s is not None:
            return StepTime(self.step_s, f"given: {self.given_as}")
        profile = self.profile or shipped_profile(model)
        if profile is not None:
            return profile.step_for(model, batch_size, image_shape)
        return default_step(batch_size, image_shape)
