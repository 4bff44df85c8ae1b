"""Latency models: analytic costs, measured latency (targets, backends, cache) and estimators.

Importing the package loads nothing heavy: ``latency_for`` and friends are imported on first use
(PEP 562), so ``import latency_models.measurement.device_runtime`` on a board stays numpy + ONNX
Runtime only.
"""

from __future__ import annotations

from typing import Any

_LAZY = {"latency_for": "latency_models.latency", "plan_latency": "latency_models.latency",
         "LatencyPlan": "latency_models.latency"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
