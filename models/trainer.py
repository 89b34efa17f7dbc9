"""The training loop: custom `tf.function` steps, timed where the time goes.

For every training step it records how long the loop waited for the next
batch (the input pipeline's share) and how long the step itself took, with
the step synchronised (its loss fetched to the host) so that asynchronous
device execution cannot make a step look free and push its cost into the
next wait. Per epoch: wall time, examples/s, train and test loss and
accuracy, and the input-bound fraction (waiting / (waiting + stepping)).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from pipelines.element import IMAGE, LABEL
from pipelines.errors import DataError
from pipelines.observing.runtime_model import EpochSampler, RuntimeModel, RuntimeUnavailable
from pipelines.observing.timeline import TEST_STEP, TimelineRecorder
from pipelines.registry import build
from pipelines.sources.base import Record, Source
from pipelines.variants import EVALUATION, Variant


@dataclasses.dataclass(frozen=True)
class EpochStats:
    """What one epoch of training (and the evaluation after it) measured."""

    epoch: int
    wall_s: float  # training loop only, first wait to last step
    steps: int
    examples: int
    input_wait_s: float
    step_s: float
    train_loss: float
    train_accuracy: float
    test_loss: float | None = None
    test_accuracy: float | None = None
    test_s: float | None = None
    # Process CPU time (every thread) during the training loop: the model's
    # and the input pipeline's together. On a CPU-only machine the model uses
    # every core, so what a pipeline adds here shows up as wall time.
    cpu_s: float = 0.0
    # The epoch's start-up: the wait for its first batch (the iterator's creation
    # included: opening files, filling a shuffle buffer), and its first step and
    # that step's examples. `benchmarks.measuring.phases` separates start-up from steady state.
    first_batch_s: float = 0.0
    first_step_s: float = 0.0
    first_examples: int = 0
    # tf.data's own runtime model of the epoch's iterator (`pipelines.observing.runtime_model`),
    # read during the epoch when asked (``runtime=True``): None otherwise, and for
    # batches in memory; ``runtime_missing`` says in one line why it could not be read.
    runtime: RuntimeModel | None = dataclasses.field(default=None, compare=False, repr=False)
    runtime_missing: str = ""

    @property
    def examples_per_s(self) -> float:
        """Training throughput of the epoch."""
        return self.examples / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def input_bound(self) -> float:
        """Fraction of training time spent waiting for input."""
        return input_bound_of([self])


def input_bound_of(stats: Iterable[EpochStats]) -> float:
    """Fraction of the training time of ``stats`` spent waiting for input."""
    stats = list(stats)
    busy = sum(s.input_wait_s + s.step_s for s in stats)
    return sum(s.input_wait_s for s in stats) / busy if busy > 0 else 0.0


class InitialModel:
    """Builds a model once and hands out fresh copies with the same initial weights.

    Every variant trained from one `InitialModel` starts from identical
    weights (and a new optimizer), so differences come from the pipeline.
    `weights_for` gives the initial weights another seed draws (an independent
    replicate: `benchmarks.measuring.passes` gives each pass its own seed).
    """

    def __init__(self, build: Callable[[], keras.Model], seed: int = 0) -> None:
        self._build = build
        self.seed = seed
        keras.utils.set_random_seed(seed)
        self.weights = build().get_weights()
        # The last other seed asked for, and its weights (a pass asks for one seed at a time).
        self._other: tuple[int, list[np.ndarray]] | None = None

    def fresh(self) -> keras.Model:
        """A new model with the saved initial weights; also resets the random seeds."""
        keras.utils.set_random_seed(self.seed)
        model = self._build()
        model.set_weights(self.weights)
        return model

    def weights_for(self, seed: int) -> list[np.ndarray]:
        """The initial weights the model's build draws with ``seed`` (the saved ones for
        this model's own seed)."""
        if seed == self.seed:
            return self.weights
        if self._other is None or self._other[0] != seed:
            keras.utils.set_random_seed(seed)
            self._other = (seed, self._build().get_weights())
        return self._other[1]


