"""--perf-verify-suggestions: each suggested change applied to a copy, checked, timed in passes."""

from __future__ import annotations

import itertools
import math
import subprocess
import time
from types import SimpleNamespace

import pytest
from bench_runner import ROOT, suite_command

import pipelines
from benchmarks.diagnosing.bottleneck import StageTimes, analyze
from benchmarks.diagnosing.verify import (
    TOGETHER,
    Candidate,
    Verified,
    candidates,
    check_contract,
    gap_closed,
    speedups_settled,
    together,
    verdict,
    verify,
)
from benchmarks.measuring.intervals import Estimate, paired_ratio
from benchmarks.measuring.passes import Passes, PassPlan, Trial, run_passes
from pipelines.checks.tagged import tagged_source
from pipelines.fixes import Fix
from pipelines.observing.timeline import TRAINER_STAGES
from pipelines.observing.tracing import Stage
from pipelines.steps import Batch, Map, Prefetch, Read, Shuffle

# A minute or more in all: the test job starts this module first (conftest.py).
pytestmark = pytest.mark.slow

AUGMENTED = pipelines.get("augmented")


def test_each_change_alone_then_all_together():
    keys = ["parallelize:map(augment)", "vectorize:map(augment)", "cache", "prefetch"]
    singles = candidates(AUGMENTED, keys)
    assert [c.label for c in singles] == [
        "parallelize map(augment)",
        "vectorize map(augment)",
        "cache after decoding",
        "prefetch at the end",
    ]
    (combined,) = together(AUGMENTED, singles)
    assert combined.label == TOGETHER
    assert [fix.key for fix in combined.fixes] == keys
    # Parallelized and vectorized: per batch, on parallel calls, as optimized does it.
    assert combined.copy.steps[-2:] == (Map(("augment",), parallel=True), Prefetch())


def test_together_leaves_out_a_change_that_broke_the_contract():
    naive = pipelines.get("naive")
    singles = [check_contract(c) for c in candidates(naive, ["parallel_read", "prefetch", "cache"])]
    assert singles[0].problem == "breaks the contract: order"
    (combined,) = together(naive, singles)
    assert [fix.key for fix in combined.fixes] == ["prefetch", "cache"]


def test_a_change_that_does_not_apply_is_not_timed_and_says_why():
    (found,) = candidates(pipelines.get("prefetch"), ["prefetch"])
    assert found.trial is None
    assert found.problem.startswith("does not apply to read -> map(decode")


def test_a_copy_that_breaks_the_contract_is_not_timed():
    (found,) = candidates(pipelines.get("naive"), ["parallel_read"])
    checked = check_contract(found)
    assert checked.problem == "breaks the contract: order"
    assert checked.trial is None


def test_a_copy_that_keeps_the_contract_is_timed():
    (found,) = candidates(AUGMENTED, ["cache"])
    assert check_contract(found).trial == Trial("training", "augmented+cache")


@pytest.mark.parametrize(
    ("after", "expected"),
    [(2.0, 0.0), (1.5, 1 / 3), (1.0, 1.0), (0.8, 1.5)],
)
def test_the_gap_closed_is_measured_in_throughput(after, expected):
    # 2 s before, 1 s for the target: throughput 0.5 -> 1 per second.
    closed = gap_closed([2.0, 2.0], [after, after], [1.0, 1.0])
    assert closed.value == pytest.approx(expected)


def test_no_gap_when_the_target_is_not_faster():
    assert gap_closed([1.0, 1.0], [0.9, 0.9], [1.0, 1.2]) is None


def _verified(label: str, speedup: float, closed: float | None, spread: float = 0.1) -> Verified:
    gap = None if closed is None else Estimate(closed, closed - 0.1, closed + 0.1, 3)
    interval = Estimate(speedup, speedup - spread, speedup + spread, 3)
    return Verified(label, (label,), "contract kept", interval, gap)


ANALYSED = SimpleNamespace(fixes=("cache",), input_bound=0.5)


def test_the_verdict_names_the_change_that_brings_it_halfway():
    found = [_verified("prefetch at the end", 1.1, 0.1), _verified("cache after decoding", 2, 0.6)]
    line = verdict("augmented", found, ANALYSED)
    assert line.startswith("halfway reached by one change: cache after decoding: 2.00x")
    assert "60% of the way to optimized" in line


