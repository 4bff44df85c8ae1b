"""Resolution-dependent layout shared by the torch model and the analytic cost model.

Kept free of torch so that cost estimates and the cheap CLI commands start without importing it.
"""

from __future__ import annotations

SMALL_INPUT_LIMIT = 64


def stem_layout(input_size: int) -> tuple[int, bool]:
    """(conv1 stride, use max-pool) for an input resolution; shared with the analytic cost model.

    Inputs below ``SMALL_INPUT_LIMIT`` px use the small stem (stride 1, no max-pool), so a 16x16
    proxy image still reaches stage 4 as a 2x2 map.
    """
    if input_size < SMALL_INPUT_LIMIT:
        return 1, False
    return 2, True
