"""`python -m trials.ab`: base and head alternated on one machine, decided per metric."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from bench_runner import ROOT

# A repository of two commits whose "benchmark" saves what the suite's training
# benchmark saves of a variant: its fraction of the ceiling, one value per pass.
BENCHMARK = textwrap.dedent(
    """
    import pathlib

    LEVEL = float(pathlib.Path(__file__).with_name("level.txt").read_text())


    def test_training(benchmark):
        benchmark.pedantic(lambda: None, rounds=1)
        passes = [LEVEL * (1 + 0.01 * k) for k in range(-3, 4)]
        benchmark.extra_info.update(
            kind="training",
            variant="optimized",
            fraction_of_ceiling=LEVEL,
            samples={"fraction_of_ceiling": passes},
        )
    """
)
THRESHOLDS = '[base_vs_head]\nmax_throughput_drop = 0.1\n[statistics]\ntest = "mann-whitney"\n'


def commit(repo, level: str, message: str) -> None:
    (repo / "benchmarks" / "level.txt").write_text(level)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "--allow-empty",
            "-qm",
            message,
        ],
        cwd=repo,
        check=True,
    )


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "benchmarks").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "benchmarks" / "__init__.py").write_text("")
    (repo / "benchmarks" / "test_level.py").write_text(BENCHMARK)
    (repo / "benchmarks" / "thresholds.toml").write_text(THRESHOLDS)
    commit(repo, "0.60", "base")
    return repo


def ab(repo, tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "trials.ab", *args, "--repo", str(repo)]
    command += ["--out", str(tmp_path / "runs"), "--", "-p", "no:randomly"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)


def test_a_slower_head_is_a_regression_in_one_line_per_metric(repo, tmp_path):
    commit(repo, "0.45", "head: 25% slower")
    done = ab(repo, tmp_path, "HEAD~1", "--rounds", "2")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    # Alternated: base first in round 1, head first in round 2.
    rounds = [line.split(" in ")[0] for line in lines if line.startswith("round")]
    assert rounds == ["round 1: base", "round 1: head", "round 2: head", "round 2: base"]
    (verdict,) = [line for line in lines if "fraction_of_ceiling" in line]
    assert verdict.startswith("regression: optimized fraction_of_ceiling: baseline 0.6")
    assert "n=14, now 0.45" in verdict and "change -25.0%" in verdict
    assert "mann-whitney p=" in verdict and "tolerance -10%" in verdict
    assert "[base_vs_head] max_throughput_drop" in verdict and "base HEAD~1" in verdict
    assert lines[-1] == "1 regression(s); 1 metrics decided"
    # The temporary worktree is gone.
    listed = subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True)
    assert len(listed.stdout.strip().splitlines()) == 1


def test_an_unchanged_head_passes_and_a_bad_ref_is_one_line(repo, tmp_path):
    commit(repo, "0.60", "head: the same speed")  # a new commit, nothing slower
    done = ab(repo, tmp_path, "HEAD~1", "--rounds", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok: optimized fraction_of_ceiling" in done.stdout
    assert done.stdout.splitlines()[-1] == "no regression; 1 metrics decided"
    done = ab(repo, tmp_path, "no-such-branch")
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]  # after TensorFlow's start-up lines
    assert last.startswith("error: git rev-parse --verify no-such-branch^{commit}: ")
    assert "Traceback" not in done.stderr
