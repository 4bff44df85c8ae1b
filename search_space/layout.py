"""Resolution-dependent layout shared by the torch model and the analytic cost model.

Kept free of torch so that cost estimates and the cheap CLI commands start without importing it.
"""

from __future__ import annotations

SMALL_INPUT_LIMIT = 64


def stem_layout(input_size: int, pool: bool = True) -> tuple[int, bool]:
    """(conv1 stride, use max-pool) for an input resolution; shared with the analytic cost model.

    Inputs below ``SMALL_INPUT_LIMIT`` px use the small stem (stride 1, no max-pool), so a 16x16
    proxy image still reaches stage 4 as a 2x2 map. ``pool=False`` (an architecture's
    ``stem_pool``, e.g. MobileNetV2) leaves the max-pool out at every size.
    """
    if input_size < SMALL_INPUT_LIMIT:
        return 1, False
    return 2, bool(pool)


#: Upper bounds of the cost commands' options: far beyond any real network (a 65536-px input, four
#: billion classes), and small enough that every total stays a short, exact integer.
MAX_INPUT_SIZE = 65536
MAX_NUM_CLASSES = 2**32
MAX_BATCH = 2**20
