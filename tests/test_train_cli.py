"""`python -m models.train`: a per-epoch table, and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from bench_runner import ROOT, run_main, small_data

from models import train


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The command as a user types it, on the small embedded set's ``--data`` unless given."""
    data = () if "--data" in args else ("--data", str(small_data()))
    command = [sys.executable, "-m", "models.train", *data, *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT)


def run_here(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """`models.train.main` in this process: for input it refuses before training."""
    return run_main(capsys, train.main, *args)


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    """Our one-line error: the last line on stderr (TensorFlow's own start-up lines come first)."""
    assert "Traceback" not in done.stderr
    return done.stderr.strip().splitlines()[-1]


def test_prints_a_row_per_epoch_and_a_total():
    done = run("--variant", "optimized", "--epochs", "2", "--latency", "remote")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("variant  optimized: interleave -> ")
    assert "latency open=5ms,read=0.1ms" in lines[1]
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["epoch", "wall", "s"])
    rows = [line.split() for line in lines[header + 1 : header + 3]]
    assert [row[0] for row in rows] == ["1", "2"]
    assert all(row[3].endswith("%") and 0 <= float(row[5]) <= 1 for row in rows)
    assert lines[-1].startswith("total ")


def test_an_unknown_variant_is_one_line_listing_the_known_ones(capsys):
    done = run_here(capsys, "--variant", "turbo")
    assert done.returncode == 2
    assert error_line(done).startswith(
        "error: variant 'turbo': unknown variant; known variants: naive,"
    )


def test_a_missing_data_path_is_one_line(capsys):
    done = run_here(capsys, "--data", "/nonexistent/cifar")
    assert done.returncode == 2
    assert error_line(done) == "error: /nonexistent/cifar: does not exist"


def test_the_image_size_reaches_the_model_and_a_bad_one_is_one_line(capsys):
    cifar = str(small_data("cifar"))
    done = run("--variant", "naive", "--epochs", "1", "--data", cifar, "--image-size", "24")
    assert done.returncode == 0, done.stderr
    assert "on 24x24x3 images" in done.stdout.splitlines()[2]
    done = run_here(capsys, "--image-size", "24x")
    assert done.returncode == 2
    assert error_line(done) == (
        "error: --image-size: '24x' is not an image size (N or HxW, e.g. 24 or 24x32)"
    )
