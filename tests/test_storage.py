"""Saved runs and reports are written whole or not at all, never over one another."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bench_runner import NO_ACCURACY_FLOOR, ROOT, fingerprint, small_data, suite_command

from benchmarks.saving import storage
from benchmarks.saving.bench_adapter import check_version

# A minute or more in all: the test job starts this module first (conftest.py).
pytestmark = pytest.mark.slow

# Stops a writer after its data is written and before it is renamed into place.
KILL_POINT = """
import os, sys, time
from pathlib import Path
from benchmarks.saving import storage
ready = Path(sys.argv[2])
def stall(fd):
    ready.write_text("writing")
    time.sleep(60)
os.fsync = stall
target = Path(sys.argv[1])
if sys.argv[3] == "run":
    storage.write_new_run(target.parent, "new", '{"benchmarks": []}' * 100000)
else:
    storage.write_atomic(target, "<html>new</html>" * 100000)
"""


def killed_mid_write(tmp_path: Path, target: Path, kind: str) -> None:
    ready = tmp_path / "ready"
    writer = subprocess.Popen(
        [sys.executable, "-c", KILL_POINT, str(target), str(ready), kind], cwd=ROOT
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert writer.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    writer.kill()
    writer.wait()


def test_a_report_killed_mid_write_leaves_the_previous_one(tmp_path):
    report = tmp_path / "perf.html"
    report.write_text("<html>old</html>")
    killed_mid_write(tmp_path, report, "report")
    assert report.read_text() == "<html>old</html>"


def test_a_run_killed_mid_save_leaves_the_saved_runs_and_no_torn_file(tmp_path):
    folder = tmp_path / "storage" / "Linux-CPython-3.11-64bit"
    folder.mkdir(parents=True)
    (folder / "0001_old.json").write_text(json.dumps({"benchmarks": []}))
    before = fingerprint(folder)
    killed_mid_write(tmp_path, folder / "0002_new.json", "run")
    # Only a hidden temporary is left beside the runs; nothing reads it as one.
    assert {k: v for k, v in fingerprint(folder).items() if not k.startswith(".")} == before
    assert storage.saved_runs(tmp_path / "storage") == [folder / "0001_old.json"]


def test_two_benchmark_runs_finishing_together_both_save_whole(tmp_path):
    store = tmp_path / "storage"
    thresholds = tmp_path / "thresholds.toml"
    thresholds.write_text(NO_ACCURACY_FLOOR)
    command = suite_command()
    command += ["-k", "test_training", "--perf-variants", "naive", "--perf-epochs", "1"]
    command += ["--perf-latency", "none", "--perf-thresholds", str(thresholds)]
    command += ["--perf-data", str(small_data())]
    command += ["--benchmark-autosave", f"--benchmark-storage=file://{store}"]
    runs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL) for _ in range(2)]
    assert [run.wait(timeout=600) for run in runs] == [0, 0]
    saved = storage.saved_runs(store)
    assert [p.name[:4] for p in saved] == ["0001", "0002"]
    for path in saved:
        assert storage.read_run(path)["benchmarks"][0]["extra_info"]["variant"] == "naive"


def test_a_number_taken_by_another_run_meanwhile_is_not_overwritten(tmp_path, monkeypatch):
    (tmp_path / "0001_old.json").write_text("{}")
    real_link = storage.os.link

    def another_run_wins(source, target):
        # Between this run picking 0002 and linking it, another run saves 0002.
        if Path(target).name.startswith("0002") and not Path(target).exists():
            Path(target).write_text('{"writer": "other"}')
        return real_link(source, target)

    monkeypatch.setattr(storage.os, "link", another_run_wins)
    path = storage.write_new_run(tmp_path, "mine", '{"writer": "me"}')
    assert path.name == "0003_mine.json" and json.loads(path.read_text()) == {"writer": "me"}
    assert json.loads((tmp_path / "0002_mine.json").read_text()) == {"writer": "other"}


def test_compare_and_histogram_work_as_pytest_benchmark_documents(tmp_path):
    # --benchmark-histogram needs pygal; without it the run ended in a traceback
    # before the comparison (and --benchmark-compare-fail) ever ran.
    store, histogram = tmp_path / "storage", tmp_path / "histogram"
    thresholds = tmp_path / "thresholds.toml"
    thresholds.write_text(NO_ACCURACY_FLOOR)
    command = suite_command("-k", "test_training", "--perf-variants", "naive", "--perf-epochs", "1")
    command += ["--perf-latency", "none", "--perf-thresholds", str(thresholds)]
    command += ["--perf-data", str(small_data())]
    command += ["--benchmark-autosave", f"--benchmark-storage=file://{store}"]
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    compare = [*command, "--benchmark-compare", f"--benchmark-histogram={histogram}"]
    compare += ["--benchmark-compare-fail=mean:1000%"]
    second = subprocess.run(compare, cwd=ROOT, capture_output=True, text=True)
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-3000:]
    assert "Traceback" not in output
    assert "Comparing against benchmarks from: " in output
    assert (tmp_path / "histogram.svg").stat().st_size > 0


def test_another_pytest_benchmark_release_is_one_line_naming_the_adapter():
    check_version("5.3.1")
    with pytest.raises(pytest.UsageError) as caught:
        check_version("6.0.0")
    said = str(caught.value)
    assert "pytest-benchmark 6.0.0" in said and "benchmarks/saving/bench_adapter.py" in said
    assert "\n" not in said
