"""Saved runs: finding and reading pytest-benchmark's files, and writing every file atomically.

pytest-benchmark saves each run as ``<storage>/<machine>/NNNN_<commit>_<time>.json``.
Its own writer opens the final name and writes into it, and picks NNNN by
listing the folder, so a run killed mid-write leaves a torn file and two runs
finishing together can pick the same number.
`benchmarks.saving.bench_adapter.save_atomically` replaces that writer for a session:
the file is written under a temporary name, synced, then linked to its final
name, which fails rather than overwrite when another run took the number
first (the next number is tried). The
report and ``--benchmark-json`` go through `write_atomic`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pytest_benchmark.utils import safe_dumps

from pipelines.errors import DataError

RUN_NAME = "[0-9][0-9][0-9][0-9]_*.json"  # NNNN_<commit>_<time>.json
RUN_GLOB = f"*/{RUN_NAME}"  # under <storage>/<machine>/


def saved_runs(storage: Path) -> list[Path]:
    """Every saved run under ``storage``, oldest first (by run number, then name)."""
    return sorted(Path(storage).glob(RUN_GLOB), key=lambda p: (p.name, str(p)))


def find_saved_run(spec: str, storage: Path, option: str = "--perf-baseline") -> Path:
    """A saved run: a path, a run id (``0003``), or ``latest``."""
    candidate = Path(spec)
    if candidate.is_file():
        return candidate
    runs = saved_runs(storage)
    if not runs:
        raise DataError(
            option, f"no saved runs under {storage} (save one with --benchmark-autosave)"
        )
    if spec == "latest":
        return runs[-1]
    matches = [p for p in runs if p.name.split("_", 1)[0] == spec.zfill(4) or p.stem == spec]
    if not matches:
        raise DataError(option, f"no saved run {spec!r} under {storage}")
    return matches[-1]


def read_run(path: Path) -> dict[str, Any]:
    """A saved run's JSON, checked to be a pytest-benchmark run; `DataError` names the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(
            path, f"saved run is not valid JSON ({error.msg} at line {error.lineno})"
        ) from None
    except UnicodeDecodeError:
        raise DataError(path, "saved run is not text (not a JSON file)") from None
    except OSError as error:
        raise DataError(path, f"saved run cannot be read ({error.strerror})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise DataError(path, "not a pytest-benchmark run (no 'benchmarks' list)")
    if not all(isinstance(bench, dict) for bench in data["benchmarks"]):
        raise DataError(path, "not a pytest-benchmark run (a benchmark entry is not an object)")
    return data


def _temporary_copy(path: Path, text: str) -> str:
    """``text`` written and synced to a new temporary file beside ``path``; its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from others
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return temporary


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename.

    Readers see the old file or the new one, never half of one; a crash
    mid-write leaves the old file and a stray temporary, not a torn file.
    """
    path = Path(path)
    temporary = _temporary_copy(path, text)
    try:
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_new_run(folder: Path, suffix: str, text: str) -> Path:
    """Save a run as ``folder/NNNN_<suffix>.json`` with the next free number; its path.

    Never overwrites: the complete file is linked to its name, and a number
    another run took meanwhile makes it try the next one.
    """
    folder = Path(folder)
    temporary = _temporary_copy(folder / f"run_{suffix}.json", text)
    try:
        number = 1 + max((int(p.name[:4]) for p in folder.glob(RUN_NAME)), default=0)
        while True:
            target = folder / f"{number:04d}_{suffix}.json"
            try:
                os.link(temporary, target)
                return target
            except FileExistsError:
                number += 1
    finally:
        Path(temporary).unlink(missing_ok=True)


def dumps(output_json: dict[str, Any]) -> str:
    """A run as pytest-benchmark writes it (its JSON encoder, ASCII, indented)."""
    return safe_dumps(output_json, ensure_ascii=True, indent=4)
