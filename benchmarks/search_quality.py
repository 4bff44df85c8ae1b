"""Search quality on trained accuracy: random search, TPE, NSGA-II, multi-objective successive halving
(and supernet + NSGA-II) at equal compute, scored by their finalists' reference accuracy.

Every method is a real search (``experiments.search.run_search``) over the default space on the
proxy data (Fashion-MNIST, ``--limit`` images at ``--input-size`` px, ``--epochs`` epochs), one study
per method and seed in one SQLite storage (``OUT/studies.db``), objectives accuracy and measured
local-cpu latency, and the latency of the paper-calibrated ARM and GPU estimates recorded on every
trial. The paper presets are not seeded into the searches: each method finds its own front.

**Equal compute.** A search runs in increments of trials (a resumed study) until the proxy
training it is charged for reaches ``--budget-s`` CPU-seconds. Each increment asks for the trials
that the mean charge per finished trial so far predicts for 3/4 of the remaining budget (at least
``--step``), so increments shrink as the budget nears, and carries the budget itself
(``budget_s``): the driver starts nothing once the study's charge reaches it, so the overshoot is
the trials in flight when it did (one with ``--workers 1``), even when a cheap first trial makes an
increment ask for too many. The report gives every method's charged seconds and its last
increment's. Charging rule: a trial costs its recorded ``train_time_s`` (wall seconds
of a 1-thread training, about its CPU-seconds on a free core), also when its result was copied from
another study of the storage (methods of one seed share a proxy setup, so the benchmark never
trains one architecture twice, but each method pays as if it had); a trial that repeats an
architecture of its own study costs nothing (a search run alone reuses that result too). A
successive-halving trial costs every rung it reached: the rung's epochs x the trial's seconds per
epoch (``train_time_s / epochs_run`` of its highest rung), since each rung trains from scratch. Failed
trials cost what they recorded (usually nothing); latency measurement is not charged. MO-SH samples
at random (``[fidelity] rungs``, ``eta``, the default promotion rule). Supernet + NSGA-II (and, for
comparison, supernet + TPE and supernet + random: methods ``supernet-tpe``, ``supernet-random``) is charged its
scoring seconds only (the supernet's own training is not charged) and runs only with
``--supernet DIR`` (a supernet trained on the benchmark's data: docs/supernet.md, "How well it ranks").

**Finalists and reference accuracy.** Each study's finalists are ``experiments.finalists.
pick_finalists`` (``--pick front``: the top ``--k`` of every target's front, spread along it;
``--pick front+bands``: those plus the most accurate trial of each of ``--k`` log-latency bands they
leave empty; in a successive-halving
study only the trials of the highest rung compete, as on ``report.front_trials``). Each finalist and
each paper preset is trained stand-alone with one reference recipe (``--recipe``, default
``experiments/configs/train_fashion.toml``, with ``--ref-epochs`` / ``--ref-limit`` /
``--ref-input-size``), once per architecture and reference seed (``--ref-seeds N``: the recipe's
seed and the N - 1 next ones, on the same data split; the reference accuracy is their mean, which
divides the variance of one training's noise by N: two 8-epoch trainings of one architecture differ
by 0.67 points on average, docs/search.md): runs live in
``OUT/reference/<setup key>/<arch_id>/`` (one setup key per seed; resumed from their checkpoints)
and each result is appended to ``OUT/reference.csv`` as it ends. More seeds later reuse the first.

**Scores** per method and seed: the hypervolume of the finalists' (reference accuracy, measured
local-cpu ms), with one reference point for the whole run (the worst accuracy and the worst latency
of every finalist and preset), normalised by the box between that point and the best values (so 1
would be one point best in both); its ratio to random search's on the same seed; which presets the
finalists dominate (>= accuracy and <= latency, one of them strictly) on local-cpu (measured) and
on the ARM and GPU estimates; the fastest finalist with at least the 0.5x / 1.0x preset's reference
accuracy and its speed-up (preset ms / finalist ms; "15% faster" = speed-up >= 1.15); and the
median FLOPs (at 224 px) of the search's front beside the presets'. A front that sits at the
smallest FLOPs is the symptom of a proxy biased toward small networks.

Resume: rerunning the same command skips finished work (searches at their budget, trained
references) and redraws the report; a larger ``--budget-s`` or more ``--seeds`` extend the run.
Outputs in ``OUT``: search_quality.md / .csv / .png, searches.csv, finalists.csv, reference.csv.

Defaults (``--budget-s 200``, 3 seeds, 4 methods, ``--limit 1000`` at 16 px, ``--k 2``, reference 2 epochs
on 2,000 images at 16 px, 2 workers): about 4,000 CPU-s of training (12 searches x 200, plus about 45
reference trainings of 20-60 s) and about 10 minutes of latency measurement: some 40 minutes wall on
2 free cores, far more on a loaded machine.

    .venv/bin/python benchmarks/search_quality.py --out benchmarks/results/search_quality

For the goal (enough trials for the model-based samplers to act, a less biased reference), about
12,000 CPU-s of training plus some 25 minutes of measurement, about 2 h wall on 2 free cores:

    .venv/bin/python benchmarks/search_quality.py --budget-s 600 --ref-epochs 4 --ref-limit 4000 \\
        --out benchmarks/results/search_quality

The supernet run of record (session 12): the searches of 150 CPU-s, their finalists and the presets
re-trained for 8 epochs on 10,000 images (about 9,400 s of reference training for 50 architectures,
two at once; the three supernet + random searches about 9 minutes each):

    .venv/bin/python benchmarks/search_quality.py --budget-s 150 --seeds 0 1 2 \\
        --methods random supernet supernet-random --supernet runs/supernet/sandwich_ids5 --k 2 \\
        --pick front+bands --workers 2 --ref-epochs 8 --ref-limit 10000 --out runs/search_quality_ref8_bands

Micro check (2 min wall, 85 CPU-s, on the loaded 2-core machine at niceness 10: 2 searches of 20
CPU-s, 7 reference trainings of 1 epoch):

    nice -n 10 .venv/bin/python benchmarks/search_quality.py --budget-s 20 --seeds 0 --methods random sha \\
        --limit 600 --ref-epochs 1 --ref-limit 600 --k 2 --workers 1 --out /tmp/sq-micro

(About 880 lines, over the usual ~350: the stages share the plan, the row files and the scoring,
and a benchmark is read and run as one script.)
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python benchmarks/search_quality.py` from anywhere
    sys.path.insert(0, str(REPO))

from evaluator.training.recipe import DataSpec, TrainRecipe, read_train_table  # noqa: E402
from experiments import trial_record as keys  # noqa: E402
from experiments.compute_charge import Charge, study_charge  # noqa: E402
from experiments.config import load_config  # noqa: E402
from experiments.finalists import PICKS, RULES, pick_finalists, setup_key  # noqa: E402
from experiments.report import comparable, hypervolume, non_dominated  # noqa: E402
from experiments.trial_record import TrialRecord, finite  # noqa: E402
from latency_models.atomic import atomic_write_csv, atomic_write_figure, atomic_write_text  # noqa: E402
from search_space import PAPER_PRESETS, Architecture  # noqa: E402
from search_space.errors import ShufflenasError  # noqa: E402

METHODS = ("random", "tpe", "nsga2", "sha", "supernet", "supernet-tpe", "supernet-random")
SAMPLER = {"random": "random", "tpe": "tpe", "nsga2": "nsga2", "sha": "random", "supernet": "nsga2",
           "supernet-tpe": "tpe", "supernet-random": "random"}
TITLE = {"random": "random search", "tpe": "TPE", "nsga2": "NSGA-II", "sha": "MO successive halving",
         "supernet": "supernet + NSGA-II", "supernet-tpe": "supernet + TPE", "supernet-random": "supernet + random"}
TARGETS = ("local-cpu", "paper-arm-sd810", "paper-gpu-1080ti")
TARGET_TITLE = {"local-cpu": "local-cpu (measured)", "paper-arm-sd810": "ARM SD810 (est.)",
                "paper-gpu-1080ti": "GPU 1080 Ti (est.)"}
LOCAL = "local-cpu"
PRESETS = ("0.5x", "1.0x", "1.5x", "2.0x")
GOAL_PRESETS = ("0.5x", "1.0x")
GOAL_HV_RATIO = 1.1
GOAL_SPEEDUP = 1.15
FILL = 0.75           # an increment aims at this share of the remaining budget
IDLE_INCREMENTS = 3   # increments in a row that charge nothing: the sampler only repeats; stop
IDLE_STOP = f"{IDLE_INCREMENTS} increments in a row charged nothing (the sampler only repeats architectures)"
DEFAULT_RECIPE = REPO / "experiments" / "configs" / "train_fashion.toml"
DONE = "1"            # last column of every appended row: a torn line never ends with it

SEARCH_FIELDS = ("study", "method", "seed", "budget_s", "charged_s", "trials", "increments", "last_increment_s",
                 "wall_s", "stop", "complete")
REF_FIELDS = ("setup_key", "arch_id", "arch", "label", "accuracy", "top5", "epochs", "dataset", "input_size", "limit",
              "seconds", "complete")
FINALIST_FIELDS = ("method", "seed", "arch_id", "arch", "picked_for", "proxy_accuracy", "rung", "reference_accuracy",
                   "mflops", *(f"ms:{t}" for t in TARGETS))
RESULT_FIELDS = ("method", "seed", "charged_s", "last_increment_s", "trials", "finalists", "scored", "hypervolume",
                 "hv_ratio", *(f"dominates:{t}" for t in TARGETS),
                 *(f"{f}:{p}" for p in GOAL_PRESETS for f in ("fastest_ms", "speedup")),
                 "front_size", "front_mflops_median", "front_mflops_min", "front_mflops_max")


def uses_supernet(method: str) -> bool:
    """Whether a method scores its candidates with the ``--supernet`` (any of its samplers)."""
    return method.startswith("supernet")


class BenchError(ShufflenasError):
    """The benchmark cannot run as asked (one line, exit 2)."""


# -- the plan ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Bench:
    """Everything one run does: the searches, the finalists and the reference recipe."""

    out: Path
    budget_s: float
    seeds: tuple[int, ...]
    methods: tuple[str, ...]
    proxy: Mapping[str, Any]            # [proxy] keys common to every search (dataset, limit, input size)
    epochs: int
    rungs: tuple[int, ...]
    eta: int
    step: int
    k: int
    workers: int
    data_spec: DataSpec
    recipe: TrainRecipe
    recipe_file: str | None = None
    config_file: str | None = None      # a search config whose keys the benchmark's own settings override
    supernet: tuple[str, ...] = ()       # one folder, or several: an ensemble (their mean score)
    presets: tuple[str, ...] = PRESETS
    pick: str = "front"                 # finalists: experiments.finalists.PICKS
    ref_seeds: int = 1                  # reference trainings per architecture (recipe seeds seed, seed+1, ...)

    @property
    def storage(self) -> str:
        return f"sqlite:///{self.out / 'studies.db'}"

    @staticmethod
    def study(method: str, seed: int) -> str:
        return f"{method}-seed{seed}"

    @property
    def runnable(self) -> tuple[str, ...]:
        return tuple(m for m in self.methods if not uses_supernet(m) or self.supernet)

    @property
    def ref_key(self) -> str:
        return setup_key(self.data_spec, self.recipe)

    @property
    def ref_recipes(self) -> tuple[TrainRecipe, ...]:
        """One recipe per reference seed: the same data split, other initial weights and batch order."""
        return tuple(self.recipe.replace(seed=self.recipe.seed + i) for i in range(self.ref_seeds))

    @property
    def ref_input_size(self) -> int:
        return self.data_spec.input_size(self.recipe)

    def config(self, method: str, seed: int, trials: int = 1) -> Any:
        """The search config of one method and seed, asking for ``trials`` finished trials."""
        sha = method == "sha"
        over: dict[str, Any] = {
            "study": self.study(method, seed), "storage": self.storage, "out": str(self.out), "trials": trials,
            "sampler": SAMPLER[method], "seed": seed, "workers": self.workers, "presets": [],
            "targets": list(TARGETS), "objectives": ["accuracy", f"latency:{LOCAL}"], "progress": False,
            "reuse_results": True, "evaluator": "supernet" if uses_supernet(method) else "auto",
            "proxy": {**self.proxy, "epochs": self.rungs[-1] if sha else self.epochs},
            "fidelity": {"rungs": list(self.rungs), "eta": self.eta} if sha else {"rungs": []},
            # the driver stops within the trial that crosses it, however many trials were asked for
            "budget_s": self.budget_s,
        }
        if uses_supernet(method):
            over["supernet"] = {"checkpoint": list(self.supernet)}
        return load_config(self.config_file, over)

    def fingerprint(self) -> dict[str, Any]:
        """What makes two runs' searches comparable (budget, seeds, methods and k may change)."""
        text = Path(self.config_file).read_text() if self.config_file else None
        found = {"proxy": dict(self.proxy), "epochs": self.epochs, "rungs": list(self.rungs), "eta": self.eta,
                 "config_file": text, "supernet": _folders(self.supernet)}
        if self.supernet:  # scores read the supernet's own split (runs before that scored on the proxy's)
            found["supernet_data"] = "supernet"
        return found


