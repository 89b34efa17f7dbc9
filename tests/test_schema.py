"""Saved runs through one schema (`benchmarks.saving.schema`): versions, kinds, one-line errors."""

from __future__ import annotations

import json

import pytest

from benchmarks.judging import gates
from benchmarks.saving import metrics, schema
from benchmarks.saving.schema import SCHEMA_VERSION, VERSION_KEY, Kind
from pipelines.errors import DataError


def saved(tmp_path, benchmarks, **top):
    path = tmp_path / "0001_abc_20261203.json"
    path.write_text(json.dumps({"benchmarks": benchmarks, "datetime": "2026-12-03", **top}))
    return path


def bench(name, kind, variant, **figures):
    return {"name": name, "extra_info": {"kind": kind, "variant": variant, **figures}}


FRACTION = metrics.FRACTION_OF_CEILING
TRAINING = bench(
    "test_training[mine]", "training", "mine", samples={"fraction_of_ceiling": [0.5, 0.6]}
)


def test_a_run_saved_before_the_version_was_written_loads_as_version_1(tmp_path):
    run = schema.load(saved(tmp_path, [TRAINING, {"name": "someone_elses", "extra_info": {}}]))
    assert run.version == 1
    (figures,) = run.figures  # the benchmark that is not the suite's is left out
    assert figures.kind is Kind.TRAINING and figures.variant == "mine"
    assert FRACTION.samples_of(figures.values) == [0.5, 0.6]
    assert run.of_kind(Kind.TRAINING) == {"mine": figures}
    assert run.of_kind(Kind.CEILING) == {}


def test_a_run_of_this_version_loads_and_the_gates_read_it_through_the_schema(tmp_path):
    now = bench("test_training[mine]", "training", "mine", fraction_of_ceiling={"samples": [0.5]})
    path = saved(tmp_path, [now], **{VERSION_KEY: SCHEMA_VERSION})
    assert schema.load(path).version == SCHEMA_VERSION
    assert FRACTION.samples_of(gates.load_saved_metrics(path)["mine"]) == [0.5]


# One figure of each shape a run saved before schema 4: a value with its interval and
# samples, a value alone, samples alone, and an interval of None (one pass); beside them a
# figure that is not a declared metric, and samples of a name no longer declared.
FLAT = {
    "steady_fraction_of_ceiling": 0.6,
    "steady_fraction_of_ceiling_ci": [0.55, 0.65],
    "map_concurrency": 3,
    "epoch_s": 2.0,
    "epoch_s_ci": None,
    "train_s": 4.0,
    "samples": {
        "steady_fraction_of_ceiling": [0.58, 0.62],
        "alternated_examples_per_s": [900.0, 910.0],
        "epoch_s": [2.0],
        "retired_figure": [1.0],
    },
}
NESTED = {
    "steady_fraction_of_ceiling": {"value": 0.6, "ci": [0.55, 0.65], "samples": [0.58, 0.62]},
    "map_concurrency": {"value": 3},
    "alternated_examples_per_s": {"samples": [900.0, 910.0]},
    "epoch_s": {"value": 2.0, "samples": [2.0]},
    "train_s": 4.0,
    "samples": {"retired_figure": [1.0]},
}


@pytest.mark.parametrize("version", [None, 2, 3])
def test_runs_saved_by_schemas_1_to_3_read_as_schema_4_saves_them(tmp_path, version):
    top = {} if version is None else {VERSION_KEY: version}
    path = saved(tmp_path, [bench("test_training[mine]", "training", "mine", **FLAT)], **top)
    (figures,) = schema.load(path).figures
    assert dict(figures.values) == {"kind": "training", "variant": "mine", **NESTED}
    steady = metrics.STEADY_FRACTION_OF_CEILING
    assert steady.of(figures.values) == 0.6
    assert steady.interval_of(figures.values) == [0.55, 0.65]
    assert metrics.EPOCH_S.interval_of(figures.values) is None
    assert metrics.ALTERNATED.of(figures.values) is None


