"""tf.data's own runtime model of an iterator: what each stage cost, and what AUTOTUNE chose.

tf.data keeps, for its autotuner, a model of every iterator: per node (one per
dataset op, plus one per inner iterator of a flat_map or interleave) its own
time producing elements (its inputs' time left out, summed over its threads),
the elements it produced, what it holds buffered, and the tunable parameters
(parallelism, buffer size) with the values AUTOTUNE set. Autotune keeps it
anyway (it is on by default); `tf.data.experimental.get_model_proto`
(TensorFlow 2.17 and later) reads it.

A node is removed from the model when its iterator ends: a shard's reader as
the shard is done, and everything below a batch as the epoch's input runs out.
Read once as an epoch ends, the model holds little more than the root. So an
`EpochSampler` reads it during the epoch, within a budget of its own cost, keeps
each node's last reading, and estimates what a node did after it was last seen
at its time per element once running (what it added between two readings that
saw it, so that a reader's opening is not multiplied) (`RuntimeModel.stages`):

- a node on the pipeline's main line is expected to produce what its consumer
  asked of it (its consumer's elements times the consumer's ratio: 64 per
  batch for a batch of 64), or what it was seen to produce where that is unknown;
- the readers inside a flat_map or interleave (a shard each) are one group: a
  reader never seen costs what a seen one did (a reader's work comes in bursts,
  its opening and its blocks), and with every reader seen, the group is expected
  to produce what its parent produced.

Nodes are then grouped into the suite's stage kinds (`STAGE_OPS`): open (the
flat_map or interleave itself), read (the readers inside it), generator, map,
batch, shuffle, cache, prefetch; an op of no kind (zip, take, filter, repeat,
the seed stream a map zips with) counts with the nearest stage above it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import tensorflow as tf
from tensorflow.core.framework import model_pb2

from pipelines.errors import one_line
from pipelines.sources.latency import Latency

# Stage kinds by tf.data op (as the model names its nodes, less a "V2"-style suffix).
STAGE_OPS = {
    "open": ("FlatMap", "Interleave", "ParallelInterleave", "LegacyParallelInterleave"),
    "map": ("Map", "ParallelMap", "MapAndBatch"),
    "batch": ("Batch", "ParallelBatch", "PaddedBatch"),
    "shuffle": ("Shuffle", "ShuffleAndRepeat"),
    "cache": ("MemoryCache", "MemoryCacheImpl", "Cache", "CacheImpl"),
    "prefetch": ("Prefetch",),
}
KIND_OF_OP = {op: kind for kind, ops in STAGE_OPS.items() for op in ops}
# Parameters AUTOTUNE tunes (where the code asked it to), as the model names them.
TUNED = ("parallelism", "buffer_size", "cycle_length")
# Node classes (tf.data's NodeClass names) whose inputs' elements are a fixed multiple
# (the node's ratio) of the node's own.
KNOWN_RATIO = ("KNOWN_RATIO", "ASYNC_KNOWN_RATIO")
# The share of an epoch's wall time the sampler may spend reading the model.
SAMPLE_BUDGET = 0.01
# While the first batch is made, how often the sampler's thread asks whether to read.
WATCH_INTERVAL_S = 0.005
# However the budget stands, the model is read after every this many batches.
EVERY_BATCHES = 16


@dataclasses.dataclass(frozen=True)
class Legend:
    """What the run knows of a pipeline that tf.data's model does not: its stages as
    (name, kind), as a traced build names them (those on its main line, not those
    inside a shard's reader), and the storage latency it simulates
    (`pipelines.registry.legend` makes one)."""

    names: tuple[tuple[str, str], ...] = ()
    waits: Latency = dataclasses.field(default_factory=Latency)


class RuntimeUnavailable(Exception):
    """The runtime model cannot be read; the message is one line saying why."""


@dataclasses.dataclass(frozen=True)
class RuntimeNode:
    """One node of a running pipeline, at the last reading that saw it."""

    id: int
    name: str  # tf.data's op name, e.g. "ParallelMapV2"
    processing_s: float  # its own time producing elements, summed over its threads
    elements: int
    inputs: tuple[int, ...]
    ratio: float = 0.0  # input elements per output element, where fixed
    known_ratio: bool = False
    # The parameters in force (name -> value); those AUTOTUNE tunes are in ``tuned``.
    chosen: Mapping[str, float] = dataclasses.field(default_factory=dict)
    tuned: tuple[str, ...] = ()
    buffered: int = 0
    # The mean of buffered / buffer_size over the readings (None: no buffer).
    fill: float | None = None
    removed: bool = False  # gone from the model before the epoch ended
    # What it added between readings that both saw it: its time per element once
    # running, without what it paid before its first element (a reader's open).
    grown_s: float = 0.0
    grown: int = 0

    @property
    def rate_s(self) -> float:
        """Its seconds per element once running (its average where no growth was seen)."""
        if self.grown > 0:
            return self.grown_s / self.grown
        return self.processing_s / self.elements if self.elements > 0 else 0.0

    @property
    def op(self) -> str:
        """``ParallelMapV2`` -> ``ParallelMap``: the op without its version."""
        head, _, version = self.name.rpartition("V")
        return head if head and version.isdigit() else self.name

    @property
    def parallelism(self) -> float:
        """Calls it runs at once (1 for a sequential op)."""
        return max(float(self.chosen.get("parallelism", 1.0)), 1.0)


@dataclasses.dataclass(frozen=True)
class RuntimeStage:
    """A stage of the pipeline as the runtime model saw it over one epoch.

    ``busy_s``: its nodes' own time, estimated for the whole epoch and divided
    among its parallel calls (the wall time its work takes); ``seen_s`` the same
    from the readings alone. ``choices``: its parallelism, buffer size or cycle
    length in force, those AUTOTUNE set named in ``tuned`` (the rest were set in
    the code); ``fill``: how full its buffer was on average (a prefetch).
    """

    name: str
    kind: str
    ops: tuple[str, ...]
    busy_s: float
    seen_s: float
    parallelism: float
    choices: Mapping[str, float]
    tuned: tuple[str, ...] = ()
    fill: float | None = None


@dataclasses.dataclass(frozen=True)
class RuntimeModel:
    """Every node seen in one epoch of an iterator, and how it was read."""

    nodes: Mapping[int, RuntimeNode]
    output: int
    readings: int = 1
    reading_s: float = 0.0  # the readings' own time

    def stages(self, legend: Legend | None = None) -> list[RuntimeStage]:
        """The pipeline's stages from its source to its output (see the module's notes).

        ``legend.names``: the variant's stages on its main line, in build order
        (a function's map(decode) runs inside the reads: not among them), aligned
        with the model's stages kind by kind (`_names`). Without a name, a stage
        is called by its kind, numbered when it repeats.
        ``legend.waits``: the storage latency the run simulates, which tf.data's
        model does not see (a sleeping reader stops its clock): added to the open
        and read stages, per file and per record.
        """
        legend = legend or Legend()
        return _stages(self, legend.names, legend.waits)


def read_model(iterator: Iterator[Any]) -> Any:
    """tf.data's ``ModelProto`` of ``iterator`` (`RuntimeUnavailable` where it has none)."""
    reader = getattr(tf.data.experimental, "get_model_proto", None)
    if reader is None:
        raise RuntimeUnavailable(
            f"TensorFlow {tf.__version__} cannot read tf.data's runtime model"
            " (tf.data.experimental.get_model_proto needs 2.17 or later)"
        )
    try:
        return reader(iterator)
    except tf.errors.NotFoundError:
        raise RuntimeUnavailable(
            "tf.data keeps no runtime model for this iterator: autotune is off for its"
            " dataset (tf.data.Options().autotune.enabled = False)"
        ) from None
    except (TypeError, AttributeError, ValueError, tf.errors.OpError) as error:
        raise RuntimeUnavailable(
            f"tf.data's runtime model cannot be read: {one_line(error)}"
        ) from None


class EpochSampler:
    """Reads an iterator's runtime model during one epoch, keeping every node it saw.

    `sample` after a batch reads the model when the readings so far cost less than
    ``budget`` of the epoch's time (the first batch is always read); `finish` reads
    it once more and returns the epoch's `RuntimeModel`, or raises `RuntimeUnavailable`.
    `watch` reads it from a thread of its own, within the same budget, until the first
    `sample`: while the first batch is made, a shuffle buffer as large as the data
    consumes every read and decode, whose nodes are gone before the first batch.
    """

    def __init__(self, iterator: Iterator[Any], budget: float = SAMPLE_BUDGET) -> None:
        self.iterator = iterator
        self.budget = budget
        self.started = time.perf_counter()
        self.cost = 0.0
        self.readings = 0
        self.output = 0
        self.missing: str = ""
        self._last: dict[int, Any] = {}
        self._fill: dict[int, list[float]] = {}
        self._inputs: dict[int, list[int]] = {}
        self._watcher: tuple[threading.Thread, threading.Event] | None = None
        self._grown: dict[int, list[float]] = {}  # id -> [seconds, elements] grown
        self._first_cost = 0.0
        self._since = 0  # `sample` calls since the last reading

    def watch(self) -> None:
        """Read the model from a thread of its own until the first `sample` (or `finish`)."""
        stop = threading.Event()

        def watching() -> None:
            while not stop.wait(WATCH_INTERVAL_S):
                self._sample()

        thread = threading.Thread(target=watching, name="runtime-model-watch", daemon=True)
        self._watcher = (thread, stop)
        thread.start()

    def _unwatch(self) -> None:
        if self._watcher is not None:
            thread, stop = self._watcher
            stop.set()
            thread.join()
            self._watcher = None

    def sample(self) -> None:
        """Read the model now if the budget allows (never raises)."""
        self._unwatch()
        self._sample()

    def _sample(self) -> None:
        if self.missing:
            return
        elapsed = time.perf_counter() - self.started
        self._since += 1
        # A new iterator's first reading costs several later ones: it is not counted,
        # and every `EVERY_BATCHES`-th batch is read whatever the budget says.
        spent = self.cost - self._first_cost
        if self.readings and spent > self.budget * elapsed and self._since < EVERY_BATCHES:
            return
        try:
            self._read()
        except RuntimeUnavailable as why:
            self.missing = str(why)

    def _read(self) -> set[int]:
        """Read the model once; the ids of the nodes it holds now."""
        began = time.perf_counter()
        proto = read_model(self.iterator)
        self.output = int(proto.output)
        for key, node in proto.nodes.items():
            before = self._last.get(int(key))
            if before is not None and node.num_elements > before.num_elements:
                grown = self._grown.setdefault(int(key), [0.0, 0])
                grown[0] += (node.processing_time - before.processing_time) / 1e9
                grown[1] += node.num_elements - before.num_elements
            self._last[int(key)] = node
            # An input removed since (its iterator ended) stays this node's input.
            known = self._inputs.setdefault(int(key), [])
            known.extend(int(i) for i in node.inputs if int(i) not in known)
            size = next((p.value for p in node.parameters if p.name == "buffer_size"), 0.0)
            if size > 0:
                self._fill.setdefault(int(key), []).append(node.buffered_elements / size)
        self.readings += 1
        self._since = 0
        self.cost += time.perf_counter() - began
        if self.readings == 1:
            self._first_cost = self.cost
        return {int(key) for key in proto.nodes}

    def finish(self) -> RuntimeModel:
        """The epoch's model: a last reading, with every node seen before it."""
        self._unwatch()
        live: set[int] = set()
        if not self.missing:
            try:
                live = self._read()
            except RuntimeUnavailable as why:
                self.missing = str(why)
        if self.missing:
            raise RuntimeUnavailable(self.missing)
        nodes = {
            key: _node(proto, self._inputs[key], key not in live, self._fill.get(key))
            for key, proto in self._last.items()
        }
        for key, (seconds, elements) in self._grown.items():
            nodes[key] = dataclasses.replace(nodes[key], grown_s=seconds, grown=int(elements))
        return RuntimeModel(nodes, self.output, self.readings, self.cost)


def _node(
    proto: Any, inputs: Sequence[int], removed: bool, fills: Sequence[float] | None
) -> RuntimeNode:
    # A flat_map is an interleave of one: its cycle length of 1 is no one's choice.
    chosen = {
        p.name: float(p.value)
        for p in proto.parameters
        if p.tunable or not (p.name == "cycle_length" and p.value == 1)
    }
    return RuntimeNode(
        id=int(proto.id),
        name=str(proto.name),
        processing_s=float(proto.processing_time) / 1e9,
        elements=int(proto.num_elements),
        inputs=tuple(inputs),
        ratio=float(proto.ratio),
        known_ratio=model_pb2.NodeClass.Name(proto.node_class) in KNOWN_RATIO,
        chosen=chosen,
        tuned=tuple(p.name for p in proto.parameters if p.tunable and p.name in TUNED),
        buffered=int(proto.buffered_elements),
        fill=sum(fills) / len(fills) if fills else None,
        removed=removed,
    )


@dataclasses.dataclass
class _Group:
    """The nodes that make one stage, while `_stages` collects them."""

    kind: str
    head: RuntimeNode
    nodes: list[tuple[RuntimeNode, float]]  # (node, its estimated epoch seconds)


def _stages(
    model: RuntimeModel, names: Sequence[tuple[str, str]], waits: Latency
) -> list[RuntimeStage]:
    groups = _groups(model, waits)
    named = _names([group.kind for group in groups], names)
    stages = []
    for group, name in zip(groups, named, strict=True):
        parallelism = group.head.parallelism
        shown = group.kind != "read"  # a read's parallelism and choices are its opener's
        chosen = {k: group.head.chosen[k] for k in TUNED if k in group.head.chosen and shown}
        stages.append(
            RuntimeStage(
                name=name,
                kind=group.kind,
                ops=tuple(dict.fromkeys(node.name for node, _ in group.nodes)),
                busy_s=sum(seconds for _, seconds in group.nodes) / parallelism,
                seen_s=sum(node.processing_s for node, _ in group.nodes) / parallelism,
                parallelism=parallelism,
                choices=chosen,
                tuned=group.head.tuned if shown else (),
                fill=group.head.fill,
            )
        )
    return stages


def _groups(model: RuntimeModel, waits: Latency) -> list[_Group]:
    """The main line's stages from the source up, each with its nodes and their
    estimated seconds (the readers inside an open stage as a stage of their own)."""
    nodes, groups = model.nodes, []
    expected: dict[int, float] = {}
    current: _Group | None = None
    chain = _main_line(nodes, model.output)
    for position, node in enumerate(chain):
        consumer = chain[position - 1] if position else None
        expected[node.id] = _expected(node, consumer, expected)
        kind = KIND_OF_OP.get(node.op)
        # A cache is two ops (the cache and its filling); any other op starts a stage.
        if current is None or (kind is not None and not kind == current.kind == "cache"):
            current = _Group(kind or "other", node, [])
            groups.append(current)
        current.nodes.append((node, _scaled(node, expected[node.id])))
        if kind == "open":
            # Before the opener: the stages come out reversed, source first.
            groups[-1:-1] = _readers(nodes, current, expected[node.id], waits)
            continue
        for side in node.inputs[1:]:
            current.nodes.extend((inner, inner.processing_s) for inner in _subtree(nodes, side))
    groups = [group for group in groups if group.kind != "other"]
    return list(reversed(groups))


def _main_line(nodes: Mapping[int, RuntimeNode], output: int) -> list[RuntimeNode]:
    """From the output down each node's first input (its dataset's input)."""
    line: list[RuntimeNode] = []
    node_id: int | None = output
    while node_id in nodes and nodes[node_id] not in line:
        node = nodes[node_id]
        line.append(node)
        node_id = node.inputs[0] if node.inputs else None
    return line


def _expected(
    node: RuntimeNode, consumer: RuntimeNode | None, expected: Mapping[int, float]
) -> float:
    """The elements ``node`` produced over the epoch: seen, or what its consumer asked."""
    if consumer is None or not node.removed or not consumer.known_ratio or consumer.ratio <= 0:
        return float(node.elements)
    return max(float(node.elements), expected[consumer.id] * consumer.ratio)


def _scaled(node: RuntimeNode, elements: float) -> float:
    """``node``'s seconds over ``elements``: what it was seen to take, and the elements it
    was not seen making at its time per element once running."""
    return node.processing_s + max(elements - node.elements, 0.0) * node.rate_s


def _subtree(nodes: Mapping[int, RuntimeNode], root: int) -> list[RuntimeNode]:
    found, stack = [], [root]
    while stack:
        node_id = stack.pop()
        if node_id in nodes and nodes[node_id] not in found:
            found.append(nodes[node_id])
            stack.extend(nodes[node_id].inputs)
    return found


def _readers(
    nodes: Mapping[int, RuntimeNode], opener: _Group, produced: float, waits: Latency
) -> list[_Group]:
    """The inner iterators of ``opener`` (a flat_map or interleave) as one stage: "read", or
    "generator" where they run a Python generator (the opener then counts as the
    generator too). Readers no reading saw each cost what a seen one did; with every
    reader seen, what they made after their last reading is added at their time per
    element between readings. A simulated storage latency is added: per file to the
    opener, per record to the read."""
    head = opener.head
    inner = [node for side in head.inputs[1:] for node in _subtree(nodes, side)]
    roots = [nodes[side] for side in head.inputs[1:] if side in nodes]
    files = nodes[head.inputs[0]].elements if head.inputs and head.inputs[0] in nodes else 0
    total = sum(node.processing_s for node in inner)
    if roots and files > len(roots):
        # Readers never seen: each costs what a seen one did (a shard's reader opens,
        # parses its blocks and hands its records over; per record, that comes in bursts).
        extra = total * (files / len(roots) - 1)
    else:
        # Every reader seen: what each made after its last reading, at its time per
        # record between readings (one long reader: a generator).
        unseen = max(produced - sum(root.elements for root in roots), 0.0)
        grown = sum(root.grown for root in roots)
        seen = sum(root.elements for root in roots)
        rate = sum(node.grown_s for node in inner) / grown if grown else total / max(seen, 1)
        extra = unseen * rate

    def estimated(node: RuntimeNode) -> float:
        return node.processing_s + (extra * node.processing_s / total if total > 0 else 0.0)

    if any(node.op == "Generator" for node in inner):
        opener.kind = "generator"
        opener.nodes.extend((node, estimated(node)) for node in inner)
        return []
    if not inner:
        return []
    if waits.open_s > 0 and files:
        opener.nodes.append((_waiting("storage open latency"), waits.open_s * files))
    read = _Group("read", head, [(node, estimated(node)) for node in inner])
    if waits.read_s > 0:
        read.nodes.append((_waiting("storage read latency"), waits.read_s * (produced + files)))
    return [read]


def _waiting(name: str) -> RuntimeNode:
    """A stand-in node for time tf.data's model does not see (a simulated wait)."""
    return RuntimeNode(id=-1, name=name, processing_s=0.0, elements=0, inputs=())


def _names(kinds: Sequence[str], names: Sequence[tuple[str, str]]) -> list[str]:
    """Each stage's name: the variant's stage it aligns with, or its kind (numbered from
    the source where it repeats) where none does.

    The two are aligned in order, kind with kind, as many as can be, preferring the
    variant's stages nearest the output: an epoch served by a cache has no stages below
    it, and a pipeline function's tuples are made records by a map after its batch.
    """
    given = [kind for _, kind in names]
    # longest[i][j]: the most stages of kinds[:i] and given[:j] that align in order.
    longest = [[0] * (len(given) + 1) for _ in range(len(kinds) + 1)]
    for i, kind in enumerate(kinds, start=1):
        for j, other in enumerate(given, start=1):
            matched = longest[i - 1][j - 1] + 1 if kind == other else 0
            longest[i][j] = max(matched, longest[i - 1][j], longest[i][j - 1])
    found: dict[int, str] = {}
    i, j = len(kinds), len(given)
    while i and j:
        if kinds[i - 1] == given[j - 1] and longest[i][j] == longest[i - 1][j - 1] + 1:
            found[i - 1] = names[j - 1][0]
            i, j = i - 1, j - 1
        elif longest[i - 1][j] >= longest[i][j - 1]:
            i -= 1  # on a tie, keep the variant's later stage for an earlier one of ours
        else:
            j -= 1
    counts = {kind: kinds.count(kind) for kind in kinds}
    seen: dict[str, int] = {}
    result = []
    for index, kind in enumerate(kinds):
        seen[kind] = seen.get(kind, 0) + 1
        numbered = kind if counts[kind] == 1 else f"{kind} #{seen[kind]}"
        result.append(found.get(index, numbered))
    return result
