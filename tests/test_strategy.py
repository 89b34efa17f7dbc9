"""The trainer under a distribution strategy, with XLA and mixed precision; GPU-only checks."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import models
import pipelines
from models.devices import configure_gpus, default_strategy, precision, strategy_name
from models.trainer import InitialModel, Trainer
from pipelines.checks.tagged import tagged_source

EPOCHS = 2


@pytest.fixture(scope="module")
def data():
    source = tagged_source(96, num_shards=2)
    # Deterministic and unaugmented: two runs see the very same batches.
    return pipelines.build("naive", source, batch_size=16), source.image_shape


def run(data, **options) -> tuple[list, list[np.ndarray]]:
    dataset, shape = data
    initial = InitialModel(lambda: models.build("tiny", input_shape=shape), seed=3)
    strategy = options.get("strategy")
    with strategy.scope() if strategy else precision(options.pop("mixed", False)):
        model = initial.fresh()
    trainer = Trainer(model, **options)
    history = trainer.fit(dataset, EPOCHS, test_ds=dataset, progress=False)
    return history, trainer.model.get_weights()


@pytest.fixture(scope="module")
def plain(data):
    return run(data)


def assert_same_run(got, plain, atol: float) -> None:
    (history, weights), (plain_history, plain_weights) = got, plain
    assert [s.examples for s in history] == [s.examples for s in plain_history]
    for epoch, reference in zip(history, plain_history, strict=True):
        assert epoch.train_loss == pytest.approx(reference.train_loss, rel=1e-3, abs=atol)
        assert epoch.test_accuracy == pytest.approx(reference.test_accuracy, abs=0.05)
    for value, reference in zip(weights, plain_weights, strict=True):
        np.testing.assert_allclose(value, reference, atol=atol)


def test_a_one_replica_strategy_on_the_cpu_matches_the_plain_loop(data, plain):
    strategy = tf.distribute.MirroredStrategy(devices=["/cpu:0"])
    got = run(data, strategy=strategy)
    assert strategy_name(strategy) == "MirroredStrategy x1"
    assert_same_run(got, plain, atol=1e-4)


def test_xla_compiled_steps_match_the_plain_loop(data, plain):
    assert_same_run(run(data, jit_compile=True), plain, atol=1e-3)


def test_mixed_precision_trains_with_loss_scaling(data):
    history, _ = run(data, mixed=True)
    assert all(np.isfinite(s.train_loss) for s in history)
    assert history[-1].train_loss < history[0].train_loss
    # The policy is restored: nothing built later is float16 by surprise.
    assert models.build("tiny").dtype_policy.name == "float32"


def test_without_gpus_the_default_strategy_is_the_single_device_one():
    if configure_gpus():
        pytest.skip("GPUs are visible: covered by the GPU tests")
    assert default_strategy() is tf.distribute.get_strategy()


@pytest.mark.gpu
def test_gpus_grow_their_memory_and_train_on_the_device(data):
    gpus = configure_gpus()
    assert all(tf.config.experimental.get_memory_growth(gpu) for gpu in gpus)
    strategy = default_strategy()
    assert strategy.num_replicas_in_sync == (len(gpus) if len(gpus) > 1 else 1)
    history, _ = run(data)
    assert history[-1].examples == 96
    model = models.build("tiny", input_shape=data[1])
    assert "GPU" in model.trainable_variables[0].device.upper()


@pytest.mark.gpu
def test_mixed_precision_on_the_gpu_keeps_up_with_float32(data, plain):
    history, _ = run(data, mixed=True)
    assert history[-1].test_accuracy >= plain[0][-1].test_accuracy - 0.1
