"""The registry: every variant builds on every source kind; misfits fail naming the step."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tensorflow as tf

import pipelines
from pipelines import DataError, UsageError, Variant, sources
from pipelines.steps import TRANSFORMS, Batch, Map, Read, Shuffle, Unbatch, register_transform
from pipelines.variants import SEED_VARIANTS

# A minute or more in all: the test job starts this module first (conftest.py).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def source_kinds(tiny_dataset) -> dict[str, sources.Source]:
    images = np.stack(
        [e["image"] for e in tiny_dataset.source("cifar", "test").records().as_numpy_iterator()]
    )
    images = images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = np.arange(len(images)) % 10
    return {
        "memory": sources.arrays_source(images, labels, num_shards=2),
        "generator": sources.generator_source(
            lambda: zip(images, labels, strict=True),
            num_examples=len(images),
            image_shape=(32, 32, 3),
            num_classes=10,
        ),
        "image_folder": tiny_dataset.source("image_folder", "test"),
        "cifar": tiny_dataset.source("cifar", "test"),
        "tfrecord": tiny_dataset.source("tfrecord", "test"),
    }


def test_the_seed_variants_are_registered():
    expected = {
        "naive",
        "augmented",
        "optimized",
        "prefetch",
        "interleave",
        "parallel_map",
        "cache",
        "vectorized_map",
        "shuffle_batch",
        "batch_shuffle",
        "batch_repeat",
        "repeat_batch",
        "shuffle_repeat",
        "repeat_shuffle",
    }
    assert expected <= set(pipelines.VARIANTS)


KINDS = ["memory", "generator", "image_folder", "cifar", "tfrecord"]
LOCAL = [v.name for v in SEED_VARIANTS if not v.served]
SERVED = [v.name for v in SEED_VARIANTS if v.served]
# Sources whose reading runs Python, which a tf.data service worker cannot run.
PYTHON_KINDS = {"generator", "cifar"}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", LOCAL)
def test_every_variant_builds_and_yields_batches_on_every_source_kind(source_kinds, kind, name):
    assert_yields_batches(
        pipelines.build(name, source_kinds[kind], batch_size=8), source_kinds[kind]
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", SERVED)
def test_service_variants_build_on_every_source_their_workers_can_run(
    source_kinds, kind, name, local_data_service
):
    source = source_kinds[kind]
    options = {"batch_size": 8, "service": local_data_service.address}
    if kind in PYTHON_KINDS:
        with pytest.raises(DataError, match=r"step 3 \(distribute\(\w+\)\): the steps before"):
            pipelines.build(name, source, **options)
        return
    assert_yields_batches(pipelines.build(name, source, **options), source)


def assert_yields_batches(ds, source) -> None:
    batch = next(iter(ds))
    assert batch["image"].dtype == tf.float32
    assert tuple(batch["image"].shape[1:]) == source.image_shape
    assert batch["label"].shape == batch["id"].shape == (batch["image"].shape[0],)


def test_an_unknown_variant_lists_the_known_ones(source_kinds):
    with pytest.raises(
        UsageError, match=r"^variant 'fastest': unknown variant; known variants: naive, "
    ):
        pipelines.build("fastest", source_kinds["memory"])


@pytest.mark.parametrize("kind", ["tfrecord", "image_folder", "cifar", "memory"])
def test_decoding_in_blocks_gives_the_examples_decoding_one_at_a_time_gives(source_kinds, kind):
    # Encoded images (tfrecord, image folder) decode in a loop inside one call;
    # raw pixels (cifar, memory) decode vectorized. Either way: the same examples.
    contract = pipelines.Contract()
    one_at_a_time = Variant("decode_each", (Read(), Map(("decode",)), Batch()), contract)
    in_blocks = Variant(
        "decode_blocks",
        (Read(), Batch(size=3), Map(("decode",)), Unbatch(), Batch()),
        contract,
    )

    def examples(variant: Variant) -> dict[int, np.ndarray]:
        ds = pipelines.build(variant, source_kinds[kind], batch_size=8).unbatch()
        return {int(e["id"]): (e["image"], int(e["label"])) for e in ds.as_numpy_iterator()}

    expected, got = examples(one_at_a_time), examples(in_blocks)
    assert sorted(got) == sorted(expected) == list(range(source_kinds[kind].num_examples))
    for i, (image, label) in expected.items():
        assert got[i][1] == label
        np.testing.assert_array_equal(got[i][0], image)


def test_unbatching_examples_fails_naming_the_step(source_kinds):
    misfit = Variant("unbatch_early", (Read(), Map(("decode",)), Unbatch()), pipelines.Contract())
    with pytest.raises(
        DataError,
        match=r"^variant 'unbatch_early' step 3 \(unbatch\): elements are not batched$",
    ):
        pipelines.build(misfit, source_kinds["tfrecord"])


def test_a_variant_without_decode_fails_naming_the_problem(source_kinds):
    undecoded = Variant("raw", (Read(), Batch()), pipelines.Contract())
    with pytest.raises(DataError, match=r"^variant 'raw': yields images string .*missing decode"):
        pipelines.build(undecoded, source_kinds["tfrecord"])


def test_an_unknown_transform_fails_naming_the_step(source_kinds):
    typo = Variant("typo", (Read(), Map(("decod",)), Batch()), pipelines.Contract())
    with pytest.raises(
        DataError, match=r"^variant 'typo' step 2 \(map\(decod, sequential\)\): unknown transform"
    ):
        pipelines.build(typo, source_kinds["memory"])


def test_variants_registered_from_outside_are_built_by_name(source_kinds):
    extra = Variant(
        "outside",
        (Read(parallel=True), Map(("decode",)), Shuffle(), Batch()),
        pipelines.Contract(shuffle="elements"),
    )
    pipelines.register(extra)
    try:
        assert pipelines.VARIANTS["outside"] is extra
        assert next(iter(pipelines.build("outside", source_kinds["memory"], batch_size=4)))[
            "id"
        ].shape == (4,)
        with pytest.raises(ValueError, match="already registered"):
            pipelines.register(extra)
    finally:
        pipelines.unregister("outside")
    assert "outside" not in pipelines.VARIANTS


def test_a_variant_must_start_by_reading():
    with pytest.raises(ValueError, match="must start with a read step"):
        pipelines.register(Variant("no_read", (Batch(),), pipelines.Contract()))


def test_no_seed_variant_caches_after_its_random_augmentation():
    # The lab's pitfall: a cache after augmentation freezes it. A seed variant
    # that did so on purpose would have to say "frozen" in its contract.
    for variant in SEED_VARIANTS:
        names = [str(step) for step in variant.steps]
        augment_at = next((i for i, n in enumerate(names) if "augment" in n), None)
        cache_at = next((i for i, n in enumerate(names) if n.startswith("cache")), None)
        if augment_at is not None and cache_at is not None and cache_at > augment_at:
            assert variant.contract.augmentation == "frozen", variant.name


def test_sequential_maps_stay_sequential_timed_and_traced(source_kinds):
    # tf.data's map_parallelization would run a stateless Map(parallel=False) in
    # parallel, in timed builds only (a traced map's stamps are stateful): the
    # timed pipeline would not be the one its timeline describes.
    timed = pipelines.build("augmented", source_kinds["memory"])
    traced, *_ = pipelines.build_traced("augmented", source_kinds["memory"])
    for ds in (timed, traced):
        assert ds.options().experimental_optimization.map_parallelization is False


@pytest.mark.parametrize("traced", [False, True], ids=["timed", "traced"])
def test_a_pipeline_without_prefetch_reads_nothing_ahead(source_kinds, traced):
    # tf.data would add a prefetch after a synchronous last step
    # (inject_prefetch) and fuse a map and the batch after it into an op that
    # computes batches in the background (map_and_batch_fusion): `augmented`
    # would read ahead while the model trains, as `prefetch` does. A counting
    # map tells how many examples were read.
    counter = tf.Variable(0, dtype=tf.int64)

    def counting(ctx, batched):
        def count(record, seed):
            with tf.control_dependencies([counter.assign_add(1)]):
                return {key: tf.identity(value) for key, value in record.items()}

        return count

    register_transform("count_reads", counting)
    try:
        variant = Variant(
            "counted", (Read(), Map(("decode", "count_reads")), Batch(size=4)), pipelines.Contract()
        )
        source = source_kinds["memory"]
        ds = (
            pipelines.build_traced(variant, source)[0]
            if traced
            else pipelines.build(variant, source)
        )
        iterator = iter(ds)
        next(iterator)
        # A pipeline that reads ahead reads the next batch within this time.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and int(counter.numpy()) == 4:
            time.sleep(0.05)
        assert int(counter.numpy()) == 4
    finally:
        TRANSFORMS.pop("count_reads", None)


@pytest.mark.parametrize("kind", KINDS)
def test_check_fits_says_which_variants_a_source_can_run_without_a_dispatcher(source_kinds, kind):
    source = source_kinds[kind]
    pipelines.check_fits("naive", source)
    if kind in PYTHON_KINDS:
        with pytest.raises(DataError, match=r"step 3 \(distribute\(\w+\)\): the steps before"):
            pipelines.check_fits("distributed", source)
    else:
        pipelines.check_fits("distributed", source)  # no dispatcher asked, none needed


def test_a_contract_takes_its_earlier_keywords_for_repeats():
    import dataclasses

    from pipelines import Contract

    earlier = Contract(passes=2, mixes_passes=True, passes_per_worker=True)
    assert earlier == Contract(repeats=2, mixes_repeats=True, repeats_per_worker=True)
    assert earlier.total_repeats(workers=3) == 6
    # A copy keeps the repeats (the earlier keywords are not fields to carry over).
    assert dataclasses.replace(earlier, shuffle="elements").repeats == 2
