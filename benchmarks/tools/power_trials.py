"""How small a slowdown `--perf-against` catches: known slowdowns in a user's pipeline function.

    python -m benchmarks.tools.power_trials --runs 10 --shifts 0,0,0.05,0.10 --out power-trials

It writes a small user project twice, ``base/`` and ``head/``: a plain tf.data
function (shuffle, a parallel augmentation, batch, prefetch) registered with
`pipelines.pipeline` once per shift, as ``mine_<percent>``. In ``head/`` each
copy then waits a fixed time per batch, after its prefetch, so that training
through it is that fraction slower; ``base/`` has no wait. The wait is set from
a calibration run made first (the seconds a steady batch takes here, saved in
``calibration.json``). Each trial is then one run as a user makes it,
``pytest benchmarks --perf-plugin head/user_pipelines.py --perf-against base``,
every shift's pair in it, and each pair is judged as that run judges it
(`benchmarks.judging.gates.compare_pairs`: the steady state from the alternated
epochs). A shift of 0 is unchanged code: a flagged one is a false alarm.

The table gives, per shift, the pairs flagged with a 95% Wilson interval, and
the smallest shift flagged in at least 9 of 10.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from scipy import stats

from benchmarks.judging import gates
from benchmarks.measuring.alternation import ALTERNATED
from benchmarks.tools.gate_trials import Tally

ROOT = Path(__file__).resolve().parents[2]
PROJECT = '''"""A user's pipeline function, once per shift (by benchmarks.tools.power_trials)."""
import tensorflow as tf
from tensorflow.python.data.experimental.ops.testing import sleep

import pipelines
from pipelines import BuildParams, Contract

# Shift name -> the wait per batch, in microseconds (0 at the base).
WAIT_US = {waits!r}


def augment(image, label):
    image = tf.image.random_flip_left_right(image)
    image = tf.image.random_brightness(image, 0.1)
    return tf.clip_by_value(image, 0.0, 1.0), label