def _folders(supernet: tuple[str, ...]) -> str | list[str] | None:
    """The supernet folders as the fingerprint stores them (one: a path, as runs before ensembles wrote)."""
    paths = [os.path.abspath(f) for f in supernet]
    return None if not paths else paths[0] if len(paths) == 1 else paths


def check_fingerprint(bench: Bench) -> None:
    """``OUT/setup.json`` holds the search setup; another one in the same folder is refused."""
    path = bench.out / "setup.json"
    mine = json.loads(json.dumps(bench.fingerprint()))
    if path.exists():
        stored = json.loads(path.read_text())
        if stored != mine:
            diff = sorted(k for k in set(stored) | set(mine) if stored.get(k) != mine.get(k))
            raise BenchError(f"{bench.out} holds a run with another search setup ({', '.join(diff)} differ); "
                             "use another --out")
        return
    atomic_write_text(path, json.dumps(mine, indent=1, sort_keys=True) + "\n")


# -- appended row files -----------------------------------------------------------------------------
class RowLog:
    """A CSV of finished rows: read once (a torn or foreign line is skipped), appended with fsync."""

    def __init__(self, path: Path, fields: Sequence[str]) -> None:
        self.path, self.fields = path, tuple(fields)
        self.rows: list[dict[str, str]] = []
        if path.exists():
            with path.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if reader.fieldnames is not None and tuple(reader.fieldnames) != self.fields:
                    raise BenchError(f"{path} is not this benchmark's file "
                                     f"(columns {','.join(reader.fieldnames)[:80]})")
                self.rows = [r for r in reader if r.get("complete") == DONE]

    def append(self, row: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+", newline="", encoding="utf-8") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                csv.writer(fh, lineterminator="\n").writerow(self.fields)
            else:
                fh.seek(fh.tell() - 1)
                if fh.read(1) != "\n":  # a killed run's torn line: end it (it is skipped on reading)
                    fh.write("\n")
            full = {**{f: "" for f in self.fields}, **{k: _cell(v) for k, v in row.items()}, "complete": DONE}
            csv.DictWriter(fh, fieldnames=self.fields, lineterminator="\n").writerow(full)
            fh.flush()
            os.fsync(fh.fileno())
        self.rows.append({k: str(v) for k, v in full.items()})


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else ""
    return str(value)


def write_table(path: Path, fields: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    atomic_write_csv(path, fields, ({f: _cell(row.get(f)) for f in fields} for row in rows))


# -- equal compute ----------------------------------------------------------------------------------
def next_increment(charge: Charge, budget_s: float, step: int, growth: float = 1.0) -> int:
    """Trials to add: those the mean charge per finished trial predicts for ``FILL`` of the remaining
    budget, at least ``step`` (``step`` while nothing has been charged yet). ``growth`` > 1 says the
    mean will rise as the study grows (successive halving: later trials are promoted more), so the
    prediction is that much smaller: an increment may undershoot (another follows), never overshoot."""
    if charge.finished == 0 or charge.seconds <= 0:
        return step
    remaining = max(0.0, budget_s - charge.seconds)
    return max(step, math.ceil(FILL * remaining * charge.finished / (charge.seconds * growth)))


def promotion_growth(rungs: Sequence[int], eta: int) -> float:
    """Mean charge per trial of a large successive-halving study over that of its first rung alone:
    ``1 + sum(rungs[i] / rungs[0] / eta**i)`` (each rung trains from scratch; 1/eta**i reach rung i)."""
    return 1.0 + sum(r / rungs[0] / eta ** i for i, r in enumerate(rungs[1:], 1))


def load_study_if_any(storage: str, name: str) -> Any:
    from experiments.storage import load_study, open_storage, study_names

    path = Path(storage.removeprefix("sqlite:///"))
    if storage.startswith("sqlite:///") and not path.exists():
        return None
    handle = open_storage(storage, create=False)
    return load_study(handle, name) if name in study_names(handle) else None


@dataclasses.dataclass(frozen=True)
class SearchRow:
    study: str
    method: str
    seed: int
    budget_s: float
    charged_s: float
    trials: int
    increments: int
    last_increment_s: float | None
    wall_s: float
    stop: str


def run_to_budget(bench: Bench, method: str, seed: int, *, say: Callable[[str], None] = print,
                  echo: Callable[[str], None] | None = None, settled: bool = False) -> SearchRow:
    """Run (or resume) one method's search in increments until its charge reaches the budget.

    ``settled``: an earlier invocation stopped this search at this budget because its sampler only
    repeated architectures; a rerun then leaves it as it is instead of asking again."""
    from experiments.search import run_search

    name = bench.study(method, seed)
    study = load_study_if_any(bench.storage, name)
    charge = study_charge(study) if study is not None else Charge(0.0, 0)
    started, increments, last, idle, stop = time.perf_counter(), 0, None, 0, "budget"
    while not settled and charge.seconds < bench.budget_s:
        sha = method == "sha"
        step = max(bench.step, bench.eta ** (len(bench.rungs) - 1)) if sha else bench.step  # one full bracket
        add = next_increment(charge, bench.budget_s, step, promotion_growth(bench.rungs, bench.eta) if sha else 1.0)
        run_search(bench.config(method, seed, charge.finished + add), echo=echo)
        before = charge
        charge = study_charge(load_study_if_any(bench.storage, name))
        increments += 1
        last = charge.seconds - before.seconds
        say(f"[{name}] +{charge.finished - before.finished} trials: {charge.seconds:.1f} / {bench.budget_s:g} CPU-s "
            f"charged, {charge.finished} trials")
        idle = idle + 1 if last <= 0 else 0
        if idle >= IDLE_INCREMENTS:
            stop = IDLE_STOP
            break
    return SearchRow(name, method, seed, bench.budget_s, round(charge.seconds, 3), charge.finished, increments,
                     None if last is None else round(last, 3), round(time.perf_counter() - started, 1), stop)


# -- finalists --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Point:
    """One architecture in the scoring: its reference accuracy, latency per target and FLOPs."""

    label: str
    arch_id: str
    arch: str
    accuracy: float | None
    ms: Mapping[str, float | None]
    flops: float | None
    proxy_accuracy: float | None = None
    rung: int | None = None
    picked_for: tuple[str, ...] = ()


def pick(study: Any, k: int, rule: str = "front") -> list[Point]:
    """The study's finalists (``pick_finalists``: in a successive-halving study its highest rung only)."""
    from optuna.trial import TrialState

    trials = comparable(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if not trials:
        return []
    records: dict[str, TrialRecord] = {}
    for t in sorted(trials, key=lambda t: t.number):
        record = TrialRecord.from_user_attrs(t.user_attrs)
        if record.arch_id:
            records.setdefault(record.arch_id, record)
    out = []
    for finalist in pick_finalists(study, k, rule):
        r = records[finalist.arch.arch_id]
        out.append(Point("", finalist.arch.arch_id, finalist.arch.to_string(), None,
                         {t: r.latency_ms(t) for t in TARGETS}, _num(r.costs.get(keys.FLOPS)),
                         _num(r.accuracy), r.rung, finalist.picked_for))
    return out


def front_flops(study: Any) -> list[float]:
    """FLOPs of the search's own front (``report.front_trials``: proxy accuracy vs local-cpu ms)."""
    from experiments.report import front_trials

    return [float(t.user_attrs[keys.FLOPS]) for t in front_trials(study) if finite(t.user_attrs.get(keys.FLOPS))]


def _num(value: Any) -> float | None:
    return float(value) if finite(value) else None


# -- reference trainings ----------------------------------------------------------------------------
def train_references(bench: Bench, todo: Mapping[str, tuple[str, Architecture]], log: RowLog, *,
                     say: Callable[[str], None] = print) -> dict[str, dict[str, str]]:
    """Train every architecture of ``todo`` (arch_id -> (label, arch)) with the reference recipe under
    each reference seed, unless ``reference.csv`` holds that run; returns arch_id -> row (accuracy,
    top-5 and seconds: over its seeds, the mean and the sum) for every architecture whose seeds are all done."""
    from evaluator.training.parallel import TrainJob, TrainOutcome, train_many

    keys = [setup_key(bench.data_spec, recipe) for recipe in bench.ref_recipes]
    runs = {(r["setup_key"], r["arch_id"]): r for r in log.rows if r["setup_key"] in keys}
    run_of = {(arch_id if len(keys) == 1 else f"{arch_id} (seed {recipe.seed})"): (key, recipe, arch_id, arch)
              for key, recipe in zip(keys, bench.ref_recipes) for arch_id, (_, arch) in todo.items()
              if (key, arch_id) not in runs}
    jobs = [TrainJob(arch, bench.data_spec, recipe, str(bench.out / "reference" / key / arch_id), label)
            for label, (key, recipe, arch_id, arch) in run_of.items()]
    total = len(todo) * len(keys)
    say(f"reference trainings: {len(todo)} architectures x {len(keys)} seed(s), {total - len(jobs)} already trained, "
        f"{len(jobs)} to train ({describe_recipe(bench)}, {bench.workers} at once)")

    def record(outcome: TrainOutcome) -> None:
        if not outcome.ok or outcome.result is None:
            return
        (key, _, arch_id, _), result = run_of[str(outcome.job.label)], outcome.result
        row = {"setup_key": key, "arch_id": arch_id, "arch": outcome.job.arch.to_string(), "label": todo[arch_id][0],
               "accuracy": float(result.val_top1), "top5": float(result.val_top5), "epochs": int(result.epochs),
               "dataset": bench.data_spec.name, "input_size": bench.ref_input_size, "limit": bench.data_spec.limit,
               "seconds": float(result.seconds)}
        log.append(row)
        runs[(key, arch_id)] = log.rows[-1]

    outcomes = train_many(jobs, workers=bench.workers, progress=True, on_outcome=record)
    for outcome in outcomes:
        if not outcome.ok:
            say(f"reference training of {outcome.job.label} failed: {outcome.error}")
    done = {}
    for arch_id in {a for _, a in runs}:
        rows = [runs.get((key, arch_id)) for key in keys]
        if all(rows):  # every seed trained: the mean accuracies, the seconds of all of them
            mean = {f: str(sum(float(r[f]) for r in rows) / len(rows)) for f in ("accuracy", "top5")}
            done[arch_id] = {**rows[0], **mean, "seconds": str(sum(float(r["seconds"]) for r in rows))}
    return done


def describe_recipe(bench: Bench) -> str:
    limit = f", {bench.data_spec.limit} images" if bench.data_spec.limit else ""
    first, last = bench.recipe.seed, bench.recipe.seed + bench.ref_seeds - 1
    seeds = f"; the mean of {bench.ref_seeds} training seeds ({first}-{last})" if bench.ref_seeds > 1 else ""
    return f"{bench.recipe.epochs} epochs, {bench.data_spec.name} {bench.ref_input_size} px{limit}{seeds}"


def preset_points(bench: Bench, targets: Mapping[str, Any]) -> dict[str, Point]:
    """The presets' latency on every target, taken as the search takes it (measured local-cpu from
    the measurement cache or measured now; the calibrated estimates), and their FLOPs."""
    from experiments.trial_steps import local_latency
    from latency_models.costs.analytic import summary

    config = bench.config(bench.runnable[0] if bench.runnable else "random", bench.seeds[0])
    out = {}
    for name in bench.presets:
        arch = PAPER_PRESETS[name]
        ms = {t: local_latency(arch, targets[t], config).ms for t in TARGETS}
        flops = summary(arch, config.deploy_input, config.deploy_classes)[keys.FLOPS]
        out[name] = Point(name, arch.arch_id, arch.to_string(), None, ms, float(flops))
    return out


# -- scoring ----------------------------------------------------------------------------------------
def dominates(points: Iterable[Point], other: Point, target: str) -> bool:
    """Some point has >= accuracy and <= latency on ``target`` than ``other``, one of them strictly."""
    a, m = other.accuracy, other.ms.get(target)
    if a is None or m is None:
        return False
    for p in points:
        pa, pm = p.accuracy, p.ms.get(target)
        if pa is None or pm is None:
            continue
        if pa >= a and pm <= m and (pa > a or pm < m):
            return True
    return False


def fastest_at(points: Iterable[Point], accuracy: float, target: str = LOCAL) -> Point | None:
    """The fastest point on ``target`` with at least ``accuracy``."""
    ok = [p for p in points if p.accuracy is not None and p.ms.get(target) is not None and p.accuracy >= accuracy]
    return min(ok, key=lambda p: (p.ms[target], -p.accuracy)) if ok else None


@dataclasses.dataclass(frozen=True)
class Box:
    """The hypervolume's reference point (worst accuracy, worst ms) and the best corner."""

    worst_acc: float
    worst_ms: float
    best_acc: float
    best_ms: float

    @classmethod
    def around(cls, points: Iterable[Point], target: str = LOCAL) -> Box | None:
        pts = [(p.accuracy, p.ms.get(target)) for p in points if p.accuracy is not None and finite(p.ms.get(target))]
        if not pts:
            return None
        return cls(min(a for a, _ in pts), max(m for _, m in pts), max(a for a, _ in pts), min(m for _, m in pts))

    def hypervolume(self, points: Iterable[Point], target: str = LOCAL) -> float:
        """Normalised hypervolume: the area the points dominate up to the reference point, over the box."""
        area = hypervolume([(p.accuracy, p.ms.get(target)) for p in points], [True, False],
                           (self.worst_acc, self.worst_ms))
        span = (self.best_acc - self.worst_acc) * (self.worst_ms - self.best_ms)
        return area / span if span > 0 else 0.0


def score(points: Sequence[Point], presets: Mapping[str, Point], box: Box | None) -> dict[str, Any]:
    """One method-and-seed's scores from its finalists (those with a reference accuracy)."""
    scored = [p for p in points if p.accuracy is not None]
    row: dict[str, Any] = {"finalists": len(points), "scored": len(scored),
                           "hypervolume": box.hypervolume(scored) if box is not None and scored else None}
    for target in TARGETS:
        row[f"dominates:{target}"] = " ".join(n for n, p in presets.items() if dominates(scored, p, target)) or "none"
    for name in GOAL_PRESETS:
        preset = presets.get(name)
        best = fastest_at(scored, preset.accuracy) if preset is not None and preset.accuracy is not None else None
        if best is not None and preset is not None and preset.ms.get(LOCAL):
            row[f"fastest_ms:{name}"] = best.ms[LOCAL]
            row[f"speedup:{name}"] = preset.ms[LOCAL] / best.ms[LOCAL]
    return row


def front_of(points: Sequence[Point], target: str = LOCAL) -> list[Point]:
    ok = [p for p in points if p.accuracy is not None and finite(p.ms.get(target))]
    return sorted((ok[i] for i in non_dominated([(p.accuracy, p.ms[target]) for p in ok], [True, False])),
                  key=lambda p: p.ms[target])


# -- the report -------------------------------------------------------------------------------------
def _fmt(value: Any, spec: str = ".3f", none: str = "-") -> str:
    return format(value, spec) if isinstance(value, (int, float)) and math.isfinite(value) else none


def verdict(bench: Bench, results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The goal's two checks for the best method (highest mean hypervolume ratio to random)."""
    by_method: dict[str, list[Mapping[str, Any]]] = {}
    for row in results:
        by_method.setdefault(row["method"], []).append(row)
    candidates = {m: rows for m, rows in by_method.items() if m != "random" and all(finite(r.get("hv_ratio"))
                                                                                     for r in rows)}
    if "random" not in by_method or not candidates:
        return ["goal: not judged (needs random search and another method with a hypervolume on every seed)"]
    best = max(candidates, key=lambda m: statistics.mean(r["hv_ratio"] for r in candidates[m]))
    rows = candidates[best]
    ratios = ", ".join(f"seed {r['seed']} {r['hv_ratio']:.2f}" for r in rows)
    hv_ok = all(r["hv_ratio"] >= GOAL_HV_RATIO for r in rows) and len(rows) >= len(bench.seeds)
    lines = [f"best method: {TITLE[best]} (mean hypervolume ratio to random "
             f"{statistics.mean(r['hv_ratio'] for r in rows):.2f}; {ratios})",
             f"goal hypervolume >= {GOAL_HV_RATIO}x random on every seed: {'met' if hv_ok else 'NOT met'}"]
    present = [p for p in GOAL_PRESETS if p in bench.presets]
    if present:
        fast = [all(finite(r.get(f"speedup:{p}")) and r[f"speedup:{p}"] >= GOAL_SPEEDUP for p in present) for r in rows]
        lines.append(f"goal a finalist >= 15% faster (speed-up >= {GOAL_SPEEDUP}) than {' and '.join(present)} on "
                     f"local-cpu at >= their reference accuracy: {sum(fast)} of {len(rows)} seeds "
                     f"({'met' if all(fast) else 'NOT met'} on every seed)")
    return lines


def markdown(bench: Bench, head: Sequence[str], results: Sequence[Mapping[str, Any]], presets: Mapping[str, Point],
             notes: Sequence[str]) -> str:
    lines = ["# Search quality on trained accuracy", "", *[f"- {h}" for h in head], ""]
    cols = ["method", "seed", "charged CPU-s (last incr.)", "trials", "finalists", "HV", "HV / random",
            *[f"dominates on {TARGET_TITLE[t]}" for t in TARGETS],
            *[f"fastest >= {p} acc (speed-up)" for p in GOAL_PRESETS if p in presets],
            "front MFLOPs median (min-max)"]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in results:
        cells = [TITLE[r["method"]], str(r["seed"]), f"{r['charged_s']:.4g} ({_fmt(r.get('last_increment_s'), '.3g')})",
                 str(r["trials"]), f"{r['scored']}/{r['finalists']}", _fmt(r.get("hypervolume")),
                 _fmt(r.get("hv_ratio"), ".2f"), *[r[f"dominates:{t}"] for t in TARGETS]]
        for p in GOAL_PRESETS:
            if p in presets:
                ms = r.get(f"fastest_ms:{p}")
                cells.append(f"{ms:.1f} ms ({r[f'speedup:{p}']:.2f}x)" if finite(ms) else "none")
        cells.append(f"{_fmt(r.get('front_mflops_median'), '.3g')} ({_fmt(r.get('front_mflops_min'), '.3g')}-"
                     f"{_fmt(r.get('front_mflops_max'), '.3g')})" if finite(r.get("front_mflops_median")) else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| preset | reference acc | " + " | ".join(f"{TARGET_TITLE[t]} ms" for t in TARGETS) + " | MFLOPs |",
              "|---|---|" + "---|" * len(TARGETS) + "---|"]
    for name, p in presets.items():
        lines.append(f"| {name} | {_fmt(p.accuracy)} | " + " | ".join(_fmt(p.ms.get(t), ".2f") for t in TARGETS) +
                     f" | {_fmt(p.flops / 1e6 if p.flops else None, '.3g')} |")
    lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def plot(path: Path, finalists: Mapping[tuple[str, int], Sequence[Point]], presets: Mapping[str, Point],
         deploy_input: int = 224) -> None:
    """Finalists and presets in (local-cpu ms, reference accuracy), one colour per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = dict(zip(METHODS, ("tab:gray", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:red",
                                 "tab:brown")))
    markers = "osD^v<>p*h"
    fig, ax = plt.subplots(figsize=(9.5, 5.5), dpi=100)
    seeds = sorted({s for _, s in finalists})
    labelled = set()
    for (method, seed), points in sorted(finalists.items()):
        pts = [p for p in points if p.accuracy is not None and finite(p.ms.get(LOCAL))]
        if not pts:
            continue
        marker = markers[seeds.index(seed) % len(markers)]
        label = TITLE[method] if method not in labelled else None
        labelled.add(method)
        ax.scatter([p.ms[LOCAL] for p in pts], [p.accuracy for p in pts], c=colours[method], marker=marker, s=36,
                   alpha=0.85, label=label, zorder=3)
        front = front_of(pts)
        ax.step([p.ms[LOCAL] for p in front], [p.accuracy for p in front], where="post", c=colours[method],
                lw=0.8, alpha=0.6, zorder=2)
    for name, p in presets.items():
        if p.accuracy is not None and finite(p.ms.get(LOCAL)):
            ax.scatter([p.ms[LOCAL]], [p.accuracy], c="black", marker="*", s=140, zorder=4,
                       label="paper presets" if name == next(iter(presets)) else None)
            ax.annotate(name, (p.ms[LOCAL], p.accuracy), textcoords="offset points", xytext=(6, -10), fontsize=9)
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
    ax.set_xlabel(f"local-cpu latency, ms (measured, ONNX Runtime, {deploy_input} px, batch 1; log scale)")
    ax.set_ylabel("reference accuracy (top-1)")
    ax.set_title("Finalists of each search at equal compute, and the paper presets"
                 + (f"\n(marker = seed: {', '.join(f'{markers[i % len(markers)]} {s}' for i, s in enumerate(seeds))})"
                    if len(seeds) > 1 else ""), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a point
    fig.tight_layout()
    atomic_write_figure(path, fig)
    plt.close(fig)


# -- the whole run ----------------------------------------------------------------------------------
def run(bench: Bench, command: str, *, say: Callable[[str], None] = print,
        echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every stage in turn (each resumes): searches, finalists, reference trainings, the report."""
    import warnings

    from latency_models.measurement.device_runtime import NicedWarning

    with warnings.catch_warnings():  # niced: one line here, not a warning per measurement
        warnings.simplefilter("ignore", NicedWarning)
        return _run(bench, command, say=say, echo=echo)


def _run(bench: Bench, command: str, *, say: Callable[[str], None],
         echo: Callable[[str], None] | None) -> dict[str, Any]:
    from evaluator.ray_connect import ensure_ray, release_ray
    from experiments.search import SearchDriver

    started, load0, niceness = time.perf_counter(), os.getloadavg()[0], os.nice(0)
    if niceness > 0:
        say(f"note: niceness {niceness}: new local-cpu measurements wait for other work and come out inflated")
    first = bench.config(bench.runnable[0] if bench.runnable else "random", bench.seeds[0])
    driver = SearchDriver(first)
    driver.prepare()  # every check of the search (data, targets, supernet) before anything is written
    data = getattr(driver, "_data", None)
    wanted = [m for m in bench.methods if uses_supernet(m)]
    if bench.supernet and wanted and first.evaluator != "supernet":
        SearchDriver(bench.config(wanted[0], bench.seeds[0])).prepare()  # the supernet fits the proxy data
    from evaluator.training.loop import plan_run

    plan_run(PAPER_PRESETS[(bench.presets or PRESETS)[0]], bench.data_spec, bench.recipe,
             bench.out / "reference" / bench.ref_key / "check")  # the reference data and recipe, nothing written
    check_fingerprint(bench)
    notes: list[str] = []
    if wanted and not bench.supernet:
        notes.append(f"{', '.join(TITLE[m] for m in wanted)}: not run: no --supernet DIR given; train one on the benchmark's data with "
                     "`shufflenas supernet train` (docs/supernet.md) and pass --supernet DIR")
        say(notes[-1])
    owns_ray = ensure_ray(None) if bench.workers > 1 else False
    try:
        searches = RowLog(bench.out / "searches.csv", SEARCH_FIELDS)
        rows: dict[tuple[str, int], dict[str, Any]] = {}
        for seed in bench.seeds:
            for method in bench.runnable:
                logged = next((r for r in searches.rows if r["study"] == bench.study(method, seed)
                               and _float(r["budget_s"]) == bench.budget_s), None)
                settled = logged is not None and logged["stop"] == IDLE_STOP
                row = dataclasses.asdict(run_to_budget(bench, method, seed, say=say, echo=echo, settled=settled))
                if logged is None:
                    searches.append(row)
                elif row["increments"] == 0:  # reached its budget in an earlier invocation: as it was logged
                    row.update(last_increment_s=_num(_float(logged["last_increment_s"])), stop=logged["stop"])
                rows[(method, seed)] = row
        finalists: dict[tuple[str, int], list[Point]] = {}
        flops: dict[tuple[str, int], list[float]] = {}
        for (method, seed) in rows:
            study = load_study_if_any(bench.storage, bench.study(method, seed))
            finalists[(method, seed)] = pick(study, bench.k, bench.pick) if study is not None else []
            flops[(method, seed)] = front_flops(study) if study is not None else []
        presets = preset_points(bench, driver.targets)
        todo: dict[str, tuple[str, Architecture]] = {p.arch_id: (name, Architecture.from_string(p.arch))
                                                      for name, p in presets.items()}
        for (method, seed), points in finalists.items():
            for p in points:
                todo.setdefault(p.arch_id, ("", Architecture.from_string(p.arch)))
        refs = train_references(bench, todo, RowLog(bench.out / "reference.csv", REF_FIELDS), say=say)
    finally:
        release_ray(owns_ray)

    def acc(arch_id: str) -> float | None:
        return _num(_float(refs[arch_id]["accuracy"])) if arch_id in refs else None

    presets = {n: dataclasses.replace(p, accuracy=acc(p.arch_id)) for n, p in presets.items()}
    finalists = {key: [dataclasses.replace(p, accuracy=acc(p.arch_id), label=key[0]) for p in pts]
                 for key, pts in finalists.items()}
    box = Box.around([p for pts in finalists.values() for p in pts] + list(presets.values()))
    results = []
    for (method, seed), search in rows.items():
        result = {"method": method, "seed": seed, "charged_s": search["charged_s"], "trials": search["trials"],
                  "last_increment_s": search["last_increment_s"], **score(finalists[(method, seed)], presets, box)}
        fl = [f / 1e6 for f in flops[(method, seed)]]
        result.update({"front_size": len(fl), "front_mflops_median": statistics.median(fl) if fl else None,
                       "front_mflops_min": min(fl, default=None), "front_mflops_max": max(fl, default=None)})
        results.append(result)
    for result in results:
        base = next((r for r in results if r["method"] == "random" and r["seed"] == result["seed"]), None)
        hv, ref = result.get("hypervolume"), base.get("hypervolume") if base else None
        result["hv_ratio"] = hv / ref if finite(hv) and finite(ref) and ref > 0 else None
    results.sort(key=lambda r: (r["seed"], METHODS.index(r["method"])))

    write_table(bench.out / "search_quality.csv", RESULT_FIELDS, results)
    write_table(bench.out / "finalists.csv", FINALIST_FIELDS, [
        {"method": m, "seed": s, "arch_id": p.arch_id, "arch": p.arch, "picked_for": ";".join(p.picked_for),
         "proxy_accuracy": p.proxy_accuracy, "rung": p.rung, "reference_accuracy": p.accuracy,
         "mflops": p.flops / 1e6 if p.flops else None, **{f"ms:{t}": p.ms.get(t) for t in TARGETS}}
        for (m, s), pts in sorted(finalists.items()) for p in pts])
    plot(bench.out / "search_quality.png", finalists, presets, first.deploy_input)
    ref_seconds = sum(float(r["seconds"]) for r in refs.values() if r["arch_id"] in todo)
    stops = [f"{TITLE[m]} seed {s}: stopped early: {r['stop']}" for (m, s), r in rows.items() if r["stop"] != "budget"]
    missing = [a for a in todo if a not in refs]
    if missing:
        stops.append(f"{len(missing)} reference training(s) failed (see above; rerun to retry): "
                     f"{', '.join(missing[:5])}; their finalists are left out of the scores")
    head = [f"command: `{command}`",
            f"machine: {platform.platform()}, {os.cpu_count()} CPUs; load average {load0:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end; {time.perf_counter() - started:.0f} s wall this invocation"
            + (f"; niceness {niceness}: other work came first, so measured local-cpu latencies (new ones; the "
               "measurement cache keeps earlier ones) are inflated" if niceness > 0 else ""),
            f"proxy: {describe_data(bench, data)}, {bench.epochs} epochs (MO-SH: rungs {list(bench.rungs)} epochs, eta "
            f"{bench.eta}, random sampling), 1 thread per training, {bench.workers} at once; objectives accuracy and "
            f"measured local-cpu latency ({first.deploy_input} px, batch 1); presets not seeded. The model-based "
            "samplers are sized as run_search sizes them, from each increment's trial count (TPE start-up, NSGA-II "
            "population)",
            f"equal compute: {bench.budget_s:g} CPU-s of proxy training per search, in increments (each for "
            f"{FILL:.0%} of the remaining budget at the mean charge per trial so far, at least {bench.step} trials), "
            "each carrying the budget (the driver starts nothing once it is reached). Charged: each trial's train_time_s, also when "
            "copied from another study; repeats within a study free; MO-SH: every rung reached (rung epochs x "
            "seconds per epoch). Latency measurement and reference training are not charged",
            f"finalists: k = {bench.k} per target, pick {bench.pick} ({RULES[bench.pick]}); MO-SH: its highest rung only",
            f"reference accuracy: trained ({describe_recipe(bench)}), recipe "
            f"{bench.recipe_file or 'TrainRecipe defaults'}, 1 thread, setup "
            f"{', '.join(setup_key(bench.data_spec, r) for r in bench.ref_recipes)}; "
            f"{len(todo)} architectures, {ref_seconds:.0f} s of training in all",
            "HV: hypervolume of the finalists' (reference accuracy, local-cpu ms), reference point the worst accuracy "
            + (f"({box.worst_acc:.4f}) and the worst latency ({box.worst_ms:.2f} ms) of every finalist and preset in "
               f"this run, over the box to the best ({box.best_acc:.4f}, {box.best_ms:.2f} ms)" if box else
               "and latency of the run (no point scored)"),
            "dominates: presets some finalist beats (>= reference accuracy and <= latency, one strictly); fastest >= P "
            "acc: the fastest finalist on local-cpu with at least preset P's reference accuracy, speed-up = P's ms / "
            f"its ms; front MFLOPs: the search's own front (proxy accuracy vs local-cpu) at {first.deploy_input} px"]
    text = markdown(bench, head, results, presets, [*verdict(bench, results), *stops, *notes])
    atomic_write_text(bench.out / "search_quality.md", text)
    say(text)
    return {"results": results, "presets": presets, "finalists": finalists, "searches": rows, "box": box,
            "missing": missing}


def describe_data(bench: Bench, data: Any) -> str:
    name = bench.proxy.get("dataset", "digits")
    size = bench.proxy.get("input_size", 16)
    if data is not None and hasattr(data, "train_size"):
        return f"{name}, {data.train_size} training / {data.val_size} validation images at {size} px"
    return f"{name}, {bench.proxy.get('limit') or 'all'} images at {size} px"


def _float(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


# -- the command line -------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"error: {message}\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results/search_quality", help="studies, rows and the report")
    p.add_argument("--budget-s", type=float, default=200.0, help="CPU-seconds of proxy training per search")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(METHODS), help=f"of {', '.join(METHODS)}")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-root", default=None)
    p.add_argument("--limit", type=int, default=1000, help="proxy images (train + val, stratified)")
    p.add_argument("--input-size", type=int, default=16, help="proxy input size, px")
    p.add_argument("--epochs", type=int, default=2, help="proxy epochs (random, TPE, NSGA-II)")
    p.add_argument("--rungs", type=int, nargs="+", default=[1, 3], help="MO-SH rungs, epochs")
    p.add_argument("--eta", type=int, default=3, help="MO-SH keeps 1/eta of each rung")
    p.add_argument("--step", type=int, default=None, help="smallest increment, trials (default: --workers)")
    p.add_argument("--k", type=int, default=2, help="finalists per target")
    p.add_argument("--pick", choices=PICKS, default="front",
                   help="which finalists: k spread along each target's front; front+bands adds the best of each "
                        "of k log-latency bands those leave empty")
    p.add_argument("--recipe", default=str(DEFAULT_RECIPE), help="reference recipe ([train] table)")
    p.add_argument("--ref-epochs", type=int, default=2)
    p.add_argument("--ref-limit", type=int, default=2000, help="reference images (train + val; 0: all)")
    p.add_argument("--ref-seeds", type=int, default=1,
                   help="reference trainings per architecture, the recipe's seed and the next ones (same data "
                        "split); the reference accuracy is their mean")
    p.add_argument("--ref-input-size", type=int, default=16, help="reference input size, px")
    p.add_argument("--presets", nargs="+", default=list(PRESETS), help="paper presets to compare with")
    p.add_argument("--workers", type=int, default=2, help="trainings at once (Ray when > 1)")
    p.add_argument("--supernet", nargs="+", default=[], metavar="DIR",
                   help="a folder of `shufflenas supernet train` (the supernet methods); several: an ensemble")
    p.add_argument("--config", default=None, help="a search config file under the benchmark's settings "
                   "(space, latency, [proxy] extras)")
    p.add_argument("--verbose", action="store_true", help="every trial's line on stderr")
    return p


def build(args: argparse.Namespace, p: argparse.ArgumentParser) -> Bench:
    """The plan from the flags; anything wrong is ``p.error`` (one line, exit 2), before any write."""
    if not (math.isfinite(args.budget_s) and args.budget_s > 0):
        p.error(f"--budget-s must be a number > 0, got {args.budget_s}")
    for flag, value, low in (("--k", args.k, 1), ("--workers", args.workers, 1), ("--epochs", args.epochs, 1),
                             ("--ref-epochs", args.ref_epochs, 1), ("--ref-limit", args.ref_limit, 0),
                             ("--ref-seeds", args.ref_seeds, 1),
                             ("--limit", args.limit, 4), ("--input-size", args.input_size, 8),
                             ("--ref-input-size", args.ref_input_size, 8), ("--step", args.step or 1, 1)):
        if value < low:
            p.error(f"{flag} must be >= {low}, got {value}")
    if any(s < 0 for s in args.seeds) or len(set(args.seeds)) < len(args.seeds):
        p.error(f"--seeds must be distinct whole numbers >= 0, got {args.seeds}")
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown or len(set(args.methods)) < len(args.methods):
        p.error(f"--methods takes distinct names of {', '.join(METHODS)}, got {' '.join(args.methods)}")
    bad = [n for n in args.presets if n not in PRESETS]
    if bad or len(set(args.presets)) < len(args.presets):
        p.error(f"--presets takes distinct names of {', '.join(PRESETS)}, got {' '.join(args.presets)}")
    for folder in args.supernet:
        if not Path(folder).exists():
            p.error(f"--supernet {folder}: no such folder")
    try:
        table = read_train_table(args.recipe) if args.recipe else {}
        table.update(epochs=args.ref_epochs, input_size=args.ref_input_size, threads=1)
        if float(table.get("warmup_epochs", 1.0)) > args.ref_epochs:
            table["warmup_epochs"] = float(args.ref_epochs)
        recipe = TrainRecipe.from_dict(table)
    except ShufflenasError as exc:
        p.error(str(exc).splitlines()[0])
    proxy = {"dataset": args.dataset, "limit": args.limit, "input_size": args.input_size}
    if args.data_root:
        proxy["data_root"] = args.data_root
    bench = Bench(Path(args.out), float(args.budget_s), tuple(args.seeds), tuple(args.methods), proxy, args.epochs,
                  tuple(args.rungs), args.eta, args.step or args.workers, args.k, args.workers,
                  DataSpec(args.dataset, args.data_root, args.ref_limit or None, seed=recipe.seed), recipe,
                  args.recipe, args.config, tuple(args.supernet), tuple(args.presets), args.pick, args.ref_seeds)
    try:
        for method in bench.runnable:  # every config is checked (rungs, limits, the file) before any work
            bench.config(method, bench.seeds[0])
    except ShufflenasError as exc:
        p.error(str(exc).splitlines()[0])
    return bench


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    try:
        args = p.parse_args(argv)
        bench = build(args, p)
    except SystemExit as exc:
        return int(exc.code or 0)
    command = shlex.join(["benchmarks/search_quality.py", *argv])
    print(f"command: {command}", flush=True)
    echo = (lambda line: print(line, file=sys.stderr, flush=True)) if args.verbose else None
    try:
        outcome = run(bench, command, say=lambda line: print(line, flush=True), echo=echo)
    except ShufflenasError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    return 1 if outcome["missing"] else 0


if __name__ == "__main__":
    sys.exit(main())
