"""Timelines: the spans of a traced training run, per stage and epoch.

The pipeline's stages come from the spans each batch carries (see
`pipelines.observing.tracing`); the trainer adds its own: waiting for input, the
train step, the test step. `TimelineRecorder` collects them while the
trainer runs (holding the raw arrays, so recording costs one list append
per batch) and `TimelineRecorder.timeline` turns them into `Span`s.

A span that ended before its epoch began was not work of that epoch: it is
an element replayed from a cache, carrying the times of the epoch that
filled it. Such spans are dropped, so the second epoch of a cached variant
shows no open, read or map.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from pipelines.element import ID
from pipelines.observing.span_log import SpanLog
from pipelines.observing.tracing import NOT_RECORDED, SPANS, Stage
from pipelines.sources.base import Record

WAIT = Stage("wait for input", "wait")
TRAIN_STEP = Stage("train step", "train")
TEST_STEP = Stage("test step", "test")
TRAINER_STAGES = (WAIT, TRAIN_STEP, TEST_STEP)
# The parts of an epoch that are not a trainer span, named by where they fall.
ITERATOR_START = "iterator creation"
EVALUATION_START = "evaluation start"
UNEXPLAINED = "unexplained"


@dataclasses.dataclass(frozen=True)
class Span:
    """One stage's work on some examples: times in seconds from the timeline's origin."""

    stage: str
    start: float
    end: float
    epoch: int
    ids: tuple[int, ...] = ()

    @property
    def duration(self) -> float:
        """Seconds the span lasted."""
        return self.end - self.start


@dataclasses.dataclass(frozen=True)
class Timeline:
    """Every span of a traced run, with its stages (pipeline first, then trainer) and epochs.

    ``epochs`` holds (start, end) per epoch, training and its evaluation, in
    seconds from ``origin`` (a Unix time).
    """

    stages: tuple[Stage, ...]
    epochs: tuple[tuple[float, float], ...]
    spans: tuple[Span, ...]
    origin: float = 0.0

    def spans_of(self, stage: str, epoch: int | None = None) -> list[Span]:
        """The spans of ``stage`` (in ``epoch``, counted from 1, when given)."""
        return [s for s in self.spans if s.stage == stage and (epoch is None or s.epoch == epoch)]

    def busy_s(self, epoch: int | None = None) -> dict[str, float]:
        """Per stage, the summed duration of its spans (parallel spans add up)."""
        busy = {stage.name: 0.0 for stage in self.stages}
        for span in self.spans:
            if epoch is None or span.epoch == epoch:
                busy[span.stage] += span.duration
        return busy

    def active_s(self, epoch: int | None = None) -> dict[str, float]:
        """Per stage, its own wall time: while at least one of its spans ran.

        A batch's span runs from its request (`pipelines.observing.tracing.traced_batch`), so
        it also covers the wait for upstream work, a shuffle buffer filling from
        slow reads for one; while a stage before it ran, the time is that stage's,
        not the batch's, so a batch counts only what no earlier stage accounts for
        (its self time). Other stages' spans hold their own work only.
        """
        merged = {
            stage.name: merge_intervals((s.start, s.end) for s in self.spans_of(stage.name, epoch))
            for stage in self.stages
        }
        active = {}
        for index, stage in enumerate(self.stages):
            own = merged[stage.name]
            if stage.kind == "batch":
                earlier = [span for before in self.stages[:index] for span in merged[before.name]]
                own = subtract_intervals(own, merge_intervals(earlier))
            active[stage.name] = sum(end - start for start, end in own)
        return active

    def p10_s(self) -> dict[str, float]:
        """Per stage with spans, the 10th percentile of span durations over all epochs.

        What a call costs when it does not wait for a CPU: on a busy machine
        the median carries scheduling delays (it moved 14% between unchanged
        runs in the gate trials, the 10th percentile 7%), and the sums above
        carry every stall. The gates compare it with a baseline run's.
        """
        durations: dict[str, list[float]] = {}
        for span in self.spans:
            durations.setdefault(span.stage, []).append(span.duration)
        return {stage: float(np.percentile(values, 10)) for stage, values in durations.items()}

    def span_count(self) -> dict[str, int]:
        """Per stage, how many spans it recorded over all epochs."""
        counts = {stage.name: 0 for stage in self.stages}
        for span in self.spans:
            counts[span.stage] += 1
        return counts

    def peak_concurrency(self) -> dict[str, int]:
        """Per stage, the most of its spans that ever ran at the same moment.

        1 for a stage that runs one call at a time; a parallel stage's calls
        overlap at some point (a burst at the start of an epoch at least).
        Batched stages' examples share one span per batch, counted once.
        """
        peaks = {}
        for stage in self.stages:
            events = {(s.start, s.end) for s in self.spans_of(stage.name)}
            # End events sort before start events at the same instant: touching is not overlap.
            edges = sorted([(start, 1) for start, _ in events] + [(end, -1) for _, end in events])
            running = peak = 0
            for _, step in edges:
                running += step
                peak = max(peak, running)
            peaks[stage.name] = peak
        return peaks

    def attribution(self, epoch: int) -> dict[str, float]:
        """Every second of ``epoch`` (counted from 1) attributed: seconds per part.

        The trainer's spans do not overlap (it waits for a batch, then steps),
        so waiting for input, train steps and test steps add up; before the
        first of them is the iterator's creation, between the last train
        step and the first test step the test iterator's start, and every
        other gap (the loop's own Python, an epoch's end) is `UNEXPLAINED`.
        The parts sum to the epoch's wall time.
        """
        start, end = self.epochs[epoch - 1]
        names = {stage.name for stage in TRAINER_STAGES}
        spans = sorted(
            (s for s in self.spans if s.epoch == epoch and s.stage in names),
            key=lambda s: s.start,
        )
        parts = {stage.name: 0.0 for stage in TRAINER_STAGES}
        parts[ITERATOR_START] = parts[EVALUATION_START] = 0.0
        for span in spans:
            parts[span.stage] += span.duration
        if spans:
            parts[ITERATOR_START] = max(0.0, spans[0].start - start)
            tests = [s for s in spans if s.stage == TEST_STEP.name]
            trained = [s.end for s in spans if s.stage != TEST_STEP.name]
            if tests and trained:
                parts[EVALUATION_START] = max(0.0, tests[0].start - max(trained))
        parts[UNEXPLAINED] = max(0.0, (end - start) - sum(parts.values()))
        return parts

    def chrome_trace(self) -> dict[str, Any]:
        """The run in the Trace Event Format that Perfetto and chrome://tracing open.

        One process, one track per stage (named, in the stages' order); a
        stage whose calls overlap gets as many tracks as it had calls in
        flight ("read #2"), since a track's complete events must nest. Times
        are microseconds from the first epoch's start; each event says its
        epoch and how many examples it carried.
        """
        events: list[dict[str, Any]] = [
            {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "traced run"}}
        ]
        for epoch, (start, end) in enumerate(self.epochs, start=1):
            events.append(_complete(f"epoch {epoch}", "epoch", start, end, 0, {}))
        events.extend(_track(0, "epochs"))
        for index, stage in enumerate(self.stages, start=1):
            lanes: list[float] = []  # each lane's last end
            for span in sorted(self.spans_of(stage.name), key=lambda s: (s.start, s.end)):
                lane = next((i for i, last in enumerate(lanes) if last <= span.start), None)
                if lane is None:
                    lane = len(lanes)
                    lanes.append(span.end)
                    name = stage.name if lane == 0 else f"{stage.name} #{lane + 1}"
                    events.extend(_track(index * 1000 + lane, name))
                lanes[lane] = span.end
                args = {"epoch": span.epoch, "examples": len(span.ids)}
                events.append(
                    _complete(
                        stage.name, stage.kind, span.start, span.end, index * 1000 + lane, args
                    )
                )
            if not lanes:  # a stage with no spans still has its track
                events.extend(_track(index * 1000, stage.name))
        return {"traceEvents": events, "displayTimeUnit": "ms"}

    def epoch_s(self, epoch: int | None = None) -> float:
        """Wall time of one epoch (counted from 1), or of all of them."""
        chosen = self.epochs if epoch is None else [self.epochs[epoch - 1]]
        return sum(end - start for start, end in chosen)

    def step_times(self) -> list[list[float]]:
        """Per train step, in order: ``[epoch, waiting for input (s), the step (s)]``, the
        TF Profiler's step-time graph split into input and compute."""
        rows = []
        for epoch in range(1, len(self.epochs) + 1):
            waits = sorted(self.spans_of(WAIT.name, epoch), key=lambda s: s.start)
            steps = sorted(self.spans_of(TRAIN_STEP.name, epoch), key=lambda s: s.start)
            for wait, step in zip(waits, steps, strict=False):
                rows.append([epoch, round(wait.duration, 6), round(step.duration, 6)])
        return rows

    def to_dict(self, bars: int = 800) -> dict[str, Any]:
        """A compact JSON-able form for saved runs: merged bars per stage and epoch, busy times.

        Spans of one stage that overlap or lie closer than the run's length
        divided by ``bars`` are merged into one bar (what a chart could show
        apart anyway); busy times are computed before merging.
        """
        total = max((end for _, end in self.epochs), default=0.0)
        resolution = total / bars if bars else 0.0
        merged: dict[str, list[list[float]]] = {}
        for stage in self.stages:
            rows: list[list[float]] = []
            for epoch in range(1, len(self.epochs) + 1):
                for start, end in merge_intervals(
                    ((s.start, s.end) for s in self.spans_of(stage.name, epoch)), resolution
                ):
                    rows.append([round(start, 5), round(end, 5), epoch])
            merged[stage.name] = rows
        return {
            "origin": self.origin,
            "stages": [dataclasses.asdict(stage) for stage in self.stages],
            "epochs": [[round(start, 5), round(end, 5)] for start, end in self.epochs],
            "bars": merged,
            "busy_s": [self.busy_s(epoch) for epoch in range(1, len(self.epochs) + 1)],
            "active_s": [self.active_s(epoch) for epoch in range(1, len(self.epochs) + 1)],
            "attribution": [self.attribution(epoch) for epoch in range(1, len(self.epochs) + 1)],
            "steps": self.step_times(),
            "p10_s": self.p10_s(),
            "span_count": self.span_count(),
            "peak_concurrency": self.peak_concurrency(),
            "spans": len(self.spans),
        }


def _complete(
    name: str, category: str, start: float, end: float, track: int, args: dict[str, Any]
) -> dict[str, Any]:
    """A complete ("X") trace event; times in seconds, written in microseconds.

    The start and the end are rounded, and the duration is their difference:
    rounded separately, an event ending where the next on its track begins
    could overlap it by 0.1 us, and a trace viewer drops improperly nested slices.
    """
    ts, until = round(start * 1e6, 1), round(max(start, end) * 1e6, 1)
    return {
        "ph": "X",
        "name": name,
        "cat": category,
        "pid": 1,
        "tid": track,
        "ts": ts,
        "dur": round(until - ts, 1),
        "args": args,
    }


def _track(track: int, name: str) -> list[dict[str, Any]]:
    """The metadata events that name a track and keep it in the stages' order."""
    meta = {"ph": "M", "pid": 1, "tid": track}
    return [
        {**meta, "name": "thread_name", "args": {"name": name}},
        {**meta, "name": "thread_sort_index", "args": {"sort_index": track}},
    ]


def merge_intervals(
    intervals: Iterable[tuple[float, float]], gap: float = 0.0
) -> list[tuple[float, float]]:
    """Union of ``intervals``, also joining those separated by at most ``gap``."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1] + gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def subtract_intervals(
    intervals: Sequence[tuple[float, float]], taken: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """The parts of ``intervals`` outside every interval of ``taken`` (both merged and sorted,
    as `merge_intervals` returns them): one walk through both."""
    left: list[tuple[float, float]] = []
    first = 0  # the first interval of ``taken`` that may still reach the current one
    for start, end in intervals:
        while first < len(taken) and taken[first][1] <= start:
            first += 1
        cut = first
        while cut < len(taken) and taken[cut][0] < end and start < end:
            cut_start, cut_end = taken[cut]
            if cut_start > start:
                left.append((start, cut_start))
            start = max(start, cut_end)
            cut += 1
        if start < end:
            left.append((start, end))
    return left


@dataclasses.dataclass
class _Batch:
    epoch: int
    spans: np.ndarray  # [batch, pipeline stages, 2], Unix times
    ids: np.ndarray


class TimelineRecorder:
    """Collects a traced run's spans while the trainer runs; `timeline` builds the result.

    ``stages`` are the pipeline's stages, as `pipelines.build_traced` returned
    them (empty for data that carries no spans, e.g. batches in memory), and
    ``log`` the build's span log, where the stages seen inside a pipeline
    function log theirs (`Stage.observed`); it is drained at each epoch's end.
    """

    def __init__(self, stages: Sequence[Stage] = (), log: SpanLog | None = None) -> None:
        self.pipeline_stages = tuple(stages)
        # The stages whose rows the batches carry, in `SPANS` order.
        self._carried = tuple(stage for stage in self.pipeline_stages if not stage.observed)
        self._log = log
        self._logged: dict[int, np.ndarray] = {}
        self._batches: list[_Batch] = []
        self._trainer: list[tuple[str, float, float, int]] = []
        self._epochs: dict[int, list[float]] = {}
        # Unix time minus perf_counter: the trainer times with perf_counter,
        # `tf.timestamp` spans are Unix times.
        self._offset = time.time() - time.perf_counter()

    def start_epoch(self, epoch: int) -> None:
        """Mark the start of ``epoch``: call before the epoch's iterator is created."""
        if self._log is not None:
            self._log.drain()  # not this epoch's: building, or checking the data
        now = time.time()  # the clock of `tf.timestamp`
        self._offset = now - time.perf_counter()
        self._epochs[epoch] = [now, now]

    def end_epoch(self, epoch: int) -> None:
        """Mark the end of ``epoch`` (after its evaluation)."""
        self._epochs[epoch][1] = time.time()
        if self._log is not None:
            self._logged[epoch] = self._log.drain()

    def batch(self, epoch: int, batch: Record) -> None:
        """Keep the spans a training batch carries (nothing if it carries none)."""
        spans = batch.get(SPANS)
        if spans is not None and self._carried:
            self._batches.append(_Batch(epoch, np.asarray(spans), np.asarray(batch[ID])))

    def train_step(
        self, epoch: int, batch: Record, requested: float, fetched: float, done: float
    ) -> None:
        """One training step: its wait for ``batch``, the step, and the spans the batch carries."""
        self.trainer_span(WAIT, epoch, requested, fetched)
        self.trainer_span(TRAIN_STEP, epoch, fetched, done)
        self.batch(epoch, batch)

    def trainer_span(self, stage: Stage, epoch: int, start: float, end: float) -> None:
        """Record one of the trainer's spans (``time.perf_counter`` readings)."""
        self._trainer.append((stage.name, start + self._offset, end + self._offset, epoch))

    def timeline(self) -> Timeline:
        """The recorded run as a `Timeline`, times relative to the first epoch's start."""
        if not self._epochs:
            return Timeline(self.pipeline_stages + TRAINER_STAGES, (), ())
        origin = min(start for start, _ in self._epochs.values())
        spans: list[Span] = []
        # Per epoch over all its batches at once: a batched stage before a
        # shuffle (decode in blocks) spreads one span over several training
        # batches, and it is still one span.
        for epoch, (epoch_start, _) in sorted(self._epochs.items()):
            spans.extend(self._logged_spans(epoch, epoch_start))
            batches = [batch for batch in self._batches if batch.epoch == epoch]
            if not batches:
                continue
            rows = np.concatenate([batch.spans for batch in batches])
            ids = np.concatenate([batch.ids for batch in batches])
            batching = None  # the column of the latest batch stage so far
            for column, stage in enumerate(self._carried):
                if stage.kind == "batch":
                    batching = column
                # A batched map's call works on one batch: the examples of a
                # call share that batch's row too, which tells apart two calls
                # whose own rows coincide (tf.timestamp counts microseconds).
                batch_rows = None if batching is None else rows[:, batching]
                spans.extend(
                    _stage_spans(stage, rows[:, column], ids, epoch, epoch_start, batch_rows)
                )
        for name, start, end, epoch in self._trainer:
            spans.append(Span(name, start, end, epoch))
        shifted = tuple(
            dataclasses.replace(s, start=s.start - origin, end=s.end - origin) for s in spans
        )
        epochs = tuple(
            (start - origin, end - origin) for _, (start, end) in sorted(self._epochs.items())
        )
        return Timeline(self.pipeline_stages + TRAINER_STAGES, epochs, shifted, origin)

    def _logged_spans(self, epoch: int, epoch_start: float) -> list[Span]:
        """The spans ``epoch``'s logged rows hold (one per call, naming no examples)."""
        rows = self._logged.get(epoch, np.zeros((0, 3)))
        return [
            Span(self.pipeline_stages[int(stage)].name, float(start), float(end), epoch)
            for stage, start, end in rows
            if end >= epoch_start
        ]


def _stage_spans(
    stage: Stage,
    rows: np.ndarray,
    ids: np.ndarray,
    epoch: int,
    epoch_start: float,
    batch_rows: np.ndarray | None = None,
) -> Iterable[Span]:
    """The spans of one stage: one per example, or one per batched call (with its ids).

    A batched call is a distinct row, together with the row of the batch
    stage before it (``batch_rows``, when there is one).
    """
    # Unrecorded rows (a shard's later records have no open) and replays from a cache.
    keep = (rows[:, 0] != NOT_RECORDED) & (rows[:, 1] >= epoch_start)
    rows, ids = rows[keep], ids[keep]
    if not len(rows):
        return []
    if not stage.batched:
        return [
            Span(stage.name, float(start), float(end), epoch, (int(i),))
            for (start, end), i in zip(rows, ids, strict=True)
        ]
    calls = rows if batch_rows is None else np.concatenate([rows, batch_rows[keep]], axis=1)
    unique, which = np.unique(calls, axis=0, return_inverse=True)
    which = which.reshape(-1)
    return [
        Span(
            stage.name,
            float(call[0]),
            float(call[1]),
            epoch,
            tuple(int(i) for i in ids[which == k]),
        )
        for k, call in enumerate(unique)
    ]
