"""The tf.data service on localhost: start, serve, stop with ports released, and a lost worker."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from bench_runner import NO_ACCURACY_FLOOR, ROOT, suite_command

import pipelines
from benchmarks.measuring.session import DIED_WORKER_EXIT, PerfSession
from models.trainer import EpochStats
from pipelines import DataError, sources
from pipelines.checks.tagged import tagged_source
from pipelines.data.synthetic import CLASS_NAMES, make_examples
from pipelines.service import LocalService, _listening, port_is_free

# A minute or more in all: the test job starts this module first (conftest.py).
pytestmark = pytest.mark.slow


def test_a_local_service_serves_then_releases_its_ports_and_notices_a_dead_worker():
    with LocalService(workers=2) as service:
        ports = service.ports()
        assert len(set(ports)) == 3 and all(_listening(port) for port in ports)
        # It really serves: every example once per epoch, through both workers.
        ds = pipelines.build("distributed", tagged_source(40, 4), service=service.address)
        assert sorted(i for b in ds.as_numpy_iterator() for i in b["id"].tolist()) == list(
            range(40)
        )
        deaths: list[tuple[int, int]] = []
        noticed = threading.Event()

        def on_death(port: int, code: int) -> None:
            deaths.append((port, code))
            noticed.set()

        with service.guard(on_death):
            service.kill_worker(-1)
            assert noticed.wait(5)
        assert deaths == [(service.worker_ports[-1], -9)]
        assert service.alive() == 1
    assert not any(_listening(port) for port in ports)
    assert all(port_is_free(port) for port in ports)


def test_a_variant_that_distributes_needs_a_service():
    with pytest.raises(DataError, match=r"step 3 \(distribute\(distributed_epoch\)\): needs a tf"):
        pipelines.build("distributed", tagged_source(8))


def test_a_short_epoch_through_the_service_is_not_a_measurement():
    session = SimpleNamespace(train_source=SimpleNamespace(num_examples=100))
    full = EpochStats(1, 1.0, 2, 100, 0.1, 0.9, 1.0, 0.5)
    PerfSession.check_complete(session, "distributed", [full], 2, "grpc://localhost:1")
    short = EpochStats(2, 1.0, 2, 64, 0.1, 0.9, 1.0, 0.5)
    with pytest.raises(DataError, match=r"^grpc://localhost:1: epoch 2 delivered 64 of 100 "):
        PerfSession.check_complete(session, "distributed", [full, short], 2, "grpc://localhost:1")
    # Parallel epochs: each worker yields the whole epoch.
    both = dataclasses.replace(full, examples=200)
    PerfSession.check_complete(session, "distributed_parallel_epochs", [both], 2, "x")


@pytest.fixture(scope="module")
def small_records(tmp_path_factory) -> Path:
    """A small TFRecord dataset: service runs over it take seconds, not minutes."""
    folder = tmp_path_factory.mktemp("records")
    for split, count in (("train", 96), ("test", 32)):
        images, labels = make_examples(seed=6, split=split, count=count)
        sources.write_tfrecords(folder, split, images, labels, num_shards=4)
    return folder


def worker_children(pid: int) -> list[tuple[int, int]]:
    """(pid, port) of the tf.data service workers started by process ``pid``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            status = (proc / "status").read_text()
            command = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = int(re.search(r"^PPid:\s+(\d+)", status, re.M)[1])
        if parent == pid and b"pipelines.service" in command:
            found.append((int(proc.name), int(command[command.index(b"--port") + 1])))
    return found


