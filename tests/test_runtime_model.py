"""tf.data's runtime model read during an epoch: nodes kept, stages named, choices seen."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import tensorflow as tf

import pipelines
from benchmarks.diagnosing.runtime_view import runtime_line, runtime_view
from models.stand_in import StandIn, StepTime
from pipelines.checks.tagged import tagged_source
from pipelines.observing import runtime_model
from pipelines.observing.runtime_model import (
    EVERY_BATCHES,
    SAMPLE_BUDGET,
    EpochSampler,
    Legend,
    RuntimeUnavailable,
    _subtree,
    read_model,
)
from pipelines.observing.timeline import TimelineRecorder
from pipelines.sources.latency import Latency, with_latency
from pipelines.steps import (
    Batch,
    Cache,
    Map,
    Prefetch,
    Read,
    Shuffle,
    Unbatch,
    register_transform,
)
from pipelines.variants import Contract, Variant
from trials import runtime_trials

PASSES = 60  # the planted stage's cost: enough to stand far above the rest


def _costly(ctx, batched):
    """A planted slow transform: many small blurs of each image."""

    def transform(record, seed):
        image = record["image"] if batched else record["image"][tf.newaxis]
        for _ in range(PASSES):
            image = tf.nn.avg_pool2d(image, 3, 1, "SAME")
        return {**record, "image": image if batched else image[0]}

    return transform


register_transform("_test_costly", _costly)


def planted(*, parallel_read: bool = False, prefetch: int | None = None) -> Variant:
    """Read, decode, a planted slow sequential map, batch (and a prefetch)."""
    steps = (
        Read(parallel=parallel_read, deterministic=False),
        Map(("decode",)),
        Map(("_test_costly",)),
        Batch(),
        *([Prefetch(prefetch)] if prefetch is not None else []),
    )
    return Variant("planted", steps, Contract(deterministic=not parallel_read))


def sampled(dataset: tf.data.Dataset, epochs: int = 1, every: int = 1):
    """Each epoch's runtime model, read after every ``every``-th batch."""
    models = []
    for _ in range(epochs):
        iterator = iter(dataset)
        sampler = EpochSampler(iterator, budget=1.0)
        for number, _ in enumerate(iterator, start=1):
            if number % every == 0:
                sampler.sample()
        models.append(sampler.finish())
    return models


def legend_of(variant: Variant, source) -> Legend:
    return pipelines.legend(variant, source, batch_size=8)


def test_nodes_gone_before_the_epoch_ended_are_kept_and_marked():
    dataset = tf.data.Dataset.range(200).map(lambda x: x + 1).shuffle(50, seed=1).batch(10)
    # Without the prefetch tf.data would add after the batch: its buffer, autotuned, grew
    # under a loaded machine's waits and let the map run ahead (197 elements made by the
    # last reading in CI, 169 to 173 here on an idle one; 169 every time without it).
    options = tf.data.Options()
    options.experimental_optimization.inject_prefetch = False
    dataset = dataset.with_options(options)
    iterator = iter(dataset)
    for _ in iterator:
        pass
    # Read once at the end, the model has lost everything below the batch.
    left = {node.name for node in read_model(iterator).nodes.values()}
    assert left <= {"Root", "BatchV2"}
    # Read after batches 6, 12 and 18 (the map is done before 18: it runs 50 ahead).
    (model,) = sampled(dataset, every=6)
    # tf.data runs the map in parallel on its own (map_parallelization).
    by_op = {node.op.removeprefix("Parallel"): node for node in model.nodes.values()}
    assert {"Root", "Batch", "Shuffle", "Map", "Range"} <= set(by_op)
    assert by_op["Map"].removed and by_op["Shuffle"].removed and not by_op["Batch"].removed
    assert model.readings == 4  # and once at the end
    # What the map did after its last reading is estimated from its consumer: 10 a batch.
    mapped = by_op["Map"]
    (map_stage,) = [stage for stage in model.stages() if stage.kind == "map"]
    assert mapped.elements < 190 and map_stage.seen_s > 0
    # Its work (the range below it counts with it): what each was seen to do, and the
    # elements of the 200 the shuffle's consumer asked for (20 batches of 10) that no
    # reading saw it make, at its time per element between readings.
    work = sum(
        by_op[op].processing_s + (200 - by_op[op].elements) * by_op[op].rate_s
        for op in ("Map", "Range")
    )
    assert by_op["Map"].grown > 0 and by_op["Map"].rate_s > 0
    assert map_stage.busy_s == pytest.approx(work / mapped.parallelism, rel=1e-3)
    assert map_stage.seen_s == pytest.approx(
        (mapped.processing_s + by_op["Range"].processing_s) / mapped.parallelism, rel=1e-3
    )


