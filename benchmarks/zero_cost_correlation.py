"""How well do zero-cost proxies rank architectures? Spearman / Kendall against proxy accuracy.

Samples random architectures from DEFAULT_SPACE, trains each briefly on digits (Ray, in
parallel) and scores each with NASWOT and SynFlow (in the driver, meanwhile). The parameter
count is included as the baseline a zero-cost proxy has to beat.

    .venv/bin/python benchmarks/zero_cost_correlation.py [--n 24] [--epochs 2] [--limit 800]
"""

from __future__ import annotations

import argparse
import csv
import math
import time

from scipy import stats

from evaluator import EvalTask, ProxyConfig, load_dataset, make_evaluator
from evaluator.zero_cost import naswot, synflow
from search_space import DEFAULT_SPACE, build_model, count_parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=800, help="digits images used (train + val)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--address", default=None, help="an existing Ray cluster (default: start a local one)")
    parser.add_argument("--csv", default=None, help="write per-architecture rows here")
    args = parser.parse_args()

    data = load_dataset("digits", input_size=16, limit=args.limit, seed=args.seed)
    archs = DEFAULT_SPACE.sample_many(args.n, seed=args.seed)
    config = ProxyConfig(epochs=args.epochs, seed=args.seed)
    start = time.perf_counter()
    rows = {i: {"arch": arch.to_string()} for i, arch in enumerate(archs)}
    with make_evaluator("ray", data, address=args.address) as ev:
        for i, arch in enumerate(archs):
            ev.submit(EvalTask(i, arch, config))
        score_time = time.perf_counter()
        for i, arch in enumerate(archs):  # scored here while Ray trains
            rows[i]["naswot"] = naswot(arch, data, seed=args.seed)
            rows[i]["synflow"] = synflow(arch, data.input_size, data.num_classes, seed=args.seed)
            rows[i]["log_params"] = math.log(count_parameters(build_model(arch, data.num_classes, data.input_size)))
        score_time = (time.perf_counter() - score_time) / len(archs)
        while ev.pending():
            for outcome in ev.poll():
                rows[outcome.key]["accuracy"] = outcome.accuracy if outcome.ok else float("nan")
    elapsed = time.perf_counter() - start

    good = [r for r in rows.values() if math.isfinite(r.get("accuracy", float("nan")))]
    accs = [r["accuracy"] for r in good]
    print(f"{len(good)}/{len(archs)} architectures from DEFAULT_SPACE trained ({args.epochs} epochs, digits 16x16, "
          f"{data.train_size} train / {data.val_size} val); accuracy {min(accs):.3f}..{max(accs):.3f}; "
          f"{elapsed:.0f} s in all; zero-cost scoring {score_time:.2f} s per candidate (both proxies)")
    print(f"  {'proxy':<12} {'spearman':>9} {'kendall':>9}")
    for proxy in ("naswot", "synflow", "log_params"):
        values = [r[proxy] for r in good]
        rho = stats.spearmanr(values, accs).statistic
        tau = stats.kendalltau(values, accs).statistic
        print(f"  {proxy:<12} {rho:9.3f} {tau:9.3f}")
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["arch", "accuracy", "naswot", "synflow", "log_params"])
            writer.writeheader()
            writer.writerows(rows.values())


if __name__ == "__main__":
    main()
