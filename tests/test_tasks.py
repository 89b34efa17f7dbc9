"""The bootstrap script: the jobs it runs and its handling of pytest's "no tests"."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import tasks


def fake_run(returncode: int, calls: list[list[str]]):
    def run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, returncode)

    return run


def test_test_job_runs_tests_and_every_benchmark_untimed(monkeypatch):
    calls: list[list[str]] = []
    monkeypatch.setattr(tasks, "ensure_venv", lambda: Path("/venv/bin/python"))
    monkeypatch.setattr(tasks.subprocess, "run", fake_run(0, calls))
    assert tasks.main(["test", "-k", "shuffle"]) == 0
    (command,) = calls
    assert command[:5] == ["/venv/bin/python", "-m", "pytest", "tests", "benchmarks"]
    args = command[5:]
    # Every benchmark once, untimed, on the small embedded set, one epoch, no latency.
    settings = {
        "--perf-profile": "check",
        "--perf-epochs": "1",
        "--perf-latency": "none",
        "--perf-model-threads": "0",
        "--dist": "loadfile",
    }
    for flag, value in settings.items():
        assert args[args.index(flag) + 1] == value, flag
    assert {"--benchmark-disable", "--no-loadscope-reorder"} <= set(args)
    assert int(args[args.index("-n") + 1]) >= 2  # in parallel, a worker or more per core
    assert args[-2:] == ["-k", "shuffle"]  # the user's own arguments last


def test_the_readme_states_the_test_jobs_command(monkeypatch):
    calls: list[list[str]] = []
    monkeypatch.setattr(tasks, "ensure_venv", lambda: Path("python"))
    monkeypatch.setattr(tasks.subprocess, "run", fake_run(0, calls))
    tasks.main(["test"])
    (command,) = calls
    stated = " ".join(command[2:])
    workers = command[command.index("-n") + 1]
    readme = " ".join((Path(tasks.__file__).parent / "README.md").read_text().split())
    assert f"`{stated}`".replace(f"-n {workers} ", "-n 3 ") in readme


def test_pytest_collecting_no_tests_is_a_failure(monkeypatch, capsys):
    monkeypatch.setattr(tasks, "ensure_venv", lambda: Path("/venv/bin/python"))
    monkeypatch.setattr(tasks.subprocess, "run", fake_run(tasks.PYTEST_NO_TESTS, []))
    assert tasks.main(["test"]) == 1
    assert "collected no tests" in capsys.readouterr().err


def test_an_unknown_job_is_refused_before_any_setup(monkeypatch, capsys):
    monkeypatch.setattr(
        tasks, "ensure_venv", lambda: (_ for _ in ()).throw(AssertionError("set up"))
    )
    assert tasks.main(["deploy"]) == 2
    assert "unknown job 'deploy'" in capsys.readouterr().err


def test_ci_script_runs_the_test_job_and_passes_on_its_status(tmp_path):
    # .ci/run with a stand-in python3 that records its arguments and fails;
    # tasks.py itself turns pytest's "no tests" into a failure (test above).
    fake = tmp_path / "python3"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\nexit 1\n')
    fake.chmod(0o755)
    script = Path(tasks.ROOT / ".ci" / "run")
    done = subprocess.run(
        ["bash", str(script)],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert (tmp_path / "args").read_text().split() == ["tasks.py", "test"]


def test_here_runs_the_job_in_this_interpreter_without_a_venv(monkeypatch):
    calls: list[list[str]] = []
    monkeypatch.setattr(
        tasks, "ensure_venv", lambda: (_ for _ in ()).throw(AssertionError("set up"))
    )
    monkeypatch.setattr(tasks.subprocess, "run", fake_run(0, calls))
    assert tasks.main(["--here", "lint"]) == 0
    assert calls == [[sys.executable, "-m", "ruff", "check", "."]]


def test_tox_envs_run_the_jobs_tasks_py_defines():
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(tasks.ROOT / "tox.ini")
    for env, job in (("tests", "test"), ("bench", "bench"), ("lint", "lint")):
        commands = tox[f"testenv:{env}"]["commands"].strip()
        assert commands == f"python tasks.py --here {job} {{posargs}}"


def test_bench_job_saves_the_run_and_writes_the_report(monkeypatch):
    calls: list[list[str]] = []
    monkeypatch.setattr(tasks, "ensure_venv", lambda: Path("/venv/bin/python"))
    monkeypatch.setattr(tasks.subprocess, "run", fake_run(0, calls))
    assert tasks.main(["bench"]) == 0
    command = calls[0]
    assert command[2:4] == ["pytest", "benchmarks"]
    assert "--benchmark-autosave" in command
    # Where the README says the report is.
    report = Path(tasks.__file__).parent / "reports" / "perf.html"
    assert command[command.index("--perf-report") + 1] == str(report)


def test_the_test_job_starts_the_slow_modules_first_each_kept_whole(pytestconfig):
    import types

    # The root conftest.py as pytest loaded it (tests/conftest.py is a "conftest" too).
    root = str(Path(tasks.__file__).with_name("conftest.py"))
    (conftest,) = [
        plugin
        for plugin in pytestconfig.pluginmanager.get_plugins()
        if getattr(plugin, "__file__", None) == root
    ]

    def item(module: str, slow: bool) -> types.SimpleNamespace:
        marker = object() if slow else None
        return types.SimpleNamespace(module=module, get_closest_marker=lambda name: marker)

    items = [item("a", False), item("b", True), item("b", True), item("c", False)]
    items.append(item("d", True))
    doctest = types.SimpleNamespace(get_closest_marker=lambda name: None)  # no module
    items.insert(0, doctest)
    conftest.pytest_collection_modifyitems(None, items)
    assert [getattr(i, "module", None) for i in items] == ["b", "b", "d", None, "a", "c"]
    # xdist hands files out in that order, not by how many tests each holds.
    assert "--no-loadscope-reorder" in tasks.PARALLEL_TESTS
