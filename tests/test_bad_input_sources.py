"""Bad input to a source gives one line that names the file and what is wrong."""

from __future__ import annotations

import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipelines import DataError, sources
from pipelines.data.synthetic import CLASS_NAMES, make_examples


def raises_one_line(where: Path | str, pattern: str) -> pytest.RaisesExc:
    """Expect a `DataError` whose single line starts with ``where`` and matches ``pattern``."""
    return pytest.raises(DataError, match=rf"^{re.escape(str(where))}: {pattern}$")


@pytest.fixture(scope="module")
def examples() -> tuple[list[np.ndarray], np.ndarray]:
    return make_examples(seed=5, split="test", count=12)


@pytest.fixture
def folder(tmp_path, examples) -> Path:
    """A small, valid image folder with train.csv."""
    sources.write_image_folder(tmp_path / "images", "train", *examples, CLASS_NAMES)
    return tmp_path / "images"


@pytest.fixture
def cifar(tmp_path, examples) -> Path:
    images = np.stack(examples[0])
    sources.write_cifar_folder(
        tmp_path / "cifar", (images, examples[1]), (images, examples[1]), CLASS_NAMES
    )
    return tmp_path / "cifar"


def first_image(folder: Path) -> Path:
    return folder / (folder / "train.csv").read_text().splitlines()[1].split(",")[0]


@pytest.mark.parametrize(
    "open_kind",
    [
        sources.image_folder_source,
        sources.cifar_source,
        sources.tfrecord_source,
        sources.open_source,
    ],
)
def test_a_missing_folder_is_named(tmp_path, open_kind):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=rf"^{re.escape(str(missing))}: .*(does not exist|no such)"):
        open_kind(missing)


@pytest.mark.parametrize(
    "open_kind", [sources.image_folder_source, sources.tfrecord_source, sources.open_source]
)
def test_an_empty_folder_is_named(tmp_path, open_kind):
    with raises_one_line(tmp_path, "folder is empty"):
        open_kind(tmp_path)


def test_a_zero_byte_image_is_named(folder):
    image = first_image(folder)
    image.write_bytes(b"")
    with raises_one_line(image, r"file is empty \(0 bytes\)"):
        sources.image_folder_source(folder)


def test_every_bad_image_of_a_folder_is_listed_in_one_line(folder):
    images = [folder / row.split(",")[0] for row in (folder / "train.csv").read_text().split()[1:]]
    for image in images[:5]:
        image.write_bytes(b"")
    empty = r"file is empty \(0 bytes\)"
    others = "; ".join(f"{re.escape(str(image))}: {empty}" for image in images[1:4])
    with raises_one_line(images[0], rf"{empty} \(5 bad in all: {others}; and 1 more\)"):
        sources.image_folder_source(folder)


def test_a_truncated_jpeg_is_named(folder):
    image = first_image(folder)
    image.write_bytes(image.read_bytes()[:200])
    with raises_one_line(image, r"truncated JPEG \(no end-of-image marker\)"):
        sources.image_folder_source(folder)


def test_a_png_named_jpg_is_named(folder, examples):
    image = first_image(folder)
    image.write_bytes(sources.image_folder.encode_image(examples[0][0], "PNG"))
    with raises_one_line(image, "contains PNG data but is named .jpg"):
        sources.image_folder_source(folder)


def test_a_corrupt_jpeg_is_named_when_the_pipeline_reads_it(folder):
    # Intact start and end markers, garbage between: only decoding finds out.
    image = first_image(folder)
    garbage = np.random.default_rng(0).integers(0, 256, 600, dtype=np.uint8).tobytes()
    image.write_bytes(b"\xff\xd8\xff\xe0" + garbage.replace(b"\xff", b"\x00") + b"\xff\xd9")
    source = sources.image_folder_source(folder)
    with raises_one_line(image, "corrupt image: .*"), source.explain_errors():
        for _ in source.dataset():
            pass


