"""Base against head in one run (`--perf-against`): loading a user's files at a git ref
or from a folder (`pipelines.versions`), and deciding pass by pass
(`benchmarks.judging.decide.decide_paired`, `benchmarks.judging.compare.compare_pairs`)."""

from __future__ import annotations

import json
import math
import random
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from bench_runner import ROOT, small_data, suite_from_anywhere
from scipy import stats

import pipelines
from benchmarks.judging import compare, gates
from benchmarks.judging.against import base_versions, check_bases
from benchmarks.judging.decide import Rule, decide, decide_paired
from benchmarks.saving import metrics, schema
from pipelines import steps
from pipelines.checks.contract import ContractViolation
from pipelines.errors import UsageError
from pipelines.plugins import load_plugin
from pipelines.versions import load_base

# A minute or more in all: the test job starts this module first (conftest.py).
pytestmark = pytest.mark.slow

PLUGIN = """
import tensorflow as tf

import pipelines
from pipelines import Contract
from pipelines.steps import Batch, Map, Read, register_transform

SLOWER = {slower}


@pipelines.pipeline(Contract(), name="{name}")
def pipeline(ds, params):
    for _ in range(SLOWER):
        ds = ds.map(lambda image, label: (tf.identity(image), label))
    return ds.batch(params.batch_size)


def factory(ctx, batched):
    return lambda record, seed: record


register_transform("{name}_t", factory)
pipelines.register(pipelines.Variant("{name}_steps", (Read(), Map(("{name}_t",)), Batch()),
                                     Contract()))
"""


def git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


@pytest.fixture
def project(tmp_path, request):
    """A user's git repository: a plugin file committed (slower=0), then changed (slower=2)."""
    name = "mine_" + re.sub(r"\W", "_", request.node.name)[-24:]
    folder = tmp_path / "project"
    folder.mkdir()
    plugin = folder / f"{name}.py"
    git(folder, "init", "-q")
    git(folder, "config", "user.email", "t@example.com")
    git(folder, "config", "user.name", "t")
    plugin.write_text(PLUGIN.format(slower=0, name=name))
    git(folder, "add", ".")
    git(folder, "commit", "-qm", "base")
    plugin.write_text(PLUGIN.format(slower=2, name=name))
    load_plugin(str(plugin))
    yield folder, plugin, name
    for variant in [v for v in pipelines.VARIANTS if v.startswith(name)]:
        pipelines.unregister(variant)
    for transform in [t for t in steps.TRANSFORMS if t.startswith(name)]:
        del steps.TRANSFORMS[transform]
    for module in [m for m in sys.modules if name in m]:
        del sys.modules[module]


def test_the_base_at_a_ref_loads_beside_the_head_renamed(project):
    _, plugin, name = project
    pairs = load_base([str(plugin)], "HEAD")
    assert pairs == {name: f"{name}@HEAD", f"{name}_steps": f"{name}_steps@HEAD"}
    head, base = pipelines.get(name), pipelines.get(f"{name}@HEAD")
    assert head.steps[0].function is not base.steps[0].function
    # The base's module is its own: the head's SLOWER is 2, the base's 0.
    assert sys.modules[f"perf_plugin_{name}@HEAD"].SLOWER == 0
    assert sys.modules[f"perf_plugin_{name}"].SLOWER == 2
    # The transform the base redefined is its own too, and its variant's map uses it.
    assert pipelines.get(f"{name}_steps@HEAD").steps[1].transforms == (f"{name}_t@HEAD",)
    assert pipelines.get(f"{name}_steps").steps[1].transforms == (f"{name}_t",)
    assert steps.TRANSFORMS[f"{name}_t"] is not steps.TRANSFORMS[f"{name}_t@HEAD"]


def test_the_base_from_a_folder(project, tmp_path):
    _, plugin, name = project
    other = tmp_path / "copy_v1"
    other.mkdir()
    (other / plugin.name).write_text(PLUGIN.format(slower=1, name=name))
    assert load_base([str(plugin)], str(other))[name] == f"{name}@copy_v1"
    assert sys.modules[f"perf_plugin_{name}@copy_v1"].SLOWER == 1


@pytest.mark.parametrize(
    ("against", "said"),
    [
        ("no-such-ref", "no commit 'no-such-ref'"),
        ("missing-folder/", "no commit"),
    ],
)
def test_a_ref_that_does_not_exist_is_one_line(project, against, said):
    _, plugin, _ = project
    with pytest.raises(UsageError) as caught:
        load_base([str(plugin)], against)
    assert str(caught.value).startswith(f"--perf-against {against}: ")
    assert said in str(caught.value) and "\n" not in str(caught.value)


