"""Check a variant against its own contract, on a tagged source.

`check_variant` runs two epochs of a variant and asserts each promise of
its `Contract`. Which checks apply comes from the contract's fields, never
from the variant's name, so a variant registered from outside is covered as
it is. Each failed check raises `ContractViolation` naming the property.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np
import tensorflow as tf

import pipelines
from pipelines import Variant
from tagged import decode_ids, label_of, tagged_source

EPOCHS = 2


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

    def image_of(self) -> dict[int, np.ndarray]:
        """First image seen for each id."""
        seen: dict[int, np.ndarray] = {}
        for ids, images in zip(self.ids, self.images, strict=True):
            for i, image in zip(ids.tolist(), images, strict=True):
                seen.setdefault(i, image)
        return seen


def run_epochs(ds: tf.data.Dataset, epochs: int = EPOCHS) -> list[Epoch]:
    """Iterate ``ds`` ``epochs`` times (a fresh iterator each), keeping every batch."""
    out = []
    for _ in range(epochs):
        epoch = Epoch([], [], [])
        for batch in ds.as_numpy_iterator():
            epoch.ids.append(batch["id"])
            epoch.labels.append(batch["label"])
            epoch.images.append(batch["image"])
        out.append(epoch)
    return out


def expected_batches(n: int, b: int, passes: int, drop: bool, clean: bool) -> int:
    """How many batches one epoch yields."""
    per = (lambda total: total // b) if drop else (lambda total: math.ceil(total / b))
    return passes * per(n) if clean else per(passes * n)


def split_passes(flat: np.ndarray, n: int, passes: int) -> list[np.ndarray]:
    """Cut an epoch's id stream into consecutive chunks of one pass each."""
    return [flat[k * n : (k + 1) * n] for k in range(passes)]


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
) -> None:
    """Assert every promise of ``variant.contract`` on a tagged source of ``n`` examples.

    ``service``, ``workers``: the tf.data service (and its worker count) for
    variants that distribute.
    """
    contract = variant.contract
    source = tagged_source(n, num_shards)

    def fail(prop: str, detail: str) -> None:
        raise ContractViolation(variant, prop, detail)

    options = {"batch_size": batch_size, "shuffle_buffer": n, "seed": seed, "service": service}
    ds = pipelines.build(variant, source, **options)
    epochs = run_epochs(ds)
    b, passes = batch_size, contract.total_passes(workers)
    total = passes * n

    # Shapes and dtypes.
    spec = ds.element_spec["image"]
    if spec.dtype != tf.float32 or tuple(spec.shape[1:]) != source.image_shape:
        fail("shape", f"element spec {spec}, expected float32 {source.image_shape}")
    static = spec.shape[0]
    if contract.drop_remainder and static != b:
        fail("drop_remainder", f"static batch dimension {static}, expected {b}")
    if not contract.drop_remainder and static is not None:
        fail("drop_remainder", f"static batch dimension {static}, expected None")

    for number, epoch in enumerate(epochs, start=1):
        flat = epoch.flat_ids
        where = f"epoch {number} (n={n}, batch={b}, shards={num_shards}, seed={seed})"
        # Every image still carries its own label, and its own id.
        for ids, labels, images in zip(epoch.ids, epoch.labels, epoch.images, strict=True):
            if not np.array_equal(labels, label_of(ids)):
                fail("pairing", f"{where}: labels {labels.tolist()} for ids {ids.tolist()}")
            if not np.array_equal(decode_ids(images), ids):
                fail(
                    "pairing",
                    f"{where}: images of ids {decode_ids(images).tolist()} for ids {ids.tolist()}",
                )
        sizes = [len(ids) for ids in epoch.ids]
        # The multiset of ids: each id `passes` times, less exactly the dropped remainder.
        counts = Counter(flat.tolist())
        if set(counts) - set(range(n)) or any(c > passes for c in counts.values()):
            fail("multiset", f"{where}: ids outside the source or seen too often")
        dropped = total - len(flat)
        expected_drop = 0
        if contract.drop_remainder:
            expected_drop = passes * (n % b) if contract.clean_epoch_boundaries else total % b
        if dropped != expected_drop:
            fail("multiset", f"{where}: {dropped} examples missing, expected {expected_drop}")
        if contract.drop_remainder and any(size != b for size in sizes):
            fail("drop_remainder", f"{where}: batch sizes {sizes}")
        want = expected_batches(
            n, b, passes, contract.drop_remainder, contract.clean_epoch_boundaries
        )
        if len(sizes) != want:
            fail("epoch_boundaries", f"{where}: {len(sizes)} batches, expected {want}")
        # Epoch boundaries between passes.
        if passes > 1 and contract.clean_epoch_boundaries:
            # Walk the batches, closing a pass when all of its ids have been seen.
            per_pass = n - (n % b if contract.drop_remainder else 0)
            seen: set[int] = set()
            for ids in epoch.ids:
                if len(seen) == per_pass:
                    seen = set()
                if seen & set(ids.tolist()) or len(seen | set(ids.tolist())) > per_pass:
                    fail("epoch_boundaries", f"{where}: a batch holds examples of two passes")
                seen |= set(ids.tolist())
        if passes > 1 and not contract.mixes_passes and not contract.drop_remainder:
            for k, chunk in enumerate(split_passes(flat, n, passes)):
                if sorted(chunk.tolist()) != list(range(n)):
                    fail(
                        "epoch_boundaries", f"{where}: pass {k + 1} is not complete before the next"
                    )
        # Order and shuffling.
        if contract.shuffle == "none" and contract.deterministic:
            for chunk in split_passes(flat, n, passes):
                if not np.all(np.diff(chunk) > 0):
                    fail("order", f"{where}: ids out of source order: {chunk.tolist()}")
        if contract.shuffle == "batches":
            unshuffled = sorted(tuple(ids.tolist()) for ids in epoch.ids)
            reference = [tuple(range(s, min(s + b, n))) for s in range(0, n, b)] * passes
            if contract.drop_remainder:
                reference = [batch for batch in reference if len(batch) == b]
            runs = all(is_contiguous_run(ids) for ids in epoch.ids)
            if not runs or unshuffled != sorted(reference):
                batches = [ids.tolist() for ids in epoch.ids]
                fail("shuffle", f"{where}: batches are not the unshuffled batches: {batches}")
        # With n >= 2b and a full shuffle, all batches being runs is vanishingly unlikely.
        mixable = contract.shuffle == "elements" and n >= 2 * b and b >= 3
        if mixable and all(is_contiguous_run(ids) for ids in epoch.ids):
            batches = [ids.tolist() for ids in epoch.ids]
            fail("shuffle", f"{where}: no batch mixes elements: {batches}")

    # Same seed, same order.
    if contract.deterministic:
        again = run_epochs(pipelines.build(variant, source, **options), 1)[0]
        if not np.array_equal(again.flat_ids, epochs[0].flat_ids):
            fail("deterministic", f"two builds with seed {seed} gave different orders")

    # Augmentation: fresh each epoch, or frozen (or none: the same images).
    first, second = epochs[0].image_of(), epochs[1].image_of()
    common = sorted(set(first) & set(second))
    changed = [i for i in common if not np.allclose(first[i], second[i], atol=1e-6)]
    if contract.augmentation == "fresh" and len(changed) < len(common):
        repeated = len(common) - len(changed)
        fail(
            "augmentation",
            f"{repeated} of {len(common)} images repeated the first epoch's augmentation",
        )
    if contract.augmentation in ("none", "frozen") and changed:
        fail("augmentation", f"{len(changed)} of {len(common)} images changed between epochs")