def test_the_verdict_claims_no_help_that_cannot_be_told_from_no_change():
    # 1.39x [0.95, 1.83]: most of the way to optimized, but it may be no change at all.
    found = [_verified("vectorize map(sharpen)", 1.39, 1.28, spread=0.44)]
    line = verdict("mine", found, ANALYSED)
    assert line.startswith("not shown: vectorize map(sharpen): 1.39x")
    assert "cannot be told from no change" in line and "halfway reached" not in line


def test_the_verdict_says_why_when_no_change_is_enough():
    found = [
        _verified("prefetch at the end", 1.1, 0.1),
        _verified("cache after decoding", 1.5, 0.3),
        _verified(TOGETHER, 2.5, 0.8),
    ]
    line = verdict("augmented", found, ANALYSED)
    assert line.startswith(f"halfway reached only with {TOGETHER} (2.50x [2.4, 2.6], 80% of")
    assert "no single change closes half the gap to optimized (30% at best" in line
    found[-1] = _verified(TOGETHER, 1.6, 0.4)
    line = verdict("augmented", found, ANALYSED)
    assert line.startswith(f"not halfway, even with {TOGETHER} (40%): no single change")


def test_the_verdict_without_suggestions_says_why():
    line = verdict("prefetch", [], SimpleNamespace(fixes=(), input_bound=0.01))
    assert line == "nothing to verify: it is not input-bound: the model limits it"
    function = SimpleNamespace(fixes=(), input_bound=0.5, suggestions=("function(f) is ...",))
    line = verdict("mine", [], function)
    assert (
        line
        == "nothing to verify: the advice names no change the suite can make (function(f) is ...)"
    )
    assert verdict("mine", [], None).endswith("not traced in this run (test_timeline deselected)")


class _Session:
    """What `verify` needs of a run: its plan, and passes that really build and iterate
    each trial's variant (the pipeline alone, on a tagged source)."""

    def __init__(self) -> None:
        self.options = SimpleNamespace(plan=PassPlan(3, 3, 1e9))
        self.source = tagged_source(60, num_shards=2)
        self.planned: set[Trial] = set()

    def interleave(self, trials, plan, estimates):
        self.planned = set(trials)
        return run_passes(trials, self._epoch, plan, seed=0, estimates=estimates)

    def _epoch(self, trial: Trial, seed: int):
        dataset = pipelines.build(trial.variant, self.source, batch_size=8, seed=seed)
        started = time.perf_counter()
        count = sum(1 for _ in dataset)
        return count, time.perf_counter() - started


@pytest.fixture
def small_variant():
    variant = pipelines.Variant(
        "small_sequential",
        (Read(), Map(("decode",)), Shuffle(), Batch()),
        pipelines.Contract(shuffle="elements"),
        benchmarked=False,
    )
    pipelines.register(variant)
    yield variant
    pipelines.unregister(variant.name)


def test_a_small_variant_gets_its_suggestions_verified(small_variant):
    stages = (Stage("read", "read"), Stage("map(decode)", "map"), Stage("batch", "batch", True))
    busy = {"read": 1.0, "map(decode)": 6.0, "batch": 0.1, "train step": 3.0}
    analysis = analyze(
        StageTimes((*stages, *TRAINER_STAGES), (busy,), (busy,), (10.0,), input_bound=0.6)
    )
    assert analysis.fixes == ("parallelize:map(decode)", "vectorize:map(decode)", "prefetch")
    session = _Session()
    outcomes, passes = verify(session, {small_variant.name: analysis})
    outcome = outcomes[small_variant.name]
    assert passes == 3
    # The variant, each copy and the reference were timed in the same passes.
    copies = {f"{small_variant.name}+{key}" for key in analysis.fixes}
    together = f"{small_variant.name}+{'+'.join(analysis.fixes)}"
    assert {t.variant for t in session.planned} == {
        small_variant.name,
        "optimized",
        *copies,
        together,
    }
    assert [v.label for v in outcome.verified] == [
        "parallelize map(decode)",
        "vectorize map(decode)",
        "prefetch at the end",
        TOGETHER,
    ]
    for verified in outcome.verified:
        assert verified.contract == "contract kept"
        assert verified.speedup.n == 3 and len(verified.speedup.samples) == 3
        assert verified.speedup.low <= verified.speedup.value <= verified.speedup.high
    assert len(outcome.best_seconds) == 3
    # The copies were registered only while they were timed.
    assert not copies & set(pipelines.VARIANTS)


