"""Every registered variant keeps its own contract (hypothesis generates the sizes).

The variants are read from `pipelines.VARIANTS` when the tests are
collected, after every ``conftest.py`` has run, so a variant a user
registers there is checked here with no new test code.
"""

from __future__ import annotations

import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

import pipelines
from pipelines.checks.contract import check_variant
from strategies import counts_and_batch_sizes, seeds

# A minute or more in all: the test job starts this module first (conftest.py).
pytestmark = pytest.mark.slow

# Each example builds a pipeline and runs it four to seven times: fewer examples
# than the cheap properties get, still a fresh set of sizes per variant.
EXAMPLES = max(4, settings.default.max_examples // 3)


LOCAL = [name for name, v in pipelines.VARIANTS.items() if not v.served]
SERVED = [name for name, v in pipelines.VARIANTS.items() if v.served]
# Each example of a served variant runs three epochs through real workers.
SERVED_EXAMPLES = 3


@pytest.mark.parametrize("name", LOCAL)
@settings(max_examples=EXAMPLES)
@given(sizes=counts_and_batch_sizes(), num_shards=st.integers(1, 4), seed=seeds)
# Always one size where a repeated order, a repeated remainder (4 of 60) or a
# missing augmentation is far beyond chance, whatever else is drawn.
@example(sizes=(60, 7), num_shards=2, seed=1)
def test_variant_keeps_its_contract(name, sizes, num_shards, seed):
    n, batch_size = sizes
    check_variant(pipelines.VARIANTS[name], n, num_shards, batch_size, seed)


@pytest.mark.parametrize("name", SERVED)
# No shrinking: each step of it is a round trip through the service (minutes).
@settings(max_examples=SERVED_EXAMPLES, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(sizes=counts_and_batch_sizes(), num_shards=st.integers(1, 4), seed=seeds)
def test_a_variant_through_the_data_service_keeps_its_contract(
    local_data_service, name, sizes, num_shards, seed
):
    n, batch_size = sizes
    service = local_data_service
    check_variant(
        pipelines.VARIANTS[name], n, num_shards, batch_size, seed, service.address, service.alive()
    )
