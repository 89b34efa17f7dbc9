"""Base against head on one machine: did this change make the pipelines slower or worse?

    python -m trials.ab BASE_REF [--rounds 3] [--out ab-runs] [-- PYTEST_ARGS...]

Checks ``BASE_REF`` out into a temporary git worktree and runs the
benchmarks there and here (the working tree, "head") in alternation, ``--rounds``
times each, base first in odd rounds and head first in even ones, as
``asv continuous`` does: a machine whose load drifts during the comparison
drifts for both sides. Each run makes its own interleaved passes; each gated
metric (fraction of the ceiling, final test accuracy, the pipeline's CPU per
example) pools the passes of all rounds per side and is decided by
`benchmarks.judging.decide` with the tolerances of the thresholds file's
``[base_vs_head]`` section and its ``[statistics]``.

One verdict line per variant and metric; exit 1 when any is a regression, 0
otherwise (improvements and inconclusive verdicts included), 2 when a run
could not be made.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks.judging import gates
from benchmarks.judging.compare import compare_with_baseline
from benchmarks.judging.decide import Verdict
from benchmarks.saving.metrics import DECLARED, saved
from pipelines.errors import InputError
from trials.harness import ROOT, RunFailed, run_suite

# What a run measures by default: the timed benchmarks the gated metrics come from.
DEFAULT_ARGS = (
    "-k",
    "test_ceiling or test_training or test_pipeline",
    "--perf-alone",
    "--perf-variants",
    "naive,optimized",
)


class AbError(Exception):
    """A run or a checkout that failed; the message is the one line to print."""


def git(*args: str, cwd: Path = ROOT) -> str:
    """Run git; its output, or `AbError` with git's own complaint."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise AbError(f"git {' '.join(args)}: {detail[-1] if detail else 'failed'}")
    return done.stdout.strip()


@contextlib.contextmanager
def worktree(repo: Path, ref: str) -> Iterator[Path]:
    """``ref`` checked out (detached) in a temporary worktree of ``repo``, removed after."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}", cwd=repo)
    folder = Path(tempfile.mkdtemp(prefix="ab-base-"))
    folder.rmdir()
    git("worktree", "add", "--detach", str(folder), commit, cwd=repo)
    try:
        yield folder
    finally:
        git("worktree", "remove", "--force", str(folder), cwd=repo)
        shutil.rmtree(folder, ignore_errors=True)


def run_once(tree: Path, output: Path, args: Sequence[str], log: Path) -> None:
    """One benchmark run in ``tree`` (its own code on the path), its JSON to ``output``."""
    # One embedded dataset for both sides: generated once, by head's code.
    cache = os.environ.get("TFDATA_PERF_CACHE", str(ROOT / ".cache" / "embedded"))
    env = {"PYTHONPATH": str(tree), "TFDATA_PERF_CACHE": cache}
    try:
        run_suite(args, output, log, cwd=tree, env=env)
    except RunFailed as failed:
        raise AbError(str(failed)) from None


def merged_metrics(outputs: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """Per variant, the gated metrics of several runs, their samples pooled."""
    pooled: dict[str, dict[str, Any]] = {}
    for output in outputs:
        for variant, metrics in gates.load_saved_metrics(output).items():
            into = pooled.setdefault(variant, {})
            for name, value in metrics.items():
                metric = DECLARED.get(name)
                if name not in into or metric is None:
                    into.setdefault(name, value)
                    continue
                # The first run's value and interval; every run's samples.
                first, found = metric.estimate_of(into), metric.estimate_of(metrics)
                samples = (*(first.samples or ()), *(found.samples or ()))
                into[name] = saved(first.value, first.interval, samples or None)
    return pooled


def compare(
    repo: Path,
    base_ref: str,
    rounds: int,
    out: Path,
    args: Sequence[str],
    say: Any = print,
) -> tuple[list[Verdict], list[gates.Failure]]:
    """Run base and head ``rounds`` times each, alternating; the verdicts and failures."""
    thresholds = gates.load_thresholds(repo / "benchmarks" / "thresholds.toml").paired()
    out.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, list[Path]] = {"base": [], "head": []}
    with worktree(repo, base_ref) as base_tree:
        trees = {"base": base_tree, "head": repo}
        for number in range(1, rounds + 1):
            order = ("base", "head") if number % 2 else ("head", "base")
            for side in order:
                started = time.monotonic()
                output = out / f"{side}_{number:02d}.json"
                run_once(trees[side], output, args, out / f"{side}_{number:02d}.log")
                outputs[side].append(output)
                say(f"round {number}: {side} in {time.monotonic() - started:.0f} s")
    base, head = merged_metrics(outputs["base"]), merged_metrics(outputs["head"])
    failures, verdicts = compare_with_baseline(thresholds, head, base, f"base {base_ref}")
    return verdicts, failures


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m trials.ab", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("base", help="the base commit, branch or tag (e.g. origin/main)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side (default 3)")
    parser.add_argument("--out", type=Path, default=Path("ab-runs"), help="runs and logs")
    parser.add_argument("--repo", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.epilog = (
        "After --: pytest's arguments for every run (default: "
        + " ".join(repr(a) if " " in a else a for a in DEFAULT_ARGS)
        + ")."
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    extra = argv[cut + 1 :] or list(DEFAULT_ARGS)
    if args.rounds < 1:
        print("error: --rounds: must be 1 or more", file=sys.stderr)
        return 2
    try:
        verdicts, failures = compare(args.repo, args.base, args.rounds, args.out, extra)
    except (AbError, InputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for verdict in verdicts:
        print(verdict)
    for failure in failures:
        if failure.verdict is None:  # a check without samples: a stage, or an old run
            print(failure)
    if failures:
        print(f"{len(failures)} regression(s); {len(verdicts)} metrics decided")
        return 1
    print(f"no regression; {len(verdicts)} metrics decided")
    return 0


if __name__ == "__main__":
    sys.exit(main())
