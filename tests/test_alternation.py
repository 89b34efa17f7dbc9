"""Head and base epoch by epoch (`benchmarks.measuring.alternation`), and a pair decided from it."""

from __future__ import annotations

import math
import random
import re

import pytest

from benchmarks.judging import compare, gates
from benchmarks.measuring.alternation import (
    BASE,
    HEAD,
    Alternation,
    AlternationPlan,
    alternate,
)
from benchmarks.saving import metrics
from tests.constructed import by_variant

ALTERNATED, YARDSTICK = metrics.ALTERNATED.name, metrics.YARDSTICK.name


class FakeEpochs:
    """Epochs of two versions on a machine whose speed drifts: ``loss`` slower at the head,
    a first epoch per side ten times slower, each epoch ``seconds`` on a fake clock."""

    def __init__(self, loss: float = 0.0, noise: float = 0.05, seed: int = 1) -> None:
        self.loss, self.noise = loss, noise
        self.rng = random.Random(seed)
        self.now = 0.0
        self.calls: list[int] = []
        self.speed = 1000.0

    def clock(self) -> float:
        return self.now

    def __call__(self, side: int) -> float:
        first = side not in self.calls
        self.calls.append(side)
        self.now += 4.0
        self.speed *= math.exp(self.rng.gauss(0, 0.03))  # slow drift, shared by both sides
        rate = self.speed * math.exp(self.rng.gauss(0, self.noise))
        rate *= (1 - self.loss) if side == HEAD else 1.0
        return rate / 10 if first else rate


def run(epochs: FakeEpochs, plan: AlternationPlan, seed: int = 3) -> Alternation:
    return alternate("mine", "mine@main", epochs, plan, seed, clock=epochs.clock)


def test_each_sides_first_epoch_runs_before_the_rounds_and_is_not_kept():
    epochs = FakeEpochs()
    found = run(epochs, AlternationPlan(4, 4, math.inf))
    assert epochs.calls[:2] == [BASE, HEAD]
    assert found.rounds == 4 and len(epochs.calls) == 2 + 2 * 4
    # A kept rate of a first epoch would be a tenth of the others.
    assert min(found.head_rates + found.base_rates) > 500
    assert found.warm_up_s == 8.0 and found.elapsed_s == 32.0


def test_every_round_runs_both_sides_in_a_random_order():
    epochs = FakeEpochs()
    found = run(epochs, AlternationPlan(40, 40, math.inf))
    rounds = [epochs.calls[i : i + 2] for i in range(2, len(epochs.calls), 2)]
    assert all(sorted(pair) == [BASE, HEAD] for pair in rounds)
    assert found.first == ["base" if pair[0] == BASE else "head" for pair in rounds]
    assert 10 <= found.first.count("head") <= 30


def test_rounds_stop_once_the_ratio_is_precise_and_not_before_the_minimum():
    quiet = run(FakeEpochs(noise=0.01), AlternationPlan(10, 80, math.inf, precision=0.012))
    assert quiet.stopped == "precise" and quiet.rounds == 10
    noisy = run(FakeEpochs(noise=0.04), AlternationPlan(10, 80, math.inf, precision=0.012))
    assert noisy.stopped == "precise" and noisy.rounds > 10
    assert noisy.standard_error() <= 0.012


def test_rounds_stop_at_the_time_limit_with_room_for_no_more():
    found = run(FakeEpochs(noise=0.3), AlternationPlan(10, 80, 100.0, precision=0.001))
    assert found.stopped == "time limit"
    # 8 s a round: the 12th would end past 100 s.
    assert found.rounds == 12 and found.elapsed_s <= 100.0


def test_the_ratio_is_the_heads_over_the_bases_despite_the_drift():
    found = run(FakeEpochs(loss=0.05, noise=0.05), AlternationPlan(60, 60, math.inf))
    mean = math.exp(sum(found.log_ratios()) / found.rounds)
    assert math.isclose(mean, 0.95, abs_tol=0.02)
    assert "mine against mine@main, epoch by epoch: 60 rounds" in str(found)


def pair_results(head_rates, base_rates, head_steady, base_steady):
    return by_variant(
        {
            "mine": {
                "samples": {ALTERNATED: head_rates, "steady_fraction_of_ceiling": head_steady}
            },
            "mine@main": {
                "samples": {ALTERNATED: base_rates, "steady_fraction_of_ceiling": base_steady}
            },
        }
    )


