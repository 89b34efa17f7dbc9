"""How often the smoke gate cries wolf, and how often it catches a real regression.

    python -m benchmarks.gate_trials --runs 10 --out gate-trials

First one unchanged run is saved as the baseline (as CI saves one on the main
branch). Then each trial is one ordinary benchmark run (``pytest
benchmarks``, the smoke profile) of `naive`, `optimized` and three regressed
copies of `optimized` (`benchmarks.inject`) registered beside it: its read
stage 25% slower, its maps without parallelism, its labels wrongly paired.
Each copy is judged exactly as `optimized` would be had the regression
landed in it: its metrics go through the thresholds for `optimized` and the
baseline comparison with the baseline's `optimized`. Measuring all four in
one run puts them under the same machine load, which is the point of gating
on ratios within a run.

Counts: an *alarm* on the unchanged code is any failed check of `naive` or
`optimized`; a *detection* is at least one failed check of a regressed copy.
Goals: no alarm in ``--runs`` trials, a detection in every one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import gates
from benchmarks.inject import BASE
from benchmarks.storage import read_run, saved_runs
from pipelines.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
INJECTED = ("slow_read", "serial_map", "mislabel")
GATED = "test_ceiling or test_training or test_timeline"
# condition -> the variant measured for it
CONDITIONS = {"unchanged": BASE, **{name: f"{BASE}_{name}" for name in INJECTED}}


@dataclasses.dataclass
class Tally:
    """One condition's verdicts over the trials."""

    flagged: int = 0
    runs: int = 0
    checks: Counter[str] = dataclasses.field(default_factory=Counter)


def bench_command(storage: Path, thresholds: Path, *extra: str) -> list[str]:
    """`pytest benchmarks` on the gated benchmarks, smoke profile, storage under ``storage``."""
    return [
        sys.executable,
        "-m",
        "pytest",
        "benchmarks",
        "-q",
        "-p",
        "benchmarks.inject",
        "-k",
        GATED,
        "--perf-profile",
        "smoke",
        "--perf-thresholds",
        str(thresholds),
        f"--benchmark-storage=file://{storage}",
        *extra,
    ]


def run(command: list[str], inject: str, log: Path) -> int:
    """Run one benchmark session, its output to ``log``; its exit code."""
    env = dict(os.environ, PERF_INJECT=inject, PERF_INJECT_ALONGSIDE="1")
    with log.open("w") as out:
        return subprocess.call(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)


def judge(
    thresholds: gates.Thresholds,
    results: dict[str, dict[str, Any]],
    baseline: dict[str, dict[str, Any]] | None,
    baseline_name: str,
) -> dict[str, list[gates.Failure]]:
    """Per condition, the failed checks of its variant judged as `optimized` would be."""
    verdicts = {}
    for condition, variant in CONDITIONS.items():
        judged = {BASE: results[variant]}
        if condition == "unchanged" and "naive" in results:
            judged["naive"] = results["naive"]
        failures = gates.check_run(thresholds, judged)
        if baseline is not None:
            failures += gates.check_baseline(thresholds, judged, baseline, baseline_name)
        verdicts[condition] = failures
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="trials (default 10)")
    parser.add_argument("--out", type=Path, default=Path("gate-trials"), help="work folder")
    parser.add_argument("--thresholds", type=Path, default=gates.DEFAULT_THRESHOLDS)
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
    args.out.mkdir(parents=True, exist_ok=True)
    storage = args.out / "storage"

    if not saved_runs(storage) and not args.judge_only and not save_baseline(args, storage):
        return 2
    baseline_path = saved_runs(storage)[-1]
    baseline = gates.load_saved_metrics(baseline_path)

    tallies = {condition: Tally() for condition in CONDITIONS}
    variants = ",".join(["naive", *CONDITIONS.values()])
    for trial in range(1, args.runs + 1):
        started = time.monotonic()
        output = args.out / f"trial_{trial:02d}.json"
        if args.judge_only:
            if not output.exists():
                break
        else:
            command = bench_command(
                storage, args.thresholds, "--perf-variants", variants, f"--benchmark-json={output}"
            )
            code = run(command, ",".join(INJECTED), args.out / f"trial_{trial:02d}.log")
            if code not in (0, 1) or not output.exists():
                print(f"error: trial {trial} did not run (exit {code}); see its .log")
                return 2
        infos = (bench.get("extra_info") or {} for bench in read_run(output)["benchmarks"])
        verdicts = judge(thresholds, gates.metrics_by_variant(infos), baseline, baseline_path.name)
        lines = count_verdicts(verdicts, tallies)
        print(
            f"trial {trial} ({time.monotonic() - started:.0f} s): " + "\n".join(lines), flush=True
        )
    return summarize(tallies, args.out)


def save_baseline(args: argparse.Namespace, storage: Path) -> bool:
    """Run naive and optimized once and save the run as the trials' baseline."""
    started = time.monotonic()
    command = bench_command(
        storage, args.thresholds, "--perf-variants", "naive,optimized", "--benchmark-autosave"
    )
    code = run(command, "", args.out / "baseline.log")
    print(f"baseline run: exit {code} in {time.monotonic() - started:.0f} s", flush=True)
    if code not in (0, 1):
        print(f"error: the baseline run failed; see {args.out / 'baseline.log'}")
        return False
    return True


def count_verdicts(
    verdicts: dict[str, list[gates.Failure]], tallies: dict[str, Tally]
) -> list[str]:
    """Add one trial's verdicts to ``tallies``; its lines for the log."""
    lines = []
    for condition, failures in verdicts.items():
        tally = tallies[condition]
        tally.runs += 1
        tally.flagged += bool(failures)
        tally.checks.update(f.metric for f in failures)
        lines.append(f"{condition}: {'FLAGGED' if failures else 'pass'}")
        lines.extend(f"    {failure}" for failure in failures)
    return lines


def summarize(tallies: dict[str, Tally], out: Path) -> int:
    """Print and save the table of trials; 0 when nothing was missed and nothing false."""
    summary = {
        condition: {"runs": t.runs, "flagged": t.flagged, "checks": dict(t.checks)}
        for condition, t in tallies.items()
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n| condition | runs | flagged | checks that fired |\n| --- | --- | --- | --- |")
    for condition, t in tallies.items():
        fired = ", ".join(f"{m} x{n}" for m, n in t.checks.most_common()) or "none"
        print(f"| {condition} | {t.runs} | {t.flagged} | {fired} |")
    alarms = tallies["unchanged"].flagged
    missed = sum(t.runs - t.flagged for c, t in tallies.items() if c != "unchanged")
    print(f"\nfalse alarms: {alarms}/{tallies['unchanged'].runs}; missed regressions: {missed}")
    return 0 if alarms == 0 and missed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