def test_a_file_absent_at_the_ref_or_failing_there_is_one_line(project):
    folder, plugin, _ = project
    newer = folder / "newer.py"
    newer.write_text("x = 1\n")
    with pytest.raises(UsageError, match=r"newer\.py"):
        load_base([str(newer)], "HEAD")
    plugin.write_text("raise RuntimeError('broken at the base')\n")
    git(folder, "commit", "-qam", "broken")
    with pytest.raises(UsageError, match=r"importing .* at the base failed: RuntimeError"):
        load_base([str(plugin)], "HEAD")


RATE = metrics.STEADY_FRACTION_OF_CEILING
RULE = Rule(0.03, alpha=0.05)


def drifting(loss: float, passes: int = 8, seed: int = 0) -> tuple[list[float], list[float]]:
    """Base and head per pass under a machine whose speed drifts +-30% between passes
    (shared by both within a pass), with 1% noise of their own; head ``loss`` slower."""
    rng = random.Random(seed)
    base, head = [], []
    for _ in range(passes):
        machine = rng.uniform(0.7, 1.3)
        base.append(machine * rng.gauss(1.0, 0.01))
        head.append(machine * (1 - loss) * rng.gauss(1.0, 0.01))
    return base, head


def test_pairing_sees_a_5_percent_loss_through_30_percent_drift():
    base, head = drifting(0.05)
    verdict = decide_paired("mine", RATE, base, head, RULE)
    assert verdict.outcome == "regression"
    assert verdict.change == pytest.approx(0.95, abs=0.015)
    assert verdict.interval[0] < verdict.change < verdict.interval[1] < 1
    assert "paired t" in str(verdict)
    # The same values compared as two unpaired samples cannot see it.
    assert decide("mine", RATE, base, head, RULE).outcome != "regression"


