"""Image folders: one sub-folder per class, JPEG/PNG files, with CSV indexes.

The layout is the Oregon-wildlife assignment's::

    root/<class_name>/<image>.jpg
    root/train.csv, root/test.csv      header ``img_path,label``

``img_path`` is relative to ``root`` or absolute. Without the CSVs the folder
is walked (classes in sorted order; gif and bmp skipped, as the assignment
does) and split 80/20 with a fixed random state, in memory: the user's folder
is never written to.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from pipelines.element import ID, IMAGE, LABEL
from pipelines.errors import DataError
from pipelines.sources.base import (
    Record,
    Source,
    all_in_one,
    check_labels,
    decode_encoded_image,
    label_problems,
    nothing_left,
)

IMAGE_SUFFIXES = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
SKIPPED_SUFFIXES = {".gif", ".bmp"}
CSV_HEADER = ("img_path", "label")
SPLIT_SEED = 42
TEST_FRACTION = 0.2


def sniff_format(head: bytes) -> str | None:
    """The image format that a file's first bytes announce ("JPEG", "PNG"), or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    return None


def check_image_file(path: Path) -> None:
    """Cheap structural check of one image file (reads only its ends).

    Catches missing, empty, mislabelled (a PNG named .jpg) and truncated
    files without decoding them; `check_image_decodes` goes further.
    """
    expected = IMAGE_SUFFIXES.get(path.suffix.lower())
    if expected is None:
        raise DataError(path, f"unsupported image type {path.suffix!r} (use .jpg, .jpeg or .png)")
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            handle.seek(max(0, size - 1024))
            tail = handle.read()
    except FileNotFoundError:
        raise DataError(path, "file does not exist") from None
    except OSError as error:
        raise DataError(path, f"cannot be read ({error.strerror})") from None
    if size == 0:
        raise DataError(path, "file is empty (0 bytes)")
    actual = sniff_format(head)
    if actual is None:
        raise DataError(path, f"not a {expected} image (unrecognised header bytes {head[:4]!r})")
    if actual != expected:
        raise DataError(path, f"contains {actual} data but is named {path.suffix}")
    # A JPEG ends with the EOI marker and a PNG with its IEND chunk; a file cut
    # short has neither. (0xFF 0xD9 cannot occur inside JPEG entropy-coded data.)
    if actual == "JPEG" and b"\xff\xd9" not in tail:
        raise DataError(path, "truncated JPEG (no end-of-image marker)")
    if actual == "PNG" and b"IEND" not in tail[-16:]:
        raise DataError(path, "truncated PNG (no IEND chunk)")


def check_image_files(paths: Sequence[Path]) -> None:
    """`check_image_file` on every file; one `DataError` names the first bad one and lists
    the next few, with how many there are in all."""
    problems = []
    for path in paths:
        try:
            check_image_file(path)
        except DataError as problem:
            problems.append(problem)
    if problems:
        raise all_in_one(problems)


def check_image_decodes(path: Path) -> None:
    """Decode one image fully; raise `DataError` naming it if that fails."""
    check_image_file(path)
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(path, f"corrupt image: {error}") from None


def read_index(csv_path: Path, root: Path) -> tuple[list[Path], np.ndarray]:
    """Read an ``img_path,label`` CSV; return the image paths and labels."""
    paths: list[Path] = []
    labels: list[int] = []
    try:
        with open(csv_path, newline="") as handle:
            rows = csv.reader(handle)
            header = next(rows, None)
            if header is None or tuple(h.strip() for h in header) != CSV_HEADER:
                raise DataError(csv_path, f"header must be 'img_path,label', got {header!r}")
            for line, row in enumerate(rows, start=2):
                if not row:
                    continue
                if len(row) != 2:
                    raise DataError(csv_path, f"line {line}: expected 2 columns, got {len(row)}")
                try:
                    label = int(row[1])
                except ValueError:
                    raise DataError(
                        csv_path, f"line {line}: label {row[1]!r} is not an integer"
                    ) from None
                path = Path(row[0])
                path = path if path.is_absolute() else root / path
                if not path.is_file():
                    raise DataError(csv_path, f"line {line}: {row[0]} does not exist")
                paths.append(path)
                labels.append(label)
    except UnicodeDecodeError:
        raise DataError(csv_path, "not a text CSV file") from None
    if not paths:
        raise DataError(csv_path, "lists no images")
    return paths, np.asarray(labels, dtype=np.int64)


def class_folders(root: Path) -> list[str]:
    """Sorted names of the class sub-folders of ``root``."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def walk_index(root: Path) -> tuple[list[Path], np.ndarray]:
    """Index a folder without CSVs: every image of every class sub-folder, in sorted order."""
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(class_folders(root)):
        for path in sorted((root / name).iterdir()):
            suffix = path.suffix.lower()
            if path.is_file() and suffix in IMAGE_SUFFIXES and suffix not in SKIPPED_SUFFIXES:
                paths.append(path)
                labels.append(label)
    return paths, np.asarray(labels, dtype=np.int64)


def split_index(count: int, split: str) -> np.ndarray:
    """Row numbers of ``split`` under the assignment's fixed 80/20 split."""
    order = np.random.default_rng(SPLIT_SEED).permutation(count)
    num_test = round(count * TEST_FRACTION)
    return np.sort(order[num_test:] if split == "train" else order[:num_test])


