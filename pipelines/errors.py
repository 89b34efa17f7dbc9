"""The one error type for bad input: it names the file (or option) and what is wrong."""

from __future__ import annotations

import os


class DataError(Exception):
    """Bad input data or configuration, reported as one line: ``WHERE: PROBLEM``.

    Args:
        where: the file, folder or command-line option at fault.
        problem: what is wrong with it, in words a user can act on.
    """

    def __init__(self, where: str | os.PathLike[str], problem: str) -> None:
        self.where = os.fspath(where)
        self.problem = problem
        super().__init__(f"{self.where}: {problem}")
