"""Candidate evaluation: data sets, proxy training, zero-cost proxies, sequential and Ray evaluators.

Importing this package never imports Ray (``evaluator.ray_evaluator`` does, when it is used), and
the names below load on first use (PEP 562), so a command that only needs the evaluator registry's
names (config validation, ``--help``) does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EvalOutcome": "evaluator.base", "EvalTask": "evaluator.base", "Evaluator": "evaluator.base",
    "DATASETS": "evaluator.datasets", "DataSplit": "evaluator.datasets", "DatasetError": "evaluator.datasets",
    "load_dataset": "evaluator.datasets",
    "ProxyConfig": "evaluator.proxy", "ProxyConfigError": "evaluator.proxy", "ProxyResult": "evaluator.proxy",
    "train_proxy": "evaluator.proxy",
    "EVALUATORS": "evaluator.registry", "make_evaluator": "evaluator.registry",
    "SequentialEvaluator": "evaluator.sequential",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'evaluator' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
