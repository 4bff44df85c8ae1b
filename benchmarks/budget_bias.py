"""How much a short proxy budget biases the search toward small networks, per candidate data set.

For each candidate data set (``digits@16``, ``fashion-mnist:2000@16``, ... = name, optional
image cap (train + val, stratified), input size) and each budget (proxy epochs), N architectures
sampled from the default space plus the 0.5x and 2.0x presets are trained with the search's
own proxy trainer (``train_proxy``, ``ProxyConfig(epochs=E, threads=1)``). Reported per
(data set, budget): Spearman(FLOPs, accuracy), the mean accuracy, and the mean training seconds
of one candidate (what one search trial pays). A negative or near-zero Spearman at a short
budget, rising with the budget, is the bias: big networks have not caught up yet.

Rows go to a CSV as they finish; rerunning the same command skips the rows already there.

    .venv/bin/python benchmarks/budget_bias.py --n 6 --budgets 1,2,4 \\
        --candidates digits@16,fashion-mnist:2000@16 --out runs/budget_bias
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from scipy import stats

from evaluator.datasets import DataSplit, load_dataset
from evaluator.proxy import ProxyConfig, train_proxy
from latency_models.costs.analytic import summary
from search_space import DEFAULT_SPACE, Architecture, get_preset
from search_space.errors import ShufflenasError

DEFAULT_CANDIDATES = ("digits@16", "fashion-mnist:2000@16", "fashion-mnist:2000@28", "fashion-mnist:5000@16",
                      "fashion-mnist:5000@28")
PRESETS = ("0.5x", "2.0x")
CSV_FIELDS = ("candidate", "budget", "label", "arch", "mflops", "train_images", "val_images", "accuracy",
              "status", "train_seconds")


class BenchmarkError(ShufflenasError, ValueError):
    """A flag of this benchmark is malformed."""


@dataclass(frozen=True)
class Candidate:
    """A candidate default data set for the search's proxy: name, image cap and input size."""

    name: str
    limit: int | None
    input_size: int

    @classmethod
    def parse(cls, text: str) -> Candidate:
        """``name[:limit]@size``, e.g. ``fashion-mnist:2000@16`` or ``digits@16``."""
        head, sep, size = text.strip().rpartition("@")
        if not sep or not head or not size.isdigit():
            raise BenchmarkError(f"candidate {text!r} is not name[:limit]@size (e.g. fashion-mnist:2000@16)")
        name, _, limit = head.partition(":")
        if limit and not limit.isdigit():
            raise BenchmarkError(f"candidate {text!r}: the image cap must be a whole number")
        return cls(name, int(limit) if limit else None, int(size))

    @property
    def key(self) -> str:
        return f"{self.name}{f':{self.limit}' if self.limit else ''}@{self.input_size}"

    def load(self) -> DataSplit:
        return load_dataset(self.name, input_size=self.input_size, limit=self.limit)


