"""The changes a bottleneck suggestion names, as edits of a variant's steps.

The analysis (`benchmarks.diagnosing.bottleneck`) names each change it suggests by a
key: ``kind`` or ``kind:stage``, e.g. ``parallelize:map(decode)``. `Fix`
applies one to a tuple of steps, and `applied` makes the changed copy of a
variant, with the same contract: ``--perf-verify-suggestions`` then checks
that the copy keeps it and times it (`benchmarks.diagnosing.verify`).

A user's pipeline function is changed only where the suite steers its build
(`pipelines.observing.function_calls`): a map it calls is parallelized, the examples
it is given are read in parallel, a prefetch follows it; other changes are
the user's to make.

A new kind of change: a branch in `Fix.apply`, its label in `LABELS`, and
the suggestion that names it in `benchmarks.diagnosing.bottleneck`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from pipelines.functions import FunctionPipeline
from pipelines.steps import Batch, Cache, GeneratorRead, Map, Prefetch, Read, Shuffle, Step, Unbatch
from pipelines.variants import Variant

# Transforms that give the same output for the same input every epoch: a
# cache may come after them. Any other (augment, a user's) may be random, and
# a cache after it would freeze it, so a cache is placed before it.
DETERMINISTIC_TRANSFORMS = frozenset({"decode", "standardize"})

LABELS = {
    "tf_data_read": "read the files with tf.data",
    "parallel_read": "read shards in parallel",
    "parallelize": "parallelize {stage}",
    "vectorize": "vectorize {stage}",
    "cache": "cache after decoding",
    "prefetch": "prefetch at the end",
}


def map_stage(step: Map) -> str:
    """The stage name a map step's spans carry, e.g. ``map(decode+standardize)``."""
    return f"map({'+'.join(step.transforms)})"


def batched_at(steps: Sequence[Step], index: int) -> bool:
    """Whether the elements reaching ``steps[index]`` are batches."""
    batched = False
    for step in steps[:index]:
        if isinstance(step, Batch):
            batched = True
        elif isinstance(step, Unbatch):
            batched = False
    return batched


@dataclasses.dataclass(frozen=True)
class Fix:
    """One change to a pipeline's steps: its ``kind`` (a key of `LABELS`), and the stage
    it changes where the kind needs one (``map(decode)``)."""

    kind: str
    stage: str = ""

    @classmethod
    def parse(cls, key: str) -> Fix:
        """The fix a key names (``kind`` or ``kind:stage``); `ValueError` for an unknown kind."""
        kind, _, stage = key.partition(":")
        if kind not in LABELS:
            raise ValueError(f"unknown fix {key!r}; known: {', '.join(LABELS)}")
        return cls(kind, stage)

    @property
    def key(self) -> str:
        """``kind`` or ``kind:stage``: how the analysis names it."""
        return f"{self.kind}:{self.stage}" if self.stage else self.kind

    @property
    def label(self) -> str:
        """What it does, in words: "parallelize map(decode)"."""
        return LABELS[self.kind].format(stage=self.stage)

    def apply(self, steps: tuple[Step, ...]) -> tuple[Step, ...] | None:
        """``steps`` changed, or None where this change does not apply to them."""
        if steps and isinstance(steps[0], FunctionPipeline) and self.kind != "prefetch":
            return _in_function(self, steps)
        if self.kind == "tf_data_read":
            return _replace_first(steps, lambda s: isinstance(s, GeneratorRead), Read())
        if self.kind == "parallel_read":
            return _replace_first(
                steps,
                lambda s: isinstance(s, GeneratorRead) or (isinstance(s, Read) and not s.parallel),
                Read(parallel=True),
            )
        if self.kind in ("parallelize", "vectorize"):
            index = next(
                (
                    i
                    for i, step in enumerate(steps)
                    if isinstance(step, Map) and map_stage(step) == self.stage
                ),
                None,
            )
            if index is None:
                return None
            if self.kind == "parallelize":
                step = steps[index]
                assert isinstance(step, Map)
                if step.parallel:
                    return None
                return (
                    *steps[:index],
                    dataclasses.replace(step, parallel=True),
                    *steps[index + 1 :],
                )
            return _vectorized(steps, index)
        if self.kind == "cache":
            return _cached(steps)
        if self.kind == "prefetch":
            return None if steps and isinstance(steps[-1], Prefetch) else (*steps, Prefetch())
        raise AssertionError(f"no edit for fix kind {self.kind!r}")


