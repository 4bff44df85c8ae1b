"""How well latency predictions match measurements: the one quality function every model reports.

One argument order (``measured`` first, as ``y_true, y_pred`` in scipy and scikit-learn) and one
rule for what cannot be computed: a rank correlation of fewer than three points, or of a side that
is constant, is ``None`` (it also stays valid JSON in calibration files).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def prediction_quality(measured: Sequence[float], predicted: Sequence[float]) -> dict[str, Any]:
    """``n``, ``mape`` and ``max_error`` (% of the measurement), ``within_10`` / ``within_5``
    (fractions), ``spearman`` and ``kendall`` (None when undefined)."""
    from scipy.stats import kendalltau, spearmanr

    y = np.asarray(measured, dtype=float)
    p = np.asarray(predicted, dtype=float)
    if len(y) == 0:
        return {"n": 0, "mape": None, "max_error": None, "within_10": None, "within_5": None,
                "spearman": None, "kendall": None}
    err = np.abs(p - y) / y
    out: dict[str, Any] = {"n": int(len(y)), "mape": float(100 * err.mean()), "max_error": float(100 * err.max()),
                           "within_10": float((err <= 0.10).mean()), "within_5": float((err <= 0.05).mean()),
                           "spearman": None, "kendall": None}
    if len(y) >= 3 and np.ptp(p) > 0 and np.ptp(y) > 0:
        out["spearman"] = float(spearmanr(y, p).statistic)
        out["kendall"] = float(kendalltau(y, p).statistic)
    return out


def fmt(value: float | None, spec: str = ".3f") -> str:
    """A quality figure for a table or a line of text (``-`` when undefined)."""
    return "-" if value is None or value != value else format(value, spec)