def architectures(n: int, seed: int) -> list[tuple[str, Architecture]]:
    """The 0.5x and 2.0x presets, then ``n`` samples of the default space."""
    return [(name, get_preset(name)) for name in PRESETS] + \
        [(f"sample{i}", arch) for i, arch in enumerate(DEFAULT_SPACE.sample_many(n, seed=seed))]


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def run(candidates: list[Candidate], budgets: list[int], archs: list[tuple[str, Architecture]], csv_path: Path,
        threads: int) -> list[dict[str, str]]:
    """Train what the CSV does not hold yet, appending one row per training."""
    rows = read_rows(csv_path)
    done = {(r["candidate"], int(r["budget"]), r["label"], r["arch"]) for r in rows}
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    fresh = not csv_path.exists()
    with csv_path.open("a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        if fresh:
            writer.writeheader()
        for cand in candidates:
            todo = [(b, label, arch) for b in budgets for label, arch in archs
                    if (cand.key, b, label, arch.to_string()) not in done]
            if not todo:
                continue
            data = cand.load()
            for budget, label, arch in todo:
                result = train_proxy(arch, data, ProxyConfig(epochs=budget, threads=threads))
                cost = summary(arch, input_size=data.input_size, num_classes=data.num_classes)
                row = {"candidate": cand.key, "budget": budget, "label": label, "arch": arch.to_string(),
                       "mflops": round(cost["flops"] / 1e6, 3), "train_images": data.train_size,
                       "val_images": data.val_size, "accuracy": round(result.accuracy, 4), "status": result.status,
                       "train_seconds": round(result.train_time_s, 2)}
                writer.writerow(row)
                fh.flush()
                rows.append({k: str(v) for k, v in row.items()})
                print(f"{cand.key} E={budget} {label}: acc {result.accuracy:.3f} in {result.train_time_s:.1f} s",
                      file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict[str, str]], candidates: list[Candidate], budgets: list[int],
          archs: list[tuple[str, Architecture]]) -> str:
    """Rows: candidates; columns: per budget, Spearman(FLOPs, acc) / mean acc / s per candidate."""
    wanted = {(label, arch.to_string()) for label, arch in archs}
    head = "| data set (train/val images) | " + " | ".join(f"E={b}: rho / acc / s" for b in budgets) + " |"
    lines = [head, "|---|" + "---|" * len(budgets)]
    for cand in candidates:
        cells, sizes = [], ""
        for budget in budgets:
            group = [r for r in rows if r["candidate"] == cand.key and int(r["budget"]) == budget
                     and (r["label"], r["arch"]) in wanted and r["status"] != "failed"]
            if group:
                sizes = f"{group[0]['train_images']}/{group[0]['val_images']}"
            if len(group) < 3:
                cells.append("-")
                continue
            flops, accs = [float(r["mflops"]) for r in group], [float(r["accuracy"]) for r in group]
            rho = stats.spearmanr(flops, accs).statistic if len(set(flops)) > 1 and len(set(accs)) > 1 else math.nan
            acc = statistics.fmean(float(r["accuracy"]) for r in group)
            sec = statistics.fmean(float(r["train_seconds"]) for r in group)
            cells.append(f"{'-' if math.isnan(rho) else f'{rho:+.2f}'} / {100 * acc:.1f} / {sec:.1f}")
        lines.append(f"| {cand.key} ({sizes or '?'}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", default=",".join(DEFAULT_CANDIDATES),
                        help="comma-separated name[:limit]@size")
    parser.add_argument("--budgets", default="1,2,4,8", help="proxy epochs, comma-separated")
    parser.add_argument("--n", type=int, default=8, help="architectures sampled from the default space")
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/budget_bias")
    args = parser.parse_args(argv)
    try:
        candidates = [Candidate.parse(c) for c in args.candidates.split(",") if c.strip()]
        try:
            budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
        except ValueError:
            raise BenchmarkError(f"--budgets must be whole numbers, got {args.budgets!r}") from None
        if not candidates or not budgets or min(budgets) < 1 or args.n < 1 or args.threads < 1:
            raise BenchmarkError("need at least one candidate, budgets >= 1, --n >= 1 and --threads >= 1")
        archs = architectures(args.n, args.sample_seed)
        torch.set_num_threads(args.threads)
        started = time.perf_counter()
        rows = run(candidates, budgets, archs, Path(args.out) / "budget_bias.csv", args.threads)
    except ShufflenasError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"{len(archs)} architectures (0.5x, 2.0x + {args.n} sampled, seed {args.sample_seed}); ProxyConfig "
          f"defaults (batch {ProxyConfig().batch_size}, lr {ProxyConfig().lr:g}, cosine) with epochs=E, "
          f"{args.threads} thread(s); wall {time.perf_counter() - started:.0f} s this invocation")
    print("cells: Spearman(FLOPs at the input size, val accuracy) / mean val accuracy % / mean training s per "
          "candidate\n")
    print(table(rows, candidates, budgets, archs))
    print(f"\nCSV: {Path(args.out) / 'budget_bias.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
