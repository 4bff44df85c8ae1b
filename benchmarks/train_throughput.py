"""Training throughput: `train_architecture` (what `shufflenas train` runs) vs a minimal hand loop.

Same model, data (digits at 16x16), batch size, thread count, optimiser (SGD with Nesterov
momentum), per-step cosine learning rate, label smoothing, and augmentation (the same batched
random crop + flip, on in both by default, ``--no-augment`` turns it off in both). Runs are
interleaved (A B, B A, ...) so drift on a shared machine hits both.

The compared figure is training images/s over the epochs' training steps (what ``metrics.csv``
reports); ``train``'s end-to-end rate (with validation, a checkpoint, metrics.csv and curves.png
every epoch, and model.pt + model.onnx at the end) is printed beside it for information.

    .venv/bin/python benchmarks/train_throughput.py [--epochs 2] [--repeats 3] [--arch 0.5x] [--no-augment]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from evaluator.datasets import load_dataset
from evaluator.training.augment import random_crop_flip
from evaluator.training.loop import train_architecture
from evaluator.training.recipe import DataSpec, TrainRecipe
from search_space import build_model, resolve_arch


def hand_loop(arch, data, recipe: TrainRecipe) -> float:
    """The shortest reasonable torch loop doing the same training work; returns images/s of its steps."""
    torch.manual_seed(recipe.seed)
    model = build_model(arch, data.num_classes, data.input_size)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, nesterov=True,
                          weight_decay=recipe.weight_decay)
    n, bs = data.train_size, recipe.batch_size
    steps = n // bs
    total = steps * recipe.epochs
    gen = torch.Generator().manual_seed(recipe.seed)
    seconds, images = 0.0, 0
    for epoch in range(recipe.epochs):
        tick = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(steps):
            for group in opt.param_groups:
                group["lr"] = 0.5 * recipe.lr * (1 + math.cos(math.pi * (epoch * steps + i) / total))
            idx = perm[i * bs:(i + 1) * bs]
            x = data.train_x[idx]
            if recipe.augment:
                x = random_crop_flip(x, gen, padding=recipe.crop_padding, flip=recipe.flip)
            loss = F.cross_entropy(model(x), data.train_y[idx], label_smoothing=recipe.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            images += bs
        seconds += time.perf_counter() - tick
        model.eval()
        with torch.no_grad():
            (model(data.val_x).argmax(1) == data.val_y).float().mean().item()
    return images / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--arch", default="0.5x")
    parser.add_argument("--no-augment", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    spec = DataSpec("digits")
    recipe = TrainRecipe(epochs=args.epochs, batch_size=args.batch_size, threads=args.threads, input_size=16,
                         augment=not args.no_augment, warmup_epochs=0.0, lr=0.1)
    data = load_dataset("digits", input_size=16, seed=spec.seed)
    arch = resolve_arch(args.arch)

    def run_train() -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            result = train_architecture(arch, spec, recipe, Path(tmp) / "run", progress=False)
            wall = time.perf_counter() - started
        steps = recipe.steps_per_epoch(data.train_size) * recipe.batch_size * recipe.epochs
        return result.images_per_s, steps / wall

    hand_loop(arch, data, recipe.replace(epochs=1))  # warm-up: allocator, kernels
    hand, train, train_e2e = [], [], []
    for rep in range(args.repeats):
        order = ("hand", "train") if rep % 2 == 0 else ("train", "hand")
        for name in order:
            if name == "hand":
                hand.append(hand_loop(arch, data, recipe))
            else:
                steps_rate, e2e = run_train()
                train.append(steps_rate)
                train_e2e.append(e2e)
    print(f"arch {args.arch}, digits 16x16 (train {data.train_size}), batch {recipe.batch_size}, {args.epochs} "
          f"epoch(s), {args.threads} thread(s), augmentation {'on' if recipe.augment else 'off'}, "
          f"{args.repeats} interleaved repeats")
    for name, values in (("hand loop", hand), ("train (training steps)", train), ("train (end to end)", train_e2e)):
        print(f"  {name:<24} median {statistics.median(values):8.1f} img/s   runs: "
              + " ".join(f"{v:.0f}" for v in values))
    ratio = statistics.median(train) / statistics.median(hand)
    pair = statistics.median(t / h for t, h in zip(train, hand))
    print(f"train / hand loop = {ratio:.3f} (median per-repeat {pair:.3f}; target >= 0.95); "
          f"end to end {statistics.median(train_e2e) / statistics.median(hand):.3f}")


if __name__ == "__main__":
    main()
