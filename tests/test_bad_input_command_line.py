"""Bad input to the suite itself: each case is one line naming what is wrong, a non-zero
exit, and no file written or overwritten (saved runs, the report).

Every case drives ``pytest benchmarks`` (or the report command) in a
subprocess, as a user would; the cases run two at a time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from bench_runner import ROOT, fingerprint, suite_command

from pipelines import sources
from pipelines.data.synthetic import CLASS_NAMES, make_examples

# A minute or more in all: the test job starts this module first (conftest.py).
pytestmark = pytest.mark.slow

# A tiny run: naive only, one epoch, no latency; it saves and reports if it gets that far.
BENCH = ("-k", "test_training", "--perf-variants", "naive", "--perf-epochs", "1")
SAVED_RUN = {"machine_info": {}, "commit_info": {}, "benchmarks": [], "datetime": "earlier"}


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input: how to make it, the arguments, and the one line expected."""

    make: Callable[[Path], list[str]]  # prepares tmp files; returns the extra arguments
    expect: str  # regex the error line must match ({tmp} stands for the case's folder)
    exit_code: int = 4
    report_command: bool = False


def image_folder(root: Path, count: int = 24) -> Path:
    for split in ("train", "test"):
        images, labels = make_examples(seed=3, split=split, count=count)
        sources.write_image_folder(root, split, images, labels, CLASS_NAMES)
    return root


def train_images(root: Path) -> list[Path]:
    return [root / row.split(",")[0] for row in (root / "train.csv").read_text().split()[1:]]


def empty_folder(tmp: Path) -> list[str]:
    (tmp / "empty").mkdir()
    return ["--perf-data", str(tmp / "empty")]


def spoilt_folder(tmp: Path) -> list[str]:
    """An image folder with one undecodable JPEG, one zero-byte file, one PNG named .jpg."""
    root = image_folder(tmp / "images")
    first, second, third = train_images(root)[:3]
    garbage = np.random.default_rng(0).integers(0, 256, 600, dtype=np.uint8).tobytes()
    first.write_bytes(b"\xff\xd8\xff\xe0" + garbage.replace(b"\xff", b"\x00") + b"\xff\xd9")
    second.write_bytes(b"")
    images, _ = make_examples(seed=3, split="train", count=1)
    third.write_bytes(sources.image_folder.encode_image(images[0], "PNG"))
    return ["--perf-data", str(root)]


def tfrecords(tmp: Path, labels_shift: int = 0) -> Path:
    folder = tmp / "records"
    for split in ("train", "test"):
        images, labels = make_examples(seed=4, split=split, count=24)
        sources.write_tfrecords(folder, split, images, labels + labels_shift)
    return folder


def truncated_shard(tmp: Path) -> list[str]:
    folder = tfrecords(tmp)
    shard = next(folder.glob("train-*.tfrecord"))
    shard.write_bytes(shard.read_bytes()[:-40])
    return ["--perf-data", str(folder)]


def cifar_missing_batch(tmp: Path) -> list[str]:
    images, labels = make_examples(seed=5, split="train", count=20)
    pair = (np.stack(images), labels)
    sources.write_cifar_folder(tmp / "cifar", pair, pair, CLASS_NAMES)
    (tmp / "cifar" / "data_batch_4").unlink()
    return ["--perf-data", str(tmp / "cifar")]


