"""Variants: a name, an ordered list of steps, and the contract they promise.

This is where a new variant goes: one `Variant(...)` in `SEED_VARIANTS` (or a
`pipelines.register(...)` call anywhere, e.g. a user's ``conftest.py``). The
property tests and the benchmarks pick up every registered variant, and
check it against its contract, with no further code.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from pipelines.augment import RANDOM_CHOICES
from pipelines.steps import (
    Batch,
    Cache,
    Distribute,
    GeneratorRead,
    Map,
    Prefetch,
    Read,
    Repeat,
    Shuffle,
    Step,
    Unbatch,
    count_speed,
)


@dataclasses.dataclass(frozen=True)
class Contract:
    """What a variant promises about the data it yields in one epoch (one pass of its dataset).

    Attributes:
        drop_remainder: a short last batch is dropped, so every batch is full
            and the batch dimension is static.
        deterministic: the same seed gives the same order (no unordered parallelism).
        shuffle: "none" (ids in source order), "elements" (examples permuted),
            or "batches" (whole batches permuted; each batch a contiguous run of ids).
        repeats: how many times one epoch goes over the data (``Repeat`` inside).
        clean_epoch_boundaries: no batch holds examples of two repeats.
        mixes_repeats: examples of a later repeat may come before an earlier one ends.
        augmentation: "none", "fresh" (new random augmentation every epoch) or
            "frozen" (a cache after the augmentation replays the first epoch's).
        repeats_per_worker: the tf.data service's parallel epochs: every worker
            yields the whole epoch, so an epoch holds ``repeats`` x workers repeats.
        reshuffles: where it shuffles, every epoch comes in a new order (tf.data's
            ``reshuffle_each_iteration``); false: every epoch repeats the first's order.
        augmentations: the random choices of `pipelines.augment.RANDOM_CHOICES`
            its augmentation makes, each at its stated rate and over its stated
            range (the property tests measure them where ``augmentation`` is not
            "none"); ``()`` for an augmentation of a user's own that they cannot measure.

    The earlier names ``passes``, ``mixes_passes`` and ``passes_per_worker`` are still
    accepted as keywords (a "pass" is now only a measurement pass of the benchmarks).
    """

    drop_remainder: bool = False
    deterministic: bool = True
    shuffle: Literal["none", "elements", "batches"] = "none"
    repeats: int = 1
    clean_epoch_boundaries: bool = True
    mixes_repeats: bool = False
    augmentation: Literal["none", "fresh", "frozen"] = "none"
    repeats_per_worker: bool = False
    reshuffles: bool = True
    augmentations: tuple[str, ...] = tuple(RANDOM_CHOICES)
    # The earlier names, accepted as keywords only (see `RENAMED`).
    passes: dataclasses.InitVar[int | None] = None
    mixes_passes: dataclasses.InitVar[bool | None] = None
    passes_per_worker: dataclasses.InitVar[bool | None] = None

    def __post_init__(
        self, passes: int | None, mixes_passes: bool | None, passes_per_worker: bool | None
    ) -> None:
        earlier = zip(RENAMED, (passes, mixes_passes, passes_per_worker), strict=True)
        for name, value in earlier:
            if value is not None:
                object.__setattr__(self, RENAMED[name], value)
        unknown = [name for name in self.augmentations if name not in RANDOM_CHOICES]
        if unknown:
            raise ValueError(
                f"unknown random choice {unknown[0]!r} in augmentations;"
                f" known: {', '.join(RANDOM_CHOICES)}"
            )

    @property
    def augments(self) -> bool:
        """Whether the variant augments (freshly or frozen)."""
        return self.augmentation != "none"

    @property
    def accuracy_reference(self) -> str | None:
        """The variant of the same recipe whose accuracy this one's is judged against, in
        the same run: the ceiling (no augmentation), `augmented` (the suite's own
        augmentation), or None for an augmentation of its own, which nothing in the
        run shares (it is judged against its baseline, and any absolute floor)."""
        if not self.augments:
            return "ceiling"
        return "augmented" if self.augmentations == tuple(RANDOM_CHOICES) else None

    def total_repeats(self, workers: int = 1) -> int:
        """Times one epoch goes over the data, with ``workers`` tf.data service workers."""
        return self.repeats * (workers if self.repeats_per_worker else 1)


# Contract's earlier keywords -> its fields now (reading one, e.g. ``contract.passes``,
# gives None: they are keywords only).
RENAMED = {
    "passes": "repeats",
    "mixes_passes": "mixes_repeats",
    "passes_per_worker": "repeats_per_worker",
}


@dataclasses.dataclass(frozen=True)
class Variant:
    """A named pipeline: ``steps`` applied to a source's shards, and its ``contract``."""

    name: str
    steps: tuple[Step, ...]
    contract: Contract
    description: str = ""
    # Whether the benchmarks time it by default. The order pairs are there for
    # the property tests; `--perf-variants` still benchmarks them on request.
    benchmarked: bool = True

    def describe(self) -> str:
        """The steps as one line, e.g. ``read -> map(decode, sequential) -> batch``."""
        return " -> ".join(str(step) for step in self.steps)

    def optimizations(self) -> dict[str, int]:
        """How many of each optimization its steps declare (`pipelines.steps.SPEED`):
        what a baseline comparison checks was not lost."""
        return dict(count_speed(self.steps))

    @property
    def caches(self) -> bool:
        """Whether a step caches elements (later epochs replay them); a pipeline function
        does where its last build was seen to."""
        return count_speed(self.steps)["cache"] > 0

    @property
    def prefetches(self) -> bool:
        """Whether its batches are read ahead while the model trains: the last step is a
        prefetch, or a pipeline function's last seen step is (after a build)."""
        if not self.steps:
            return False
        last = self.steps[-1]
        last = (getattr(last, "seen", None) or [last])[-1]
        speed = getattr(last, "speed", None)
        return speed is not None and "prefetch" in speed(False)

    @property
    def served(self) -> bool:
        """Whether it goes through the tf.data service (a build needs ``service=``)."""
        return any(isinstance(step, Distribute) for step in self.steps)


DECODE = Map(("decode",))
DECODE_STANDARDIZE = Map(("decode", "standardize"))
AUGMENT = Map(("augment",))
AUGMENTED = Contract(shuffle="elements", augmentation="fresh")
# Read with tf.data, one file at a time: the lab's augmentation on a reader that
# holds no Python lock. Through the generator, the Python generator was the
# bottleneck of every variant built on this one, so that no map optimization
# had anything to do (docs/measurements.md, 2026-11-30).
AUGMENTED_STEPS = (Read(), DECODE, Shuffle(), AUGMENT, Batch())


def _augmented(*steps: Step, name: str, description: str, **contract: object) -> Variant:
    return Variant(name, steps, dataclasses.replace(AUGMENTED, **contract), description)


def _order_pair(
    name: str, steps: tuple[Step, ...], contract: Contract, description: str
) -> Variant:
    return Variant(name, steps, contract, description, benchmarked=False)


def _service_variant(name: str, mode: str, description: str, **contract: object) -> Variant:
    # Random steps stay on the trainer's side: a worker rebuilds the pipeline
    # for every job (every epoch) from the same graph, so its random seeds
    # restart each epoch; the contract check caught augmentations repeating.
    steps = (
        Read(parallel=True, deterministic=False),
        Map(("decode",), parallel=True, deterministic=False),
        Distribute(mode),
        Shuffle(),
        Batch(),
        Map(("augment",), parallel=True, deterministic=False),
        Prefetch(),
    )
    contract = dataclasses.replace(AUGMENTED, deterministic=False, **contract)
    # Not in the default benchmark run: they are timed by test_data_service, per worker count.
    return Variant(name, steps, contract, description, benchmarked=False)


SEED_VARIANTS: tuple[Variant, ...] = (
    # The reference lab's three.
    Variant(
        "naive",
        (GeneratorRead(), DECODE_STANDARDIZE, Batch()),
        Contract(),
        "Python generator read, per-example decode, batch; no optimizations",
    ),
    _augmented(
        *AUGMENTED_STEPS,
        name="augmented",
        description="files read one at a time (tf.data), per-example decode, shuffle, and"
        " per-example random crop, flip, brightness, contrast",
    ),
    _augmented(
        Read(parallel=True, deterministic=False),
        # Decoded in blocks: one call per block instead of per example (see `Unbatch`).
        Batch(),
        Map(("decode",), parallel=True, deterministic=False),
        Unbatch(),
        Cache(),
        Shuffle(),
        Batch(drop_remainder=True),
        Map(("augment",), parallel=True, deterministic=False),
        Prefetch(),
        name="optimized",
        description=(
            "interleaved read, parallel decode in blocks, cache (before the augmentation, which"
            " stays fresh), shuffle, batch with drop_remainder, vectorized parallel augment,"
            " prefetch"
        ),
        drop_remainder=True,
        deterministic=False,
    ),
    # Each optimization alone, on top of `augmented`.
    _augmented(
        *AUGMENTED_STEPS,
        Prefetch(),
        name="prefetch",
        description="augmented plus prefetch: the trainer and the pipeline overlap",
    ),
    _augmented(
        Read(parallel=True),
        DECODE,
        Shuffle(),
        AUGMENT,
        Batch(),
        name="interleave",
        description="augmented with shards read in parallel instead of one at a time",
    ),
    _augmented(
        Read(),
        Map(("decode",), parallel=True),
        Shuffle(),
        Map(("augment",), parallel=True),
        Batch(),
        name="parallel_map",
        description="augmented with decode and augment mapped in parallel (order kept)",
    ),
    _augmented(
        Read(),
        DECODE,
        Cache(),
        Shuffle(),
        AUGMENT,
        Batch(),
        name="cache",
        description="augmented with decoded examples cached after the first epoch",
    ),
    _augmented(
        Read(),
        DECODE,
        Shuffle(),
        Batch(),
        AUGMENT,
        name="vectorized_map",
        description="augmented with the augmentation applied per batch (batch before map)",
    ),
    # Through the tf.data service (they need one: the benchmarks start a local
    # dispatcher and workers). Workers read and decode; the trainer's side
    # shuffles, batches, augments and prefetches (see `_service_variant`).
    _service_variant(
        "distributed",
        "distributed_epoch",
        "read and decode on tf.data service workers, shards handed out dynamically (each"
        " example once per epoch); shuffle, batch, augment, prefetch on the trainer",
    ),
    _service_variant(
        "distributed_parallel_epochs",
        "parallel_epochs",
        "every tf.data service worker runs the whole epoch (each example once per worker)",
        repeats_per_worker=True,
        clean_epoch_boundaries=False,
        mixes_repeats=True,
    ),
    # Order pairs: what the order of two steps does to the data. The property
    # tests check them; they are not benchmarked by default.
    _order_pair(
        "shuffle_batch",
        (Read(), DECODE_STANDARDIZE, Shuffle(), Batch()),
        Contract(shuffle="elements"),
        "shuffle then batch: batches mix examples",
    ),
    _order_pair(
        "batch_shuffle",
        (Read(), DECODE_STANDARDIZE, Batch(), Shuffle()),
        Contract(shuffle="batches"),
        "batch then shuffle: whole batches move, each keeps its contents",
    ),
    _order_pair(
        "batch_repeat",
        (Read(), DECODE_STANDARDIZE, Batch(), Repeat(2)),
        Contract(repeats=2),
        "batch then repeat: clean boundaries between repeats",
    ),
    _order_pair(
        "repeat_batch",
        (Read(), DECODE_STANDARDIZE, Repeat(2), Batch()),
        Contract(repeats=2, clean_epoch_boundaries=False),
        "repeat then batch: a batch may straddle two repeats",
    ),
    _order_pair(
        "shuffle_repeat",
        (Read(), DECODE_STANDARDIZE, Shuffle(), Repeat(2), Batch()),
        Contract(shuffle="elements", repeats=2, clean_epoch_boundaries=False),
        "shuffle then repeat: each pass is a full permutation before the next starts",
    ),
    _order_pair(
        "repeat_shuffle",
        (Read(), DECODE_STANDARDIZE, Repeat(2), Shuffle(), Batch()),
        Contract(shuffle="elements", repeats=2, clean_epoch_boundaries=False, mixes_repeats=True),
        "repeat then shuffle: repeats mix",
    ),
)

# Not registered: how every variant's model is evaluated, identical for all of
# them (cached after the first pass, so evaluation costs the same everywhere).
EVALUATION = Variant(
    "evaluation",
    (
        Read(parallel=True),
        Map(("decode", "standardize"), parallel=True),
        Batch(),
        Cache(),
        Prefetch(),
    ),
    Contract(),
    "test data: interleaved read, parallel decode and standardize, batch, cache, prefetch",
)
