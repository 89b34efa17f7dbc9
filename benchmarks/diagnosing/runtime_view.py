"""What tf.data's runtime statistics say of a variant: its limiting stage, AUTOTUNE's choices.

Read from the timed training runs' own iterators while the device runs its steps
(`pipelines.observing.runtime_model`), so it needs no traced run and stamps no element.
Per variant: each stage's busy time (its own time, estimated over the whole
epoch and divided among its parallel calls) summed over every epoch of every
run, its share, the stage with the largest share, and the values AUTOTUNE had
set as each epoch of the last run ended. The terminal and the report say
whether the traced timeline's limiting stage agrees and by how much, and name
the number to set where AUTOTUNE's choice is what limits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.diagnosing.bottleneck import INPUT_KINDS, MODERATE
from benchmarks.measuring.cores import cpu_cores
from benchmarks.saving.metrics import INPUT_BOUND, RUNTIME_OVERHEAD, STEADY_INPUT_BOUND
from models.trainer import EpochStats
from pipelines.observing.runtime_model import Legend, RuntimeStage

# Stage kinds that can limit: those the traced analysis weighs. A shuffle's, a cache's
# and a prefetch's own time is shown but does not limit: it is mostly handing over what
# they hold, and tf.data charges them part of the wait on an asynchronous stage before them.
LIMITING_KINDS = INPUT_KINDS
# A prefetch buffer under this fill on average is empty when the model asks for a batch.
EMPTY_BUFFER = 0.25


@dataclasses.dataclass(frozen=True)
class RuntimeView:
    """One variant's runtime statistics over a benchmark's runs (see the module's notes).

    ``busy_by_epoch``: per epoch (the first first), per stage, its busy seconds
    summed over the runs. ``choices``: per epoch of the last run, per stage, its
    parallelism, buffer size or cycle length as the epoch ended; ``tuned``: per
    stage, those AUTOTUNE set (the rest were set in the code). ``fill``: per stage
    with a buffer, how full it was on average. ``reading_s``: what reading the
    model cost, over ``readings`` readings.
    """

    busy_by_epoch: Sequence[Mapping[str, float]]
    kinds: Mapping[str, str]
    choices: Sequence[Mapping[str, Mapping[str, float]]]
    tuned: Mapping[str, Sequence[str]]
    fill: Mapping[str, float]
    readings: int
    reading_s: float

    def shares(self, epochs: slice = slice(None)) -> dict[str, float]:
        """Per stage that can limit, its share of their busy time over ``epochs``."""
        busy: dict[str, float] = {}
        for epoch in self.busy_by_epoch[epochs]:
            for name, seconds in epoch.items():
                if self.kinds[name] in LIMITING_KINDS:
                    busy[name] = busy.get(name, 0.0) + seconds
        total = sum(busy.values())
        return {name: value / total for name, value in busy.items()} if total > 0 else {}

    @property
    def steady(self) -> slice:
        """The epochs after the first, or the first where there is one."""
        return slice(1, None) if len(self.busy_by_epoch) > 1 else slice(None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, with the shares and limiting stages, for extra_info: ``shares`` and
        ``limiting`` over the later epochs (steady state), ``first_epoch_*`` over the first."""
        steady, first = self.shares(self.steady), self.shares(slice(0, 1))
        return dataclasses.asdict(self) | {
            "shares": steady,
            "limiting": _largest(steady),
            "first_epoch_shares": first,
            "first_epoch_limiting": _largest(first),
        }


def _largest(shares: Mapping[str, float]) -> str | None:
    return max(shares, key=shares.__getitem__) if shares else None


def shares_over(info: Mapping[str, Any], epochs: int) -> dict[str, float]:
    """A saved view's (`RuntimeView.to_dict`) shares over its first ``epochs`` epochs."""
    fields = {field.name for field in dataclasses.fields(RuntimeView)}
    view = RuntimeView(**{key: value for key, value in info.items() if key in fields})
    return view.shares(slice(0, max(epochs, 1)))


def runtime_view(
    runs: Sequence[Sequence[EpochStats]], legend: Legend | None = None
) -> RuntimeView | None:
    """The view over ``runs``' epochs that read the runtime model (None: none did).

    ``legend``: the variant's stage names and the run's simulated storage latency.
    """
    if not any(epoch.runtime is not None for run in runs for epoch in run):
        return None
    # Each epoch's stages, worked out once: (epoch index, its model, its stages), by run.
    staged = [
        [(index, e.runtime, e.runtime.stages(legend)) for index, e in enumerate(run) if e.runtime]
        for run in runs
    ]
    busy: list[dict[str, float]] = [{} for _ in range(max(len(run) for run in runs))]
    kinds: dict[str, str] = {}
    fills: dict[str, list[float]] = {}
    for index, _, stages in (epoch for run in staged for epoch in run):
        kinds = _in_order(kinds, {stage.name: stage.kind for stage in stages})
        for stage in stages:
            busy[index][stage.name] = busy[index].get(stage.name, 0.0) + stage.busy_s
            if stage.fill is not None:
                fills.setdefault(stage.name, []).append(stage.fill)
    models = [model for run in staged for _, model, _ in run]
    last = [stages for _, _, stages in staged[-1]]
    return RuntimeView(
        busy_by_epoch=busy,
        kinds=kinds,
        choices=[_choices(stages) for stages in last],
        tuned={stage.name: list(stage.tuned) for stages in last for stage in stages if stage.tuned},
        fill={name: sum(values) / len(values) for name, values in fills.items()},
        readings=sum(model.readings for model in models),
        reading_s=sum(model.reading_s for model in models),
    )


def _in_order(known: dict[str, str], stages: dict[str, str]) -> dict[str, str]:
    """``known`` with the stages of ``stages`` it lacks, each after the one before it
    there: the source-to-output order of every epoch (a cached epoch has fewer)."""
    order = list(known)
    for before, name in zip([None, *stages], stages, strict=False):
        if name not in order:
            order.insert(order.index(before) + 1 if before in order else 0, name)
    return {name: known.get(name) or stages[name] for name in order}


def _choices(stages: Sequence[RuntimeStage]) -> dict[str, dict[str, float]]:
    return {stage.name: dict(stage.choices) for stage in stages if stage.choices}


def missing_reason(runs: Sequence[Sequence[EpochStats]]) -> str:
    """Why the runs' epochs carry no runtime model ("" where one did or none was asked)."""
    return next(
        (epoch.runtime_missing for run in runs for epoch in run if epoch.runtime_missing), ""
    )


def choices_text(
    choices: Sequence[Mapping[str, Mapping[str, float]]], tuned: Mapping[str, Sequence[str]]
) -> str:
    """``map(augment) parallelism 1 -> 2 (epoch 2) by AUTOTUNE``: each stage's parallelism,
    buffer size or cycle length as it moved by epoch, and who set it (AUTOTUNE or the code)."""
    shown = []
    for stage, values in (choices[-1] if choices else {}).items():
        for name in values:
            seen = [epoch.get(stage, {}).get(name) for epoch in choices]
            steps = [
                f"{_number(value)}{f' (epoch {index + 1})' if index else ''}"
                for index, value in enumerate(seen)
                if value is not None and (index == 0 or value != seen[index - 1])
            ]
            who = "by AUTOTUNE" if name in tuned.get(stage, ()) else "set in the code"
            shown.append(f"{stage} {name} {' -> '.join(steps)} {who}")
    return ", ".join(shown) or "no parallelism or buffer to tune"


def _setter(stage: str, name: str, tuned: Mapping[str, Sequence[str]]) -> str:
    return "AUTOTUNE" if name in tuned.get(stage, ()) else "set"


def _by_whom(stage: str, name: str, tuned: Mapping[str, Sequence[str]]) -> str:
    return "AUTOTUNE chose" if name in tuned.get(stage, ()) else "set to"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def advice(info: Mapping[str, Any]) -> list[str]:
    """Where AUTOTUNE's choice is what limits, the number to set instead.

    ``info``: a `RuntimeView.to_dict`.
    """
    limiting, found = info.get("limiting"), []
    last = (info.get("choices") or [{}])[-1]
    tuned = info.get("tuned") or {}
    held = last.get(limiting or "", {}).get("parallelism") == 1
    if limiting and held and "parallelism" in tuned.get(limiting, ()):
        found.append(
            f"AUTOTUNE held {limiting}'s parallelism at 1 (no thread to spare, or no gain"
            f" seen): set its num_parallel_calls to {cpu_cores()} (the cores here)"
        )
    for stage, fill in (info.get("fill") or {}).items():
        size = last.get(stage, {}).get("buffer_size")
        if size is not None and fill < EMPTY_BUFFER and limiting and limiting != stage:
            found.append(
                f"{stage}'s buffer ({_by_whom(stage, 'buffer_size', tuned)} {_number(size)})"
                f" was {fill:.0%} full on"
                f" average: what comes before it cannot keep up, and a larger buffer will"
                f" not help; {limiting} is the stage to speed up"
            )
    return found


def agreement(info: Mapping[str, Any], bottleneck: Mapping[str, Any] | None) -> str:
    """Whether the traced timeline names the same limiting stage as the runtime statistics
    over the same epochs (the timeline's), and both shares where they differ."""
    if not bottleneck or not bottleneck.get("limiting_stage"):
        return "no timeline to compare"
    stage = str(bottleneck["limiting_stage"])
    epochs = int(bottleneck.get("epochs", 1))
    mine = shares_over(info, epochs)
    over = "epoch 1" if epochs == 1 else f"epochs 1-{epochs}"
    if stage == "train step":
        return f"the timeline finds the device limits (over {over})"
    theirs = bottleneck.get("share_of_input") or {}
    limiting = _largest(mine)
    if limiting is None:
        return "no runtime statistics over the timeline's epochs"
    if stage == limiting:
        return f"the timeline agrees over {over} ({theirs.get(stage, 0.0):.0%} there)"
    if limiting == "generator" and stage in ("open", "read") and stage not in mine:
        # A generator reads its files through an iterator of its own, which tf.data's
        # model of this one does not hold: the timeline's open and read are inside it.
        return (
            f"the timeline agrees over {over}: its {stage} ({theirs.get(stage, 0.0):.0%}"
            " there) runs inside the generator"
        )
    return (
        f"the timeline disagrees over {over}: it names {stage} ({theirs.get(stage, 0.0):.0%}"
        f" there, {mine.get(stage, 0.0):.0%} here), these statistics {limiting}"
        f" ({mine[limiting]:.0%} here, {theirs.get(limiting, 0.0):.0%} there)"
    )


def runtime_line(
    variant: str, metrics: Mapping[str, Any], bottleneck: Mapping[str, Any] | None
) -> str | None:
    """One line for ``variant`` from its training metrics (None: its runs did not read
    the runtime model)."""
    if metrics.get("runtime_missing"):
        why = metrics["runtime_missing"]
        return f"{variant}: no runtime statistics ({why}); the traced timeline still works"
    info = metrics.get("runtime") or {}
    limiting = info.get("limiting")
    if not limiting:
        return None
    share = f"{info['shares'][limiting]:.0%}"
    first = info.get("first_epoch_limiting")
    later = len(info.get("busy_by_epoch") or ()) > 1
    head = f"{variant}: busiest stage {limiting} ({share} of the input work"
    head += f" in later epochs; the first epoch's: {first})" if later and first != limiting else ")"
    waiting = STEADY_INPUT_BOUND.of(metrics)
    waiting = INPUT_BOUND.of(metrics) if waiting is None else waiting
    if waiting is not None and waiting < MODERATE:
        head += f", but the device limits (input waits {waiting:.0%})"
    cost = RUNTIME_OVERHEAD.of(metrics)
    if cost is not None:
        low, high = RUNTIME_OVERHEAD.interval_of(metrics) or (cost, cost)
        head += f"; reading them cost {cost:+.1%} [{low:+.1%}, {high:+.1%}] of its training time"
    parts = [
        head,
        agreement(info, bottleneck),
        "parallelism and buffers: "
        + choices_text(info.get("choices") or [], info.get("tuned") or {}),
        *advice(info),
    ]
    return "; ".join(parts)


def stage_rows(info: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per stage of a saved view, for the report: its kind, its share of the input work in
    later epochs and in the first, its parallelism and buffers (and who set them), its fill."""
    last = (info.get("choices") or [{}])[-1]
    tuned = info.get("tuned") or {}
    rows = []
    for stage, kind in (info.get("kinds") or {}).items():
        values = last.get(stage, {})
        rows.append(
            {
                "stage": stage,
                "kind": kind,
                "busy_s": sum(epoch.get(stage, 0.0) for epoch in info.get("busy_by_epoch") or ()),
                "share": (info.get("shares") or {}).get(stage),
                "first_share": (info.get("first_epoch_shares") or {}).get(stage),
                "settings": ", ".join(
                    f"{name} {_number(value)} ({_setter(stage, name, tuned)})"
                    for name, value in values.items()
                ),
                "fill": (info.get("fill") or {}).get(stage),
            }
        )
    return rows


def runtime_lines(
    trained: Mapping[str, Mapping[str, Any]], bottlenecks: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """`runtime_line` for every trained variant that has one (``trained``: gate metrics)."""
    lines = [runtime_line(v, metrics, bottlenecks.get(v)) for v, metrics in trained.items()]
    return [line for line in lines if line]