def thresholds(text: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        (tmp / "thresholds.toml").write_text(text)
        return ["--perf-thresholds", str(tmp / "thresholds.toml")]

    return make


def device_profile(text: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        (tmp / "gpu.toml").write_text(text)
        return ["--perf-device-profile", str(tmp / "gpu.toml")]

    return make


def broken_run(content: str, *args: str) -> Callable[[Path], list[str]]:
    """A saved run file with ``content`` in the storage, named by ``args`` (or found as latest)."""

    def make(tmp: Path) -> list[str]:
        path = tmp / "storage" / "Linux-CPython-3.11-64bit" / "0002_broken.json"
        path.write_text(content)
        return [arg.format(run=path) for arg in args]

    return make


CASES = {
    "missing data path": Case(
        lambda tmp: ["--perf-data", str(tmp / "nowhere")], r"ERROR: {tmp}/nowhere: does not exist"
    ),
    "empty folder": Case(empty_folder, r"ERROR: {tmp}/empty: folder is empty"),
    "image folder with a zero-byte, a PNG named .jpg and an undecodable JPEG": Case(
        spoilt_folder,
        r"ERROR: {tmp}/images/\w+/train_\d+\.jpg: file is empty \(0 bytes\) \(2 bad in all:"
        r" {tmp}/images/\w+/train_\d+\.jpg: contains PNG data but is named \.jpg\)",
    ),
    "truncated TFRecord shard": Case(
        truncated_shard,
        r"ERROR: {tmp}/records/train-00000-of-00001\.tfrecord: truncated TFRecord: record 23 .*",
    ),
    "CIFAR folder missing a batch": Case(
        cifar_missing_batch, r"ERROR: {tmp}/cifar/data_batch_4: CIFAR batch file is missing"
    ),
    "labels outside the class range (found while training)": Case(
        lambda tmp: ["--perf-data", str(tfrecords(tmp, labels_shift=5))],
        r".*error: {tmp}/records/\w+-00000-of-00001\.tfrecord: record \d+: label 1\d"
        r" is outside 0\.\.9.*",
        exit_code=2,
    ),
    "thresholds with a typo in a key": Case(
        thresholds("[defaults]\nmin_test_acuracy = 0.5\n"),
        r"ERROR: {tmp}/thresholds\.toml:2: unknown key 'min_test_acuracy' in \[defaults\]; .*",
    ),
    "thresholds with a wrong type": Case(
        thresholds('[defaults]\nmin_test_accuracy = "high"\n'),
        r"ERROR: {tmp}/thresholds\.toml:2: min_test_accuracy must be a number, got str",
    ),
    "thresholds naming an unknown variant": Case(
        thresholds("[variants.turbo]\nmin_speedup = 2\n"),
        r"ERROR: {tmp}/thresholds\.toml:1: unknown variant 'turbo'; known variants: .*",
    ),
    "a baseline that does not exist": Case(
        lambda tmp: ["--perf-baseline", "0042"],
        r"ERROR: --perf-baseline: no saved run '0042' under {tmp}/storage",
    ),
    "a truncated saved run as the baseline": Case(
        broken_run('{"benchmarks": [{"name": "x"', "--perf-baseline", "{run}"),
        r"ERROR: {tmp}/storage/\S+/0002_broken\.json: saved run is not valid JSON .*",
    ),
    "a saved run that is not JSON, found as the latest": Case(
        broken_run("<html>not json</html>", "--perf-baseline", "latest"),
        r"ERROR: {tmp}/storage/\S+/0002_broken\.json: saved run is not valid JSON .*",
    ),
    "an image size that is not one": Case(
        lambda tmp: ["--perf-image-size", "24y"],
        r"ERROR: --perf-image-size: '24y' is not an image size \(N or HxW, e.g. 24 or 24x32\)",
    ),
    "an unknown variant in --perf-variants": Case(
        lambda tmp: ["--perf-variants", "naive,turbo"],
        r"ERROR: --perf-variants: unknown variant 'turbo'; known variants: .*",
    ),
    "an unknown device": Case(
        lambda tmp: ["--perf-device", "tpu9"],
        r"ERROR: --perf-device: unknown device 'tpu9'; choose stand-in, real, alone",
    ),
    "a negative step time": Case(
        lambda tmp: ["--perf-step-time=-2ms"],
        r"ERROR: --perf-step-time: '-2ms' is not a step time; write it as 2ms, 0\.002s or 500us",
    ),
    "an absurd step time": Case(
        lambda tmp: ["--perf-step-time", "1e3s"],
        r"ERROR: --perf-step-time: a step time of 1000 s is absurd \(at most 10 s a batch\)",
    ),
    "a device profile that does not exist": Case(
        lambda tmp: ["--perf-device-profile", str(tmp / "gpu.toml")],
        r"ERROR: {tmp}/gpu\.toml: no such device profile",
    ),
    "a corrupt device profile": Case(
        device_profile('device = "H100"\n[[steps]]\nmodel = "tiny"\nbatch_size = 64\n'),
        r"ERROR: {tmp}/gpu\.toml \[\[steps\]\] #1: needs model, batch_size, image_shape = .*",
    ),
    "a device profile without the model": Case(
        device_profile(
            'device = "H100"\n[[steps]]\nmodel = "vgg"\nbatch_size = 8\n'
            "image_shape = [32, 32, 3]\nstep_s = 0.01\n"
        ),
        r"ERROR: {tmp}/gpu\.toml: no step time for model 'tiny' \(it has: vgg\)",
    ),
    "the report over a storage with a truncated run": Case(
        broken_run('{"benchmarks": ['),
        r"error: {tmp}/storage/\S+/0002_broken\.json: saved run is not valid JSON .*",
        exit_code=1,
        report_command=True,
    ),
    "the report with a malformed thresholds file": Case(
        thresholds("[defaults\n"),
        r"error: {tmp}/thresholds\.toml: not valid TOML: .*",
        exit_code=1,
        report_command=True,
    ),
}


@dataclasses.dataclass
class Outcome:
    tmp: Path
    done: subprocess.CompletedProcess[str]
    before: dict[str, str]
    after: dict[str, str]
    report: Path


def run_case(case: Case, tmp: Path) -> Outcome:
    """Seed a storage with one good saved run, make the bad input, run the suite on it."""
    storage = tmp / "storage"
    saved = storage / "Linux-CPython-3.11-64bit" / "0001_good.json"
    saved.parent.mkdir(parents=True)
    saved.write_text(json.dumps(SAVED_RUN))
    report = tmp / "report.html"
    args = case.make(tmp)
    before = fingerprint(storage)
    if case.report_command:
        if "--perf-thresholds" in args:
            args = ["--thresholds", args[1]]
        command = [sys.executable, "-m", "benchmarks.report", "--storage", str(storage)]
        command += ["--output", str(report), *args]
    else:
        command = suite_command()
        command += [*BENCH, "--perf-latency", "none", "--benchmark-autosave"]
        command += [f"--benchmark-storage=file://{storage}", "--perf-report", str(report), *args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    return Outcome(tmp, done, before, fingerprint(storage), report)


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory) -> dict[str, Outcome]:
    """The outcome of every case selected in this session (``-k`` runs only its own)."""
    selected = [
        item.callspec.params["name"]
        for item in request.session.items
        if item.originalname == "test_bad_input_is_one_line_and_writes_nothing"
    ]
    folders = {name: tmp_path_factory.mktemp("bad") for name in selected}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run_case, CASES[name], folders[name]) for name in selected}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_writes_nothing(outcomes, name):
    case, outcome = CASES[name], outcomes[name]
    output = outcome.done.stdout + outcome.done.stderr
    pattern = case.expect.replace("{tmp}", re.escape(str(outcome.tmp)))
    lines = [line for line in output.splitlines() if re.fullmatch(pattern, line)]
    assert outcome.done.returncode == case.exit_code, output[-3000:]
    assert len(lines) == 1, output[-3000:]
    assert "Traceback" not in output
    assert outcome.after == outcome.before  # nothing saved, nothing overwritten
    assert not outcome.report.exists()


