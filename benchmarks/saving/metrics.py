"""Every metric the suite saves, compares, gates or shows, declared once.

A `Metric` is a name in a benchmark's ``extra_info`` with what a reader needs to
know of it: what to call it, its unit and how to print it, which way is better,
whether a change in it is a ratio or a difference, and how its per-pass
samples pair between two runs. Its figure is saved under its name as one
nested value (schema 4, `saved`): ``{"value": v, "ci": [low, high], "samples":
[...]}``, each part there where it was measured. The gates' limits and tolerances
(`benchmarks.judging.gates`), the comparisons (`benchmarks.judging.decide`), the
terminal's and the report's columns and the run's paired figures
(`benchmarks.measuring.pass_figures`) all name figures through these
declarations; a figure is read from ``extra_info`` with `Metric.estimate_of` (a
`Saved`), or one part of it with `Metric.of`, `Metric.interval_of` and
`Metric.samples_of`.

A new metric: declare it here, then record it (docs/ARCHITECTURE.md, "A metric").
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any

# The parts of a figure's nested value in ``extra_info`` (schema 4).
VALUE, INTERVAL, SAMPLES = "value", "ci", "samples"


class Pairing(enum.StrEnum):
    """How a figure's samples pair between two sides compared."""

    PASS = "pass"  # one per interleaved pass: the same pass's samples pair
    ROUND = "round"  # one per alternated round (--perf-against): round by round, by index
    # Nothing of the other side's: a single value per run, or rounds that pair with
    # the run's own ceiling (the yardstick); compared as two groups.
    UNPAIRED = "unpaired"


@dataclasses.dataclass(frozen=True)
class Saved:
    """A metric's figure as a run saves it (`saved`): its value, its 95% interval where
    one was measured, and its samples (one per pass or per round) where they were kept."""

    value: Any = None
    interval: tuple[float, float] | None = None
    samples: tuple[float, ...] | None = None

    @classmethod
    def from_json(cls, saved: Mapping[str, Any]) -> Saved:
        """The figure from its nested value in ``extra_info``."""
        interval, samples = saved.get(INTERVAL), saved.get(SAMPLES)
        return cls(
            saved.get(VALUE),
            None if interval is None else (interval[0], interval[1]),
            None if samples is None else tuple(samples),
        )


def saved(
    value: Any = None,
    interval: Sequence[float] | None = None,
    samples: Sequence[float] | None = None,
) -> dict[str, Any]:
    """A figure's nested value for ``extra_info``: only the parts that were measured (read
    back as a `Saved`)."""
    parts = {
        VALUE: value,
        INTERVAL: None if interval is None else list(interval),
        SAMPLES: None if samples is None else list(samples),
    }
    return {key: part for key, part in parts.items() if part is not None}


