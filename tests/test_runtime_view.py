"""The runtime view of a variant: shares by epoch, agreement with the timeline, advice, overhead."""

from __future__ import annotations

import dataclasses

import pytest

from benchmarks.diagnosing.runtime_view import (
    RuntimeView,
    advice,
    agreement,
    choices_text,
    runtime_line,
    runtime_view,
)
from benchmarks.measuring.pass_figures import pass_figures
from benchmarks.measuring.passes import UNOBSERVED, Trial
from benchmarks.saving.schema import nested
from models.trainer import EpochStats
from pipelines.observing.runtime_model import RuntimeModel, RuntimeNode
from tests.constructed import constructed_passes

KINDS = {
    "read": "read",
    "generator": "generator",
    "map(decode)": "map",
    "map(augment)": "map",
    "shuffle": "shuffle",
    "prefetch": "prefetch",
}


def view(*epochs: dict[str, float], **fields) -> dict:
    """A saved view whose epochs had these busy seconds per stage."""
    made = RuntimeView(
        busy_by_epoch=list(epochs),
        kinds=KINDS,
        choices=fields.pop("choices", [{}] * len(epochs)),
        tuned=fields.pop("tuned", {}),
        fill=fields.pop("fill", {}),
        readings=10,
        reading_s=0.001,
    )
    return made.to_dict()


def test_shares_are_of_the_later_epochs_and_of_the_first_apart():
    # A cache: the first epoch reads, the later ones only augment.
    info = view(
        {"read": 3.0, "map(decode)": 1.0, "map(augment)": 1.0, "prefetch": 9.0},
        {"map(augment)": 1.0, "prefetch": 9.0, "shuffle": 5.0},
        {"map(augment)": 1.0},
    )
    assert info["limiting"] == "map(augment)" and info["shares"] == {"map(augment)": 1.0}
    assert info["first_epoch_limiting"] == "read"
    # A prefetch's or a shuffle's own time is shown, not weighed.
    assert info["first_epoch_shares"]["read"] == pytest.approx(0.6)
    line = runtime_line("cached", nested({"runtime": info, "steady_input_bound": 0.5}), None)
    assert line.startswith(
        "cached: busiest stage map(augment) (100% of the input work in later epochs;"
        " the first epoch's: read); no timeline to compare"
    )


def test_the_timeline_is_compared_over_its_own_epochs_with_both_shares():
    info = view({"read": 3.0, "map(augment)": 1.0}, {"read": 1.0, "map(augment)": 3.0})
    over_one = {"limiting_stage": "read", "share_of_input": {"read": 0.7}, "epochs": 1}
    assert agreement(info, over_one) == "the timeline agrees over epoch 1 (70% there)"
    over_two = {
        "limiting_stage": "read",
        "share_of_input": {"read": 0.55, "map(augment)": 0.45},
        "epochs": 2,
    }
    # Over both epochs the two stages tie here; read is first.
    assert agreement(info, over_two).startswith("the timeline agrees over epochs 1-2")
    other = {"limiting_stage": "map(decode)", "share_of_input": {"map(decode)": 0.6}}
    assert agreement(info, other) == (
        "the timeline disagrees over epoch 1: it names map(decode) (60% there, 0% here),"
        " these statistics read (75% here, 0% there)"
    )
    # A generator reads through an iterator of its own: the timeline's open is inside it.
    generated = view({"generator": 5.0, "map(decode)": 1.0})
    opened = {"limiting_stage": "open", "share_of_input": {"open": 0.6}, "epochs": 1}
    assert agreement(generated, opened) == (
        "the timeline agrees over epoch 1: its open (60% there) runs inside the generator"
    )
    device = {"limiting_stage": "train step", "epochs": 1}
    assert agreement(info, device) == "the timeline finds the device limits (over epoch 1)"


def test_a_device_bound_run_says_the_device_limits():
    info = view({"read": 1.0})
    line = runtime_line("fast", nested({"runtime": info, "steady_input_bound": 0.01}), None)
    assert "busiest stage read (100% of the input work), but the device limits" in line
    assert "input waits 1%" in line


def test_choices_say_who_set_them_and_how_they_moved_by_epoch():
    choices = [
        {"map(augment)": {"parallelism": 1.0}, "prefetch": {"buffer_size": 2.0}},
        {"map(augment)": {"parallelism": 2.0}, "prefetch": {"buffer_size": 2.0}},
        {"map(augment)": {"parallelism": 2.0}, "prefetch": {"buffer_size": 5.0}},
    ]
    text = choices_text(choices, {"map(augment)": ["parallelism"]})
    assert text == (
        "map(augment) parallelism 1 -> 2 (epoch 2) by AUTOTUNE,"
        " prefetch buffer_size 2 -> 5 (epoch 3) set in the code"
    )
    assert choices_text([], {}) == "no parallelism or buffer to tune"


