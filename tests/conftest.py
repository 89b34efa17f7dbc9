"""The tests' configuration: hypothesis profiles and shared fixtures.

Here rather than in the root conftest.py: every ``pytest benchmarks`` run loads
that one, and most of the test job's subprocesses are such runs, which would each
import hypothesis (about a second) for nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from pipelines.data.embedded import EmbeddedConfig, EmbeddedDataset, ensure_embedded
from pipelines.service import LocalService

# The same bounded number of examples everywhere, so that `python3 tasks.py test`
# takes the time it takes in CI (60 examples a test took 3.4 times as long:
# docs/measurements.md, 2026-12-03 night). "ci", chosen when $CI is set: also
# derandomized, so a red CI run can be reproduced. "local": random seeds, new
# examples each run. "dev" (HYPOTHESIS_PROFILE=dev): three times the examples, to
# hunt for new bugs.
BOUNDED = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("ci", derandomize=True, max_examples=20, print_blob=True, **BOUNDED)
settings.register_profile("local", max_examples=20, **BOUNDED)
settings.register_profile("dev", max_examples=60, **BOUNDED)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "local")
)

# Small enough to generate in about a second, with every format and more than
# one shard per split, and an image folder of mixed sizes.
TINY = EmbeddedConfig(
    profile="tiny",
    train=60,
    test=20,
    folder_train=30,
    folder_test=10,
    folder_sizes=(24, 40),
    train_shards=3,
    test_shards=1,
)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedDataset:
    """The embedded dataset generated with the `TINY` configuration (read-only for tests)."""
    return ensure_embedded(TINY, root=tmp_path_factory.mktemp("embedded"))


@pytest.fixture(scope="session", autouse=True)
def subprocesses_are_not_xdist_workers() -> None:
    """End-to-end tests run the suite in a subprocess as a user would: it must not inherit
    pytest-xdist's worker variables, or pytest-benchmark there turns itself off and saves
    nothing (it reads ``PYTEST_XDIST_WORKER`` from the environment)."""
    for key in [key for key in os.environ if key.startswith("PYTEST_XDIST_")]:
        del os.environ[key]


@pytest.fixture(scope="session")
def local_data_service() -> Iterator[LocalService]:
    """A tf.data service on localhost (dispatcher and 2 worker processes), for the session."""
    with LocalService(workers=2) as service:
        yield service
