"""Candidate evaluation: data sets, proxy training, zero-cost proxies, sequential and Ray evaluators.

Importing this package never imports Ray; ``evaluator.ray_evaluator`` does, when it is used.
"""

from evaluator.base import EvalOutcome, EvalTask, Evaluator
from evaluator.datasets import DATASETS, DataSplit, DatasetError, load_dataset
from evaluator.proxy import ProxyConfig, ProxyConfigError, ProxyResult, train_proxy
from evaluator.registry import EVALUATORS, make_evaluator
from evaluator.sequential import SequentialEvaluator

__all__ = [
    "DATASETS", "DataSplit", "DatasetError", "EVALUATORS", "EvalOutcome", "EvalTask", "Evaluator", "ProxyConfig",
    "ProxyConfigError", "ProxyResult", "SequentialEvaluator", "load_dataset", "make_evaluator", "train_proxy",
]
