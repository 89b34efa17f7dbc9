"""Opening the data a run trains on: the embedded set or a user's path, with latency."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pipelines.data.embedded import FORMATS, ensure_embedded
from pipelines.errors import DataError, UsageError
from pipelines.sources import Source, open_source, with_latency
from pipelines.sources.latency import parse_latency


@dataclasses.dataclass(frozen=True)
class DataChoice:
    """Which data to use: ``data`` is "embedded" or a path; the rest refine it."""

    data: str = "embedded"
    profile: str = "smoke"
    fmt: str = "tfrecord"
    latency: str = "none"
    image_size: tuple[int, int] = (32, 32)
    skip_corrupt: bool = False

    def describe(self) -> str:
        """One line for tables and reports."""
        where = f"embedded {self.profile} ({self.fmt})" if self.data == "embedded" else self.data
        return f"{where}, latency {self.latency}"


def parse_image_size(text: str, where: str = "--image-size") -> tuple[int, int]:
    """``"24"`` or ``"24x32"`` as (height, width); else a `UsageError` naming ``where``."""
    parts = text.lower().split("x")
    if len(parts) in (1, 2) and all(part.strip().isdigit() and int(part) > 0 for part in parts):
        height = int(parts[0])
        return height, int(parts[-1])
    raise UsageError(where, f"{text!r} is not an image size (N or HxW, e.g. 24 or 24x32)")


def default_latency(data: str) -> str:
    """The storage latency a run simulates unless told: "remote" for the embedded set
    (local files, where it shows what interleave and prefetch are for), "none" for a
    user's own path, whose reads are real and whose timings should be its own."""
    return "remote" if data == "embedded" else "none"


def open_data(choice: DataChoice) -> tuple[Source, Source]:
    """The (train, test) sources of ``choice``, with its storage latency on both."""
    latency = parse_latency(choice.latency)
    options = {"image_size": choice.image_size, "skip_corrupt": choice.skip_corrupt}
    if choice.data == "embedded":
        if choice.fmt not in FORMATS:
            raise DataError("--format", f"unknown format {choice.fmt!r}; use {', '.join(FORMATS)}")
        dataset = ensure_embedded(choice.profile)
        train = dataset.source(choice.fmt, "train", **options)
        test = dataset.source(choice.fmt, "test", **options)
    else:
        path = Path(choice.data)
        train = open_source(path, "train", **options)
        test = open_source(path, "test", **options)
    return with_latency(train, latency), with_latency(test, latency)
