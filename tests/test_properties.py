"""Transform semantics, stated as properties of index-tagged data (hypothesis picks the sizes).

These check the steps themselves (`pipelines.steps`); `test_contracts.py`
checks every registered variant against its contract.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

from pipelines.augment import RANDOM_CHOICES
from pipelines.checks.chance import FALSE_FAILURE_RATE, choice_p_value, overlap_p_value
from pipelines.checks.tagged import decode_ids, read_augmentation, tagged_source
from pipelines.element import ID
from pipelines.steps import (
    Batch,
    BuildContext,
    Cache,
    Map,
    Read,
    Repeat,
    Shuffle,
    Unbatch,
    apply_steps,
)
from pipelines.variants import DECODE
from strategies import counts_and_batch_sizes, seeds

# A minute or more in all: the test job starts this module first (conftest.py).
pytestmark = pytest.mark.slow

sizes = st.integers(1, 60)
batches = st.integers(1, 12)
# (n, batch size), half of them leaving a remainder.
sized_batches = counts_and_batch_sizes(min_n=1, max_n=60, min_b=1, max_b=12)


def pipe(n: int, *steps, batch_size: int = 4, buffer: int = 1, seed: int = 0, shards: int = 1):
    """The dataset of ``steps`` over a tagged source of n examples (read and decode first)."""
    return raw_pipe(
        n, DECODE, *steps, batch_size=batch_size, buffer=buffer, seed=seed, shards=shards
    )


def raw_pipe(n: int, *steps, batch_size: int = 4, buffer: int = 1, seed: int = 0, shards: int = 1):
    """The dataset of ``steps`` over a tagged source of n examples, read but not decoded."""
    ctx = BuildContext(tagged_source(n, shards), batch_size, buffer, seed)
    return apply_steps((Read(), *steps), ctx, "property")


def ids_of(ds: tf.data.Dataset) -> list:
    """One pass: a list of ids (unbatched) or of id lists (batched)."""
    return [e[ID].tolist() for e in ds.as_numpy_iterator()]


def passes_of(batches: list[list[int]], n: int) -> list[list[int]]:
    """For a stream without shuffling across passes, the pass each element of each batch is in."""
    flat_position = 0
    out = []
    for batch in batches:
        out.append([(flat_position + k) // n for k in range(len(batch))])
        flat_position += len(batch)
    return out


def is_run(ids: list[int]) -> bool:
    return all(b - a == 1 for a, b in itertools.pairwise(ids))


# --- shuffle then batch, batch then shuffle ------------------------------------------


@given(sized=sized_batches, seed=seeds)
def test_batch_then_shuffle_moves_whole_unchanged_batches(sized, seed):
    n, b = sized
    got = ids_of(pipe(n, Batch(), Shuffle(), batch_size=b, buffer=n, seed=seed))
    assert all(is_run(batch) for batch in got)
    assert sorted(got) == [list(range(s, min(s + b, n))) for s in range(0, n, b)]


@given(n=st.integers(16, 60), b=st.integers(3, 8), seed=seeds)
def test_shuffle_then_batch_mixes_elements_across_batches(n, b, seed):
    got = ids_of(pipe(n, Shuffle(), Batch(), batch_size=b, buffer=n, seed=seed))
    assert sorted(i for batch in got for i in batch) == list(range(n))
    assert not all(is_run(batch) for batch in got)


# --- repeat and epoch boundaries --------------------------------------------------------


@given(sized=sized_batches, k=st.integers(2, 3))
def test_batch_then_repeat_keeps_passes_apart_and_ends_each_with_the_remainder(sized, k):
    n, b = sized
    got = ids_of(pipe(n, Batch(), Repeat(k), batch_size=b))
    per_pass = math.ceil(n / b)
    assert len(got) == k * per_pass
    for p in range(k):
        chunk = got[p * per_pass : (p + 1) * per_pass]
        assert sorted(i for batch in chunk for i in batch) == list(range(n))
        if n % b:
            assert len(chunk[-1]) == n % b


@given(sized=sized_batches, k=st.integers(2, 3))
def test_repeat_then_batch_straddles_passes_exactly_when_n_mod_b_is_not_zero(sized, k):
    n, b = sized
    got = ids_of(pipe(n, Repeat(k), Batch(), batch_size=b))
    straddles = any(len(set(p)) > 1 for p in passes_of(got, n))
    assert straddles == (n % b != 0)
    assert len(got) == math.ceil(k * n / b)


@given(n=st.integers(2, 60), k=st.integers(2, 3), seed=seeds)
def test_shuffle_then_repeat_yields_a_full_permutation_per_pass(n, k, seed):
    flat = ids_of(pipe(n, Shuffle(), Repeat(k), buffer=n, seed=seed))
    for p in range(k):
        assert sorted(flat[p * n : (p + 1) * n]) == list(range(n))


# From 30 examples: a full shuffle of two passes puts one whole pass first with
# chance 2^n / C(2n, n), 9e-9 at n = 30 (2% at n = 8, which hypothesis found).
@given(n=st.integers(30, 60), seed=seeds)
def test_repeat_then_shuffle_mixes_repeats(n, seed):
    flat = ids_of(pipe(n, Repeat(2), Shuffle(), buffer=2 * n, seed=seed))
    assert sorted(flat) == sorted(list(range(n)) * 2)
    # The first n outputs are not one whole pass: some example came out twice.
    assert sorted(flat[:n]) != list(range(n))


def test_repeat_inside_a_three_epoch_loop_reads_the_data_six_times():
    ds = pipe(10, Repeat(2), Batch(), batch_size=5)
    assert sum(len(batch) for _ in range(3) for batch in ids_of(ds)) == 6 * 10


# --- drop_remainder --------------------------------------------------------------------


@given(sized=sized_batches, drop=st.booleans())
def test_drop_remainder_decides_batch_count_fullness_and_static_shape(sized, drop):
    n, b = sized
    ds = pipe(n, Batch(drop_remainder=drop), batch_size=b)
    got = ids_of(ds)
    assert len(got) == (n // b if drop else math.ceil(n / b))
    if drop:
        assert all(len(batch) == b for batch in got)
    assert ds.element_spec["image"].shape[0] == (b if drop else None)


# --- shuffle -----------------------------------------------------------------------------


@given(n=sizes, buffer=st.integers(1, 70), seed=seeds)
def test_shuffle_is_a_permutation_that_draws_only_from_its_buffer(n, buffer, seed):
    flat = ids_of(pipe(n, Shuffle(buffer), seed=seed))
    assert sorted(flat) == list(range(n))
    # Position k can only hold an id that has entered the buffer by then.
    assert all(i <= k + buffer - 1 for k, i in enumerate(flat))


@given(n=sizes, seed=seeds)
def test_shuffle_with_a_buffer_of_one_keeps_the_order(n, seed):
    assert ids_of(pipe(n, Shuffle(1), seed=seed)) == list(range(n))


@given(n=st.integers(2, 60), seed=seeds)
def test_the_same_seed_gives_the_same_order(n, seed):
    assert ids_of(pipe(n, Shuffle(n), seed=seed)) == ids_of(pipe(n, Shuffle(n), seed=seed))


# 10! orders: two seeds agree by chance once in 3.6 million.
@given(n=st.integers(10, 60), seed=seeds)
def test_a_different_seed_gives_a_different_order(n, seed):
    assert ids_of(pipe(n, Shuffle(n), seed=seed)) != ids_of(pipe(n, Shuffle(n), seed=seed + 1))


@given(sized=counts_and_batch_sizes(min_n=16, max_n=60, min_b=3, max_b=9), seed=seeds)
def test_a_reshuffled_drop_leaves_out_different_examples_each_epoch(sized, seed):
    n, b = sized
    ds = pipe(n, Shuffle(n), Batch(drop_remainder=True), batch_size=b, buffer=n, seed=seed)
    dropped = [set(range(n)) - {i for batch in ids_of(ds) for i in batch} for _ in range(3)]
    assert all(len(missing) == n % b for missing in dropped)
    if n % b:
        overlaps = [len(a & c) for a, c in itertools.pairwise(dropped)]
        assert overlap_p_value(n, n % b, overlaps) >= FALSE_FAILURE_RATE, dropped


@given(n=st.integers(10, 60), seed=seeds, reshuffle=st.booleans())
def test_reshuffle_each_iteration_decides_whether_epochs_differ(n, seed, reshuffle):
    ds = pipe(n, Shuffle(n, reshuffle_each_iteration=reshuffle), seed=seed)
    first, second = ids_of(ds), ids_of(ds)
    assert sorted(first) == sorted(second) == list(range(n))
    assert (first != second) == reshuffle


# --- batch and unbatch -----------------------------------------------------------------


@given(sized=sized_batches, shards=st.integers(1, 4))
def test_batch_then_unbatch_is_the_identity(sized, shards):
    n, b = sized
    plain = list(pipe(n, shards=shards).as_numpy_iterator())
    round_trip = list(pipe(n, Batch(), Unbatch(), batch_size=b, shards=shards).as_numpy_iterator())
    assert [e[ID] for e in round_trip] == list(range(n))
    for one, other in zip(plain, round_trip, strict=True):
        np.testing.assert_array_equal(one["image"], other["image"])
        assert one["label"] == other["label"]


@given(sized=sized_batches, shards=st.integers(1, 4))
def test_decoding_in_blocks_equals_decoding_each_example(sized, shards):
    # The optimized variant's batch -> map(decode) -> unbatch.
    n, b = sized
    each = raw_pipe(n, DECODE, shards=shards)
    blocks = raw_pipe(n, Batch(), DECODE, Unbatch(), batch_size=b, shards=shards)
    got = list(blocks.as_numpy_iterator())
    assert [e[ID] for e in got] == list(range(n))
    for one, other in zip(each.as_numpy_iterator(), got, strict=True):
        np.testing.assert_allclose(one["image"], other["image"], atol=1e-6)


# --- parallel map, vectorized map, cache ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class Count:
    """A step that counts how often its map function runs."""

    counter: tf.Variable

    def apply(self, ds, ctx):
        def count(record):
            self.counter.assign_add(1)
            return record

        return ds.map(count)


@given(n=sizes, shards=st.integers(1, 4))
def test_parallel_map_keeps_order_when_deterministic_and_the_multiset_when_not(n, shards):
    ordered = Map(("standardize",), parallel=True, deterministic=True)
    unordered = Map(("standardize",), parallel=True, deterministic=False)
    assert ids_of(pipe(n, ordered, shards=shards)) == list(range(n))
    assert sorted(ids_of(pipe(n, unordered, shards=shards))) == list(range(n))


@given(sized=sized_batches)
def test_vectorized_map_equals_per_example_map_for_deterministic_transforms(sized):
    n, b = sized
    per_example = pipe(n, Map(("standardize",)), Batch(), batch_size=b)
    vectorized = pipe(n, Batch(), Map(("standardize",)), batch_size=b)
    for one, other in zip(
        per_example.as_numpy_iterator(), vectorized.as_numpy_iterator(), strict=True
    ):
        np.testing.assert_array_equal(one["id"], other["id"])
        np.testing.assert_allclose(one["image"], other["image"], atol=1e-5)


@given(n=sizes, epochs=st.integers(2, 4))
def test_cache_runs_the_steps_before_it_once_and_replays_the_same_elements(n, epochs):
    counter = tf.Variable(0, dtype=tf.int64)
    ds = pipe(n, Count(counter), Cache())
    passes = [ids_of(ds) for _ in range(epochs)]
    assert int(counter.numpy()) == n
    assert all(p == passes[0] for p in passes)


def augmented_images(ds: tf.data.Dataset) -> dict[int, np.ndarray]:
    return {int(e["id"]): e["image"] for e in ds.as_numpy_iterator()}


@given(n=st.integers(1, 30), seed=seeds)
def test_augmentation_before_a_cache_is_frozen_and_after_it_fresh(n, seed):
    before = pipe(n, Map(("augment",)), Cache(), seed=seed)
    after = pipe(n, Cache(), Map(("augment",)), seed=seed)
    frozen = [augmented_images(before) for _ in range(2)]
    fresh = [augmented_images(after) for _ in range(2)]
    assert all(np.array_equal(frozen[0][i], frozen[1][i]) for i in range(n))
    assert not any(np.allclose(fresh[0][i], fresh[1][i]) for i in range(n))
    # Either way each image still encodes its own example.
    assert all(decode_ids(fresh[1][i]) == i for i in range(n))


@given(n=st.integers(1, 30), seed=seeds)
def test_augmentation_repeats_with_the_same_seed_and_changes_with_another(n, seed):
    one, again, other = (
        augmented_images(pipe(n, Map(("augment",)), seed=s)) for s in (seed, seed, seed + 1)
    )
    assert all(np.array_equal(one[i], again[i]) for i in range(n))
    assert not any(np.allclose(one[i], other[i]) for i in range(n))


# 120 images: a choice that never happens (always its default) is beyond chance.
AUGMENTED_SAMPLE = 120


@given(seed=seeds, batched=st.booleans())
def test_every_random_choice_of_augment_happens_at_its_stated_rate(seed, batched):
    steps = (Batch(), Map(("augment",)), Unbatch()) if batched else (Map(("augment",)),)
    images = np.stack(list(augmented_images(pipe(AUGMENTED_SAMPLE, *steps, seed=seed)).values()))
    measured = read_augmentation(images)
    for name, choice in RANDOM_CHOICES.items():
        p, seen = choice_p_value(choice, measured[name])
        assert p >= FALSE_FAILURE_RATE, f"{name}: {seen} (p={p:.1e})"