def _in_function(fix: Fix, steps: tuple[Step, ...]) -> tuple[Step, ...] | None:
    """``fix`` made inside a pipeline function (``steps[0]``), where it can be: a map run
    in parallel, or the examples it is given read in parallel (None for the others)."""
    function = steps[0]
    assert isinstance(function, FunctionPipeline)
    changed = None
    if fix.kind == "parallelize":
        changed = function.parallelizing(fix.stage)
    elif fix.kind == "parallel_read":
        changed = function.reading_in_parallel()
    return None if changed is None else (changed, *steps[1:])


def _replace_first(steps: tuple[Step, ...], match, replacement: Step) -> tuple[Step, ...] | None:
    index = next((i for i, step in enumerate(steps) if match(step)), None)
    if index is None:
        return None
    return (*steps[:index], replacement, *steps[index + 1 :])


def _vectorized(steps: tuple[Step, ...], index: int) -> tuple[Step, ...] | None:
    """The map at ``index`` applied once per batch instead of once per example.

    Where only shuffles stand between it and the next `Batch`, it moves after
    that batch (the `vectorized_map` recipe); otherwise it is wrapped in
    ``batch -> map -> unbatch`` where it stands (the `optimized` recipe for
    decoding), so every later step still sees examples.
    """
    if batched_at(steps, index):
        return None
    step = steps[index]
    following = index + 1
    while following < len(steps) and isinstance(steps[following], Shuffle):
        following += 1
    if following < len(steps) and isinstance(steps[following], Batch):
        return (*steps[:index], *steps[index + 1 : following + 1], step, *steps[following + 1 :])
    return (*steps[:index], Batch(), step, Unbatch(), *steps[index + 1 :])


def cache_position(steps: Sequence[Step]) -> int:
    """Where a cache goes: after the read and the deterministic maps, before anything
    random or per epoch (a shuffle, an augmentation, a repeat), so later epochs replay
    the decoded examples and what was fresh stays fresh."""
    position = 1
    while position < len(steps):
        step = steps[position]
        deterministic_map = (
            isinstance(step, Map) and set(step.transforms) <= DETERMINISTIC_TRANSFORMS
        )
        if not (deterministic_map or isinstance(step, Batch | Unbatch)):
            break
        position += 1
    return position


def spared_by_cache(steps: Sequence[Step]) -> frozenset[str]:
    """The stages whose work a cache at `cache_position` spares every later epoch: the
    read (its open, read and generator stages) and the maps before it."""
    if not steps or not isinstance(steps[0], Read | GeneratorRead):
        return frozenset()  # a function pipeline: its steps are out of sight
    before = steps[1 : cache_position(steps)]
    return frozenset(
        {"open", "read", "generator"} | {map_stage(s) for s in before if isinstance(s, Map)}
    )


def _cached(steps: tuple[Step, ...]) -> tuple[Step, ...] | None:
    """A cache at `cache_position`, where the steps have none."""
    if any(isinstance(step, Cache) for step in steps):
        return None
    position = cache_position(steps)
    return (*steps[:position], Cache(), *steps[position:])


def applied(variant: Variant, fixes: Sequence[Fix]) -> Variant | None:
    """A copy of ``variant`` with ``fixes`` applied in order, its contract unchanged, not
    benchmarked by default; None where one of them does not apply."""
    steps: tuple[Step, ...] | None = variant.steps
    for fix in fixes:
        steps = fix.apply(steps)
        if steps is None:
            return None
    name = f"{variant.name}+{'+'.join(fix.key for fix in fixes)}"
    description = f"{variant.name} changed: {'; '.join(fix.label for fix in fixes)}"
    return Variant(name, steps, variant.contract, description, benchmarked=False)
