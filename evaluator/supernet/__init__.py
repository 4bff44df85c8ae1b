"""A weight-sharing supernet over a search space: one training, any candidate scored in seconds.

``weights`` holds the shared bank and runs a candidate on it; ``scoring`` extracts a candidate,
recalibrates its BatchNorm and validates it.
"""

from evaluator.supernet.scoring import ScoringData, SupernetScore, check_fits, score
from evaluator.supernet.weights import Supernet, SupernetError, SupernetSpec, extremes, slot
from evaluator.supernet.evaluator import SupernetEvaluator  # noqa: E402 - after the modules it builds on

#: Training names, imported on first use (the training loop pulls in evaluator.training).
_LAZY = {"SupernetRecipe": "training", "SupernetTrainResult": "training", "train_supernet": "training",
         "train_supernet_ddp": "distributed"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"evaluator.supernet.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'evaluator.supernet' has no attribute {name!r}")


__all__ = ["ScoringData", "Supernet", "SupernetError", "SupernetEvaluator", "SupernetRecipe", "SupernetScore",
           "SupernetSpec", "SupernetTrainResult", "check_fits", "extremes", "score", "slot", "train_supernet",
           "train_supernet_ddp"]
