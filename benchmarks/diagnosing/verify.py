"""Suggestions proven by measurement (``--perf-verify-suggestions``).

For each variant the bottleneck analysis gave advice for, every change it
names (`pipelines.fixes`) is applied to a copy of the variant, alone, and
all of them together. Each copy is checked against the variant's own
contract (`pipelines.checks.contract`, on a tagged source) and, where it
keeps it, trained in the same randomized interleaved passes as the variant
itself and `optimized`: its speedup is paired within each pass, with its
95% interval, and so is the share of the gap to `optimized` it closes.

The TF profiler's input-pipeline page suggests; this step measures what
the suggestion buys on this machine, the way Plumber (Kuchnik et al., MLSys
2022) tunes by measuring rather than by rule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pipelines
from benchmarks.diagnosing.bottleneck import MODERATE, Bottleneck, traced_analysis
from benchmarks.measuring.intervals import Estimate, mean, paired_ratio
from benchmarks.measuring.passes import Passes, Trial
from benchmarks.measuring.records import RunRecords
from pipelines.checks.contract import CHECKS, ContractViolation, check_variant
from pipelines.errors import InputError
from pipelines.fixes import Fix, applied
from pipelines.functions import FunctionPipeline
from pipelines.variants import Variant

# The reference a variant's gap is measured to.
TARGET = "optimized"
# How far to the target a change must bring a variant to count as enough.
HALFWAY = 0.5
# The contract check of a copy: one size where every promise is checkable far
# beyond chance (60 examples, a remainder of 4, two shards), one seed.
CHECK_SIZE = {"n": 60, "batch_size": 7, "num_shards": 2, "seed": 1}
TOGETHER = "all of them together"


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A variant with some suggested changes applied, and whether it can be timed."""

    variant: str
    fixes: tuple[Fix, ...]
    copy: Variant | None
    # Why it is not timed: the change does not apply, or the copy broke the contract.
    problem: str | None = None

    @property
    def label(self) -> str:
        """What was changed, in words."""
        if len(self.fixes) > 1:
            return TOGETHER
        return self.fixes[0].label

    @property
    def trial(self) -> Trial | None:
        """Its training trial, where it is timed."""
        return None if self.copy is None or self.problem else Trial("training", self.copy.name)


def candidates(variant: Variant, fix_keys: Sequence[str]) -> list[Candidate]:
    """Each change alone."""
    out = []
    inside_function = bool(variant.steps) and isinstance(variant.steps[0], FunctionPipeline)
    for fix in (Fix.parse(key) for key in fix_keys):
        copy = applied(variant, [fix])
        problem = None
        if copy is None:
            problem = (
                f"not made inside a pipeline function: change {variant.steps[0]} yourself"
                if inside_function
                else f"does not apply to {variant.describe()}"
            )
        out.append(Candidate(variant.name, (fix,), copy, problem))
    return out


def together(variant: Variant, singles: Sequence[Candidate]) -> list[Candidate]:
    """All the changes that kept the contract alone, applied together (where there are two
    or more): removing one bottleneck leaves the next to limit, so the changes' gains
    multiply only when made together. A map both parallelized and vectorized runs
    per batch on parallel calls, as in `optimized`."""
    fixes = tuple(single.fixes[0] for single in singles if single.trial is not None)
    if len(fixes) < 2:
        return []
    copy = applied(variant, fixes)
    return [Candidate(variant.name, fixes, copy, None if copy else "they do not apply together")]


@dataclasses.dataclass(frozen=True)
class OwnContract:
    """What the variant itself breaks of its contract, found before its copies are checked:
    a copy is then blamed only for what it breaks beyond that."""

    broken: tuple[str, ...] = ()
    first: str = ""  # the first violation, in words

    def line(self, variant: str) -> str:
        """E.g. ``mine breaks its contract (mine: crop_top: ...); fix that first``."""
        return (
            f"{variant} breaks its contract ({self.first}); fix that first" if self.broken else ""
        )


def own_contract(variant: Variant, check: Callable[..., None] = check_variant) -> OwnContract:
    """Every property ``variant`` breaks (each check run again without those found)."""
    broken: list[str] = []
    first = ""
    for _ in range(len(CHECKS)):
        try:
            check(variant, **CHECK_SIZE, skip=tuple(broken))
        except ContractViolation as violation:
            broken.append(violation.prop)
            first = first or str(violation)
            continue
        except (InputError, ValueError, TypeError):
            pass  # its copies' checks will say so
        break
    return OwnContract(tuple(broken), first)


def check_contract(
    candidate: Candidate,
    check: Callable[..., None] = check_variant,
    own: OwnContract = OwnContract(),
) -> Candidate:
    """``candidate`` with ``problem`` set where its copy breaks the variant's contract
    beyond what the variant itself breaks (``own``)."""
    if candidate.copy is None or candidate.problem:
        return candidate
    try:
        check(candidate.copy, **CHECK_SIZE, skip=own.broken)
    except ContractViolation as violation:
        return dataclasses.replace(candidate, problem=f"breaks the contract: {violation.prop}")
    except (InputError, ValueError, TypeError) as error:
        return dataclasses.replace(candidate, problem=f"does not build: {error}")
    return candidate


