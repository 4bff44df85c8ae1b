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
Both CSVs are rewritten after every finished training, so a killed run keeps the rows it finished.

    .venv/bin/python benchmarks/train_reference.py --limit 6000 --epochs 8 [--seeds 2] [--k 4] [--workers N]

Run folders need not outlive a session; a committed ``results.csv`` does. ``--reuse`` takes the
rows of earlier results (same architecture, seed, epochs, data and input size) instead of training
them again, e.g. a reference continued in another checkout with a second seed:

    .venv/bin/python benchmarks/train_reference.py --limit 6000 --epochs 8 --seeds 2 \
        --reuse benchmarks/results/train_reference/fashion-mnist-n6000-16px-8ep.csv
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluator.datasets import DataSplit  # noqa: E402
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
    """One finished training as plain values: trained by this run, or read back from an earlier results.csv."""

    label: str
    arch: Architecture
    preset: str
    params: int
    mflops: float
    seed: int
    epochs: int
    train_images: int
    val_images: int
    input_size: int
    dataset: str
    val_top1: float
    val_top5: float
    seconds: float
    images_per_s: float

    @classmethod
    def from_result(cls, entry: Entry, seed: int, result: TrainResult, data: DataSplit, input_size: int) -> Row:
        """A training of this run; ``seconds`` sums its epochs' own times (a resumed run's whole training)."""
        cost = summary(entry.arch, input_size=input_size, num_classes=data.num_classes)
        return cls(entry.label, entry.arch, entry.preset, int(cost["params"]), cost["flops"] / 1e6, seed,
                   result.epochs, data.train_size, data.val_size, input_size, result.dataset, result.val_top1,
                   result.val_top5, sum(m.seconds for m in result.metrics),
                   statistics.median(m.images_per_s for m in result.metrics))

    @classmethod
    def from_csv(cls, row: Mapping[str, str]) -> Row:
        """A row of :data:`CSV_FIELDS` as written by :meth:`to_csv` (values rounded as there)."""
        try:
            return cls(row["label"], Architecture.from_string(row["arch"]), row["preset"], int(row["params"]),
                       float(row["mflops"]), int(row["seed"]), int(row["epochs"]), int(row["train_images"]),
                       int(row["val_images"]), int(row["input_size"]), row["dataset"], float(row["val_top1"]),
                       float(row["val_top5"]), float(row["seconds"]), float(row["images_per_s"]))
        except (TypeError, ValueError) as exc:  # ArchitectureError is a ValueError too
            raise ShufflenasError(f"bad value: {str(exc).splitlines()[0]}") from None

    def to_csv(self) -> dict[str, object]:
        return {"label": self.label, "arch": self.arch.to_string(), "preset": self.preset, "params": self.params,
                "mflops": round(self.mflops, 3), "seed": self.seed, "epochs": self.epochs,
                "train_images": self.train_images, "val_images": self.val_images, "input_size": self.input_size,
                "dataset": self.dataset, "val_top1": round(self.val_top1, 4), "val_top5": round(self.val_top5, 4),
                "seconds": round(self.seconds, 1), "images_per_s": round(self.images_per_s, 1)}

    def to_reference(self, spec: DataSpec, recipe: TrainRecipe) -> dict[str, object]:
        """The row as ``search_quality.py`` records a reference training (``recipe``: this seed's; the seconds of
        all its epochs, as in results.csv, also when it was resumed; a reused row's to 0.1 s, as its CSV has them)."""
        return {"setup_key": setup_key(spec, recipe), "arch_id": self.arch.arch_id, "arch": self.arch.to_string(),
                "label": self.preset, "accuracy": float(self.val_top1), "top5": float(self.val_top5),
                "epochs": self.epochs, "dataset": spec.name, "input_size": self.input_size, "limit": spec.limit or "",
                "seconds": self.seconds, "complete": 1}


