"""How well a supernet, the short proxy and free baselines rank the networks that searches send to training.

The fidelity benchmark (``accuracy_fidelity.py``) ranks 28 uniform samples of the space. A search's
finalists are not uniform: a supernet search sends networks from near the space's small end, where
the sandwich rule trains the smallest path every step. This reads the reference accuracies that
``search_quality.py`` runs trained (``reference.csv``: every finalist of every method, and the
presets; several files are pooled, an architecture trained twice under one setup counting as its
mean). ``--ref-seeds 2`` averages the recipe's two training seeds (two setup keys), keeps the
architectures trained under both and reports their seed-to-seed agreement as the ceiling.

Scorers: each ``--supernet NAME=DIR`` (``DIR,DIR``: an ensemble) on the supernet's own held-out
images as a search scores (``--bn-batches`` BN batches of 128 and the first ``--val-size``
validation images, by default a search's); with ``--proxy``, the fidelity benchmark's 2-epoch proxy
trained on 2,000 images of the reference's own split (``--jobs`` at once, kept in
``OUT/proxy_rows.csv``, so a killed run resumes); and -FLOPs and -params, which cost nothing. Per
scorer, against the reference: Kendall tau, Spearman, capacity bias (Spearman with FLOPs, beside the
reference's own) and the **small-end lift**: the mean rank, as a fraction of the list, that the
scorer gives the quarter of networks with the fewest FLOPs, minus the one the reference gives them
(> 0: it puts them higher than training does). With ``--bootstrap N``, each scorer's capacity bias minus the
reference's (< 0: it favours small networks more than training does) with a 90% interval from N resamples of
the networks, so a gap that the list's size alone could make reads as such. ``--scores NAME=JSON`` reads
scores saved by ``shufflenas supernet score --json``: written before the reference was trained, they are
judged later without the supernet at hand.

    python benchmarks/finalist_fidelity.py --reference benchmarks/results/search_quality_ref2/reference.csv \\
        --supernet sandwich=runs/supernet/sandwich_ids5 --out benchmarks/results/finalist_fidelity

Writes ``OUT/rows.csv`` (one row per architecture: FLOPs, params, reference, every trained score),
``OUT/finalist_fidelity.md`` and ``OUT/finalist_fidelity.png`` (score against reference, per scorer).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy_fidelity as af  # noqa: E402  (the benchmark beside this one: its proxy stage and row store)
from accuracy_fidelity import _corr, _supernet_arg  # noqa: E402

from evaluator.supernet.scoring import BN_BATCHES, VAL_SIZE  # noqa: E402  (a search's scoring defaults)
from latency_models.atomic import atomic_write_csv, atomic_write_figure, atomic_write_text  # noqa: E402
from latency_models.costs.analytic import summary  # noqa: E402
from search_space import Architecture  # noqa: E402
from search_space.errors import ShufflenasError  # noqa: E402

SMALL_SHARE = 0.25
CEILING = "reference seed vs seed (the ceiling)"
FREE = ("-FLOPs", "-params")  # scorers that cost nothing


@dataclasses.dataclass(frozen=True)
class Reference:
    """The reference accuracies read: one setup per training seed of one recipe, and the data they trained on."""

    setups: tuple[str, ...]               # first: the chosen setup; then the same recipe's other seeds
    archs: dict[str, str]                 # arch_id -> arch string, every one trained under every setup
    seeds: tuple[dict[str, float], ...]   # per setup: arch_id -> accuracy (the mean of repeated rows)
    dataset: str
    input_size: int | None
    limit: int | None
    epochs: int

    @property
    def mean(self) -> dict[str, float]:
        return {a: statistics.fmean(s[a] for s in self.seeds) for a in self.archs}


def _recipe_of(row: Mapping[str, str]) -> tuple[str, ...]:
    """What makes two setups the same recipe but for the training seed (the seed is in the key only)."""
    return tuple(row.get(f) or "" for f in ("dataset", "input_size", "limit", "epochs"))


def read_reference(paths: Sequence[Path], setup: str | None, ref_seeds: int = 1,
                   only: Collection[str] | None = None) -> Reference:
    """The rows of ``paths`` (search_quality ``reference.csv`` files, pooled) for one setup: ``setup``, or
    the one with the most epochs and, among those, the most rows; with ``ref_seeds`` > 1 also the same
    recipe's other setups (other training seeds), most rows first, keeping the architectures trained under
    all of them. An architecture trained more than once under one setup (two runs) counts as its mean.
    ``only``: the arch_ids to keep (the others are left out)."""
    rows: list[dict[str, str]] = []
    for path in paths:
        try:
            with open(path, newline="") as fh:
                found = [r for r in csv.DictReader(fh) if r.get("complete", "1") == "1"]
        except OSError as exc:
            raise ShufflenasError(f"--reference {path}: cannot read it ({exc.strerror or exc})") from None
        if not found or not {"setup_key", "arch_id", "arch", "accuracy", "epochs"} <= set(found[0]):
            raise ShufflenasError(f"--reference {path}: not a search_quality reference.csv (no rows, or no "
                                  "setup_key / arch_id / arch / accuracy / epochs columns)")
        rows += found
    counts = Counter((int(r["epochs"]), r["setup_key"]) for r in rows)
    if setup is None:
        setup = max(counts, key=lambda k: (k[0], counts[k]))[1]
    recipe = {_recipe_of(r) for r in rows if r["setup_key"] == setup}
    if len(recipe) != 1:
        raise ShufflenasError(f"--setup {setup}: " + ("no rows of that setup" if not recipe else
                                                       "its rows disagree on data set, input size, limit or epochs"))
    siblings = sorted({r["setup_key"] for r in rows if _recipe_of(r) in recipe} - {setup},
                      key=lambda k: (-sum(n for (_, key), n in counts.items() if key == k), k))
    setups = (setup, *siblings)[:ref_seeds]
    if len(setups) < ref_seeds:
        raise ShufflenasError(f"--ref-seeds {ref_seeds}: the references hold {len(setups)} training seed(s) of "
                              f"setup {setup}'s recipe")
    runs: dict[tuple[str, str], list[float]] = {}
    archs: dict[str, str] = {}
    for r in rows:
        if r["setup_key"] in setups:
            runs.setdefault((r["setup_key"], r["arch_id"]), []).append(float(r["accuracy"]))
            archs.setdefault(r["arch_id"], r["arch"])
    keep = {a: t for a, t in archs.items() if all((k, a) in runs for k in setups) and (only is None or a in only)}
    if len(keep) < 3:
        raise ShufflenasError(f"--reference: {len(keep)} architectures trained under setup "
                              f"{' and '.join(setups)}; need 3 or more")
    dataset, input_size, limit, epochs = next(iter(recipe))
    return Reference(setups, keep, tuple({a: statistics.fmean(runs[(k, a)]) for a in keep} for k in setups),
                     dataset, int(input_size) if input_size else None, int(limit) if limit else None, int(epochs))


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


def bias_gap_interval(score: Mapping[str, float], reference: Mapping[str, float], flops: Mapping[str, float],
                      resamples: int, seed: int = 0) -> tuple[float, float]:
    """90% bootstrap interval of the scorer's capacity bias minus the reference's (< 0: it favours small networks
    more than training does). The networks are resampled with replacement (scipy's percentile bootstrap), so the
    interval says how large a gap the list's size alone could make."""
    import numpy as np
    from scipy import stats

    common = sorted(set(score) & set(reference))
    columns = ([flops[a] for a in common], [score[a] for a in common], [reference[a] for a in common])

    def gap(f, s, r) -> float:
        return _corr("spearman", f, s) - _corr("spearman", f, r)

    ci = stats.bootstrap(columns, gap, n_resamples=resamples, paired=True, vectorized=False, confidence_level=0.9,
                         method="percentile", rng=np.random.default_rng(seed)).confidence_interval
    return float(ci.low), float(ci.high)


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


def read_stored_scores(path: Path, archs: Mapping[str, str]) -> tuple[dict[str, float], float]:
    """Scores saved by ``shufflenas supernet score --json`` (a list of records with arch_id, accuracy,
    seconds) for the reference's architectures, and their median seconds: a supernet's scores can be
    written before the reference they are judged against exists, and judged without the supernet."""
    try:
        records = json.loads(path.read_text())
        found = {r["arch_id"]: (float(r["accuracy"]), float(r["seconds"])) for r in records if r["arch_id"] in archs}
    except OSError as exc:
        raise ShufflenasError(f"--scores {path}: cannot read it ({exc.strerror or exc})") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ShufflenasError(f"--scores {path}: not the JSON of `shufflenas supernet score --json` "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not found:
        raise ShufflenasError(f"--scores {path}: none of its architectures is in the reference")
    return {a: v[0] for a, v in found.items()}, statistics.median(v[1] for v in found.values())


def read_candidates(path: Path) -> set[str]:
    """The arch_ids of a CSV with an ``arch_id`` column (e.g. the fidelity benchmark's candidates.csv)."""
    try:
        with open(path, newline="") as fh:
            ids = {r.get("arch_id") or "" for r in csv.DictReader(fh)} - {""}
    except OSError as exc:
        raise ShufflenasError(f"--candidates {path}: cannot read it ({exc.strerror or exc})") from None
    if not ids:
        raise ShufflenasError(f"--candidates {path}: no arch_id column, or no rows")
    return ids


def proxy_scores(ref: Reference, costs: Mapping[str, Mapping[str, int]], out: Path, *, epochs: int,
                 train_images: int, jobs: int, data_root: str | None) -> tuple[dict[str, float], float]:
    """Each architecture's short-training proxy accuracy and the median seconds of one training.

    The fidelity benchmark's proxy stage (``ProxyConfig`` defaults with ``epochs``, one thread, on a seeded
    stratified subset of ``train_images`` of the reference's own training split, validated on its validation
    images), in ``jobs`` processes; each result is appended to ``OUT/proxy_rows.csv`` as it ends, so a killed
    run goes on where it stopped."""
    from evaluator.proxy import ProxyConfig
    from evaluator.training.recipe import DataSpec

    if not ref.dataset or ref.input_size is None:
        raise ShufflenasError("--proxy: the reference rows do not name their data set and input size "
                              "(dataset / input_size columns)")
    val_fraction = DataSpec(ref.dataset).val_fraction  # the split search_quality.py's references train on
    data_args = af.DataArgs(ref.dataset, data_root, ref.input_size, ref.limit, val_fraction)
    cands = [af.Candidate(a, Architecture.from_string(text), costs[a]["flops"] / 1e6, int(costs[a]["params"]))
             for a, text in ref.archs.items()]
    run = af.Run(out, cands, data_args, ProxyConfig(), ProxyConfig(epochs=epochs, threads=1), train_images, jobs)
    store = af.RowStore(out / "proxy_rows.csv")
    data = data_args.load()
    failures = af.stage_proxy(run, store, data)
    if failures:
        print(f"{failures} proxy training(s) failed; they are left out", file=sys.stderr)
    rows = [r for r in store.rows if r.stage == "proxy" and r.fingerprint == run.proxy_fp and r.status == "ok"
            and math.isfinite(r.score) and r.arch_id in ref.archs]
    return {r.arch_id: r.score for r in rows}, statistics.median(r.seconds for r in rows) if rows else math.nan


def plot(path: Path, reference: Mapping[str, float], scores: Mapping[str, Mapping[str, float]],
         flops: Mapping[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(scores))
    rows = math.ceil(len(scores) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows + 0.4), squeeze=False, sharey=True,
                             layout="constrained")  # the shared colour bar keeps its room
    for ax in axes.flat[len(scores):]:
        ax.set_visible(False)
    for ax, (name, score) in zip(axes.flat, scores.items()):
        ids = sorted(set(score) & set(reference))
        dots = ax.scatter([score[a] for a in ids], [reference[a] for a in ids],
                          c=[math.log10(flops[a] / 1e6) for a in ids], cmap="viridis", s=18)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("proxy top-1 (reference split)" if name == "proxy" else "supernet score (own held-out split)")
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("reference top-1")
    fig.colorbar(dots, ax=axes.ravel().tolist(), label="log10 MFLOPs (224 px)")
    atomic_write_figure(path, fig, dpi=110)
    plt.close(fig)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's default adds the usage)
        self.exit(2, f"error: {message}\n")


def _scores_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=JSON, got {text!r}")
    return name, Path(path)


def parser() -> argparse.ArgumentParser:
    p = _Parser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", required=True, type=Path, action="extend", nargs="+", metavar="CSV",
                   help="search_quality runs' reference.csv (several: pooled; repeatable)")
    p.add_argument("--setup", default=None, help="its setup_key to read [default: most epochs, then most rows]")
    p.add_argument("--ref-seeds", type=int, default=1,
                   help="training seeds of the setup's recipe to average (each a setup of its own); with 2 or "
                        "more, only architectures trained under all of them, and the seed-to-seed ceiling "
                        "[default: 1]")
    p.add_argument("--candidates", type=Path, default=None, metavar="CSV",
                   help="rank only these architectures (a CSV with an arch_id column, e.g. the fidelity "
                        "benchmark's candidates.csv) [default: every one the references hold]")
    p.add_argument("--supernet", action="append", type=_supernet_arg, default=[], metavar="NAME=DIR[,DIR]",
                   help="a scorer (repeatable); several folders: an ensemble")
    p.add_argument("--scores", action="append", type=_scores_arg, default=[], metavar="NAME=JSON",
                   help="a scorer's stored scores: the output of `shufflenas supernet score --json` (repeatable)")
    p.add_argument("--proxy", action="store_true",
                   help="also train the short proxy on the reference's own split (rows kept in OUT/proxy_rows.csv)")
    p.add_argument("--proxy-epochs", type=int, default=2, help="the proxy's epochs [default: 2, a search's]")
    p.add_argument("--proxy-train", type=int, default=2000, help="the proxy's training images [default: 2000]")
    p.add_argument("--jobs", type=int, default=1, help="proxy trainings at once, one thread each [default: 1]")
    p.add_argument("--val-size", type=int, default=VAL_SIZE,
                   help=f"validation images per score (0: all) [default: {VAL_SIZE}, a search's]")
    p.add_argument("--bn-batches", type=int, default=BN_BATCHES,
                   help=f"training batches of 128 that recalibrate BatchNorm per score "
                        f"[default: {BN_BATCHES}, a search's]")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="add each scorer's capacity bias minus the reference's, with a 90%% interval from N "
                        "resamples of the networks [default: 0, no column]")
    p.add_argument("--data-root", default=None, help="where the data set is [default: where it was]")
    p.add_argument("--out", required=True, type=Path, help="folder of rows.csv, the table and the plot")
    return p


