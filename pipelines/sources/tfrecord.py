"""TFRecord shards of ``tf.train.Example`` (encoded image, label, id), and their writer.

Files are named ``<split>-00000-of-00008.tfrecord``. Each example holds
``image`` (PNG or JPEG bytes), ``label`` (int64) and ``id`` (int64).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from pipelines.element import ID, IMAGE, LABEL
from pipelines.errors import DataError
from pipelines.sources.base import Record, Source, decode_encoded_image
from pipelines.sources.image_folder import encode_image

FEATURES = {
    IMAGE: tf.io.FixedLenFeature([], tf.string),
    LABEL: tf.io.FixedLenFeature([], tf.int64),
    ID: tf.io.FixedLenFeature([], tf.int64),
}
# Each record: uint64 length, uint32 masked CRC of the length, data, uint32 masked CRC of data.
_HEADER = 12
_FOOTER = 4


def count_records(path: Path) -> int:
    """Count a shard's records by walking their length headers (no payload is read).

    Raises `DataError` naming the file when it is empty or cut short.
    """
    size = path.stat().st_size
    if size == 0:
        raise DataError(path, "TFRecord shard is empty (0 bytes)")
    count = position = 0
    with open(path, "rb") as handle:
        while position < size:
            header = handle.read(_HEADER)
            if len(header) < _HEADER:
                raise DataError(
                    path, f"truncated TFRecord: record {count} header cut at byte {position}"
                )
            (length,) = struct.unpack("<Q", header[:8])
            end = position + _HEADER + length + _FOOTER
            if end > size:
                raise DataError(
                    path,
                    f"truncated TFRecord: record {count} at byte {position} needs {end - position}"
                    f" bytes, the file ends after {size - position}",
                )
            handle.seek(end)
            position = end
            count += 1
    return count


def shard_files(location: Path, split: str) -> list[Path]:
    """The shard files of ``split`` at ``location`` (a folder, one file, or a glob)."""
    if location.is_file():
        return [location]
    if location.is_dir():
        files = sorted(location.glob(f"{split}-*.tfrecord*")) or sorted(
            location.glob(f"{split}*.tfrecord*")
        )
        if not files and not any(location.iterdir()):
            raise DataError(location, "folder is empty")
        if not files:
            raise DataError(
                location, f"no TFRecord shards for split {split!r} ({split}-*.tfrecord)"
            )
        return files
    files = sorted(Path(p) for p in tf.io.gfile.glob(str(location)))
    if not files:
        raise DataError(location, "no such file, folder or matching shards")
    return files


def tfrecord_source(
    location: str | os.PathLike[str],
    split: str = "train",
    *,
    image_size: tuple[int, int] = (32, 32),
    num_classes: int = 10,
) -> Source:
    """A source over TFRecord shards; images of other sizes are resized to ``image_size``.

    Args:
        location: a folder of ``<split>-*.tfrecord`` shards, one shard file, or a glob.
        split: which shards of a folder to read.
        image_size: (height, width) of decoded images.
        num_classes: labels must lie in ``[0, num_classes)`` (checked while decoding).
    """
    location = Path(location)
    files = shard_files(location, split)
    counts = [count_records(path) for path in files]

    def read_shard(shard: Record) -> tf.data.Dataset:
        return tf.data.TFRecordDataset(shard["path"]).map(
            lambda serialized: tf.io.parse_single_example(serialized, FEATURES)
        )

    def decode(record: Record) -> Record:
        label = record[LABEL]
        checks = [
            tf.debugging.assert_non_negative(label, message="label below 0"),
            tf.debugging.assert_less(
                label,
                tf.constant(num_classes, tf.int64),
                message=f"label outside 0..{num_classes - 1}",
            ),
        ]
        with tf.control_dependencies(checks):
            image = decode_encoded_image(record[IMAGE], image_size)
        return {**record, IMAGE: image}

    def check() -> None:
        for path in files:
            count_records(path)
            index = 0  # the record being read when an error surfaces
            try:
                for serialized in tf.data.TFRecordDataset(str(path)):
                    example = tf.io.parse_single_example(serialized, FEATURES)
                    label = int(example[LABEL])
                    if not 0 <= label < num_classes:
                        raise DataError(
                            path, f"record {index}: label {label} is outside 0..{num_classes - 1}"
                        )
                    tf.io.decode_image(example[IMAGE], channels=3, expand_animations=False)
                    index += 1
            except tf.errors.OpError as error:
                raise DataError(path, f"record {index}: {error.message.splitlines()[0]}") from None

    return Source(
        kind="tfrecord",
        location=str(location),
        split=split,
        shards={"path": np.asarray([str(p) for p in files])},
        read_shard=read_shard,
        decode=decode,
        num_examples=int(sum(counts)),
        num_classes=num_classes,
        image_shape=(*image_size, 3),
        check=check,
    )


def write_tfrecords(
    folder: str | os.PathLike[str],
    split: str,
    images: Sequence[np.ndarray],
    labels: Sequence[int],
    *,
    ids: Sequence[int] | None = None,
    num_shards: int = 1,
    image_format: str = "PNG",
) -> list[Path]:
    """Write examples as ``num_shards`` TFRecord files of contiguous ids; return their paths.

    Args:
        folder: where the shards go (created if missing).
        split: the file name prefix.
        images: uint8 H x W x 3 arrays (sizes may differ).
        labels: one label per image.
        ids: one id per image; default 0..N-1.
        num_shards: how many files to spread the examples over.
        image_format: "PNG" (lossless) or "JPEG".
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = np.arange(len(images)) if ids is None else np.asarray(ids)
    parts = np.array_split(np.arange(len(images)), num_shards)
    paths = []
    for shard, rows in enumerate(parts):
        path = folder / f"{split}-{shard:05d}-of-{num_shards:05d}.tfrecord"
        with tf.io.TFRecordWriter(str(path)) as writer:
            for row in rows:
                example = tf.train.Example(
                    features=tf.train.Features(
                        feature={
                            IMAGE: _bytes(encode_image(images[row], image_format)),
                            LABEL: _int(int(labels[row])),
                            ID: _int(int(ids[row])),
                        }
                    )
                )
                writer.write(example.SerializeToString())
        paths.append(path)
    return paths


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
