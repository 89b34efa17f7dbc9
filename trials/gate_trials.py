"""How often the gate cries wolf, and how often it catches a real regression.

    python -m trials.gate_trials --mode ci --runs 3 --out gate-trials

First one unchanged run is saved as the baseline (as CI saves one on the main
branch). Then each trial judges every condition, the unchanged code and each
injected regression of `optimized` (`trials.inject`), exactly as
`optimized` is judged: the run's own gates, and the comparison with the
baseline's passes (`benchmarks.judging.decide`). Two modes:

- ``ci``: each condition in its own run, the regression replacing `optimized`,
  against the baseline saved earlier: what CI does with a pull request (the
  machine's load may have changed since the baseline);
- ``beside``: one run per trial, every regressed copy registered beside the
  unchanged `optimized`, so that all meet the same load.

Counts: an *alarm* is a failed check of the unchanged code; a *detection* a
failed check of a regressed condition. The table gives each rate with its 95%
(Wilson) interval.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from scipy import stats

from benchmarks.judging import compare, gates
from benchmarks.judging.decide import decide
from benchmarks.saving.metrics import FRACTION_OF_CEILING, Metric
from benchmarks.saving.storage import saved_runs
from pipelines.errors import InputError
from trials.harness import ROOT, RunFailed, run_suite
from trials.inject import BASE

# The realistic regressions the gate must catch (issue: a lost prefetch, a lost
# cache, sequential reads, a costlier augmentation, an un-vectorized one, labels).
INJECTED = (
    "no_prefetch",
    "no_cache",
    "sequential_read",
    "costly_augment",
    "unvectorized_augment",
    "mislabel_some",
)
GATED = "test_ceiling or test_training or test_pipeline or test_timeline"
UNCHANGED = "unchanged"


@dataclasses.dataclass
class Tally:
    """One condition's verdicts over the trials."""

    flagged: int = 0
    runs: int = 0
    checks: Counter[str] = dataclasses.field(default_factory=Counter)

    def rate(self) -> str:
        """``flagged/runs`` with its 95% Wilson interval, e.g. ``3/3 [0.44, 1.00]``."""
        if not self.runs:
            return "0/0"
        interval = stats.binomtest(self.flagged, self.runs).proportion_ci(method="wilson")
        return f"{self.flagged}/{self.runs} [{interval.low:.2f}, {interval.high:.2f}]"


def bench_args(storage: Path, thresholds: Path, passes: int, *extra: str) -> list[str]:
    """`pytest benchmarks`' arguments for the gated benchmarks of `optimized`, storage
    under ``storage``."""
    args = ["-p", "trials.inject"]
    # Each pipeline alone too (--perf-alone): its CPU per example is among what is judged.
    args += ["-k", GATED, "--perf-alone", "--perf-profile", "smoke"]
    args += ["--perf-passes", str(passes)]
    args += ["--perf-thresholds", str(thresholds), f"--benchmark-storage=file://{storage}"]
    return [*args, *extra]


def run(args: list[str], inject: str, output: Path, alongside: bool) -> bool:
    """Run one benchmark session with ``inject``'s regressions, its output beside ``output``
    (``.log``); whether it finished (else a line says so)."""
    env = {"PERF_INJECT": inject, "PERF_INJECT_ALONGSIDE": "1" if alongside else ""}
    try:
        run_suite(args, output, output.with_suffix(".log"), cwd=ROOT, env=env)
    except RunFailed as failed:
        print(f"error: {failed}")
        return False
    return True


def judge(
    thresholds: gates.Thresholds,
    metrics: dict[str, Any],
    baseline: dict[str, dict[str, Any]],
    baseline_name: str,
) -> list[gates.Failure]:
    """The failed checks of ``metrics`` judged as `optimized`'s: its own gates and the baseline."""
    judged = {BASE: metrics}
    failures = gates.check_run(thresholds, judged)
    return failures + compare.check_baseline(thresholds, judged, baseline, baseline_name)