def test_the_planted_slow_map_is_the_busiest_stage_and_named_as_the_variant_names_it():
    source = tagged_source(96, num_shards=4)
    variant = planted()
    legend = legend_of(variant, source)
    models = sampled(pipelines.build(variant, source, batch_size=8), epochs=2)
    for model in models:
        stages = {stage.name: stage for stage in model.stages(legend)}
        assert set(stages) == {"open", "read", "map(decode)", "map(_test_costly)", "batch"}
        busiest = max(stages.values(), key=lambda stage: stage.busy_s)
        assert busiest.name == "map(_test_costly)"
        assert "Map" in busiest.ops and busiest.parallelism == 1
    # Without the legend, stages are called by their kind, numbered where it repeats.
    assert [s.name for s in models[0].stages()] == ["open", "read", "map #1", "map #2", "batch"]


def test_a_functions_maps_are_named_and_its_identity_map_is_known_to_be_dropped():
    def sharpened(ds, params):
        ds = ds.map(lambda image, label: (image * 2.0, label))
        ds = ds.map(lambda image, label: (image, label))  # tf.data would drop it
        return ds.batch(params.batch_size)

    variant = pipelines.function_variant(sharpened, Contract(), name="sharpened")
    source = tagged_source(48)
    traced = pipelines.build_traced(variant, source, batch_size=8)
    identity = f"map(lambda@{sharpened.__code__.co_firstlineno + 2})"
    assert [s.name for s in traced.stages if s.elided] == [identity]
    legend = legend_of(variant, source)
    assert "map(decode)" not in dict(legend.names)  # it runs inside the reads
    (model,) = sampled(pipelines.build(variant, source, batch_size=8))
    names = [stage.name for stage in model.stages(legend) if stage.kind == "map"]
    # The user's doubling map; the records are made by a map of the suite's after it.
    doubling = f"map(lambda@{sharpened.__code__.co_firstlineno + 1})"
    assert names in ([doubling], [doubling, "map #2"])


def test_what_autotune_and_the_code_set_is_read_and_a_change_is_seen():
    source = tagged_source(64, num_shards=4)

    def choices(variant: Variant) -> dict[str, tuple[dict, tuple]]:
        (model,) = sampled(pipelines.build(variant, source, batch_size=8))
        return {
            s.name: (dict(s.choices), s.tuned) for s in model.stages(legend_of(variant, source))
        }

    auto = choices(planted(prefetch=-1))  # tf.data.AUTOTUNE is -1
    values, tuned = auto["prefetch"]
    assert tuned == ("buffer_size",) and values["buffer_size"] >= 1
    # A flat_map's one file at a time is no one's choice; the reads' are their opener's.
    assert auto["open"] == auto["read"] == ({}, ())
    fixed = choices(planted(prefetch=5))
    assert fixed["prefetch"] == ({"buffer_size": 5.0}, ())
    # An interleave's readers are set by the suite (one per file in flight), not tuned.
    interleaved = choices(planted(parallel_read=True))
    values, tuned = interleaved["open"]
    assert values["parallelism"] == values["cycle_length"] == 4 and "parallelism" not in tuned
    assert interleaved["read"] == ({}, ())


def test_a_simulated_storage_latency_is_counted_with_the_open_and_the_read():
    source = with_latency(tagged_source(64, num_shards=4), "open=20ms,read=2ms")
    variant = planted()
    (model,) = sampled(pipelines.build(variant, source, batch_size=8))
    legend = legend_of(variant, source)  # with the source's latency
    counted = {s.name: s for s in model.stages(legend)}
    without = {s.name: s for s in model.stages(dataclasses.replace(legend, waits=Latency()))}
    # tf.data's model does not see a sleeping reader; the legend's waits add it back:
    # 4 files opened, 64 records and each file's end read.
    assert counted["open"].busy_s - without["open"].busy_s == pytest.approx(4 * 0.020)
    assert counted["read"].busy_s - without["read"].busy_s == pytest.approx((64 + 4) * 0.002)
    assert "storage read latency" in counted["read"].ops


def test_without_the_call_or_with_autotune_off_one_line_says_why(monkeypatch):
    off = tf.data.Options()
    off.autotune.enabled = False
    dataset = tf.data.Dataset.range(10).batch(5).with_options(off)
    with pytest.raises(RuntimeUnavailable, match="autotune is off") as caught:
        read_model(iter(dataset))
    assert "\n" not in str(caught.value)
    source = tagged_source(32)
    trainer = StandIn(StepTime(0.0, "test"))
    built = pipelines.build(planted(), source, batch_size=8)
    monkeypatch.delattr(tf.data.experimental, "get_model_proto")
    (stats,) = trainer.fit(built, 1, runtime=True, progress=False)
    assert stats.runtime is None and "2.17" in stats.runtime_missing
    line = runtime_line("planted", {"runtime_missing": stats.runtime_missing}, None)
    assert line.startswith("planted: no runtime statistics (TensorFlow") and "\n" not in line
    # The traced view does not need it.
    traced = pipelines.build_traced(planted(), source, batch_size=8)
    recorder = TimelineRecorder(traced.stages, traced.log)
    trainer.fit(traced.dataset, 1, recorder=recorder, progress=False)
    assert recorder.timeline().span_count()["map(_test_costly)"] == 32


