"""Regression gates: thresholds from `thresholds.toml`, and the checks on one run.

A failed check is one line: variant, metric, value, limit, and where the
limit came from (file, line, key). Gates prefer ratios measured within one
run (speedup over ``naive``, slowdown against the ceiling) and accuracy,
which hold on a noisy shared machine; the comparisons of a head with its base
(a saved baseline, a base version in the same run) use the tolerances declared
here and live in `benchmarks.judging.compare`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from benchmarks.diagnosing.bottleneck import GATE_FIGURES
from benchmarks.judging.decide import TESTS, Rule, Verdict
from benchmarks.saving import metrics, schema
from benchmarks.saving.metrics import Metric
from benchmarks.saving.schema import Kind
from pipelines.errors import DataError

DEFAULT_THRESHOLDS = Path(__file__).resolve().parents[1] / "thresholds.toml"

# metric key -> (the metric, direction): "min" limits fail below, "max" above.
LIMITS: dict[str, tuple[Metric, str]] = {
    "min_test_accuracy": (metrics.TEST_ACCURACY, "min"),
    # The same run's reference accuracy (the ceiling's, or augmented's for a variant
    # that augments) minus this variant's: judged against the run, it holds on any data.
    "max_accuracy_below_reference": (metrics.ACCURACY_BELOW_REFERENCE, "max"),
    "min_speedup": (metrics.SPEEDUP_OVER_NAIVE, "min"),
    "max_input_bound": (metrics.INPUT_BOUND, "max"),
    "max_ceiling_slowdown": (metrics.CEILING_SLOWDOWN, "max"),
    "min_map_concurrency": (metrics.MAP_CONCURRENCY, "min"),
    # Steady state and start-up, each its own line (`benchmarks.measuring.phases`).
    "max_steady_ceiling_slowdown": (metrics.STEADY_CEILING_SLOWDOWN, "max"),
    "max_first_batch_s": (metrics.FIRST_BATCH_S, "max"),
    "max_epoch_start_s": (metrics.EPOCH_START_S, "max"),
}
# Tolerances for the comparison with a baseline run (fractions and absolute accuracy);
# each metric says which way is worse and whether its change is a ratio or a difference.
# Throughput is compared as the fraction of the ceiling (the variant's
# examples/s over the in-memory ceiling's, same run): examples/s alone halved
# between unchanged runs when the shared machine was busy; the ratio moved far less.
TOLERANCES: dict[str, Metric] = {
    "max_throughput_drop": metrics.FRACTION_OF_CEILING,
    # The same in steady state, and the wait for the first batch: a regression in
    # start-up and one in steady state are different lines.
    "max_steady_throughput_drop": metrics.STEADY_FRACTION_OF_CEILING,
    "max_startup_increase": metrics.FIRST_BATCH_S,
    "max_accuracy_drop": metrics.TEST_ACCURACY,
    # The pipeline's CPU seconds per example, alone (`test_pipeline`). Not in the
    # default thresholds: it moved by up to 2x between passes of an unchanged
    # pipeline (docs/measurements.md, 2026-12-03).
    "max_cpu_increase": metrics.CPU_S_PER_EXAMPLE,
    # --perf-yardstick: the steady fraction of the ceiling, epoch by epoch (each round a
    # variant's epoch over the ceiling's: both drift with the machine).
    "max_yardstick_drop": metrics.YARDSTICK,
    # --perf-against on a stand-in device: the pipelines alone, epoch by epoch (what a
    # change costs the pipeline itself, whatever the device's step hides of it).
    "max_alone_throughput_drop": metrics.ALTERNATED_ALONE,
    # The first epoch's time beyond its examples at the steady rate (start-up's cost).
    "max_first_epoch_increase": metrics.FIRST_EPOCH_EXTRA_S,
}
# Metric name -> its tolerance's key.
TOLERANCE_OF = {metric.name: key for key, metric in TOLERANCES.items()}
# Head against base (--perf-against): where both sides have these samples, the metric
# is decided from them instead: steady state from the epochs alternated round by round,
# six times as many pairs as passes and seconds apart (`benchmarks.measuring.alternation`).
PAIRED_FROM = {metrics.STEADY_FRACTION_OF_CEILING.name: metrics.ALTERNATED}
# The [statistics] section: which test decides, at what level (defaults below).
STATISTICS_KEYS = {"test": TESTS, "alpha": (0.0, 0.5)}
# With a baseline: a gated stage's 10th-percentile span may grow by this fraction (see
# `benchmarks.diagnosing.bottleneck.stage_gate_figures` for which stages are gated).
STAGE_TOLERANCE = "max_stage_slowdown"
KEYS = set(LIMITS) | set(TOLERANCES) | {STAGE_TOLERANCE}


@dataclasses.dataclass(frozen=True)
class Limit:
    """One limit and where it came from."""

    key: str
    value: float
    origin: str  # "file:line [section] key"


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """The validated contents of a thresholds file."""

    path: Path
    defaults: dict[str, Limit]
    variants: dict[str, dict[str, Limit]]
    # [statistics]: the test ("mann-whitney" or "bootstrap") and level, and where they were set.
    test: str = "mann-whitney"
    alpha: float = 0.05
    statistics_origin: str = "built-in defaults"

    # [base_vs_head]: the tolerances of `trials.ab`, whose runs alternate on one machine.
    base_vs_head: dict[str, Limit] = dataclasses.field(default_factory=dict)

    def limits_for(self, variant: str) -> dict[str, Limit]:
        """The defaults, overridden by the variant's own section."""
        return {**self.defaults, **self.variants.get(variant, {})}

    def paired(self) -> Thresholds:
        """These thresholds as `trials.ab` applies them: [base_vs_head]'s tolerances over
        every variant's, the rest unchanged."""
        variants = {
            name: {k: v for k, v in limits.items() if k not in self.base_vs_head}
            for name, limits in self.variants.items()
        }
        defaults = {**self.defaults, **self.base_vs_head}
        return dataclasses.replace(self, defaults=defaults, variants=variants)

    def rule(self, limit: Limit) -> Rule:
        """How a metric with tolerance ``limit`` is decided against the baseline."""
        origin = f"{limit.origin}; {self.test} at {self.alpha:g} from {self.statistics_origin}"
        return Rule(limit.value, self.test, self.alpha, origin)


