"""A user's own model: ``--perf-model module:callable``, its compiled loss, and bad specs."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import keras
import numpy as np
import pytest
from bench_runner import NO_ACCURACY_FLOOR, ROOT, small_data, suite_command

import models
from models.trainer import Trainer
from pipelines.errors import UsageError

# A user's module: the lab's habit of a logits output and a compiled logits loss.
USER_MODELS = textwrap.dedent(
    """
    import keras

    def logits_cnn(input_shape, num_classes):
        model = keras.Sequential([
            keras.Input(input_shape),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(num_classes),  # logits: no softmax
        ])
        model.compile(
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            optimizer=keras.optimizers.SGD(0.05),
        )
        return model

    def fixed(num_classes=10):
        return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                 keras.layers.Dense(num_classes)])

    def three_outputs():
        return keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                                 keras.layers.Dense(3)])

    def broken(input_shape):
        raise RuntimeError("no weights file")

    def not_a_model():
        return "a string"

    NOT_CALLABLE = 3
    """
)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_models.py").write_text(USER_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_users_builder_gets_the_datas_shape_and_classes(user_module):
    model = models.build_for("user_models:logits_cnn", (20, 24, 3), 7)
    assert model.input_shape == (None, 20, 24, 3) and model.output_shape == (None, 7)
    assert models.build_for("tiny", (20, 24, 3), 4).output_shape == (None, 4)


def test_a_compiled_logits_loss_and_optimizer_are_the_ones_trained_with(user_module):
    model = models.build_for("user_models:logits_cnn", (32, 32, 3), 10)
    trainer = Trainer(model)
    assert trainer.loss.get_config()["from_logits"] is True
    assert type(trainer.optimizer).__name__ == "SGD"
    images = np.random.default_rng(0).random((16, 32, 32, 3), dtype=np.float32)
    labels = np.arange(16) % 10
    logits = model(images)
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")
    assert float(trainer.loss(labels, logits)) == pytest.approx(float(expected(labels, logits)))
    # A model not compiled trains on probabilities, as the seed models output.
    plain = Trainer(models.build("tiny"))
    assert plain.loss.get_config()["from_logits"] is False


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("nosuch", "unknown model; known models: softmax, "),
        ("no_such_module:build", "importing no_such_module failed: ModuleNotFoundError"),
        ("user_models:NOT_CALLABLE", "user_models has no callable 'NOT_CALLABLE'"),
        ("user_models:missing", "user_models has no callable 'missing'"),
        ("user_models:broken", "building it failed: RuntimeError: no weights file"),
        ("user_models:not_a_model", "returned str, not a Keras model"),
        ("user_models:fixed", "takes images of shape (28, 28, 1); the data's are (32, 32, 3)"),
        ("user_models:three_outputs", "has 3 outputs; the data has 10 classes"),
    ],
)
def test_a_bad_model_is_one_line_naming_it(user_module, spec, problem):
    with pytest.raises(UsageError) as caught:
        models.build_for(spec, (32, 32, 3), 10)
    assert str(caught.value).startswith(f"model {spec!r}: ")
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


def run_suite(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = suite_command("-k", "test_training", "--perf-epochs", "1", "--perf-latency", "none")
    command += ["--perf-data", str(small_data())]
    command += [f"--benchmark-storage=file://{tmp_path / 'storage'}", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)


def test_the_benchmarks_train_a_users_model_with_its_batch_size_and_seed(user_module):
    thresholds = user_module / "thresholds.toml"
    thresholds.write_text(NO_ACCURACY_FLOOR)
    done = run_suite(
        user_module,
        *("--perf-model", "user_models:logits_cnn", "--perf-variants", "optimized"),
        *("--perf-batch-size", "32", "--perf-seed", "5", "--benchmark-autosave"),
        *("--perf-thresholds", str(thresholds)),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    (saved,) = (user_module / "storage").glob("*/0001_*.json")
    (bench,) = json.loads(saved.read_text())["benchmarks"]
    info = bench["extra_info"]
    assert (info["model"], info["batch_size"], info["seed"]) == ("user_models:logits_cnn", 32, 5)


def test_a_model_that_does_not_fit_the_data_stops_the_run_before_it_starts(user_module):
    done = run_suite(user_module, "--perf-model", "user_models:fixed", "--perf-variants", "naive")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout[-2000:]
    lines = [line for line in done.stderr.splitlines() if "user_models:fixed" in line]
    assert lines == [
        "ERROR: model 'user_models:fixed': takes images of shape (28, 28, 1);"
        " the data's are (32, 32, 3)"
    ], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