def test_a_csv_naming_a_missing_file_is_named(folder):
    first_image(folder).unlink()
    with raises_one_line(folder / "train.csv", r"line 2: \w+/train_000000.jpg does not exist"):
        sources.image_folder_source(folder)


def test_a_csv_label_outside_the_class_range_is_named(folder):
    csv_path = folder / "train.csv"
    lines = csv_path.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",12"
    csv_path.write_text("\n".join(lines) + "\n")
    with raises_one_line(
        csv_path, r"label 12 at index 2 is outside the class range 0..9 \(1 such labels\)"
    ):
        sources.image_folder_source(folder)


def test_a_csv_with_a_wrong_header_is_named(folder):
    csv_path = folder / "train.csv"
    csv_path.write_text("path,class\n" + "\n".join(csv_path.read_text().splitlines()[1:]))
    with raises_one_line(csv_path, "header must be 'img_path,label', got .*"):
        sources.image_folder_source(folder)


def test_a_truncated_tfrecord_is_named(tmp_path, examples):
    (shard,) = sources.write_tfrecords(tmp_path, "train", *examples)
    shard.write_bytes(shard.read_bytes()[:-30])
    with raises_one_line(shard, r"truncated TFRecord: record 11 at byte \d+ needs \d+ bytes, .*"):
        sources.tfrecord_source(tmp_path)


def test_a_tfrecord_label_outside_the_class_range_is_named_when_read(tmp_path, examples):
    images, labels = examples
    (shard,) = sources.write_tfrecords(tmp_path, "train", images, np.where(labels == 3, 10, labels))
    source = sources.tfrecord_source(tmp_path)
    with raises_one_line(shard, r"record \d+: label 10 is outside 0..9"), source.explain_errors():
        for _ in source.dataset():
            pass


def test_a_cifar_batch_without_data_is_named(cifar):
    batch = cifar / "data_batch_2"
    with open(batch, "rb") as handle:
        content = pickle.load(handle, encoding="bytes")
    del content[b"data"]
    with open(batch, "wb") as handle:
        pickle.dump(content, handle, protocol=2)
    with raises_one_line(batch, "CIFAR batch has no b'data' entry"):
        sources.cifar_source(cifar)


def test_a_missing_cifar_batch_is_named(cifar):
    (cifar / "data_batch_3").unlink()
    with raises_one_line(cifar / "data_batch_3", "CIFAR batch file is missing"):
        sources.cifar_source(cifar)


def label_first_test_row(cifar: Path, label: int) -> tuple[Path, dict]:
    """Rewrite the test batch with ``label`` on its first row; (the batch, its content)."""
    batch = cifar / "test_batch"
    with open(batch, "rb") as handle:
        content = pickle.load(handle, encoding="bytes")
    content[b"labels"][0] = label
    with open(batch, "wb") as handle:
        pickle.dump(content, handle, protocol=2)
    return batch, content


def test_a_cifar_label_outside_the_class_range_is_named(cifar):
    batch, _ = label_first_test_row(cifar, -1)
    with raises_one_line(batch, "label -1 at index 0 is outside the class range 0..9 .*"):
        sources.cifar_source(cifar, "test")


def test_a_cifar_pickle_that_would_run_code_is_refused(cifar):
    batch = cifar / "data_batch_1"
    with open(batch, "wb") as handle:
        pickle.dump({b"data": shutil.rmtree}, handle, protocol=2)
    with raises_one_line(
        batch, r"not a readable CIFAR batch pickle \(refusing to load shutil.rmtree\)"
    ):
        sources.cifar_source(cifar)


def test_arrays_with_a_label_outside_the_class_range_are_named():
    with raises_one_line("<memory>", "label 10 at index 1 is outside the class range 0..9 .*"):
        sources.arrays_source(np.zeros((2, 4, 4, 3), np.uint8), [0, 10], num_classes=10)


