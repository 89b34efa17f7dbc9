"""A run's result, made once from its records after every benchmark ran.

`derive` works the ratios between benchmarks out (paired within the passes where
they were measured there, ratios of medians where not), the traced runs'
analyses, the runtime statistics' view and what the gates check, on copies of
the records, and returns one immutable `RunResult`. The saved JSON, the gates,
the terminal and the report all read that one value
(`benchmarks.plugin.run_result` makes it once per run).
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Iterable, Mapping
from typing import Any

from benchmarks.diagnosing.bottleneck import traced_analysis
from benchmarks.diagnosing.runtime_view import missing_reason, runtime_view
from benchmarks.judging.gates import metrics_by_variant
from benchmarks.measuring.passes import Trial
from benchmarks.measuring.records import (
    OverheadRecord,
    PipelineRecord,
    Record,
    RunRecords,
    TimelineRecord,
    TrainingRecord,
)
from benchmarks.saving.schema import Kind


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a run measured, derived once: every benchmark's ``extra_info`` by its name,
    the traced variants' analyses and, per trained variant, what the gates check."""

    metrics: Mapping[str, Mapping[str, Any]]

    @property
    def bottlenecks(self) -> dict[str, Mapping[str, Any]]:
        """Per traced variant, its bottleneck analysis."""
        return {
            info["variant"]: info["bottleneck"]
            for info in self.of_kind(Kind.TIMELINE)
            if info.get("bottleneck") is not None
        }

    @functools.cached_property
    def gate_metrics(self) -> dict[str, dict[str, Any]]:
        """Per trained variant, what the gates check (`metrics_by_variant`), merged once."""
        return metrics_by_variant(self.metrics.values())

    def of_kind(self, kind: Kind) -> list[Mapping[str, Any]]:
        """The ``extra_info`` of every benchmark of ``kind``, in the order they ran."""
        return [info for info in self.metrics.values() if info["kind"] == kind]

    def verified_suggestions(self) -> dict[str, Mapping[str, Any]]:
        """Per variant whose suggestions were verified, its benchmark's ``extra_info``."""
        return {info["variant"]: info for info in self.of_kind(Kind.SUGGESTIONS)}


def derive(records: RunRecords) -> RunResult:
    """The run's result from its records (call once all benchmarks have run); the records
    themselves are left as they were collected."""
    derived = {name: dataclasses.replace(record) for name, record in records.records.items()}
    _pair(derived.values(), records)
    training = {r.variant: r for r in derived.values() if isinstance(r, TrainingRecord)}
    ceiling = training.pop("ceiling", None)
    _ratios_of_medians(training, ceiling)
    for record in training.values():
        _judge_accuracy(record, ceiling, training.get("augmented"))
    for record in derived.values():
        if isinstance(record, TimelineRecord):
            bottleneck, record.gate_figures = traced_analysis(record, training.get(record.variant))
            record.bottleneck = bottleneck.to_dict()
    _alternations(training, records)
    metrics = {name: _extra_info(record) for name, record in derived.items()}
    return RunResult(types.MappingProxyType(metrics))


def _pair(derived: Iterable[Record], records: RunRecords) -> None:
    """Give each benchmark measured in the interleaved passes its paired figures."""
    paired = records.paired()
    for record in derived:
        if isinstance(record, TrainingRecord | PipelineRecord | OverheadRecord):
            kind = "traced" if record.kind == Kind.TRACING_OVERHEAD else record.kind
            record.paired = paired.get(Trial(kind, record.variant))


def _ratios_of_medians(training: dict[str, TrainingRecord], ceiling: TrainingRecord | None) -> None:
    """The ratios of the benchmarks timed on their own (the tf.data service's runs), and
    the CPU each pipeline costs beyond the model's own."""
    naive = training.get("naive")
    one_worker = next((r for r in training.values() if r.service_workers == 1), None)
    for record in training.values():
        if naive and record.paired is None:
            record.speedup_over_naive = naive.train_s / record.train_s
        if ceiling and record.paired is None:
            record.fraction_of_ceiling = ceiling.train_s / record.train_s
        if ceiling and not record.service:
            # Where a CPU-only machine's gap to the ceiling comes from. (Service
            # workers are other processes: their CPU is not in this one's.)
            record.pipeline_cpu_s = record.cpu_s - ceiling.cpu_s
        if one_worker and record.service_workers:
            record.speedup_over_1_worker = one_worker.train_s / record.train_s


def _judge_accuracy(
    record: TrainingRecord, ceiling: TrainingRecord | None, augmented: TrainingRecord | None
) -> None:
    """Set how far the record's final test accuracy fell below its reference's.

    The reference trains the same model the same way, in the same run: the
    ceiling for a variant that does not augment, and `augmented` for one
    that does (random crops and flips slow learning down, more so on small
    real data; docs/measurements.md, 2026-11-30).
    `augmented` itself has none (an absolute floor can still be set).
    """
    reference = {"ceiling": ceiling, "augmented": augmented}.get(record.reference or "")
    if reference is None or reference is record:
        return
    # The mean over the runs (one per pass): a variant whose order or
    # augmentation differs run to run ends its few epochs at scattered accuracies.
    final, wanted = record.final_accuracy(), reference.final_accuracy()
    if final is not None and wanted is not None:
        record.accuracy_below_reference = wanted - final


def _alternations(training: dict[str, TrainingRecord], records: RunRecords) -> None:
    """--perf-against's and --perf-yardstick's rounds, onto the records they compared."""
    for field, found in (
        ("alternated", records.alternations),
        ("alternated_alone", records.alone_alternations),
    ):
        for alternation in found.values():
            head, base = training.get(alternation.head), training.get(alternation.base)
            if head and base:
                setattr(head, field, alternation.head_rates)
                setattr(base, field, alternation.base_rates)
    for alternation in records.alternations.values():
        if {alternation.head, alternation.base} <= training.keys():
            training[alternation.head].alternation = alternation.to_dict()
    for alternation in records.yardsticks.values():
        if alternation.head in training:
            training[alternation.head].yardstick = alternation.ratios()


def _extra_info(record: Record) -> dict[str, Any]:
    """A derived record's ``extra_info``; a training run's with tf.data's runtime
    statistics (or the one line saying why they are missing)."""
    info = record.to_extra_info()
    if isinstance(record, TrainingRecord):
        view = runtime_view(record.runs, record.legend)
        if view is not None:
            info["runtime"] = view.to_dict()
        elif missing := missing_reason(record.runs):
            info["runtime_missing"] = missing
    return info