def read_reused(path: str, expected: Mapping[str, dict[str, object]]) -> dict[tuple[str, int], Row]:
    """The rows of an earlier ``results.csv`` for this run's labels, by (label, seed).

    ``expected`` holds, per label of this run, the fields a reusable row must share with it (``arch``
    in its canonical string); a row that names such a label but differs was trained on another setup,
    and mixing it in would be silently wrong, so it is an error. Rows of other labels are ignored.
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [f for f in CSV_FIELDS if f not in (reader.fieldnames or ())]
            if missing:
                raise ShufflenasError(f"--reuse {path}: not a results.csv of this script (missing column(s) "
                                      f"{', '.join(missing)})")
            lines = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ShufflenasError(f"--reuse {path}: cannot read it: {str(exc).splitlines()[0]}") from None
    rows: dict[tuple[str, int], Row] = {}
    for number, line in enumerate(lines, 2):
        if line.get("label") not in expected:
            continue
        try:
            row = Row.from_csv(line)
        except ShufflenasError as exc:
            raise ShufflenasError(f"--reuse {path}: line {number} ({line['label']}): {exc}") from None
        values = row.to_csv()  # arch as its canonical string
        for field, want in expected[row.label].items():
            if values[field] != want:
                raise ShufflenasError(f"--reuse {path}: row {row.label} seed {row.seed} has {field} {values[field]}, "
                                      f"this run {want}")
        rows.setdefault((row.label, row.seed), row)
    return rows


def entries(k: int, sample_seed: int, presets: Sequence[str] = PRESETS) -> list[Entry]:
    """The presets, then ``k`` architectures sampled from the default space (seeded)."""
    out = [Entry(name, get_preset(name), name) for name in presets]
    out += [Entry(f"sample{i}", arch, "") for i, arch in enumerate(DEFAULT_SPACE.sample_many(k, seed=sample_seed))]
    return out


def run_folder(root: Path, spec: DataSpec, recipe: TrainRecipe, input_size: int) -> Path:
    """``root/<dataset>-<subset>-<size>px-<epochs>ep``: one folder per benchmark size."""
    subset = f"n{spec.limit}" if spec.limit else "full"
    return root / f"{spec.name}-{subset}-{input_size}px-{recipe.epochs}ep"


def train_all(jobs: list[tuple[Entry, int, TrainRecipe, Path]], spec: DataSpec, workers: int,
              on_done: Callable[[tuple[str, int], TrainResult | str], None] = lambda key, result: None
              ) -> dict[tuple[str, int], TrainResult | str]:
    """Each job's result (or its one-line error), through ``train_many`` when asked for and present;
    ``on_done(key, result)`` as each job ends, so its row is on disk before the next one is."""
    if workers > 1:
        try:
            from evaluator.training.parallel import TrainJob, train_many
        except ImportError:
            print("evaluator.training.parallel is not available: training one after the other", file=sys.stderr)
        else:
            outcomes = train_many([TrainJob(e.arch, spec, r, str(d), label=(e.label, s)) for e, s, r, d in jobs],
                                  workers=workers, num_cpus=1, progress=True,
                                  on_outcome=lambda o: on_done(o.job.label, o.result if o.ok else o.error))
            return {o.job.label: (o.result if o.ok else o.error) for o in outcomes}
    done: dict[tuple[str, int], TrainResult | str] = {}
    for i, (entry, seed, recipe, out) in enumerate(jobs, 1):
        print(f"[{i}/{len(jobs)}] {entry.label} seed {seed}: {entry.arch.to_string()}", file=sys.stderr, flush=True)
        try:
            done[(entry.label, seed)] = train_architecture(entry.arch, spec, recipe, out, progress=False)
        except ShufflenasError as exc:
            done[(entry.label, seed)] = str(exc).splitlines()[0]
            print(f"  failed: {done[(entry.label, seed)]}", file=sys.stderr)
        on_done((entry.label, seed), done[(entry.label, seed)])
    return done


def markdown(rows: list[Row], seeds: int) -> str:
    """One line per architecture: mean top-1, the per-seed values, FLOPs and params.

    Seconds are the sum of the epochs' own times (``metrics.csv``), so a resumed run reports its
    whole training, not only the part this invocation did; a reused row's come from its CSV.
    """
    by_label: dict[str, list[Row]] = {}
    for row in rows:
        by_label.setdefault(row.label, []).append(row)
    lines = ["| arch | preset | MFLOPs | params | top-1 mean | top-1 per seed | top-5 mean | s per run |",
             "|---|---|---|---|---|---|---|---|"]
    means: list[tuple[float, float]] = []
    for label, group in by_label.items():
        group.sort(key=lambda r: r.seed)
        top1 = [r.val_top1 for r in group]
        mean = statistics.fmean(top1)
        means.append((group[0].mflops, mean))
        lines.append(f"| {label} | {group[0].preset or '-'} | {group[0].mflops:.1f} | {group[0].params:,} | "
                     f"{100 * mean:.1f} | {' / '.join(f'{100 * v:.1f}' for v in top1)} | "
                     f"{100 * statistics.fmean(r.val_top5 for r in group):.1f} | "
                     f"{statistics.fmean(r.seconds for r in group):.0f} |")
    lines.append("")
    if len(means) >= 3:
        flops, top1 = [m[0] for m in means], [m[1] for m in means]
        rho = stats.spearmanr(flops, top1).statistic if len(set(flops)) > 1 and len(set(top1)) > 1 else None
        lines.append(f"Spearman(FLOPs, mean top-1) over {len(means)} architectures: "
                     f"{'-' if rho is None else f'{rho:.3f}'}")
    if seeds >= 2:
        pairs = [(g[0].val_top1, g[1].val_top1) for g in by_label.values() if len(g) >= 2]
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
    parser.add_argument("--reuse", nargs="+", metavar="CSV", default=[],
                        help="earlier results.csv files: their rows of this run's setup are not trained again")
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
        expected = {e.label: {"arch": e.arch.to_string(), "epochs": base.epochs, "train_images": data.train_size,
                              "val_images": data.val_size, "input_size": input_size, "dataset": data.name}
                    for e in todo}
        wanted = {(e.label, s) for e, s, _, _ in jobs}
        reused: dict[tuple[str, int], Row] = {}
        reused_from: list[str] = []
        for path in args.reuse:
            found = {key: row for key, row in read_reused(path, expected).items()
                     if key in wanted and key not in reused}  # seeds beyond --seeds are not this run's
            reused.update(found)
            reused_from.append(f"{len(found)} rows of {path}")
        fresh: dict[tuple[str, int], Row] = {}
        csv_path = folder / "results.csv"

        def write() -> list[Row]:
            """Both CSVs with every row known so far, in the order of the jobs (atomic: a kill leaves them whole)."""
            keys = [(e.label, s) for e, s, _, _ in jobs]
            rows = [reused[key] if key in reused else fresh[key] for key in keys if key in reused or key in fresh]
            atomic_write_csv(csv_path, CSV_FIELDS, (row.to_csv() for row in rows))
            atomic_write_csv(folder / "reference.csv", REF_FIELDS,
                             (row.to_reference(spec, base.replace(seed=row.seed)) for row in rows))
            return rows

        entry_of = {e.label: e for e in todo}

        def on_done(key: tuple[str, int], result: TrainResult | str) -> None:
            if isinstance(result, TrainResult):
                fresh[key] = Row.from_result(entry_of[key[0]], key[1], result, data, input_size)
                write()

        torch.set_num_threads(args.threads)
        started = time.perf_counter()
        results = train_all([job for job in jobs if (job[0].label, job[1]) not in reused], spec, args.workers, on_done)
    except ShufflenasError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - started
    rows = write()
    failed = [f"{e.label} seed {s}: {results.get((e.label, s)) or 'not run'}" for e, s, _, _ in jobs
              if (e.label, s) not in reused and (e.label, s) not in fresh]

    print(f"{data.name}: {data.train_size} training / {data.val_size} validation images at {input_size}x{input_size}, "
          f"{base.epochs} epochs, recipe {args.recipe} (lr {base.lr:g}, batch {base.batch_size}, "
          f"{base.optimizer}), {args.seeds} seed(s), {args.threads} thread(s), {args.workers} worker(s)")
    print(f"MFLOPs at {input_size}x{input_size}, {data.num_classes} classes; wall {wall:.0f} s "
          f"(a resumed run's wall counts only its remaining epochs; 's per run' is the sum of its epochs)")
    if args.reuse:
        print(f"reused {', '.join(reused_from)} (not trained again)")
    print()
    print(markdown(rows, args.seeds))
    print(f"\nCSV: {csv_path}")
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