@dataclasses.dataclass(frozen=True)
class Verified:
    """What one candidate measured: its speedup over the variant, and the share of the
    gap to `TARGET` it closed (None where the target was not timed or not faster)."""

    label: str
    fixes: tuple[str, ...]
    contract: str
    speedup: Estimate | None = None
    gap_closed: Estimate | None = None

    def line(self) -> str:
        """E.g. ``parallelize map(decode): 1.42x [1.35, 1.49], contract kept``."""
        return f"{self.label}: {self.figures()}"

    def figures(self) -> str:
        """What it measured: speedup, share of the gap, contract (or why it was not timed)."""
        if self.speedup is None:
            return f"not timed, {self.contract}"
        gap = (
            ""
            if self.gap_closed is None
            else f", {self.gap_closed.value:.0%} of the way to {TARGET}"
        )
        speedup = f"{self.speedup.value:.2f}x {self.speedup.interval_text}"
        if not decided(self.speedup):
            speedup += " (not told from no change)"
        elif self.speedup.high < 1.0:
            speedup += " (slower)"
        return f"{speedup}{gap}, {self.contract}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, for extra_info and the report."""

        def estimate(e: Estimate | None) -> dict[str, Any] | None:
            return None if e is None else {"value": e.value, "ci": e.to_list(), "n": e.n}

        return {
            "label": self.label,
            "fixes": list(self.fixes),
            "contract": self.contract,
            "speedup": estimate(self.speedup),
            "gap_closed": estimate(self.gap_closed),
            "line": self.line(),
        }


def gap_closed(
    before: Sequence[float], after: Sequence[float], target: Sequence[float]
) -> Estimate | None:
    """Per pass, how much of the throughput gap between ``before`` and ``target`` the
    change closed (times per pass, paired; 1: as fast as the target), summarised with its
    interval; None where the target is not faster than ``before`` in every pass."""
    shares = []
    for b, a, t in zip(before, after, target, strict=True):
        if t >= b:
            return None
        shares.append((1 / a - 1 / b) / (1 / t - 1 / b))
    return mean(shares)


def judge(
    candidates_: Iterable[Candidate],
    passes: Passes | None,
    variant: str,
    own: OwnContract = OwnContract(),
) -> list[Verified]:
    """Each candidate's figures from ``passes`` (which timed the variant, `TARGET` and the
    candidates that kept the contract; None where none was timed). ``own``: what the
    variant itself breaks (its copies were not asked to keep it)."""
    kept = "contract kept" + (
        f" (but for what {variant} breaks itself: {', '.join(own.broken)})" if own.broken else ""
    )
    seconds = passes.seconds if passes else {}
    before = seconds.get(Trial("training", variant), [])
    target = seconds.get(Trial("training", TARGET)) if variant != TARGET else None
    out = []
    for candidate in candidates_:
        keys = tuple(fix.key for fix in candidate.fixes)
        trial = candidate.trial
        if trial is None or trial not in seconds or not before:
            out.append(Verified(candidate.label, keys, candidate.problem or "not timed"))
            continue
        after = seconds[trial]
        out.append(
            Verified(
                candidate.label,
                keys,
                kept,
                paired_ratio(before, after),
                gap_closed(before, after, target) if target else None,
            )
        )
    return out


def decided(speedup: Estimate) -> bool:
    """Whether a speedup's interval says which way the change went: wholly above or
    below 1x."""
    return speedup.low is not None and (speedup.low > 1.0 or speedup.high < 1.0)


@dataclasses.dataclass(frozen=True)
class _Verdict:
    """A speedup as the passes' stopping rule reads it: settled once its interval
    excludes 1x, or lies within the plan's precision (no change worth more passes)."""

    speedup: Estimate

    def precise(self, precision: float) -> bool:
        return decided(self.speedup) or self.speedup.precise(precision)


def speedups_settled(passes: Passes, copies: Sequence[Candidate]) -> list[_Verdict]:
    """Each timed copy's speedup over its variant so far, for the passes' stopping rule."""
    return [
        _Verdict(
            paired_ratio(
                passes.seconds[Trial("training", copy.variant)], passes.seconds[copy.trial]
            )
        )
        for copy in copies
        if copy.trial is not None
    ]


def shown_faster(verified: Verified) -> bool:
    """Whether the copy's speedup interval lies wholly above 1x: only then does it help."""
    low = verified.speedup.low if verified.speedup is not None else None
    return low is not None and low > 1.0


