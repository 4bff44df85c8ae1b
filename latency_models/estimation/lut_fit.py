"""How a lookup table's block sums become network latencies: the fit of scale, weight term and offset.

Kept apart from the table itself (``lut``) because it is plain numerics on measured numbers,
shared by the table's calibration and by ``benchmarks/latency_accuracy.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MIN_NETWORKS_FOR_WEIGHTS = 10  # below this, a three-term fit overfits (see fit_terms)


def fit_terms(sums: np.ndarray, weights: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """``(scale, ms_per_mparam, offset)`` minimising the squared *relative* error.

    Accuracy is judged relative (within +-10%), and plain least squares lets the few 20 ms networks
    outvote the many 2 ms ones: on 200 held-out networks (seed 7) the relative fit put 96.5% within
    +-10% where plain least squares put 92.5%. The weight term needs ``MIN_NETWORKS_FOR_WEIGHTS``
    networks (a third term fitted on a handful of networks chases their noise) and a non-negative
    coefficient; otherwise it is left out (benchmarks/results/latency_accuracy.md).
    """
    one = np.ones_like(sums)
    designs = []
    if len(y) >= MIN_NETWORKS_FOR_WEIGHTS and np.ptp(weights) > 0:
        designs.append(np.c_[sums, weights, one])
    if len(y) >= 2 and np.ptp(sums) > 0:
        designs.append(np.c_[sums, 0 * one, one])
    weight = 1.0 / y
    for design in designs:
        coef, *_ = np.linalg.lstsq(design * weight[:, None], y * weight, rcond=None)
        scale, per_mparam, offset = (float(c) for c in coef)
        if scale > 0 and per_mparam >= 0:
            return scale, per_mparam, offset
    return float(y.sum() / sums.sum()), 0.0, 0.0


def leave_one_out(networks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Held-out quality of a calibrated table: each calibration network predicted by a scale and
    offset fitted on the others (its blocks are measured standalone, never as that network)."""
    if len(networks) < 4:
        return {}
    from latency_models.estimation.predictor import accuracy

    sums = np.array([n["block_sum_ms"] for n in networks], dtype=float)
    weights = np.array([n.get("weights_m", 0.0) for n in networks], dtype=float)
    y = np.array([n["measured_ms"] for n in networks], dtype=float)
    predicted = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        scale, per_mparam, offset = fit_terms(sums[keep], weights[keep], y[keep])
        predicted.append(scale * sums[i] + per_mparam * weights[i] + offset)
    quality = accuracy(y, predicted)
    quality["held_out"] = "leave-one-out over the calibration networks"
    return quality
