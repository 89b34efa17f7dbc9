"""Thresholds parsing and its errors, the checks, and saved-run lookup."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

import pipelines
from benchmarks.judging import compare, gates
from benchmarks.saving import storage
from benchmarks.saving.metrics import ACCURACY_BELOW_REFERENCE
from pipelines import DataError
from tests.constructed import by_variant

VARIANTS = ["naive", "optimized"]


def write(tmp_path, text: str):
    path = tmp_path / "thresholds.toml"
    path.write_text(text)
    return path


def test_the_shipped_thresholds_file_is_valid():
    import pipelines

    thresholds = gates.load_thresholds(gates.DEFAULT_THRESHOLDS, pipelines.VARIANTS)
    assert thresholds.limits_for("optimized")["min_speedup"].value > 1


def test_variant_limits_override_the_defaults_and_say_where_they_came_from(tmp_path):
    path = write(
        tmp_path,
        "[defaults]\nmin_test_accuracy = 0.8\n\n[variants.optimized]\nmin_test_accuracy = 0.9\n",
    )
    limits = gates.load_thresholds(path, VARIANTS)
    assert limits.limits_for("naive")["min_test_accuracy"].value == 0.8
    assert (
        limits.limits_for("optimized")["min_test_accuracy"].origin
        == f"{path}:5 [variants.optimized] min_test_accuracy"
    )


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "[defaults]\nmin_speedpu = 1.5\n",
            2,
            "unknown key 'min_speedpu' in \\[defaults\\]; known: ",
        ),
        (
            "[defaults]\nmin_test_accuracy = 0.8\n[variants.optimised]\nmin_speedup = 2\n",
            3,
            "unknown variant 'optimised'; known variants: naive, optimized",
        ),
        ("[defaults]\n\nmax_input_bound = 'low'\n", 3, "max_input_bound must be a number, got str"),
        ("[defaults]\nmax_input_bound = -1\n", 2, "max_input_bound must not be negative, got -1"),
        (
            "[limits]\nmin_speedup = 2\n",
            1,
            "unknown section \\[limits\\]; use \\[defaults\\], \\[statistics\\], \\[base_vs_head\\]"
            " or \\[variants.NAME\\]",
        ),
    ],
)
def test_a_bad_thresholds_file_is_one_line_naming_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:{line}: {message}"):
        gates.load_thresholds(path, VARIANTS)


def test_invalid_toml_and_a_missing_file_are_named(tmp_path):
    path = write(tmp_path, "[defaults\nmin_speedup = 2\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: not valid TOML: "):
        gates.load_thresholds(path, VARIANTS)
    with pytest.raises(DataError, match=r"thresholds file does not exist$"):
        gates.load_thresholds(tmp_path / "none.toml", VARIANTS)


@pytest.fixture
def thresholds(tmp_path):
    return gates.load_thresholds(
        write(
            tmp_path,
            "[defaults]\nmin_test_accuracy = 0.8\nmax_throughput_drop = 0.2\n"
            "max_accuracy_drop = 0.05\n[variants.optimized]\nmin_speedup = 2.0\n"
            "max_ceiling_slowdown = 1.3\nmax_input_bound = 0.3\n",
        ),
        VARIANTS,
    )


def test_a_run_within_its_limits_passes(thresholds):
    results = {
        "naive": {"test_accuracy": 0.95, "speedup_over_naive": 1.0},
        "optimized": {
            "test_accuracy": 0.95,
            "speedup_over_naive": 3.0,
            "ceiling_slowdown": 1.2,
            "input_bound": 0.1,
        },
    }
    assert gates.check_run(thresholds, by_variant(results)) == []


def test_each_limit_fails_with_one_line_naming_variant_metric_value_limit_and_origin(thresholds):
    results = {
        "naive": {"test_accuracy": 0.5},
        "optimized": {
            "test_accuracy": 0.9,
            "speedup_over_naive": 1.5,
            "ceiling_slowdown": 1.31,
            "input_bound": 0.4,
        },
    }
    lines = sorted(str(f) for f in gates.check_run(thresholds, by_variant(results)))
    assert len(lines) == 4
    assert lines[0].startswith("GATE FAILED naive: test_accuracy = 0.5, limit >= 0.8 (from ")
    assert lines[0].endswith("thresholds.toml:2 [defaults] min_test_accuracy)")
    assert any(
        line.startswith("GATE FAILED optimized: speedup_over_naive = 1.5, limit >= 2 ")
        for line in lines
    )
    assert any("optimized: ceiling_slowdown = 1.31, limit <= 1.3" in line for line in lines)
    assert any("optimized: input_bound = 0.4, limit <= 0.3" in line for line in lines)


def test_a_missing_measurement_is_not_a_failure(thresholds):
    assert gates.check_run(thresholds, by_variant({"optimized": {"test_accuracy": 0.9}})) == []


def test_the_baseline_comparison_allows_the_tolerance_and_no_more(thresholds):
    baseline = by_variant({"optimized": {"fraction_of_ceiling": 0.8, "test_accuracy": 0.95}})
    within = by_variant({"optimized": {"fraction_of_ceiling": 0.65, "test_accuracy": 0.91}})
    assert compare.check_baseline(thresholds, within, baseline, "run 0001") == []
    worse = by_variant({"optimized": {"fraction_of_ceiling": 0.63, "test_accuracy": 0.89}})
    failures = [str(f) for f in compare.check_baseline(thresholds, worse, baseline, "run 0001")]
    assert failures[0].startswith(
        "GATE FAILED optimized: fraction_of_ceiling = 0.63, limit >= 0.64 (from "
    )
    assert failures[0].endswith("max_throughput_drop, baseline run 0001)")
    assert failures[1].startswith("GATE FAILED optimized: test_accuracy = 0.89, limit >= 0.9 ")


def saved_run(path, variant="optimized", fraction_of_ceiling=0.7, accuracy=0.9):
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {
        "kind": "training",
        "variant": variant,
        "fraction_of_ceiling": fraction_of_ceiling,
        "test_accuracy": accuracy,
    }
    path.write_text(
        json.dumps({"benchmarks": [{"name": f"test_training[{variant}]", "extra_info": info}]})
    )
    return path


def test_saved_runs_are_found_by_path_id_or_latest(tmp_path):
    first = saved_run(tmp_path / "Linux-CPython-3.11-64bit" / "0001_abc_20261121_000000.json")
    second = saved_run(tmp_path / "Linux-CPython-3.11-64bit" / "0002_def_20261121_010000.json")
    assert storage.find_saved_run("latest", tmp_path) == second
    assert storage.find_saved_run("1", tmp_path) == first
    assert storage.find_saved_run(str(first), tmp_path) == first
    assert gates.load_saved_metrics(first) == {
        "optimized": {
            "kind": "training",
            "variant": "optimized",
            "fraction_of_ceiling": {"value": 0.7},
            "test_accuracy": {"value": 0.9},
        }
    }


def test_a_missing_baseline_is_named(tmp_path):
    with pytest.raises(
        DataError, match=r"^--perf-baseline: no saved runs under .*--benchmark-autosave"
    ):
        storage.find_saved_run("latest", tmp_path)
    saved_run(tmp_path / "machine" / "0001_x.json")
    with pytest.raises(DataError, match=r"^--perf-baseline: no saved run '7' under "):
        storage.find_saved_run("7", tmp_path)


def test_a_broken_saved_run_is_named_and_left_alone(tmp_path):
    broken = tmp_path / "0001_broken.json"
    broken.write_text('{"benchmarks": [')
    before = broken.read_bytes()
    with pytest.raises(DataError, match=rf"^{re.escape(str(broken))}: saved run is not valid JSON"):
        gates.load_saved_metrics(broken)
    assert broken.read_bytes() == before
    other = tmp_path / "0002_other.json"
    other.write_text('{"results": []}')
    with pytest.raises(DataError, match="not a pytest-benchmark run"):
        gates.load_saved_metrics(other)


def stage_thresholds(tmp_path):
    return gates.load_thresholds(
        write(
            tmp_path,
            "[variants.optimized]\nmin_map_concurrency = 2\nmax_stage_slowdown = 0.15\n",
        ),
        VARIANTS,
    )


def test_a_map_that_never_ran_two_calls_at_once_fails(tmp_path):
    thresholds = stage_thresholds(tmp_path)
    assert gates.check_run(thresholds, by_variant({"optimized": {"map_concurrency": 3}})) == []
    (failure,) = gates.check_run(thresholds, by_variant({"optimized": {"map_concurrency": 1}}))
    assert str(failure).startswith("GATE FAILED optimized: map_concurrency = 1, limit >= 2 (from ")
    assert str(failure).endswith("[variants.optimized] min_map_concurrency)")


def test_a_gated_stage_may_slow_by_the_tolerance_and_no_more(tmp_path):
    thresholds = stage_thresholds(tmp_path)
    baseline = {"optimized": {"stage_p10_s": {"read": 0.0010, "open": 0.040}}}
    within = {"optimized": {"stage_p10_s": {"read": 0.00114, "open": 0.046}}}
    assert compare.check_baseline(thresholds, within, baseline, "run 0001") == []
    slower = {"optimized": {"stage_p10_s": {"read": 0.00125, "open": 0.040}}}
    (failure,) = compare.check_baseline(thresholds, slower, baseline, "run 0001")
    assert str(failure).startswith(
        "GATE FAILED optimized: p10 read span (s) = 0.00125, limit <= 0.00115 (from "
    )
    assert str(failure).endswith("max_stage_slowdown, baseline run 0001)")
    # A stage the baseline did not gate, or a run that was not traced, is not compared.
    assert compare.check_baseline(thresholds, {"optimized": {}}, baseline, "run 0001") == []


def test_accuracy_is_judged_against_the_runs_ceiling_by_default():
    import pipelines

    shipped = gates.load_thresholds(gates.DEFAULT_THRESHOLDS, pipelines.VARIANTS)
    # Real data a small model learns to 0.3 in three epochs: the ceiling too.
    assert gates.check_run(shipped, by_variant({"naive": {"accuracy_below_reference": 0.02}})) == []
    (failure,) = gates.check_run(shipped, by_variant({"naive": {"accuracy_below_reference": 0.6}}))
    assert (failure.metric, failure.relation) == ("accuracy_below_reference", "<=")
    assert "[defaults] max_accuracy_below_reference" in str(failure)


def test_accuracy_is_set_against_the_ceiling_or_against_augmented_when_it_augments():
    from benchmarks.measuring.records import RunRecords
    from benchmarks.run.result import derive
    from models.trainer import EpochStats

    def run(accuracy: float) -> list[EpochStats]:
        return [EpochStats(1, 1.0, 10, 640, 0.1, 0.9, 1.0, 0.5, test_accuracy=accuracy)]

    records = RunRecords(dict)
    records.training("c", "ceiling", [run(0.9)], kind="ceiling")
    records.training("n", "naive", [run(0.7)])
    records.training("a", "augmented", [run(0.5)], reference="augmented")
    records.training("o", "optimized", [run(0.45)], reference="augmented")
    records.training("u", "lab_optimized", [run(0.1)], reference=None)
    metrics = derive(records).metrics
    assert ACCURACY_BELOW_REFERENCE.of(metrics["n"]) == pytest.approx(0.2)
    assert metrics["n"]["accuracy_reference"] == "ceiling"
    assert ACCURACY_BELOW_REFERENCE.of(metrics["o"]) == pytest.approx(0.05)
    assert metrics["o"]["accuracy_reference"] == "augmented"
    assert "accuracy_below_reference" not in metrics["a"]  # the reference itself
    # An augmentation of its own: nothing in the run shares its recipe.
    assert "accuracy_below_reference" not in metrics["u"]
    contracts = {name: pipelines.get(name).contract for name in ("naive", "optimized")}
    assert contracts["naive"].accuracy_reference == "ceiling"
    assert contracts["optimized"].accuracy_reference == "augmented"
    own = dataclasses.replace(contracts["optimized"], augmentations=("flip",))
    assert own.accuracy_reference is None
