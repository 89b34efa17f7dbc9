"""Devices: GPUs found with memory growth on, the distribution strategy, the precision policy."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras
import tensorflow as tf


def configure_gpus() -> list[tf.config.PhysicalDevice]:
    """The visible GPUs, each set to grow its memory as needed.

    Without memory growth TensorFlow takes nearly all of a GPU's memory at
    start, which starves any other process (a tf.data service worker, a
    second benchmark) on the same device. Must run before a GPU is first used;
    later calls leave the setting as it is.
    """
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        with contextlib.suppress(RuntimeError):  # already initialized: nothing to change
            tf.config.experimental.set_memory_growth(gpu, True)
    return gpus


def default_strategy() -> tf.distribute.Strategy:
    """`MirroredStrategy` over the visible GPUs when there are several; else the default one."""
    if len(configure_gpus()) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """E.g. ``MirroredStrategy x2`` (class and replicas), for extra_info."""
    return f"{type(strategy).__name__} x{strategy.num_replicas_in_sync}"


@contextlib.contextmanager
def precision(mixed: bool) -> Iterator[str]:
    """Build models inside with float16 compute and float32 variables (``mixed``), or float32.

    Keras reads the policy when a layer is created, so only the building
    needs to be inside; the previous policy is restored on exit.
    """
    before = keras.mixed_precision.global_policy()
    policy = "mixed_float16" if mixed else "float32"
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield policy
    finally:
        keras.mixed_precision.set_global_policy(before)
