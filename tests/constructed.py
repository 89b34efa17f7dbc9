"""Constructed training runs, passes and saved figures, for tests of what is derived from them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.measuring.passes import Passes, Trial
from benchmarks.saving.schema import nested
from models.trainer import EpochStats


def training_run(seconds: float, count: int = 2) -> list[EpochStats]:
    """A training run of ``count`` equal epochs taking ``seconds`` in all, a quarter of it
    waiting for input, each epoch's first batch and step a small part of it."""
    per = seconds / count
    return [
        EpochStats(
            epoch=number,
            wall_s=per,
            steps=10,
            examples=640,
            input_wait_s=per / 4,
            step_s=per * 3 / 4,
            train_loss=1.0,
            train_accuracy=0.5,
            test_accuracy=0.5,
            cpu_s=per,
            first_batch_s=per / 10,
            first_step_s=per / 20,
            first_examples=64,
        )
        for number in range(1, count + 1)
    ]


def constructed_passes(seconds: dict[Trial, list[float]]) -> Passes:
    """Passes in which each trial took ``seconds[trial][i]`` in pass i (a `training_run`)."""
    passes = Passes(tuple(seconds), seed=0)
    passes.seconds = seconds
    passes.results = {trial: [training_run(s) for s in times] for trial, times in seconds.items()}
    passes.orders = [list(seconds)] * len(next(iter(seconds.values())))
    return passes


def by_variant(results: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each variant's figures as a run saves them (schema 4: each declared metric one
    nested value), from the flat layout a test writes briefly and schemas 1 to 3 saved:
    a metric's value under its name, its interval under ``name_ci``, its samples in
    ``samples`` by name."""
    return {variant: nested(figures) for variant, figures in results.items()}