def verify_alone(variant: pipelines.Variant, fixes: tuple[str, ...]):
    """``variant`` registered while its ``fixes`` are verified: (outcome, passes, session)."""
    pipelines.register(variant)
    try:
        analysis = SimpleNamespace(fixes=fixes, input_bound=0.5)
        session = _Session()
        outcomes, passes = verify(session, {variant.name: analysis})
    finally:
        pipelines.unregister(variant.name)
    return outcomes[variant.name], passes, session


def test_a_broken_copy_is_reported_and_nothing_is_timed(small_variant):
    unshuffled = pipelines.Variant(
        "small_in_order", (Read(), Map(("decode",)), Batch()), pipelines.Contract()
    )
    outcome, passes, session = verify_alone(unshuffled, ("parallel_read",))
    assert passes == 0 and not session.planned
    assert outcome.verified[0].line() == (
        "read shards in parallel: not timed, breaks the contract: order"
    )
    assert outcome.verdict.startswith("no suggested change kept the contract")


def test_a_variant_that_breaks_its_own_contract_is_named_and_its_copies_still_timed():
    # It promises order (the default contract) and shuffles: its own fault, not prefetch's.
    claims_order = pipelines.Variant(
        "small_claims_order", (Read(), Map(("decode",)), Shuffle(), Batch()), pipelines.Contract()
    )
    outcome, passes, session = verify_alone(claims_order, ("prefetch",))
    assert passes == 3 and Trial("training", "small_claims_order+prefetch") in session.planned
    (verified,) = outcome.verified
    assert (
        verified.contract == "contract kept (but for what small_claims_order breaks itself: order)"
    )
    assert verified.speedup is not None
    assert outcome.verdict.startswith(
        "small_claims_order breaks its contract (small_claims_order: order: "
    )
    assert "; fix that first; " in outcome.verdict


def test_a_candidate_label_is_its_fix_or_together():
    fix = Fix.parse("prefetch")
    assert Candidate("augmented", (fix,), None).label == "prefetch at the end"
    assert Candidate("augmented", (fix, Fix.parse("cache")), None).label == TOGETHER


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ((), set()),
        (("--perf-verify-suggestions",), {"test_suggestions[cache]"}),
        (("--perf-profiler",), {"test_profiler_capture[cache]"}),
    ],
)
def test_verification_and_profiling_run_only_when_asked(flags, expected):
    command = suite_command("--collect-only", "--perf-variants", "cache", *flags)
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    collected = {line.split("::")[-1] for line in done.stdout.splitlines() if "::" in line}
    assert "test_timeline[cache]" in collected
    asked = ("test_suggestions", "test_profiler_capture")
    assert {c for c in collected if c.startswith(asked)} == expected


def test_verification_passes_go_on_until_each_speedup_is_settled():
    # A copy twice as fast settles in the least passes; one that cannot be told from
    # the variant (25% slower in one pass, as much faster in the next) takes every pass allowed;
    # one within the precision (+-5%) settles as no change worth more passes.
    def passes_for(copy_factors: list[float]) -> Passes:
        copy = Candidate(
            "v",
            (Fix("prefetch"),),
            pipelines.Variant(f"v+{copy_factors[0]}", (Read(), Batch()), pipelines.Contract()),
        )
        factors = itertools.cycle(copy_factors)
        done = {"v": 0, copy.copy.name: 0}

        def run_one(trial: Trial, seed: int):
            done[trial.variant] += 1
            machine = [1.0, 1.3, 0.8][(done[trial.variant] - 1) % 3]  # drifts, pass by pass
            factor = next(factors) if trial == copy.trial else 1.0
            return None, machine * factor

        plan = PassPlan(3, 9, math.inf)
        return run_passes(
            [Trial("training", "v"), copy.trial],
            run_one,
            plan,
            seed=0,
            estimates=lambda p: speedups_settled(p, [copy]),
        )

    fast = passes_for([0.5, 0.52])
    assert (fast.count, fast.stopped) == (3, "precise")
    same = passes_for([1.25, 0.8])
    assert (same.count, same.stopped) == (9, "max passes")
    assert passes_for([1.01, 0.99]).stopped == "precise"
    unsettled = Verified("x", (), "kept", paired_ratio([1.0, 1.1, 0.9], [1.0, 0.9, 1.1]))
    assert "(not told from no change)" in unsettled.figures()
    settled = Verified("x", (), "kept", paired_ratio([1.0, 1.1, 0.9], [0.5, 0.56, 0.44]))
    assert "x [" in settled.figures() and "not told" not in settled.figures()