def test_the_paired_interval_and_p_value_are_the_textbook_paired_t_tests():
    """Against scipy's paired t-test on the log ratios: a standard error off by any
    factor moves both the interval and the p-value."""
    base, head = drifting(0.04, passes=10, seed=3)
    logs = [math.log(h / b) for b, h in zip(base, head, strict=True)]
    verdict = decide_paired("mine", RATE, base, head, RULE)
    expected = stats.ttest_rel(
        [math.log(h) for h in head], [math.log(b) for b in base], alternative="less"
    )
    assert verdict.p_value == pytest.approx(expected.pvalue, rel=1e-6)
    half = stats.t.ppf(0.95, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    low, high = verdict.interval
    assert math.log(low) == pytest.approx(statistics.fmean(logs) - half, rel=1e-9)
    assert math.log(high) == pytest.approx(statistics.fmean(logs) + half, rel=1e-9)


def test_unchanged_code_under_drift_is_not_a_regression():
    outcomes = [
        decide_paired("mine", RATE, *drifting(0.0, seed=s), RULE).outcome for s in range(20)
    ]
    assert "regression" not in outcomes


def test_an_accuracy_difference_is_paired_as_a_difference():
    base = [0.80, 0.70, 0.90, 0.75, 0.85]
    head = [b - 0.05 for b in base]
    verdict = decide_paired("mine", metrics.TEST_ACCURACY, base, head, RULE)
    assert verdict.outcome == "regression" and verdict.change == pytest.approx(-0.05)


def test_one_pass_or_unequal_passes_cannot_be_paired():
    assert decide_paired("mine", RATE, [1.0], [0.5], RULE).outcome == "inconclusive"
    with pytest.raises(ValueError):
        decide_paired("mine", RATE, [1.0, 1.0], [1.0], RULE)


def test_the_gates_pair_each_head_with_its_base(tmp_path):
    thresholds = tmp_path / "t.toml"
    thresholds.write_text("[base_vs_head]\nmax_steady_throughput_drop = 0.03\n")
    loaded = gates.load_thresholds(thresholds, ["mine", "mine@main"])
    base, head = drifting(0.10)
    results = {
        "mine": {"steady_fraction_of_ceiling": metrics.saved(samples=head)},
        "mine@main": {"steady_fraction_of_ceiling": metrics.saved(samples=base)},
    }
    failures, verdicts = compare.compare_pairs(loaded, results, {"mine": "mine@main"})
    (verdict,) = verdicts
    assert verdict.outcome == "regression" and failures[0].variant == "mine"
    assert "base mine@main in the same passes" in str(failures[0])
    assert math.isclose(verdict.change, 0.9, abs_tol=0.02)


def test_a_run_times_head_and_base_in_the_same_passes_and_judges_each_pair(project, tmp_path):
    folder, plugin, name = project
    storage = tmp_path / "storage"
    command = suite_from_anywhere(
        *("-k", "test_training or test_ceiling"),
        *("--perf-plugin", plugin.name, "--perf-against", "HEAD", "--perf-variants", name),
        *("--perf-latency", "none", "--perf-epochs", "2", "--perf-passes", "2"),
        *("--perf-epoch-pairs", "3", "--perf-data", str(small_data())),
        f"--benchmark-storage=file://{storage}",
        "--benchmark-autosave",
    )
    done = subprocess.run(command, capture_output=True, text=True, cwd=folder)
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    assert f"test_training[{name}@HEAD]" in done.stdout
    title = "head against base, in the same passes and epoch by epoch (--perf-against)"
    section = done.stdout.split(title)[1]
    # Steady state from the alternated epochs, full epochs and accuracy from the passes.
    assert f": {name} alternated_examples_per_s: baseline" in section
    assert f"base {name}@HEAD round by round" in section
    assert f": {name} fraction_of_ceiling: baseline" in section
    assert "paired t" in section and f"base {name}@HEAD in the same passes" in section
    assert f"{name} against {name}@HEAD, epoch by epoch: 3 rounds" in section
    # The base is what the head is compared with, not gated on its own.
    assert f"GATE FAILED {name}@HEAD" not in done.stdout
    # Base and head ran in every pass, so their saved samples pair one to one.
    (saved,) = storage.rglob("*.json")
    assert json.loads(saved.read_text())["perf_schema_version"] == schema.SCHEMA_VERSION
    runs = {
        b["extra_info"]["variant"]: b["extra_info"]
        for b in json.loads(saved.read_text())["benchmarks"]
        if b["extra_info"].get("kind") == "training"
    }
    assert len(runs[name]["steady_fraction_of_ceiling"]["samples"]) == 2
    assert len(runs[f"{name}@HEAD"]["steady_fraction_of_ceiling"]["samples"]) == 2
    # And the alternated rounds, one per round on each side.
    assert len(runs[name]["alternated_examples_per_s"]["samples"]) == 3
    assert len(runs[f"{name}@HEAD"]["alternated_examples_per_s"]["samples"]) == 3
    assert runs[name]["alternation"]["rounds"] == 3


def test_against_without_a_plugin_file_is_a_usage_error(tmp_path):
    command = [sys.executable, "-m", "pytest", "benchmarks", "-q", "--perf-against", "HEAD"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 4
    assert "--perf-against: needs --perf-plugin FILE.py" in done.stderr


def test_a_base_that_is_not_there_leaves_the_head_measured_not_compared(project):
    _, plugin, _ = project
    pairs, problems = base_versions([str(plugin)], "no-such-ref")
    assert pairs == {}
    (problem,) = problems
    assert not problem.compared
    assert problem.line.startswith("--perf-against no-such-ref: no commit 'no-such-ref'")
    assert problem.line.endswith("; the current versions are measured, not compared")


def test_a_base_that_does_not_build_is_dropped_and_one_that_breaks_its_contract_compared(
    project,
):
    _, plugin, name = project

    def check(variant, **size):
        if variant.name == f"{name}@HEAD":
            raise ContractViolation(variant, "order", "ids out of order")
        raise ValueError("unknown transform 'gone'\nmore detail")

    pairs, problems = check_bases(base_versions([str(plugin)], "HEAD")[0], check=check)
    assert pairs == {name: f"{name}@HEAD"}
    lines = {p.line: p.compared for p in problems}
    assert lines == {
        f"{name}@HEAD breaks its contract ({name}@HEAD: order: ids out of order);"
        " compared anyway": True,
        f"{name}_steps@HEAD does not build (unknown transform 'gone'); {name}_steps is"
        " measured, not compared": False,
    }


def test_a_run_against_a_missing_ref_measures_the_head_says_why_and_is_not_green(project, tmp_path):
    folder, plugin, name = project
    command = suite_from_anywhere(
        *("-k", "test_training"),
        *("--perf-plugin", plugin.name, "--perf-against", "no-such-ref"),
        *("--perf-variants", name, "--perf-latency", "none", "--perf-epochs", "1"),
        *("--perf-passes", "1", f"--benchmark-storage=file://{tmp_path / 'storage'}"),
        *("--perf-data", str(small_data())),
    )
    done = subprocess.run(command, capture_output=True, text=True, cwd=folder)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout  # the head was measured
    assert (
        "--perf-against no-such-ref: no commit 'no-such-ref'" in done.stdout
        and "the current versions are measured, not compared" in done.stdout
    )
