"""Check a variant against its own contract, on a tagged source.

`check_variant` runs `EPOCHS` epochs of a variant (a `ContractRun`) and hands them
to every check in `CHECKS`, in order. A check guards one property: it
returns ``None`` when the property holds (or does not apply to the
contract), and a one-line detail when it is broken, which `check_variant`
raises as `ContractViolation` naming the property.

Which checks apply comes from the contract's fields, never from the
variant's name, so a variant registered from outside is covered as it is.
The checks about randomness (seed, reshuffles, remainder,
augmentation_rates) fail at a stated false-failure rate (`chance`), and pass
as inconclusive where the sizes drawn cannot reach it.

A new contract property: one function here, added to `CHECKS`, and a broken
variant in `test_guards.py` that only it catches.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from collections import Counter
from collections.abc import Callable, Collection

import numpy as np
import tensorflow as tf

import pipelines
from pipelines import Contract, Variant
from pipelines.augment import PAD, RANDOM_CHOICES
from pipelines.checks.chance import (
    FALSE_FAILURE_RATE,
    choice_p_value,
    independence_p_value,
    log_permutations,
    overlap_p_value,
    same_order_p_value,
    smallest_choice_p_value,
)
from pipelines.checks.tagged import (
    decode_ids,
    id_legible,
    label_of,
    read_augmentation,
    readable,
    tagged_source,
)
from pipelines.sources.base import Source

# Three epochs: a repeated order or a repeated dropped remainder is then
# unlikely enough by chance (squared) to be called a bug at small sizes.
EPOCHS = 3
# A different seed is tried at most this many times before "inconclusive".
MAX_OTHER_SEEDS = 3


class NotMeasured(UserWarning):
    """A promise of a contract that a check could not measure on its run (and passed)."""


class ContractViolation(AssertionError):
    """A variant broke a promise of its contract."""

    def __init__(self, variant: Variant, prop: str, detail: str) -> None:
        super().__init__(f"{variant.name}: {prop}: {detail}")
        self.prop = prop


@dataclasses.dataclass
class Epoch:
    """What one epoch yielded, batch by batch."""

    ids: list[np.ndarray]
    labels: list[np.ndarray]
    images: list[np.ndarray]

    @property
    def flat_ids(self) -> np.ndarray:
        return np.concatenate(self.ids) if self.ids else np.zeros(0, np.int64)

    @property
    def flat_images(self) -> np.ndarray:
        return np.concatenate(self.images) if self.images else np.zeros((0, 1, 1, 3))

    def image_of(self) -> dict[int, np.ndarray]:
        """First image seen for each id."""
        seen: dict[int, np.ndarray] = {}
        for ids, images in zip(self.ids, self.images, strict=True):
            for i, image in zip(ids.tolist(), images, strict=True):
                seen.setdefault(i, image)
        return seen


def run_epochs(ds: tf.data.Dataset, epochs: int = EPOCHS) -> list[Epoch]:
    """Iterate ``ds`` ``epochs`` times (a fresh iterator each), keeping every batch.

    A pipeline that does not carry ids (a user's function) is followed by the
    id each tagged image encodes; the pairing check then still holds labels to
    their images.
    """
    out = []
    for _ in range(epochs):
        epoch = Epoch([], [], [])
        for batch in ds.as_numpy_iterator():
            epoch.ids.append(batch["id"] if "id" in batch else decode_ids(batch["image"]))
            epoch.labels.append(batch["label"])
            epoch.images.append(batch["image"])
        out.append(epoch)
    return out


@dataclasses.dataclass
class ContractRun:
    """A variant run for `EPOCHS` epochs on a tagged source: what every check reads."""

    variant: Variant
    source: Source
    n: int
    batch_size: int
    num_shards: int
    seed: int
    service: str | None
    workers: int
    spec: tf.TensorSpec
    epochs: list[Epoch]
    # Properties a check could not measure on this run, and why (it then passes them).
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def contract(self) -> Contract:
        return self.variant.contract

    @property
    def repeats(self) -> int:
        """Times one epoch goes over the data."""
        return self.contract.total_repeats(self.workers)

    def build(self, seed: int) -> tf.data.Dataset:
        """The variant over the same source, with the check's options and ``seed``."""
        return pipelines.build(
            self.variant,
            self.source,
            batch_size=self.batch_size,
            shuffle_buffer=self.n,
            seed=seed,
            service=self.service,
        )

    def where(self, number: int) -> str:
        sizes = f"n={self.n}, batch={self.batch_size}, shards={self.num_shards}, seed={self.seed}"
        return f"epoch {number} ({sizes})"

    def expected_drop(self) -> int:
        """Examples one epoch leaves out: the remainder, per repeat or at the very end."""
        if not self.contract.drop_remainder:
            return 0
        n, b, repeats = self.n, self.batch_size, self.repeats
        return repeats * (n % b) if self.contract.clean_epoch_boundaries else repeats * n % b

    def log_orders(self) -> float:
        """log of how many orders one shuffled epoch can come in (each repeat shuffled anew)."""
        if self.contract.shuffle == "batches":
            per_repeat = self.n // self.batch_size
            if not self.contract.drop_remainder:
                per_repeat = math.ceil(self.n / self.batch_size)
            return self.repeats * log_permutations(per_repeat)
        return self.repeats * log_permutations(self.n)


Check = Callable[[ContractRun], str | None]
CHECKS: list[tuple[str, Check]] = []


def check(prop: str, reads_ids: bool = True) -> Callable[[Check], Check]:
    """Add the decorated function to `CHECKS` as the check of property ``prop``.

    ``reads_ids``: it follows examples by their ids; where a run's ids had to be read
    from images that no longer encode them (`unreadable_ids`), it is not measured.
    """

    def add(function: Check) -> Check:
        function.reads_ids = reads_ids  # type: ignore[attr-defined]
        CHECKS.append((prop, function))
        return function

    return add


def conclusive(p_value: float) -> bool:
    return p_value < FALSE_FAILURE_RATE


@check("shape", reads_ids=False)
def images_have_the_sources_shape(run: ContractRun) -> str | None:
    """Batches of float32 images of the source's size."""
    spec = run.spec
    if spec.dtype != tf.float32 or tuple(spec.shape[1:]) != run.source.image_shape:
        return f"element spec {spec}, expected float32 {run.source.image_shape}"
    return None


@check("drop_remainder", reads_ids=False)
def a_dropped_remainder_leaves_only_full_batches(run: ContractRun) -> str | None:
    """Dropping the remainder makes every batch full and the batch dimension static;
    keeping it leaves the dimension unknown."""
    static, b = run.spec.shape[0], run.batch_size
    if run.contract.drop_remainder and static != b:
        return f"static batch dimension {static}, expected {b}"
    if not run.contract.drop_remainder and static is not None:
        return f"static batch dimension {static}, expected None"
    for number, epoch in enumerate(run.epochs, start=1):
        sizes = [len(ids) for ids in epoch.ids]
        if run.contract.drop_remainder and any(size != b for size in sizes):
            return f"{run.where(number)}: batch sizes {sizes}"
    return None


@check("pairing")
def every_image_keeps_its_label_and_id(run: ContractRun) -> str | None:
    """Each label, and each image, still belongs to the example its id names.

    Where a step leaves images that no longer encode one id (a clipped sharpen, say:
    `id_legible`), the ids read from that run's images cannot be trusted, even those
    that look whole (a saturated image reads as a whole step): its images are not
    measured (a note says so), its labels still are.
    """
    batches = [
        (number, batch)
        for number, epoch in enumerate(run.epochs, start=1)
        for batch in zip(epoch.ids, epoch.labels, epoch.images, strict=True)
    ]
    for number, (ids, labels, _) in batches:
        if not np.array_equal(labels, label_of(ids)):
            return f"{run.where(number)}: labels {labels.tolist()} for ids {ids.tolist()}"
    lost, seen = _unreadable([images for _, (_, _, images) in batches], run.n)
    if lost:
        run.notes.append(
            f"pairing: images not measured: {lost} of {seen} were changed by a step so that"
            " the id they encode cannot be read back (a filter that clips, say); the labels"
            " were checked"
        )
        return None
    found = [decode_ids(images) for _, (_, _, images) in batches]
    for (number, (ids, _, _)), read in zip(batches, found, strict=True):
        if not np.array_equal(read, ids):
            return f"{run.where(number)}: images of ids {read.tolist()} for ids {ids.tolist()}"
    return None


@check("multiset")
def each_epoch_holds_every_example_as_often_as_promised(run: ContractRun) -> str | None:
    """Each id ``repeats`` times per epoch, less exactly the dropped remainder."""
    for number, epoch in enumerate(run.epochs, start=1):
        flat = epoch.flat_ids
        counts = Counter(flat.tolist())
        if set(counts) - set(range(run.n)) or any(c > run.repeats for c in counts.values()):
            return f"{run.where(number)}: ids outside the source or seen too often"
        dropped, expected = run.repeats * run.n - len(flat), run.expected_drop()
        if dropped != expected:
            return f"{run.where(number)}: {dropped} examples missing, expected {expected}"
    return None


@check("epoch_boundaries", reads_ids=False)
def each_epoch_has_the_promised_number_of_batches(run: ContractRun) -> str | None:
    """A clean boundary closes each repeat with its own short batch; otherwise repeats run on."""
    contract, n, b, repeats = run.contract, run.n, run.batch_size, run.repeats
    per = (lambda total: total // b) if contract.drop_remainder else (lambda t: math.ceil(t / b))
    want = repeats * per(n) if contract.clean_epoch_boundaries else per(repeats * n)
    for number, epoch in enumerate(run.epochs, start=1):
        if len(epoch.ids) != want:
            return f"{run.where(number)}: {len(epoch.ids)} batches, expected {want}"
    return None


@check("epoch_boundaries")
def no_batch_holds_two_repeats_where_boundaries_are_clean(run: ContractRun) -> str | None:
    """With clean boundaries, a batch never mixes examples of two repeats."""
    if run.repeats == 1 or not run.contract.clean_epoch_boundaries:
        return None
    n, b = run.n, run.batch_size
    per_repeat = n - (n % b if run.contract.drop_remainder else 0)
    for number, epoch in enumerate(run.epochs, start=1):
        # Walk the batches, closing a repeat when all of its ids have been seen.
        seen: set[int] = set()
        for ids in epoch.ids:
            if len(seen) == per_repeat:
                seen = set()
            if seen & set(ids.tolist()) or len(seen | set(ids.tolist())) > per_repeat:
                return f"{run.where(number)}: a batch holds examples of two repeats"
            seen |= set(ids.tolist())
    return None


@check("epoch_boundaries")
def each_repeat_ends_before_the_next_begins(run: ContractRun) -> str | None:
    """Unless repeats mix, repeat k is complete before repeat k + 1 starts."""
    contract = run.contract
    if run.repeats == 1 or contract.mixes_repeats or contract.drop_remainder:
        return None
    for number, epoch in enumerate(run.epochs, start=1):
        for k, chunk in enumerate(split_repeats(epoch.flat_ids, run.n, run.repeats)):
            if sorted(chunk.tolist()) != list(range(run.n)):
                return f"{run.where(number)}: repeat {k + 1} is not complete before the next"
    return None


@check("order")
def unshuffled_deterministic_variants_keep_source_order(run: ContractRun) -> str | None:
    """No shuffle and no unordered parallelism: each repeat in source order."""
    if run.contract.shuffle != "none" or not run.contract.deterministic:
        return None
    for number, epoch in enumerate(run.epochs, start=1):
        for chunk in split_repeats(epoch.flat_ids, run.n, run.repeats):
            if not np.all(np.diff(chunk) > 0):
                return f"{run.where(number)}: ids out of source order: {chunk.tolist()}"
    return None


@check("shuffle")
def shuffled_batches_are_the_unshuffled_batches(run: ContractRun) -> str | None:
    """Batch-then-shuffle moves whole batches: each a contiguous run of ids, all present."""
    if run.contract.shuffle != "batches":
        return None
    n, b = run.n, run.batch_size
    reference = [tuple(range(s, min(s + b, n))) for s in range(0, n, b)] * run.repeats
    if run.contract.drop_remainder:
        reference = [batch for batch in reference if len(batch) == b]
    for number, epoch in enumerate(run.epochs, start=1):
        unshuffled = sorted(tuple(ids.tolist()) for ids in epoch.ids)
        runs = all(is_contiguous_run(ids) for ids in epoch.ids)
        if not runs or unshuffled != sorted(reference):
            batches = [ids.tolist() for ids in epoch.ids]
            return f"{run.where(number)}: batches are not the unshuffled batches: {batches}"
    return None


@check("shuffle")
def shuffled_elements_mix_across_batches(run: ContractRun) -> str | None:
    """Shuffle-then-batch mixes examples: with n >= 2b and b >= 3, some batch is not a run."""
    n, b = run.n, run.batch_size
    if run.contract.shuffle != "elements" or n < 2 * b or b < 3:
        return None
    for number, epoch in enumerate(run.epochs, start=1):
        if all(is_contiguous_run(ids) for ids in epoch.ids):
            batches = [ids.tolist() for ids in epoch.ids]
            return f"{run.where(number)}: no batch mixes elements: {batches}"
    return None


@check("deterministic", reads_ids=False)
def the_same_seed_gives_the_same_order_and_images(run: ContractRun) -> str | None:
    """A deterministic variant built twice with one seed yields one order and the
    same augmented images."""
    if not run.contract.deterministic:
        return None
    again, first = run_epochs(run.build(run.seed), 1)[0], run.epochs[0]
    if not np.array_equal(again.flat_ids, first.flat_ids):
        return f"two builds with seed {run.seed} gave different orders"
    if not np.allclose(again.flat_images, first.flat_images, atol=1e-6):
        return f"two builds with seed {run.seed} gave different images"
    return None


@check("seed")
def a_different_seed_gives_a_different_order_and_augmentation(run: ContractRun) -> str | None:
    """The build's seed is used: another seed reorders a shuffling variant, and
    re-draws an augmenting one's augmentation (deterministic variants; others vary anyway)."""
    contract = run.contract
    shuffles, augments = contract.shuffle != "none", contract.augments
    if not contract.deterministic or not (shuffles or augments):
        return None
    first = run.epochs[0]
    # Enough other seeds that a shared order is less likely than the false-failure rate.
    log_orders = run.log_orders()
    tries = math.ceil(-math.log(FALSE_FAILURE_RATE) / log_orders) if log_orders > 0 else 0
    order_conclusive = shuffles and 0 < tries <= MAX_OTHER_SEEDS
    if not (order_conclusive or augments):
        return None
    same_order = same_images = True
    for k in range(1, (tries if order_conclusive else 1) + 1):
        other = run_epochs(run.build(run.seed + k), 1)[0]
        same_order = same_order and np.array_equal(other.flat_ids, first.flat_ids)
        if k == 1 and augments:
            mine, theirs = first.image_of(), other.image_of()
            common = sorted(set(mine) & set(theirs))
            same_images = all(np.allclose(mine[i], theirs[i], atol=1e-6) for i in common)
    if order_conclusive and same_order:
        return f"seeds {run.seed} to {run.seed + tries} all gave the same order"
    if augments and same_images:
        return f"seeds {run.seed} and {run.seed + 1} gave the same augmented images"
    return None


@check("reshuffles")
def each_epoch_is_shuffled_anew_or_repeats_as_promised(run: ContractRun) -> str | None:
    """Where the contract shuffles: a new order every epoch if it reshuffles, else the same."""
    contract = run.contract
    if contract.shuffle == "none":
        return None
    orders = [epoch.flat_ids for epoch in run.epochs]
    same = all(np.array_equal(orders[0], order) for order in orders[1:])
    if contract.reshuffles:
        p = same_order_p_value(run.log_orders(), len(orders) - 1)
        if same and conclusive(p):
            return f"all {len(orders)} epochs came in the same order (p={p:.1e} by chance)"
    elif contract.deterministic and not same:
        return "an epoch's order differs from the first, though the contract does not reshuffle"
    return None


@check("remainder")
def the_dropped_remainder_is_the_tail_or_fresh_each_epoch(run: ContractRun) -> str | None:
    """No example is left out for good: in source order the remainder is the last
    examples; with reshuffling, each epoch drops its own random ones."""
    contract, n = run.contract, run.n
    dropped_count = run.expected_drop()
    if dropped_count == 0 or run.repeats != 1:
        return None
    dropped = [set(range(n)) - set(epoch.flat_ids.tolist()) for epoch in run.epochs]
    if contract.shuffle == "none" and contract.deterministic:
        tail = set(range(n - dropped_count, n))
        for number, missing in enumerate(dropped, start=1):
            if missing != tail:
                return f"{run.where(number)}: dropped ids {sorted(missing)}, not the last ones"
    if contract.shuffle == "elements" and contract.reshuffles:
        overlaps = [len(a & b) for a, b in itertools.pairwise(dropped)]
        p = overlap_p_value(n, dropped_count, overlaps)
        if conclusive(p):
            shown = [sorted(missing) for missing in dropped]
            return (
                f"the epochs dropped the same examples again: {shown}, overlaps {overlaps}"
                f" of {dropped_count} (p={p:.1e} by chance)"
            )
    return None


@check("augmentation")
def augmentation_is_fresh_frozen_or_absent_as_promised(run: ContractRun) -> str | None:
    """Fresh: every image re-augmented next epoch; frozen or none: the same images again.

    An augmentation with a continuous random choice (brightness, contrast) never
    draws the same image twice, so one repeat is a bug. One that draws only from
    a few values (a flip, a shift of a few pixels; a user's own, stated as
    ``augmentations=()``) repeats some images by chance: there, fresh means not
    every image repeats (a cache after it would replay them all).
    """
    contract = run.contract
    first, second = run.epochs[0].image_of(), run.epochs[1].image_of()
    common = sorted(set(first) & set(second))
    changed = [i for i in common if not np.allclose(first[i], second[i], atol=1e-6)]
    continuous = any(
        RANDOM_CHOICES[name].distribution == "uniform" for name in contract.augmentations
    )
    repeated = len(common) - len(changed)
    if contract.augmentation == "fresh" and repeated and (continuous or not changed):
        return f"{repeated} of {len(common)} images repeated the first epoch's augmentation"
    if contract.augmentation in ("none", "frozen") and changed:
        return f"{len(changed)} of {len(common)} images changed between epochs"
    return None


@check("augmentation_rates", reads_ids=False)
def each_random_choice_happens_at_its_stated_rate(run: ContractRun) -> str | None:
    """Each random choice the contract names happens at its stated rate over its stated
    range (measured from the images); a crop or flip it does not name never happens.
    An augmenting contract that names none (``augmentations=()``) is the user's own:
    not measured."""
    contract = run.contract
    if contract.augments and not contract.augmentations:
        return None  # an augmentation of the user's own, which they cannot state here
    fresh = contract.augmentation == "fresh"
    # Fresh epochs are independent draws; frozen ones repeat the first.
    epochs = run.epochs if fresh else run.epochs[:1]
    images = np.concatenate([epoch.flat_images for epoch in epochs])
    legible = readable(images)
    if not legible.all():
        run.notes.append(
            f"augmentation_rates: not measured: {np.count_nonzero(~legible)} of {len(images)}"
            " images were changed by a step beyond crops, flips and colour shifts (a filter,"
            " say), so their crops, flips, brightness and contrast cannot be read back"
        )
        return None
    measured = read_augmentation(images)
    named = contract.augmentations if contract.augments else ()
    problems = []
    for name, still in (("crop_top", PAD), ("crop_left", PAD), ("flip", False)):
        moved = int(np.count_nonzero(measured[name] != still))
        if name not in named and moved:
            problems.append(f"{name}: {moved} of {len(images)} images, though not promised")
    for name in named:
        choice = RANDOM_CHOICES[name]
        if not conclusive(smallest_choice_p_value(choice, len(images))):
            continue  # too few images for even a choice that never happens to show
        p, seen = choice_p_value(choice, measured[name])
        if conclusive(p):
            problems.append(f"{name}: {seen} (p={p:.1e} by chance)")
    problems += dependent_choices(named, measured)
    return "; ".join(problems) or None


def dependent_choices(named: tuple[str, ...], measured: dict[str, np.ndarray]) -> list[str]:
    """A line for each pair of named random choices that one predicts the other (drawn
    from one random stream, say): a chi-square test per pair, Bonferroni over the pairs."""
    pairs = list(itertools.combinations(named, 2))
    problems = []
    for first, second in pairs:
        p = independence_p_value(
            RANDOM_CHOICES[first], measured[first], RANDOM_CHOICES[second], measured[second]
        )
        if p is not None and conclusive(min(1.0, p * len(pairs))):
            problems.append(
                f"{first} and {second} are not independent (p={p:.1e} by chance,"
                f" over {len(measured[first])} images)"
            )
    return problems


def split_repeats(flat: np.ndarray, n: int, repeats: int) -> list[np.ndarray]:
    """Cut an epoch's id stream into consecutive chunks of one repeat each."""
    return [flat[k * n : (k + 1) * n] for k in range(repeats)]


def is_contiguous_run(ids: np.ndarray) -> bool:
    """Whether ids are consecutive integers in increasing order."""
    return bool(np.all(np.diff(ids) == 1))


def check_variant(
    variant: Variant,
    n: int,
    num_shards: int,
    batch_size: int,
    seed: int,
    service: str | None = None,
    workers: int = 1,
    skip: Collection[str] = (),
) -> list[str]:
    """Assert every promise of ``variant.contract`` on a tagged source of ``n`` examples.

    ``service``, ``workers``: the tf.data service (and its worker count) for
    variants that distribute. ``skip``: properties not checked (those a variant
    already broke, when a changed copy of it is checked: `benchmarks.diagnosing.verify`).

    Returns the properties that could not be measured on this run, and why (each also
    a `NotMeasured` warning, which pytest lists).

    Raises:
        ContractViolation: the first check that fails, naming its property.
    """
    source = tagged_source(n, num_shards)
    run = ContractRun(variant, source, n, batch_size, num_shards, seed, service, workers, None, [])
    ds = run.build(seed)
    run.spec, run.epochs = ds.element_spec["image"], run_epochs(ds)
    unreadable = None if "id" in ds.element_spec else unreadable_ids(run)
    unmeasured = []
    for prop, guard in CHECKS:
        if prop in skip:
            continue
        if unreadable and guard.reads_ids:  # type: ignore[attr-defined]
            unmeasured.append(prop)
            continue
        detail = guard(run)
        if detail is not None:
            raise ContractViolation(variant, prop, detail)
    if unmeasured:
        run.notes.insert(0, f"{', '.join(dict.fromkeys(unmeasured))}: not measured: {unreadable}")
    for note in run.notes:
        warnings.warn(NotMeasured(f"{variant.name}: {note}"), stacklevel=2)
    return run.notes


def _unreadable(batches: list[np.ndarray], n: int) -> tuple[int, int]:
    """Of the images in ``batches``, how many no longer encode an id in ``[0, n)``, and
    how many there are."""
    lost = sum(
        int(np.count_nonzero(~id_legible(images) | (read < 0) | (read >= n)))
        for images, read in zip(batches, (decode_ids(images) for images in batches), strict=True)
    )
    return lost, sum(len(images) for images in batches)


def unreadable_ids(run: ContractRun) -> str | None:
    """Why the ids read from a run's images (a pipeline function's, which carry none)
    cannot be trusted, or None where every image still encodes an id of the source.

    A step that clips or mixes channels (a sharpen, say) leaves images whose id cannot
    be read back (`id_legible`); one such image makes all of the run's suspect, as a
    saturated one can look whole. The checks that follow examples are then not measured.
    """
    lost, seen = _unreadable([images for epoch in run.epochs for images in epoch.images], run.n)
    if not lost:
        return None
    return (
        f"the function's elements carry no id, and {lost} of {seen} images were changed by a"
        " step so that the id they encode cannot be read back (a filter that clips, say):"
        " examples cannot be followed through it"
    )
