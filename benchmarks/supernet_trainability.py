"""Does single-path weight sharing learn? Mean training loss of uniform paths, per part of the run.

Trains a supernet for a few dozen steps with one uniformly drawn path per batch, over a space in
which only the named dimensions vary (the rest is the 1.0x preset), and prints the mean loss of
each fifth of the run (chance is ln 10 = 2.30 for ten classes). A fixed network falls well below
chance within ~20 steps; a space whose shared weights interfere stays at chance.

    .venv/bin/python benchmarks/supernet_trainability.py --vary fixed,conv5,stem,kernel,w4,d4,width,depth,ratio,whole
    .venv/bin/python benchmarks/supernet_trainability.py --vary depth,width --no-shuffle   # channel_shuffle = identity
    .venv/bin/python benchmarks/supernet_trainability.py --vary whole --lr 0.01 --clip 1 --steps 250 --warmup 20
    .venv/bin/python benchmarks/supernet_trainability.py --vary depth,width --momentum 0 --steps 90 [--channel-ids]
"""

from __future__ import annotations

import argparse
import platform
import random
import time

import torch
import torch.nn.functional as F

#: the 1.0x preset as a space of one point; each variant opens some of its dimensions to the default ranges
BASE = dict(width_ranges=((116, 116), (232, 232), (464, 464)), depth_ranges=((4, 4), (8, 8), (4, 4)),
            split_ratios=(0.5,), stem_choices=(24,), conv5_choices=(1024,))
WIDTHS = ((24, 256), (48, 512), (96, 1024))
DEPTHS = ((1, 6), (2, 10), (1, 6))
RATIOS = (0.25, 0.375, 0.5, 0.625, 0.75)
VARIANTS = {
    "fixed": {},
    "conv5": dict(conv5_choices=(512, 768, 1024, 1536, 2048)),
    "stem": dict(stem_choices=(16, 24, 32)),
    "kernel": dict(kernel_choices=(3, 5, 7)),
    "w4": dict(width_ranges=(BASE["width_ranges"][0], BASE["width_ranges"][1], WIDTHS[2])),   # stage 4 only
    "d4": dict(depth_ranges=(BASE["depth_ranges"][0], BASE["depth_ranges"][1], DEPTHS[2])),   # stage 4 only
    "width": dict(width_ranges=WIDTHS),
    "depth": dict(depth_ranges=DEPTHS),
    "ratio": dict(split_ratios=RATIOS),
    "whole": None,  # the default space
}


def run(variant: str, args: argparse.Namespace) -> list[float]:
    from evaluator.datasets import load_dataset
    from evaluator.supernet import Supernet
    from search_space import DEFAULT_SPACE, SearchSpace

    torch.manual_seed(args.seed)
    options = VARIANTS[variant]
    space = DEFAULT_SPACE if options is None else SearchSpace(**{**BASE, **options})
    data = load_dataset("fashion-mnist", root=args.data_root, input_size=args.input_size, limit=args.limit)
    supernet = Supernet(space, data.num_classes, data.input_size, shape_samples=8, channel_ids=args.channel_ids,
                        nested_rows=args.nested_rows)
    fixed = space.sample(0) if variant == "fixed" else None
    optimizer = torch.optim.SGD(supernet.parameters(), lr=args.lr, momentum=args.momentum,
                                nesterov=args.momentum > 0, weight_decay=5e-4)
    rng, batches = random.Random(args.seed), torch.Generator().manual_seed(args.seed)
    supernet.train()
    losses = []
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
        idx = torch.randint(0, data.train_size, (args.batch,), generator=batches)
        arch = fixed or supernet.sample(rng)
        loss = F.cross_entropy(supernet(data.train_x[idx], arch), data.train_y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip:
            torch.nn.utils.clip_grad_norm_(supernet.parameters(), args.clip)
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vary", default="fixed,width,depth", help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--warmup", type=int, default=10, help="linear warm-up steps")
    parser.add_argument("--clip", type=float, default=0.0, help="gradient-norm clip (0: none)")
    parser.add_argument("--no-shuffle", action="store_true", help="replace channel_shuffle by the identity")
    parser.add_argument("--channel-ids", action="store_true", help="index input channels by canonical id")
    parser.add_argument("--nested-rows", action="store_true",
                        help="store a unit's outputs by fate so readers nest across widths (implies --channel-ids)")
    parser.add_argument("--limit", type=int, default=3000)
    parser.add_argument("--input-size", type=int, default=16)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    variants = [v.strip() for v in args.vary.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or args.steps < 5 or args.warmup < 1:
        parser.error(f"unknown variant(s) {unknown}" if unknown else "--steps must be >= 5 and --warmup >= 1")
    torch.set_num_threads(1)
    if args.no_shuffle:
        import search_space.blocks.modules as modules

        modules.channel_shuffle = lambda x, groups: x  # before any unit class is made, which binds it
    print(f"machine: {platform.platform()}, 1 torch thread; settings: {vars(args)}")
    print("| paths vary | mean loss per fifth of the run | max | seconds |\n|---|---|---|---|")
    for variant in variants:
        started = time.perf_counter()
        losses = run(variant, args)
        fifth = len(losses) // 5
        means = " / ".join(f"{sum(losses[i * fifth:(i + 1) * fifth]) / fifth:.2f}" for i in range(5))
        print(f"| {variant} | {means} | {max(losses):.2f} | {time.perf_counter() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
