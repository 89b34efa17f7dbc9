"""Stopping a run: bad data met mid-run (`stop_run`), Ctrl-C (`Interruption`); neither
saves, gates nor reports anything of it."""

from __future__ import annotations

import signal
import threading
from typing import Any, NoReturn

import pytest

from benchmarks.run.state import STATE_KEY
from benchmarks.saving import bench_adapter
from pipelines.errors import DataError


def stop_run(config: pytest.Config, error: DataError) -> NoReturn:
    """End the session with one line; this run is not saved or reported as if nothing happened."""
    abandon(config)
    pytest.exit(f"error: {error}", returncode=2)


def abandon(config: pytest.Config, interrupted: bool = False) -> None:
    """Nothing of this run is saved, gated or reported (bad data, or Ctrl-C)."""
    bench_adapter.abandon(config)
    if STATE_KEY in config.stash:
        config.stash[STATE_KEY].abandoned = True
        config.stash[STATE_KEY].interrupted = interrupted


SWALLOWED_INTERRUPT_WARNING = (
    "ignore:(?s)Exception ignored in.*KeyboardInterrupt:pytest.PytestUnraisableExceptionWarning"
)


class Interruption:
    """Ctrl-C: nothing of the run is saved, gated or reported, in a few lines.

    A plugin object of its own, since pytest hands these hooks no config. It
    must act before pytest-benchmark saves the run, at the start of
    ``pytest_sessionfinish``.

    Python turns Ctrl-C into a KeyboardInterrupt at whatever line runs then;
    one that lands in a finalizer (``__del__``, run by the garbage collector)
    is printed as a warning and dropped, and the run went on to save. So the
    signal is also recorded here, and a recorded one stops the run at the
    next test's end, whatever became of its exception.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.pressed = False
        self.handled = False
        # Only where Python's own handler is in place: an xdist worker ignores
        # SIGINT on purpose, and its controller handles Ctrl-C.
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            signal.signal(signal.SIGINT, self._on_sigint)
        # The dropped interrupt's traceback would otherwise be a warning in the summary.
        config.addinivalue_line("filterwarnings", SWALLOWED_INTERRUPT_WARNING)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.pressed = True
        signal.default_int_handler(signum, frame)

    def pytest_unconfigure(self) -> None:
        # Give SIGINT back to Python's own handler (pytest run in-process).
        if signal.getsignal(signal.SIGINT) == self._on_sigint:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logfinish(self) -> None:
        if self.pressed and not self.handled:
            raise KeyboardInterrupt

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Any:
        if self.pressed and not self.handled:
            # Pressed as the last test ended: nothing is left to stop, nothing is saved.
            self._abandon()
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        yield

    @pytest.hookimpl(tryfirst=True)
    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        # Interrupted inside TensorFlow's C++ calls, a frame can have no line
        # number (Python 3.11), and pytest's report of the interrupt then fails
        # with a traceback of its own; such frames say nothing a user could act on.
        excinfo.traceback = excinfo.traceback.filter(_has_line_number)
        self._abandon()

    def _abandon(self) -> None:
        self.handled = True
        abandon(self.config, interrupted=True)


def _has_line_number(entry: Any) -> bool:
    try:
        entry.lineno  # noqa: B018 (the property raises TypeError without one)
    except TypeError:
        return False
    return True
