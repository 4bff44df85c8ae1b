"""Training a found architecture to a deployable model, and its weights in and out (`weights`).

``train_architecture(arch, data_spec, recipe, out_dir)`` (in ``loop``) is the one entry point of
training: a plain, picklable function, so parallel workers can run it as it is. Names are
imported on first use, so ``evaluator.training.weights`` alone stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CHECKPOINT_NAME": "checkpoint", "CheckpointError": "checkpoint", "load_checkpoint": "checkpoint",
    "MODEL_NAME": "loop", "ONNX_NAME": "loop", "TrainError": "loop", "TrainResult": "loop",
    "train_architecture": "loop",
    "CURVES_NAME": "outputs", "METRICS_NAME": "outputs", "EpochMetrics": "outputs",
    "DataSpec": "recipe", "RecipeError": "recipe", "TrainRecipe": "recipe",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"evaluator.training.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'evaluator.training' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
