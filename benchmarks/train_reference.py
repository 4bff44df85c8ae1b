"""Reference accuracies of stand-alone training: the four paper presets and K sampled architectures.

Every run goes through :func:`train_architecture` (what ``shufflenas train`` runs) with one
named recipe, so each is checkpointed per epoch and a killed benchmark resumes where it
stopped: rerun the same command. The output folders carry the data subset, input size and
epoch count in their name, so differently sized runs never collide.

Writes ``results.csv`` (one row per architecture and seed) under the run folder, the same rows as
``reference.csv`` in ``search_quality.py``'s format (keyed by the same setup key, so
``finalist_fidelity.py`` pools them with a search benchmark's references), and prints a
markdown table (mean top-1 over seeds, the per-seed values, FLOPs at the training input size),
Spearman(FLOPs, top-1) and, with two or more seeds, Kendall's tau between the first two seeds.

    .venv/bin/python benchmarks/train_reference.py --limit 6000 --epochs 8 [--seeds 2] [--k 4] [--workers N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluator.training.loop import TrainResult, train_architecture  # noqa: E402
from evaluator.training.recipe import DataSpec, TrainRecipe  # noqa: E402
from experiments.finalists import setup_key  # noqa: E402
from latency_models.atomic import atomic_write_csv  # noqa: E402
from latency_models.costs.analytic import summary  # noqa: E402
from search_space import DEFAULT_SPACE, Architecture, get_preset  # noqa: E402
from search_space.errors import ShufflenasError  # noqa: E402
from search_quality import REF_FIELDS  # noqa: E402  (the benchmark beside this one: its reference rows)

PRESETS = ("0.5x", "1.0x", "1.5x", "2.0x")
DEFAULT_RECIPE = Path(__file__).resolve().parents[1] / "experiments" / "configs" / "train_fashion.toml"
CSV_FIELDS = ("label", "arch", "preset", "params", "mflops", "seed", "epochs", "train_images", "val_images",
              "input_size", "dataset", "val_top1", "val_top5", "seconds", "images_per_s")


@dataclass(frozen=True)
class Entry:
    """One architecture of the benchmark: a preset, or the i-th sample of the default space."""

    label: str
    arch: Architecture
    preset: str


@dataclass(frozen=True)
class Row:
    """One finished training, as it goes into the CSV."""

    entry: Entry
    seed: int
    mflops: float
    params: int
    input_size: int
    result: TrainResult
    train_images: int
    val_images: int

    def to_csv(self) -> dict[str, object]:
        r = self.result
        return {"label": self.entry.label, "arch": r.arch, "preset": self.entry.preset, "params": self.params,
                "mflops": round(self.mflops, 3), "seed": self.seed, "epochs": r.epochs,
                "train_images": self.train_images, "val_images": self.val_images, "input_size": self.input_size,
                "dataset": r.dataset, "val_top1": round(r.val_top1, 4), "val_top5": round(r.val_top5, 4),
                "seconds": round(sum(m.seconds for m in r.metrics), 1),
                "images_per_s": round(statistics.median(m.images_per_s for m in r.metrics), 1)}

    def to_reference(self, spec: DataSpec, recipe: TrainRecipe) -> dict[str, object]:
        """The row as ``search_quality.py`` records a reference training (``recipe``: this seed's; the seconds of
        all its epochs, as in results.csv, also when it was resumed)."""
        r = self.result
        return {"setup_key": setup_key(spec, recipe), "arch_id": self.entry.arch.arch_id, "arch": r.arch,
                "label": self.entry.preset, "accuracy": float(r.val_top1), "top5": float(r.val_top5),
                "epochs": r.epochs, "dataset": spec.name, "input_size": self.input_size, "limit": spec.limit or "",
                "seconds": sum(m.seconds for m in r.metrics), "complete": 1}


def entries(k: int, sample_seed: int, presets: Sequence[str] = PRESETS) -> list[Entry]:
    """The presets, then ``k`` architectures sampled from the default space (seeded)."""
    out = [Entry(name, get_preset(name), name) for name in presets]
    out += [Entry(f"sample{i}", arch, "") for i, arch in enumerate(DEFAULT_SPACE.sample_many(k, seed=sample_seed))]
    return out


def run_folder(root: Path, spec: DataSpec, recipe: TrainRecipe, input_size: int) -> Path:
    """``root/<dataset>-<subset>-<size>px-<epochs>ep``: one folder per benchmark size."""
    subset = f"n{spec.limit}" if spec.limit else "full"
    return root / f"{spec.name}-{subset}-{input_size}px-{recipe.epochs}ep"


def train_all(jobs: list[tuple[Entry, int, TrainRecipe, Path]], spec: DataSpec, workers: int
              ) -> dict[tuple[str, int], TrainResult | str]:
    """Each job's result (or its one-line error), through ``train_many`` when asked for and present."""
    if workers > 1:
        try:
            from evaluator.training.parallel import TrainJob, train_many
        except ImportError:
            print("evaluator.training.parallel is not available: training one after the other", file=sys.stderr)
        else:
            outcomes = train_many([TrainJob(e.arch, spec, r, str(d), label=(e.label, s)) for e, s, r, d in jobs],
                                  workers=workers, num_cpus=1, progress=True)
            return {o.job.label: (o.result if o.ok else o.error) for o in outcomes}
    done: dict[tuple[str, int], TrainResult | str] = {}
    for i, (entry, seed, recipe, out) in enumerate(jobs, 1):
        print(f"[{i}/{len(jobs)}] {entry.label} seed {seed}: {entry.arch.to_string()}", file=sys.stderr, flush=True)
        try:
            done[(entry.label, seed)] = train_architecture(entry.arch, spec, recipe, out, progress=False)
        except ShufflenasError as exc:
            done[(entry.label, seed)] = str(exc).splitlines()[0]
            print(f"  failed: {done[(entry.label, seed)]}", file=sys.stderr)
    return done