def nest(
    values: Mapping[str, Any],
    samples: Mapping[str, Sequence[float]],
    intervals: Mapping[str, Sequence[float] | None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Each declared metric among ``values`` and ``samples`` (by name) as its nested value,
    with its interval from ``intervals``; what is not a declared metric is left out."""
    intervals = intervals or {}
    return {
        name: saved(values.get(name), intervals.get(name), samples.get(name))
        for name in (values.keys() | samples.keys()) & DECLARED.keys()
    }


@dataclasses.dataclass(frozen=True)
class Metric:
    """One declared metric.

    Attributes:
        name: its key in ``extra_info``, where its figure is saved (`Saved`).
        label: what a plot's axis or a sentence calls it.
        unit: what its values count ("x naive's throughput", "s", "examples/s").
        form: how one value prints (a `str.format` field).
        higher_is_better: fraction of the ceiling, accuracy; false for times and CPU.
        absolute: a change in it is a difference (accuracy), not a ratio.
        pairing: how its samples pair between the two sides of a comparison.
        heading: a table column's heading, where shorter than ``label``.
    """

    name: str
    label: str
    unit: str
    form: str = "{:.3g}"
    higher_is_better: bool = True
    absolute: bool = False
    pairing: Pairing = Pairing.PASS
    heading: str = ""

    @property
    def column(self) -> str:
        """Its heading in a table's column."""
        return self.heading or self.label

    def estimate_of(self, info: Mapping[str, Any]) -> Saved | None:
        """Its figure in a benchmark's ``extra_info`` (None: not measured there)."""
        saved = info.get(self.name)
        if saved is None:
            return None
        if not isinstance(saved, Mapping):
            raise TypeError(
                f"{self.name} is saved as {saved!r}, not as its value, interval and samples"
                " (schema 4): read a saved run through benchmarks.saving.schema"
            )
        return Saved.from_json(saved)

    def of(self, info: Mapping[str, Any]) -> Any:
        """Its value in a benchmark's ``extra_info`` (None: not measured there)."""
        saved = self.estimate_of(info)
        return None if saved is None else saved.value

    def interval_of(self, info: Mapping[str, Any]) -> list[float] | None:
        """Its 95% interval in ``extra_info`` (None: none was measured)."""
        saved = self.estimate_of(info)
        return None if saved is None or saved.interval is None else list(saved.interval)

    def samples_of(self, info: Mapping[str, Any]) -> list[float] | None:
        """Its samples in ``extra_info``: one per pass, or per round (None: none saved)."""
        saved = self.estimate_of(info)
        return None if saved is None or saved.samples is None else list(saved.samples)

    def limit(self, before: float, tolerance: float) -> float:
        """The worst value allowed against ``before``: a floor where higher is better, a
        ceiling otherwise; ``tolerance`` a fraction of it, or an amount if absolute."""
        moved = tolerance if self.absolute else before * tolerance
        return before - moved if self.higher_is_better else before + moved

    def beyond(self, value: float, limit: float) -> bool:
        """Whether ``value`` is worse than ``limit``."""
        return value < limit if self.higher_is_better else value > limit


def _steady(metric: Metric, heading: str = "") -> Metric:
    """``metric`` over the epochs after the first (`benchmarks.measuring.phases`)."""
    return dataclasses.replace(
        metric,
        name=f"steady_{metric.name}",
        label=f"steady {metric.label}",
        heading=heading or metric.heading,
    )


# Full epochs, as the lab measured them.
EPOCH_S = Metric("epoch_s", "full epoch s", "s", "{:.3f}", higher_is_better=False)
EXAMPLES_PER_S = Metric("examples_per_s", "training throughput", "examples/s", "{:.0f}")
INPUT_BOUND = Metric(
    "input_bound", "input-bound", "share of the step waiting for input", "{:.0%}", False
)
SPEEDUP_OVER_NAIVE = Metric(
    "speedup_over_naive",
    "speedup over naive",
    "x naive's throughput",
    "{:.2f}x",
    heading="over naive",
)
SPEEDUP_OVER_AUGMENTED = Metric(
    "speedup_over_augmented",
    "speedup over augmented",
    "x augmented's throughput",
    "{:.2f}x",
    heading="over augmented",
)
FRACTION_OF_CEILING = Metric(
    "fraction_of_ceiling",
    "fraction of the ceiling",
    "x the ceiling's throughput",
    "{:.2f}",
    heading="of the ceiling",
)
CEILING_SLOWDOWN = Metric(
    "ceiling_slowdown", "ceiling slowdown", "x the ceiling's time", "{:.2f}x", False
)
TRACED_OVER_UNTRACED = Metric(
    "traced_over_untraced", "traced over untraced", "x the untraced time", "{:.3f}", False
)
TRACING_OVERHEAD = Metric("tracing_overhead", "tracing overhead", "fraction", "{:+.1%}", False)
OBSERVED_OVER_UNOBSERVED = Metric(
    "observed_over_unobserved", "observed over unobserved", "x the unobserved time", "{:.3f}", False
)
RUNTIME_OVERHEAD = Metric(
    "runtime_overhead", "runtime statistics' overhead", "fraction", "{:+.1%}", False
)

# Steady state: examples/s once warm.
STEADY_EXAMPLES_PER_S = _steady(EXAMPLES_PER_S, "steady examples/s")
STEADY_INPUT_BOUND = _steady(INPUT_BOUND, "input-bound")
STEADY_SPEEDUP_OVER_NAIVE = _steady(SPEEDUP_OVER_NAIVE)
STEADY_SPEEDUP_OVER_AUGMENTED = _steady(SPEEDUP_OVER_AUGMENTED)
STEADY_FRACTION_OF_CEILING = _steady(FRACTION_OF_CEILING)
STEADY_CEILING_SLOWDOWN = _steady(CEILING_SLOWDOWN)
STEADY_TRACED_OVER_UNTRACED = _steady(TRACED_OVER_UNTRACED)
STEADY_TRACING_OVERHEAD = _steady(TRACING_OVERHEAD)
STEADY_OBSERVED_OVER_UNOBSERVED = _steady(OBSERVED_OVER_UNOBSERVED)
STEADY_RUNTIME_OVERHEAD = _steady(RUNTIME_OVERHEAD)

# Start-up, apart from steady state.
FIRST_BATCH_S = Metric("first_batch_s", "first batch s", "s", "{:.3f}", False)
FIRST_EPOCH_EXTRA_S = Metric("first_epoch_extra_s", "first epoch extra s", "s", "{:.3f}", False)
EPOCH_START_S = Metric("epoch_start_s", "epoch start s", "s", "{:.3f}", False)

# Accuracy: a difference, not a ratio.
TEST_ACCURACY = Metric(
    "test_accuracy", "final test accuracy", "fraction correct", "{:.3f}", absolute=True
)
ACCURACY_BELOW_REFERENCE = Metric(
    "accuracy_below_reference",
    "accuracy below its reference",
    "fraction correct",
    "{:.3f}",
    higher_is_better=False,
    absolute=True,
    pairing=Pairing.UNPAIRED,
)

# The pipeline alone, and its traced run.
CPU_S_PER_EXAMPLE = Metric(
    "cpu_s_per_example", "pipeline CPU s per example", "s", "{:.2e}", higher_is_better=False
)
MAP_CONCURRENCY = Metric(
    "map_concurrency", "map calls at once", "calls", "{:d}", pairing=Pairing.UNPAIRED
)

# Alternated rounds (`benchmarks.measuring.alternation`), saved as samples on both
# records, one per round (paired by index): `--perf-against` decides steady-state
# throughput from them (`benchmarks.judging.compare.compare_pairs`); the same with the
# pipelines alone (no device step) where the timed device is a stand-in with a step: what
# a change costs the pipeline itself, whatever the device hides of it; --perf-yardstick:
# per round, a variant's steady epoch over the ceiling's, the ceiling the yardstick that
# drifts with the machine (judged against a saved baseline).
ALTERNATED = Metric(
    "alternated_examples_per_s",
    "steady examples/s, alternated",
    "examples/s",
    "{:.0f}",
    pairing=Pairing.ROUND,
)
ALTERNATED_ALONE = Metric(
    "alternated_alone_examples_per_s",
    "the pipeline alone, alternated",
    "examples/s",
    "{:.0f}",
    pairing=Pairing.ROUND,
)
YARDSTICK = Metric(
    "alternated_fraction_of_ceiling",
    "of the ceiling, epoch by epoch",
    "x the ceiling's",
    "{:.2f}",
    pairing=Pairing.UNPAIRED,
)

DECLARED: dict[str, Metric] = {
    figure.name: figure for figure in list(globals().values()) if isinstance(figure, Metric)
}