def test_advice_names_the_number_where_autotunes_choice_limits(monkeypatch):
    monkeypatch.setattr("benchmarks.diagnosing.runtime_view.cpu_cores", lambda: 6)
    held = view(
        {"map(augment)": 5.0, "read": 1.0},
        choices=[{"map(augment)": {"parallelism": 1.0}, "prefetch": {"buffer_size": 3.0}}],
        tuned={"map(augment)": ["parallelism"], "prefetch": ["buffer_size"]},
        fill={"prefetch": 0.1},
    )
    said = advice(held)
    assert said[0].startswith("AUTOTUNE held map(augment)'s parallelism at 1")
    assert "set its num_parallel_calls to 6" in said[0]
    assert said[1].startswith("prefetch's buffer (AUTOTUNE chose 3) was 10% full on average")
    # Set in the code, a parallelism of 1 is the user's choice; a full buffer says nothing.
    set_by_code = dataclasses.replace(
        RuntimeView(**{k: v for k, v in held.items() if k in _FIELDS}),
        tuned={},
        fill={"prefetch": 0.9},
    )
    assert advice(set_by_code.to_dict()) == []


_FIELDS = {field.name for field in dataclasses.fields(RuntimeView)}


def _epoch(number: int, model: RuntimeModel | None) -> EpochStats:
    return EpochStats(number, 1.0, 10, 640, 0.5, 0.5, 1.0, 0.5, runtime=model)


def test_the_view_sums_runs_epoch_by_epoch_and_keeps_the_last_runs_choices():
    def model(seconds: float, parallelism: float) -> RuntimeModel:
        nodes = {
            1: RuntimeNode(1, "Root", 0.0, 10, (2,)),
            2: RuntimeNode(
                2,
                "ParallelMapV2",
                seconds * parallelism,
                640,
                (3,),
                chosen={"parallelism": parallelism},
                tuned=("parallelism",),
            ),
            3: RuntimeNode(3, "BatchV2", 0.0, 10, ()),
        }
        return RuntimeModel(nodes, 1, readings=3, reading_s=0.002)

    runs = [
        [_epoch(1, model(1.0, 1.0)), _epoch(2, model(2.0, 2.0))],
        [_epoch(1, model(3.0, 1.0)), _epoch(2, None)],
    ]
    found = runtime_view(runs)
    assert found.busy_by_epoch == [{"map": 4.0, "batch": 0.0}, {"map": 2.0, "batch": 0.0}]
    assert found.choices == [{"map": {"parallelism": 1.0}}]  # the last run's one reading
    assert found.readings == 9 and found.reading_s == pytest.approx(0.006)
    assert runtime_view([[_epoch(1, None)]]) is None


def test_the_runtime_overhead_pairs_training_with_its_unobserved_twin():
    training, unobserved = Trial("training", "cache"), Trial(UNOBSERVED, "cache")
    traced = Trial("traced", "cache")
    passes = constructed_passes(
        {training: [2.0, 2.2, 2.1], unobserved: [2.0, 2.0, 2.0], traced: [2.4, 2.4, 2.4]}
    )
    figures = pass_figures(passes)
    value = {name: estimate.value for name, estimate in figures[training].figures().items()}
    assert value["runtime_overhead"] == pytest.approx(value["observed_over_unobserved"] - 1)
    assert value["observed_over_unobserved"] == pytest.approx((1.0 * 1.1 * 1.05) ** (1 / 3))
    # Tracing is measured against the unobserved twin: neither reads the model.
    assert figures[traced].figures()["traced_over_untraced"].value == pytest.approx(1.2)
    assert "runtime_overhead" not in figures[unobserved].figures()


def test_stages_keep_their_order_from_the_source_whichever_epoch_showed_them_first():
    from benchmarks.diagnosing.runtime_view import _in_order

    # A cached epoch first (nothing below the cache), then a first epoch with everything.
    known = _in_order({}, {"cache": "cache", "map(augment)": "map"})
    known = _in_order(
        known, {"open": "open", "read": "read", "cache": "cache", "map(augment)": "map"}
    )
    known = _in_order(known, {"read": "read", "map(decode)": "map", "cache": "cache"})
    assert list(known) == ["open", "read", "map(decode)", "cache", "map(augment)"]
    assert known["map(decode)"] == "map"
