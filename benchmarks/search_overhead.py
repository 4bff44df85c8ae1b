"""Framework overhead of the search driver per trial vs the time of a trial.

Overhead = ask + tell + bookkeeping (trial counts, reuse look-up, front size) + storage writes,
measured inside the real driver (SearchDriver.overhead_s); training and latency are excluded.
Two runs, side by side, on real SQLite storage:

1. the real thing: N trials of the default proxy (digits 16x16, 2 epochs), sequential evaluator,
   latency measured on local-cpu at 224 (first time, so not cached) and estimated for the paper
   targets; prints overhead per trial and its share of the mean trial wall time;
2. scaling: M more trials with instant evaluations (a real SequentialEvaluator whose training
   function returns at once) on a study that already holds many trials, so the per-trial
   bookkeeping cost at larger study sizes is visible.

    .venv/bin/python benchmarks/search_overhead.py --trials 6 --scale-trials 300
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from evaluator.datasets import load_dataset
from evaluator.proxy import ProxyResult
from evaluator.sequential import SequentialEvaluator
from experiments.config import load_config
from experiments.search import SearchDriver


def instant(arch, data, config) -> ProxyResult:
    acc = (int(arch.arch_id, 16) % 1000) / 1000
    return ProxyResult(status="ok", accuracy=acc, val_curve=(acc,), loss_curve=(1.0,), train_time_s=0.0,
                       images_per_s=0.0, epochs_run=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--scale-trials", type=int, default=300)
    parser.add_argument("--skip-real", action="store_true", help="only part 2 (compares with --trial-s)")
    parser.add_argument("--trial-s", type=float, default=None, help="trial time to compare with when skipping part 1")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="search-overhead-"))
    os.environ.setdefault("SHUFFLENAS_HOME", str(root / "home"))

    per_trial = args.trial_s or 0.0
    if not args.skip_real:
        per_trial = _real(args, root)
    _scale(args, root, per_trial)


def _real(args: argparse.Namespace, root: Path) -> float:
    config = load_config(None, {"out": str(root / "real"), "trials": args.trials, "workers": 1, "progress": False,
                                "presets": []})
    start = time.perf_counter()
    driver = SearchDriver(config)
    result = driver.run()
    wall = time.perf_counter() - start
    per_trial = wall / result.new_trials
    over = driver.overhead_s / result.new_trials
    print(f"1. real trials (digits 16x16, {config.proxy.epochs} epochs, local-cpu measured at 224): "
          f"{result.new_trials} trials, {per_trial:.1f} s/trial, overhead {over * 1000:.1f} ms/trial "
          f"= {100 * over / per_trial:.2f}% of a trial", flush=True)
    return per_trial


def _scale(args: argparse.Namespace, root: Path, per_trial: float) -> None:
    data = load_dataset("digits", None, 16, 0)
    scale = {"out": str(root / "scale"), "workers": 1, "progress": False, "presets": [],
             "targets": ["paper-arm-sd810"], "objectives": ["accuracy", "latency:paper-arm-sd810"], "sampler": "tpe"}
    marks = []
    for total in (args.scale_trials // 3, 2 * args.scale_trials // 3, args.scale_trials):
        driver = SearchDriver(load_config(None, {**scale, "trials": total}),
                              evaluator=SequentialEvaluator(data, train_fn=instant))
        start = time.perf_counter()
        res = driver.run()
        elapsed = time.perf_counter() - start
        marks.append((total, res.new_trials, driver.overhead_s / max(res.new_trials, 1), elapsed / max(res.new_trials, 1)))
    print("2. bookkeeping at larger study sizes (instant evaluations, estimate-only target, TPE sampler):")
    for total, new, over, wall in marks:
        print(f"   trials {total - new:4d}..{total:4d}: overhead {over * 1000:6.1f} ms/trial "
              f"(whole loop incl. estimate + sampler {wall * 1000:6.1f} ms/trial); "
              f"vs a {per_trial:.1f} s trial: {100 * over / max(per_trial, 1e-9):.2f}%")


if __name__ == "__main__":
    main()
