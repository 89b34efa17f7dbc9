"""--perf-against's base versions: loaded (`pipelines.versions`), checked, paired with heads.

A base that is not there (a ref, a file), fails to import or does not build is
one line, and its head is measured all the same, not compared; a base that
breaks its contract is one line and compared anyway. The plugin prints the
lines with the comparisons, and a base that could not be compared fails the run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import tensorflow as tf

import pipelines
from pipelines.checks.contract import ContractViolation, check_variant
from pipelines.errors import InputError, UsageError
from pipelines.versions import load_base

# A base version is checked on a small tagged source before it is timed.
BASE_CHECK = {"n": 40, "num_shards": 2, "batch_size": 6, "seed": 1}


class BaseProblem(NamedTuple):
    """What went wrong with a base version, in one line, and whether it was compared."""

    line: str
    compared: bool


def base_versions(
    plugins: list[str], against: str | None
) -> tuple[dict[str, str], list[BaseProblem]]:
    """--perf-against: load the plugin files' base versions.

    Returns current name -> base name for each variant both versions register, and
    one line per problem: a ref or file that is not there, a base that fails to
    import (not compared). The current versions are measured whatever the base did;
    a base that could not be compared fails the run at its end (`check_bases` then
    checks that each base builds and keeps its contract).
    """
    if not against:
        return {}, []
    if not any(spec.endswith(".py") for spec in plugins):
        raise UsageError("--perf-against", "needs --perf-plugin FILE.py: the files to take at it")
    unmeasured = "; the current versions are measured, not compared"
    try:
        pairs = load_base(plugins, against)
    except InputError as error:
        return {}, [BaseProblem(f"{error}{unmeasured}", compared=False)]
    pairs = {head: base for head, base in pairs.items() if head in pipelines.VARIANTS}
    if not pairs:
        said = "the plugin files there register no current variant"
        return {}, [BaseProblem(f"--perf-against {against}: {said}{unmeasured}", compared=False)]
    return pairs, []


def check_bases(
    pairs: dict[str, str], check: Callable[..., Any] = check_variant
) -> tuple[dict[str, str], list[BaseProblem]]:
    """Each base on a small tagged source: the pairs whose base builds, and a line for a
    base that does not (not compared) or breaks its contract (compared anyway). Starts
    TensorFlow's runtime: call it once the core budget is set."""
    pairs = dict(pairs)
    problems = []
    for head, base in list(pairs.items()):
        try:
            check(pipelines.get(base), **BASE_CHECK)
        except ContractViolation as violation:
            said = f"{base} breaks its contract ({violation}); compared anyway"
            problems.append(BaseProblem(said, compared=True))
        except (InputError, ValueError, TypeError, tf.errors.OpError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            said = f"{base} does not build ({first}); {head} is measured, not compared"
            problems.append(BaseProblem(said, compared=False))
            del pairs[head]
    return pairs, problems
