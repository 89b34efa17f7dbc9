"""The embedded dataset: deterministic, complete or absent, regenerated when stale."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY
from pipelines.data import embedded
from pipelines.data.embedded import MANIFEST, ensure_embedded

ROOT = Path(__file__).resolve().parent.parent


def file_hashes(dataset: embedded.EmbeddedDataset) -> dict[str, str]:
    return {name: info["sha256"] for name, info in dataset.manifest["files"].items()}


def test_every_format_is_written_with_a_manifest(tiny_dataset):
    files = tiny_dataset.manifest["files"]
    assert {
        "cifar/data_batch_1",
        "cifar/data_batch_5",
        "cifar/test_batch",
        "cifar/batches.meta",
    } <= set(files)
    assert {"image_folder/train.csv", "image_folder/test.csv"} <= set(files)
    assert sum(name.startswith("tfrecord/train-") for name in files) == TINY.train_shards
    assert sum(name.endswith(".jpg") for name in files) == TINY.folder_train + TINY.folder_test
    for name, info in files.items():
        assert (tiny_dataset.root / name).stat().st_size == info["bytes"]


def test_same_seed_gives_the_same_bytes(tmp_path, tiny_dataset):
    again = ensure_embedded(TINY, root=tmp_path)
    assert again.generated
    assert file_hashes(again) == file_hashes(tiny_dataset)


def test_another_seed_gives_other_bytes(tmp_path, tiny_dataset):
    other = ensure_embedded(dataclasses.replace(TINY, seed=1), root=tmp_path)
    assert file_hashes(other)["cifar/test_batch"] != file_hashes(tiny_dataset)["cifar/test_batch"]


def test_a_complete_copy_is_reused_without_rewriting(tmp_path):
    first = ensure_embedded(TINY, root=tmp_path)
    stamp = (first.root / MANIFEST).stat().st_mtime_ns
    second = ensure_embedded(TINY, root=tmp_path)
    assert not second.generated
    assert (second.root / MANIFEST).stat().st_mtime_ns == stamp


def test_a_changed_configuration_regenerates(tmp_path):
    ensure_embedded(TINY, root=tmp_path)
    bigger = dataclasses.replace(TINY, test=30)
    again = ensure_embedded(bigger, root=tmp_path)
    assert again.generated
    assert again.source("cifar", "test").num_examples == 30


def test_a_damaged_copy_is_regenerated(tmp_path):
    first = ensure_embedded(TINY, root=tmp_path)
    shard = first.root / "cifar" / "data_batch_2"
    shard.write_bytes(shard.read_bytes()[:100])
    again = ensure_embedded(TINY, root=tmp_path)
    assert again.generated
    assert file_hashes(again) == file_hashes(first)


def test_interrupted_generation_leaves_nothing_taken_as_complete(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("pipelines.sources.write_image_folder", crash)
    with pytest.raises(KeyboardInterrupt):
        ensure_embedded(TINY, root=tmp_path)
    assert not (tmp_path / TINY.profile).exists()
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # no partial folder left behind
    monkeypatch.undo()
    assert ensure_embedded(TINY, root=tmp_path).generated


def test_cifar_and_tfrecord_hold_the_same_examples(tiny_dataset):
    cifar = list(tiny_dataset.source("cifar", "train").dataset().as_numpy_iterator())
    records = list(tiny_dataset.source("tfrecord", "train").dataset().as_numpy_iterator())
    assert [e["id"] for e in cifar] == [e["id"] for e in records]
    assert [e["label"] for e in cifar] == [e["label"] for e in records]
    np.testing.assert_array_equal(
        np.stack([e["image"] for e in cifar]), np.stack([e["image"] for e in records])
    )


def test_classes_are_balanced(tiny_dataset):
    labels = [
        e["label"] for e in tiny_dataset.source("cifar", "train").dataset().as_numpy_iterator()
    ]
    assert np.bincount(labels, minlength=10).tolist() == [TINY.train // 10] * 10


def test_command_line_generates_and_lists_the_set(tmp_path):
    args = [
        sys.executable,
        "-m",
        "pipelines.data.embedded",
        "--profile",
        "smoke",
        "--root",
        str(tmp_path),
    ]
    done = subprocess.run(args, capture_output=True, text=True, check=True, cwd=ROOT)
    assert "embedded dataset 'smoke' generated" in done.stdout
    assert "data_batch_1..5 (2000 train)" in done.stdout
    manifest = json.loads((tmp_path / "smoke" / MANIFEST).read_text())
    assert manifest["counts"]["train"] == 2000
    again = subprocess.run(args, capture_output=True, text=True, check=True, cwd=ROOT)
    assert "already present" in again.stdout


def test_command_line_rejects_an_unknown_profile_in_one_line(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.data.embedded",
            "--profile",
            "huge",
            "--root",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last == "error: --profile: unknown profile 'huge'; choose smoke, check, full"
    assert not list(tmp_path.iterdir())
