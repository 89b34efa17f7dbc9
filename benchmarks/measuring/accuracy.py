"""Accuracy from real training beside trials timed on a stand-in device.

On a stand-in (`models.stand_in`) the timed trials feed no model, so each timed
training trial (and the ceiling) gets a twin of kind ``accuracy`` in the same pass,
with the same seed: the real model trained through a fresh build of the same
variant. After the passes, each timed run takes its twin's losses and accuracies
epoch by epoch (`merge_accuracy`), so that every figure and gate that reads a
training run's accuracy reads the real model's, paired within the pass as before.
The twins keep their own times: what the model costs on this machine's CPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from benchmarks.measuring.passes import Passes, Trial
from models.trainer import EpochStats

ACCURACY = "accuracy"
# The kinds of trial whose runs carry accuracy: a variant's training and the ceiling.
TIMED_KINDS = ("training", "ceiling")


def twin(trial: Trial) -> Trial:
    """The real-training trial that gives ``trial`` its accuracy."""
    return Trial(ACCURACY, trial.variant)


def accuracy_trials(trials: Iterable[Trial]) -> set[Trial]:
    """The twins of the timed training trials (and the ceiling) among ``trials``."""
    return {twin(trial) for trial in trials if trial.kind in TIMED_KINDS}


def with_accuracy(timed: list[EpochStats], trained: list[EpochStats]) -> list[EpochStats]:
    """``timed``'s epochs with ``trained``'s losses and accuracies, epoch by epoch."""
    return [
        dataclasses.replace(
            epoch,
            train_loss=real.train_loss,
            train_accuracy=real.train_accuracy,
            test_loss=real.test_loss,
            test_accuracy=real.test_accuracy,
        )
        for epoch, real in zip(timed, trained, strict=True)
    ]


def merge_accuracy(passes: Passes) -> None:
    """Give each timed run of ``passes`` its twin's accuracy from the same pass (in place).

    Twins made in the first passes only leave the later runs without accuracy
    (``test_accuracy`` None), which the records then leave out of accuracy figures.
    """
    for trial, runs in passes.results.items():
        trained = passes.results.get(twin(trial)) if trial.kind in TIMED_KINDS else None
        if trained is not None:
            merged = [with_accuracy(run, real) for run, real in zip(runs, trained, strict=False)]
            passes.results[trial] = merged + [without_accuracy(run) for run in runs[len(merged) :]]


def without_accuracy(run: list[EpochStats]) -> list[EpochStats]:
    """``run``'s epochs marked as not evaluated (a stand-in's steps learn nothing)."""
    return [dataclasses.replace(epoch, test_loss=None, test_accuracy=None) for epoch in run]
