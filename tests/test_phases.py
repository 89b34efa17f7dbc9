"""Start-up apart from steady state (`benchmarks.measuring.phases`), and the progress line."""

from __future__ import annotations

import pytest

from benchmarks.measuring.passes import Progress, Trial
from benchmarks.measuring.phases import (
    epoch_start_s,
    first_batch_s,
    first_epoch_extra_s,
    steady_epochs,
    steady_rate,
)
from benchmarks.measuring.progress import ProgressLine, progress_text
from models.trainer import EpochStats


def epoch(number: int, wall: float, first_batch: float = 0.0, examples: int = 640) -> EpochStats:
    return EpochStats(
        epoch=number,
        wall_s=wall,
        steps=10,
        examples=examples,
        input_wait_s=first_batch,
        step_s=wall - first_batch,
        train_loss=1.0,
        train_accuracy=0.5,
        first_batch_s=first_batch,
        first_step_s=0.05,
        first_examples=64,
    )


def test_steady_state_leaves_out_the_first_epoch_and_start_up_is_what_it_cost_beyond():
    # A cache fills in epoch 1 (3 s, 1 s of it waiting for the first batch), later
    # epochs take 1 s each for 640 examples (0.01 s of it their first batch's wait).
    run = [epoch(1, 3.0, first_batch=1.0), epoch(2, 1.0, 0.01), epoch(3, 1.0, 0.01)]
    assert steady_rate(run) == pytest.approx(640.0)
    assert first_batch_s(run) == pytest.approx(1.0)
    assert epoch_start_s(run) == pytest.approx(0.01)
    assert first_epoch_extra_s(run) == pytest.approx(2.0)
    assert list(steady_epochs(run)) == run[1:]
    # A slower start-up moves start-up only; a slower steady state moves the rate.
    slow_start = [epoch(1, 5.0, first_batch=3.0), *run[1:]]
    assert steady_rate(slow_start) == steady_rate(run)
    assert first_epoch_extra_s(slow_start) == pytest.approx(4.0)
    slow_steady = [run[0], epoch(2, 2.0, 0.01), epoch(3, 2.0, 0.01)]
    assert steady_rate(slow_steady) == pytest.approx(320.0)
    assert first_batch_s(slow_steady) == first_batch_s(run)


def test_each_later_epochs_start_is_shown_apart_and_stays_in_the_steady_rate():
    # A shuffle buffer refilled at every epoch's start: 0.5 s before the first batch,
    # whose reads the rest of the epoch then does not make (each epoch still 1 s).
    run = [epoch(1, 3.0, first_batch=1.0), epoch(2, 1.0, 0.01), epoch(3, 1.0, 0.01)]
    refilled = [run[0], epoch(2, 1.0, 0.5), epoch(3, 1.0, 0.5)]
    assert steady_rate(refilled) == pytest.approx(steady_rate(run))
    assert epoch_start_s(refilled) == pytest.approx(0.5)
    # A start that costs time on top moves both.
    slower = [run[0], epoch(2, 1.5, 0.5), epoch(3, 1.5, 0.5)]
    assert steady_rate(slower) == pytest.approx(640 / 1.5)
    assert epoch_start_s(run[:1]) == 0.0


def test_with_one_epoch_the_steady_state_is_its_steps_after_the_first():
    (only,) = run = [epoch(1, 2.05, first_batch=1.0)]
    # 576 examples in 2.05 - 1.0 - 0.05 = 1.0 s.
    assert steady_rate(run) == pytest.approx(576.0)
    assert list(steady_epochs(run)) == [only]
    assert first_epoch_extra_s(run) == pytest.approx(2.05 - 640 / 576)
    # One step only: no steady part to leave the first step out of.
    single = [epoch(1, 1.05, first_batch=1.0, examples=64)]
    assert steady_rate(single) == pytest.approx(64 / 1.05)


def progress(pass_number: int, position: int, remaining: float | None) -> Progress:
    return Progress(pass_number, 8, Trial("training", "optimized"), position, 12, 65.0, remaining)


def test_the_progress_line_says_where_the_passes_are():
    text = progress_text(progress(3, 5, 130.0))
    assert text == ("pass 3 of at most 8: optimized (5/12), 1m05s elapsed, at most 2m10s left")
    assert "estimating time left" in progress_text(progress(1, 1, None))


def test_on_a_terminal_one_line_is_rewritten_and_in_a_log_one_line_per_pass():
    written: list[str] = []
    line = ProgressLine(written.append, terminal=True)
    for position in (1, 2, 3):
        line(progress(1, position, None))
    line.done()
    assert written[0].startswith("\n\r") and all(w.startswith("\r") for w in written[1:])
    assert not any("\n" in w for w in written[1:])
    logged: list[str] = []
    log = ProgressLine(logged.append, terminal=False)
    for number in (1, 2):
        for position in (1, 2, 3):
            log(progress(number, position, None))
    log.done()
    assert len(logged) == 2 and all(w.endswith("\n") for w in logged)
    assert "pass 2 of at most 8" in logged[1]