def check_fits(model: keras.Model, ds: tf.data.Dataset | Sequence[Record], where: str) -> None:
    """Raise `DataError` if the images of ``ds`` (a dataset or a list of batches) do not fit."""
    expected = tuple(model.input_shape[1:])
    if isinstance(ds, tf.data.Dataset):
        actual = tuple(ds.element_spec[IMAGE].shape[1:])
    else:
        actual = tuple(ds[0][IMAGE].shape[1:]) if ds else expected
    if expected != actual:
        raise DataError(
            where, f"yields images of shape {actual}, model {model.name!r} takes {expected}"
        )


class _SummedFunction(keras.losses.Loss):
    """A loss function (per-example losses) summed over the batch."""

    def __init__(self, function: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]) -> None:
        super().__init__(reduction="sum", name=getattr(function, "__name__", "loss"))
        self.function = function

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        return self.function(y_true, y_pred)


def summed_loss(model: keras.Model) -> keras.losses.Loss:
    """The loss the model was compiled with (a copy summing over the batch), or sparse
    categorical cross-entropy on probabilities for a model not compiled.

    A user's model that outputs logits says so in its compiled loss
    (``from_logits=True``); trained with a loss on probabilities it would
    learn wrong, with no error.
    """
    compiled = getattr(model, "loss", None)
    if compiled is None:
        return keras.losses.SparseCategoricalCrossentropy(reduction="sum")
    if isinstance(compiled, str):
        compiled = keras.losses.get(compiled)
    if isinstance(compiled, keras.losses.Loss):
        config = {**compiled.get_config(), "reduction": "sum"}
        return type(compiled).from_config(config)
    if callable(compiled):  # a plain function (y_true, y_pred) -> per-example losses
        return _SummedFunction(compiled)
    raise DataError(f"model {model.name!r}", f"cannot train with its compiled loss {compiled!r}")


def fresh_optimizer(model: keras.Model, learning_rate: float) -> keras.optimizers.Optimizer:
    """A new optimizer like the one the model was compiled with, or Adam(``learning_rate``)."""
    compiled = getattr(model, "optimizer", None)
    if isinstance(compiled, keras.optimizers.Optimizer):
        return type(compiled).from_config(compiled.get_config())
    return keras.optimizers.Adam(learning_rate)


@dataclasses.dataclass
class _EpochTally:
    """What an epoch's steps add up to, as `Trainer.train_epoch` times them."""

    wait: float = 0.0
    step: float = 0.0
    steps: int = 0
    examples: int = 0
    correct: int = 0
    loss_sum: float = 0.0
    # The first step's (wait, step seconds, examples): start-up apart
    # (`benchmarks.measuring.phases`).
    first: tuple[float, float, int] = (0.0, 0.0, 0)

    def add(self, wait: float, step: float, loss_sum: float, correct: int, count: int) -> None:
        """One step: its wait for the batch, its synchronised step, and its results."""
        self.wait += wait
        self.step += step
        self.loss_sum += loss_sum
        self.correct += correct
        self.examples += count
        if not self.steps:
            self.first = (wait, step, self.examples)
        self.steps += 1

    def stats(self, epoch: int, wall: float, cpu: float) -> EpochStats:
        """The epoch's `EpochStats` (at least one example was tallied)."""
        return EpochStats(
            epoch=epoch,
            wall_s=wall,
            cpu_s=cpu,
            steps=self.steps,
            examples=self.examples,
            input_wait_s=self.wait,
            step_s=self.step,
            train_loss=self.loss_sum / self.examples,
            train_accuracy=self.correct / self.examples,
            first_batch_s=self.first[0],
            first_step_s=self.first[1],
            first_examples=self.first[2],
        )


def _sampler(ds: object, iterator: Iterator[Record], wanted: bool) -> EpochSampler | None:
    """A reader of the epoch's runtime model, where one is wanted and ``ds`` is tf.data's;
    it watches from the start, since the first batch can consume every read."""
    if not (wanted and isinstance(ds, tf.data.Dataset)):
        return None
    sampler = EpochSampler(iterator)
    sampler.watch()
    return sampler


