"""How well a supernet ranks the networks that searches send to training (issues 16 and 17).

The fidelity benchmark (``accuracy_fidelity.py``) ranks 28 uniform samples of the space. A search's
finalists are not uniform: a supernet search sends networks from near the space's small end, where
the sandwich rule trains the smallest path every step. This reads the reference accuracies that
``search_quality.py`` runs trained (``reference.csv``: every finalist of every method, and the
presets), scores each architecture with every ``--supernet NAME=DIR`` (``DIR,DIR``: an ensemble) on
the supernet's own held-out images as a search scores it (``--bn-batches`` BN batches of 128 and the
first ``--val-size`` validation images, by default a search's), and reports per scorer, against the
reference: Kendall tau, Spearman, capacity bias (Spearman with FLOPs, beside the reference's own)
and the **small-end lift**: the mean rank, as a fraction of the list, that the scorer gives the
quarter of networks with the fewest FLOPs, minus the one the reference gives them (> 0: it puts
them higher than training does).

    python benchmarks/finalist_fidelity.py --reference benchmarks/results/search_quality_ref2/reference.csv \\
        --supernet sandwich=runs/supernet/sandwich_ids5 --out benchmarks/results/finalist_fidelity

Writes ``OUT/rows.csv`` (one row per architecture: FLOPs, reference, every score), ``OUT/finalist_fidelity.md``
and ``OUT/finalist_fidelity.png`` (score against reference, per scorer).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy_fidelity import _corr, _supernet_arg  # noqa: E402  (the benchmark beside this one)

from evaluator.supernet.scoring import BN_BATCHES, VAL_SIZE  # noqa: E402  (a search's scoring defaults)
from latency_models.atomic import atomic_write_csv, atomic_write_figure, atomic_write_text  # noqa: E402
from latency_models.costs.analytic import summary  # noqa: E402
from search_space import Architecture  # noqa: E402
from search_space.errors import ShufflenasError  # noqa: E402

SMALL_SHARE = 0.25


def read_reference(path: Path, setup: str | None) -> tuple[str, dict[str, tuple[str, float]]]:
    """(setup key, arch_id -> (arch string, accuracy)) of one setup of a ``reference.csv``: ``setup``, or
    the one with the most epochs and, among those, the most rows."""
    try:
        with open(path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("complete", "1") == "1"]
    except OSError as exc:
        raise ShufflenasError(f"--reference {path}: cannot read it ({exc.strerror or exc})") from None
    if not rows or not {"setup_key", "arch_id", "arch", "accuracy", "epochs"} <= set(rows[0]):
        raise ShufflenasError(f"--reference {path}: not a search_quality reference.csv (no rows, or no "
                              "setup_key / arch_id / arch / accuracy / epochs columns)")
    if setup is None:
        counts = Counter((int(r["epochs"]), r["setup_key"]) for r in rows)
        setup = max(counts, key=lambda k: (k[0], counts[k]))[1]
    out = {r["arch_id"]: (r["arch"], float(r["accuracy"])) for r in rows if r["setup_key"] == setup}
    if len(out) < 3:
        raise ShufflenasError(f"--reference {path}: setup {setup} has {len(out)} architectures; need 3 or more")
    return setup, out


def rank_fraction(values: Mapping[str, float]) -> dict[str, float]:
    """Each key's rank as a fraction of the list, 0 = lowest value, 1 = highest (ties: mean rank)."""
    from scipy.stats import rankdata

    keys = sorted(values)
    ranks = rankdata([values[k] for k in keys])
    n = len(keys)
    return {k: (r - 1) / (n - 1) if n > 1 else 0.5 for k, r in zip(keys, ranks)}


def small_end_lift(score: Mapping[str, float], reference: Mapping[str, float], flops: Mapping[str, float]) -> float:
    """Mean rank fraction the score gives the ``SMALL_SHARE`` of networks with the fewest FLOPs, minus the
    reference's (over the networks both hold)."""
    common = sorted(set(score) & set(reference))
    small = sorted(common, key=lambda a: (flops[a], a))[:max(1, round(SMALL_SHARE * len(common)))]
    by_score = rank_fraction({a: score[a] for a in common})
    by_ref = rank_fraction({a: reference[a] for a in common})
    return statistics.mean(by_score[a] - by_ref[a] for a in small)


def score_all(folders: Sequence[str], archs: Mapping[str, str], val_size: int,
              data_root: str | None = None, bn_batches: int = BN_BATCHES) -> tuple[dict[str, float], float]:
    """Each architecture's score by the supernet (or ensemble) at ``folders`` on its own split; the
    median seconds per score. Architectures outside its space are left out."""
    from evaluator.supernet.ensemble import check_inside, load_scorer, own_split, score_mean
    from evaluator.supernet.scoring import ScoringData
    from evaluator.supernet.weights import SupernetError

    supernets, info = load_scorer(list(folders) if len(folders) > 1 else folders[0])
    scoring = ScoringData.from_split(own_split(info, data_root=data_root), bn_batches=bn_batches,
                                     val_size=val_size)
    scores, seconds = {}, []
    for arch_id, text in archs.items():
        arch = Architecture.from_string(text)
        try:
            check_inside(supernets, arch)
        except SupernetError:
            continue
        result = score_mean(supernets, arch, scoring, threads=1)
        scores[arch_id], seconds = result.accuracy, [*seconds, result.seconds]
    return scores, statistics.median(seconds) if seconds else math.nan


