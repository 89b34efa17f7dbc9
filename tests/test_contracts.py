"""Every registered variant keeps its own contract (hypothesis generates the sizes).

The variants are read from `pipelines.VARIANTS` when the tests are
collected, after every ``conftest.py`` has run, so a variant a user
registers there is checked here with no new test code.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pipelines
from contract_checks import check_variant

# Each example builds a pipeline and runs it three times: fewer examples
# than the cheap properties get, still a fresh set of sizes per variant.
EXAMPLES = max(4, settings.default.max_examples // 3)


@pytest.mark.parametrize("name", list(pipelines.VARIANTS))
@settings(max_examples=EXAMPLES)
@given(
    n=st.integers(16, 60),
    num_shards=st.integers(1, 4),
    batch_size=st.integers(2, 9),
    seed=st.integers(0, 2**16),
)
def test_variant_keeps_its_contract(name, n, num_shards, batch_size, seed):
    check_variant(pipelines.VARIANTS[name], n, num_shards, batch_size, seed)
