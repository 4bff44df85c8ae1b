"""Successive halving's rungs on real data: how each rung ranks, and which promotion rule keeps the front.

Trains a fixed candidate list (the four paper presets plus ``--n`` samples of the default space) at
every rung budget, each rung from scratch as the search's successive halving does
(``train_proxy`` with the search's proxy recipe, ``epochs`` = the rung), on one Fashion-MNIST split.
Every finished training is appended to ``OUT/rows.csv`` at once, and a rerun skips the rows already
there (a killed benchmark resumes).

The report gives, per rung: Spearman and Kendall tau with the last rung, and Spearman with FLOPs
(the capacity bias of a short budget). Then it replays synchronous successive halving over these
accuracies with each promotion rule (``experiments.successive_halving.ranking``; latency = the
paper-calibrated Snapdragon 810 estimate at 224 px, FLOPs at 224 px) and scores the survivors: the
hypervolume of their last-rung (accuracy, latency) points over that of all candidates at the last
rung (1.0: the rule kept the whole attainable front), and their median FLOPs. A random keep of the
same size (mean of 500 draws) is the baseline.

    .venv/bin/python benchmarks/rung_fidelity.py --n 14 --rungs 1,3,9 --limit 3000 --jobs 2 --out benchmarks/results/rungs
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import csv
import multiprocessing
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

from scipy import stats

from experiments.report import hypervolume as _hypervolume
from experiments.successive_halving import Fidelity, RungResult, keep_count, ranking
from latency_models.atomic import atomic_write_text
from search_space import DEFAULT_SPACE, Architecture, get_preset

PRESETS = ("0.5x", "1.0x", "1.5x", "2.0x")
FIELDS = ("label", "arch_id", "arch", "rung", "accuracy", "seconds", "mflops", "params", "arm_ms", "dataset",
          "limit", "input_size")
RULES = (("nondominated", 1), ("bands", 2), ("bands", 3), ("bands", 4))


def candidates(n: int, seed: int) -> list[tuple[str, Architecture]]:
    out = [(name, get_preset(name)) for name in PRESETS]
    return out + [(f"sample{i}", a) for i, a in enumerate(DEFAULT_SPACE.sample_many(n, seed=seed))]


def _train(label: str, arch_text: str, rung: int, dataset: str, limit: int, input_size: int) -> dict:
    """One rung's training in a worker process (one torch thread)."""
    import torch

    from evaluator.datasets import load_dataset
    from evaluator.proxy import ProxyConfig, train_proxy
    from latency_models.costs.analytic import summary
    from latency_models.latency import latency_for

    torch.set_num_threads(1)
    arch = Architecture.from_string(arch_text)
    data = load_dataset(dataset, input_size=input_size, seed=0, limit=limit)
    started = time.perf_counter()
    result = train_proxy(arch, data, ProxyConfig(epochs=rung, threads=1))
    costs = summary(arch, 224, 1000)
    arm = latency_for(arch, "paper-arm-sd810", allow_measure=False).median_ms
    return {"label": label, "arch_id": arch.arch_id, "arch": arch_text, "rung": rung,
            "accuracy": round(result.accuracy, 5), "seconds": round(time.perf_counter() - started, 1),
            "mflops": round(costs["flops"] / 1e6, 2), "params": int(costs["params"]), "arm_ms": round(arm, 3),
            "dataset": dataset, "limit": limit, "input_size": input_size}


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def append_row(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def train_all(args: argparse.Namespace, rungs: list[int], out: Path) -> None:
    path = out / "rows.csv"
    done = {(r["arch_id"], int(r["rung"]), r["dataset"], int(r["limit"]), int(r["input_size"])) for r in read_rows(path)}
    todo = [(label, arch.to_string(), rung, args.dataset, args.limit, args.input_size)
            for label, arch in candidates(args.n, args.sample_seed) for rung in rungs
            if (arch.arch_id, rung, args.dataset, args.limit, args.input_size) not in done]
    todo.sort(key=lambda t: -t[2])  # the long runs first, so the pool ends evenly
    print(f"{len(todo)} trainings to run ({len(done)} already in {path})", file=sys.stderr, flush=True)
    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        running = [pool.submit(_train, *t) for t in todo]
        for i, fut in enumerate(futures.as_completed(running), 1):
            row = fut.result()
            append_row(path, row)
            print(f"[{i}/{len(todo)}] {row['label']} rung {row['rung']}: acc {row['accuracy']:.4f} "
                  f"({row['seconds']} s)", file=sys.stderr, flush=True)


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """(accuracy up, latency down) points against ``ref`` = (worst accuracy, worst latency)."""
    return _hypervolume(points, (True, False), ref)


def survivors(results: dict[int, list[RungResult]], fidelity: Fidelity) -> set[int]:
    """Synchronous successive halving over recorded rung results: who reaches the last rung."""
    alive = {r.number for r in results[0]}
    for index in range(len(fidelity.rungs) - 1):
        pool = [r for r in results[index] if r.number in alive]
        keep = keep_count(len(pool), fidelity.eta)
        alive = {r.number for r in ranking(pool, fidelity, keep)[:keep]}
    return alive


def report(args: argparse.Namespace, rungs: list[int], out: Path) -> str:
    rows = [r for r in read_rows(out / "rows.csv") if r["dataset"] == args.dataset and int(r["limit"]) == args.limit
            and int(r["input_size"]) == args.input_size]
    ids = [a.arch_id for _, a in candidates(args.n, args.sample_seed)]
    acc = {(r["arch_id"], int(r["rung"])): float(r["accuracy"]) for r in rows}
    info = {r["arch_id"]: r for r in rows}
    ids = [i for i in ids if all((i, rung) in acc for rung in rungs)]
    if len(ids) < 4:
        return "fewer than 4 candidates have every rung: run the training first"
    last = [acc[(i, rungs[-1])] for i in ids]
    flops = [float(info[i]["mflops"]) for i in ids]
    lines = [f"# Rung fidelity: {len(ids)} architectures, {args.dataset} ({args.limit} images, {args.input_size} px), "
             f"rungs {rungs} epochs", "",
             "| rung (epochs) | Spearman with last rung | Kendall tau with last rung | Spearman with FLOPs | mean s |",
             "|---|---|---|---|---|"]
    for rung in rungs:
        values = [acc[(i, rung)] for i in ids]
        seconds = statistics.mean(float(r["seconds"]) for r in rows if int(r["rung"]) == rung and r["arch_id"] in ids)
        lines.append(f"| {rung} | {stats.spearmanr(values, last)[0]:.3f} | {stats.kendalltau(values, last)[0]:.3f} | "
                     f"{stats.spearmanr(values, flops)[0]:+.3f} | {seconds:.1f} |")
    numbers = {i: n for n, i in enumerate(ids)}
    results = {index: [RungResult(numbers[i], acc[(i, rung)], (float(info[i]["arm_ms"]),), float(info[i]["mflops"]))
                       for i in ids] for index, rung in enumerate(rungs)}
    points = {numbers[i]: (acc[(i, rungs[-1])], float(info[i]["arm_ms"])) for i in ids}
    ref = (min(p[0] for p in points.values()) - 1e-3, max(p[1] for p in points.values()) * 1.01)
    full = hypervolume(list(points.values()), ref)
    lines += ["", f"Replayed synchronous successive halving, eta {args.eta} ({len(ids)} -> "
              f"{len(survivors(results, Fidelity(tuple(rungs), args.eta, 'nondominated')))} at the last rung); "
              "hypervolume of the survivors' last-rung (accuracy, Snapdragon 810 ms) points over all candidates':", "",
              "| promotion rule | hypervolume kept | survivors' median MFLOPs | survivors |", "|---|---|---|---|"]
    for rule, bands in RULES:
        kept = survivors(results, Fidelity(tuple(rungs), args.eta, rule, bands))
        name = rule if rule == "nondominated" else f"bands ({bands})"
        labels = ", ".join(sorted(info[ids[n]]["label"] for n in kept))
        lines.append(f"| {name} | {hypervolume([points[n] for n in kept], ref) / full:.3f} | "
                     f"{statistics.median(float(info[ids[n]]['mflops']) for n in kept):.0f} | {labels} |")
    k = len(survivors(results, Fidelity(tuple(rungs), args.eta, "nondominated")))
    rng = random.Random(0)
    draws = [hypervolume([points[n] for n in rng.sample(sorted(points), k)], ref) / full for _ in range(500)]
    lines.append(f"| random keep (mean of 500) | {statistics.mean(draws):.3f} | "
                 f"{statistics.median(flops):.0f} (all candidates) | - |")
    lines += ["", f"Machine: {platform.machine()}, {os.cpu_count()} cores; command: "
              f"`python benchmarks/rung_fidelity.py {' '.join(sys.argv[1:])}`"]
    text = "\n".join(lines)
    atomic_write_text(out / "rung_fidelity.md", text + "\n")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", nargs="?", choices=("all", "train", "report"), default="all")
    parser.add_argument("--n", type=int, default=14, help="sampled architectures besides the four presets")
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--rungs", default="1,3,9", help="rung budgets in epochs, increasing")
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--limit", type=int, default=3000, help="images loaded (train + val, stratified)")
    parser.add_argument("--input-size", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rungs"))
    args = parser.parse_args()
    try:
        rungs = [int(x) for x in args.rungs.split(",")]
        Fidelity(tuple(rungs), args.eta).check(rungs[-1])
    except ValueError as exc:
        parser.error(f"--rungs/--eta: {exc}")
    if args.n < 0 or args.jobs < 1 or args.limit < 20 or args.input_size < 8:
        parser.error("--n must be >= 0, --jobs >= 1, --limit >= 20 and --input-size >= 8")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.stage in ("all", "train"):
        train_all(args, rungs, args.out)
    if args.stage in ("all", "report"):
        print(report(args, rungs, args.out))


if __name__ == "__main__":
    main()
