"""The core budget: on a CPU-only machine, the model's ops get a fixed number of
threads and the input pipeline its own, so the suite measures what it is for.

On an accelerator the model runs on the device, and the host's cores are
the input pipeline's. On a CPU-only machine the model's ops would take every
core (on two cores they used about 1.75), and each pipeline optimization
would then fight the model for CPU instead of showing whether it keeps a
separate device fed. So the model's intra- and inter-op thread pools get a
budget (``--perf-model-threads``, by default half the cores), and every
benchmarked pipeline runs on a private tf.data thread pool of its own, as
many threads as there are cores: without it, tf.data would run its functions
on the model's inter-op pool and the budget would limit the pipeline too.
The ceiling trains under the same budget. With a GPU nothing is limited.
"""

from __future__ import annotations

import os

import tensorflow as tf

# --perf-model-threads 0: no budget; the model and the pipeline share every core.
SHARED = 0


def cpu_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_model_threads() -> int:
    """Half the cores, at least one."""
    return max(1, cpu_cores() // 2)


def apply_core_budget(threads: int | None) -> int | None:
    """Limit the model's ops to ``threads`` (default `default_model_threads`); returns the
    budget in force, or None where there is none (a GPU, or `SHARED`).

    Must run before TensorFlow's runtime starts (the first op); raises
    RuntimeError naming the budget if it started with other settings.
    """
    if tf.config.list_physical_devices("GPU"):
        return None
    threads = default_model_threads() if threads is None else threads
    if threads == SHARED:
        return None
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        current = tf.config.threading.get_inter_op_parallelism_threads()
        if current != threads or tf.config.threading.get_intra_op_parallelism_threads() != threads:
            raise RuntimeError(
                f"cannot give the model {threads} threads: TensorFlow already started with"
                f" {current}"
            ) from None
    return threads


def own_threads(dataset: tf.data.Dataset, budget: int | None) -> tf.data.Dataset:
    """``dataset`` on a private thread pool of one thread per core, when a budget is in force."""
    if budget is None:
        return dataset
    options = tf.data.Options()
    options.threading.private_threadpool_size = cpu_cores()
    return dataset.with_options(options)