def test_a_pairs_steady_state_is_decided_from_its_alternated_epochs_when_it_has_them(tmp_path):
    thresholds = tmp_path / "t.toml"
    thresholds.write_text("[base_vs_head]\nmax_steady_throughput_drop = 0.03\n")
    loaded = gates.load_thresholds(thresholds, ["mine", "mine@main"])
    found = run(FakeEpochs(loss=0.06, noise=0.05), AlternationPlan(30, 30, math.inf))
    # The passes say no change; the alternated epochs say 6% slower: they decide.
    same = [0.5, 0.52, 0.49]
    results = pair_results(found.head_rates, found.base_rates, same, same)
    failures, verdicts = compare.compare_pairs(loaded, results, {"mine": "mine@main"})
    (verdict,) = verdicts
    assert verdict.metric.name == ALTERNATED and verdict.outcome == "regression"
    assert "base mine@main round by round" in str(failures[0])
    # Without alternated epochs on both sides, the passes decide.
    del results["mine@main"][ALTERNATED]
    failures, (verdict,) = compare.compare_pairs(loaded, results, {"mine": "mine@main"})
    assert verdict.metric.name == "steady_fraction_of_ceiling" and not failures


def test_power_trials_wait_makes_training_slower_by_the_shift_asked():
    from trials import power_trials

    waits = power_trials.waits_for([0.0, 0.05, 0.2, 0.0], batch_s=0.1)
    assert waits == {"mine_0": 0, "mine_5": 5263, "mine_20": 25000, "mine_0b": 0}
    # A batch of 0.1 s plus its wait runs at 1 - shift of the rate.
    for shift, name in ((0.05, "mine_5"), (0.2, "mine_20")):
        assert math.isclose(0.1 / (0.1 + waits[name] / 1e6), 1 - shift, abs_tol=1e-4)


def test_power_trials_project_is_python_that_registers_a_pipeline_per_shift(tmp_path):
    from trials import power_trials

    path = power_trials.write_project(tmp_path, {"mine_0": 0, "mine_5": 5263}, {"mine_5": 0.1})
    text = path.read_text()
    compile(text, str(path), "exec")
    assert "WAIT_US = {'mine_0': 0, 'mine_5': 5263}" in text
    assert "RELABEL = {'mine_5': 0.1}" in text


def test_power_trials_extend_a_series_with_its_calibration_and_refuse_a_bad_one(
    tmp_path, monkeypatch
):
    from trials import power_trials

    monkeypatch.setattr(power_trials, "bench", lambda *a, **k: pytest.fail("measured again"))
    earlier = tmp_path / "earlier.json"
    earlier.write_text('{"batch_s": 0.0446, "examples_per_s": 1435.0}')
    out = tmp_path / "series"
    assert power_trials.calibrate(out, 64, earlier) == 0.0446
    assert (out / "calibration.json").read_text() == earlier.read_text()
    assert power_trials.calibrate(out, 64) == 0.0446  # a later call reads the copy
    bad = {"{not json": "not a calibration file", '{"batch_s": -1}': "batch_s must be positive"}
    for text, said in bad.items():
        earlier.write_text(text)
        with pytest.raises(SystemExit, match=f"error: {re.escape(str(earlier))}: {said}"):
            power_trials.calibrate(out, 64, earlier)
    with pytest.raises(SystemExit, match="calibration file does not exist"):
        power_trials.calibrate(out, 64, tmp_path / "nowhere.json")


def test_a_yardstick_run_saves_each_variants_fraction_of_the_ceiling_round_by_round(tmp_path):
    import json
    import subprocess

    from bench_runner import small_data, suite_from_anywhere

    storage = tmp_path / "storage"
    thresholds = tmp_path / "t.toml"
    thresholds.write_text("[defaults]\nmax_yardstick_drop = 0.05\n")
    command = suite_from_anywhere("-k", "test_training or test_ceiling")
    command += ["--perf-variants", "prefetch", "--perf-latency", "none", "--perf-epochs", "1"]
    command += ["--perf-passes", "2", "--perf-yardstick", "--perf-epoch-pairs", "4"]
    command += ["--perf-data", str(small_data())]
    command += [f"--benchmark-storage=file://{storage}", f"--perf-thresholds={thresholds}"]
    first = subprocess.run([*command, "--benchmark-autosave"], capture_output=True, text=True)
    assert first.returncode in (0, 1), first.stdout[-3000:] + first.stderr[-3000:]
    assert "prefetch against ceiling, epoch by epoch: 4 rounds" in first.stdout
    (saved,) = storage.rglob("*.json")
    (info,) = [
        b["extra_info"]
        for b in json.loads(saved.read_text())["benchmarks"]
        if b["extra_info"].get("kind") == "training"
    ]
    ratios = info[YARDSTICK]["samples"]
    assert len(ratios) == 4 and all(0 < r < 2 for r in ratios)
    # A later run is judged on them against the saved one (here: the run against itself).
    saved_metrics = gates.load_saved_metrics(saved)
    loaded = gates.load_thresholds(thresholds)
    _, verdicts = compare.compare_with_baseline(loaded, saved_metrics, saved_metrics, "saved")
    (verdict,) = [v for v in verdicts if v.metric.name == YARDSTICK]
    assert verdict.outcome == "ok" and verdict.current == ratios
