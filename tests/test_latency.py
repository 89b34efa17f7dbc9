"""The storage-latency wrapper adds the delays it promises."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.data.experimental.ops.testing import sleep as _sleep_dataset

from pipelines import DataError, sources
from pipelines.sources.latency import Latency, parse_latency

OPEN_S, READ_S = 0.030, 0.004


def epoch_seconds(dataset_or_source) -> float:
    """Best wall time of three passes, after a warm-up pass (tracing, thread start-up)."""
    dataset = getattr(dataset_or_source, "records", lambda: dataset_or_source)()
    for _ in dataset:
        pass
    times = []
    for _ in range(3):
        started = time.perf_counter()
        for _ in dataset:
            pass
        times.append(time.perf_counter() - started)
    return min(times)


@pytest.fixture(scope="module")
def plain() -> sources.Source:
    images = np.zeros((60, 8, 8, 3), np.uint8)
    return sources.arrays_source(images, np.arange(60) % 10, num_shards=4)


def sleep_seconds(delay_s: float, count: int = 20) -> float:
    """What one in-graph sleep of ``delay_s`` really costs on this machine, now."""
    return (
        epoch_seconds(tf.data.Dataset.range(count).apply(_sleep_dataset(round(delay_s * 1e6))))
        / count
    )


def test_latency_adds_one_open_per_shard_and_one_read_per_record(plain):
    slow = sources.with_latency(plain, Latency(open_s=OPEN_S, read_s=READ_S))
    added = epoch_seconds(slow) - epoch_seconds(plain)
    # Each shard: one open, one read per record, and one read that finds its end.
    opens, reads = plain.num_shards, plain.num_examples + plain.num_shards
    promised = opens * OPEN_S + reads * READ_S
    assert added >= 0.97 * promised, f"added {added:.3f}s, promised at least {promised:.3f}s"
    # A blocked thread wakes late by an amount that depends on the machine
    # (up to 1.6x here); with the real cost of one sleep measured in the same
    # run, the count of delays must match the promise closely.
    calibrated = opens * sleep_seconds(OPEN_S, 5) + reads * sleep_seconds(READ_S)
    assert 0.85 <= added / calibrated <= 1.2, f"added {added:.3f}s, calibrated {calibrated:.3f}s"


def test_parallel_readers_overlap_their_delays(plain):
    slow = sources.with_latency(plain, Latency(open_s=OPEN_S, read_s=READ_S))
    interleaved = slow.shard_dataset().interleave(
        slow.read_shard, cycle_length=4, num_parallel_calls=4, deterministic=False
    )
    assert sum(1 for _ in interleaved) == plain.num_examples
    # Four shards read at once: the waits overlap, as on remote storage. Ideal
    # is 4x; thread wake-ups on a busy 2-core machine cost some of it.
    assert epoch_seconds(slow) / epoch_seconds(interleaved) >= 1.5


def test_no_latency_returns_the_source_unchanged(plain):
    assert sources.with_latency(plain, "none") is plain


def test_latency_profiles_parse_by_name_and_by_value():
    assert parse_latency("remote") == sources.LATENCY_PROFILES["remote"]
    assert parse_latency("open=15ms,read=0.5ms") == Latency(open_s=0.015, read_s=0.0005)
    assert str(Latency(open_s=0.02, read_s=0.001)) == "open=20ms,read=1ms"


def test_an_unknown_latency_is_a_one_line_error():
    with pytest.raises(
        DataError, match=r"^--perf-latency: unknown latency 'slow'; use none, remote"
    ):
        parse_latency("slow")
