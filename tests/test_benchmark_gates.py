"""End to end: the benchmarks pass their gates unchanged and fail them on injected regressions."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from bench_runner import NO_ACCURACY_FLOOR, run_benchmarks

# The speedup gate alone: one epoch (accuracy after it is not judged), no ceiling.
SPEEDUP_ONLY = NO_ACCURACY_FLOOR + "\n[variants.optimized]\nmin_speedup = 1.3\n"

# A minute or more in all: the test job starts this module first (conftest.py).
pytestmark = pytest.mark.slow


def gate_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stdout.splitlines() if line.startswith("GATE FAILED")]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """An unchanged run, saved: it must pass every gate."""
    tmp_path = tmp_path_factory.mktemp("bench")
    done = run_benchmarks(tmp_path, "--benchmark-autosave", "--perf-device", "stand-in")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "all gates passed (naive, optimized)" in done.stdout
    assert "measurements: 2 interleaved passes (as asked), 95% intervals" in done.stdout
    saved = list((tmp_path / "storage").glob("*/0001_*.json"))
    assert len(saved) == 1
    return tmp_path


def test_the_unchanged_suite_passes_and_saves_the_ratios(baseline):
    saved = json.loads(next((baseline / "storage").glob("*/0001_*.json")).read_text())
    infos = {b["extra_info"]["variant"]: b["extra_info"] for b in saved["benchmarks"]}
    assert set(infos) == {"ceiling", "naive", "optimized"}
    optimized = infos["optimized"]
    for key in (
        "examples_per_s",
        "test_accuracy",
        "input_bound",
        "speedup_over_naive",
        "fraction_of_ceiling",
        "epoch_times_s",
        "train_accuracy",
        "device",
        "dataset",
    ):
        assert key in optimized, key
    assert len(optimized["epoch_times_s"]) == 2
    assert saved["machine_info"]["tensorflow"].startswith("2.")
    # Two interleaved passes: one round each, ratios paired with their intervals.
    passes = saved["perf_passes"]
    assert passes["passes"] == 2 and len(passes["orders"]) == 2
    # Timed on the stand-in device, each beside its real training for accuracy.
    twins = ["accuracy:ceiling", "accuracy:naive", "accuracy:optimized"]
    assert sorted(passes["orders"][0]) == [*twins, "ceiling:ceiling", "naive", "optimized"]
    assert optimized["device"].startswith("stand-in 2.00 ms a step")
    assert "not measured" in optimized["step_time_origin"]
    assert optimized["accuracy_device"]  # "CPU", or the GPU real training ran on
    assert len(optimized["test_accuracy"]["samples"]) == 2
    for bench in saved["benchmarks"]:
        assert bench["stats"]["rounds"] == 2, bench["name"]
    for key in ("speedup_over_naive", "fraction_of_ceiling", "epoch_s"):
        low, high = optimized[key]["ci"]
        assert low <= optimized[key]["value"] <= high, key


def test_a_slowed_stage_fails_the_speedup_gate(baseline):
    # One epoch in one pass: the delay is far beyond the limit, no interval is needed.
    done = run_benchmarks(
        baseline,
        *("--perf-epochs", "1", "--perf-passes", "1"),
        inject="delay",
        select="test_training",
        thresholds_text=SPEEDUP_ONLY,
    )
    assert done.returncode == 1
    lines = gate_lines(done)
    assert len(lines) == 1, done.stdout[-3000:]
    assert lines[0].startswith("GATE FAILED optimized: speedup_over_naive = ")
    assert "limit >= 1.3 (from " in lines[0] and "[variants.optimized] min_speedup)" in lines[0]


def test_wrongly_paired_labels_fail_the_accuracy_gates(baseline):
    # The accuracy gates need no ceiling.
    # One pass: too few for the test against the baseline's two, so the single values
    # decide, as they do for a baseline saved without samples.
    done = run_benchmarks(
        baseline,
        *("--perf-baseline", "latest", "--perf-passes", "1"),
        inject="mislabel",
        select="test_training",
    )
    assert done.returncode == 1
    lines = gate_lines(done)
    assert any(
        line.startswith("GATE FAILED optimized: test_accuracy = ")
        and "[defaults] min_test_accuracy)" in line
        for line in lines
    ), lines
    assert any("max_accuracy_drop, baseline " in line and "0001_" in line for line in lines), lines
    assert not any(line.startswith("GATE FAILED naive") for line in lines)


def test_an_unknown_variant_option_is_one_line(tmp_path):
    done = run_benchmarks(tmp_path, "--perf-variants", "naive,turbo")
    assert done.returncode == 4
    assert "ERROR: --perf-variants: unknown variant 'turbo'; known variants: naive," in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_a_broken_baseline_file_is_one_line_and_left_alone(tmp_path):
    broken = tmp_path / "0001_broken.json"
    broken.write_text("{not json")
    done = run_benchmarks(tmp_path, "--perf-baseline", str(broken))
    assert done.returncode == 4
    assert f"ERROR: {broken}: saved run is not valid JSON" in done.stderr
    assert broken.read_text() == "{not json"
