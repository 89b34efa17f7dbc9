"""A pipeline written as a plain function: registered with its contract, checked, traced, sized."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from bench_runner import ROOT, small_data

import pipelines
from benchmarks.diagnosing import verify
from benchmarks.diagnosing.bottleneck import StageTimes, analyze
from pipelines import BuildParams, Contract
from pipelines.checks.contract import ContractViolation, check_variant
from pipelines.checks.tagged import decode_ids, tagged_source
from pipelines.functions import function_variant
from pipelines.observing.timeline import TimelineRecorder
from pipelines.plugins import load_plugin
from pipelines.steps import fit_to

# A minute or more in all: the test job starts this module first (conftest.py).
pytestmark = pytest.mark.slow

LAB = ROOT / "examples" / "lab"


def shuffled(ds: tf.data.Dataset, params: BuildParams) -> tf.data.Dataset:
    """Shuffle, batch: the user's own, in tuples."""
    return ds.shuffle(params.shuffle_buffer, seed=params.seed).batch(params.batch_size)


def unseeded(ds: tf.data.Dataset, params: BuildParams) -> tf.data.Dataset:
    """Shuffles with a seed of its own, whatever the build's: a real user's slip."""
    return ds.shuffle(params.shuffle_buffer, seed=7).batch(params.batch_size)


def in_dicts(ds: tf.data.Dataset, params: BuildParams) -> tf.data.Dataset:
    return ds.map(lambda e: {"image": 0.5 * e["image"], "label": e["label"]}).batch(
        params.batch_size, drop_remainder=True
    )


@pytest.fixture
def registered():
    """Register function variants for one test; remove them after."""
    names = []

    def add(variant: pipelines.Variant) -> pipelines.Variant:
        names.append(variant.name)
        return pipelines.register(variant, replace=True)

    yield add
    for name in names:
        pipelines.unregister(name)


def test_a_function_registers_with_its_contract_and_keeps_it_in_tuples_or_dicts(registered):
    variant = registered(function_variant(shuffled, Contract(shuffle="elements")))
    assert variant.name == "shuffled"
    assert variant.description == "Shuffle, batch: the user's own, in tuples."
    assert variant.describe() == "function(shuffled)"
    check_variant(variant, 60, 3, 7, seed=1)
    check_variant(
        registered(function_variant(in_dicts, Contract(drop_remainder=True), elements="dict")),
        50,
        2,
        8,
        seed=2,
    )


def test_the_decorator_registers_under_the_functions_name(registered):
    pipelines.pipeline(Contract(shuffle="elements"), name="user_shuffled")(shuffled)
    registered(pipelines.get("user_shuffled"))  # removed after the test
    batch = next(iter(pipelines.build("user_shuffled", tagged_source(20), batch_size=5)))
    # No id is carried; the tagged images still say which example each one is.
    assert set(batch) == {"image", "label"}
    assert sorted(decode_ids(batch["image"].numpy())) == sorted(set(decode_ids(batch["image"])))


@pytest.mark.parametrize(
    ("contract", "prop"),
    [
        # Promises the build's seed is used; it shuffles with its own.
        (Contract(shuffle="elements"), "seed"),
        # Promises source order; it shuffles.
        (Contract(), "order"),
    ],
)
def test_the_contract_checks_follow_a_function_without_ids(registered, contract, prop):
    variant = registered(function_variant(unseeded, contract))
    with pytest.raises(ContractViolation) as caught:
        check_variant(variant, 60, 2, 7, seed=1)
    assert caught.value.prop == prop


def test_a_function_that_pairs_the_wrong_label_is_caught(registered):
    def relabelled(ds, params):
        return ds.map(lambda image, label: (image, (label + 1) % 10)).batch(params.batch_size)

    with pytest.raises(ContractViolation, match="pairing"):
        check_variant(registered(function_variant(relabelled, Contract())), 30, 1, 8, seed=0)


