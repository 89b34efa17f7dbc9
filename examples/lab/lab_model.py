"""The lab's CIFAR CNN for 24x24 crops, as a user writes it: compiled, with a logits output.

``--perf-model lab_model:cifar_cnn`` trains it; the suite calls it with the
run's ``input_shape`` and ``num_classes`` and uses its compiled loss and optimizer.
"""

from __future__ import annotations

import keras


def cifar_cnn(input_shape: tuple[int, int, int] = (24, 24, 3), num_classes: int = 10):
    """Conv(64, 5x5) -> pool -> BN, twice; Dense 384 and 192 with dropout; logits."""
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(64, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(3, strides=2, padding="same"),
            layers.BatchNormalization(),
            layers.Conv2D(64, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(3, strides=2, padding="same"),
            layers.BatchNormalization(),
            layers.Flatten(),
            layers.Dense(384, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(192, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(num_classes),  # logits: the loss below knows
        ],
        name="lab_cifar_cnn",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model
