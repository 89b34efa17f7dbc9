"""TFRecord shards of ``tf.train.Example`` (encoded image, label, id), and their writer.

Files are named ``<split>-00000-of-00008.tfrecord``. Each example holds
``image`` (PNG or JPEG bytes), ``label`` (int64) and ``id`` (int64).
"""

from __future__ import annotations

import dataclasses
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from pipelines.element import ID, IMAGE, LABEL
from pipelines.errors import DataError
from pipelines.sources.base import Record, Source, decode_encoded_image, nothing_left
from pipelines.sources.image_folder import encode_image

FEATURES = {
    IMAGE: tf.io.FixedLenFeature([], tf.string),
    LABEL: tf.io.FixedLenFeature([], tf.int64),
    ID: tf.io.FixedLenFeature([], tf.int64),
}
PARSE_BLOCK = 64
# Each record: uint64 length, uint32 masked CRC of the length, data, uint32 masked CRC of data.
_HEADER = 12
_FOOTER = 4


def walk_records(path: Path) -> tuple[int, DataError | None]:
    """Walk a shard's record length headers (no payload is read).

    Returns how many whole records the file holds and, when it is empty or
    cut short, the problem (naming the file); records before a cut are whole.
    """
    size = path.stat().st_size
    if size == 0:
        return 0, DataError(path, "TFRecord shard is empty (0 bytes)")
    count = position = 0
    with open(path, "rb") as handle:
        while position < size:
            header = handle.read(_HEADER)
            if len(header) < _HEADER:
                return count, DataError(
                    path, f"truncated TFRecord: record {count} header cut at byte {position}"
                )
            (length,) = struct.unpack("<Q", header[:8])
            end = position + _HEADER + length + _FOOTER
            if end > size:
                return count, DataError(
                    path,
                    f"truncated TFRecord: record {count} at byte {position} needs {end - position}"
                    f" bytes, the file ends after {size - position}",
                )
            handle.seek(end)
            position = end
            count += 1
    return count, None


def count_records(path: Path) -> int:
    """How many records a shard holds; `DataError` naming the file when it is empty or cut short."""
    count, problem = walk_records(path)
    if problem is not None:
        raise problem
    return count


def bad_records(path: Path, count: int, num_classes: int) -> list[tuple[int, str]]:
    """(index, problem) of each of the first ``count`` records that does not parse or decode."""
    bad = []
    records = iter(tf.data.TFRecordDataset(str(path)).take(count))
    for index in range(count):
        try:
            serialized = next(records)
        except tf.errors.OpError as error:  # the file itself is damaged (a bad CRC)
            return [*bad, (index, error.message.splitlines()[0])]
        try:
            example = tf.io.parse_single_example(serialized, FEATURES)
            label = int(example[LABEL])
            if not 0 <= label < num_classes:
                bad.append((index, f"label {label} is outside 0..{num_classes - 1}"))
                continue
            tf.io.decode_image(example[IMAGE], channels=3, expand_animations=False)
        except tf.errors.OpError as error:
            bad.append((index, error.message.splitlines()[0]))
    return bad


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
    skip_corrupt: bool = False,
) -> Source:
    """A source over TFRecord shards; images of other sizes are resized to ``image_size``.

    Args:
        location: a folder of ``<split>-*.tfrecord`` shards, one shard file, or a glob.
        split: which shards of a folder to read.
        image_size: (height, width) of decoded images.
        num_classes: labels must lie in ``[0, num_classes)`` (checked while decoding).
        skip_corrupt: leave out (and list in ``skipped``) a truncated shard's
            cut record and records that do not parse or decode or whose label
            is out of range, instead of failing; every record is then decoded
            once here.
    """
    location = Path(location)
    files = shard_files(location, split)
    if not skip_corrupt:
        counts = [count_records(path) for path in files]
        skipped: list[str] = []
        bad_ids = np.zeros(0, np.int64)
    else:
        counts, skipped, bad_ids = _find_corrupt(files, num_classes)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    shards = Shards(tuple(files), tuple(bad_ids.tolist()), num_classes, image_size, skip_corrupt)
    return Source(
        kind="tfrecord",
        location=str(location),
        split=split,
        shards={
            "path": np.asarray([str(p) for p in files]),
            "count": np.asarray(counts, np.int64),
            "offset": offsets,
        },
        read_shard=shards.read_shard,
        decode=shards.decode,
        num_examples=int(sum(counts)) - int(bad_ids.size),
        num_classes=num_classes,
        image_shape=(*image_size, 3),
        check=shards.check,
        skipped=tuple(skipped),
    )


@dataclasses.dataclass(frozen=True)
class Shards:
    """How a source reads, decodes and checks its TFRecord shards.

    ``bad_ids``: the global indices of corrupt records left out (``skip_corrupt``).
    """

    files: tuple[Path, ...]
    bad_ids: tuple[int, ...]
    num_classes: int
    image_size: tuple[int, int]
    skip_corrupt: bool

    def read_shard(self, shard: Record) -> tf.data.Dataset:
        """The shard's parsed records, less the corrupt ones."""
        # take(count): a truncated shard's cut record is never read (with skip_corrupt).
        records = tf.data.TFRecordDataset(shard["path"]).take(shard["count"])
        if self.bad_ids:
            bad = tf.constant(self.bad_ids, tf.int64)
            records = (
                records.enumerate(shard["offset"])
                .filter(lambda i, _: tf.reduce_all(tf.not_equal(bad, i)))
                .map(lambda _, serialized: serialized)
            )
        # Parsed in blocks: tf.data pays a function call per element, which
        # costs more than parsing one small record.
        parsed = records.batch(PARSE_BLOCK).map(lambda block: tf.io.parse_example(block, FEATURES))
        return parsed.unbatch()

    def decode(self, record: Record) -> Record:
        """The image decoded and resized; a label out of range fails the pipeline."""
        label = record[LABEL]
        checks = [
            tf.debugging.assert_non_negative(label, message="label below 0"),
            tf.debugging.assert_less(
                label,
                tf.constant(self.num_classes, tf.int64),
                message=f"label outside 0..{self.num_classes - 1}",
            ),
        ]
        with tf.control_dependencies(checks):
            image = decode_encoded_image(record[IMAGE], self.image_size)
        return {**record, IMAGE: image}

    def check(self) -> None:
        """Parse and decode every record; `DataError` names the first bad one's file."""
        if self.skip_corrupt:
            return  # every record was checked at open, and the bad ones left out
        for path in self.files:
            found = bad_records(path, count_records(path), self.num_classes)
            if found:
                index, message = found[0]
                raise DataError(path, f"record {index}: {message}")


def _find_corrupt(
    files: Sequence[Path], num_classes: int
) -> tuple[list[int], list[str], np.ndarray]:
    """Per shard its whole records; a line per corrupt record; the corrupt ones' global indices."""
    counts, skipped, bad_ids = [], [], []
    offset = 0
    for path in files:
        count, problem = walk_records(path)
        if problem is not None:
            skipped.append(str(problem))
        for index, message in bad_records(path, count, num_classes):
            skipped.append(f"{path}: record {index}: {message}")
            bad_ids.append(offset + index)
        counts.append(count)
        offset += count
    if offset - len(bad_ids) <= 0:
        raise nothing_left(files[0].parent, skipped)
    return counts, skipped, np.asarray(bad_ids, np.int64)


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
