"""`make_evaluator`: evaluators by name. A new evaluator is one module plus one ``EVALUATORS`` entry.

Modules are imported on first use, so choosing ``sequential`` never imports Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search_space.errors import ShufflenasError
from search_space.registry import Registry

if TYPE_CHECKING:
    from evaluator.base import Evaluator
    from evaluator.datasets import DataSplit

#: evaluator kind -> "module:class" (its names are the CLI's and the config's choices, with "auto")
EVALUATORS: Registry[type[Evaluator]] = Registry("evaluator", {
    "sequential": "evaluator.sequential:SequentialEvaluator",
    "ray": "evaluator.ray_evaluator:RayEvaluator",
    "supernet": "evaluator.supernet.evaluator:SupernetEvaluator",   # scores with a trained supernet
})


def make_evaluator(kind: str, data: DataSplit, **options: Any) -> Evaluator:
    """Build the evaluator ``kind`` for ``data``; unknown kinds and options are one-line errors."""
    cls = EVALUATORS.get(kind)
    try:
        return cls(data, **options)
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc):
            raise ShufflenasError(f"evaluator {kind!r}: {exc}".replace("__init__() ", "")) from None
        raise
