"""Every registered variant keeps its own contract (hypothesis generates the sizes).

The variants are read from `pipelines.VARIANTS` when the tests are
collected, after every ``conftest.py`` has run, so a variant a user
registers there is checked here with no new test code.
"""

from __future__ import annotations

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import pipelines
from contract_checks import check_variant

# Each example builds a pipeline and runs it three times: fewer examples
# than the cheap properties get, still a fresh set of sizes per variant.
EXAMPLES = max(4, settings.default.max_examples // 3)


LOCAL = [name for name, v in pipelines.VARIANTS.items() if not v.served]
SERVED = [name for name, v in pipelines.VARIANTS.items() if v.served]
# Each example of a served variant runs three epochs through real workers.
SERVED_EXAMPLES = 3


@pytest.mark.parametrize("name", LOCAL)
@settings(max_examples=EXAMPLES)
@given(
    n=st.integers(16, 60),
    num_shards=st.integers(1, 4),
    batch_size=st.integers(2, 9),
    seed=st.integers(0, 2**16),
)
def test_variant_keeps_its_contract(name, n, num_shards, batch_size, seed):
    check_variant(pipelines.VARIANTS[name], n, num_shards, batch_size, seed)


@pytest.mark.parametrize("name", SERVED)
# No shrinking: each step of it is a round trip through the service (minutes).
@settings(max_examples=SERVED_EXAMPLES, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(
    n=st.integers(16, 60),
    num_shards=st.integers(1, 4),
    batch_size=st.integers(2, 9),
    seed=st.integers(0, 2**16),
)
def test_a_variant_through_the_data_service_keeps_its_contract(
    local_data_service, name, n, num_shards, batch_size, seed
):
    service = local_data_service
    check_variant(
        pipelines.VARIANTS[name], n, num_shards, batch_size, seed, service.address, service.alive()
    )