def run_trial(
    args: argparse.Namespace, storage: Path, trial: int
) -> dict[str, dict[str, Any]] | None:
    """One trial's metrics per condition (None: a run failed; its log says why)."""
    found = {}
    plans = (
        [(",".join(INJECTED), True, "all")]
        if args.mode == "beside"
        else [(condition, False, condition) for condition in args.conditions]
    )
    for inject, alongside, label in plans:
        output = args.out / f"trial_{trial:02d}_{label}.json"
        if not args.judge_only:
            variants = ",".join([BASE, *(f"{BASE}_{n}" for n in INJECTED)]) if alongside else BASE
            command = bench_args(storage, args.thresholds, args.passes, "--perf-variants", variants)
            injected = "" if inject == UNCHANGED else inject
            if not run(command, injected, output, alongside):
                print(f"trial {trial} ({label}) did not run")
                return None
        if not output.exists():
            continue  # judging again: a condition this trial did not run
        metrics = gates.load_saved_metrics(output)
        if alongside:
            found[UNCHANGED] = metrics[BASE]
            found.update({name: metrics[f"{BASE}_{name}"] for name in INJECTED})
        else:
            found[label] = metrics[BASE]
    return found


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("ci", "beside"), default="ci")
    parser.add_argument("--runs", type=int, default=3, help="trials (default 3)")
    parser.add_argument(
        "--start", type=int, default=1, help="number of the first trial (add trials to --out)"
    )
    parser.add_argument("--passes", type=int, default=4, help="passes per run (default 4)")
    parser.add_argument("--out", type=Path, default=Path("gate-trials"), help="work folder")
    parser.add_argument("--thresholds", type=Path, default=gates.DEFAULT_THRESHOLDS)
    parser.add_argument(
        "--conditions",
        type=lambda text: [c.strip() for c in text.split(",") if c.strip()],
        default=[UNCHANGED, *INJECTED],
        help="ci mode: the conditions to run (default: unchanged and every injection)",
    )
    parser.add_argument(
        "--judge-only",
        action="store_true",
        help="run nothing: judge the trials already in --out again (after editing thresholds)",
    )
    args = parser.parse_args(argv)
    try:
        thresholds = gates.load_thresholds(args.thresholds)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    unknown = set(args.conditions) - {UNCHANGED, *INJECTED}
    if unknown:
        print(f"error: --conditions: unknown {sorted(unknown)[0]!r}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    storage = args.out / "storage"
    if not saved_runs(storage) and not args.judge_only and not save_baseline(args, storage):
        return 2
    baseline_path = saved_runs(storage)[-1]
    baseline = gates.load_saved_metrics(baseline_path)

    tallies = {condition: Tally() for condition in (UNCHANGED, *INJECTED)}
    for trial in range(args.start, args.start + args.runs):
        started = time.monotonic()
        found = run_trial(args, storage, trial)
        if found is None:
            return 2
        if not found:
            break  # judging again: no more trials
        lines = []
        for condition, metrics in found.items():
            failures = judge(thresholds, metrics, baseline, baseline_path.name)
            lines += count(condition, failures, tallies[condition])
        took = time.monotonic() - started
        print(f"trial {trial} ({took:.0f} s):\n" + "\n".join(lines), flush=True)
    return summarize(tallies, args, thresholds)


SHIFTS = tuple(round(0.02 * k, 2) for k in range(1, 21))  # 2% to 40% slower


def smallest_detected(
    runs: list[list[float]], thresholds: gates.Thresholds, metric: Metric = FRACTION_OF_CEILING
) -> tuple[float | None, dict[float, float]]:
    """The smallest change for the worse the gate detects in 9 of 10 comparisons, from
    unchanged runs (for throughput: a drop).

    Every ordered pair of distinct unchanged runs (one as the baseline, the
    other as the pull request) is compared with the second's samples scaled
    down by each shift in `SHIFTS`: the detections include the drift between
    runs, as CI meets it. Returns the smallest shift detected in 90% of the
    pairs (None: none is), and the detection rate per shift.
    """
    limit = thresholds.limits_for(BASE)[gates.TOLERANCE_OF[metric.name]]
    rule = thresholds.rule(limit)
    pairs = [(a, b) for i, a in enumerate(runs) for j, b in enumerate(runs) if i != j]
    rates = {}
    for shift in SHIFTS:
        found = [
            decide(BASE, metric, a, worse(b, shift, metric), rule).outcome == "regression"
            for a, b in pairs
        ]
        rates[shift] = sum(found) / len(found) if found else 0.0
    smallest = next((shift for shift in SHIFTS if rates[shift] >= 0.9), None)
    return smallest, rates


def worse(sample: list[float], shift: float, metric: Metric) -> list[float]:
    """``sample`` made worse by ``shift``: lower where higher is better, higher otherwise."""
    factor = 1 - shift if metric.higher_is_better else 1 + shift
    return [x * factor for x in sample]


AB_ORDER = ((0, 3, 4), (1, 2, 5))  # three rounds as trials.ab runs them: B H, H B, B H


def alternated(
    runs: list[list[float]], thresholds: gates.Thresholds, metric: Metric = FRACTION_OF_CEILING
) -> dict[float, tuple[int, int]]:
    """`trials.ab`'s power from unchanged runs: per drop (0 included), detections
    out of comparisons.

    Every window of six consecutive runs is three rounds of base and head in
    the order `trials.ab` runs them, each side as the head in turn; the
    head's samples are scaled down by the drop and decided with the
    ``[base_vs_head]`` tolerances.
    """
    paired = thresholds.paired()
    limit = paired.limits_for(BASE)[gates.TOLERANCE_OF[metric.name]]
    rule = paired.rule(limit)
    windows = [runs[i : i + 6] for i in range(len(runs) - 5)]
    found = {}
    for shift in (0.0, *SHIFTS[:7]):
        hits = 0
        for window in windows:
            for base, head in (AB_ORDER, AB_ORDER[::-1]):
                before = [x for i in base for x in window[i]]
                after = worse([x for i in head for x in window[i]], shift, metric)
                verdict = decide(BASE, metric, before, after, rule)
                hits += verdict.outcome == "regression"
        found[shift] = (hits, 2 * len(windows))
    return found


def unchanged_samples(out: Path, storage: Path, metric: Metric = FRACTION_OF_CEILING) -> list:
    """``metric``'s samples of `optimized` in every unchanged run kept in ``out``."""
    paths = [*saved_runs(storage), *sorted(out.glob(f"trial_*_{UNCHANGED}.json"))]
    samples = []
    for path in paths:
        found = metric.samples_of(gates.load_saved_metrics(path).get(BASE, {}))
        if found:
            samples.append(found)
    return samples


def save_baseline(args: argparse.Namespace, storage: Path) -> bool:
    """Run `optimized` unchanged once and save the run as the trials' baseline."""
    started = time.monotonic()
    command = bench_args(
        storage, args.thresholds, args.passes, "--perf-variants", BASE, "--benchmark-autosave"
    )
    done = run(command, "", args.out / "baseline.json", alongside=False)
    outcome = "done" if done else "failed"
    print(f"baseline run: {outcome} in {time.monotonic() - started:.0f} s", flush=True)
    return done


def count(condition: str, failures: list[gates.Failure], tally: Tally) -> list[str]:
    """Add one verdict to ``tally``; its lines for the log."""
    tally.runs += 1
    tally.flagged += bool(failures)
    tally.checks.update(f.metric for f in failures)
    return [f"{condition}: {'FLAGGED' if failures else 'pass'}"] + [f"    {f}" for f in failures]


def summarize(
    tallies: dict[str, Tally], args: argparse.Namespace, thresholds: gates.Thresholds
) -> int:
    """Print and save the table of trials; 0 when nothing was missed and nothing false."""
    summary = {
        condition: {"runs": t.runs, "flagged": t.flagged, "checks": dict(t.checks)}
        for condition, t in tallies.items()
    }
    (args.out / f"summary_{args.mode}.json").write_text(json.dumps(summary, indent=2))
    print(f"\nmode {args.mode}, {args.passes} passes per run")
    print("| condition | flagged [95% interval] | checks that fired |\n| --- | --- | --- |")
    for condition, t in tallies.items():
        fired = ", ".join(f"{m} x{n}" for m, n in t.checks.most_common()) or "none"
        print(f"| {condition} | {t.rate()} | {fired} |")
    caught = Tally(
        sum(t.flagged for c, t in tallies.items() if c != UNCHANGED),
        sum(t.runs for c, t in tallies.items() if c != UNCHANGED),
    )
    print(f"\nfalse alarms: {tallies[UNCHANGED].rate()}; detections: {caught.rate()}")
    if args.mode == "ci":
        runs = unchanged_samples(args.out, args.out / "storage")
        smallest, rates = smallest_detected(runs, thresholds)
        shown = ", ".join(f"{shift:.0%}: {rate:.0%}" for shift, rate in rates.items())
        print(
            f"smallest drop of optimized's fraction of the ceiling detected in 9 of 10"
            f" comparisons of {len(runs)} unchanged runs: "
            + (f"{smallest:.0%}" if smallest is not None else "none up to 40%")
            + f" (detection rate per drop: {shown})"
        )
        if len(runs) >= 6:
            found = alternated(runs, thresholds)
            shown = ", ".join(f"{shift:.0%}: {hits}/{n}" for shift, (hits, n) in found.items())
            print(f"trials.ab, as windows of 6 unchanged runs, flagged per drop: {shown}")
    missed = caught.runs - caught.flagged
    return 0 if tallies[UNCHANGED].flagged == 0 and missed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
