"""A weight-sharing supernet over a search space: one training, any candidate scored in seconds.

``weights`` holds the shared bank and runs a candidate on it; ``scoring`` extracts a candidate,
recalibrates its BatchNorm and validates it.
"""

from evaluator.supernet.scoring import ScoringData, SupernetScore, check_fits, score
from evaluator.supernet.weights import Supernet, SupernetError, SupernetSpec, extremes, slot
from evaluator.supernet.evaluator import SupernetEvaluator  # noqa: E402 - after the modules it builds on

__all__ = ["ScoringData", "Supernet", "SupernetError", "SupernetEvaluator", "SupernetScore", "SupernetSpec",
           "check_fits", "extremes", "score", "slot"]