def test_an_empty_array_dataset_is_named():
    with raises_one_line("<memory>", "the dataset is empty"):
        sources.arrays_source(np.zeros((0, 4, 4, 3), np.uint8), [])


def test_a_folder_of_something_else_is_named(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with raises_one_line(tmp_path, "not a dataset this suite reads .*"):
        sources.open_source(tmp_path)


# -- skip_corrupt: the run goes on without the bad records, and says which ------------


def corrupt_decoding(image: Path) -> None:
    """Intact start and end markers, garbage between: only a decoder finds out."""
    garbage = np.random.default_rng(0).integers(0, 256, 600, dtype=np.uint8).tobytes()
    image.write_bytes(b"\xff\xd8\xff\xe0" + garbage.replace(b"\xff", b"\x00") + b"\xff\xd9")


def spoil_image_folder(folder: Path, examples) -> list[Path]:
    """One undecodable JPEG, one zero-byte file, one PNG named .jpg; the spoilt paths."""
    rows = (folder / "train.csv").read_text().splitlines()[1:4]
    paths = [folder / row.split(",")[0] for row in rows]
    corrupt_decoding(paths[0])
    paths[1].write_bytes(b"")
    paths[2].write_bytes(sources.image_folder.encode_image(examples[0][0], "PNG"))
    return paths


def ids_read(source) -> list[int]:
    return sorted(int(element["id"]) for element in source.dataset())


def test_skip_corrupt_leaves_out_bad_images_and_names_each(folder, examples):
    spoilt = spoil_image_folder(folder, examples)
    source = sources.image_folder_source(folder, skip_corrupt=True)
    assert source.num_examples == 12 - 3
    assert [line.split(":")[0] for line in source.skipped] == [str(p) for p in spoilt]
    assert "corrupt image" in source.skipped[0] and "0 bytes" in source.skipped[1]
    assert len(ids_read(source)) == 9


def test_skip_corrupt_leaves_out_rows_with_labels_out_of_range(folder):
    csv_path = folder / "train.csv"
    lines = csv_path.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",12"
    csv_path.write_text("\n".join(lines) + "\n")
    source = sources.image_folder_source(folder, skip_corrupt=True)
    assert source.skipped == (f"{csv_path}: row 2: label 12 is outside 0..9",)
    assert source.num_examples == 11


def test_skip_corrupt_reads_a_truncated_shard_up_to_the_cut_and_skips_bad_labels(
    tmp_path, examples
):
    images, labels = examples
    bad_labels = labels.copy()
    bad_labels[4] = 10
    (shard,) = sources.write_tfrecords(tmp_path, "train", images, bad_labels)
    shard.write_bytes(shard.read_bytes()[:-30])  # the last record is cut
    source = sources.tfrecord_source(tmp_path, skip_corrupt=True)
    assert len(source.skipped) == 2
    assert source.skipped[0].startswith(f"{shard}: truncated TFRecord: record 11 ")
    assert source.skipped[1] == f"{shard}: record 4: label 10 is outside 0..9"
    assert source.num_examples == 10
    assert ids_read(source) == [i for i in range(11) if i != 4]


def test_skip_corrupt_leaves_out_cifar_rows_with_labels_out_of_range(cifar):
    batch, content = label_first_test_row(cifar, -1)
    source = sources.cifar_source(cifar, "test", skip_corrupt=True)
    assert source.skipped == (f"{batch}: row 0: label -1 is outside 0..9",)
    assert source.num_examples == len(content[b"labels"]) - 1
    assert 0 not in ids_read(source)


def test_skip_corrupt_with_nothing_left_is_named(folder):
    for row in (folder / "train.csv").read_text().splitlines()[1:]:
        (folder / row.split(",")[0]).write_bytes(b"")
    with raises_one_line(
        folder / "train.csv", "no readable records left after skipping 12 corrupt ones"
    ):
        sources.image_folder_source(folder, skip_corrupt=True)