def check_args(args: argparse.Namespace) -> str | None:
    """The first usage error, before minutes of scoring, or None."""
    if not args.supernet and not args.scores and not args.proxy:
        return "give a --supernet, --scores or --proxy to score with"
    for flag, value, low in (("--val-size", args.val_size, 0), ("--bn-batches", args.bn_batches, 1),
                             ("--ref-seeds", args.ref_seeds, 1), ("--proxy-epochs", args.proxy_epochs, 1),
                             ("--proxy-train", args.proxy_train, 1), ("--jobs", args.jobs, 1),
                             ("--bootstrap", args.bootstrap, 0)):
        if value < low:
            return f"{flag} must be >= {low}, got {value}"
    if args.out.exists() and not args.out.is_dir():
        return f"--out {args.out} is a file; give a folder"
    for name, folders in args.supernet:
        missing = [f for f in folders if not Path(f).is_dir()]
        if missing:
            return f"--supernet {name}: no such folder {missing[0]}"
    return None


def table(ref: Reference, scores: Mapping[str, Mapping[str, float]], seconds: Mapping[str, float],
          flops: Mapping[str, float], bootstrap: int = 0) -> list[str]:
    """The markdown rows: the seed-to-seed ceiling (two seeds or more), then one row per scorer; with
    ``bootstrap`` resamples, a column of each scorer's capacity bias minus the reference's, with its 90% interval."""
    reference = ref.mean
    extra = " | bias minus reference's (90% interval)" if bootstrap else ""
    out = [f"| scorer | n | Kendall tau | Spearman | capacity bias | small-end lift | s per score{extra} |",
           "|---|---|---|---|---|---|---|" + ("---|" if bootstrap else "")]
    if len(ref.seeds) > 1:
        first, second = ref.seeds[0], ref.seeds[1]
        ids = sorted(ref.archs)
        x, y = [first[a] for a in ids], [second[a] for a in ids]
        out.append(f"| {CEILING} | {len(ids)} | {_corr('kendall', x, y):.3f} | {_corr('spearman', x, y):.3f} | "
                   f"{_corr('spearman', [flops[a] for a in ids], x):+.3f} (first seed) | | |"
                   + (" |" if bootstrap else ""))
    for name, score in scores.items():
        ids = sorted(set(score) & set(reference))
        x, y = [score[a] for a in ids], [reference[a] for a in ids]
        bias = _corr("spearman", [flops[a] for a in ids], x)
        row = (f"| {name} | {len(ids)} | {_corr('kendall', x, y):.3f} | {_corr('spearman', x, y):.3f} | {bias:+.3f} | "
               f"{small_end_lift(score, reference, flops):+.3f} | {seconds[name]:.2f} |")
        if bootstrap:
            gap = bias - _corr("spearman", [flops[a] for a in ids], y)
            low, high = bias_gap_interval(score, reference, flops, bootstrap)
            row += f" {gap:+.3f} ({low:+.3f} to {high:+.3f}) |"
        out.append(row)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    problem = check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        only = read_candidates(args.candidates) if args.candidates else None
        ref = read_reference(args.reference, args.setup, args.ref_seeds, only)
        args.out.mkdir(parents=True, exist_ok=True)
    except ShufflenasError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: --out {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    archs, reference = ref.archs, ref.mean
    costs = {a: summary(Architecture.from_string(t)) for a, t in archs.items()}
    flops = {a: float(c["flops"]) for a, c in costs.items()}
    scores: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    try:
        for name, folders in args.supernet:
            print(f"scoring {len(archs)} architectures with {name} ...", file=sys.stderr, flush=True)
            scores[name], seconds[name] = score_all(folders, archs, args.val_size, args.data_root, args.bn_batches)
        for name, path in args.scores:
            scores[name], seconds[name] = read_stored_scores(path, archs)
        if args.proxy:
            scores["proxy"], seconds["proxy"] = proxy_scores(ref, costs, args.out, epochs=args.proxy_epochs,
                                                             train_images=args.proxy_train, jobs=args.jobs,
                                                             data_root=args.data_root)
    except ShufflenasError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    trained = dict(scores)
    scores["-FLOPs"] = {a: -flops[a] for a in archs}
    scores["-params"] = {a: -float(c["params"]) for a, c in costs.items()}
    seconds.update(dict.fromkeys(FREE, 0.0))
    per_seed = {f"reference:{k}": s for k, s in zip(ref.setups, ref.seeds)} if len(ref.seeds) > 1 else {}
    fields = ["arch_id", "arch", "mflops", "params", "reference", *per_seed, *(f"score:{n}" for n in trained)]
    atomic_write_csv(args.out / "rows.csv", fields, [
        {"arch_id": a, "arch": archs[a], "mflops": round(flops[a] / 1e6, 3), "params": int(costs[a]["params"]),
         "reference": reference[a], **{k: s[a] for k, s in per_seed.items()},
         **{f"score:{n}": s.get(a, "") for n, s in trained.items()}} for a in sorted(archs, key=lambda a: flops[a])])
    ref_bias = _corr("spearman", [flops[a] for a in reference], [reference[a] for a in reference])
    seeds = f"the mean of {len(ref.seeds)} training seeds (setups {', '.join(ref.setups)})" if len(ref.seeds) > 1 \
        else f"setup {ref.setups[0]}"
    lines = [f"command: `{shlex.join(['benchmarks/finalist_fidelity.py', *argv])}`",
             f"machine: {platform.platform()}, {os.cpu_count()} CPUs; {time.perf_counter() - started:.0f} s wall",
             f"reference: {args.reference[0] if len(args.reference) == 1 else f'{len(args.reference)} files pooled'}"
             f": {seeds}, {len(reference)} architectures{f' of {args.candidates}' if args.candidates else ''} "
             f"({ref.epochs} epochs); its capacity bias (Spearman with FLOPs) {ref_bias:+.3f}",
             f"small-end lift: mean rank fraction given to the {SMALL_SHARE:.0%} of networks with the fewest FLOPs, "
             "scorer minus reference (> 0: the scorer ranks them above where training puts them)"]
    if args.proxy:
        lines.append(f"proxy: {args.proxy_epochs} epochs (ProxyConfig defaults, one thread) on {args.proxy_train} "
                     f"training images of the reference's split, validated on its validation images; "
                     "s per score: the median training seconds in proxy_rows.csv")
    text = "\n".join([*lines, "", *table(ref, scores, seconds, flops, args.bootstrap)]) + "\n"
    atomic_write_text(args.out / "finalist_fidelity.md", text)
    plot(args.out / "finalist_fidelity.png", reference, trained, flops)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
