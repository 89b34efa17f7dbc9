"""Storage latency: a per-file open delay and a per-record read delay.

Local disks and page caches make every pipeline look input-fast; real
storage (object stores, network file systems) does not. Wrapping a source
with a latency profile makes opening each shard and reading each record
block for a while, so interleave and prefetch show the effect they have in
production, on any machine.

The delays are TensorFlow's own sleep dataset, which blocks a tf.data thread
in C++ (no Python, no GIL), so parallel readers really overlap their waits,
as they would on remote storage. A blocked reader is woken by the operating
system, so each delay lasts at least what was asked and typically a fraction
of a millisecond more.
"""

from __future__ import annotations

import dataclasses
import re

import tensorflow as tf

# TensorFlow ships this transformation for its own tf.data benchmarks; it is
# not exported under tf.data, hence the internal import (pinned TF version).
from tensorflow.python.data.experimental.ops.testing import sleep as _sleep_dataset

from pipelines.errors import DataError
from pipelines.sources.base import Record, Source


@dataclasses.dataclass(frozen=True)
class Latency:
    """Delays added to storage access, in seconds."""

    open_s: float = 0.0
    read_s: float = 0.0

    def __post_init__(self) -> None:
        if self.open_s < 0 or self.read_s < 0:
            raise ValueError("latency delays cannot be negative")

    def __bool__(self) -> bool:
        return self.open_s > 0 or self.read_s > 0

    def __str__(self) -> str:
        return f"open={self.open_s * 1e3:g}ms,read={self.read_s * 1e3:g}ms"


# "remote": like an object store seen from a training host: a noticeable
# first-byte latency per file, small per-record reads from a buffered stream.
LATENCY_PROFILES = {
    "none": Latency(),
    "remote": Latency(open_s=0.005, read_s=0.0001),
}

_CUSTOM = re.compile(r"^\s*open\s*=\s*([\d.]+)\s*ms\s*,\s*read\s*=\s*([\d.]+)\s*ms\s*$")


def parse_latency(spec: str, where: str = "--perf-latency") -> Latency:
    """Read a latency profile: a name from `LATENCY_PROFILES` or ``open=20ms,read=1ms``."""
    if spec in LATENCY_PROFILES:
        return LATENCY_PROFILES[spec]
    match = _CUSTOM.match(spec)
    if match is None:
        names = ", ".join(LATENCY_PROFILES)
        raise DataError(where, f"unknown latency {spec!r}; use {names} or 'open=20ms,read=1ms'")
    return Latency(open_s=float(match[1]) / 1e3, read_s=float(match[2]) / 1e3)


def with_latency(source: Source, latency: Latency | str) -> Source:
    """The same source, with each shard open and each record read delayed by ``latency``."""
    if isinstance(latency, str):
        latency = parse_latency(latency)
    if not latency:
        return source
    open_us = round(latency.open_s * 1e6)
    read_us = round(latency.read_s * 1e6)
    inner = source.read_shard

    def read_shard(shard: Record) -> tf.data.Dataset:
        # The sleep dataset sleeps before every request, the one that finds the
        # end included: take(1) stops after the open so it is paid once. For the
        # records the extra sleep stays: finding the end of a file costs a read.
        opened = tf.data.Dataset.from_tensors(shard).apply(_sleep_dataset(open_us)).take(1)
        return opened.flat_map(inner).apply(_sleep_dataset(read_us))

    return dataclasses.replace(source, read_shard=read_shard, latency=latency)