def plot(path: Path, reference: Mapping[str, float], scores: Mapping[str, Mapping[str, float]],
         flops: Mapping[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(scores), figsize=(4.2 * len(scores), 3.8), squeeze=False, sharey=True,
                             layout="constrained")  # the shared colour bar keeps its room
    for ax, (name, score) in zip(axes[0], scores.items()):
        ids = sorted(set(score) & set(reference))
        dots = ax.scatter([score[a] for a in ids], [reference[a] for a in ids],
                          c=[math.log10(flops[a] / 1e6) for a in ids], cmap="viridis", s=18)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("supernet score (own held-out split)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("reference top-1")
    fig.colorbar(dots, ax=axes[0].tolist(), label="log10 MFLOPs (224 px)")
    atomic_write_figure(path, fig, dpi=110)
    plt.close(fig)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's default adds the usage)
        self.exit(2, f"error: {message}\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", required=True, type=Path, help="a search_quality run's reference.csv")
    p.add_argument("--setup", default=None, help="its setup_key to read [default: most epochs, then most rows]")
    p.add_argument("--supernet", action="append", type=_supernet_arg, required=True, metavar="NAME=DIR[,DIR]",
                   help="a scorer (repeatable); several folders: an ensemble")
    p.add_argument("--val-size", type=int, default=VAL_SIZE,
                   help=f"validation images per score (0: all) [default: {VAL_SIZE}, a search's]")
    p.add_argument("--bn-batches", type=int, default=BN_BATCHES,
                   help=f"training batches of 128 that recalibrate BatchNorm per score "
                        f"[default: {BN_BATCHES}, a search's]")
    p.add_argument("--data-root", default=None, help="where the supernets' data set is [default: where it was]")
    p.add_argument("--out", required=True, type=Path, help="folder of rows.csv, the table and the plot")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.val_size < 0:
        print(f"error: --val-size must be >= 0, got {args.val_size}", file=sys.stderr)
        return 2
    if args.bn_batches < 1:
        print(f"error: --bn-batches must be >= 1, got {args.bn_batches}", file=sys.stderr)
        return 2
    if args.out.exists() and not args.out.is_dir():  # before minutes of scoring
        print(f"error: --out {args.out} is a file; give a folder", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        for name, folders in args.supernet:
            missing = [f for f in folders if not Path(f).is_dir()]
            if missing:
                raise ShufflenasError(f"--supernet {name}: no such folder {missing[0]}")
        setup, ref = read_reference(args.reference, args.setup)
        archs = {a: text for a, (text, _) in ref.items()}
        reference = {a: acc for a, (_, acc) in ref.items()}
        flops = {a: float(summary(Architecture.from_string(t))["flops"]) for a, t in archs.items()}
        scores, seconds = {}, {}
        for name, folders in args.supernet:
            print(f"scoring {len(archs)} architectures with {name} ...", file=sys.stderr, flush=True)
            scores[name], seconds[name] = score_all(folders, archs, args.val_size, args.data_root, args.bn_batches)
    except ShufflenasError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: --out {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    fields = ["arch_id", "arch", "mflops", "reference", *(f"score:{n}" for n in scores)]
    atomic_write_csv(args.out / "rows.csv", fields, [
        {"arch_id": a, "arch": archs[a], "mflops": round(flops[a] / 1e6, 3), "reference": reference[a],
         **{f"score:{n}": s.get(a, "") for n, s in scores.items()}} for a in sorted(archs, key=lambda a: flops[a])])
    ref_bias = _corr("spearman", [flops[a] for a in reference], [reference[a] for a in reference])
    lines = [f"command: `{shlex.join(['benchmarks/finalist_fidelity.py', *argv])}`",
             f"machine: {platform.platform()}, {os.cpu_count()} CPUs; {time.perf_counter() - started:.0f} s wall",
             f"reference: {args.reference} setup {setup}, {len(reference)} architectures; its capacity bias "
             f"(Spearman with FLOPs) {ref_bias:+.3f}",
             f"small-end lift: mean rank fraction given to the {SMALL_SHARE:.0%} of networks with the fewest FLOPs, "
             "scorer minus reference (> 0: the scorer ranks them above where training puts them)", "",
             "| scorer | n | Kendall tau | Spearman | capacity bias | small-end lift | s per score |",
             "|---|---|---|---|---|---|---|"]
    for name, score in scores.items():
        ids = sorted(set(score) & set(reference))
        x, y = [score[a] for a in ids], [reference[a] for a in ids]
        lines.append(f"| {name} | {len(ids)} | {_corr('kendall', x, y):.3f} | {_corr('spearman', x, y):.3f} | "
                     f"{_corr('spearman', [flops[a] for a in ids], x):+.3f} | "
                     f"{small_end_lift(score, reference, flops):+.3f} | {seconds[name]:.2f} |")
    text = "\n".join(lines) + "\n"
    atomic_write_text(args.out / "finalist_fidelity.md", text)
    plot(args.out / "finalist_fidelity.png", reference, scores, flops)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
