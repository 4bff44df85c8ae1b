"""How well each accuracy estimate ranks stand-alone trained accuracy (issue 16, item 5).

Over a fixed candidate list (N samples of the default space plus the four paper presets; fixed by
``--n`` and ``--sample-seed``, written to ``OUT/candidates.csv``) and one data split (Fashion-MNIST,
``--limit`` images at ``--input-size`` px, ``--val-fraction`` of them validation; every estimate is
validated on that same split), each stage appends rows to ``OUT/rows.csv``:

- ``reference``: each candidate trained stand-alone (``train_proxy`` with a longer reference recipe:
  ``--ref-epochs``, ``--ref-batch``, label smoothing 0.1) on the whole training split under seeds 0
  and 1. ``--jobs J`` trains J at once, one torch thread each, in spawned processes;
- ``proxy``: the search's 2-epoch proxy (``ProxyConfig()`` defaults, epochs 2) on a seeded stratified
  subset of ``--proxy-train`` training images;
- ``zero-cost``: NASWOT and synflow;
- ``supernet --name NAME --dir DIR``: the one-shot score of the supernet at DIR (inherited weights,
  BN recalibrated on ``--bn-batches`` training batches, top-1 on the first ``--val-size`` validation
  images: by default the search's scoring, 2 batches of 128 and 500 images; ``--val-size 0``: all).
  ``--dir A B C``: their ensemble, the mean of the three scores, as a search with
  ``[supernet] checkpoint = [A, B, C]`` scores (``evaluator.supernet.ensemble.score_mean``);
- ``report``: ``OUT/fidelity.csv``, ``OUT/fidelity.md``, ``OUT/fidelity.png`` and the table: per
  estimator Spearman, Kendall tau and top-5 overlap against the mean reference accuracy, tau over
  the ceiling (the reference's own seed-0-vs-seed-1 tau), capacity bias (Spearman with FLOPs, beside
  the reference's) and seconds per candidate. ``--ref-seeds 0`` counts only those reference seeds
  (a longer reference with one seed done so far), ``--report-dir DIR`` writes the three files there;
- ``all``: reference seed 0, proxy, zero-cost, each ``--supernet NAME=DIR[,DIR...]``, reference seed 1, report.

Every finished row is appended at once (flush + fsync). A rerun skips rows already there: the key is
(stage, arch_id, seed, fingerprint), the fingerprint a hash of the data split and the stage's recipe,
so changing ``--ref-epochs`` adds new rows instead of mixing them with the old ones.

    .venv/bin/python benchmarks/accuracy_fidelity.py reference --jobs 2 --out runs/fidelity
    .venv/bin/python benchmarks/accuracy_fidelity.py all --jobs 2 --supernet spos=runs/supernet/spos --out runs/fidelity

(One file of about 750 lines, over the usual ~350: the stages share the candidate list, the row store and the
fingerprints, and a benchmark is read and run as one script.)
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import csv
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from evaluator.datasets import DataSplit, canonical_name, load_dataset, stratified_subset
from evaluator.proxy import ProxyConfig, train_proxy
from evaluator.supernet.scoring import BN_BATCHES, VAL_SIZE
from latency_models.atomic import atomic_write_csv, atomic_write_figure, atomic_write_text
from latency_models.costs.analytic import summary
from search_space import DEFAULT_SPACE, Architecture, get_preset
from search_space.errors import ShufflenasError

PRESETS = ("0.5x", "1.0x", "1.5x", "2.0x")
CANDIDATE_FIELDS = ("label", "arch", "arch_id", "mflops", "params")
ROW_FIELDS = ("stage", "label", "arch_id", "seed", "accuracy", "score", "seconds", "status", "fingerprint",
              "data_key", "train_images", "val_images", "checksum", "method", "supernet_train_s")
FIDELITY_FIELDS = ("estimator", "n", "spearman", "kendall", "tau_over_ceiling", "top5_overlap", "capacity_bias",
                   "reference_capacity_bias", "seconds_per_candidate")
CEILING = "ceiling: reference seed 0 vs 1"
TOP_K = 5


class BenchmarkError(ShufflenasError, ValueError):
    """A flag or a file of this benchmark does not fit the run."""


# -- candidates -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Candidate:
    """One architecture of the benchmark; MFLOPs and params at 224 px with 1,000 classes (the paper's)."""

    label: str
    arch: Architecture
    mflops: float
    params: int

    @property
    def arch_id(self) -> str:
        return self.arch.arch_id

    def to_csv(self) -> dict[str, object]:
        return {"label": self.label, "arch": self.arch.to_string(), "arch_id": self.arch_id,
                "mflops": round(self.mflops, 3), "params": self.params}


def candidates(n: int, seed: int) -> list[Candidate]:
    """The four paper presets, then ``n`` samples of the default space (fixed by ``n`` and ``seed``)."""
    archs = [(name, get_preset(name)) for name in PRESETS]
    archs += [(f"sample{i}", arch) for i, arch in enumerate(DEFAULT_SPACE.sample_many(n, seed=seed))]
    out = []
    for label, arch in archs:
        cost = summary(arch, input_size=224, num_classes=1000)
        out.append(Candidate(label, arch, cost["flops"] / 1e6, int(cost["params"])))
    return out


def check_candidates(path: Path, cands: list[Candidate], n: int, seed: int) -> bool:
    """True when ``path`` holds this very list; refused when it holds another (rows would be mixed)."""
    if not path.exists():
        return False
    with path.open(newline="", encoding="utf-8") as fh:
        there = [(r.get("label"), r.get("arch_id")) for r in csv.DictReader(fh)]
    if there != [(c.label, c.arch_id) for c in cands]:
        raise BenchmarkError(f"{path} lists {len(there)} other candidates than --n {n} --sample-seed {seed} "
                             "gives; rerun with the flags that wrote it or use another --out")
    return True


def write_candidates(path: Path, cands: list[Candidate]) -> None:
    atomic_write_csv(path, CANDIDATE_FIELDS, (c.to_csv() for c in cands))


def interleaved(cands: list[Candidate]) -> list[Candidate]:
    """Smallest, largest, second smallest, second largest, ...: a partial run spans every size."""
    by_size = sorted(cands, key=lambda c: (c.mflops, c.label))
    out = []
    while by_size:
        out.append(by_size.pop(0))
        if by_size:
            out.append(by_size.pop())
    return out


# -- data and recipes -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DataArgs:
    """The one split every estimate is validated on (load_dataset's arguments; data seed 0)."""

    dataset: str
    root: str | None
    input_size: int
    limit: int | None
    val_fraction: float

    def load(self) -> DataSplit:
        return load_dataset(self.dataset, root=self.root, input_size=self.input_size, limit=self.limit,
                            val_fraction=self.val_fraction, seed=0)

    def identity(self) -> dict[str, object]:
        return {"dataset": canonical_name(self.dataset), "input_size": self.input_size, "limit": self.limit,
                "val_fraction": round(self.val_fraction, 6), "seed": 0}


def digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def recipe_identity(config: ProxyConfig) -> dict[str, object]:
    """What changes a training's outcome: everything but the seed (its own key) and the thread count."""
    return {k: v for k, v in config.to_dict().items() if k not in ("seed", "threads")}


def proxy_split(data: DataSplit, n: int) -> DataSplit:
    """A seeded stratified subset of ``n`` training images; the validation split is unchanged."""
    if n >= data.train_size:
        return data
    keep = torch.from_numpy(stratified_subset(data.train_y.numpy(), n, np.random.default_rng(0)))
    return dataclasses.replace(data, train_x=data.train_x[keep], train_y=data.train_y[keep])


@dataclasses.dataclass(frozen=True)
class Run:
    """Everything a stage needs, built once from the flags."""

    out: Path
    cands: list[Candidate]
    data_args: DataArgs
    reference: ProxyConfig
    proxy: ProxyConfig
    proxy_train: int
    jobs: int
    ref_seeds: tuple[int, ...] | None = None   # report: the reference seeds counted (None: every seed there)
    report_dir: Path | None = None              # report: where fidelity.* go (None: out)

    @property
    def data_key(self) -> str:
        return digest(self.data_args.identity())

    def fingerprint(self, stage: str, **recipe: object) -> str:
        return digest({"data": self.data_args.identity(), "stage": stage, **recipe})

    @property
    def reference_fp(self) -> str:
        return self.fingerprint("reference", recipe=recipe_identity(self.reference))

    @property
    def proxy_fp(self) -> str:
        return self.fingerprint("proxy", recipe=recipe_identity(self.proxy), train=self.proxy_train)

    def zero_cost_fp(self, name: str) -> str:
        return self.fingerprint(name, batch=32 if name == "naswot" else None)


# -- the row store --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Row:
    """One estimate of one candidate, as a line of rows.csv."""

    stage: str
    label: str
    arch_id: str
    seed: int
    accuracy: float | None
    score: float
    seconds: float
    status: str
    fingerprint: str
    data_key: str
    train_images: int
    val_images: int
    checksum: str = ""
    method: str = ""
    supernet_train_s: float | None = None

    @property
    def key(self) -> tuple[str, str, int, str]:
        return (self.stage, self.arch_id, self.seed, self.fingerprint)

    def to_csv(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        for name in ("accuracy", "supernet_train_s"):
            out[name] = "" if out[name] is None else out[name]
        return out

    @classmethod
    def from_csv(cls, raw: dict[str, str | None]) -> Row | None:
        """The row, or None for a malformed line (e.g. the torn last line of a killed run)."""
        try:
            opt = {k: (float(raw[k]) if raw[k] else None) for k in ("accuracy", "supernet_train_s")}
            return cls(str(raw["stage"]), str(raw["label"]), str(raw["arch_id"]), int(raw["seed"] or ""),
                       opt["accuracy"], float(raw["score"] or ""), float(raw["seconds"] or ""), str(raw["status"]),
                       str(raw["fingerprint"]), str(raw["data_key"]), int(raw["train_images"] or ""),
                       int(raw["val_images"] or ""), raw["checksum"] or "", raw["method"] or "",
                       opt["supernet_train_s"])
        except (KeyError, TypeError, ValueError):
            return None


class RowStore:
    """rows.csv: read once, appended one fsynced line per finished estimate."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[Row] = []
        if path.exists():
            with path.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if reader.fieldnames is not None and tuple(reader.fieldnames) != ROW_FIELDS:
                    raise BenchmarkError(f"{path} is not this benchmark's rows file (columns "
                                         f"{','.join(reader.fieldnames)[:80]})")
                self.rows = [r for r in map(Row.from_csv, reader) if r is not None]
        self.keys = {r.key for r in self.rows}

    def append(self, row: Row) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+", newline="", encoding="utf-8") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                csv.writer(fh).writerow(ROW_FIELDS)
            else:
                fh.seek(fh.tell() - 1)
                if fh.read(1) != "\n":  # a torn line from a killed run: end it, it is skipped on reading
                    fh.write("\n")
            csv.DictWriter(fh, fieldnames=ROW_FIELDS).writerow(row.to_csv())
            fh.flush()
            os.fsync(fh.fileno())
        self.rows.append(row)
        self.keys.add(row.key)


# -- training stages (reference, proxy), in-process or in spawned workers ----------------------------
@dataclasses.dataclass(frozen=True)
class Task:
    """One training: plain values, so it pickles into a worker process."""

    stage: str
    label: str
    arch: str
    arch_id: str
    seed: int
    config: dict
    train_subset: int | None
    fingerprint: str


_DATA: dict[str, DataSplit] = {}


def _init_worker(data_args: DataArgs) -> None:
    """Each worker loads the split once and trains with one torch thread."""
    torch.set_num_threads(1)
    _DATA["full"] = data_args.load()


def _train(task: Task) -> tuple[float, str, float, int, str | None]:
    """(accuracy, status, seconds, training images, error) of one training."""
    data = _DATA["full"] if task.train_subset is None else proxy_split(_DATA["full"], task.train_subset)
    try:
        result = train_proxy(Architecture.from_string(task.arch), data, ProxyConfig.from_dict(task.config))
    except ShufflenasError as exc:
        return math.nan, "error", 0.0, data.train_size, str(exc).splitlines()[0]
    return result.accuracy, result.status, result.train_time_s, data.train_size, result.reason


def run_trainings(run: Run, store: RowStore, tasks: list[Task], data: DataSplit) -> int:
    """Train the tasks the store does not hold yet, appending each row as it finishes; returns failures."""
    todo = [t for t in tasks if (t.stage, t.arch_id, t.seed, t.fingerprint) not in store.keys]
    print(f"{len(tasks) - len(todo)} of {len(tasks)} already in {store.path}; {len(todo)} to train", flush=True)
    failures = 0

    def record(task: Task, outcome: tuple[float, str, float, int, str | None], done: int) -> None:
        nonlocal failures
        accuracy, status, seconds, train_images, reason = outcome
        if status == "error":
            failures += 1
            print(f"  [{task.stage}] {task.label} seed {task.seed}: not trained: {reason} ({done}/{len(todo)})",
                  flush=True)
            return
        store.append(Row(task.stage, task.label, task.arch_id, task.seed, accuracy, accuracy, round(seconds, 3),
                         status, task.fingerprint, run.data_key, train_images, data.val_size))
        print(f"  [{task.stage}] {task.label} seed {task.seed}: acc {accuracy:.4f} in {seconds:.1f} s"
              f"{'' if status == 'ok' else f' ({status}: {reason})'} ({done}/{len(todo)})", flush=True)

    if run.jobs == 1 or len(todo) <= 1:
        _DATA["full"] = data  # the split main() loaded: the same tensors a worker loads for itself
        for done, task in enumerate(todo, 1):
            record(task, _train(task), done)
        return failures
    os.environ["OMP_NUM_THREADS"] = "1"
    ctx = multiprocessing.get_context("spawn")
    done = 0
    try:
        with futures.ProcessPoolExecutor(run.jobs, mp_context=ctx, initializer=_init_worker,
                                         initargs=(run.data_args,)) as pool:
            for seed in sorted({t.seed for t in todo}):  # every seed-0 row before any seed-1 training starts
                pending = {pool.submit(_train, t): t for t in todo if t.seed == seed}
                for future in futures.as_completed(pending):
                    done += 1
                    record(pending[future], future.result(), done)
    except BrokenProcessPool:
        raise BenchmarkError(f"a training process died (killed, or out of memory); the {done} rows finished are in "
                             f"{store.path}: rerun the same command to go on") from None
    return failures


def stage_reference(run: Run, store: RowStore, data: DataSplit, seeds: Sequence[int]) -> int:
    config = run.reference
    config.check(data)
    print(f"reference: {config.epochs} epochs, batch {config.batch_size}, lr {config.lr:g} {config.schedule}, "
          f"label smoothing {config.label_smoothing:g}, weight decay {config.weight_decay:g} on "
          f"{data.train_size} training images; seeds {', '.join(map(str, seeds))}", flush=True)
    order = interleaved(run.cands)
    tasks = [Task("reference", c.label, c.arch.to_string(), c.arch_id, s, config.replace(seed=s).to_dict(), None,
                  run.reference_fp) for s in seeds for c in order]
    return run_trainings(run, store, tasks, data)


def stage_proxy(run: Run, store: RowStore, data: DataSplit) -> int:
    config = run.proxy
    subset = proxy_split(data, run.proxy_train)
    config.check(subset)
    print(f"proxy: ProxyConfig defaults with {config.epochs} epochs (batch {config.batch_size}, lr {config.lr:g} "
          f"{config.schedule}) on {subset.train_size} of the {data.train_size} training images", flush=True)
    tasks = [Task("proxy", c.label, c.arch.to_string(), c.arch_id, 0, config.to_dict(), run.proxy_train,
                  run.proxy_fp) for c in interleaved(run.cands)]
    return run_trainings(run, store, tasks, data)


# -- scoring stages (zero-cost, supernet), in-process -----------------------------------------------
def stage_zero_cost(run: Run, store: RowStore, data: DataSplit) -> int:
    from evaluator.zero_cost import naswot, synflow

    scorers = {"naswot": lambda arch: naswot(arch, data, seed=0, threads=1),
               "synflow": lambda arch: synflow(arch, data.input_size, data.num_classes, seed=0, threads=1)}
    todo = [(name, c) for name in scorers for c in run.cands
            if (name, c.arch_id, 0, run.zero_cost_fp(name)) not in store.keys]
    print(f"zero-cost: NASWOT (batch 32) and synflow; {len(todo)} of {2 * len(run.cands)} to score", flush=True)
    for done, (name, cand) in enumerate(todo, 1):
        started = time.perf_counter()
        value = scorers[name](cand.arch)
        seconds = time.perf_counter() - started
        store.append(Row(name, cand.label, cand.arch_id, 0, None, value, round(seconds, 4), "ok",
                         run.zero_cost_fp(name), run.data_key, data.train_size, data.val_size))
        print(f"  [{name}] {cand.label} seed 0: score {value:.3f} in {seconds:.2f} s ({done}/{len(todo)})", flush=True)
    return 0


def supernet_train_seconds(folder: Path) -> float | None:
    """The sum of the seconds column of the supernet run's metrics.csv, when it is there."""
    path = folder / "metrics.csv"
    if not path.is_file():
        return None
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return round(sum(float(r["seconds"]) for r in csv.DictReader(fh)), 1)
    except (KeyError, TypeError, ValueError):
        return None


def stage_supernet(run: Run, store: RowStore, data: DataSplit, name: str, folders: Sequence[str], bn_batches: int,
                   val_size: int | None) -> int:
    from evaluator.supernet.ensemble import check_inside, check_scorer, load_scorer, score_mean
    from evaluator.supernet.scoring import ScoringData
    from evaluator.supernet.store import supernet_file

    supernets, info = load_scorer(folders)
    check_scorer(supernets, info, data)
    stage = f"supernet:{name}"
    val_size = val_size or None  # 0 and None both mean the whole split; rows of it keep their earlier key
    fp = run.fingerprint(stage, checksum=info.checksum, bn_batches=bn_batches,
                         **({} if val_size is None else {"val_size": val_size}))
    each_s = [supernet_train_seconds(supernet_file(folder).parent) for folder in folders]
    train_s = None if None in each_s else round(sum(each_s), 1)
    todo = [c for c in run.cands if (stage, c.arch_id, 0, fp) not in store.keys]
    print(f"{stage}: {info.path} (checksum {info.checksum}, {info.method}, {info.epochs} epochs"
          f"{'' if train_s is None else f', {train_s:.0f} s of training'}); BN recalibrated on {bn_batches} "
          f"batches, validated on {val_size or 'all'} images; {len(todo)} of {len(run.cands)} to score", flush=True)
    scoring = ScoringData.from_split(data, bn_batches=bn_batches, val_size=val_size)
    failures = 0
    for done, cand in enumerate(todo, 1):
        try:
            check_inside(supernets, cand.arch)
            result = score_mean(supernets, cand.arch, scoring, threads=1)
        except ShufflenasError as exc:
            failures += 1
            print(f"  [{stage}] {cand.label}: not scored: {str(exc).splitlines()[0]} ({done}/{len(todo)})", flush=True)
            continue
        store.append(Row(stage, cand.label, cand.arch_id, 0, result.accuracy, result.accuracy,
                         round(result.seconds, 4), "ok", fp, run.data_key, data.train_size, result.val_images,
                         info.checksum, info.method, train_s))
        print(f"  [{stage}] {cand.label} seed 0: acc {result.accuracy:.4f} in {result.seconds:.2f} s "
              f"({done}/{len(todo)})", flush=True)
    return failures


# -- report ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Fidelity:
    """One estimator's agreement with the reference ranking (NaN where fewer than 3 or constant values)."""

    estimator: str
    n: int
    spearman: float
    kendall: float
    tau_over_ceiling: float
    top5_overlap: float
    capacity_bias: float
    reference_capacity_bias: float
    seconds_per_candidate: float


def _corr(kind: str, x: Sequence[float], y: Sequence[float]) -> float:
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan
    fn = stats.spearmanr if kind == "spearman" else stats.kendalltau
    return float(fn(x, y).statistic)


def top_overlap(a: dict[str, float], b: dict[str, float], k: int = TOP_K) -> float:
    """|top-k(a) & top-k(b)| / k over their common candidates (ties broken by label)."""
    common = sorted(set(a) & set(b))
    k = min(k, len(common))
    if k == 0:
        return math.nan
    top = [set(sorted(common, key=lambda c, s=s: (-s[c], c))[:k]) for s in (a, b)]
    return len(top[0] & top[1]) / k


def estimates(run: Run, store: RowStore) -> tuple[dict[int, dict[str, float]], dict[str, dict[str, float]],
                                                  dict[str, float], list[str]]:
    """(reference accuracy per seed, score per estimator, seconds per estimator, notes), keyed by arch_id."""
    wanted = {c.arch_id for c in run.cands}
    ok = [r for r in store.rows if r.arch_id in wanted and r.status == "ok" and math.isfinite(r.score)]
    ref: dict[int, dict[str, float]] = {}
    for r in ok:
        if r.stage == "reference" and r.fingerprint == run.reference_fp and (run.ref_seeds is None
                                                                             or r.seed in run.ref_seeds):
            ref.setdefault(r.seed, {})[r.arch_id] = r.score
    chosen: dict[str, list[Row]] = {"proxy": [r for r in ok if r.stage == "proxy" and r.fingerprint == run.proxy_fp]}
    for name in ("naswot", "synflow"):
        chosen[name] = [r for r in ok if r.stage == name and r.fingerprint == run.zero_cost_fp(name)]
    notes = []
    expected = {"reference": run.reference_fp, "proxy": run.proxy_fp, "naswot": run.zero_cost_fp("naswot"),
                "synflow": run.zero_cost_fp("synflow")}
    if run.ref_seeds is not None:
        other = sum(1 for r in ok if r.stage == "reference" and r.fingerprint == run.reference_fp
                    and r.seed not in run.ref_seeds)
        notes.append(f"reference: seeds {', '.join(map(str, run.ref_seeds))} only (--ref-seeds); {other} rows of "
                     "other seeds left out")
    for stage, fp in expected.items():
        other = sum(1 for r in store.rows if r.stage == stage and r.arch_id in wanted and r.fingerprint != fp)
        if other:
            notes.append(f"{stage}: {other} rows of another data split or recipe left out (the report takes the "
                         "flags of the stage that wrote the rows)")
    for stage in sorted({r.stage for r in ok if r.stage.startswith("supernet:") and r.data_key == run.data_key}):
        rows = [r for r in ok if r.stage == stage and r.data_key == run.data_key]
        latest = rows[-1].fingerprint  # the supernet (checksum, BN batches) scored last
        chosen[stage] = [r for r in rows if r.fingerprint == latest]
        first = chosen[stage][0]
        notes.append(f"{stage}: checksum {first.checksum}, {first.method}"
                     + ("" if first.supernet_train_s is None else f", {first.supernet_train_s:.0f} s of supernet "
                        "training (its metrics.csv)"))
        if len(chosen[stage]) < len(rows):
            notes.append(f"{stage}: {len(rows) - len(chosen[stage])} rows of an earlier supernet or BN setting "
                         f"left out (using checksum {chosen[stage][0].checksum})")
    scores = {name: {r.arch_id: r.score for r in rows} for name, rows in chosen.items()}
    seconds = {name: statistics.fmean(r.seconds for r in rows) if rows else math.nan for name, rows in chosen.items()}
    scores["-FLOPs"] = {c.arch_id: -c.mflops for c in run.cands}
    scores["-params"] = {c.arch_id: -float(c.params) for c in run.cands}
    seconds["-FLOPs"] = seconds["-params"] = 0.0
    seconds["reference"] = statistics.fmean(r.seconds for r in ok if r.stage == "reference"
                                            and r.fingerprint == run.reference_fp) if ref else math.nan
    return ref, scores, seconds, notes


def fidelity(run: Run, store: RowStore) -> tuple[list[Fidelity], dict[int, dict[str, float]], dict[str, float],
                                                 dict[str, dict[str, float]], list[str]]:
    """(one Fidelity per estimator, ceiling first; reference per seed; its mean; the scores; notes)."""
    ref, scores, seconds, notes = estimates(run, store)
    flops = {c.arch_id: c.mflops for c in run.cands}
    mean = {a: statistics.fmean(ref[s][a] for s in ref if a in ref[s]) for a in set().union(*ref.values())} \
        if ref else {}
    both = sorted(set(ref.get(0, {})) & set(ref.get(1, {})))
    s0, s1 = [ref[0][a] for a in both], [ref[1][a] for a in both]
    ceiling_tau = _corr("kendall", s0, s1)
    out = [Fidelity(CEILING, len(both), _corr("spearman", s0, s1), ceiling_tau, 1.0 if both else math.nan,
                    top_overlap(ref.get(0, {}), ref.get(1, {})), _corr("spearman", s0, [flops[a] for a in both]),
                    _corr("spearman", [mean[a] for a in both], [flops[a] for a in both]), seconds["reference"])]
    order = sorted(n for n in scores if n.startswith("supernet:")) + ["proxy", "naswot", "synflow", "-FLOPs",
                                                                       "-params"]
    for name in order:
        common = sorted(set(scores[name]) & set(mean))
        est, acc, fl = [scores[name][a] for a in common], [mean[a] for a in common], [flops[a] for a in common]
        tau = _corr("kendall", est, acc)
        ratio = tau / ceiling_tau if math.isfinite(tau) and math.isfinite(ceiling_tau) and ceiling_tau else math.nan
        out.append(Fidelity(name, len(common), _corr("spearman", est, acc), tau, ratio,
                            top_overlap({a: scores[name][a] for a in common}, {a: mean[a] for a in common}),
                            _corr("spearman", est, fl), _corr("spearman", acc, fl), seconds[name]))
    coverage = {s: len(v) for s, v in sorted(ref.items())}
    notes.insert(0, f"reference: {len(mean)} of {len(run.cands)} candidates trained (per seed: "
                    f"{', '.join(f'seed {s} n={k}' for s, k in coverage.items()) or 'none'}); the mean is over the "
                    f"seeds each candidate has")
    return out, ref, mean, scores, notes


def _fmt(value: float, spec: str = "+.3f") -> str:
    return "-" if not math.isfinite(value) else format(value, spec)


def markdown_table(rows: list[Fidelity]) -> str:
    lines = ["| estimator | n | Spearman | Kendall tau | tau / ceiling | top-5 overlap | Spearman with FLOPs "
             "(estimator) | (reference) | s per candidate |", "|---|---|---|---|---|---|---|---|---|"]
    for f in rows:
        lines.append(f"| {f.estimator} | {f.n} | {_fmt(f.spearman)} | {_fmt(f.kendall)} | "
                     f"{_fmt(f.tau_over_ceiling, '.2f')} | {_fmt(f.top5_overlap, '.1f')} | {_fmt(f.capacity_bias)} | "
                     f"{_fmt(f.reference_capacity_bias)} | {_fmt(f.seconds_per_candidate, '.2f')} |")
    return "\n".join(lines)


def plot(path: Path, rows: list[Fidelity], mean: dict[str, float], scores: dict[str, dict[str, float]],
         run: Run, ref_seeds: tuple[dict[str, float], dict[str, float]]) -> Path | None:
    """Estimator score vs mean reference accuracy, one panel per estimator (the first: seed 0 vs 1)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError:
        return None
    labels = {c.arch_id: c.label for c in run.cands}
    panels = [(f, ref_seeds[0], ref_seeds[1]) if f.estimator == CEILING else (f, scores[f.estimator], mean)
              for f in rows]
    cols = min(4, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4 * cols, 3.4 * nrows))
    for i, (f, xs, ys) in enumerate(panels, 1):
        ax = fig.add_subplot(nrows, cols, i)
        common = sorted(set(xs) & set(ys))
        x = [(100 if f.estimator == CEILING else 1) * xs[a] for a in common]
        y = [100 * ys[a] for a in common]
        ax.scatter(x, y, s=16, c=["tab:red" if labels[a] in PRESETS else "tab:blue" for a in common])
        if not common:  # e.g. the ceiling while one reference seed is counted
            ax.text(0.5, 0.5, "no candidate with both", ha="center", va="center", fontsize=8, transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
        for a, xv, yv in zip(common, x, y):
            if labels[a] in PRESETS:
                ax.annotate(labels[a], (xv, yv), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_title(f"{f.estimator}\ntau {_fmt(f.kendall)}, n={f.n}", fontsize=9)
        ax.set_xlabel("reference seed 0 top-1 %" if f.estimator == CEILING else "estimator score", fontsize=8)
        ax.set_ylabel("reference seed 1 top-1 %" if f.estimator == CEILING else "reference mean top-1 %", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return atomic_write_figure(path, fig, dpi=110)


def stage_report(run: Run, store: RowStore) -> int:
    rows, ref, mean, scores, notes = fidelity(run, store)
    dest = run.report_dir or run.out
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(dest / "fidelity.csv", FIDELITY_FIELDS, (dataclasses.asdict(f) for f in rows))
    d, r, p = run.data_args, run.reference, run.proxy
    setup = (f"{len(run.cands)} candidates ({', '.join(PRESETS)} + {len(run.cands) - len(PRESETS)} sampled from the "
             f"default space); {d.dataset} at {d.input_size} px, {d.limit or 'all'} images, validation fraction "
             f"{d.val_fraction:.4g}, data seed 0. Reference: train_proxy, {r.epochs} epochs, batch {r.batch_size}, "
             f"lr {r.lr:g} {r.schedule}, label smoothing {r.label_smoothing:g}, weight decay {r.weight_decay:g}, "
             f"1 thread, seeds {' and '.join(map(str, sorted(ref))) or 'none'}, whole training split. "
             f"Proxy: {p.epochs} epochs (ProxyConfig defaults) on {run.proxy_train} training images. "
             "Ceiling: the reference's own seed-0-vs-seed-1 agreement.")
    table = markdown_table(rows)
    text = "\n".join(["# Accuracy-estimate fidelity", "", setup, "", table, "", *[f"- {n}" for n in notes],
                      "", "Against the mean reference top-1; capacity bias = Spearman with MFLOPs at 224 px; "
                      "s per candidate = mean seconds of one estimate (the ceiling row: one reference training)."])
    atomic_write_text(dest / "fidelity.md", text + "\n")
    png = plot(dest / "fidelity.png", rows, mean, scores, run, (ref.get(0, {}), ref.get(1, {})))
    print(setup + "\n\n" + table + "\n")
    for note in notes:
        print(f"- {note}")
    print(f"\nwritten: {dest / 'fidelity.csv'}, {dest / 'fidelity.md'}" + (f", {png}" if png else ""))
    return 0


# -- command line ---------------------------------------------------------------------------------
def _fraction(text: str) -> float:
    try:
        return float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a fraction: {text!r} (e.g. 1/3 or 0.25)") from None


def _seeds(text: str) -> list[int]:
    try:
        seeds = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be whole numbers, e.g. 0,1; got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"seeds must be whole numbers >= 0, got {text!r}")
    return seeds


def _name(text: str) -> str:
    if not text or len(text) > 64 or not all(ch.isalnum() or ch in "._-" for ch in text):
        raise argparse.ArgumentTypeError(f"a supernet name is letters, digits, '.', '_' or '-', got {text!r}")
    return text


def _supernet_arg(text: str) -> tuple[str, tuple[str, ...]]:
    name, sep, folders = text.partition("=")
    dirs = tuple(f for f in folders.split(",") if f)
    if not sep or not dirs:
        raise argparse.ArgumentTypeError(f"--supernet takes NAME=DIR (or NAME=DIR,DIR,... for an ensemble), "
                                         f"got {text!r}")
    return _name(name), dirs


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", default="runs/accuracy_fidelity", help="folder of candidates.csv and rows.csv")
    common.add_argument("--n", type=int, default=24, help="architectures sampled from the default space")
    common.add_argument("--sample-seed", type=int, default=0)
    common.add_argument("--dataset", default="fashion-mnist")
    common.add_argument("--data-root", default=None)
    common.add_argument("--input-size", type=int, default=16)
    common.add_argument("--limit", type=int, default=7500, help="images loaded (train + val, stratified; 0: all)")
    common.add_argument("--val-fraction", type=_fraction, default=1 / 3, help="e.g. 1/3 (5,000 train / 2,500 val)")
    common.add_argument("--ref-epochs", type=int, default=4)
    common.add_argument("--ref-batch", type=int, default=64)
    common.add_argument("--proxy-epochs", type=int, default=2)
    common.add_argument("--proxy-train", type=int, default=2000, help="training images of the proxy")
    common.add_argument("--proxy-batch", type=int, default=ProxyConfig().batch_size)
    common.add_argument("--jobs", type=int, default=1, help="trainings at once (processes, 1 thread each)")
    common.add_argument("--bn-batches", type=int, default=BN_BATCHES, help="BN recalibration batches of a supernet score")
    common.add_argument("--val-size", type=int, default=VAL_SIZE,
                        help="validation images of a supernet score (0: the whole split)")
    top = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="stage", required=True)
    sub.add_parser("candidates", parents=[common], help="write candidates.csv only")
    ref = sub.add_parser("reference", parents=[common], help="stand-alone trainings (seeds 0 and 1)")
    ref.add_argument("--seeds", type=_seeds, default=[0, 1])
    sub.add_parser("proxy", parents=[common], help="the search's 2-epoch proxy")
    sub.add_parser("zero-cost", parents=[common], help="NASWOT and synflow")
    sup = sub.add_parser("supernet", parents=[common], help="one-shot scores of a trained supernet")
    sup.add_argument("--name", type=_name, required=True, help="the estimator's name in the report")
    sup.add_argument("--dir", required=True, nargs="+",
                     help="the folder `shufflenas supernet train --out` wrote; several: their ensemble (mean score)")
    rep = sub.add_parser("report", parents=[common], help="fidelity.csv / .md / .png and the table")
    rep.add_argument("--ref-seeds", type=_seeds, default=None,
                     help="count only these reference seeds, e.g. 0 (default: every seed in rows.csv)")
    rep.add_argument("--report-dir", default=None, help="write fidelity.csv/.md/.png here (default: --out)")
    every = sub.add_parser("all", parents=[common], help="every stage in turn, then the report")
    every.add_argument("--supernet", type=_supernet_arg, action="append", default=[], metavar="NAME=DIR[,DIR...]")
    return top


def build_run(args: argparse.Namespace) -> Run:
    for flag, value, low in (("--n", args.n, 0), ("--jobs", args.jobs, 1), ("--proxy-train", args.proxy_train, 1),
                             ("--bn-batches", args.bn_batches, 1), ("--sample-seed", args.sample_seed, 0),
                             ("--val-size", args.val_size, 0)):
        if value < low:
            raise BenchmarkError(f"{flag} must be >= {low}, got {value}")
    reference = ProxyConfig(epochs=args.ref_epochs, batch_size=args.ref_batch, lr=0.1, schedule="cosine",
                            label_smoothing=0.1, weight_decay=5e-4, threads=1)
    proxy = ProxyConfig(epochs=args.proxy_epochs, batch_size=args.proxy_batch, threads=1)
    data_args = DataArgs(args.dataset, args.data_root, args.input_size, args.limit or None, args.val_fraction)
    seeds, report_dir = getattr(args, "ref_seeds", None), getattr(args, "report_dir", None)
    return Run(Path(args.out), candidates(args.n, args.sample_seed), data_args, reference, proxy, args.proxy_train,
               args.jobs, None if seeds is None else tuple(seeds), None if report_dir is None else Path(report_dir))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    print("command: " + shlex.join(["benchmarks/accuracy_fidelity.py", *argv]))
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads here; each training and score runs on 1 thread"
          f"{f', {args.jobs} trainings at once' if args.jobs > 1 else ''}", flush=True)
    started = time.perf_counter()
    try:
        run = build_run(args)
        names = [name for name, _ in getattr(args, "supernet", [])]
        if len(set(names)) < len(names):
            raise BenchmarkError(f"--supernet names must differ, got {', '.join(names)}")
        listed = check_candidates(run.out / "candidates.csv", run.cands, args.n, args.sample_seed)
        store = RowStore(run.out / "rows.csv")
        failures = 0
        data = None
        if args.stage not in ("candidates", "report"):
            data = run.data_args.load()
            print(f"data: {data.name} at {data.input_size} px, {data.train_size} training / {data.val_size} "
                  f"validation images ({len(run.cands)} candidates)", flush=True)
            from evaluator.supernet.store import read_info

            named = getattr(args, "supernet", [])
            folders = args.dir if args.stage == "supernet" else [f for _, fs in named for f in fs]
            for folder in folders:  # refused before anything is written (and before hours of training)
                read_info(folder).check_data(data)
        if not listed:
            write_candidates(run.out / "candidates.csv", run.cands)
        if data is not None:
            if args.stage == "reference":
                failures += stage_reference(run, store, data, args.seeds)
            elif args.stage == "proxy":
                failures += stage_proxy(run, store, data)
            elif args.stage == "zero-cost":
                failures += stage_zero_cost(run, store, data)
            elif args.stage == "supernet":
                failures += stage_supernet(run, store, data, args.name, args.dir, args.bn_batches, args.val_size)
            else:  # all
                failures += stage_reference(run, store, data, [0])
                failures += stage_proxy(run, store, data)
                failures += stage_zero_cost(run, store, data)
                for name, folders in args.supernet:
                    failures += stage_supernet(run, store, data, name, folders, args.bn_batches, args.val_size)
                failures += stage_reference(run, store, data, [1])
        if args.stage in ("report", "all"):
            stage_report(run, store)
    except ShufflenasError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"{args.stage}: {time.perf_counter() - started:.0f} s this invocation; rows in {run.out / 'rows.csv'}"
          f"{f'; {failures} not done (see above)' if failures else ''}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