def _with_runtime(stats: EpochStats, sampler: EpochSampler | None) -> EpochStats:
    """``stats`` with the epoch's runtime model (or why it is missing), read as it ended."""
    if sampler is None:
        return stats
    try:
        return dataclasses.replace(stats, runtime=sampler.finish())
    except RuntimeUnavailable as missing:
        return dataclasses.replace(stats, runtime_missing=str(missing))


class EpochLoop(abc.ABC):
    """The timed loop over an epoch's batches, whatever consumes them: the model's
    training step (`Trainer`) or a stand-in device (`models.stand_in.StandIn`)."""

    # Whether `fit` evaluates on its test data after each epoch (with ``evaluate``).
    evaluates = True
    strategy: tf.distribute.Strategy | None = None

    @abc.abstractmethod
    def step(
        self, batch: Record, alongside: Callable[[], None] | None = None
    ) -> tuple[float, int, int]:
        """Consume one batch: (summed loss, correct predictions, examples), synchronised.

        ``alongside``: host work to do while the device runs the step (an observer's
        reading): during a stand-in's wait, after a synchronous step.
        """

    @abc.abstractmethod
    def check_fits(self, ds: tf.data.Dataset | Sequence[Record], where: str) -> None:
        """Raise `DataError` if the batches of ``ds`` cannot be consumed."""

    def _distributed(self, ds: tf.data.Dataset | Sequence[Record]) -> Iterable[Record]:
        """``ds`` as the steps take it."""
        return ds

    def train_epoch(
        self,
        ds: tf.data.Dataset | Sequence[Record],
        epoch: int,
        progress: bool | None = None,
        recorder: TimelineRecorder | None = None,
        runtime: bool = False,
    ) -> EpochStats:
        """One pass over ``ds``, timing the wait for each batch and each synchronised step.

        With a ``recorder``, the waits, the steps and the spans the batches
        carry go into its timeline as well. With ``runtime`` (and a tf.data
        dataset), tf.data's runtime model is read while the device runs the steps
        (`pipelines.observing.runtime_model.EpochSampler`) and kept in the stats.
        """
        if recorder is not None and self.strategy is not None:
            raise ValueError("timelines are recorded without a distribution strategy")
        tally = _EpochTally()
        # tqdm's disable=None: shown on a terminal, silent in CI logs and pipes.
        disable = None if progress is None else not progress
        bar = tqdm(desc=f"epoch {epoch}", unit="batch", disable=disable, leave=False)
        started, cpu_started = time.perf_counter(), time.process_time()
        # Inside the timed span: creating the iterator is part of the wait for the
        # first batch (a tf.data iterator starts its threads and opens files here).
        iterator = iter(self._distributed(ds))
        sampler = _sampler(ds, iterator, runtime and self.strategy is None)
        alongside = sampler.sample if sampler is not None else None
        while True:
            before = started if tally.steps == 0 else time.perf_counter()
            # A step marker for the TensorFlow profiler (--perf-profiler): its
            # input-pipeline page splits each marked step into input and compute.
            # Nothing is recorded while no profile is being captured.
            with tf.profiler.experimental.Trace("train", step_num=tally.steps, _r=1):
                try:
                    batch = next(iterator)
                except StopIteration:
                    break
                fetched = time.perf_counter()
                results = self.step(batch, alongside)
            done = time.perf_counter()
            tally.add(fetched - before, done - fetched, *results)
            if recorder is not None:
                recorder.train_step(epoch, batch, before, fetched, done)
            bar.update()
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        bar.close()
        if tally.examples == 0:
            raise DataError(f"epoch {epoch}", "the training dataset yielded no batches")
        return _with_runtime(tally.stats(epoch, wall, cpu), sampler)

    def fit(
        self,
        train_ds: tf.data.Dataset | Sequence[Record],
        epochs: int,
        *,
        test_ds: tf.data.Dataset | Sequence[Record] | None = None,
        progress: bool | None = None,
        on_epoch: Callable[[EpochStats], None] | None = None,
        recorder: TimelineRecorder | None = None,
        runtime: bool = False,
    ) -> list[EpochStats]:
        """Train for ``epochs`` (a fresh iterator each), evaluating on ``test_ds`` after each.

        With a ``recorder`` (and a dataset from `pipelines.build_traced`), the
        run's timeline is recorded as well; with ``runtime``, tf.data's runtime
        model of each epoch (`train_epoch`).
        """
        self.check_fits(train_ds, "training data")
        history = []
        for epoch in range(1, epochs + 1):
            if recorder is not None:
                recorder.start_epoch(epoch)
            stats = self.train_epoch(train_ds, epoch, progress, recorder, runtime)
            if test_ds is not None and self.evaluates:
                loss, accuracy, seconds = self.evaluate(test_ds, recorder, epoch)
                stats = dataclasses.replace(
                    stats, test_loss=loss, test_accuracy=accuracy, test_s=seconds
                )
            if recorder is not None:
                recorder.end_epoch(epoch)
            history.append(stats)
            if on_epoch is not None:
                on_epoch(stats)
        return history


