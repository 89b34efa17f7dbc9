"""The trainer: it learns the embedded classes, cannot learn wrong labels, and times input waits."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tensorflow as tf

import models
import pipelines
from models.trainer import InitialModel, Trainer, summarize, train_variant
from pipelines import Contract, Variant, sources
from pipelines.steps import Batch, Map, Read, Shuffle
from trials.inject import MISLABEL

MISLABELLED = Variant(
    "mislabelled",
    (Read(parallel=True), Map(("decode", "standardize")), MISLABEL, Shuffle(), Batch()),
    Contract(shuffle="elements"),
)


@pytest.fixture(scope="module")
def smoke():
    from pipelines.data.embedded import ensure_embedded

    dataset = ensure_embedded("smoke")
    return dataset.source("tfrecord", "train"), dataset.source("tfrecord", "test")


@pytest.fixture(scope="module")
def initial():
    return InitialModel(lambda: models.build("tiny"), seed=0)


def test_training_reaches_high_accuracy_in_three_epochs(smoke, initial):
    history = train_variant("optimized", *smoke, initial, epochs=3, progress=False)
    assert [s.epoch for s in history] == [1, 2, 3]
    assert history[-1].test_accuracy >= 0.8, history
    assert history[-1].train_accuracy >= 0.7


def test_wrongly_paired_labels_stay_near_chance(smoke, initial):
    history = train_variant(MISLABELLED, *smoke, initial, epochs=3, progress=False)
    assert history[-1].test_accuracy <= 0.25, history


def test_every_run_starts_from_the_same_weights(initial):
    first, second = initial.fresh(), initial.fresh()
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_waiting_for_a_slow_pipeline_is_counted_as_input_bound():
    images = np.zeros((64, 32, 32, 3), np.uint8)
    plain = sources.arrays_source(images, np.arange(64) % 10)
    slow = sources.with_latency(plain, sources.Latency(read_s=0.004))
    trainer = Trainer(models.build("tiny"))
    ds = pipelines.build("shuffle_batch", slow, batch_size=8)
    trainer.train_epoch(ds, 0, progress=False)  # traces the step
    stats = trainer.train_epoch(ds, 1, progress=False)
    # Each batch of 8 waits at least 8 reads of 4 ms.
    assert stats.input_wait_s >= stats.steps * 8 * 0.004
    assert stats.input_bound > 0.5
    fast = trainer.train_epoch(pipelines.build("shuffle_batch", plain, batch_size=8).cache(), 2)
    assert fast.input_bound < stats.input_bound


def test_cpu_time_counts_what_the_pipeline_burns():
    images = np.zeros((64, 32, 32, 3), np.uint8)
    source = sources.arrays_source(images, np.arange(64) % 10)
    plain = pipelines.build("shuffle_batch", source, batch_size=8)
    matrix = tf.random.uniform((400, 400))

    def busy(batch):
        # About 1.3 GFLOP per batch of work the model never sees (it depends on
        # the batch, so no graph optimization can compute it ahead).
        start = matrix + tf.reduce_mean(batch["image"])
        product = tf.foldl(lambda acc, _: tf.matmul(acc, matrix) / 400.0, tf.range(10), start)
        return {**batch, "image": batch["image"] + 0.0 * tf.reduce_sum(product)}

    def cpu_of_iterating(ds) -> float:
        started = time.process_time()
        ds.reduce(0, lambda count, _: count + 1).numpy()
        return time.process_time() - started

    cpu_of_iterating(plain.map(busy))  # warm
    work = cpu_of_iterating(plain.map(busy)) - cpu_of_iterating(plain)
    trainer = Trainer(models.build("tiny"))
    trainer.train_epoch(plain, 0, progress=False)  # traces the step
    light = trainer.train_epoch(plain, 1, progress=False)
    heavy = trainer.train_epoch(plain.map(busy), 2, progress=False)
    assert work > 0.02 and light.cpu_s > 0
    # The pipeline's threads' CPU is counted, not only the training loop's.
    assert heavy.cpu_s - light.cpu_s > 0.5 * work


def test_summary_totals_the_epochs(smoke, initial):
    history = train_variant("naive", *smoke, initial, epochs=1, progress=False)
    total = summarize(history)
    assert total["epochs"] == 1
    assert total["examples_per_s"] == pytest.approx(history[0].examples / history[0].wall_s)
    assert history[0].examples == smoke[0].num_examples


def test_images_that_do_not_fit_the_model_fail_with_a_clear_message(smoke):
    from pipelines import DataError

    trainer = Trainer(models.build("cifar_cnn"))
    ds = pipelines.build("naive", smoke[0])
    expected = r"yields images of shape \(32, 32, 3\), model 'cifar_cnn' takes \(24, 24, 3\)$"
    with pytest.raises(DataError, match=r"^training data: " + expected):
        trainer.fit(ds, 1)