@dataclasses.dataclass(frozen=True)
class Failure:
    """A failed check, printed as one line."""

    variant: str
    metric: str
    value: float
    limit: float
    relation: str
    origin: str
    # Decided against the baseline's passes: the verdict says it all.
    verdict: Verdict | None = None
    # A failure that is not a number against a limit (a lost optimization step).
    detail: str | None = None

    def __str__(self) -> str:
        if self.verdict is not None:
            return f"GATE FAILED {self.verdict}"
        if self.detail is not None:
            return f"GATE FAILED {self.variant}: {self.detail} (from {self.origin})"
        return (
            f"GATE FAILED {self.variant}: {self.metric} = {self.value:.4g}, "
            f"limit {self.relation} {self.limit:.4g} (from {self.origin})"
        )


def _line_of(lines: list[str], section: str | None, key: str | None) -> int:
    """1-based line of ``key`` under ``[section]`` (or of the section header)."""
    current = None
    header = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]\s*(#.*)?$")
    for number, line in enumerate(lines, start=1):
        match = header.match(line)
        if match:
            current = match[1].replace('"', "").replace(" ", "")
            if key is None and current == section:
                return number
            continue
        if key is not None and current == section and re.match(rf"^\s*{re.escape(key)}\s*=", line):
            return number
    return 0


def load_thresholds(
    path: str | os.PathLike[str] = DEFAULT_THRESHOLDS, variants: Iterable[str] | None = None
) -> Thresholds:
    """Read and validate a thresholds file.

    Raises `DataError` naming the file and line for a syntax error, an unknown
    section, key or variant, or a value that is not a number in range.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DataError(path, "thresholds file does not exist") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise DataError(path, f"not valid TOML: {error}") from None
    lines = text.splitlines()
    known = None if variants is None else set(variants)

    def where(section: str, key: str | None = None) -> str:
        return f"{path}:{_line_of(lines, section, key)}"

    def limits(section: str, table: Mapping[str, object]) -> dict[str, Limit]:
        return _limits(section, table, where)

    unknown_sections = set(data) - {"defaults", "variants", "statistics", "base_vs_head"}
    if unknown_sections:
        section = sorted(unknown_sections)[0]
        raise DataError(
            where(section),
            f"unknown section [{section}]; use [defaults], [statistics], [base_vs_head]"
            " or [variants.NAME]",
        )
    statistics = _statistics(data.get("statistics", {}), where)
    paired = limits("base_vs_head", data.get("base_vs_head", {}))
    if set(paired) - set(TOLERANCES):
        key = sorted(set(paired) - set(TOLERANCES))[0]
        raise DataError(
            where("base_vs_head", key),
            f"[base_vs_head] holds tolerances only ({', '.join(TOLERANCES)}), not {key}",
        )
    defaults = limits("defaults", data.get("defaults", {}))
    per_variant = {}
    for name, table in data.get("variants", {}).items():
        section = f"variants.{name}"
        if not isinstance(table, dict):
            raise DataError(where("variants", name), f"variants.{name} must be a table")
        if known is not None and name not in known:
            raise DataError(
                where(section),
                f"unknown variant {name!r}; known variants: {', '.join(sorted(known))}",
            )
        per_variant[name] = limits(section, table)
    return Thresholds(path, defaults, per_variant, **statistics, base_vs_head=paired)


def _limits(section: str, table: Mapping[str, object], where: Any) -> dict[str, Limit]:
    """The validated limits of one section; ``where(section, key)`` names a file and line."""
    out = {}
    for key, value in table.items():
        if key not in KEYS:
            raise DataError(
                where(section, key),
                f"unknown key {key!r} in [{section}]; known: {', '.join(sorted(KEYS))}",
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DataError(
                where(section, key), f"{key} must be a number, got {type(value).__name__}"
            )
        if value < 0:
            raise DataError(where(section, key), f"{key} must not be negative, got {value}")
        out[key] = Limit(key, float(value), f"{where(section, key)} [{section}] {key}")
    return out


def _statistics(table: Mapping[str, object], where: Any) -> dict[str, Any]:
    """The validated [statistics] section, as `Thresholds` fields."""
    found: dict[str, Any] = {}
    for key, value in table.items():
        if key not in STATISTICS_KEYS:
            raise DataError(
                where("statistics", key),
                f"unknown key {key!r} in [statistics]; known: {', '.join(STATISTICS_KEYS)}",
            )
        if key == "test" and value not in TESTS:
            raise DataError(where("statistics", key), f"test must be one of {', '.join(TESTS)}")
        low, high = STATISTICS_KEYS["alpha"]
        if key == "alpha" and not (isinstance(value, float) and low < value < high):
            raise DataError(
                where("statistics", key),
                f"alpha must be a number in ({low}, {high}), got {value!r}",
            )
        found[key] = value
    if found:
        found["statistics_origin"] = where("statistics") + " [statistics]"
    return found


def check_run(thresholds: Thresholds, results: Mapping[str, Mapping[str, Any]]) -> list[Failure]:
    """Check each variant's metrics of this run against its limits."""
    failures = []
    for variant, figures in results.items():
        for key, limit in thresholds.limits_for(variant).items():
            if key not in LIMITS:
                continue
            metric, direction = LIMITS[key]
            value = metric.of(figures)
            if value is None:
                continue  # e.g. no speedup when naive was not run
            if (direction == "min" and value < limit.value) or (
                direction == "max" and value > limit.value
            ):
                relation = ">=" if direction == "min" else "<="
                failures.append(
                    Failure(variant, metric.name, value, limit.value, relation, limit.origin)
                )
    return failures


def metrics_by_variant(infos: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per trained variant, what the gates check, from benchmarks' ``extra_info``.

    The training benchmark's metrics, with its traced run's gated figures
    (`benchmarks.diagnosing.bottleneck.GATE_FIGURES`) added when it was traced.
    """
    infos = list(infos)
    traced = {info.get("variant"): info for info in infos if info.get("kind") == Kind.TIMELINE}
    alone = {info.get("variant"): info for info in infos if info.get("kind") == Kind.PIPELINE}
    merged = {}
    for info in infos:
        if info.get("kind") != Kind.TRAINING or "variant" not in info:
            continue
        variant = info["variant"]
        gated = {k: v for k, v in traced.get(variant, {}).items() if k in GATE_FIGURES}
        pipeline = alone.get(variant, {})
        cpu = metrics.CPU_S_PER_EXAMPLE
        if cpu.estimate_of(pipeline) is not None:
            gated[cpu.name] = pipeline[cpu.name]
        merged[variant] = {**info, **gated}
    return merged


def load_saved_metrics(path: Path) -> dict[str, dict[str, Any]]:
    """Per variant, the gated metrics of a saved run (see `metrics_by_variant`)."""
    return metrics_by_variant(schema.load(path).infos())
