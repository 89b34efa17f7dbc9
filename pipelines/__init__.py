"""Input pipelines under test: sources (Extract) and, later, steps and variants (Transform).

- `pipelines.sources`: one constructor per kind of data (memory, generator,
  image folder, CIFAR-10 batches, TFRecord shards) and the storage-latency wrapper;
- `pipelines.embedded`: the default dataset, generated locally on first use;
- `pipelines.element`: the ``{"image", "label", "id"}`` element every step passes on;
- `pipelines.errors.DataError`: the one-line error for bad input.
"""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, CPU feature notes) buries
# the suite's own output; a user's explicit setting still wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipelines.errors import DataError

__all__ = ["DataError"]
