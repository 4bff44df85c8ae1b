"""Seconds per candidate: a supernet score against the search's 2-epoch proxy, side by side in one run.

On the fidelity benchmark's data (Fashion-MNIST, ``--limit`` images at 16 px, a third of them
validation: 5,000 training / 2,500 validation), for each architecture: the one-shot score of the
supernet at ``--supernet DIR`` (the flag repeated: their ensemble, the mean of their scores, its
seconds the sum; extract, BN recalibrated on ``--bn-batches`` batches of 128, validate
on the first ``--val-size`` validation images; by default the search's scoring, 2 and 500) and ``train_proxy`` with
the search's defaults for 2 epochs on ``--proxy-train`` training images (as its ``proxy`` stage), one
torch thread each, one after the other. Prints both times and their ratio (the issue's goal: a score
costs <= 1/20 of the proxy).

    .venv/bin/python benchmarks/supernet_cost.py --supernet runs/supernet/ids20 0.5x 1.0x 2.0x
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy_fidelity import DataArgs, proxy_split  # noqa: E402  (the same split and proxy subset)
from evaluator.proxy import ProxyConfig, train_proxy  # noqa: E402
from evaluator.supernet.ensemble import check_inside, check_scorer, load_scorer, score_mean  # noqa: E402
from evaluator.supernet.scoring import BN_BATCHES, VAL_SIZE, ScoringData  # noqa: E402
from search_space import PAPER_PRESETS, Architecture  # noqa: E402
from search_space.errors import ShufflenasError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("archs", nargs="*", default=["0.5x", "1.0x", "2.0x"], help="presets or architecture strings")
    parser.add_argument("--supernet", required=True, action="append",
                        help="the folder `shufflenas supernet train --out` wrote; repeated: their ensemble")
    parser.add_argument("--limit", type=int, default=7500)
    parser.add_argument("--data-root", default=None, help="the IDX files [default: the system's Fashion-MNIST]")
    parser.add_argument("--proxy-train", type=int, default=2000)
    parser.add_argument("--bn-batches", type=int, default=BN_BATCHES)
    parser.add_argument("--val-size", type=int, default=VAL_SIZE, help="validation images scored (0: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        archs = [PAPER_PRESETS[a] if a in PAPER_PRESETS else Architecture.from_string(a) for a in args.archs]
        supernets, info = load_scorer(args.supernet)
        data = DataArgs("fashion-mnist", args.data_root, supernets[0].spec.input_size, args.limit,
                        float(Fraction(1, 3))).load()
        check_scorer(supernets, info, data)
        for arch in archs:
            check_inside(supernets, arch)
    except (ShufflenasError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scoring = ScoringData.from_split(data, bn_batches=args.bn_batches, val_size=args.val_size)
    subset = proxy_split(data, args.proxy_train)
    proxy = ProxyConfig(epochs=2, threads=1)
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, 1 torch thread; "
          f"supernet {info.checksum}; {data.train_size} training / {data.val_size} validation images at "
          f"{data.input_size} px; score: {args.bn_batches} BN batches of 128, {scoring.val_x.shape[0]} validation "
          f"images; proxy: 2 epochs on {subset.train_size} images")
    print("| architecture | supernet score s | proxy s | ratio |")
    print("|---|---|---|---|")
    ratios = []
    for label, arch in zip(args.archs, archs):
        result = score_mean(supernets, arch, scoring, threads=1)
        started = time.perf_counter()
        train_proxy(arch, subset, proxy)
        proxy_s = time.perf_counter() - started
        ratios.append(proxy_s / result.seconds)
        print(f"| {label} | {result.seconds:.2f} | {proxy_s:.1f} | 1/{ratios[-1]:.0f} |", flush=True)
    print(f"median: a supernet score costs 1/{statistics.median(ratios):.0f} of the proxy")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
