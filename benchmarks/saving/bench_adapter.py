"""Every use of pytest-benchmark's internals, in one place, for the version it was written for.

The suite needs four things pytest-benchmark has no public API for: handing it
timings taken elsewhere (the interleaved passes), its session object (to save
atomically, or not at all after bad data), the JSON it would save (for a
report when nothing is saved), and the file storage's ``save``. They are
written against `SUPPORTED`; `check_version` fails in one line on any other
release, naming this file, rather than letting a renamed attribute fail
somewhere in the middle of a run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_benchmark

from benchmarks.saving.storage import dumps, write_atomic, write_new_run

# The releases whose internals this module was written against (major.minor).
SUPPORTED = ("5.3",)


def check_version(version: str = pytest_benchmark.__version__) -> None:
    """A one-line `pytest.UsageError` unless ``version`` is a supported release."""
    if ".".join(version.split(".")[:2]) not in SUPPORTED:
        raise pytest.UsageError(
            f"pytest-benchmark {version} is installed; benchmarks/saving/bench_adapter.py uses its"
            f" internals as of {', '.join(SUPPORTED)}: install the pinned version"
            " (pip install -r requirements.txt)"
        )


def bench_session(config: pytest.Config) -> Any | None:
    """pytest-benchmark's session object (None where its plugin is not active)."""
    return getattr(config, "_benchmarksession", None)


class _ReplayClock:
    """Replays timings to pytest-benchmark as its timer, read twice a round."""

    __name__ = "interleaved_passes"

    def __init__(self, seconds: list[float]) -> None:
        self.readings = iter([reading for spent in seconds for reading in (0.0, spent)])

    def __call__(self) -> float:
        return next(self.readings)


def report_rounds(benchmark: Any, seconds: list[float]) -> None:
    """Hand pytest-benchmark one round per entry of ``seconds``, as timed elsewhere: its
    tables, ``--benchmark-compare``, histograms and JSON then show those timings."""
    benchmark._timer = _ReplayClock(seconds)
    benchmark.pedantic(lambda: None, rounds=len(seconds), iterations=1, warmup_rounds=0)


def save_atomically(config: pytest.Config) -> None:
    """Make pytest-benchmark write its saved run and its ``--benchmark-json`` atomically,
    each saved run under a number of its own (`benchmarks.saving.storage.write_new_run`)."""
    session = bench_session(config)
    if session is None:
        return
    storage = session.storage
    if hasattr(storage, "get") and hasattr(storage, "save"):  # file storage (not Elasticsearch)

        def save(output_json: dict[str, Any], name: str) -> None:
            folder = storage.get("x").parent  # the machine folder pytest-benchmark would use
            path = write_new_run(folder, name, dumps(output_json))
            storage.logger.info(f"Saved benchmark data in: {path}")

        storage.save = save

    def save_json(output_json: dict[str, Any]) -> None:
        write_atomic(Path(session.json), dumps(output_json))
        session.logger.info(f"Wrote benchmark data in: {session.json}", purple=True)

    session.save_json = save_json


def abandon(config: pytest.Config) -> None:
    """pytest-benchmark saves nothing of this run, and its table leaves out rounds that never
    finished (an interrupted round has no timings)."""
    session = bench_session(config)
    if session is None:
        return
    session.save = session.autosave = False
    session.json = None
    session.benchmarks = [b for b in session.benchmarks if getattr(b.stats, "data", None)]


def run_json(config: pytest.Config, update: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """This run as pytest-benchmark would save it, passed through ``update`` (the suite's
    own additions), for a report when nothing was saved."""
    session = bench_session(config)
    output = config.hook.pytest_benchmark_generate_json(
        config=config,
        benchmarks=session.benchmarks,
        include_data=False,
        machine_info=session.get_machine_info(),
        commit_info=config.hook.pytest_benchmark_generate_commit_info(config=config),
    )
    update(output)
    return output
