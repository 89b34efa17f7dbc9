"""Span recording: in-graph stage times, the trainer's own spans, and no replays from a cache."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import tensorflow as tf

import models
import pipelines
from models.trainer import Trainer
from pipelines import sources
from pipelines.data.synthetic import CLASS_NAMES
from pipelines.element import ID
from pipelines.observing.timeline import Timeline, TimelineRecorder, merge_intervals
from pipelines.observing.tracing import SPANS, Stage, traced_shard_reader
from pipelines.steps import Batch, Cache, Map, Read

EXAMPLES, SHARDS, BATCH = 48, 3, 8
READ_S = 0.002


@pytest.fixture(scope="module")
def slow_source():
    images = np.random.default_rng(0).integers(0, 255, (EXAMPLES, 32, 32, 3), dtype=np.uint8)
    plain = sources.arrays_source(images, np.arange(EXAMPLES) % 10, num_shards=SHARDS)
    return sources.with_latency(plain, sources.Latency(open_s=0.01, read_s=READ_S))


def traced_run(variant: str, source, epochs: int = 2):
    dataset, stages, _ = pipelines.build_traced(variant, source, batch_size=BATCH)
    recorder = TimelineRecorder(stages)
    trainer = Trainer(models.build("tiny"))
    trainer.fit(dataset, epochs, test_ds=dataset, progress=False, recorder=recorder)
    return recorder.timeline()


@pytest.fixture(scope="module")
def cache_timeline(slow_source):
    return traced_run("cache", slow_source)


@pytest.fixture(scope="module")
def optimized_timeline(slow_source):
    return traced_run("optimized", slow_source)


def test_stages_follow_the_variants_steps(slow_source):
    _, stages, _ = pipelines.build_traced("naive", slow_source)
    names = ["open", "read", "generator", "map(decode+standardize)", "batch"]
    assert [s.name for s in stages] == names
    _, stages, _ = pipelines.build_traced("cache", slow_source)
    assert [s.name for s in stages] == ["open", "read", "map(decode)", "map(augment)", "batch"]
    _, stages, _ = pipelines.build_traced("optimized", slow_source)
    # Two batch steps (decode blocks, training batches): names stay unique.
    assert [s.name for s in stages] == [
        "open",
        "read",
        "batch",
        "map(decode)",
        "batch 2",
        "map(augment)",
    ]
    by_name = {s.name: s for s in stages}
    assert by_name["read"].parallel and by_name["map(decode)"].parallel
    assert by_name["map(augment)"].batched and by_name["map(decode)"].batched
    assert not by_name["read"].batched


def test_stamps_run_inline_and_skip_grappler(slow_source):
    # Through the inter-op pool a stamp costs several times more, and a
    # Grappler pass over it at every epoch's new iterator 2 to 3 ms (`stamp_map`).
    dataset, *_ = pipelines.build_traced("interleave", slow_source, batch_size=BATCH)
    graph = tf.compat.v1.GraphDef.FromString(dataset._as_serialized_graph().numpy())
    functions = {f.signature.name: f for f in graph.library.function}
    nodes = [*graph.node, *(n for f in functions.values() for n in f.node_def)]
    inline = [n for n in nodes if n.op == "MapDataset" and not n.attr["use_inter_op_parallelism"].b]
    # Read: numbered requests and the arrival stamp; batch: its requests and its close.
    assert len(inline) == 4
    # The attribute that makes tf.data instantiate a function for one device,
    # without Grappler: on the stamps, and only there (the variant's own maps
    # are instantiated as they are untraced).
    marked = {name for name, f in functions.items() if f.attr["experimental_ints_on_device"].b}
    assert marked == {n.attr["f"].func.name for n in inline}


def test_every_example_gets_its_stages_in_order(slow_source):
    dataset, stages, _ = pipelines.build_traced("naive", slow_source, batch_size=BATCH)
    batches = list(dataset)
    ids = np.concatenate([b["id"].numpy() for b in batches])
    assert sorted(ids) == list(range(EXAMPLES))
    spans = np.concatenate([b[SPANS].numpy() for b in batches])  # [examples, stages, 2]
    assert spans.shape == (EXAMPLES, len(stages), 2)
    names = [s.name for s in stages]
    opened = spans[:, names.index("open"), 0] > 0
    assert opened.sum() == SHARDS  # one open per shard: its first record
    # Each example's recorded stages end no later than the next one starts.
    for row in spans:
        recorded = row[row[:, 0] > 0]
        assert (recorded[:, 1] >= recorded[:, 0]).all()
        assert (recorded[1:, 0] >= recorded[:-1, 1] - 1e-6).all()
    reads = spans[~opened, names.index("read")]
    assert (reads[:, 1] - reads[:, 0] >= READ_S * 0.9).all()  # the read latency is in the span


def slow_to_make(source, seconds: float):
    """``source`` with a shard reader that takes ``seconds`` to make, before any record."""

    def read_shard(shard):
        made = tf.numpy_function(lambda: np.int64(time.sleep(seconds) or 0), [], tf.int64)
        return source.read_shard(shard).skip(made)

    return dataclasses.replace(source, read_shard=read_shard)


def traced_rows(source) -> dict[str, np.ndarray]:
    """Stage name -> its row of every example, ``[examples, 2]``, over a traced naive epoch."""
    dataset, stages, _ = pipelines.build_traced("naive", source, batch_size=BATCH)
    spans = np.concatenate([b[SPANS].numpy() for b in dataset])
    return {stage.name: spans[:, column] for column, stage in enumerate(stages)}


def test_a_shards_open_includes_making_its_reader(slow_source):
    # Many small files: tf.data makes a reader per file before asking it for a record.
    # A reader that takes 30 ms to make: its shard's open row holds those 30 ms.
    opens = traced_rows(slow_to_make(slow_source, 0.03))["open"]
    opens = opens[opens[:, 0] > 0]
    assert len(opens) == SHARDS
    assert (opens[:, 1] - opens[:, 0] >= 0.03 + 0.01 * 0.9).all()


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """An image folder: one file, so one record, per shard."""
    root = tmp_path_factory.mktemp("images")
    images = np.random.default_rng(1).integers(0, 255, (16, 32, 32, 3), dtype=np.uint8)
    sources.write_image_folder(root, "train", list(images), np.arange(16) % 10, CLASS_NAMES)
    return sources.image_folder_source(root, "train")


def dataset_ops_made(reader, source) -> list[str]:
    """The dataset ops one shard's ``reader`` makes."""
    spec = source.shard_dataset().element_spec
    graph = tf.function(reader).get_concrete_function(spec).graph
    return sorted(op.type for op in graph.get_operations() if op.type.endswith("Dataset"))


