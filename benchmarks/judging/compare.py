"""The one comparison engine: a head's gated metrics against its base's, within tolerances.

Every way the suite compares base and head calls `compare`, told what the two sides
are (`Sides`) and how they were measured (`Across`):

- ``Across.RUNS``: two saved runs (``--perf-baseline``, the report's history,
  `trials.ab` for the suite's own commits). Samples from different runs
  pair with nothing: each metric is decided by the ``[statistics]`` test
  (`benchmarks.judging.decide.decide`: Mann-Whitney or the bootstrap); a run saved
  without samples is compared by its single values; the gated stages' spans and the
  variant's optimizations are compared too.
- ``Across.SAME_RUN``: head and base timed in the same run (``--perf-against``).
  Each metric's samples pair as its declaration says (`benchmarks.saving.metrics`:
  pass by pass, or round by round for the alternated epochs), decided by the
  paired t-test (`decide_paired`) with ``[base_vs_head]``'s tolerances.

A regression is a failure (`benchmarks.judging.gates.Failure`, one line); every
decision is a `Verdict`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from typing import Any

from benchmarks.judging import structure
from benchmarks.judging.decide import Rule, Verdict, decide, decide_paired
from benchmarks.judging.gates import (
    PAIRED_FROM,
    STAGE_TOLERANCE,
    TOLERANCE_OF,
    TOLERANCES,
    Failure,
    Limit,
    Thresholds,
)
from benchmarks.measuring.intervals import paired_ratio
from benchmarks.saving import metrics
from benchmarks.saving.metrics import Metric, Pairing


class Across(enum.Enum):
    """How the two sides were measured, which says how their samples pair."""

    RUNS = "two runs"  # unpaired: the [statistics] test
    SAME_RUN = "the same run"  # paired by pass or by round: the paired t-test


@dataclasses.dataclass(frozen=True)
class Sides:
    """One comparison: the head variant's gated metrics and its base's.

    ``against`` names the base where a line says where a limit came from
    (``baseline 0003_x.json``, ``base mine@main``)."""

    variant: str
    now: Mapping[str, Any]
    against: str
    then: Mapping[str, Any]


def compare(
    thresholds: Thresholds, sides: Iterable[Sides], across: Across
) -> tuple[list[Failure], list[Verdict]]:
    """Every pair of ``sides`` compared within ``thresholds``' tolerances: the failed
    checks and every metric's verdict."""
    failures: list[Failure] = []
    verdicts: list[Verdict] = []
    for side in sides:
        limits = thresholds.limits_for(side.variant)
        for key, metric in TOLERANCES.items():
            limit = limits.get(key)
            if limit is None:
                continue
            if across is Across.RUNS:
                found, verdict = _across_runs(thresholds, side, metric, limit)
            else:
                found, verdict = _in_one_run(thresholds, side, metric, limit)
            failures += found
            verdicts += [verdict] if verdict is not None else []
        if across is Across.RUNS:
            failures += _slower_stages(limits, side)
            failures += _lost_steps(side)
    return failures, verdicts


def _across_runs(
    thresholds: Thresholds, side: Sides, metric: Metric, limit: Limit
) -> tuple[list[Failure], Verdict | None]:
    """One metric of two runs: decided by their samples where both saved them; else (or
    with too few passes to decide) by the single values against the tolerance."""
    then, now = metric.samples_of(side.then), metric.samples_of(side.now)
    verdict = None
    if then and now:
        rule = thresholds.rule(limit)
        rule = dataclasses.replace(rule, origin=f"{rule.origin}, {side.against}")
        verdict = decide(side.variant, metric, then, now, rule)
        if verdict.change is not None:
            if verdict.outcome != "regression":
                return [], verdict
            failure = Failure(
                side.variant, metric.name, verdict.change, limit.value, "", rule.origin, verdict
            )
            return [failure], verdict
    return _beyond_tolerance(thresholds, side, metric), verdict


def _in_one_run(
    thresholds: Thresholds, side: Sides, metric: Metric, limit: Limit
) -> tuple[list[Failure], Verdict | None]:
    """One metric of head and base timed in one run, pass by pass or round by round;
    steady state from the alternated epochs where both have them (`PAIRED_FROM`)."""
    finer = PAIRED_FROM.get(metric.name)
    if finer and finer.samples_of(side.then) and finer.samples_of(side.now):
        metric = finer
    before, after = metric.samples_of(side.then), metric.samples_of(side.now)
    if not before or not after or len(before) != len(after):
        return [], None
    paired_by = "round by round" if metric.pairing is Pairing.ROUND else "in the same passes"
    rule = Rule(
        limit.value, "paired t", thresholds.alpha, f"{limit.origin}, {side.against} {paired_by}"
    )
    verdict = device_meaning(decide_paired(side.variant, metric, before, after, rule), side)
    if verdict.outcome != "regression":
        return [], verdict
    failure = Failure(
        side.variant, metric.name, verdict.change, limit.value, "", rule.origin, verdict
    )
    return [failure], verdict


