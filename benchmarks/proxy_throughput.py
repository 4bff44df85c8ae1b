"""Proxy-training throughput: `train_proxy` vs a minimal hand-written torch loop.

Same model (ShuffleNetV2 0.5x at the small stem), same data (digits at 16x16), same optimiser and
schedule, same process and thread count; runs are interleaved (A B, B A, ...) so drift on a
shared machine hits both. Each run is timed end to end (build, train, validate every epoch), and
images/s counts training images only; both wall-clock and process CPU time are reported, since
CPU time is far less disturbed by other jobs on a shared machine. ``train_proxy`` runs with BN recalibration off so both do
the same work; the default (recalibration on) is reported as a third column.

    .venv/bin/python benchmarks/proxy_throughput.py [--epochs 1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from evaluator import ProxyConfig, load_dataset, train_proxy
from search_space import build_model, get_preset


def hand_loop(arch, data, config: ProxyConfig) -> int:
    """The shortest reasonable torch loop doing the same work; returns training images seen."""
    torch.manual_seed(config.seed)
    model = build_model(arch, data.num_classes, data.input_size)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    n, bs = data.train_size, config.batch_size
    steps = n // bs
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps * config.epochs)
    images = 0
    for _ in range(config.epochs):
        model.train()
        perm = torch.randperm(n)
        for i in range(steps):
            idx = perm[i * bs:(i + 1) * bs]
            loss = F.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            images += bs
        model.eval()
        with torch.no_grad():
            (model(data.val_x).argmax(1) == data.val_y).float().mean().item()
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--arch", default="0.5x")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    data = load_dataset("digits", input_size=16)
    arch = get_preset(args.arch)
    same_work = ProxyConfig(epochs=args.epochs, threads=args.threads, bn_recalibration_batches=0)
    default = same_work.replace(bn_recalibration_batches=ProxyConfig().bn_recalibration_batches)
    steps = data.train_size // same_work.batch_size

    def timed(fn) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        images = fn()
        return images / (time.perf_counter() - wall), images / (time.process_time() - cpu)

    def proxy(config):
        def run() -> int:
            result = train_proxy(arch, data, config)
            assert result.status == "ok", result.reason
            return steps * config.batch_size * config.epochs
        return run

    runners = {"hand loop": lambda: hand_loop(arch, data, same_work), "train_proxy": proxy(same_work),
               "train_proxy (BN recal)": proxy(default)}
    runners["hand loop"]()  # warm-up: allocator, kernels
    wall: dict[str, list[float]] = {name: [] for name in runners}
    cpu: dict[str, list[float]] = {name: [] for name in runners}
    for rep in range(args.repeats):
        names = list(runners) if rep % 2 == 0 else list(reversed(runners))
        for name in names:
            w, c = timed(runners[name])
            wall[name].append(w)
            cpu[name].append(c)
    print(f"arch {args.arch}, digits 16x16 (train {data.train_size}), batch {same_work.batch_size}, "
          f"{args.epochs} epoch(s), {args.threads} thread(s), {args.repeats} interleaved repeats")
    for clock, rates in (("wall", wall), ("cpu", cpu)):
        for name, values in rates.items():
            print(f"  {clock:<4} {name:<24} median {statistics.median(values):8.1f} img/s   runs: "
                  + " ".join(f"{v:.0f}" for v in values))
    for clock, rates in (("wall", wall), ("cpu", cpu)):
        hand = statistics.median(rates["hand loop"])
        pair = statistics.median(p / h for p, h in zip(rates["train_proxy"], rates["hand loop"]))
        print(f"{clock}: train_proxy / hand loop = {statistics.median(rates['train_proxy']) / hand:.3f} "
              f"(median per-repeat {pair:.3f}; target >= 0.95); "
              f"with BN recalibration = {statistics.median(rates['train_proxy (BN recal)']) / hand:.3f}")


if __name__ == "__main__":
    main()
