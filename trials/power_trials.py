"""How small a loss `--perf-against` catches: known losses in a user's pipeline function.

    python -m trials.power_trials --runs 10 --shifts 0,0,0.05,0.10 --out power-trials
    python -m trials.power_trials --loss accuracy --shifts 0,0,0.1,0.2 --out acc-trials

It writes a small user project twice, ``base/`` and ``head/``: a plain tf.data
function (shuffle, a parallel augmentation, batch, prefetch) registered with
`pipelines.pipeline` once per shift, as ``mine_<percent>``. ``base/`` is that
function unchanged; in ``head/`` each copy carries its loss:

- ``--loss speed`` (default): it waits a fixed time per batch, after its prefetch,
  so that training through it is that fraction slower. The wait is set from a
  calibration run made first (the seconds a steady batch takes here, saved in
  ``calibration.json``). Judged on the steady state, from the alternated epochs.
- ``--loss accuracy``: it gives that fraction of the training examples a wrong
  label (the next class), drawn anew each epoch. Judged on the test accuracy,
  pass by pass (each pass its own seed).

Each trial is one run as a user makes it,
``pytest benchmarks --perf-plugin head/user_pipelines.py --perf-against base``,
every shift's pair in it, and each pair is judged as that run judges it
(`benchmarks.judging.compare.compare_pairs`). A shift of 0 is unchanged code: a
flagged one is a false alarm.

The table gives, per shift, the change all the trials measured together (with
its interval) and the pairs flagged with a 95% Wilson interval.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

from scipy import stats

from benchmarks.judging import compare, gates
from benchmarks.saving.metrics import ALTERNATED, EXAMPLES_PER_S, TEST_ACCURACY
from trials.gate_trials import Tally
from trials.harness import ROOT, RunFailed, run_suite

PROJECT = '''"""A user's pipeline function, once per shift (by trials.power_trials)."""
import tensorflow as tf
from tensorflow.python.data.experimental.ops.testing import sleep

import pipelines
from pipelines import BuildParams, Contract

# Shift name -> the wait per batch, in microseconds, and the fraction of wrong labels
# (0 at the base).
WAIT_US = {waits!r}
RELABEL = {relabels!r}


def augmentation(params):
    def augment(image, label):
        image = tf.image.random_flip_left_right(image, seed=params.seed)
        image = tf.image.random_brightness(image, 0.1, seed=params.seed)
        return tf.clip_by_value(image, 0.0, 1.0), label

    return augment


def mislabel(fraction, params):
    def apply(image, label):
        wrong = tf.random.uniform([], seed=params.seed) < fraction
        return image, tf.where(wrong, (label + 1) % params.num_classes, label)

    return apply