def test_skip_corrupt_runs_past_bad_images_and_reports_the_count(tmp_path):
    # 21 images and one epoch learn nothing: only the count is under test, not accuracy.
    args = spoilt_folder(tmp_path) + thresholds("[defaults]\nmin_test_accuracy = 0\n")(tmp_path)
    storage, report = tmp_path / "storage", tmp_path / "report.html"
    command = suite_command()
    command += [*BENCH, "--perf-latency", "none", "--benchmark-autosave", "--skip-corrupt"]
    command += [f"--benchmark-storage=file://{storage}", "--perf-report", str(report), *args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    # The terminal names what was left out, not only how much.
    assert "3 corrupt records skipped (--skip-corrupt)" in done.stdout
    for image in train_images(tmp_path / "images")[:3]:
        assert str(image) in done.stdout
    (saved,) = storage.glob("*/0001_*.json")
    (bench,) = json.loads(saved.read_text())["benchmarks"]
    assert bench["extra_info"]["corrupt_skipped"] == 3
    assert '<dt>Corrupt records skipped</dt><dd class="fail">3 (--skip-corrupt' in (
        report.read_text()
    )


def saved_run(storage: Path) -> str:
    """A run saved earlier in ``storage``; returns its fingerprint."""
    saved = storage / "Linux-CPython-3.11-64bit" / "0001_good.json"
    saved.parent.mkdir(parents=True)
    saved.write_text(json.dumps(SAVED_RUN))
    return fingerprint(storage)


def assert_interrupted(returncode: int, text: str, storage: Path, before: str, report: Path):
    assert returncode == pytest.ExitCode.INTERRUPTED, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert "interrupted: the run stopped part way; nothing of it was saved" in text
    assert fingerprint(storage) == before
    assert not report.exists()


def test_ctrl_c_stops_the_run_in_one_line_and_saves_nothing(tmp_path):
    storage = tmp_path / "storage"
    before = saved_run(storage)
    # At verbosity 0 (-v after the -q) pytest names the file as its first test
    # starts; 30 epochs take a minute. Not a generator-read variant: an interrupt
    # that lands in its generator, run by TensorFlow, can be lost.
    command = suite_command("-v", "-k", "test_training", "--perf-variants", "optimized")
    command += ["--perf-epochs", "30", "--perf-latency", "none", "--benchmark-autosave"]
    command += [f"--benchmark-storage=file://{storage}", "--perf-report", str(tmp_path / "r.html")]
    errors = tmp_path / "stderr.txt"
    with open(errors, "wb") as stderr:
        run = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            # A pytest-xdist worker ignores SIGINT, and a child inherits that:
            # the run must take Ctrl-C as a user's terminal would deliver it.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        output = b""
        while b"bench_training.py" not in output and run.poll() is None:
            output += run.stdout.read1(1024)
        time.sleep(3)  # into the session's set-up or naive's first round
        run.send_signal(signal.SIGINT)
        rest, _ = run.communicate(timeout=120)
    text = (output + rest).decode(errors="replace") + errors.read_text(errors="replace")
    assert_interrupted(run.returncode, text, storage, before, tmp_path / "r.html")


SWALLOWING_PLUGIN = """
import os, signal, pytest

class Finalized:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    Finalized()  # dropped at once: Ctrl-C lands in its finalizer, where Python drops it
    yield
"""


def test_ctrl_c_that_python_drops_in_a_finalizer_still_stops_the_run(tmp_path):
    # Seen in CI: the KeyboardInterrupt landed in tqdm's __del__, Python printed
    # it as ignored, and the run went on to save. The signal itself must count.
    (tmp_path / "swallowing.py").write_text(SWALLOWING_PLUGIN)
    storage, report = tmp_path / "storage", tmp_path / "r.html"
    before = saved_run(storage)
    command = suite_command(*BENCH, "-p", "swallowing", "--perf-latency", "none")
    command += ["--benchmark-autosave", f"--benchmark-storage=file://{storage}"]
    command += ["--perf-report", str(report)]
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert_interrupted(done.returncode, done.stdout + done.stderr, storage, before, report)
