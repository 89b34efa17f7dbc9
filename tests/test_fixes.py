"""The changes a suggestion names: each edits the steps as the suite's own variants do it,
keeps the contract where it should, and is caught by the contract checks where it does not."""

from __future__ import annotations

import pytest

import pipelines
from pipelines.checks.contract import ContractViolation, check_variant
from pipelines.fixes import Fix, applied
from pipelines.steps import Batch, Cache, GeneratorRead, Map, Prefetch, Read, Unbatch

AUGMENTED = pipelines.get("augmented")


@pytest.mark.parametrize(
    ("key", "variant"),
    [
        ("prefetch", "prefetch"),
        ("cache", "cache"),
        ("vectorize:map(augment)", "vectorized_map"),
    ],
)
def test_a_fix_on_augmented_gives_the_single_optimization_variant(key, variant):
    # The seed variants are `augmented` plus one optimization each: the fixes
    # must make exactly those steps.
    assert applied(AUGMENTED, [Fix.parse(key)]).steps == pipelines.get(variant).steps


def test_parallel_fixes_change_only_their_stage_and_keep_the_order():
    read = applied(AUGMENTED, [Fix.parse("parallel_read")]).steps
    assert read[0] == Read(parallel=True) and read[1:] == AUGMENTED.steps[1:]
    parallel = applied(AUGMENTED, [Fix.parse("parallelize:map(augment)")]).steps
    assert parallel[3] == Map(("augment",), parallel=True, deterministic=True)
    assert parallel[:3] == AUGMENTED.steps[:3] and parallel[4:] == AUGMENTED.steps[4:]


def test_the_generator_is_replaced_by_a_tf_data_reader():
    naive = pipelines.get("naive")
    steps = applied(naive, [Fix.parse("tf_data_read")]).steps
    assert not any(isinstance(step, GeneratorRead) for step in steps)
    assert steps[0] == Read() and steps[1:] == naive.steps[1:]


def test_a_map_with_a_cache_after_it_is_vectorized_where_it_stands():
    cache = pipelines.get("cache")  # read -> decode -> cache -> shuffle -> augment -> batch
    steps = applied(cache, [Fix.parse("vectorize:map(decode)")]).steps
    assert steps[1:4] == (Batch(), Map(("decode",)), Unbatch())
    assert isinstance(steps[4], Cache)


def test_the_cache_goes_after_decoding_and_before_anything_random():
    steps = applied(pipelines.get("vectorized_map"), [Fix.parse("cache")]).steps
    assert isinstance(steps[2], Cache)  # read -> decode -> cache -> shuffle -> ...


@pytest.mark.parametrize(
    ("key", "variant"),
    [
        ("cache", "cache"),
        ("prefetch", "prefetch"),
        ("parallelize:map(decode)", "parallel_map"),
        ("vectorize:map(augment)", "vectorized_map"),
        ("tf_data_read", "augmented"),
        ("parallelize:map(resize)", "augmented"),
    ],
)
def test_a_fix_that_is_already_there_or_has_no_stage_does_not_apply(key, variant):
    assert applied(pipelines.get(variant), [Fix.parse(key)]) is None


def test_an_unknown_fix_is_named():
    with pytest.raises(ValueError, match="unknown fix 'shard'"):
        Fix.parse("shard")


def test_the_copy_keeps_the_contract_and_says_what_changed():
    copy = applied(AUGMENTED, [Fix.parse("cache"), Fix.parse("prefetch")])
    assert copy.contract == AUGMENTED.contract and not copy.benchmarked
    assert copy.name == "augmented+cache+prefetch"
    assert "cache after decoding; prefetch at the end" in copy.description
    assert isinstance(copy.steps[-1], Prefetch)


@pytest.mark.parametrize(
    "key",
    [
        "parallel_read",
        "parallelize:map(decode)",
        "parallelize:map(augment)",
        "vectorize:map(decode)",
        "vectorize:map(augment)",
        "cache",
        "prefetch",
    ],
)
def test_every_fix_the_analysis_can_name_keeps_augmenteds_contract(key):
    check_variant(applied(AUGMENTED, [Fix.parse(key)]), n=60, num_shards=2, batch_size=7, seed=1)


def test_reading_in_parallel_breaks_the_source_order_naive_promises():
    # What --perf-verify-suggestions reports as "breaks the contract": the
    # interleaved read takes the shards in turn.
    copy = applied(pipelines.get("naive"), [Fix.parse("parallel_read")])
    with pytest.raises(ContractViolation) as caught:
        check_variant(copy, n=60, num_shards=2, batch_size=7, seed=1)
    assert caught.value.prop == "order"


def test_a_cache_after_a_random_step_would_freeze_it_so_it_goes_before():
    # A user's pipeline: a random transform before the shuffle.
    variant = pipelines.Variant(
        "random_first", (Read(), Map(("decode", "augment")), Batch()), AUGMENTED.contract
    )
    steps = applied(variant, [Fix.parse("cache")]).steps
    assert steps == (Read(), Cache(), Map(("decode", "augment")), Batch())


def test_a_cache_spares_the_read_and_the_deterministic_maps_before_it():
    from pipelines.fixes import spared_by_cache

    assert spared_by_cache(AUGMENTED.steps) == {"open", "read", "generator", "map(decode)"}
    naive = pipelines.get("naive").steps
    assert spared_by_cache(naive) == {"open", "read", "generator", "map(decode+standardize)"}
    function = pipelines.function_variant(lambda ds, params: ds, pipelines.Contract())
    assert spared_by_cache(function.steps) == frozenset()
