"""The core budget: the model's ops get their threads, the input pipeline keeps its own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import tensorflow as tf
from bench_runner import ROOT

# Run in a process of its own: TensorFlow takes thread settings only before it starts.
SCRIPT = """
import json, threading, time
import tensorflow as tf
from benchmarks.measuring.cores import apply_core_budget, cpu_cores, own_threads

budget = apply_core_budget(1)

# The model's ops: a big matmul on one intra-op thread keeps one core busy, not all.
a = tf.random.uniform((1500, 1500))
tf.linalg.matmul(a, a).numpy()
wall, cpu = time.perf_counter(), time.process_time()
while time.perf_counter() - wall < 1.5:
    tf.linalg.matmul(a, a).numpy()
model_cores = (time.process_time() - cpu) / (time.perf_counter() - wall)

# The pipeline: calls that wait (as reads do) overlap on its own threads.
lock, state = threading.Lock(), {"now": 0, "most": 0}
def wait(x):
    with lock:
        state["now"] += 1
        state["most"] = max(state["most"], state["now"])
    time.sleep(0.05)
    with lock:
        state["now"] -= 1
    return x
calls = lambda x: tf.py_function(wait, [x], tf.int64)
dataset = tf.data.Dataset.range(24).map(calls, num_parallel_calls=8)
list(own_threads(dataset, budget))
print(json.dumps({
    "budget": budget,
    "intra": tf.config.threading.get_intra_op_parallelism_threads(),
    "inter": tf.config.threading.get_inter_op_parallelism_threads(),
    "model_cores": model_cores,
    "pool": own_threads(dataset, budget).options().threading.private_threadpool_size,
    "pipeline_calls_at_once": state["most"],
    "cores": cpu_cores(),
}))
"""


@pytest.mark.skipif(
    bool(tf.config.list_physical_devices("GPU")), reason="with a GPU there is no core budget"
)
def test_the_budget_limits_the_model_and_not_the_pipeline():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["budget"] == seen["intra"] == seen["inter"] == 1
    # One thread: at most one core's worth of CPU (a loaded machine gives less, never more).
    assert seen["model_cores"] < 1.4, seen
    assert seen["pool"] == seen["cores"]
    assert seen["pipeline_calls_at_once"] >= min(seen["cores"], 8), seen


def test_no_budget_with_shared_cores():
    script = "from benchmarks.measuring.cores import apply_core_budget; print(apply_core_budget(0))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip().splitlines()[-1] == "None", done.stderr[-2000:]