def make(name, wait_us, relabel):
    @pipelines.pipeline(Contract(shuffle="elements", drop_remainder=True), name=name)
    def pipeline(ds, params: BuildParams):
        ds = ds.shuffle(params.shuffle_buffer, seed=params.seed)
        ds = ds.map(augmentation(params), num_parallel_calls=tf.data.AUTOTUNE)
        if relabel:
            ds = ds.map(mislabel(relabel, params), num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(params.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
        return ds.apply(sleep(wait_us)) if wait_us else ds

    return pipeline


for shift_name, wait_us in WAIT_US.items():
    make(shift_name, wait_us, RELABEL.get(shift_name, 0))
'''
PLUGIN = "user_pipelines.py"
# Steady state is decided from the alternated epochs, which follow the passes: one
# pass is enough (the full-epoch and accuracy checks then cannot decide: not judged here).
ONE_PASS = ("--perf-passes", "1")
# Accuracy is decided pass by pass: the run's own passes, and the fewest alternated rounds.
ACCURACY_RUN = ("--perf-epoch-pairs", "2")
# Per loss: the metric judged, and whether its change is a ratio (logged) or a difference.
JUDGED = {"speed": (ALTERNATED, True), "accuracy": (TEST_ACCURACY, False)}


def shift_names(shifts: list[float]) -> list[str]:
    """``mine_5`` for a 5% slowdown; a shift asked again gets a letter (``mine_0b``), so
    that one run can hold several unchanged pairs."""
    names: list[str] = []
    for shift in shifts:
        name = "mine_" + f"{shift * 100:g}".replace(".", "_")
        again = sum(other.rstrip("bcdefghij") == name for other in names)
        names.append(name + "abcdefghij"[again] if again else name)
    return names


def write_project(
    folder: Path, waits: dict[str, int], relabels: dict[str, float] | None = None
) -> Path:
    """The user's plugin file in ``folder``, registering one pipeline per shift."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PLUGIN
    text = PROJECT.replace("{waits!r}", repr(waits)).replace("{relabels!r}", repr(relabels or {}))
    path.write_text(text)
    return path


def bench(out: Path, names: list[str], log: Path, *extra: str) -> dict:
    """One `--perf-against` run of ``names`` (head/ against base/): its saved figures."""
    output = log.with_suffix(".json")
    # No per-test time limit: a trial of many pairs and passes outlasts the test suite's.
    args = ["-o", "timeout=0", "-k", "test_training"]
    args += ["--perf-plugin", str(out / "head" / PLUGIN), "--perf-against", str(out / "base")]
    args += ["--perf-variants", ",".join(names), *extra]
    try:
        run_suite(args, output, log, cwd=out, suite=str(ROOT / "benchmarks"))
    except RunFailed as failed:
        raise SystemExit(f"error: {failed}") from None
    return gates.load_saved_metrics(output)


def read_calibration(path: Path) -> float:
    """The steady batch's seconds a ``calibration.json`` holds; one line naming the file
    (SystemExit) when it is missing or not one."""
    try:
        batch_s = json.loads(path.read_text())["batch_s"]
    except FileNotFoundError:
        raise SystemExit(f"error: {path}: calibration file does not exist") from None
    except (ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"error: {path}: not a calibration file ({error!r})") from None
    if not isinstance(batch_s, int | float) or not batch_s > 0:
        raise SystemExit(f"error: {path}: batch_s must be positive (seconds), got {batch_s!r}")
    return float(batch_s)


def calibrate(out: Path, batch_size: int, given: Path | None = None) -> float:
    """Seconds a steady batch takes through the unchanged pipeline (saved in --out).

    ``given``: an earlier series' ``calibration.json``, copied into --out and used
    instead of measuring, so that new trials extend that series with the same waits.
    """
    saved = out / "calibration.json"
    if given is not None:
        batch_s = read_calibration(given)
        out.mkdir(parents=True, exist_ok=True)
        if given.resolve() != saved.resolve():
            saved.write_text(given.read_text())
        return batch_s
    if saved.exists():
        return read_calibration(saved)
    write_project(out / "base", {"mine_0": 0})
    write_project(out / "head", {"mine_0": 0})
    metrics = bench(out, ["mine_0"], out / "calibration.log", *ONE_PASS, "--perf-epoch-pairs", "6")
    rate = statistics.median(ALTERNATED.samples_of(metrics["mine_0"]) or [])
    batch_s = batch_size / rate
    saved.write_text(json.dumps({"batch_s": batch_s, EXAMPLES_PER_S.name: rate}))
    return batch_s


def waits_for(shifts: list[float], batch_s: float) -> dict[str, int]:
    """Per shift, the wait per batch (microseconds) that makes training that much slower:
    a batch taking ``batch_s`` plus ``w`` runs at ``1 - shift`` of the rate for
    ``w = batch_s * shift / (1 - shift)``."""
    waits = (round(1e6 * batch_s * s / (1 - s)) for s in shifts)
    return dict(zip(shift_names(shifts), waits, strict=True))


def judge(
    thresholds: gates.Thresholds, metrics: dict, names: list[str], loss: str = "speed"
) -> dict[str, PairTrial]:
    """Per shift, what its run said of the head against its base on ``loss``'s metric."""
    metric, ratio = JUDGED[loss]
    pairs = {name: metrics[name]["alternation"]["base"] for name in names if name in metrics}
    failures, _ = compare.compare_pairs(thresholds, metrics, pairs)
    flagged = {failure.variant for failure in failures if failure.metric == metric.name}
    found = {}
    for name, base in pairs.items():
        head, then = metric.samples_of(metrics[name]) or [], metric.samples_of(metrics[base]) or []
        moved = [math.log(h / b) if ratio else h - b for h, b in zip(head, then, strict=True)]
        found[name] = PairTrial(name in flagged, statistics.fmean(moved))
    return found


class PairTrial(NamedTuple):
    """One pair in one trial run: flagged or not, and the change head/base it measured (the
    mean log ratio, or the mean difference for accuracy)."""

    flagged: bool
    change: float


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="trials (default 3)")
    parser.add_argument(
        "--loss",
        choices=sorted(JUDGED),
        default="speed",
        help="speed: a wait per batch (shifts: the slowdown); accuracy: wrong labels"
        " (shifts: the fraction of training examples mislabelled). Default: speed",
    )
    parser.add_argument(
        "--shifts",
        type=lambda text: [float(s) for s in text.split(",") if s.strip()],
        default=[0.0, 0.0, 0.05, 0.10],
        help="losses to inject, fractions; one asked twice is measured twice in a run"
        " (default 0,0,0.05,0.10: two unchanged pairs)",
    )
    parser.add_argument("--out", type=Path, default=Path("power-trials"), help="work folder")
    parser.add_argument("--thresholds", type=Path, default=gates.DEFAULT_THRESHOLDS)
    parser.add_argument("--batch-size", type=int, default=64, help="the profile's (smoke: 64)")
    parser.add_argument(
        "--passes",
        type=int,
        default=None,
        help="with --loss accuracy: passes each trial makes (default: as the run decides)",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        default=None,
        help="with --loss speed: an earlier series' calibration.json, used (and copied into"
        " --out) instead of measuring, so new trials extend that series with the same waits",
    )
    parser.add_argument(
        "--judge-only", action="store_true", help="run nothing: judge the trials in --out again"
    )
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace, names: list[str]) -> tuple[str, ...]:
    """Write base/ and head/ for ``args.loss``; the extra arguments each trial run takes."""
    if args.loss == "accuracy":
        relabels = dict(zip(names, args.shifts, strict=True))
        write_project(args.out / "base", dict.fromkeys(names, 0))
        write_project(args.out / "head", dict.fromkeys(names, 0), relabels)
        print(f"wrong labels (fraction of training examples): {relabels}")
        return (*ACCURACY_RUN, *(("--perf-passes", str(args.passes)) if args.passes else ()))
    batch_s = calibrate(args.out, args.batch_size, args.calibration)
    waits = waits_for(args.shifts, batch_s)
    write_project(args.out / "base", dict.fromkeys(waits, 0))
    write_project(args.out / "head", waits)
    print(f"calibration: a steady batch takes {batch_s * 1e3:.1f} ms; waits (us): {waits}")
    return ONE_PASS


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    args = parse_args(argv)
    if any(not 0 <= s < 1 for s in args.shifts):
        print("error: --shifts: each must be at least 0 and below 1", file=sys.stderr)
        return 2
    args.out = args.out.resolve()
    names = shift_names(args.shifts)
    thresholds = gates.load_thresholds(args.thresholds)
    found: dict[str, list[PairTrial]] = {name: [] for name in names}
    if args.judge_only:
        for output in sorted(args.out.glob("trial_*.json")):
            metrics = gates.load_saved_metrics(output)
            for name, trial in judge(thresholds, metrics, names, args.loss).items():
                found[name].append(trial)
        return summarize(found, args)
    extra = prepare(args, names)
    for number in range(1, args.runs + 1):
        started = time.monotonic()
        metrics = bench(args.out, names, args.out / f"trial_{number:02d}.log", *extra)
        verdicts = judge(thresholds, metrics, names, args.loss)
        for name, trial in verdicts.items():
            found[name].append(trial)
        shown = ", ".join(
            f"{n} {shown_change(t.change, args.loss)} {'FLAGGED' if t.flagged else 'pass'}"
            for n, t in verdicts.items()
        )
        print(f"trial {number} ({time.monotonic() - started:.0f} s): {shown}", flush=True)
    return summarize(found, args)


def shown_change(change: float, loss: str) -> str:
    """A measured change as printed: a percentage for a log ratio, points of accuracy else."""
    return f"{math.expm1(change):+.1%}" if JUDGED[loss][1] else f"{change:+.3f}"


def measured(trials: list[PairTrial], loss: str = "speed") -> str:
    """The change the trials measured together: mean over trials, 95% t interval."""
    changes = [t.change for t in trials]
    if len(changes) < 2:
        return "?"
    mean = statistics.fmean(changes)
    spread = statistics.stdev(changes) / math.sqrt(len(changes))
    margin = stats.t.ppf(0.975, len(changes) - 1) * spread
    low, high = (shown_change(x, loss) for x in (mean - margin, mean + margin))
    return f"{shown_change(mean, loss)} [{low}, {high}]"


def summarize(found: dict[str, list[PairTrial]], args: argparse.Namespace) -> int:
    """Print and save the table; 0 always (a table, not a gate)."""
    injected = "slowdown" if args.loss == "speed" else "wrong labels"
    print(
        f"\n| {injected} injected | pair | change measured, all trials [95%]"
        " | flagged [95% Wilson] |\n| --- | --- | --- | --- |"
    )
    rows = {}
    for shift, (name, trials) in zip(args.shifts, found.items(), strict=True):
        tally = Tally(sum(t.flagged for t in trials), len(trials))
        rows[name] = {"shift": shift, "runs": tally.runs, "flagged": tally.flagged}
        print(f"| {shift:.1%} | {name} | {measured(trials, args.loss)} | {tally.rate()} |")
    unchanged = [t for s, ts in zip(args.shifts, found.values(), strict=True) if s == 0 for t in ts]
    alarms = Tally(sum(t.flagged for t in unchanged), len(unchanged))
    print(f"false alarms on unchanged code: {alarms.rate()}")
    (args.out / "summary.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
