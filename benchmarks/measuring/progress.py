"""A live progress line while the passes run: which pass, which trial, how long.

On a terminal one line is rewritten in place (as tqdm and rich do); in a log
(CI, a pipe) a plain line is printed as each pass starts, so that a log shows
progress without a line per trial.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.measuring.passes import Progress


def duration(seconds: float) -> str:
    """``1m05s`` or ``42s``."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


def progress_text(progress: Progress) -> str:
    """One line: pass k of at most N, the trial running, elapsed and at most how long left."""
    left = (
        "estimating time left"
        if progress.remaining_s is None
        else f"at most {duration(progress.remaining_s)} left"
    )
    return (
        f"pass {progress.pass_number} of at most {progress.max_passes}:"
        f" {progress.trial} ({progress.position}/{progress.trials}),"
        f" {duration(progress.elapsed_s)} elapsed, {left}"
    )


class ProgressLine:
    """Writes `Progress` updates through ``write(text)``: in place on a terminal
    (``terminal``), a plain line per pass otherwise. Call `done` when the passes end."""

    def __init__(self, write: Callable[[str], None], terminal: bool) -> None:
        self.write = write
        self.terminal = terminal
        self._width = 0
        # The first line starts on a line of its own (pytest's is part written).
        self._lead = "\n"

    def __call__(self, progress: Progress) -> None:
        text = progress_text(progress)
        if self.terminal:
            self.note(text)
        elif progress.position == 1:
            self.write(self._lead + text + "\n")
            self._lead = ""

    def note(self, text: str) -> None:
        """Any other progress (``text``, one line): in place on a terminal, else not shown
        (a log hears only of passes)."""
        if self.terminal:
            self.write(self._lead + "\r" + text.ljust(self._width))
            self._width = len(text)
            self._lead = ""

    def done(self) -> None:
        """End the line in place (a terminal), so that what follows starts on its own."""
        if self.terminal and self._width:
            self.write("\r" + " " * self._width + "\r")
            self._width = 0
