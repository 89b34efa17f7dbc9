"""Start-up and steady state: the two things a training run's epochs measure.

A full epoch mixes a one-time cost (creating the iterator, opening files,
filling a shuffle buffer or a cache, the first batch's wait) into its
throughput. On a short epoch, or on a GPU where a step is short, the two behave
differently, and a change to one is invisible in the other. So each run is
read twice:

- **start-up**: the wait for the first batch of the first epoch
  (``first_batch_s``), and the first epoch's extra cost: its time beyond what
  its examples take at the steady rate (``first_epoch_extra_s``);
- **steady state**: examples per second once warm. With two epochs or more,
  the epochs after the first, whole (a cache is full, every file has been
  opened once); with one epoch, its steps after the first (`steady_span`).
- **epoch start**: within steady state, the wait for the first batch of each
  later epoch (``epoch_start_s``): a new iterator, a shuffle buffer refilled,
  nothing read ahead. It stays inside the steady rate, since the examples
  read while it waits are the ones the epoch then hands out without reading
  (leaving it out counted a 1,024-example buffer's reads as free: 2x on a
  2,000-example epoch), but it is shown apart, so that a change to it (a
  bigger buffer) is seen as what it is.

The full-epoch time (the lab's measure) is kept beside them.
"""

from __future__ import annotations

from collections.abc import Sequence

from models.trainer import EpochStats


def steady_epochs(run: Sequence[EpochStats]) -> Sequence[EpochStats]:
    """The epochs of the run's steady state: every one after the first (or the only one)."""
    return run[1:] if len(run) > 1 else run


def steady_span(run: Sequence[EpochStats]) -> tuple[int, float]:
    """(examples, seconds) of the run's steady state: every epoch after the first, whole,
    or, with one epoch, its steps after the first (the first wait and step left out)."""
    if len(run) > 1:
        later = steady_epochs(run)
        return sum(e.examples for e in later), sum(e.wall_s for e in later)
    only = run[0]
    examples = only.examples - only.first_examples
    seconds = only.wall_s - only.first_batch_s - only.first_step_s
    if examples <= 0 or seconds <= 0:  # a one-step epoch has no steady part
        return only.examples, only.wall_s
    return examples, seconds


def steady_rate(run: Sequence[EpochStats]) -> float:
    """Examples per second of the run's steady state (`steady_span`)."""
    examples, seconds = steady_span(run)
    return examples / seconds if seconds > 0 else 0.0


def first_batch_s(run: Sequence[EpochStats]) -> float:
    """Seconds from the first epoch's start to its first batch (the iterator's creation in)."""
    return run[0].first_batch_s


def epoch_start_s(run: Sequence[EpochStats]) -> float:
    """Mean seconds each epoch after the first waited for its first batch (0 with one
    epoch): part of the steady state, shown apart."""
    later = run[1:]
    return sum(e.first_batch_s for e in later) / len(later) if later else 0.0


def first_epoch_extra_s(run: Sequence[EpochStats]) -> float:
    """The first epoch's seconds beyond its examples at the steady rate (0 when it was not
    slower): what starting up cost in all, the first batch's wait included."""
    rate = steady_rate(run)
    if rate <= 0:
        return 0.0
    first = run[0]
    return max(first.wall_s - first.examples / rate, 0.0)
