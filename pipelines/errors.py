"""The suite's one-line errors: each names the file (or option, or name) and what is wrong.

- `DataError`: bad input data or configuration files (a corrupt image, a
  broken saved run, a thresholds file with a typo);
- `UsageError`: a name the suite does not know (a model, a variant, a
  profile), asked for by the user.

Both are an `InputError`, which a command-line entry point catches to print
``error: WHERE: PROBLEM`` instead of a traceback.
"""

from __future__ import annotations

import os


class InputError(Exception):
    """Something the user gave is wrong, reported as one line: ``WHERE: PROBLEM``.

    Args:
        where: the file, folder, option or name at fault.
        problem: what is wrong with it, in words a user can act on.
    """

    def __init__(self, where: str | os.PathLike[str], problem: str) -> None:
        self.where = os.fspath(where)
        self.problem = problem
        super().__init__(f"{self.where}: {problem}")


class DataError(InputError):
    """Bad input data or configuration: a file, folder or option's value."""


class UsageError(InputError):
    """A name the suite does not know: a model, a variant, a profile."""


def one_line(error: BaseException) -> str:
    """An exception in one line: its first, or, where TensorFlow traced a user's function
    ("in user code:", then the trace), the last, which says what went wrong; its type's
    name where it says nothing."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return lines[-1] if lines[0] == "in user code:" else lines[0]
