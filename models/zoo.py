"""The seed models, built by name: `build("cifar_cnn")`.

Layer stacks and parameter counts follow the reference course material
(``shared/REFERENCE.md``); `tiny` is ours, for quick CPU runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import keras
from keras import layers

from pipelines.errors import UsageError
from pipelines.plugins import import_user_module

NUM_CLASSES = 10


def softmax(num_classes: int = NUM_CLASSES) -> keras.Model:
    """Dense softmax on flattened 28x28 inputs: 7,850 parameters."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Flatten(),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="softmax",
    )


def slides_cnn_stack() -> keras.Model:
    """The CNN stack from the slides (no head): output shapes (26,26,32) .. (3,3,64)."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, strides=1, padding="valid"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, strides=2, padding="valid"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, strides=1, padding="same"),
        ],
        name="slides_cnn_stack",
    )


def mnist_cnn(num_classes: int = NUM_CLASSES) -> keras.Model:
    """The MNIST CNN of the lab: 55,744 parameters in the conv base, 93,322 in all."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="mnist_cnn",
    )


def _cifar(input_side: int, dropout_after_192: bool, name: str, num_classes: int) -> keras.Model:
    head = [layers.Dense(192, activation="relu")]
    if dropout_after_192:
        head.append(layers.Dropout(0.5))
    return keras.Sequential(
        [
            keras.Input((input_side, input_side, 3)),
            layers.Conv2D(64, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(3, strides=2, padding="same"),
            layers.BatchNormalization(),
            layers.Conv2D(64, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(3, strides=2, padding="same"),
            layers.BatchNormalization(),
            layers.Flatten(),
            layers.Dense(384, activation="relu"),
            layers.Dropout(0.5),
            *head,
            layers.Dense(num_classes, activation="softmax"),
        ],
        name=name,
    )


def cifar_cnn(num_classes: int = NUM_CLASSES) -> keras.Model:
    """The lab's CIFAR CNN on 24x24x3 crops: 1,068,810 parameters (256 non-trainable)."""
    return _cifar(24, True, "cifar_cnn", num_classes)


def cifar_cnn_bn(num_classes: int = NUM_CLASSES) -> keras.Model:
    """The lab's CIFAR CNN on 32x32x3 images: 1,756,938 parameters (256 non-trainable)."""
    return _cifar(32, False, "cifar_cnn_bn", num_classes)


def wildlife_vgg16(num_classes: int = NUM_CLASSES) -> keras.Model:
    """Frozen VGG16 base (weights=None: nothing is downloaded) and the dense head: 188,793,674."""
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(300, 300, 3))
    base.trainable = False
    return keras.Sequential(
        [
            keras.Input((300, 300, 3)),
            base,
            layers.Flatten(),
            layers.Dense(4096, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(1024, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="wildlife_vgg16",
    )


def tiny(
    num_classes: int = NUM_CLASSES, input_shape: tuple[int, int, int] = (32, 32, 3)
) -> keras.Model:
    """A small CNN for quick CPU runs (5,418 parameters on 32x32x3) on any image size."""
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(16, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(32, 3, activation="relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="tiny",
    )


MODELS: dict[str, Callable[..., keras.Model]] = {
    "softmax": softmax,
    "mnist_cnn": mnist_cnn,
    "cifar_cnn": cifar_cnn,
    "cifar_cnn_bn": cifar_cnn_bn,
    "wildlife_vgg16": wildlife_vgg16,
    "tiny": tiny,
}


def build(name: str, **options: object) -> keras.Model:
    """Build the model called ``name``; an unknown name lists the known ones."""
    if name not in MODELS:
        raise UsageError(f"model {name!r}", f"unknown model; known models: {', '.join(MODELS)}")
    return MODELS[name](**options)


def resolve(spec: str) -> Callable[..., keras.Model]:
    """The builder ``spec`` names: a seed model's name, or ``module:callable`` (a user's).

    Raises `UsageError` in one line for an unknown name, a module that does
    not import, or an attribute that is not callable.
    """
    if spec in MODELS:
        return MODELS[spec]
    if ":" not in spec:
        raise UsageError(
            f"model {spec!r}",
            f"unknown model; known models: {', '.join(MODELS)}, or module:callable",
        )
    module_name, _, attribute = spec.partition(":")
    module = import_user_module(module_name, f"model {spec!r}")
    builder = getattr(module, attribute, None)
    if not callable(builder):
        raise UsageError(f"model {spec!r}", f"{module_name} has no callable {attribute!r}")
    return builder


def build_for(spec: str, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Build ``spec`` (`resolve`) for the data: the image shape and class count are passed
    to the builder where it takes them (``input_shape``, ``num_classes``).

    Raises `UsageError` when the builder fails or returns something else than a
    Keras model, or a model whose input or output does not fit the data.
    """
    builder = resolve(spec)
    parameters = inspect.signature(builder).parameters
    offered = {"input_shape": tuple(input_shape), "num_classes": num_classes}
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    options = {k: v for k, v in offered.items() if takes_all or k in parameters}
    where = f"model {spec!r}"
    try:
        model = builder(**options)
    except Exception as error:  # a user's builder: one line, not a traceback
        raise UsageError(where, f"building it failed: {type(error).__name__}: {error}") from None
    if not isinstance(model, keras.Model):
        raise UsageError(where, f"returned {type(model).__name__}, not a Keras model")
    expected = tuple(model.input_shape[1:])
    if expected != tuple(input_shape):
        raise UsageError(
            where, f"takes images of shape {expected}; the data's are {tuple(input_shape)}"
        )
    outputs = model.output_shape[-1]
    if outputs != num_classes:
        raise UsageError(where, f"has {outputs} outputs; the data has {num_classes} classes")
    return model