def image_folder_source(
    root: str | os.PathLike[str],
    split: str = "train",
    *,
    image_size: tuple[int, int] = (32, 32),
    num_classes: int | None = None,
    skip_corrupt: bool = False,
) -> Source:
    """A source over an image folder; images of any size are resized to ``image_size``.

    Args:
        root: the folder holding one sub-folder per class (and optionally the CSVs).
        split: "train" or "test" (read from ``<split>.csv``, or split 80/20 when
            there are no CSVs), or "all" (every image, ignoring the CSVs).
        image_size: (height, width) of decoded images.
        num_classes: default: the number of class sub-folders.
        skip_corrupt: leave out (and list in ``skipped``) images that do not
            decode and rows whose label is out of range, instead of failing;
            every image is then decoded once here.
    """
    root = Path(root)
    paths, labels, where, classes = open_index(root, split)
    if num_classes is None:
        num_classes = len(classes) if classes else int(labels.max()) + 1
    skipped: list[str] = []
    if skip_corrupt:
        paths, labels, skipped = _without_corrupt(paths, labels, num_classes, where)
    check_labels(labels, num_classes, str(where))
    check_image_files(paths)
    files = ImageFiles(tuple(paths), image_size)
    return Source(
        kind="image_folder",
        location=str(root),
        split=split,
        shards={
            "path": np.asarray([str(p) for p in paths]),
            "label": labels,
            "id": np.arange(len(paths), dtype=np.int64),
        },
        read_shard=files.read_shard,
        decode=files.decode,
        num_examples=len(paths),
        num_classes=num_classes,
        image_shape=(*image_size, 3),
        check=files.check,
        one_record_per_shard=True,
        skipped=tuple(skipped),
    )


def open_index(root: Path, split: str) -> tuple[list[Path], np.ndarray, Path, list[str]]:
    """The split's image paths and labels, where they were listed, and the class folders.

    From ``<split>.csv`` when there is one; otherwise the class folders are
    walked and split 80/20 (``split`` "all": every image).
    """
    if not root.is_dir():
        raise DataError(root, "folder does not exist" if not root.exists() else "not a folder")
    if not any(root.iterdir()):
        raise DataError(root, "folder is empty")
    classes = class_folders(root)
    csv_path = root / f"{split}.csv"
    if split != "all" and csv_path.is_file():
        paths, labels = read_index(csv_path, root)
        return paths, labels, csv_path, classes
    if split not in {"train", "test", "all"}:
        raise DataError(csv_path, f"no index for split {split!r}")
    if not classes:
        raise DataError(root, "has neither CSV indexes nor class sub-folders")
    paths, labels = walk_index(root)
    if not paths:
        raise DataError(root, "class folders hold no .jpg/.jpeg/.png images")
    if split != "all":
        rows = split_index(len(paths), split)
        paths, labels = [paths[i] for i in rows], labels[rows]
    return paths, labels, root, classes


@dataclasses.dataclass(frozen=True)
class ImageFiles:
    """How a source reads, decodes and checks its image files: one file per shard."""

    paths: tuple[Path, ...]
    image_size: tuple[int, int]

    def read_shard(self, shard: Record) -> tf.data.Dataset:
        """The file's bytes with its label and id. One file is one shard: opening it
        is the per-file cost that interleave overlaps and the latency wrapper models."""
        return tf.data.Dataset.from_tensors(
            {IMAGE: tf.io.read_file(shard["path"]), LABEL: shard["label"], ID: shard["id"]}
        )

    def decode(self, record: Record) -> Record:
        """The JPEG or PNG decoded and resized to ``image_size``."""
        return {**record, IMAGE: decode_encoded_image(record[IMAGE], self.image_size)}

    def check(self) -> None:
        """Decode every file; `DataError` names the first that does not decode."""
        for path in self.paths:
            check_image_decodes(path)


def _without_corrupt(
    paths: list[Path], labels: np.ndarray, num_classes: int, where: Path
) -> tuple[list[Path], np.ndarray, list[str]]:
    """The rows whose label is in range and whose image decodes, and a line per other row."""
    keep, skipped = [], []
    bad_labels = label_problems(labels, num_classes, where)
    for row, path in enumerate(paths):
        if row in bad_labels:
            skipped.append(bad_labels[row])
            continue
        try:
            check_image_decodes(path)
        except DataError as problem:
            skipped.append(str(problem))
            continue
        keep.append(row)
    if not keep:
        raise nothing_left(where, skipped)
    return [paths[i] for i in keep], labels[keep], skipped


def encode_image(image: np.ndarray, image_format: str, quality: int = 90) -> bytes:
    """Encode a uint8 H x W x 3 array as JPEG or PNG bytes (deterministic)."""
    buffer = io.BytesIO()
    options = {"quality": quality} if image_format == "JPEG" else {"optimize": False}
    Image.fromarray(image).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def write_image_folder(
    root: str | os.PathLike[str],
    split: str,
    images: Sequence[np.ndarray],
    labels: Sequence[int],
    class_names: Sequence[str],
    *,
    suffix: str = ".jpg",
    quality: int = 90,
) -> Path:
    """Write ``images`` under ``root/<class>/`` and the index ``root/<split>.csv``.

    Images may differ in size. File names are ``<split>_<id>.<suffix>``, paths
    in the CSV are relative to ``root``. Returns the CSV's path.
    """
    root = Path(root)
    image_format = IMAGE_SUFFIXES[suffix]
    for name in class_names:
        (root / name).mkdir(parents=True, exist_ok=True)
    csv_path = root / f"{split}.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            relative = Path(class_names[int(label)]) / f"{split}_{index:06d}{suffix}"
            (root / relative).write_bytes(encode_image(image, image_format, quality))
            writer.writerow((relative.as_posix(), int(label)))
    return csv_path
