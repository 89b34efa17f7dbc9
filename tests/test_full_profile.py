"""The `full` job's code path (`python3 tasks.py full`, meant for a GPU), at a tiny scale on
the CPU: its profile, its model (the lab's ``cifar_cnn_bn``), timed passes, the saved run
and the report, so that the command works the first time a GPU is at hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from bench_runner import ROOT

import tasks
from pipelines import sources
from pipelines.data.synthetic import CLASS_NAMES, make_examples


def test_the_full_job_runs_end_to_end_on_a_slice_of_cifar_size_data(tmp_path: Path):
    images, labels = make_examples(seed=2, split="train", count=300)
    train = (np.stack(images), labels)
    test = (train[0][:100], train[1][:100])
    sources.write_cifar_folder(tmp_path / "cifar", train, test, CLASS_NAMES)
    (tmp_path / "thresholds.toml").write_text("[defaults]\n")
    report = tmp_path / "full.html"
    # The job's own command line, with a slice of data, one pass of one epoch, and
    # its outputs under tmp_path (later options override the job's).
    command = tasks.job_command(
        "full",
        Path(sys.executable),
        [
            *("-q", "-p", "no:cacheprovider", "-k", "test_training or test_ceiling"),
            *("--perf-data", str(tmp_path / "cifar"), "--perf-latency", "none"),
            *("--perf-variants", "naive,optimized", "--perf-passes", "1", "--perf-epochs", "1"),
            *("--perf-thresholds", str(tmp_path / "thresholds.toml")),
            *("--perf-report", str(report), "--benchmark-storage", f"file://{tmp_path}/saved"),
        ],
    )
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (saved,) = (tmp_path / "saved").rglob("*.json")
    run = json.loads(saved.read_text())
    assert run["machine_info"]["perf_profile"] == "full"
    infos = {b["extra_info"]["variant"]: b["extra_info"] for b in run["benchmarks"]}
    assert set(infos) == {"ceiling", "naive", "optimized"}
    optimized = infos["optimized"]
    assert optimized["model"] == "cifar_cnn_bn" and optimized["batch_size"] == 128
    # Start-up and steady state are figures of the run, as in the smoke profile.
    assert optimized["first_batch_s"]["value"] > 0
    assert optimized["steady_examples_per_s"]["value"] > 0
    assert "steady state:" in done.stdout and report.is_file()
