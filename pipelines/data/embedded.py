"""The embedded default dataset: generated on first use, in every on-disk format.

``ensure_embedded("smoke")`` returns the dataset, generating it when the cache
holds no complete copy of the current configuration. One generation writes::

    <cache>/<profile>/image_folder/<class>/*.jpg, train.csv, test.csv
    <cache>/<profile>/cifar/data_batch_1..5, test_batch, batches.meta
    <cache>/<profile>/tfrecord/train-*.tfrecord, test-*.tfrecord  (PNG inside)
    <cache>/<profile>/manifest.json   (config, counts, every file's size and sha256)

Generation writes into a temporary folder and renames it into place only
when complete, under a lock, so an interrupted or concurrent run never
leaves a half-written set that is later taken as complete.

Run ``python -m pipelines.data.embedded --profile smoke`` to generate and list it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import sources
from pipelines.data.synthetic import CLASS_NAMES, make_examples
from pipelines.errors import DataError, InputError, UsageError
from pipelines.sources import Source

# Bump when the drawing code or the layout changes: cached sets are then regenerated.
GENERATOR_VERSION = 1
MANIFEST = "manifest.json"
DEFAULT_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "embedded"
FORMATS = ("image_folder", "cifar", "tfrecord")


@dataclasses.dataclass(frozen=True)
class EmbeddedConfig:
    """What one profile of the embedded dataset holds.

    ``train``/``test`` 32x32 examples go to the CIFAR batches and the TFRecord
    shards; the image folder holds its own ``folder_train``/``folder_test``
    JPEGs with sides drawn from ``folder_sizes`` (mixed sizes, as real photos).
    """

    profile: str
    train: int
    test: int
    folder_train: int
    folder_test: int
    folder_sizes: tuple[int, int]
    train_shards: int
    test_shards: int
    seed: int = 20261121
    jpeg_quality: int = 90

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form, as stored in the manifest."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


EMBEDDED_PROFILES = {
    "smoke": EmbeddedConfig(
        profile="smoke",
        train=2000,
        test=500,
        folder_train=2000,
        folder_test=500,
        folder_sizes=(32, 48),
        train_shards=32,
        test_shards=4,
    ),
    # A third of smoke's training examples: the test job's benchmarks and end-to-end
    # runs, which check that a run works rather than what it measures.
    "check": EmbeddedConfig(
        profile="check",
        train=640,
        test=200,
        folder_train=64,
        folder_test=32,
        folder_sizes=(24, 40),
        train_shards=8,
        test_shards=2,
    ),
    "full": EmbeddedConfig(
        profile="full",
        train=50_000,
        test=10_000,
        folder_train=5_734,
        folder_test=1_434,
        folder_sizes=(160, 320),
        train_shards=16,
        test_shards=4,
    ),
}


@dataclasses.dataclass(frozen=True)
class EmbeddedDataset:
    """A complete generated set on disk."""

    root: Path
    config: EmbeddedConfig
    manifest: dict[str, object]
    generated: bool  # False when an existing copy was reused

    def path(self, fmt: str) -> Path:
        """The folder of one format: "image_folder", "cifar" or "tfrecord"."""
        if fmt not in FORMATS:
            raise DataError("embedded dataset", f"unknown format {fmt!r}; use {', '.join(FORMATS)}")
        return self.root / fmt

    def source(self, fmt: str = "tfrecord", split: str = "train", **options: Any) -> Source:
        """A `Source` over one format and split of this set (options: `sources.open_kind`'s)."""
        return sources.open_kind(fmt, self.path(fmt), split, **options)


def cache_root() -> Path:
    """Where generated sets live: ``$TFDATA_PERF_CACHE`` or ``.cache/embedded``."""
    return Path(os.environ.get("TFDATA_PERF_CACHE", DEFAULT_CACHE))


def ensure_embedded(
    profile: str | EmbeddedConfig = "smoke", *, root: Path | None = None, force: bool = False
) -> EmbeddedDataset:
    """Return the embedded dataset of ``profile``, generating it if needed.

    Args:
        profile: "smoke", "full", or a custom `EmbeddedConfig`.
        root: the cache folder (default `cache_root()`).
        force: regenerate even if a complete copy exists.
    """
    config = profile if isinstance(profile, EmbeddedConfig) else _profile(profile)
    root = Path(root) if root is not None else cache_root()
    target = root / config.profile
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{config.profile}.lock"):
        manifest = None if force else _complete_manifest(target, config)
        if manifest is not None:
            return EmbeddedDataset(target, config, manifest, generated=False)
        staging = Path(tempfile.mkdtemp(prefix=f".{config.profile}.partial-", dir=root))
        try:
            manifest = generate(config, staging)
            _swap_into_place(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return EmbeddedDataset(target, config, manifest, generated=True)


def generate(config: EmbeddedConfig, folder: Path) -> dict[str, object]:
    """Write every format of ``config`` into ``folder``; the manifest is written last."""
    started = time.perf_counter()
    train = make_examples(config.seed, "train", config.train)
    test = make_examples(config.seed, "test", config.test)
    sources.write_cifar_folder(
        folder / "cifar",
        (np.stack(train[0]), train[1]),
        (np.stack(test[0]), test[1]),
        CLASS_NAMES,
    )
    sources.write_tfrecords(folder / "tfrecord", "train", *train, num_shards=config.train_shards)
    sources.write_tfrecords(folder / "tfrecord", "test", *test, num_shards=config.test_shards)
    for split, count in (("train", config.folder_train), ("test", config.folder_test)):
        images, labels = make_examples(config.seed, f"folder_{split}", count, config.folder_sizes)
        sources.write_image_folder(
            folder / "image_folder",
            split,
            images,
            labels,
            CLASS_NAMES,
            quality=config.jpeg_quality,
        )
    files = {
        path.relative_to(folder).as_posix(): {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "config": config.as_dict(),
        "classes": list(CLASS_NAMES),
        "counts": {
            "train": config.train,
            "test": config.test,
            "folder_train": config.folder_train,
            "folder_test": config.folder_test,
        },
        "seconds": round(time.perf_counter() - started, 2),
        "bytes": sum(f["bytes"] for f in files.values()),
        "files": files,
    }
    tmp = folder / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    tmp.rename(folder / MANIFEST)
    return manifest


def _profile(name: str) -> EmbeddedConfig:
    if name not in EMBEDDED_PROFILES:
        raise UsageError(
            "--profile", f"unknown profile {name!r}; choose {', '.join(EMBEDDED_PROFILES)}"
        )
    return EMBEDDED_PROFILES[name]


def _complete_manifest(target: Path, config: EmbeddedConfig) -> dict[str, object] | None:
    """The manifest of a complete, current copy at ``target``, or None."""
    try:
        manifest = json.loads((target / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(manifest, dict)
        or manifest.get("generator_version") != GENERATOR_VERSION
        or manifest.get("config") != config.as_dict()
    ):
        return None
    # Sizes catch a file deleted or cut short since; hashes are left to tests (slow on `full`).
    for relative, info in manifest.get("files", {}).items():
        path = target / relative
        if not path.is_file() or path.stat().st_size != info["bytes"]:
            return None
    return manifest


def _swap_into_place(staging: Path, target: Path) -> None:
    """Move a finished set to ``target``, replacing any stale copy."""
    if target.exists():
        stale = target.with_name(f".{target.name}.stale-{os.getpid()}")
        target.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    staging.rename(target)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Two runs that start together: the second waits, then reuses the first's set.
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def summary(dataset: EmbeddedDataset) -> str:
    """A few lines saying what the set holds and where."""
    m, c = dataset.manifest, dataset.config
    files = m["files"]
    by_format = {fmt: [k for k in files if k.startswith(fmt + "/")] for fmt in FORMATS}
    size = {fmt: sum(files[k]["bytes"] for k in keys) for fmt, keys in by_format.items()}
    lo, hi = c.folder_sizes
    what = "generated in {:.1f} s".format(m["seconds"]) if dataset.generated else "already present"
    return "\n".join(
        [
            f"embedded dataset '{c.profile}' {what} at {dataset.root}",
            f"  {len(files)} files, {m['bytes'] / 1e6:.1f} MB, seed {c.seed}",
            f"  cifar/         data_batch_1..5 ({c.train} train) + test_batch ({c.test} test),"
            f" 32x32, {size['cifar'] / 1e6:.1f} MB",
            f"  tfrecord/      {c.train_shards} train + {c.test_shards} test shards, PNG 32x32,"
            f" {size['tfrecord'] / 1e6:.1f} MB",
            f"  image_folder/  {c.folder_train} train + {c.folder_test} test JPEGs ({lo}-{hi} px),"
            f" train.csv, test.csv, {size['image_folder'] / 1e6:.1f} MB",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: generate (or find) the embedded dataset and print what it holds."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.data.embedded", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--profile", default="smoke", help="smoke (default), check or full")
    parser.add_argument("--root", type=Path, default=None, help="cache folder")
    parser.add_argument("--force", action="store_true", help="regenerate even if present")
    args = parser.parse_args(argv)
    try:
        dataset = ensure_embedded(args.profile, root=args.root, force=args.force)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary(dataset))
    return 0


if __name__ == "__main__":
    sys.exit(main())