def test_a_timed_epoch_reads_the_model_only_when_asked():
    source = tagged_source(64, num_shards=4)
    trainer = StandIn(StepTime(0.001, "test"))
    built = pipelines.build(planted(), source, batch_size=8)
    (plain,) = trainer.fit(built, 1, progress=False)
    assert plain.runtime is None and plain.runtime_missing == ""
    (read,) = trainer.fit(built, 1, runtime=True, progress=False)
    assert read.runtime is not None and read.runtime.readings >= 2
    view = runtime_view([[read]], legend_of(planted(), source)).to_dict()
    assert view["limiting"] == "map(_test_costly)"


def sampled_on_a_clock(
    monkeypatch: pytest.MonkeyPatch, batches: int, budget: float, first_s: float, read_s: float
) -> tuple[EpochSampler, float]:
    """A sampler asked after each of ``batches`` batches of 10 ms on a clock of its own,
    each reading taking ``read_s`` (the first ``first_s``): (the sampler, the time spent)."""
    clock = [0.0]

    def read(iterator):
        clock[0] += first_s if not sampler.readings else read_s
        return SimpleNamespace(output=1, nodes={})

    monkeypatch.setattr(runtime_model, "read_model", read)
    monkeypatch.setattr(runtime_model, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    sampler = EpochSampler(iter(()), budget=budget)
    for _ in range(batches):
        clock[0] += 0.010
        sampler.sample()
    return sampler, clock[0]


def test_with_no_budget_the_model_is_read_first_and_then_every_few_batches(monkeypatch):
    sampler, _ = sampled_on_a_clock(monkeypatch, 64, budget=0.0, first_s=0.004, read_s=0.001)
    # The first, the second (nothing counted is spent yet), then one every few batches.
    assert sampler.readings == 2 + (64 - 2) // EVERY_BATCHES


def test_the_readings_after_the_first_cost_at_most_their_budget_of_the_epoch(monkeypatch):
    # The first reading costs five times the whole budget: it is not counted.
    sampler, elapsed = sampled_on_a_clock(
        monkeypatch, 400, budget=SAMPLE_BUDGET, first_s=0.05, read_s=0.001
    )
    later = sampler.readings - 1
    assert later * 0.001 == pytest.approx(SAMPLE_BUDGET * elapsed, abs=0.002)


def test_reads_consumed_before_the_first_batch_are_seen_while_it_is_made():
    # A shuffle buffer larger than the data: every read and decode is done, and its nodes
    # removed, before the first batch comes out.
    source = with_latency(tagged_source(64, num_shards=4), "open=20ms,read=1ms")
    steps = (Read(), Map(("decode",)), Shuffle(buffer=1000), Batch())
    variant = Variant("shuffled", steps, Contract(shuffle="elements"))
    trainer = StandIn(StepTime(0.001, "test"))
    built = pipelines.build(variant, source, batch_size=8)
    (stats,) = trainer.fit(built, 1, runtime=True, progress=False)
    stages = {stage.name for stage in stats.runtime.stages(legend_of(variant, source))}
    assert {"open", "read", "map(decode)", "shuffle", "batch"} <= stages


def test_an_epoch_served_by_a_cache_names_what_is_left_after_the_variant():
    # As `optimized` has it: decoded in batches, cached, batched again, augmented.
    source = tagged_source(64, num_shards=4)
    steps = (
        Read(),
        Batch(),
        Map(("decode",)),
        Unbatch(),
        Cache(),
        Batch(),
        Map(("_test_costly",)),
        Prefetch(),
    )
    variant = Variant("cached", steps, Contract())
    first, later = sampled(pipelines.build(variant, source, batch_size=8), epochs=2)
    legend = legend_of(variant, source)
    named = ["open", "read", "batch", "map(decode)", "cache", "batch 2", "map(_test_costly)"]
    assert [s.name for s in first.stages(legend) if s.kind != "prefetch"] == named
    # Nothing below the cache runs: what is left is named after the variant's last stages.
    assert [s.name for s in later.stages(legend)] == [
        "cache",
        "batch 2",
        "map(_test_costly)",
        "prefetch",
    ]


def test_the_planted_stage_trials_name_a_planted_serial_map(capsys):
    assert (
        runtime_trials.main(["--trials", "1", "--plants", "serial_map", "--profile", "check"]) == 0
    )
    said = capsys.readouterr().out
    assert "serial_map: the runtime statistics name map(_inject_blur) in 1 of 1;" in said
    assert "they agree with the timeline over epoch 1 in 1 of 1" in said


def test_readers_no_reading_saw_each_cost_what_a_seen_one_did():
    source = tagged_source(96, num_shards=12)
    # Batches of 5 across shards of 8: the readers seen are seen part way through.
    (model,) = sampled(pipelines.build(planted(), source, batch_size=5), every=3)
    (opener,) = [node for node in model.nodes.values() if node.op == "FlatMap"]
    roots = [model.nodes[i] for i in opener.inputs[1:] if i in model.nodes]
    assert 0 < len(roots) < 12  # a shard of 8 records is done within a batch or two
    seen = sum(node.processing_s for i in opener.inputs[1:] for node in _subtree(model.nodes, i))
    (read,) = [stage for stage in model.stages() if stage.kind == "read"]
    assert read.seen_s == pytest.approx(seen)
    assert read.busy_s == pytest.approx(seen * 12 / len(roots))