def one_argument(element):
    """A map function written for one element where the run's are (image, label) pairs."""
    return element


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (lambda ds, params: ds.bach(4), "AttributeError: '"),
        (lambda ds, params: [1, 2], "it returned list, not a tf.data.Dataset"),
        (lambda ds, params: ds.map(lambda x, y: (x, y, y)).batch(4), "expected batches of"),
        (
            lambda ds, params: ds.map(lambda x, y: (x, tf.one_hot(y, 10))).batch(4),
            "(one-hot?): yield class indices",
        ),
        (lambda ds, params: ds.batch(4), "the run's are float32 (8, 8, 3)"),
        # Raised inside the traced map: the cause, not TensorFlow's "in user code:".
        (lambda ds, params: ds.map(one_argument), "takes 1 positional argument"),
    ],
)
def test_a_function_that_cannot_run_is_one_line_naming_it(function, message):
    variant = function_variant(function, Contract(), name="broken")
    with pytest.raises(pipelines.DataError) as caught:
        pipelines.check_fits(variant, tagged_source(20), image_size=(8, 8))
    assert str(caught.value).startswith("variant 'broken'")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_function_crops_to_the_runs_image_size_and_the_decode_fits_the_rest():
    def cropped(ds, params):
        def crop(image, label):
            return tf.image.random_crop(image, (*params.image_size, 3), seed=1), label

        return ds.map(crop).batch(params.batch_size)

    source = tagged_source(20)
    batch = next(
        iter(pipelines.build(function_variant(cropped, Contract()), source, image_size=(8, 8)))
    )
    assert batch["image"].shape[1:] == (8, 8, 3)
    # The crop keeps the example's code at the centre of what is left.
    assert set(decode_ids(batch["image"].numpy())) <= set(range(20))
    # A variant made of steps: its decode centre-crops (or pads) to the size.
    for size in [(8, 8), (16, 16)]:
        batch = next(iter(pipelines.build("naive", source, image_size=size)))
        assert batch["image"].shape[1:] == (*size, 3)
    image = tf.reshape(tf.range(16.0), (4, 4, 1))
    np.testing.assert_array_equal(fit_to(image, (2, 2, 1))[..., 0], [[5, 6], [9, 10]])


