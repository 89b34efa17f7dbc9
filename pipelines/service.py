"""The tf.data service on localhost: a dispatcher and worker processes, started and stopped.

A `LocalService` runs the dispatcher in this process and each worker as a
subprocess (``python -m pipelines.service worker ...``), so a worker can be
killed like a lost machine and its port is freed by the operating system. The
`Distribute` step (`pipelines.steps`) sends a pipeline through whichever
service the build is given: a `LocalService`'s address or an external
dispatcher's (``--perf-data-service grpc://HOST:PORT``).

Workers run the dataset's graph, not Python: a pipeline sent through the
service must not hold Python functions (``from_generator``, ``numpy_function``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import tensorflow as tf

from pipelines.errors import DataError

ROOT = Path(__file__).resolve().parent.parent
# Lost workers are noticed after this long without a heartbeat (the default is minutes).
WORKER_TIMEOUT_MS = 2000
HEARTBEAT_MS = 200
START_TIMEOUT_S = 60.0


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Whether a new server could listen on ``port`` (bind as servers do, SO_REUSEADDR).

    Connections the killed server had leave TIME_WAIT entries on the port for
    a minute; they block a plain bind but not a server's.
    """
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("localhost", port))
        except OSError:
            return False
    return True


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("localhost", port), 0.2):
        return True
    return False


class LocalService:
    """A dispatcher and ``workers`` worker processes on localhost.

    Use as a context manager (or `start` and `stop`); `address` is what
    `Distribute` needs. Ports are chosen free; `start` waits until every
    worker serves a dataset, `stop` kills the workers and stops the
    dispatcher, releasing every port.
    """

    def __init__(self, workers: int = 2) -> None:
        self.num_workers = workers
        self.dispatcher: tf.data.experimental.service.DispatchServer | None = None
        self.dispatcher_port = 0
        self.workers: list[subprocess.Popen[bytes]] = []
        self.worker_ports: list[int] = []
        # Each worker's stderr, in a file: a pipe nobody reads would fill and block it.
        self._logs: list[IO[bytes]] = []

    @property
    def address(self) -> str:
        """The dispatcher's ``grpc://localhost:PORT``."""
        return f"grpc://localhost:{self.dispatcher_port}"

    def ports(self) -> list[int]:
        """Every port this service binds (dispatcher first)."""
        return [self.dispatcher_port, *self.worker_ports]

    def start(self) -> LocalService:
        """Start the dispatcher and the workers; return once each worker serves."""
        self.dispatcher_port = free_port()
        self.dispatcher = tf.data.experimental.service.DispatchServer(
            tf.data.experimental.service.DispatcherConfig(
                port=self.dispatcher_port, worker_timeout_ms=WORKER_TIMEOUT_MS
            )
        )
        for _ in range(self.num_workers):
            self.add_worker()
        self.wait_until_serving()
        return self

    def add_worker(self) -> None:
        """Start one more worker process (call `wait_until_serving` after)."""
        port = free_port()
        command = [sys.executable, "-m", "pipelines.service", "worker"]
        command += ["--dispatcher", f"localhost:{self.dispatcher_port}", "--port", str(port)]
        env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
        log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop)
        self.workers.append(
            subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
        )
        self.worker_ports.append(port)
        self._logs.append(log)

    def wait_until_serving(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Block until every worker listens and a dataset round trip gets one element per worker."""
        deadline = time.monotonic() + timeout_s
        for process, port, log in zip(self.workers, self.worker_ports, self._logs, strict=True):
            while not _listening(port):
                if process.poll() is not None:
                    log.seek(0)
                    lines = log.read().decode(errors="replace").strip().splitlines() or ["?"]
                    raise DataError(f"worker localhost:{port}", f"exited: {lines[-1]}")
                if time.monotonic() > deadline:
                    raise DataError(f"worker localhost:{port}", f"not serving after {timeout_s}s")
                time.sleep(0.1)
        # Every worker runs a copy of a parallel-epochs job: one element each once all serve.
        while True:
            probe = tf.data.Dataset.from_tensors(0).apply(
                tf.data.experimental.service.distribute("parallel_epochs", self.address)
            )
            if len(list(probe)) >= self.alive():
                return
            if time.monotonic() > deadline:
                raise DataError(self.address, f"workers not registered after {timeout_s}s")
            time.sleep(0.2)

    def alive(self) -> int:
        """How many worker processes are running."""
        return sum(process.poll() is None for process in self.workers)

    def kill_worker(self, index: int = -1) -> None:
        """Kill one worker as a lost machine would go: no goodbye, no flush."""
        process = self.workers[index]
        process.kill()
        process.wait()

    @contextlib.contextmanager
    def guard(self, on_death: Callable[[int, int], None]) -> Iterator[None]:
        """Call ``on_death(port, exit code)`` (from a watcher thread) if a worker dies inside.

        A job whose worker died never ends: TensorFlow waits for the lost
        worker's share (dynamic sharding) or copy (parallel epochs) and the
        reading thread blocks in C++, where no Python exception reaches it.
        Only a watcher can notice; what to do then is the caller's choice.
        """
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.2):
                for process, port in zip(self.workers, self.worker_ports, strict=True):
                    if process.poll() is not None:
                        on_death(port, process.returncode)
                        return

        watcher = threading.Thread(target=watch, name="tf.data service watcher", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join()

    def kill_workers(self) -> None:
        """Kill every worker process and reap it (the dispatcher stays up)."""
        for process in self.workers:
            if process.poll() is None:
                process.kill()
            process.wait()

    def stop(self) -> None:
        """Kill every worker and stop the dispatcher; their ports are free afterwards."""
        self.kill_workers()
        for log in self._logs:
            log.close()
        if self.dispatcher is not None:
            self.dispatcher._stop()  # the public API has no stop; tests need the port back
            self.dispatcher = None

    def __enter__(self) -> LocalService:
        try:
            return self.start()
        except BaseException:
            self.stop()  # a worker that did start must not outlive a failed start
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _exit_with_parent() -> None:
    """End this worker when the process that started it is gone (killed, even with -9)."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _serve_worker(dispatcher: str, port: int) -> None:
    threading.Thread(target=_exit_with_parent, name="parent watch", daemon=True).start()
    worker = tf.data.experimental.service.WorkerServer(
        tf.data.experimental.service.WorkerConfig(
            dispatcher_address=dispatcher,
            worker_address=f"localhost:{port}",
            port=port,
            heartbeat_interval_ms=HEARTBEAT_MS,
        )
    )
    worker.join()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a tf.data service worker process")
    sub = parser.add_subparsers(dest="role", required=True)
    worker = sub.add_parser("worker")
    worker.add_argument("--dispatcher", required=True, help="HOST:PORT of the dispatcher")
    worker.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    _serve_worker(args.dispatcher, args.port)


if __name__ == "__main__":
    main()
