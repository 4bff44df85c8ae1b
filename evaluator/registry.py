"""`make_evaluator`: evaluators by name. A new evaluator is one module plus one line in EVALUATORS.

Modules are imported on first use, so choosing ``sequential`` never imports Ray.
"""

from __future__ import annotations

import importlib
from typing import Any

from evaluator.base import Evaluator
from evaluator.datasets import DataSplit
from search_space.errors import ShufflenasError

#: evaluator kind -> "module:class"
EVALUATORS: dict[str, str] = {
    "sequential": "evaluator.sequential:SequentialEvaluator",
    "ray": "evaluator.ray_evaluator:RayEvaluator",
}


def make_evaluator(kind: str, data: DataSplit, **options: Any) -> Evaluator:
    """Build the evaluator ``kind`` for ``data``; unknown kinds and options are one-line errors."""
    if kind not in EVALUATORS:
        raise ShufflenasError(f"unknown evaluator {kind!r} (known: {', '.join(EVALUATORS)})")
    module_name, attr = EVALUATORS[kind].split(":")
    cls = getattr(importlib.import_module(module_name), attr)
    try:
        return cls(data, **options)
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc):
            raise ShufflenasError(f"evaluator {kind!r}: {exc}".replace("__init__() ", "")) from None
        raise
