"""Search quality: hypervolume reached by TPE / NSGA-II / GP vs random search, same budget and seeds.

Proxy training is far too slow to repeat over samplers x seeds, so this benchmark uses a cheap,
deterministic objective pair computed for real from each architecture (and says so):

* maximise the NASWOT score (evaluator.zero_cost.naswot: a real forward pass on a batch of 16x16
  digits; a training-free accuracy proxy),
* minimise the guideline-estimated latency on the paper's Snapdragon 810 (224x224, batch 1).

Each sampler is made exactly as the driver makes it (experiments.search.make_sampler) and run
with ask/tell over search_space.DEFAULT_SPACE. Scores are cached per architecture, so repeats
across samplers cost nothing. Hypervolume is computed on objectives normalised over every point
seen in the benchmark, with the reference point at the worst corner plus 10%.

    .venv/bin/python benchmarks/search_quality.py --trials 40 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time

import optuna

from evaluator.datasets import load_dataset
from evaluator.zero_cost import naswot
from experiments.report import hypervolume
from experiments.search import make_sampler
from latency_models.estimation.estimators import estimate
from latency_models.measurement.targets import get_target
from search_space import DEFAULT_SPACE, Architecture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samplers", nargs="+", default=["random", "tpe", "nsga2", "gp"])
    args = parser.parse_args()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = load_dataset("digits", None, 16, 0)
    arm = get_target("paper-arm-sd810")
    cache: dict[str, tuple[float, float]] = {}

    def objectives(arch: Architecture) -> tuple[float, float]:
        if arch.arch_id not in cache:
            cache[arch.arch_id] = (naswot(arch, data, batch_size=32, seed=0), estimate(arch, arm).median_ms)
        return cache[arch.arch_id]

    runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
    timings: dict[str, float] = {}
    for sampler_name in args.samplers:
        for seed in args.seeds:
            sampler = make_sampler(sampler_name, seed, args.trials, 2)
            study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
            points = []
            start = time.perf_counter()
            for _ in range(args.trials):
                trial = study.ask()
                score, latency = objectives(DEFAULT_SPACE.suggest(trial))
                study.tell(trial, [score, latency])
                points.append((score, latency))
            timings[sampler_name] = timings.get(sampler_name, 0.0) + time.perf_counter() - start
            runs[(sampler_name, seed)] = points

    every = [p for pts in runs.values() for p in pts]
    lo = (min(-p[0] for p in every), min(p[1] for p in every))
    hi = (max(-p[0] for p in every), max(p[1] for p in every))

    def norm(p: tuple[float, float]) -> tuple[float, float]:
        return ((-p[0] - lo[0]) / ((hi[0] - lo[0]) or 1.0), (p[1] - lo[1]) / ((hi[1] - lo[1]) or 1.0))

    ref = (1.1, 1.1)
    hv = {key: hypervolume([norm(p) for p in pts], [False, False], ref) for key, pts in runs.items()}
    base = sum(hv[("random", s)] for s in args.seeds) / len(args.seeds)
    print(f"objectives: max NASWOT score (16x16 digits, batch 32) vs min guideline latency on paper-arm-sd810 (224)")
    print(f"budget: {args.trials} trials per run, seeds {args.seeds}, {len(cache)} distinct architectures scored")
    print(f"{'sampler':8s} {'HV per seed':32s} {'mean HV':>8s} {'vs random':>9s} {'sampler s':>9s}")
    for name in args.samplers:
        values = [hv[(name, s)] for s in args.seeds]
        mean = sum(values) / len(values)
        print(f"{name:8s} {' '.join(f'{v:.3f}' for v in values):32s} {mean:8.3f} {mean / base:9.3f} "
              f"{timings[name] / len(args.seeds):9.1f}")


if __name__ == "__main__":
    main()