def slow_sharpen(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """A user's own slow step: many small blurs, one example per call."""
    for _ in range(80):
        image = tf.nn.avg_pool2d(image[tf.newaxis], 3, 1, "SAME")[0]
    return image, label


def sharpened(ds: tf.data.Dataset, params: BuildParams) -> tf.data.Dataset:
    """The planted bottleneck, inside plain tf.data code."""
    ds = ds.map(slow_sharpen).map(lambda image, label: (image, label))
    return ds.batch(params.batch_size).prefetch(1)


def interleaved(ds: tf.data.Dataset, params: BuildParams) -> tf.data.Dataset:
    """Reads the shards itself, several at once."""
    ds = params.shards.interleave(params.read_shard, cycle_length=2, num_parallel_calls=2)
    return ds.batch(params.batch_size, drop_remainder=True)


def _traced_epochs(variant: pipelines.Variant, source, epochs: int) -> TimelineRecorder:
    dataset, stages, log = pipelines.build_traced(variant, source, batch_size=8)
    recorder = TimelineRecorder(stages, log)
    for epoch in range(1, epochs + 1):
        recorder.start_epoch(epoch)
        for batch in dataset:
            assert "spans" not in batch  # the user's elements are left as they are
            recorder.batch(epoch, batch)
        recorder.end_epoch(epoch)
    return recorder


def test_tracing_sees_inside_a_function_names_its_slow_map_and_can_parallelize_it():
    variant = function_variant(sharpened, Contract())
    source = tagged_source(48)
    untraced_steps = (pipelines.build(variant, source, batch_size=8), variant.describe())[1]
    recorder = _traced_epochs(variant, source, epochs=2)
    stages = recorder.pipeline_stages
    assert [(s.name, s.kind, s.observed) for s in stages] == [
        ("open", "open", True),
        ("read", "read", True),
        ("map(decode)", "map", True),
        ("map(slow_sharpen)", "map", True),
        (f"map(lambda@{sharpened.__code__.co_firstlineno + 2})", "map", True),
        ("batch", "batch", True),
    ]
    # The stamps a traced build adds are not steps of the user's.
    assert (
        variant.describe()
        == untraced_steps
        == "function(sharpened: map -> map -> batch -> prefetch)"
    )
    timeline = recorder.timeline()
    counts = timeline.span_count()
    assert counts["map(slow_sharpen)"] == counts["map(decode)"] == 2 * 48
    assert counts["batch"] == 2 * 6 and counts["open"] == 2
    for epoch in (1, 2):
        assert all(
            start <= span.start <= span.end <= end + 1e-3
            for span in timeline.spans
            if span.epoch == epoch and span.stage == "map(slow_sharpen)"
            for start, end in [timeline.epochs[epoch - 1]]
        )
    times = StageTimes.from_timeline(timeline.to_dict(), 0.5, variant, fits_in_memory=True)
    finding = analyze(times)
    assert finding.limiting_stage == "map(slow_sharpen)"
    assert finding.fixes[:2] == ("parallelize:map(slow_sharpen)", "vectorize:map(slow_sharpen)")
    assert "prefetch" not in finding.fixes  # it ends with one already
    (parallel,) = verify.candidates(variant, finding.fixes[:1])
    assert parallel.problem is None
    batches = list(pipelines.build(parallel.copy, source, batch_size=8))
    assert parallel.copy.describe() == (
        "function(sharpened: map(parallel) -> map -> batch -> prefetch)"
    )
    assert [int(i) for b in batches for i in decode_ids(b["image"].numpy())] == list(range(48))
    (vectorized,) = verify.candidates(variant, finding.fixes[1:2])
    assert vectorized.copy is None and "change function(sharpened" in vectorized.problem


def test_a_function_that_interleaves_the_shards_reads_them_in_parallel():
    variant = function_variant(interleaved, Contract(deterministic=False))
    stages = _traced_epochs(variant, tagged_source(48, num_shards=4), epochs=1).pipeline_stages
    assert {s.name: s.parallel for s in stages} == {
        "open": True,
        "read": True,
        "map(decode)": False,
        "batch": False,
    }


@pytest.fixture(scope="module")
def lab():
    """The example project's pipelines, registered for this module's tests."""
    before = set(pipelines.VARIANTS)
    load_plugin(str(LAB / "lab_pipelines.py"))
    yield {name: pipelines.get(name) for name in set(pipelines.VARIANTS) - before}
    for name in set(pipelines.VARIANTS) - before:
        pipelines.unregister(name)


def test_the_lab_examples_keep_their_honest_contracts(lab):
    assert set(lab) == {"lab_naive", "lab_optimized"}
    for variant in lab.values():
        check_variant(variant, 60, 2, 7, seed=1)


@pytest.mark.parametrize(
    ("change", "prop"),
    [
        # The lab's cache comes after its shuffle: the order is frozen too.
        ({"reshuffles": True}, "reshuffles"),
        # ...and after its augmentation.
        ({"augmentation": "fresh"}, "augmentation"),
    ],
)
def test_what_the_labs_cache_does_is_caught_if_the_contract_denies_it(lab, change, prop):
    variant = lab["lab_optimized"]
    claimed = dataclasses.replace(variant, contract=dataclasses.replace(variant.contract, **change))
    with pytest.raises(ContractViolation) as caught:
        check_variant(claimed, 60, 2, 7, seed=1)
    assert caught.value.prop == prop


def test_the_lab_example_benchmarks_from_its_own_folder(tmp_path):
    """docs/your-pipeline.md's walk-through, shortened: the lab's functions and logits CNN
    on 24x24 crops of CIFAR batches (the small embedded set's), run from the example's
    folder."""
    storage = tmp_path / "run.json"
    command = [sys.executable, "-m", "pytest", str(ROOT / "benchmarks"), "-q"]
    command += ["-p", "no:cacheprovider", "-k", "test_training or test_ceiling or test_timeline"]
    command += ["--perf-plugin", "lab_pipelines.py", "--perf-model", "lab_model:cifar_cnn"]
    command += ["--perf-data", str(small_data("cifar")), "--perf-image-size", "24"]
    command += ["--perf-latency", "none"]
    command += ["--perf-variants", "lab_naive,lab_optimized", "--perf-epochs", "1"]
    command += ["--perf-passes", "1", "--perf-model-threads", "0"]
    command += [f"--benchmark-json={storage}"]
    # The suite on the path as `tasks.py` puts it there for its venv, whatever runs this.
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(command, cwd=LAB, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    runs = json.loads(storage.read_text())["benchmarks"]
    variants = {b["extra_info"]["variant"] for b in runs}
    assert {"lab_naive", "lab_optimized", "ceiling"} <= variants
    assert all(b["extra_info"]["image_shape"] == [24, 24, 3] for b in runs)
    assert all(b["extra_info"]["model"] == "lab_model:cifar_cnn" for b in runs)


def jittered(ds: tf.data.Dataset, params: BuildParams) -> tf.data.Dataset:
    """A user's own augmentation: a random shift of up to 2 pixels, seeded per element."""
    seeds = tf.data.Dataset.random(seed=params.seed, rerandomize_each_iteration=True).batch(2)

    def shift(example, seed):
        image, label = example
        padded = tf.image.pad_to_bounding_box(image, 2, 2, image.shape[0] + 4, image.shape[1] + 4)
        return tf.image.stateless_random_crop(padded, image.shape, seed), label

    return tf.data.Dataset.zip(ds, seeds).map(shift).batch(params.batch_size)


@pytest.mark.parametrize(
    ("contract", "prop"),
    [
        # The user's own augmentation, stated as such: not measured, still fresh and seeded.
        (Contract(augmentation="fresh", augmentations=()), None),
        # Names only the flip: the shift is a crop it did not promise.
        (Contract(augmentation="fresh", augmentations=("flip",)), "augmentation_rates"),
        (Contract(), "augmentation"),
    ],
)
def test_a_users_own_augmentation_is_unmeasured_only_where_the_contract_says_so(
    registered, contract, prop
):
    variant = registered(function_variant(jittered, contract))
    if prop is None:
        check_variant(variant, 60, 2, 7, seed=1)
        return
    with pytest.raises(ContractViolation) as caught:
        check_variant(variant, 60, 2, 7, seed=1)
    assert caught.value.prop == prop


def tuned(ds: tf.data.Dataset, params: BuildParams) -> tf.data.Dataset:
    """A user's tuned pipeline: cache, shuffle, a parallel map, batch, a map per batch."""
    ds = ds.cache().shuffle(params.shuffle_buffer, seed=params.seed)
    ds = ds.map(lambda image, label: (image, label), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(params.batch_size).map(lambda images, labels: (images, labels))
    return ds.prefetch(tf.data.AUTOTUNE)


def from_files(ds: tf.data.Dataset, params: BuildParams) -> tf.data.Dataset:
    """Reads the shards itself, in parallel."""
    reads = params.shards.interleave(params.read_shard, num_parallel_calls=2)
    return reads.batch(params.batch_size)


def test_what_a_function_builds_is_seen_as_its_steps(registered):
    variant = registered(function_variant(tuned, Contract(shuffle="elements")))
    pipelines.build(variant, tagged_source(20, 2), batch_size=4, seed=1)
    assert variant.describe() == (
        "function(tuned: cache -> shuffle -> map(parallel) -> batch -> map -> prefetch)"
    )
    assert variant.optimizations() == {
        "cache": 1,
        "parallel map": 1,
        "vectorized map": 1,
        "prefetch": 1,
    }
    files = registered(function_variant(from_files, Contract()))
    pipelines.build(files, tagged_source(20, 2), batch_size=4, seed=1)
    assert files.describe() == "function(from_files: interleave -> batch)"
    assert files.optimizations() == {"interleave": 1}


def test_an_optimization_lost_inside_a_function_fails_against_the_baseline(registered):
    from benchmarks.judging import compare, gates

    def untuned(ds, params):
        """The same, its prefetch and parallel calls lost in an edit."""
        ds = ds.cache().shuffle(params.shuffle_buffer, seed=params.seed)
        ds = ds.map(lambda image, label: (image, label))
        return ds.batch(params.batch_size).map(lambda images, labels: (images, labels))

    saved = {}
    for function in (tuned, untuned):
        variant = registered(function_variant(function, Contract(), name="mine"))
        pipelines.build(variant, tagged_source(20, 2), batch_size=4, seed=1)
        saved[function] = {"steps": variant.describe(), "optimizations": variant.optimizations()}
    (failure,) = compare.check_baseline(
        gates.load_thresholds(), {"mine": saved[untuned]}, {"mine": saved[tuned]}, "r"
    )
    assert str(failure).startswith("GATE FAILED mine: lost a prefetch, a parallel map: steps")


def test_the_examples_a_function_is_given_can_be_read_in_parallel():
    variant = function_variant(sharpened, Contract())
    source = tagged_source(48, num_shards=4)
    list(pipelines.build(variant, source, batch_size=8))  # a build shows what it reads
    (candidate,) = verify.candidates(variant, ("parallel_read",))
    stages = _traced_epochs(candidate.copy, source, epochs=1).pipeline_stages
    assert {s.name: s.parallel for s in stages}["open"] is True
    ids = [
        int(i)
        for b in pipelines.build(candidate.copy, source, batch_size=8)
        for i in decode_ids(b["image"].numpy())
    ]
    assert sorted(ids) == list(range(48)) and ids != list(range(48))  # interleaved shards
    (again,) = verify.candidates(candidate.copy, ("parallel_read",))
    assert again.copy is None  # it reads in parallel already
    # Both changes made at once, as verification times them together.
    singles = verify.candidates(variant, ("parallel_read", "parallelize:map(slow_sharpen)"))
    (both,) = verify.together(variant, singles)
    assert both.problem is None
    list(pipelines.build(both.copy, source, batch_size=8))
    assert both.copy.describe() == "function(sharpened: map(parallel) -> map -> batch -> prefetch)"
    assert variant.describe() == "function(sharpened: map -> map -> batch -> prefetch)"
