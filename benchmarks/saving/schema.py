"""The saved run's schema: the suite's fields in pytest-benchmark's JSON, read back in one place.

A saved run is pytest-benchmark's file: ``benchmarks`` (each with the
``extra_info`` that `benchmarks.measuring.records` wrote: its `Kind`, its variant, and
its figures, each declared metric one nested value with its interval and per-pass
samples, `benchmarks.saving.metrics.Saved`), ``machine_info``, ``commit_info``,
``datetime``, and the suite's own top-level keys: `VERSION_KEY`,
``perf_passes`` (how the run measured) and ``perf_gates`` (its verdicts).

`load` is how gates, the report, `trials.ab` and the trial tools read a
saved run: validated (`benchmarks.saving.storage.read_run`), its schema version
checked, every benchmark's kind one of `Kind`. A run saved before the version
was written is version 1 and loads (its readers default what it lacks); runs of
schemas 1 to 3 read in schema 4's layout (`nested`); one saved by a newer suite is
one line saying so.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.saving.metrics import DECLARED, INTERVAL, SAMPLES, VALUE, nest
from benchmarks.saving.storage import read_run
from pipelines.errors import DataError

# 1: runs saved before the version was written (up to 2026-12-03); 2: with it; 3: the
# profiler's capture has kind "profiler_capture" and its folder under "capture_folder"
# (before, kind "profile" and key "profile", which hid the run's profile name); 4: each
# declared metric one nested value, its interval and samples in it (`metrics.Saved`;
# before, its value under its name, its interval under name + "_ci" and its samples in
# "samples", keyed by name).
SCHEMA_VERSION = 4
# The capture's kind before schema 3.
EARLIER_CAPTURE_KIND = "profile"
VERSION_KEY = "perf_schema_version"


class Kind(enum.StrEnum):
    """What a saved benchmark measured (its ``extra_info["kind"]``)."""

    CEILING = "ceiling"  # the model on batches in memory
    TRAINING = "training"  # training through a variant
    PIPELINE = "pipeline"  # a variant's pipeline alone, no model
    TIMELINE = "timeline"  # a traced training run: stages, analysis
    TRACING_OVERHEAD = "tracing_overhead"  # traced over untraced, same passes
    SUGGESTIONS = "suggestions"  # --perf-verify-suggestions
    CAPTURE = "profiler_capture"  # --perf-profiler's capture of one epoch


@dataclasses.dataclass(frozen=True)
class Figures:
    """One saved benchmark's figures: its name, kind and variant, and the rest as saved."""

    name: str
    kind: Kind
    variant: str
    values: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class SavedRun:
    """A saved run, read through the schema."""

    path: Path | None
    version: int
    datetime: str
    machine: dict[str, Any]
    commit: dict[str, Any]
    figures: tuple[Figures, ...]
    passes: dict[str, Any] | None = None
    gates: dict[str, Any] | None = None

    def of_kind(self, kind: Kind) -> dict[str, Figures]:
        """Its benchmarks of ``kind``, by variant."""
        return {f.variant: f for f in self.figures if f.kind is kind}

    def infos(self) -> list[Mapping[str, Any]]:
        """Every benchmark's figures as saved (what `benchmarks.judging.gates.metrics_by_variant`
        reads)."""
        return [f.values for f in self.figures]


def from_dict(data: Mapping[str, Any], path: Path | None = None) -> SavedRun:
    """A run's JSON (already checked to be pytest-benchmark's) through the schema;
    `DataError` names the file for a newer version or a benchmark of an unknown kind."""
    where = path or "the run"
    version = data.get(VERSION_KEY, 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise DataError(where, f"{VERSION_KEY} is {version!r}, not a version number")
    if version > SCHEMA_VERSION:
        raise DataError(
            where,
            f"saved by a newer version of the suite (schema {version}; this one reads 1 to"
            f" {SCHEMA_VERSION}): read it with that version, or save a new run with this one",
        )
    figures = []
    for bench in data["benchmarks"]:
        info = bench.get("extra_info") or {}
        if "kind" not in info or "variant" not in info:
            continue  # not one of the suite's benchmarks (or saved untimed)
        if version < 3 and info["kind"] == EARLIER_CAPTURE_KIND:
            info = _capture_as_now(info, data)
        if version < 4:
            info = nested(info)
        bad = misshapen(info)
        if bad:
            raise DataError(where, f"benchmark {bench.get('name', '?')!r}: {bad}")
        try:
            kind = Kind(info["kind"])
        except ValueError:
            known = ", ".join(k.value for k in Kind)
            raise DataError(
                where,
                f"benchmark {bench.get('name', '?')!r} has kind {info['kind']!r};"
                f" known kinds: {known}",
            ) from None
        figures.append(Figures(str(bench.get("name", "")), kind, str(info["variant"]), info))
    return SavedRun(
        path=path,
        version=version,
        datetime=str(data.get("datetime", "")),
        machine=dict(data.get("machine_info") or {}),
        commit=dict(data.get("commit_info") or {}),
        figures=tuple(figures),
        passes=data.get("perf_passes"),
        gates=data.get("perf_gates"),
    )


def _capture_as_now(info: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """A profiler capture saved before schema 3, in today's keys: its folder had taken the
    key of the run's profile name, which the machine info still holds."""
    machine = data.get("machine_info") or {}
    return {
        **info,
        "kind": Kind.CAPTURE.value,
        "capture_folder": info.get("profile"),
        "profile": machine.get("perf_profile", "?"),
    }


def nested(info: Mapping[str, Any]) -> dict[str, Any]:
    """A benchmark's figures as schemas 1 to 3 saved them (a metric's value under its name,
    its interval under name + "_ci", its samples under ``samples``) as schema 4 saves them:
    each declared metric one nested value. Samples of a name not declared stay in
    ``samples``, as saved."""
    figures = dict(info)
    samples = dict(figures.pop(SAMPLES, None) or {})
    intervals = {name: figures.pop(f"{name}_ci") for name in DECLARED if f"{name}_ci" in figures}
    figures.update(nest(figures, samples, intervals))
    retired = {name: values for name, values in samples.items() if name not in DECLARED}
    if retired:
        figures[SAMPLES] = retired
    return figures


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def misshapen(info: Mapping[str, Any]) -> str | None:
    """What is wrong with the first declared figure not saved as schema 4 saves one (a
    number, its interval of two numbers, its samples a list of numbers); None: none."""
    for name in sorted(info.keys() & DECLARED.keys()):
        figure = info[name]
        if not isinstance(figure, Mapping):
            return f"{name} is {figure!r}, not {{value, ci, samples}}"
        value, interval, samples = (figure.get(part) for part in (VALUE, INTERVAL, SAMPLES))
        if value is not None and not _number(value):
            return f"{name}'s value is {value!r}, not a number"
        if interval is not None and not (
            isinstance(interval, list) and len(interval) == 2 and all(map(_number, interval))
        ):
            return f"{name}'s interval is {interval!r}, not two numbers"
        if samples is not None and not (isinstance(samples, list) and all(map(_number, samples))):
            return f"{name}'s samples are {samples!r}, not a list of numbers"
    return None


def load(path: Path) -> SavedRun:
    """A saved run from its file, validated and through the schema."""
    return from_dict(read_run(path), Path(path))


def stamp(output_json: dict[str, Any]) -> None:
    """Mark a run being saved with this schema's version."""
    output_json[VERSION_KEY] = SCHEMA_VERSION
