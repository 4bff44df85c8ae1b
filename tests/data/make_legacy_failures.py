"""A third study with failures, written by the committed driver: a candidate failure and an
environment failure (re-queued)."""
import sys
from pathlib import Path

from evaluator.datasets import load_dataset
from evaluator.proxy import train_proxy
from evaluator.sequential import SequentialEvaluator
from experiments.config import load_config
from experiments.search import SearchDriver

out = Path(sys.argv[1]).absolute()
calls = {"n": 0}


def flaky(arch, data, config):
    calls["n"] += 1
    if calls["n"] == 1:
        raise FloatingPointError("loss is nan at step 2")
    if calls["n"] == 2:
        raise ModuleNotFoundError("No module named 'missing_package'")
    return train_proxy(arch, data, config)


config = load_config(None, {
    "study": "legacy-fail", "storage": f"sqlite:///{out / 'study.db'}", "out": str(out), "trials": 3, "workers": 1,
    "sampler": "random", "seed": 5, "targets": ["local-cpu", "paper-arm-sd810"], "deploy_input": 32,
    "deploy_classes": 10, "presets": [], "progress": False,
    "space": {"width_ranges": [[40, 48], [88, 96], [184, 192]], "depth_ranges": [[1, 4], [1, 8], [1, 4]],
              "stem_choices": [24], "conv5_choices": [1024]},
    "proxy": {"epochs": 1, "max_train_batches": 2, "batch_size": 32}, "latency": {"measure_budget_s": 0.05}})
data = load_dataset("digits", None, 16, 0)
result = SearchDriver(config, evaluator=SequentialEvaluator(data, train_fn=flaky), echo=print).run()
print(result.headline(), result.failed)