class Trainer(EpochLoop):
    """Trains one model with a custom loop; call `fit` once per run.

    Args:
        model: built under ``strategy.scope()`` when a strategy is given (and
            under `models.devices.precision` for mixed precision: a model
            whose policy is mixed gets a loss-scaling optimizer).
        strategy: a `tf.distribute` strategy: each dataset is distributed by
            it and each step runs on every replica, gradients summed across
            them. None: plain single-device steps.
        jit_compile: compile the steps with XLA.
    """

    def __init__(
        self,
        model: keras.Model,
        learning_rate: float = 1e-3,
        *,
        strategy: tf.distribute.Strategy | None = None,
        jit_compile: bool = False,
    ) -> None:
        self.model = model
        self.strategy = strategy
        self.mixed_precision = model.dtype_policy.name == "mixed_float16"
        self.loss = summed_loss(model)
        with strategy.scope() if strategy else contextlib.nullcontext():
            optimizer = fresh_optimizer(model, learning_rate)
            if self.mixed_precision:
                optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
            self.optimizer = optimizer
            self.optimizer.build(model.trainable_variables)
        self._optimizer_start = [v.numpy() for v in self.optimizer.variables]
        train, test = self._train_step_eager, self._test_step_eager
        if strategy is not None:
            train, test = self._on_replicas(train), self._on_replicas(test)
        options = {"reduce_retracing": True, "jit_compile": jit_compile or None}
        self._train_step = tf.function(train, **options)
        self._test_step = tf.function(test, **options)

    def _on_replicas(self, step: Callable[..., tuple[tf.Tensor, ...]]) -> Callable:
        """``step`` run on every replica, its (summed) outputs added up across them."""
        strategy = self.strategy

        def run(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, ...]:
            per_replica = strategy.run(step, args=(images, labels))
            return tuple(
                strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                for value in per_replica
            )

        return run

    def _distributed(self, ds: tf.data.Dataset | Sequence[Record]) -> Iterable[Record]:
        """``ds`` as the strategy feeds it (in-memory batches become a dataset first)."""
        if self.strategy is None:
            return ds
        if not isinstance(ds, tf.data.Dataset):
            datasets = [tf.data.Dataset.from_tensors(batch) for batch in ds]
            ds = functools.reduce(tf.data.Dataset.concatenate, datasets)
        return self.strategy.experimental_distribute_dataset(ds)

    def reset(self, initial: InitialModel, seed: int | None = None) -> None:
        """Start over from ``initial``'s weights (those ``seed`` draws, when given) with a
        fresh optimizer state and seeds.

        Cheaper than a new `Trainer`: the traced steps are kept, so a run
        after the first pays no tracing.
        """
        seed = initial.seed if seed is None else seed
        keras.utils.set_random_seed(seed)
        self.model.set_weights(initial.weights_for(seed))
        for variable, value in zip(self.optimizer.variables, self._optimizer_start, strict=True):
            variable.assign(value)

    def check_fits(self, ds: tf.data.Dataset | Sequence[Record], where: str) -> None:
        """Raise `DataError` if the images of ``ds`` do not fit the model."""
        check_fits(self.model, ds, where)

    def step(
        self, batch: Record, alongside: Callable[[], None] | None = None
    ) -> tuple[float, int, int]:
        total, right, count = self._train_step(batch[IMAGE], batch[LABEL])
        # Fetching the results waits for the device: the step's real cost.
        results = float(total.numpy()), int(right.numpy()), int(count.numpy())
        if alongside is not None:
            alongside()
        return results

    def _train_step_eager(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """(summed loss, correct, examples) of one step; with a strategy, of one replica's part."""
        replicas = self.strategy.num_replicas_in_sync if self.strategy else 1
        count = tf.shape(labels)[0]
        with tf.GradientTape() as tape:
            # Losses in float32 even when the model computes in float16.
            probabilities = tf.cast(self.model(images, training=True), tf.float32)
            total = self.loss(labels, probabilities)
            # The mean over the global batch: replicas' gradients are summed.
            mean = total / tf.cast(count * replicas, total.dtype)
            if self.mixed_precision:
                mean = self.optimizer.scale_loss(mean)
        gradients = tape.gradient(mean, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables, strict=True))
        return total, _correct(probabilities, labels), tf.cast(count, tf.int64)

    def _test_step_eager(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, ...]:
        probabilities = tf.cast(self.model(images, training=False), tf.float32)
        count = tf.cast(tf.shape(labels)[0], tf.int64)
        return self.loss(labels, probabilities), _correct(probabilities, labels), count

    def evaluate(
        self,
        ds: tf.data.Dataset | Sequence[Record],
        recorder: TimelineRecorder | None = None,
        epoch: int = 0,
    ) -> tuple[float, float, float]:
        """(loss, accuracy, seconds) over ``ds``; test steps go to ``recorder`` when given."""
        started = time.perf_counter()
        loss_sum, correct, count = 0.0, 0, 0
        for batch in self._distributed(ds):
            before = time.perf_counter()
            total, right, examples = self._test_step(batch[IMAGE], batch[LABEL])
            loss_sum += float(total.numpy())
            correct += int(right.numpy())
            count += int(examples.numpy())
            if recorder is not None:
                recorder.trainer_span(TEST_STEP, epoch, before, time.perf_counter())
        if count == 0:
            raise DataError("test data", "the test dataset yielded no batches")
        return loss_sum / count, correct / count, time.perf_counter() - started