def compare_with_baseline(
    thresholds: Thresholds,
    results: Mapping[str, Mapping[str, Any]],
    baseline: Mapping[str, Mapping[str, Any]],
    baseline_name: str,
) -> tuple[list[Failure], list[Verdict]]:
    """Each variant of this run against the same variant of a saved run (`Across.RUNS`)."""
    sides = [
        Sides(variant, now, f"baseline {baseline_name}", baseline[variant])
        for variant, now in results.items()
        if variant in baseline
    ]
    return compare(thresholds, sides, Across.RUNS)


def check_baseline(
    thresholds: Thresholds,
    results: Mapping[str, Mapping[str, Any]],
    baseline: Mapping[str, Mapping[str, Any]],
    baseline_name: str,
) -> list[Failure]:
    """The failed comparisons with a baseline run (see `compare_with_baseline`)."""
    return compare_with_baseline(thresholds, results, baseline, baseline_name)[0]


def compare_pairs(
    thresholds: Thresholds,
    results: Mapping[str, Mapping[str, Any]],
    pairs: Mapping[str, str],
) -> tuple[list[Failure], list[Verdict]]:
    """Each head variant against its base measured in the same run (``pairs``: head name
    -> base name, `pipelines.versions`; `Across.SAME_RUN`), with the tolerances of
    ``[base_vs_head]`` over the rest (`Thresholds.paired`): no drift between runs enters."""
    sides = [
        Sides(head, results[head], f"base {base}", results[base])
        for head, base in pairs.items()
        if head in results and base in results
    ]
    return compare(thresholds.paired(), sides, Across.SAME_RUN)


def below_baseline(
    thresholds: Thresholds, variant: str, metric: Metric, value: float | None, before: float | None
) -> tuple[float, Limit] | None:
    """(limit value, limit) when ``value`` moved beyond the tolerance for ``metric`` from
    ``before``: the throughput and accuracy floors, the CPU ceiling (`Metric.limit`)."""
    limit = thresholds.limits_for(variant).get(TOLERANCE_OF[metric.name])
    if limit is None or value is None or not before:
        return None
    worst = metric.limit(before, limit.value)
    return (worst, limit) if metric.beyond(value, worst) else None


def _beyond_tolerance(thresholds: Thresholds, side: Sides, metric: Metric) -> list[Failure]:
    """The single-value comparison: a failure when ``metric`` moved beyond its tolerance."""
    value = metric.of(side.now)
    fell = below_baseline(thresholds, side.variant, metric, value, metric.of(side.then))
    if not fell:
        return []
    worst, limit = fell
    relation = ">=" if metric.higher_is_better else "<="
    origin = f"{limit.origin}, {side.against}"
    return [Failure(side.variant, metric.name, value, worst, relation, origin)]


def device_meaning(verdict: Verdict, side: Sides) -> Verdict:
    """``verdict`` on steady throughput, saying what its change means on the run's device
    (a stand-in: the head has its ``step_time_s``): training there goes that much slower
    or faster; for the pipelines alone, how much of it the device's step hides."""
    now, then = side.now, side.then
    device = now.get("step_time_s")
    if verdict.change is None or not device or verdict.metric.pairing is not Pairing.ROUND:
        return verdict
    on_device = str(now.get("device"))  # its step time's origin heads the run's figures
    if verdict.metric.name == metrics.ALTERNATED.name:
        meaning = f"training on {on_device} {_faster_or_slower(verdict.change)}"
    else:
        heads, bases = metrics.ALTERNATED.samples_of(now), metrics.ALTERNATED.samples_of(then)
        meaning = f"the pipeline alone {_faster_or_slower(verdict.change)}"
        if heads and bases and len(heads) == len(bases):
            paced = paired_ratio(heads, bases).value
            meaning += f"; training on {on_device} {_faster_or_slower(paced)}"
    reason = "; ".join(filter(None, [verdict.reason, meaning]))
    return dataclasses.replace(verdict, reason=reason)


def _faster_or_slower(ratio: float) -> str:
    """``0.52`` -> ``goes 48% slower`` (head over base examples/s)."""
    if abs(ratio - 1) < 0.0005:
        return "goes as fast"
    return f"goes {abs(1 - ratio):.0%} {'slower' if ratio < 1 else 'faster'}"


def _lost_steps(side: Sides) -> list[Failure]:
    """A failure when the variant's steps lost an optimization the base's had."""
    had, has = structure.optimizations(side.then), structure.optimizations(side.now)
    gone = structure.lost(had, has) if had is not None and has is not None else []
    if not gone:
        return []
    then, now = side.then.get("steps"), side.now.get("steps")
    detail = f"lost {', '.join(gone)}: steps were {then}, now {now}"
    return [Failure(side.variant, "steps", 0.0, 0.0, "", side.against, detail=detail)]


def _slower_stages(limits: Mapping[str, Limit], side: Sides) -> list[Failure]:
    """The stages the base gated whose 10th-percentile span grew beyond the tolerance."""
    limit = limits.get(STAGE_TOLERANCE)
    now = side.now.get("stage_p10_s") or {}
    if limit is None:
        return []
    failures = []
    for stage, then in (side.then.get("stage_p10_s") or {}).items():
        ceiling = then * (1 + limit.value)
        if stage in now and now[stage] > ceiling:
            origin = f"{limit.origin}, {side.against}"
            metric = f"p10 {stage} span (s)"
            failures.append(Failure(side.variant, metric, now[stage], ceiling, "<=", origin))
    return failures
