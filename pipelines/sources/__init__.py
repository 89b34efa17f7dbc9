"""Sources (Extract): one constructor per kind of data, each returning a `Source`.

- `arrays_source`: arrays in memory;
- `generator_source`: a Python generator;
- `image_folder_source`: class sub-folders of JPEG/PNG with ``img_path,label`` CSVs;
- `cifar_source`: CIFAR-10 python batches;
- `tfrecord_source`: TFRecord shards of ``tf.train.Example``;
- `with_latency`: any of them behind slow storage.

`open_source` picks the kind from what a path holds. ``source.dataset()`` is
the plain dataset of elements; variants use the source's parts instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.errors import DataError
from pipelines.sources.base import Source
from pipelines.sources.cifar import TEST_BATCHES, TRAIN_BATCHES, cifar_source, write_cifar_folder
from pipelines.sources.generator import generator_source
from pipelines.sources.image_folder import image_folder_source, write_image_folder
from pipelines.sources.latency import LATENCY_PROFILES, Latency, parse_latency, with_latency
from pipelines.sources.memory import arrays_source
from pipelines.sources.tfrecord import tfrecord_source, write_tfrecords

__all__ = [
    "LATENCY_PROFILES",
    "Latency",
    "Source",
    "arrays_source",
    "cifar_source",
    "detect_kind",
    "generator_source",
    "image_folder_source",
    "open_kind",
    "open_source",
    "parse_latency",
    "tfrecord_source",
    "with_latency",
    "write_cifar_folder",
    "write_image_folder",
    "write_tfrecords",
]


def detect_kind(path: str | os.PathLike[str]) -> str:
    """Which source kind a path holds: "cifar", "tfrecord" or "image_folder"."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "does not exist")
    if path.is_file():
        if ".tfrecord" in path.name:
            return "tfrecord"
        raise DataError(path, "a single file must be a TFRecord shard (*.tfrecord)")
    names = {p.name for p in path.iterdir()}
    if not names:
        raise DataError(path, "folder is empty")
    if names & {*TRAIN_BATCHES, *TEST_BATCHES}:
        return "cifar"
    if any(".tfrecord" in name for name in names):
        return "tfrecord"
    if names & {"train.csv", "test.csv"} or any(p.is_dir() for p in path.iterdir()):
        return "image_folder"
    raise DataError(
        path,
        "not a dataset this suite reads (expected CIFAR-10 python batches,"
        " *.tfrecord shards, or class sub-folders of images)",
    )


def open_source(
    path: str | os.PathLike[str],
    split: str = "train",
    *,
    image_size: tuple[int, int] = (32, 32),
    skip_corrupt: bool = False,
) -> Source:
    """Open a user's dataset of any supported kind, detected from its contents.

    ``skip_corrupt`` leaves corrupt records out (listed in ``source.skipped``)
    instead of failing on the first.
    """
    return open_kind(
        detect_kind(path), path, split, image_size=image_size, skip_corrupt=skip_corrupt
    )


def open_kind(
    kind: str,
    path: str | os.PathLike[str],
    split: str = "train",
    *,
    image_size: tuple[int, int] = (32, 32),
    skip_corrupt: bool = False,
) -> Source:
    """Open ``path`` as a source of ``kind``: "cifar", "tfrecord" or "image_folder".

    CIFAR images are 32x32 as stored; ``image_size`` applies to the other kinds.
    """
    if kind == "cifar":
        return cifar_source(path, split, skip_corrupt=skip_corrupt)
    options = {"image_size": image_size, "skip_corrupt": skip_corrupt}
    if kind == "tfrecord":
        return tfrecord_source(path, split, **options)
    return image_folder_source(path, split, **options)