def test_a_figure_read_outside_the_schema_in_the_old_layout_is_refused():
    with pytest.raises(TypeError, match=r"fraction_of_ceiling is saved as 0\.6, not as its value"):
        FRACTION.of({"fraction_of_ceiling": 0.6})


def test_a_run_from_a_newer_suite_is_one_line_naming_the_file(tmp_path):
    path = saved(tmp_path, [TRAINING], **{VERSION_KEY: SCHEMA_VERSION + 1})
    with pytest.raises(DataError) as caught:
        gates.load_saved_metrics(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: saved by a newer version of the suite")
    assert f"schema {SCHEMA_VERSION + 1}; this one reads 1 to {SCHEMA_VERSION}" in message
    assert "\n" not in message


@pytest.mark.parametrize("version", ["2", 0, True, None])
def test_a_version_that_is_not_a_number_is_one_line(tmp_path, version):
    path = saved(tmp_path, [TRAINING], **{VERSION_KEY: version})
    with pytest.raises(DataError, match=f"^{path}: {VERSION_KEY} is .*, not a version number$"):
        schema.load(path)


def test_a_benchmark_of_an_unknown_kind_is_one_line_naming_it(tmp_path):
    path = saved(tmp_path, [TRAINING, bench("test_odd[mine]", "traced", "mine")])
    with pytest.raises(DataError) as caught:
        schema.load(path)
    assert str(caught.value).startswith(
        f"{path}: benchmark 'test_odd[mine]' has kind 'traced'; known kinds: ceiling, training,"
    )


def test_every_kind_a_record_writes_is_a_schema_kind():
    from benchmarks.measuring import records

    written = {
        field.default
        for cls in vars(records).values()
        if isinstance(cls, type) and hasattr(cls, "__dataclass_fields__")
        for name, field in cls.__dataclass_fields__.items()
        if name == "kind" and isinstance(field.default, str)
    }
    assert written and written <= set(Kind)


def test_a_profiler_capture_saved_before_schema_3_loads_with_todays_kind_and_keys(tmp_path):
    capture = bench("test_profile[mine]", "profile", "mine", profile="reports/profiles/mine")
    path = saved(tmp_path, [capture], **{VERSION_KEY: 2, "machine_info": {"perf_profile": "full"}})
    (figures,) = schema.load(path).figures
    assert figures.kind is Kind.CAPTURE
    assert figures.values["capture_folder"] == "reports/profiles/mine"
    assert figures.values["profile"] == "full"
    # From schema 3 on, "profile" is no kind.
    path = saved(tmp_path, [capture], **{VERSION_KEY: SCHEMA_VERSION})
    with pytest.raises(DataError, match="has kind 'profile'"):
        schema.load(path)


@pytest.mark.parametrize(
    ("figure", "said"),
    [
        (0.6, "fraction_of_ceiling is 0.6, not {value, ci, samples}"),
        ({"value": "fast"}, "fraction_of_ceiling's value is 'fast', not a number"),
        ({"value": 0.6, "ci": [0.5]}, "fraction_of_ceiling's interval is [0.5], not two numbers"),
        ({"samples": [0.5, None]}, "fraction_of_ceiling's samples are [0.5, None], not a list"),
    ],
)
def test_a_figure_saved_in_a_shape_of_no_schema_is_one_line_naming_file_and_benchmark(
    tmp_path, figure, said
):
    mangled = bench("test_training[mine]", "training", "mine", fraction_of_ceiling=figure)
    path = saved(tmp_path, [mangled], **{VERSION_KEY: SCHEMA_VERSION})
    with pytest.raises(DataError) as caught:
        gates.load_saved_metrics(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: benchmark 'test_training[mine]': {said}")
    assert "\n" not in message
    # Saved flat by an older schema, a value that is not a number is refused the same way.
    old = bench("test_training[mine]", "training", "mine", fraction_of_ceiling="fast")
    with pytest.raises(DataError, match="fraction_of_ceiling's value is 'fast', not a number"):
        schema.load(saved(tmp_path, [old], **{VERSION_KEY: 3}))