def verdict(variant: str, verified: Sequence[Verified], analysis: Any) -> str:
    """One line: which change brings the variant halfway to `TARGET`, or why none does."""
    if variant == TARGET:
        return f"{variant} is the reference the others are measured against"
    if analysis is None:
        return "nothing to verify: it was not traced in this run (test_timeline deselected)"
    if not analysis.fixes:
        if analysis.input_bound < MODERATE:
            return "nothing to verify: it is not input-bound: the model limits it"
        advice = analysis.suggestions[0] if analysis.suggestions else "none"
        return f"nothing to verify: the advice names no change the suite can make ({advice})"
    timed = [v for v in verified if v.speedup is not None]
    if not timed:
        kept = any("breaks the contract" in v.line() for v in verified)
        why = "kept the contract" if kept else "could be made and timed"
        return f"no suggested change {why}: " + "; ".join(v.line() for v in verified)
    singles = [v for v in timed if v.label != TOGETHER]
    best = max(singles or timed, key=lambda v: v.speedup.value)
    if best.gap_closed is None:
        return f"best: {best.line()} ({TARGET} was not timed faster, so no gap to close)"
    if best.gap_closed.value >= HALFWAY:
        if not shown_faster(best):
            return (
                f"not shown: {best.line()} cannot be told from no change (its interval"
                " includes 1x); more passes (--perf-passes) would tell"
            )
        return f"halfway reached by one change: {best.line()}"
    why = (
        f"no single change closes half the gap to {TARGET} ({best.gap_closed.value:.0%} at"
        f" best, {best.label}): the time is spread over several stages, and removing one"
        " leaves the next to limit"
    )
    together = next((v for v in timed if v.label == TOGETHER), None)
    if together is None or together.gap_closed is None:
        return why
    if together.gap_closed.value >= HALFWAY and shown_faster(together):
        return f"halfway reached only with {TOGETHER} ({together.figures()}); {why}"
    return (
        f"not halfway, even with {TOGETHER} ({together.gap_closed.value:.0%}): {why}; the"
        " rest of the gap is in stages the analysis named no change for"
    )


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A variant's verified suggestions and the verdict on them."""

    verified: list[Verified]
    verdict: str
    # The seconds of the best timed copy, one per pass (what its benchmark reports).
    best_seconds: list[float]


def analyses_so_far(records: RunRecords, variants: Iterable[str]) -> dict[str, Bottleneck | None]:
    """Per variant, the bottleneck analysis of its traced run in ``records`` so far
    (None: not traced), for `verify` to run before the run's result is derived."""
    analyses: dict[str, Bottleneck | None] = {}
    for variant in variants:
        traced = records.timeline_of(variant)
        untraced = records.training_of(variant)
        analyses[variant] = None if traced is None else traced_analysis(traced, untraced)[0]
    return analyses


def verify(
    session: Any,
    analyses: Mapping[str, Bottleneck | None],
    check: Callable[..., None] = check_variant,
) -> tuple[dict[str, Outcome], int]:
    """Verify the suggestions of each variant of ``analyses`` in one set of interleaved passes.

    ``session``: the run's `benchmarks.measuring.session.PerfSession`; ``analyses``: per
    variant, its traced run's analysis (`analyses_so_far`; None: not traced). Returns
    per variant its `Outcome`, and how many passes timed them. The copies are
    registered only while timed.
    """
    groups: dict[str, list[Candidate]] = {}
    owns: dict[str, OwnContract] = {}
    for name, analysis in analyses.items():
        if analysis is None or not analysis.fixes or name == TARGET:
            groups[name], owns[name] = [], OwnContract()
            continue
        variant = pipelines.get(name)
        own = owns[name] = own_contract(variant, check)
        singles = [check_contract(c, check, own) for c in candidates(variant, analysis.fixes)]
        groups[name] = singles + [check_contract(c, check, own) for c in together(variant, singles)]
    timed = [c for group in groups.values() for c in group if c.trial is not None]
    passes = None
    if timed:
        trials = {c.trial for c in timed} | {Trial("training", c.variant) for c in timed}
        if TARGET in pipelines.VARIANTS:
            trials.add(Trial("training", TARGET))
        for candidate in timed:
            pipelines.register(candidate.copy, replace=True)
        try:
            # As many passes as it takes each speedup to settle (its interval excluding
            # 1x, or within the precision), in the run's limits: as few as the plan's
            # least, as many as its most, and no longer than its time limit.
            passes = session.interleave(
                trials,
                session.options.plan,
                estimates=lambda so_far: speedups_settled(so_far, timed),
            )
        finally:
            for candidate in timed:
                pipelines.unregister(candidate.copy.name)
    outcomes = {}
    for name, group in groups.items():
        verified = judge(group, passes, name, owns[name])
        # judge keeps the candidates' order: the fastest timed copy's epochs.
        timed_pairs = [(v, c) for v, c in zip(verified, group, strict=True) if v.speedup]
        best = max(timed_pairs, key=lambda pair: pair[0].speedup.value, default=None)
        seconds = passes.seconds[best[1].trial] if best and passes else []
        said = verdict(name, verified, analyses[name])
        unsettled = [v for v in verified if v.speedup is not None and not decided(v.speedup)]
        if unsettled and passes is not None:
            said += f" ({len(unsettled)} not settled after {passes.count} passes: {passes.stopped})"
        first = owns[name].line(name)
        outcomes[name] = Outcome(verified, f"{first}; {said}" if first else said, seconds)
    return outcomes, passes.count if passes else 0
