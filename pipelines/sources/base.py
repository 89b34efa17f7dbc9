"""`Source`: where examples come from, split into the parts a pipeline arranges.

A source is read in three parts, kept apart so that variants can arrange them
differently (read shards one after another or interleaved; decode per example
or per batch; cache before or after decoding):

1. ``shards``: the units that are opened (files, or slices of memory);
2. ``read_shard``: one shard -> a dataset of raw records
   ``{IMAGE: encoded or raw pixels, LABEL, ID}``;
3. ``decode``: a raw record -> an element with a float32 image in [0, 1].
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from pipelines.errors import DataError

Record = dict[str, tf.Tensor]


@dataclasses.dataclass(frozen=True, eq=False)
class Source:
    """A readable set of examples of one split.

    Attributes:
        kind: the source kind ("memory", "generator", "image_folder", "cifar", "tfrecord").
        location: the folder or file it reads, or a description for in-memory data.
        split: "train", "test", or "all".
        shards: column name -> one value per shard; what `read_shard` receives.
        read_shard: opens one shard and yields its raw records.
        decode: raw record -> element; must accept a batch of records too when
            `decode_batchable` is true.
        num_examples: examples in the split.
        num_classes: labels lie in ``[0, num_classes)``.
        image_shape: (height, width, channels) of decoded images.
        decode_batchable: whether `decode` also works on batched records
            (fixed-size raw pixels can be decoded per batch; encoded JPEG/PNG cannot).
        check: a thorough validation (every file decoded); raises `DataError`.
        latency: the storage-latency profile applied, if any (see `latency.py`).
        skipped: with ``skip_corrupt``, one line per record left out (file and problem).
        one_record_per_shard: every shard holds exactly one record (a file per image);
            tracing then times each open with one dataset more per shard, not three.
    """

    kind: str
    location: str
    split: str
    shards: Mapping[str, np.ndarray]
    read_shard: Callable[[Record], tf.data.Dataset]
    decode: Callable[[Record], Record]
    num_examples: int
    num_classes: int
    image_shape: tuple[int, int, int]
    decode_batchable: bool = False
    check: Callable[[], None] = lambda: None
    latency: Any = None
    skipped: tuple[str, ...] = ()
    one_record_per_shard: bool = False

    @property
    def num_shards(self) -> int:
        """How many shards (files or memory slices) the split has."""
        return len(next(iter(self.shards.values())))

    def shard_dataset(self) -> tf.data.Dataset:
        """A dataset with one element per shard, the input of `read_shard`."""
        return tf.data.Dataset.from_tensor_slices(dict(self.shards))

    def records(self) -> tf.data.Dataset:
        """All raw records, shards read one after another (no parallelism)."""
        return self.shard_dataset().flat_map(self.read_shard)

    def dataset(self) -> tf.data.Dataset:
        """All elements, decoded, in source order: the plain, unoptimized reading."""
        return self.records().map(self.decode)

    def describe(self) -> str:
        """One line saying what this source is."""
        h, w, c = self.image_shape
        latency = f", latency {self.latency}" if self.latency else ""
        return (
            f"{self.kind} {self.split} at {self.location}: {self.num_examples} examples, "
            f"{self.num_classes} classes, {self.num_shards} shards, {h}x{w}x{c}{latency}"
        )

    def find_problem(self) -> DataError | None:
        """Run the thorough check; return the problem it finds, or None."""
        try:
            self.check()
        except DataError as problem:
            return problem
        return None

    @contextlib.contextmanager
    def explain_errors(self) -> Iterator[None]:
        """Turn a TensorFlow error while reading this source into a `DataError`.

        Errors raised inside a tf.data pipeline do not say which file was bad.
        When one happens, the thorough check runs (costing nothing while the
        data is good) and its finding, which names the file, is raised instead.
        """
        try:
            yield
        except tf.errors.OpError as error:
            problem = self.find_problem()
            if problem is None:
                raise
            raise problem from error


def labels_outside(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Indices of the labels outside ``[0, num_classes)``."""
    labels = np.asarray(labels)
    return np.flatnonzero((labels < 0) | (labels >= num_classes))


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    """Raise `DataError` naming ``where`` if a label lies outside ``[0, num_classes)``."""
    labels = np.asarray(labels)
    bad = labels_outside(labels, num_classes)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            where,
            f"label {int(labels[i])} at index {i} is outside the class range 0..{num_classes - 1}"
            f" ({bad.size} such labels)",
        )


def label_problems(labels: np.ndarray, num_classes: int, where: object) -> dict[int, str]:
    """Per row whose label is out of range, the line ``skip_corrupt`` lists for it."""
    labels = np.asarray(labels)
    return {
        int(i): f"{where}: row {i}: label {int(labels[i])} is outside 0..{num_classes - 1}"
        for i in labels_outside(labels, num_classes)
    }


def all_in_one(problems: Sequence[DataError], shown: int = 3) -> DataError:
    """One error for several: the first problem, then the next ``shown`` and how many in all.

    A user fixing a folder of bad files learns of them at once, not one run at a time.
    """
    first, rest = problems[0], problems[1:]
    if not rest:
        return first
    listed = "; ".join(str(problem) for problem in rest[:shown])
    more = f"; and {len(rest) - shown} more" if len(rest) > shown else ""
    return DataError(first.where, f"{first.problem} ({len(problems)} bad in all: {listed}{more})")


def nothing_left(where: object, skipped: Sequence[str]) -> DataError:
    """The error for a source whose every record was skipped as corrupt."""
    return DataError(where, f"no readable records left after skipping {len(skipped)} corrupt ones")


def shard_ranges(num_examples: int, num_shards: int) -> dict[str, np.ndarray]:
    """Split ``range(num_examples)`` into contiguous ``start``/``stop`` shards."""
    if num_examples <= 0:
        raise ValueError("a source needs at least one example")
    num_shards = max(1, min(num_shards, num_examples))
    bounds = np.linspace(0, num_examples, num_shards + 1).round().astype(np.int64)
    return {"start": bounds[:-1], "stop": bounds[1:]}


def decode_encoded_image(data: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """Decode JPEG/PNG bytes to float32 RGB in [0, 1], resized to ``size`` if it differs."""
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image = tf.cast(image, tf.float32)
    same = tf.reduce_all(tf.shape(image)[:2] == tf.constant(size))
    image = tf.cond(same, lambda: image, lambda: tf.image.resize(image, size))
    return tf.ensure_shape(image / 255.0, (*size, 3))
