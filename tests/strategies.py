"""Hypothesis strategies shared by the property tests."""

from __future__ import annotations

import math

from hypothesis import strategies as st

seeds = st.integers(0, 2**16)


@st.composite
def counts_and_batch_sizes(
    draw: st.DrawFn, min_n: int = 16, max_n: int = 60, min_b: int = 2, max_b: int = 9
) -> tuple[int, int]:
    """``(n, batch_size)``: batch sizes that do not divide n as often as sizes that do.

    Drawn independently, most pairs leave a remainder and few divide, so a
    bug that shows only on one side (a lost tail, a wrong count of full
    batches) is found by luck; here each side gets half of the examples.
    """
    b = draw(st.integers(min_b, max_b))
    remainder = draw(st.integers(1, b - 1)) if b > 1 and draw(st.booleans()) else 0
    lowest = max(0 if remainder else 1, math.ceil((min_n - remainder) / b))
    highest = max(lowest, (max_n - remainder) // b)
    return b * draw(st.integers(lowest, highest)) + remainder, b
