"""CIFAR-10 "python version" batches, in the exact format the CIFAR-10 site ships.

A folder holds ``data_batch_1`` .. ``data_batch_5`` (train), ``test_batch``
(test) and ``batches.meta``. Each batch is a pickled dict with ``b'data'``
(N x 3072 uint8, each row 3 x 32 x 32 channel-major) and ``b'labels'`` (N ints);
``b'batch_label'`` and ``b'filenames'`` are carried along.

Pickles can run code when loaded, so they are read with an unpickler that
only rebuilds numpy arrays and plain containers.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from pipelines.element import ID, IMAGE, LABEL, to_unit_float
from pipelines.errors import DataError
from pipelines.sources.base import (
    Record,
    Source,
    check_labels,
    label_problems,
    labels_outside,
    nothing_left,
)

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
META_FILE = "batches.meta"
ROW_BYTES = 3 * 32 * 32
NUM_CLASSES = 10

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays and refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _field(batch: dict[Any, Any], name: str) -> Any:
    # The site's pickles (Python 2) have bytes keys; re-pickled copies may have str keys.
    return batch.get(name.encode(), batch.get(name))


def load_batch(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Load one batch file; return (N x 3072 uint8 data, N int64 labels), validated."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "CIFAR batch file is missing")
    try:
        with open(path, "rb") as handle:
            batch = _ArrayUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise DataError(path, f"not a readable CIFAR batch pickle ({error})") from None
    if not isinstance(batch, dict):
        raise DataError(path, f"expected a pickled dict, found {type(batch).__name__}")
    data, labels = _field(batch, "data"), _field(batch, "labels")
    if data is None:
        raise DataError(path, "CIFAR batch has no b'data' entry")
    if labels is None:
        raise DataError(path, "CIFAR batch has no b'labels' entry")
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW_BYTES:
        raise DataError(
            path, f"b'data' must be N x {ROW_BYTES} uint8, got {data.shape} {data.dtype}"
        )
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(data),):
        raise DataError(path, f"{len(data)} rows of b'data' but {labels.size} labels")
    if len(data) == 0:
        raise DataError(path, "CIFAR batch is empty")
    return data, labels


def _load_for_pipeline(path: bytes, offset: np.int64, skip: bool) -> tuple[np.ndarray, ...]:
    data, labels = load_batch(path.decode())
    ids = np.arange(offset, offset + len(data), dtype=np.int64)
    if skip:
        keep = np.ones(len(labels), bool)
        keep[labels_outside(labels, NUM_CLASSES)] = False
        return data[keep], labels[keep], ids[keep]
    return data, labels, ids


def cifar_source(
    folder: str | os.PathLike[str], split: str = "train", *, skip_corrupt: bool = False
) -> Source:
    """A source over a CIFAR-10 python folder (``cifar-10-batches-py``).

    Every batch file is validated here (missing files, missing keys, wrong
    shapes, labels outside 0..9); the pipeline reopens the files each epoch,
    which is the work a cache saves.

    Args:
        folder: the folder holding the batch files.
        split: "train" (data_batch_1..5) or "test" (test_batch).
        skip_corrupt: leave out (and list in ``skipped``) rows whose label is
            out of range, instead of failing. A missing or unreadable batch
            file is still an error: it is not a corrupt record but missing data.
    """
    folder = Path(folder)
    paths, counts, skipped = open_batches(folder, split, skip_corrupt)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    batches = BatchFiles(tuple(paths), skip_corrupt)
    return Source(
        kind="cifar",
        location=str(folder),
        split=split,
        shards={"path": np.asarray([str(p) for p in paths]), "offset": offsets},
        read_shard=batches.read_shard,
        decode=decode_cifar,
        num_examples=int(sum(counts)) - len(skipped),
        num_classes=NUM_CLASSES,
        image_shape=(32, 32, 3),
        decode_batchable=True,
        check=batches.check,
        skipped=tuple(skipped),
    )


def open_batches(
    folder: Path, split: str, skip_corrupt: bool
) -> tuple[list[Path], list[int], list[str]]:
    """The split's batch files, each one's row count, and a line per row left out.

    Every file is loaded and its labels checked (or, with ``skip_corrupt``,
    the rows with bad labels listed).
    """
    if not folder.is_dir():
        raise DataError(folder, "folder does not exist" if not folder.exists() else "not a folder")
    if split not in {"train", "test"}:
        raise DataError(folder, f"CIFAR split must be 'train' or 'test', not {split!r}")
    paths = [folder / name for name in (TRAIN_BATCHES if split == "train" else TEST_BATCHES)]
    counts: list[int] = []
    skipped: list[str] = []
    for path in paths:
        _, labels = load_batch(path)
        if skip_corrupt:
            skipped += label_problems(labels, NUM_CLASSES, path).values()
        else:
            check_labels(labels, NUM_CLASSES, str(path))
        counts.append(len(labels))
    if sum(counts) == len(skipped):
        raise nothing_left(folder, skipped)
    return paths, counts, skipped


@dataclasses.dataclass(frozen=True)
class BatchFiles:
    """How a source reads and checks its batch files: one file per shard."""

    paths: tuple[Path, ...]
    skip_corrupt: bool

    def read_shard(self, shard: Record) -> tf.data.Dataset:
        """The batch's rows. Opening a batch means unpickling all of it, as any
        CIFAR reader must."""
        loaded = tf.data.Dataset.from_tensors(shard).map(
            lambda s: tf.numpy_function(
                _load_for_pipeline,
                [s["path"], s["offset"], self.skip_corrupt],
                [tf.uint8, tf.int64, tf.int64],
            )
        )
        records = loaded.map(
            lambda data, labels, ids: {
                IMAGE: tf.ensure_shape(data, (None, ROW_BYTES)),
                LABEL: tf.ensure_shape(labels, (None,)),
                ID: tf.ensure_shape(ids, (None,)),
            }
        )
        return records.unbatch()

    def check(self) -> None:
        """Load every batch again; `DataError` names a file that no longer loads or fits."""
        for path in self.paths:
            labels = load_batch(path)[1]
            if not self.skip_corrupt:
                check_labels(labels, NUM_CLASSES, str(path))


def decode_cifar(record: Record) -> Record:
    """Channel-major rows -> float32 H x W x C in [0, 1]; one record or a batch."""
    rows = record[IMAGE]
    if rows.shape.rank == 1:
        image = tf.transpose(tf.reshape(rows, (3, 32, 32)), (1, 2, 0))
    else:
        image = tf.transpose(tf.reshape(rows, (-1, 3, 32, 32)), (0, 2, 3, 1))
    return {**record, IMAGE: to_unit_float(image)}


def write_cifar_folder(
    folder: str | os.PathLike[str],
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    class_names: Sequence[str],
) -> list[Path]:
    """Write ``(images N x 32 x 32 x 3 uint8, labels)`` pairs as CIFAR-10 python batches.

    The train set is cut into five equal batches, as the site's is. Returns the files written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    train_parts = np.array_split(np.arange(len(train[0])), len(TRAIN_BATCHES))
    batches = [
        (name, train[0][rows], train[1][rows], f"training batch {i + 1} of 5")
        for i, (name, rows) in enumerate(zip(TRAIN_BATCHES, train_parts, strict=True))
    ]
    batches.append((TEST_BATCHES[0], test[0], test[1], "testing batch 1 of 1"))
    for name, images, labels, batch_label in batches:
        data = np.ascontiguousarray(np.asarray(images, np.uint8).transpose(0, 3, 1, 2))
        content = {
            b"batch_label": batch_label.encode(),
            b"labels": [int(label) for label in labels],
            b"data": data.reshape(len(data), ROW_BYTES),
            b"filenames": [f"{name}_{i:05d}.png".encode() for i in range(len(data))],
        }
        written.append(_write_pickle(folder / name, content))
    meta = {
        b"num_cases_per_batch": len(batches[0][1]),
        b"label_names": [name.encode() for name in class_names],
        b"num_vis": ROW_BYTES,
    }
    written.append(_write_pickle(folder / META_FILE, meta))
    return written


def _write_pickle(path: Path, content: dict[bytes, Any]) -> Path:
    with open(path, "wb") as handle:
        # Protocol 2 is what the site's Python 2 pickles use; bytes keys as well.
        pickle.dump(content, handle, protocol=2)
    return path
