"""What every pytest run here loads, `pytest benchmarks` included: the suite's plugin, the
GPU skip and the order the test job starts files in. What only the tests need (hypothesis
profiles, fixtures) is in tests/conftest.py."""

from __future__ import annotations

import pytest

import pipelines  # noqa: F401  (quiets TensorFlow's C++ logging before anything imports it)
from models.devices import configure_gpus

# The suite's own options (--perf-*), hooks and gates.
pytest_plugins = ["benchmarks.plugin"]


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a GPU-marked test, saying why, where TensorFlow sees no GPU."""
    if item.get_closest_marker("gpu") and not configure_gpus():
        pytest.skip("needs a GPU: TensorFlow sees none on this machine")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules marked ``slow`` first, each kept whole (its module fixtures set up once).

    The test job's two workers take whole files in this order (`tasks.py`: loadfile,
    ``--no-loadscope-reorder``), so the files of a minute or more start first and the
    short ones fill in at the end, rather than one long file running alone last.
    """
    # getattr: an item that is no Python test (a doctest, another plugin's) has no module.
    slow = {getattr(item, "module", None) for item in items if item.get_closest_marker("slow")}
    slow.discard(None)
    items.sort(key=lambda item: getattr(item, "module", None) not in slow)
