"""Every source kind reads back what was written: ids, labels and pixels."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pipelines import sources
from pipelines.data.synthetic import CLASS_NAMES, make_examples

# JPEG at quality 90 drops the synthetic images' per-pixel noise (std 10/255)
# and blurs colour edges: measured mean absolute error 11/255 against the
# original pixels. Against another decoder of the same file the reader must
# agree closely; libjpeg setups differ in chroma upsampling, which moves
# pixels at colour edges by a few levels (measured: max 4/255, mean 1.05/255).
JPEG_MEAN_ABS_TOLERANCE = 14 / 255
DECODER_MAX_ABS_TOLERANCE = 8 / 255
DECODER_MEAN_ABS_TOLERANCE = 2 / 255


def assert_decodes_like_pil(paths, got_images) -> None:
    """The reader returns the pixels stored in each file (PIL's decode as the reference)."""
    for path, image in zip(paths, got_images, strict=True):
        with Image.open(path) as reference:
            expected = np.asarray(reference.convert("RGB"), np.float32) / 255
        assert np.abs(image - expected).max() <= DECODER_MAX_ABS_TOLERANCE + 1e-6, path
        assert np.abs(image - expected).mean() <= DECODER_MEAN_ABS_TOLERANCE, path


def read_all(source: sources.Source) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All elements of a source, ordered by id: (images, labels, ids)."""
    elements = list(source.dataset().as_numpy_iterator())
    elements.sort(key=lambda e: e["id"])
    return (
        np.stack([e["image"] for e in elements]),
        np.array([e["label"] for e in elements]),
        np.array([e["id"] for e in elements]),
    )


def read_back(source: sources.Source, labels: np.ndarray) -> np.ndarray:
    """Read every element; assert ids 0..N-1 and their labels; return the images, by id."""
    images, got_labels, ids = read_all(source)
    np.testing.assert_array_equal(ids, np.arange(len(labels)))
    np.testing.assert_array_equal(got_labels, labels)
    return images


@pytest.fixture(scope="module")
def examples() -> tuple[np.ndarray, np.ndarray]:
    images, labels = make_examples(seed=7, split="train", count=23)
    return np.stack(images), labels


def test_arrays_source_round_trips_exactly(examples):
    images, labels = examples
    source = sources.arrays_source(images, labels, num_classes=10, num_shards=4)
    got_images = read_back(source, labels)
    assert source.num_shards == 4
    np.testing.assert_array_equal(got_images, images / np.float32(255))


def test_generator_source_round_trips_exactly(examples):
    images, labels = examples
    source = sources.generator_source(
        lambda: zip(images, labels, strict=True),
        num_examples=len(images),
        image_shape=images.shape[1:],
        num_classes=10,
    )
    got_images = read_back(source, labels)
    np.testing.assert_array_equal(got_images, images / np.float32(255))


def test_cifar_folder_is_in_the_sites_format_and_round_trips(tmp_path, examples):
    images, labels = examples
    sources.write_cifar_folder(tmp_path, (images, labels), (images[:5], labels[:5]), CLASS_NAMES)
    # The format exactly as the CIFAR-10 site ships it, read the way its page says.
    with open(tmp_path / "data_batch_1", "rb") as handle:
        batch = pickle.load(handle, encoding="bytes")
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape[1] == 3072
    first = batch[b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0)  # channel-major rows
    np.testing.assert_array_equal(first, images[0])
    with open(tmp_path / "batches.meta", "rb") as handle:
        assert pickle.load(handle, encoding="bytes")[b"label_names"][0] == b"disk"

    train = sources.cifar_source(tmp_path, "train")
    assert train.num_shards == 5 and train.num_examples == len(images)
    got_images = read_back(train, labels)
    np.testing.assert_array_equal(got_images, images / np.float32(255))
    assert sources.cifar_source(tmp_path, "test").num_examples == 5


def test_cifar_decode_agrees_per_example_and_per_batch(tmp_path, examples):
    images, labels = examples
    sources.write_cifar_folder(tmp_path, (images, labels), (images, labels), CLASS_NAMES)
    source = sources.cifar_source(tmp_path, "test")
    per_example = np.stack([e["image"] for e in source.dataset().as_numpy_iterator()])
    batched = source.records().batch(10).map(source.decode).unbatch()
    np.testing.assert_array_equal(
        np.stack([e["image"] for e in batched.as_numpy_iterator()]), per_example
    )


def test_tfrecord_png_round_trips_exactly(tmp_path, examples):
    images, labels = examples
    paths = sources.write_tfrecords(tmp_path, "train", images, labels, num_shards=3)
    assert [p.name for p in paths] == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    source = sources.tfrecord_source(tmp_path, "train")
    assert source.num_shards == 3 and source.num_examples == len(images)
    got_images = read_back(source, labels)
    np.testing.assert_array_equal(got_images, images / np.float32(255))


def test_tfrecord_jpeg_round_trips_within_tolerance(tmp_path, examples):
    images, labels = examples
    sources.write_tfrecords(tmp_path, "test", images, labels, image_format="JPEG")
    got_images, got_labels, _ = read_all(sources.tfrecord_source(tmp_path, "test"))
    np.testing.assert_array_equal(got_labels, labels)
    assert np.abs(got_images - images / 255).mean() <= JPEG_MEAN_ABS_TOLERANCE


def test_image_folder_round_trips_within_jpeg_tolerance(tmp_path, examples):
    images, labels = examples
    csv_path = sources.write_image_folder(tmp_path, "train", images, labels, CLASS_NAMES)
    header, first = csv_path.read_text().splitlines()[:2]
    assert header == "img_path,label"
    assert first == f"{CLASS_NAMES[labels[0]]}/train_000000.jpg,{labels[0]}"
    source = sources.image_folder_source(tmp_path, "train")
    assert source.num_examples == len(images) and source.num_classes == len(CLASS_NAMES)
    got_images = read_back(source, labels)
    assert_decodes_like_pil(source.shards["path"], got_images)
    assert np.abs(got_images - images / 255).mean() <= JPEG_MEAN_ABS_TOLERANCE


def test_image_folder_resizes_mixed_sizes_to_the_requested_size(tmp_path):
    images, labels = make_examples(seed=3, split="folder_train", count=12, sizes=(20, 70))
    assert len({im.shape for im in images}) > 1
    sources.write_image_folder(tmp_path, "train", images, labels, CLASS_NAMES, suffix=".png")
    source = sources.image_folder_source(tmp_path, "train", image_size=(28, 36))
    got_images, _, _ = read_all(source)
    assert got_images.shape == (12, 28, 36, 3)
    # Lossless PNG at a new size: same picture, so the per-image mean colour barely moves.
    for original, resized in zip(images, got_images, strict=True):
        np.testing.assert_allclose(
            resized.mean(axis=(0, 1)), original.mean(axis=(0, 1)) / 255, atol=0.03
        )


def test_image_folder_without_csv_is_walked_and_split_80_20(tmp_path, examples):
    images, labels = examples
    sources.write_image_folder(tmp_path, "all", images, labels, CLASS_NAMES)
    (tmp_path / "all.csv").unlink()
    (tmp_path / "disk" / "skipped.gif").write_bytes(b"GIF89a")
    train = sources.image_folder_source(tmp_path, "train")
    test = sources.image_folder_source(tmp_path, "test")
    assert (train.num_examples, test.num_examples) == (18, 5)
    train_paths, test_paths = set(train.shards["path"]), set(test.shards["path"])
    assert not train_paths & test_paths
    assert set(sources.image_folder_source(tmp_path, "train").shards["path"]) == train_paths
    assert not any(p.endswith(".gif") for p in train_paths | test_paths)


def test_open_source_detects_each_kind(tiny_dataset):
    for fmt in ("cifar", "tfrecord", "image_folder"):
        source = sources.open_source(tiny_dataset.path(fmt), "test")
        assert source.kind == fmt
        assert source.num_examples == (
            tiny_dataset.config.folder_test if fmt == "image_folder" else tiny_dataset.config.test
        )


def test_shards_read_in_parallel_give_the_same_examples(tiny_dataset):
    source = tiny_dataset.source("tfrecord", "train")
    parallel = source.shard_dataset().interleave(
        source.read_shard, cycle_length=3, num_parallel_calls=3, deterministic=False
    )
    ids = sorted(int(r["id"]) for r in parallel.as_numpy_iterator())
    assert ids == list(range(source.num_examples))


def test_decoded_elements_have_the_documented_types(tiny_dataset):
    spec = tiny_dataset.source("image_folder", "train").dataset().element_spec
    assert spec["image"] == tf.TensorSpec((32, 32, 3), tf.float32)
    assert spec["label"].dtype == tf.int64 and spec["id"].dtype == tf.int64