def markdown(rows: list[Row], seeds: int) -> str:
    """One line per architecture: mean top-1, the per-seed values, FLOPs and params.

    Seconds are the sum of the epochs' own times (``metrics.csv``), so a resumed run reports its
    whole training, not only the part this invocation did.
    """
    by_label: dict[str, list[Row]] = {}
    for row in rows:
        by_label.setdefault(row.entry.label, []).append(row)
    lines = ["| arch | preset | MFLOPs | params | top-1 mean | top-1 per seed | top-5 mean | s per run |",
             "|---|---|---|---|---|---|---|---|"]
    means: list[tuple[float, float]] = []
    for label, group in by_label.items():
        group.sort(key=lambda r: r.seed)
        top1 = [r.result.val_top1 for r in group]
        mean = statistics.fmean(top1)
        means.append((group[0].mflops, mean))
        lines.append(f"| {label} | {group[0].entry.preset or '-'} | {group[0].mflops:.1f} | {group[0].params:,} | "
                     f"{100 * mean:.1f} | {' / '.join(f'{100 * v:.1f}' for v in top1)} | "
                     f"{100 * statistics.fmean(r.result.val_top5 for r in group):.1f} | "
                     f"{statistics.fmean(sum(m.seconds for m in r.result.metrics) for r in group):.0f} |")
    lines.append("")
    if len(means) >= 3:
        flops, top1 = [m[0] for m in means], [m[1] for m in means]
        rho = stats.spearmanr(flops, top1).statistic if len(set(flops)) > 1 and len(set(top1)) > 1 else None
        lines.append(f"Spearman(FLOPs, mean top-1) over {len(means)} architectures: "
                     f"{'-' if rho is None else f'{rho:.3f}'}")
    if seeds >= 2:
        pairs = [(g[0].result.val_top1, g[1].result.val_top1) for g in by_label.values() if len(g) >= 2]
        first, second = [p[0] for p in pairs], [p[1] for p in pairs]
        if len(pairs) >= 3 and len(set(first)) > 1 and len(set(second)) > 1:
            tau = stats.kendalltau(first, second).statistic
            lines.append(f"Kendall tau between seed 0 and seed 1 over {len(pairs)} architectures: {tau:.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE), help="recipe TOML ([train] table)")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--limit", type=int, default=None, help="images loaded (train + val, stratified); "
                        "default: the whole data set")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--input-size", type=int, default=None, help="default: the recipe's, else the data set's")
    parser.add_argument("--k", type=int, default=4, help="architectures sampled from the default space")
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated; '' for none")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per architecture (0, 1, ...)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="trainings at a time (Ray, via train_many)")
    parser.add_argument("--out", default="runs/train_reference")
    args = parser.parse_args(argv)
    try:
        if args.k < 0 or args.seeds < 1 or args.workers < 1 or args.threads < 1:
            raise ShufflenasError("--k must be >= 0, and --seeds, --workers and --threads >= 1")
        overrides: dict[str, object] = {"threads": args.threads}
        if args.epochs is not None:
            overrides["epochs"] = args.epochs
        if args.input_size is not None:
            overrides["input_size"] = args.input_size
        base = TrainRecipe.from_toml(args.recipe, overrides)
        spec = DataSpec(args.dataset, root=args.data_root, limit=args.limit)
        input_size = spec.input_size(base)
        presets = [p.strip() for p in args.presets.split(",") if p.strip()]
        todo = entries(args.k, args.sample_seed, presets)
        from evaluator.training.loop import _load  # the split every run trains on (cached, checked here)

        data = _load(spec, input_size)
        folder = run_folder(Path(args.out), spec, base, input_size)
        jobs = [(e, s, base.replace(seed=s), folder / f"{e.label}-seed{s}") for e in todo for s in range(args.seeds)]
        torch.set_num_threads(args.threads)
        started = time.perf_counter()
        results = train_all(jobs, spec, args.workers)
    except ShufflenasError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - started
    rows, failed = [], []
    for entry, seed, _, _ in jobs:
        result = results.get((entry.label, seed))
        if not isinstance(result, TrainResult):
            failed.append(f"{entry.label} seed {seed}: {result or 'not run'}")
            continue
        cost = summary(entry.arch, input_size=input_size, num_classes=data.num_classes)
        rows.append(Row(entry, seed, cost["flops"] / 1e6, int(cost["params"]), input_size, result,
                        data.train_size, data.val_size))
    csv_path = folder / "results.csv"
    atomic_write_csv(csv_path, CSV_FIELDS, (row.to_csv() for row in rows))
    atomic_write_csv(folder / "reference.csv", REF_FIELDS,
                     (row.to_reference(spec, base.replace(seed=row.seed)) for row in rows))

    print(f"{data.name}: {data.train_size} training / {data.val_size} validation images at {input_size}x{input_size}, "
          f"{base.epochs} epochs, recipe {args.recipe} (lr {base.lr:g}, batch {base.batch_size}, "
          f"{base.optimizer}), {args.seeds} seed(s), {args.threads} thread(s), {args.workers} worker(s)")
    print(f"MFLOPs at {input_size}x{input_size}, {data.num_classes} classes; wall {wall:.0f} s "
          f"(a resumed run's wall counts only its remaining epochs; 's per run' is the sum of its epochs)\n")
    print(markdown(rows, args.seeds))
    print(f"\nCSV: {csv_path}")
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