def make(name, wait_us):
    @pipelines.pipeline(Contract(shuffle="elements", drop_remainder=True), name=name)
    def pipeline(ds, params: BuildParams):
        ds = ds.shuffle(params.shuffle_buffer, seed=params.seed)
        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(params.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
        return ds.apply(sleep(wait_us)) if wait_us else ds

    return pipeline


for shift_name, wait_us in WAIT_US.items():
    make(shift_name, wait_us)
'''
PLUGIN = "user_pipelines.py"
# Steady state is decided from the alternated epochs, which follow the passes: one
# pass is enough (the full-epoch and accuracy checks then cannot decide: not judged here).
ONE_PASS = ("--perf-passes", "1")


def shift_names(shifts: list[float]) -> list[str]:
    """``mine_5`` for a 5% slowdown; a shift asked again gets a letter (``mine_0b``), so
    that one run can hold several unchanged pairs."""
    names: list[str] = []
    for shift in shifts:
        name = "mine_" + f"{shift * 100:g}".replace(".", "_")
        again = sum(other.rstrip("bcdefghij") == name for other in names)
        names.append(name + "abcdefghij"[again] if again else name)
    return names


def write_project(folder: Path, waits: dict[str, int]) -> Path:
    """The user's plugin file in ``folder``, registering one pipeline per shift."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PLUGIN
    path.write_text(PROJECT.replace("{waits!r}", repr(waits)))
    return path


def bench(out: Path, names: list[str], log: Path, *extra: str) -> dict:
    """One `--perf-against` run of ``names`` (head/ against base/): its saved figures."""
    output = log.with_suffix(".json")
    command = [sys.executable, "-m", "pytest", str(ROOT / "benchmarks"), "-q"]
    command += ["-p", "no:cacheprovider", "-k", "test_training"]
    command += ["--perf-plugin", str(out / "head" / PLUGIN), "--perf-against", str(out / "base")]
    command += ["--perf-variants", ",".join(names), f"--benchmark-json={output}", *extra]
    with log.open("w") as written:
        code = subprocess.call(command, stdout=written, stderr=subprocess.STDOUT, cwd=out)
    if code not in (0, 1) or not output.exists():
        raise SystemExit(f"error: the run did not finish (exit {code}); see {log}")
    return gates.load_saved_metrics(output)


def calibrate(out: Path, batch_size: int) -> float:
    """Seconds a steady batch takes through the unchanged pipeline (saved in --out)."""
    saved = out / "calibration.json"
    if saved.exists():
        return json.loads(saved.read_text())["batch_s"]
    write_project(out / "base", {"mine_0": 0})
    write_project(out / "head", {"mine_0": 0})
    metrics = bench(out, ["mine_0"], out / "calibration.log", *ONE_PASS, "--perf-epoch-pairs", "6")
    rate = statistics.median(metrics["mine_0"]["samples"][ALTERNATED])
    batch_s = batch_size / rate
    saved.write_text(json.dumps({"batch_s": batch_s, "examples_per_s": rate}))
    return batch_s


def waits_for(shifts: list[float], batch_s: float) -> dict[str, int]:
    """Per shift, the wait per batch (microseconds) that makes training that much slower:
    a batch taking ``batch_s`` plus ``w`` runs at ``1 - shift`` of the rate for
    ``w = batch_s * shift / (1 - shift)``."""
    waits = (round(1e6 * batch_s * s / (1 - s)) for s in shifts)
    return dict(zip(shift_names(shifts), waits, strict=True))


def judge(thresholds: gates.Thresholds, metrics: dict, names: list[str]) -> dict[str, Trial]:
    """Per shift, what its run said of the head against its base."""
    pairs = {name: metrics[name]["alternation"]["base"] for name in names if name in metrics}
    failures, _ = gates.compare_pairs(thresholds, metrics, pairs)
    flagged = {failure.variant for failure in failures}
    found = {}
    for name, base in pairs.items():
        head_rates, base_rates = (
            metrics[name]["samples"][ALTERNATED],
            metrics[base]["samples"][ALTERNATED],
        )
        logs = [math.log(h / b) for h, b in zip(head_rates, base_rates, strict=True)]
        found[name] = Trial(name in flagged, statistics.fmean(logs))
    return found


class Trial(NamedTuple):
    """One pair in one trial run: flagged or not, and the mean log ratio head/base it measured."""

    flagged: bool
    log_change: float


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="trials (default 3)")
    parser.add_argument(
        "--shifts",
        type=lambda text: [float(s) for s in text.split(",") if s.strip()],
        default=[0.0, 0.0, 0.05, 0.10],
        help="slowdowns to inject, fractions; one asked twice is measured twice in a run"
        " (default 0,0,0.05,0.10: two unchanged pairs)",
    )
    parser.add_argument("--out", type=Path, default=Path("power-trials"), help="work folder")
    parser.add_argument("--thresholds", type=Path, default=gates.DEFAULT_THRESHOLDS)
    parser.add_argument("--batch-size", type=int, default=64, help="the profile's (smoke: 64)")
    parser.add_argument(
        "--judge-only", action="store_true", help="run nothing: judge the trials in --out again"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    args = parse_args(argv)
    if any(not 0 <= s < 1 for s in args.shifts):
        print("error: --shifts: each must be at least 0 and below 1", file=sys.stderr)
        return 2
    args.out = args.out.resolve()
    names = shift_names(args.shifts)
    thresholds = gates.load_thresholds(args.thresholds)
    found: dict[str, list[Trial]] = {name: [] for name in names}
    if args.judge_only:
        for output in sorted(args.out.glob("trial_*.json")):
            for name, trial in judge(thresholds, gates.load_saved_metrics(output), names).items():
                found[name].append(trial)
        return summarize(found, args)
    batch_s = calibrate(args.out, args.batch_size)
    waits = waits_for(args.shifts, batch_s)
    write_project(args.out / "base", dict.fromkeys(waits, 0))
    write_project(args.out / "head", waits)
    print(f"calibration: a steady batch takes {batch_s * 1e3:.1f} ms; waits (us): {waits}")
    for number in range(1, args.runs + 1):
        started = time.monotonic()
        metrics = bench(args.out, names, args.out / f"trial_{number:02d}.log", *ONE_PASS)
        verdicts = judge(thresholds, metrics, names)
        for name, trial in verdicts.items():
            found[name].append(trial)
        shown = ", ".join(
            f"{n} {math.expm1(t.log_change):+.1%} {'FLAGGED' if t.flagged else 'pass'}"
            for n, t in verdicts.items()
        )
        print(f"trial {number} ({time.monotonic() - started:.0f} s): {shown}", flush=True)
    return summarize(found, args)


def measured(trials: list[Trial]) -> str:
    """The change the trials measured together: mean over trials, 95% t interval."""
    logs = [t.log_change for t in trials]
    if len(logs) < 2:
        return "?"
    mean = statistics.fmean(logs)
    margin = stats.t.ppf(0.975, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    low, high = math.expm1(mean - margin), math.expm1(mean + margin)
    return f"{math.expm1(mean):+.1%} [{low:+.1%}, {high:+.1%}]"


def summarize(found: dict[str, list[Trial]], args: argparse.Namespace) -> int:
    """Print and save the table; 0 always (a table, not a gate)."""
    print(
        "\n| slowdown injected | pair | change measured, all trials [95%] | flagged [95% Wilson] |"
        "\n| --- | --- | --- | --- |"
    )
    rows = {}
    for shift, (name, trials) in zip(args.shifts, found.items(), strict=True):
        tally = Tally(sum(t.flagged for t in trials), len(trials))
        rows[name] = {"shift": shift, "runs": tally.runs, "flagged": tally.flagged}
        print(f"| {shift:.1%} | {name} | {measured(trials)} | {tally.rate()} |")
    unchanged = [t for s, ts in zip(args.shifts, found.values(), strict=True) if s == 0 for t in ts]
    alarms = Tally(sum(t.flagged for t in unchanged), len(unchanged))
    print(f"false alarms on unchanged code: {alarms.rate()}")
    (args.out / "summary.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