def test_a_file_per_image_is_traced_with_one_dataset_more_not_three(image_files):
    # Numbered requests zipped in front of each file cost about what reading a small one
    # does, so a source that says it holds one record per shard is stamped without them.
    assert image_files.one_record_per_shard
    untraced = dataset_ops_made(image_files.read_shard, image_files)
    assert untraced == ["TensorDataset"]
    one = dataset_ops_made(traced_shard_reader(image_files.read_shard, True), image_files)
    assert len(one) == 2 and "ZipDataset" not in one
    general = dataset_ops_made(traced_shard_reader(image_files.read_shard), image_files)
    assert "ZipDataset" in general and len(general) > 2


def test_a_file_per_image_has_its_open_timed_with_its_reader_and_no_read_row(image_files):
    # The open holds the making of the file's reader (here 20 ms), not only the read.
    rows = traced_rows(slow_to_make(image_files, 0.02))
    opens, reads = rows["open"], rows["read"]
    assert len(opens) == 16
    assert (opens[:, 0] > 0).all() and (reads[:, 0] < 0).all()
    assert (opens[:, 1] - opens[:, 0] >= 0.02 * 0.9).all()


@dataclasses.dataclass(frozen=True)
class Dawdle:
    """An untraced step that holds every example a while (as a filling shuffle buffer would)."""

    seconds: float

    def apply(self, ds, ctx):
        from pipelines.sources.latency import _sleep_dataset

        return ds.apply(_sleep_dataset(round(self.seconds * 1e6)))


