#!/usr/bin/env python3
"""Set up the suite's virtual environment and run one of its jobs.

    python3 tasks.py bench [ARGS...]   main job: benchmark suite on the embedded data, saved,
                                       and the report in reports/perf.html
    python3 tasks.py test  [ARGS...]   the tests (and every benchmark once, untimed)
    python3 tasks.py full  [ARGS...]   the full profile (CIFAR-size data, the lab's CIFAR
                                       model) for a GPU machine; report in reports/full.html;
                                       first measures the device's step times into
                                       reports/device_profile.toml (ship it in
                                       models/device_profiles/ for the stand-in device)
    python3 tasks.py lint  [ARGS...]   ruff

Needs only `python3` (3.11). The first call creates `.venv` in the repository
root and installs `requirements.txt` into it; later calls reuse it and only
reinstall when `requirements.txt` changes. Extra ARGS go to the underlying
command (pytest or ruff).

    python3 tasks.py --here JOB [ARGS...]   the same job in the running interpreter, with
                                           no .venv (tox's envs call this)

This file is the one place that says what each job runs.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
REQUIREMENTS = ROOT / "requirements.txt"
STAMP = VENV / ".requirements.sha256"
REPORT = ROOT / "reports" / "perf.html"
# The benchmark jobs: their profile and where their report goes.
BENCH_JOBS = {"bench": ("smoke", REPORT), "full": ("full", ROOT / "reports" / "full.html")}
# The full job's device profile: the step times of the suite's workloads on this device.
DEVICE_PROFILE = ROOT / "reports" / "device_profile.toml"

# pytest's "no tests were collected" exit status; a run that tested nothing
# must not look green.
PYTEST_NO_TESTS = 5
# No core budget there: the test job's other tests share its processes, and the
# budget's own test runs it in a process of its own.
UNTIMED_BENCHMARKS = [
    *("--benchmark-disable", "--perf-profile", "check"),
    *("--perf-epochs", "1", "--perf-latency", "none", "--perf-model-threads", "0"),
]


def xdist_workers() -> int:
    """pytest-xdist workers for the test job: one more than the cores this process may use
    (at most 8). Most tests wait on a subprocess or hold one core, so a third worker on
    two cores took the job from 645 s to 575 s (docs/measurements.md, 2026-12-04).
    The count is `benchmarks.measuring.cores.cpu_cores`'s, written here again: this file
    runs before the venv exists, and that module imports TensorFlow."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(cores + 1, 8)


# A test file each at a time (module fixtures stay in one process). Files are
# handed out in collection order, which puts the modules marked slow first
# (conftest.py), not xdist's order by test count. `-n 0` among a job's ARGS
# runs the tests in one process.
PARALLEL_TESTS = ["-n", str(xdist_workers()), "--dist", "loadfile", "--no-loadscope-reorder"]


def venv_python() -> Path:
    """Path of the virtual environment's interpreter (POSIX or Windows layout)."""
    for candidate in (VENV / "bin" / "python", VENV / "Scripts" / "python.exe"):
        if candidate.exists():
            return candidate
    return VENV / "bin" / "python"


def ensure_venv() -> Path:
    """Create `.venv` and install the pinned requirements unless already done."""
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    python = venv_python()
    if not python.exists():
        print(f"tasks: creating {VENV.relative_to(ROOT)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        python = venv_python()
    if not STAMP.exists() or STAMP.read_text().strip() != wanted:
        print("tasks: installing requirements.txt into .venv", flush=True)
        pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
        subprocess.run([*pip, "install", "-q", "-r", str(REQUIREMENTS)], check=True)
        # Written last: an interrupted install is retried on the next call.
        STAMP.write_text(wanted + "\n")
    link_repository(python)
    return python


def link_repository(python: Path) -> None:
    """Put the repository on the venv's import path (a ``.pth`` file), so that its
    interpreter runs ``-m models.train``, ``-m benchmarks.report`` and pytest with
    ``--perf-plugin`` from a user's own folder."""
    layouts = [*VENV.glob("lib/python*/site-packages"), VENV / "Lib" / "site-packages"]
    site = next((folder for folder in layouts if folder.is_dir()), None)
    if site is None:  # an unknown layout: ask the interpreter (once, then the file exists)
        query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        done = subprocess.run([str(python), "-c", query], capture_output=True, text=True)
        site = Path(done.stdout.strip())
    link = site / "tf_data_suite.pth"
    if not link.exists() or link.read_text().strip() != str(ROOT):
        link.write_text(f"{ROOT}\n")


def job_command(job: str, python: Path, args: list[str]) -> list[str]:
    """The command line a job runs inside the virtual environment."""
    py = [str(python), "-m"]
    if job in BENCH_JOBS:
        # Saved to .benchmarks for later --benchmark-compare / --perf-baseline
        # runs, and the HTML report. bench: the smoke profile on the embedded
        # data; full: the figures to take whenever a GPU is at hand.
        profile, report = BENCH_JOBS[job]
        saved = ["--benchmark-autosave", "--perf-profile", profile, "--perf-report", str(report)]
        return [*py, "pytest", "benchmarks", *saved, *args]
    if job == "test":
        # Every benchmark runs once, untimed (one epoch, no latency), so none can rot unnoticed.
        return [*py, "pytest", "tests", "benchmarks", *UNTIMED_BENCHMARKS, *PARALLEL_TESTS, *args]
    if job == "lint":
        return [*py, "ruff", "check", ".", *args]
    raise SystemExit(f"tasks: unknown job {job!r}; choose bench, full, test or lint")


def main(argv: list[str]) -> int:
    """Entry point: `tasks.py JOB [ARGS...]`."""
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if argv else 2
    here = argv[0] == "--here"
    if here:
        argv = argv[1:]
    if not argv:
        print(__doc__)
        return 2
    job, args = argv[0], argv[1:]
    if job not in {"bench", "full", "test", "lint"}:
        print(f"tasks: unknown job {job!r}; choose bench, full, test or lint", file=sys.stderr)
        return 2
    python = Path(sys.executable) if here else ensure_venv()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    if job == "full":
        # Before the benchmarks: the stand-in device of later runs without a GPU reads it.
        measure = [str(python), "-m", "models.device_profile", "--out", str(DEVICE_PROFILE)]
        subprocess.run(measure, cwd=ROOT, env=env, check=False)
    status = subprocess.run(job_command(job, python, args), cwd=ROOT, env=env).returncode
    if job == "test" and status == PYTEST_NO_TESTS:
        print("tasks: pytest collected no tests; treating that as a failure", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
