"""Seed models: exact parameter counts and output shapes of the reference material."""

from __future__ import annotations

import pytest

import models
from models.zoo import slides_cnn_stack
from pipelines import UsageError


@pytest.mark.parametrize(
    ("name", "total", "trainable"),
    [
        ("softmax", 7_850, 7_850),
        ("mnist_cnn", 93_322, 93_322),
        ("cifar_cnn", 1_068_810, 1_068_554),
        ("cifar_cnn_bn", 1_756_938, 1_756_682),
        ("wildlife_vgg16", 188_793_674, 174_078_986),
    ],
)
def test_seed_models_have_the_reference_parameter_counts(name, total, trainable):
    model = models.build(name)
    assert model.count_params() == total
    assert sum(int(w.shape.num_elements()) for w in model.trainable_weights) == trainable


def test_mnist_cnn_conv_base_has_55744_parameters():
    model = models.build("mnist_cnn")
    flatten = next(i for i, layer in enumerate(model.layers) if layer.name.startswith("flatten"))
    assert sum(layer.count_params() for layer in model.layers[:flatten]) == 55_744


def test_slides_cnn_stack_prints_the_slides_output_shapes():
    shapes = [tuple(layer.output.shape[1:]) for layer in slides_cnn_stack().layers]
    assert shapes == [(26, 26, 32), (13, 13, 32), (6, 6, 64), (3, 3, 64), (3, 3, 64)]


def test_input_shapes_are_the_reference_ones():
    assert models.build("cifar_cnn").input_shape == (None, 24, 24, 3)
    assert models.build("cifar_cnn_bn").input_shape == (None, 32, 32, 3)
    assert models.build("tiny", input_shape=(48, 40, 3)).input_shape == (None, 48, 40, 3)


def test_an_unknown_model_lists_the_known_ones():
    with pytest.raises(
        UsageError, match=r"^model 'resnet': unknown model; known models: softmax, "
    ):
        models.build("resnet")