def test_a_worker_killed_mid_run_stops_the_benchmark_with_one_line_and_saves_nothing(
    tmp_path, small_records
):
    storage, report = tmp_path / "storage", tmp_path / "report.html"
    command = suite_command()
    command += ["-k", "test_data_service and 2_workers", "--perf-data", str(small_records)]
    command += ["--perf-variants", "distributed"]
    command += ["--perf-epochs", "300"]
    command += ["--benchmark-autosave", f"--benchmark-storage=file://{storage}"]
    command += ["--perf-report", str(report)]
    run = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while len(workers := worker_children(run.pid)) < 2 or not all(
            _listening(port) for _, port in workers
        ):
            assert run.poll() is None and time.monotonic() < deadline, "no workers started"
            time.sleep(0.2)
        time.sleep(3)  # the service is up: training is under way (300 epochs take minutes)
        subprocess.run(["kill", "-9", str(workers[-1][0])], check=True)
        output = run.communicate(timeout=120)[0].decode()
    finally:
        run.kill()
    died = rf"^error: tf\.data service worker localhost:{workers[-1][1]} died mid-run \(exit -9\)"
    assert run.returncode == DIED_WORKER_EXIT, output[-3000:]
    assert len(re.findall(died + ".*saves no results$", output, re.M)) == 1, output[-3000:]
    assert "Traceback" not in output
    assert not list(storage.glob("*/*.json")) and not report.exists()
    # The workers went with the run: none is left behind.
    assert all(not _listening(port) for _, port in workers)


def test_the_benchmark_records_workers_and_speedup(tmp_path, small_records):
    """1 and 2 local workers, timed: both complete every epoch, and the ratio is recorded."""
    output = tmp_path / "run.json"
    thresholds = tmp_path / "thresholds.toml"
    thresholds.write_text(NO_ACCURACY_FLOOR)  # 96 examples learn little
    command = suite_command()
    command += ["-k", "test_data_service", "--perf-epochs", "1", "--perf-latency", "none"]
    command += ["--perf-variants", "distributed"]
    command += ["--perf-thresholds", str(thresholds), "--perf-data", str(small_records)]
    command += [f"--benchmark-json={output}", f"--benchmark-storage=file://{tmp_path}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    infos = {b["name"]: b["extra_info"] for b in json.loads(output.read_text())["benchmarks"]}
    one, two = infos["test_data_service[1_worker]"], infos["test_data_service[2_workers]"]
    assert (one["service_workers"], two["service_workers"]) == (1, 2)
    assert one["variant"] == "distributed (1 worker)"
    assert two["speedup_over_1_worker"] == pytest.approx(one["train_s"] / two["train_s"])
    assert two["service"].startswith("grpc://localhost:")


def test_on_data_its_workers_cannot_read_the_service_benchmark_is_skipped_at_collection(
    tmp_path,
):
    # CIFAR batches are read through Python (unpickling), which workers cannot run:
    # the service benchmarks are skipped, saying why, and the rest of the run goes on.
    images, labels = make_examples(seed=4, split="train", count=40)
    data = (np.stack(images), labels)
    sources.write_cifar_folder(tmp_path / "cifar", data, data, CLASS_NAMES)
    thresholds = tmp_path / "thresholds.toml"
    thresholds.write_text(NO_ACCURACY_FLOOR)
    selected = "test_data_service or (test_training and naive)"
    command = suite_command("-rs", "-k", selected, "--perf-epochs", "1")
    command += ["--perf-variants", "naive,distributed", "--perf-data", str(tmp_path / "cifar")]
    command += ["--perf-thresholds", str(thresholds), f"--benchmark-storage=file://{tmp_path}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    skipped = re.findall(
        r"^SKIPPED \[2\] .*: cannot run on this data: variant 'distributed'"
        r" step 3 \(distribute\(distributed_epoch\)\): the steps before it run"
        r" Python \(cifar source\).*$",
        output,
        re.M,
    )
    assert len(skipped) == 1, output[-3000:]
    assert "1 passed, 2 skipped" in output


def test_the_service_is_timed_only_when_its_variant_is_selected(tmp_path, small_records):
    command = suite_command("--collect-only", "--perf-data", str(small_records))
    unasked = subprocess.run(
        [*command, "--perf-variants", "naive"], cwd=ROOT, capture_output=True, text=True
    )
    asked = subprocess.run(
        [*command, "--perf-variants", "naive,distributed"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert "test_data_service" not in unasked.stdout and "test_training[naive]" in unasked.stdout
    assert asked.stdout.count("test_data_service[") == 2, asked.stdout[-2000:]
