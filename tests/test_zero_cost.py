"""Zero-cost proxies on real (untrained) networks and a slice of digits."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from evaluator.datasets import load_dataset
from evaluator.zero_cost import ZERO_COST, naswot, synflow
from search_space import Architecture, get_preset

TINY = Architecture(widths=(24, 48, 96), depths=(1, 1, 1), stem=16, conv5=128)
WIDE = Architecture(widths=(96, 192, 384), depths=(2, 4, 2), stem=24, conv5=512)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", input_size=16, limit=200)


def test_naswot_is_finite_and_deterministic(data):
    a = naswot(TINY, data, batch_size=16, seed=0)
    assert math.isfinite(a)
    assert naswot(TINY, data, batch_size=16, seed=0) == a
    assert naswot(TINY, data, batch_size=16, seed=1) != a
    # the kernel counts agreements over every ReLU, so a bigger network has a larger log-determinant
    assert naswot(WIDE, data, batch_size=16, seed=0) > a


def test_naswot_singular_kernel_is_minus_inf(data):
    same = data.train_x[:1].expand(8, -1, -1, -1).contiguous()
    dup = dataclasses.replace(data, train_x=same, train_y=data.train_y[:8])
    assert naswot(TINY, dup, batch_size=8) == float("-inf")


def test_synflow_grows_with_the_network_and_keeps_threads():
    scores = [synflow(get_preset(name), 16, 10) for name in ("0.5x", "1.0x", "2.0x")]
    assert all(math.isfinite(s) for s in scores)
    assert scores[0] < scores[1] < scores[2]
    assert synflow(TINY, 16, 10, seed=0) == synflow(TINY, 16, 10, seed=0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the suite runs with 1 thread: a caller's other setting must come back
    try:
        synflow(TINY, 16, 10, seed=0)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_registry(data):
    assert set(ZERO_COST) == {"naswot", "synflow"}
    assert all(math.isfinite(fn(TINY, data)) for fn in ZERO_COST.values())