def _correct(probabilities: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    predicted = tf.argmax(probabilities, axis=-1, output_type=labels.dtype)
    return tf.reduce_sum(tf.cast(predicted == labels, tf.int64))


def summarize(history: list[EpochStats]) -> dict[str, float]:
    """Totals over a run: examples/s, input-bound fraction, final accuracies."""
    wall = sum(s.wall_s for s in history)
    return {
        "epochs": len(history),
        "train_s": wall,
        "examples_per_s": sum(s.examples for s in history) / wall if wall else 0.0,
        "input_bound": input_bound_of(history),
        "final_train_accuracy": history[-1].train_accuracy,
        "final_test_accuracy": float(
            np.nan if history[-1].test_accuracy is None else history[-1].test_accuracy
        ),
    }


def train_variant(
    variant: str | Variant,
    train_source: Source,
    test_source: Source,
    initial: InitialModel,
    epochs: int,
    *,
    batch_size: int = 64,
    seed: int = 0,
    image_size: tuple[int, int] | None = None,
    progress: bool | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> list[EpochStats]:
    """Train a fresh copy of ``initial`` on ``variant`` over ``train_source`` for ``epochs``.

    Test accuracy is measured after every epoch on the same evaluation
    pipeline for every variant. ``image_size``: see `pipelines.build`.
    TensorFlow errors caused by bad files are reported as `DataError` naming the file.
    """
    options = {"batch_size": batch_size, "seed": seed, "image_size": image_size}
    train_ds = build(variant, train_source, **options)
    test_ds = build(EVALUATION, test_source, **options)
    trainer = Trainer(initial.fresh())
    with train_source.explain_errors(), test_source.explain_errors():
        return trainer.fit(train_ds, epochs, test_ds=test_ds, progress=progress, on_epoch=on_epoch)