def test_a_batch_span_holds_the_waits_no_traced_stage_accounts_for(slow_source):
    dawdle = 0.004
    steps = (Read(), Map(("decode",)), Cache(), Dawdle(dawdle), Batch())
    variant = pipelines.Variant("_dawdle", steps, pipelines.Contract())
    dataset, stages, _ = pipelines.build_traced(variant, slow_source, batch_size=BATCH)
    column = [s.name for s in stages].index("batch")
    list(dataset)  # the first epoch fills the cache
    for batch in dataset:  # cached: no traced stage before the batch, only the dawdling
        spans = batch[SPANS].numpy()
        rows = spans[:, column]
        assert (rows == rows[0]).all()  # one span for the whole batch
        start, end = rows[0]
        assert end - start >= len(rows) * dawdle  # every example's wait is in it
        assert start > spans[:, :column, 1].max()  # not the first epoch's old times


def test_the_trainer_records_waits_steps_and_tests(cache_timeline):
    steps = -(-EXAMPLES // BATCH)
    for epoch in (1, 2):
        assert len(cache_timeline.spans_of("train step", epoch)) == steps
        assert len(cache_timeline.spans_of("wait for input", epoch)) == steps
        assert len(cache_timeline.spans_of("test step", epoch)) == steps
        start, end = cache_timeline.epochs[epoch - 1]
        for span in cache_timeline.spans:
            if span.epoch == epoch:
                assert start - 1e-3 <= span.start <= span.end <= end + 1e-3, span


def test_a_cached_epoch_shows_no_open_read_or_map_before_the_cache(cache_timeline):
    for stage in ("open", "read", "map(decode)"):
        assert len(cache_timeline.spans_of(stage, 1)) > 0, stage
        assert cache_timeline.spans_of(stage, 2) == [], stage
    # After the cache the work is new each epoch: augment and batch still show.
    assert len(cache_timeline.spans_of("map(augment)", 2)) == EXAMPLES
    assert len(cache_timeline.spans_of("batch", 2)) == -(-EXAMPLES // BATCH)


def test_records_crossing_the_generator_are_stamped_one_by_one(slow_source):
    timeline = traced_run("naive", slow_source, epochs=1)
    ids = [i for span in timeline.spans_of("generator", 1) for i in span.ids]
    # One span per record crossing. (A few crossings made while the epoch's
    # iterator starts, before its clock does, are dropped as replays: 3 of 48 seen.)
    assert len(set(ids)) == len(ids) and set(ids) <= set(range(EXAMPLES))
    assert len(ids) >= 0.8 * EXAMPLES


def test_a_batched_stage_is_one_span_per_batch_with_its_examples(optimized_timeline):
    augments = optimized_timeline.spans_of("map(augment)", 1)
    assert len(augments) == EXAMPLES // BATCH  # drop_remainder
    assert all(len(span.ids) == BATCH for span in augments)
    # A decode block is shuffled into several training batches, and is still
    # one span: each trained example in exactly one block.
    decoded = [i for span in optimized_timeline.spans_of("map(decode)", 1) for i in span.ids]
    assert sorted(decoded) == sorted(i for span in augments for i in span.ids)
    assert len(optimized_timeline.spans_of("map(decode)", 1)) <= -(-EXAMPLES // BATCH) + SHARDS
    assert optimized_timeline.spans_of("map(decode)", 2) == []


def test_two_batched_calls_whose_rows_coincide_stay_two_spans():
    # tf.timestamp counts microseconds: two parallel calls on equal batches can
    # start and end in the same one. Their batches' rows still tell them apart.
    stages = (Stage("batch", "batch", batched=True), Stage("map(augment)", "map", True, True))
    recorder = TimelineRecorder(stages)
    recorder.start_epoch(1)
    now = time.time()
    for number, ids in enumerate(([0, 1], [2, 3])):
        batched = [now + number * 1e-3, now + number * 1e-3 + 1e-4]
        augmented = [now + 0.01, now + 0.02]  # the same for both calls
        spans = np.tile([[batched, augmented]], (len(ids), 1, 1))
        recorder.batch(1, {SPANS: tf.constant(spans), ID: tf.constant(ids)})
    recorder.end_epoch(1)
    timeline = recorder.timeline()
    assert sorted(span.ids for span in timeline.spans_of("map(augment)", 1)) == [(0, 1), (2, 3)]
    assert sorted(span.ids for span in timeline.spans_of("batch", 1)) == [(0, 1), (2, 3)]


def test_the_compact_form_keeps_busy_times_and_marks_epochs(cache_timeline):
    compact = cache_timeline.to_dict()
    assert [s["name"] for s in compact["stages"]][-3:] == [
        "wait for input",
        "train step",
        "test step",
    ]
    assert len(compact["epochs"]) == 2 and len(compact["busy_s"]) == 2
    assert compact["busy_s"][0]["read"] > 0 and compact["busy_s"][1]["read"] == 0
    assert all(epoch == 1 for _, _, epoch in compact["bars"]["open"])
    assert compact["busy_s"][0]["train step"] == pytest.approx(
        sum(s.duration for s in cache_timeline.spans_of("train step", 1))
    )


def test_merging_intervals_joins_overlaps_and_small_gaps():
    assert merge_intervals([(3, 4), (0, 1), (0.5, 2)]) == [(0, 2), (3, 4)]
    assert merge_intervals([(0, 1), (1.05, 2)], gap=0.1) == [(0, 2)]


def pipeline_timeline(variant: str, source) -> Timeline:
    """One traced epoch of ``variant`` with no model: the pipeline runs as fast as it can."""
    dataset, stages, _ = pipelines.build_traced(variant, source, batch_size=BATCH)
    recorder = TimelineRecorder(stages)
    recorder.start_epoch(1)
    for batch in dataset:
        recorder.batch(1, batch)
    recorder.end_epoch(1)
    return recorder.timeline()


def test_peak_concurrency_tells_parallel_maps_from_sequential_ones(slow_source):
    """The figure the map-parallelism gate reads, measured on real traced runs."""
    from trials.inject import regressed

    # Without latency or a model, inputs are always ready: parallel calls overlap.
    images = np.random.default_rng(1).integers(0, 255, (512, 32, 32, 3), dtype=np.uint8)
    fast_source = sources.arrays_source(images, np.arange(512) % 10, num_shards=4)
    # Overlap needs two calls running at once: on a loaded two-core machine the
    # autotuner may run one at a time for a whole epoch, so the parallel maps get
    # three tries; a sequential map never overlaps, however often it runs.
    for _ in range(3):
        parallel = pipeline_timeline("optimized", fast_source).peak_concurrency()
        if max(parallel["map(decode)"], parallel["map(augment)"]) >= 2:
            break
    sequential = pipelines.register(
        dataclasses.replace(regressed("serial_map", pipelines.get("optimized")), name="_serial")
    )
    try:
        serial = pipeline_timeline(sequential.name, fast_source).peak_concurrency()
    finally:
        pipelines.unregister(sequential.name)
    # The gate reads the most concurrent map (decode runs in blocks, augment per batch).
    assert max(parallel["map(decode)"], parallel["map(augment)"]) >= 2
    assert traced_run("optimized", slow_source, epochs=1).peak_concurrency()["open"] >= 2
    assert serial["map(decode)"] == serial["map(augment)"] == 1


def test_percentiles_and_counts_of_the_compact_form(cache_timeline):
    compact = cache_timeline.to_dict()
    reads = [s.duration for s in cache_timeline.spans_of("read")]
    assert compact["span_count"]["read"] == len(reads) == EXAMPLES - SHARDS  # firsts are opens
    assert compact["p10_s"]["read"] == pytest.approx(float(np.percentile(reads, 10)))
    assert compact["p10_s"]["read"] >= READ_S  # the read latency is inside the span
    assert compact["peak_concurrency"]["read"] == 1  # the cache variant reads one shard at a time
