"""Input pipelines under test: sources (Extract), steps and variants (Transform).

- `pipelines.sources`: one constructor per kind of data (memory, generator,
  image folder, CIFAR-10 batches, TFRecord shards) and the storage-latency wrapper;
- `pipelines.steps`: the steps a variant is made of (one class per tf.data transformation);
- `pipelines.variants`: the seed variants and their contracts (a new variant goes there);
- `pipelines.registry`: `VARIANTS`, `register`, `pipeline` (a function as a variant), `build`;
  `register_transform` (from `pipelines.steps`) makes ``Map(name)`` of a user's own;
- `pipelines.functions`: pipelines written as plain functions ``f(ds, params)``;
- `pipelines.observing`: in-graph span recording (``build_traced``), the per-stage
  timelines made of the spans, and tf.data's own runtime model;
- `pipelines.augment`: the augmentations, per example and batched;
- `pipelines.data.embedded`: the default dataset, generated locally on first use;
- `pipelines.element`: the ``{"image", "label", "id"}`` element every step passes on;
- `pipelines.errors`: `DataError` (bad input data), `UsageError` (an unknown name).
"""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, CPU feature notes) buries
# the suite's own output; a user's explicit setting still wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipelines.errors import DataError, InputError, UsageError
from pipelines.functions import BuildParams, function_variant
from pipelines.registry import (
    VARIANTS,
    build,
    build_traced,
    check_fits,
    get,
    legend,
    pipeline,
    register,
    unregister,
)
from pipelines.steps import register_transform
from pipelines.variants import Contract, Variant

__all__ = [
    "VARIANTS",
    "BuildParams",
    "Contract",
    "DataError",
    "InputError",
    "UsageError",
    "Variant",
    "build",
    "build_traced",
    "check_fits",
    "function_variant",
    "get",
    "legend",
    "pipeline",
    "register",
    "register_transform",
    "unregister",
]
