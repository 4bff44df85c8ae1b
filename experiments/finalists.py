"""Finalists: the fronts' top k re-scored at a higher fidelity by stand-alone training.

A search ranks candidates by a cheap accuracy (a few proxy epochs, or a supernet's inherited
weights). Before anyone deploys a front, its best points are trained on their own with a full
recipe (``shufflenas train``'s loop, on Ray through ``evaluator.training.parallel``), so the
report can show which accuracy each point carries and how far the cheap one was off.

**Which trials** (``pick``). Among feasible COMPLETE trials (one trial per architecture: the lowest
number), for every latency target the study records:

* ``"front"`` (the default): the front of (accuracy, latency on that target), sorted by latency;
  its top k are ``k`` points spread evenly along it by rank, both ends included (the fastest and
  the most accurate); ``k = 1`` takes the most accurate; a front of ``k`` points or fewer is taken
  whole. Spreading, rather than the k most accurate, tests the whole trade-off the search claims,
  not only its slow end.
* ``"front+bands"``: the same picks, and the trials' latency range split into ``k`` bands of equal
  width in log latency: every band that none of those picks falls in adds its most accurate trial
  (ties: the faster, then the lower number; an empty band adds nothing), so up to ``2k`` per
  target. A cheap accuracy biased toward small networks (a short proxy, a supernet) can make the
  whole front a handful of the smallest networks (measured: a supernet search's front of three
  13.5-13.7 MFLOPs networks, all in the fastest band); the band leaders still send the best-scored
  larger networks to the stand-alone training, which is what decides (docs/search.md, "Finalists").

Picks are merged across targets by architecture (``picked_for`` lists every target that picked it).

**Where the result lives.** A finished trial's user attrs cannot change in Optuna, a study's can:
each result is the study attr ``finalist:<trial>`` (``trial_record.FinalistRecord``), written as
each training finishes, plus ``<out>/finalists/finalists.csv``; the runs themselves are in
``<out>/finalists/trial-<n>/`` (``model.pt``, ``model.onnx``, ``checkpoint.pt``, ``metrics.csv``).

**Resume.** A finalist the study already holds under the same setup (data + recipe, its
``setup_key``) is not trained again; one killed mid-training resumes from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments import trial_record as keys
from experiments.config import FINALIST_PICKS, FinalistOptions
from experiments.trial_record import FinalistRecord, TrialRecord, finalist_key, finalist_records
from search_space import Architecture
from search_space.errors import ShufflenasError

if TYPE_CHECKING:
    import optuna

    from evaluator.training.recipe import DataSpec, TrainRecipe

#: How the top k are chosen, per ``pick`` (stated in reports and ``--json``).
RULES = {
    "front": "spread evenly along each target's front by latency rank, both ends included (k = 1: the most accurate)",
    "front+bands": "spread evenly along each target's front as with front, plus the most accurate trial of each "
                   "of k bands of equal width in log latency that no such pick falls in",
}
PICKS = FINALIST_PICKS  # the config checks ``[finalists] pick`` against these
CSV_NAME = "finalists.csv"
FOLDER = "finalists"


class FinalistError(ShufflenasError):
    """The finalists cannot be picked or trained as asked."""


@dataclasses.dataclass(frozen=True)
class Finalist:
    """A trial picked for re-scoring, with the accuracy the search gave it."""

    trial: int
    arch: Architecture
    picked_for: tuple[str, ...]
    proxy_accuracy: float | None
    proxy_source: str


def spread(n: int, k: int) -> list[int]:
    """Indices of ``k`` of ``n`` points (sorted by latency) spread evenly by rank, both ends kept."""
    if n <= k:
        return list(range(n))
    if k == 1:
        return [n - 1]  # the most accurate point of a front is its slowest
    return sorted({int(i * (n - 1) / (k - 1) + 0.5) for i in range(k)})  # half up: symmetric picks


def bands(latencies: Sequence[float], k: int) -> list[int]:
    """Each latency's band of ``k`` of equal width in log latency over their range (0 = fastest)."""
    if not latencies:
        return []
    low, high = math.log(min(latencies)), math.log(max(latencies))
    if k == 1 or high <= low:
        return [0] * len(latencies)
    return [min(k - 1, int(k * (math.log(ms) - low) / (high - low))) for ms in latencies]


def pick_indices(rows: Sequence[tuple[float, float, int]], k: int, pick: str) -> list[int]:
    """Which of ``rows`` (latency ms, accuracy, trial number) a target picks under ``pick``."""
    from experiments.report import non_dominated

    front = sorted(non_dominated([r[:2] for r in rows], [False, True]),
                   key=lambda i: (rows[i][0], -rows[i][1], rows[i][2]))
    picked = [front[i] for i in spread(len(front), k)]
    if pick == "front+bands":
        band_of = bands([r[0] for r in rows], k)
        leaders: dict[int, int] = {}   # band -> its most accurate trial (ties: faster, lower number)
        for i, band in enumerate(band_of):
            j = leaders.get(band)
            if j is None or (-rows[i][1], rows[i][0], rows[i][2]) < (-rows[j][1], rows[j][0], rows[j][2]):
                leaders[band] = i
        covered = {band_of[i] for i in picked}
        picked += [i for band, i in sorted(leaders.items()) if band not in covered]
    return picked


def study_targets(study: optuna.Study) -> list[str]:
    """The latency targets a study records (its ``targets`` attr, else those its trials hold)."""
    stored = study.user_attrs.get("targets")
    if isinstance(stored, dict) and stored:
        return list(stored)
    found: list[str] = []
    for trial in study.get_trials(deepcopy=False):
        found += [t for t in keys.latency_targets(trial.user_attrs) if t not in found]
    return found


def pick_finalists(study: optuna.Study, k: int, pick: str = "front") -> list[Finalist]:
    """The top ``k`` of every target's front (``pick = "front+bands"``: plus the leaders of the latency
    bands those leave empty), merged by architecture (see the module docstring); ordered by trial number."""
    from optuna.trial import TrialState

    from experiments.report import _feasible, comparable

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise FinalistError(f"finalists k must be >= 1, got {k!r}")
    if pick not in PICKS:
        raise FinalistError(f"finalists pick must be one of {', '.join(PICKS)}, got {pick!r}")
    by_arch: dict[str, tuple[Any, TrialRecord]] = {}
    for trial in comparable(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))):
        record = TrialRecord.from_user_attrs(trial.user_attrs)
        if not _feasible(trial) or not record.arch or not keys.finite(record.accuracy):
            continue
        arch_id = record.arch_id or record.arch
        if arch_id not in by_arch or trial.number < by_arch[arch_id][0].number:
            by_arch[arch_id] = (trial, record)
    picked: dict[int, list[str]] = {}
    for target in study_targets(study):
        rows = [(record.latency_ms(target), record.accuracy, trial.number) for trial, record in by_arch.values()
                if keys.finite(record.latency_ms(target)) and record.latency_ms(target) > 0]
        for index in pick_indices(rows, k, pick):
            picked.setdefault(rows[index][2], []).append(target)
    records = {trial.number: record for trial, record in by_arch.values()}
    return [Finalist(number, Architecture.from_string(records[number].arch), tuple(targets),
                     records[number].accuracy, records[number].source)
            for number, targets in sorted(picked.items())]


# -- the setup: data and recipe ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FinalistPlan:
    """Who is trained, on what, with which recipe, into which folders; checked before any training."""

    study: str
    k: int
    pick: str
    finalists: tuple[Finalist, ...]
    data_spec: DataSpec
    recipe: TrainRecipe
    recipe_file: str | None
    input_size: int
    setup_key: str
    out: Path
    workers: int
    done: dict[int, FinalistRecord]   # already re-scored under this setup: not trained again

    @property
    def todo(self) -> list[Finalist]:
        return [f for f in self.finalists if f.trial not in self.done]

    def folder(self, trial: int) -> Path:
        return self.out / FOLDER / f"trial-{trial}"

    def describe(self) -> str:
        limit = f", {self.data_spec.limit} images" if self.data_spec.limit else ""
        return f"{self.recipe.epochs} epochs, {self.data_spec.name} {self.input_size} px{limit}"


def _study_proxy(study: optuna.Study) -> dict[str, Any]:
    proxy = (study.user_attrs.get("config") or {}).get("proxy") or {}
    return proxy if isinstance(proxy, dict) else {}


def _recipe(options: FinalistOptions) -> TrainRecipe:
    from evaluator.training.recipe import TrainRecipe, read_train_table

    table = read_train_table(options.recipe) if options.recipe else {}
    if options.epochs is not None:
        table["epochs"] = options.epochs
        if float(table.get("warmup_epochs", 1.0)) > options.epochs:  # a 1-epoch look keeps the recipe valid
            table["warmup_epochs"] = float(options.epochs)
    if options.input_size is not None:
        table["input_size"] = options.input_size
    return TrainRecipe.from_dict(table)


def check_options(options: FinalistOptions) -> None:
    """What can be checked without a study (the recipe file and its keys): before a search starts."""
    _recipe(options)


def setup_key(data_spec: DataSpec, recipe: TrainRecipe) -> str:
    """Equal keys: the same data and recipe, so a recorded result stands for a new run's."""
    root = os.path.abspath(data_spec.root) if data_spec.root else None
    setup = {"data": {**data_spec.to_dict(), "root": root}, "recipe": data_spec.resolve(recipe).identity()}
    return hashlib.sha1(json.dumps(setup, sort_keys=True, default=str).encode()).hexdigest()[:12]


def plan_finalists(study: optuna.Study, options: FinalistOptions, out: str | Path) -> FinalistPlan:
    """Pick the finalists and check every run to do (data loads, folders hold nothing foreign)."""
    from evaluator.training.loop import plan_run
    from evaluator.training.recipe import DataSpec

    recipe = _recipe(options)
    proxy = _study_proxy(study)
    if options.dataset is None:  # the data the search scored them on
        dataset, root = proxy.get("dataset") or "digits", options.data_root or proxy.get("data_root")
        limit = options.limit or proxy.get("limit")
        if recipe.input_size is None and isinstance(proxy.get("input_size"), int):
            recipe = recipe.replace(input_size=proxy["input_size"])
    else:
        dataset, root, limit = options.dataset, options.data_root, options.limit
    spec = DataSpec(dataset, root, limit, seed=recipe.seed)
    finalists = tuple(pick_finalists(study, options.k, options.pick))
    if not finalists:
        raise FinalistError(f"study {study.study_name!r} has no complete feasible trial with an accuracy and a "
                            "latency, so no front to pick finalists from")
    config = study.user_attrs.get("config") or {}
    workers = options.workers or (config.get("workers") if isinstance(config.get("workers"), int) else None) or 1
    key = setup_key(spec, recipe)
    done = {n: r for n, r in finalist_records(study.user_attrs).items()
            if r.setup_key == key and n in {f.trial for f in finalists}}
    plan = FinalistPlan(study.study_name, options.k, options.pick, finalists, spec, recipe, options.recipe,
                        spec.input_size(recipe), key, Path(out), max(1, int(workers)), done)
    for finalist in plan.todo:  # every run checked before the first one trains
        plan_run(finalist.arch, spec, recipe, plan.folder(finalist.trial))
    return plan


# -- running ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FinalistsResult:
    """What a finalists run did: every finalist's record (new or found), and the failures."""

    study: str
    out: str
    k: int
    rule: str
    setup: str
    setup_key: str
    records: tuple[FinalistRecord, ...]
    trained: tuple[int, ...]
    skipped: tuple[int, ...]
    failed: tuple[tuple[int, str], ...]
    csv: str | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study, "out": self.out, "k": self.k, "rule": self.rule, "setup": self.setup,
                "setup_key": self.setup_key, "finalists": [r.to_dict() for r in self.records],
                "trained": list(self.trained), "skipped": list(self.skipped),
                "failed": [{"trial": n, "error": e} for n, e in self.failed], "csv": self.csv,
                "seconds": round(self.seconds, 3)}


CSV_COLUMNS = ("trial", "arch", "arch_id", "picked_for", "picked_by", "proxy_accuracy", "proxy_source", "accuracy", "top5",
               "accuracy_source", "epochs", "dataset", "input_size", "limit", "setup_key", "recipe_file", "out",
               "seconds")


def write_csv(records: Sequence[FinalistRecord], path: Path) -> Path:
    """The finalists as one CSV (written to a temporary file and renamed: never torn)."""
    from latency_models.atomic import atomic_write_csv

    rows = [{**r.to_dict(), "picked_for": ";".join(r.picked_for)} for r in records]
    return atomic_write_csv(path, CSV_COLUMNS, (["" if row.get(c) is None else row[c] for c in CSV_COLUMNS]
                                                 for row in rows))


def run_finalists(study: optuna.Study, options: FinalistOptions, out: str | Path, *, address: str | None = None,
                  progress: bool = True) -> FinalistsResult:
    """Pick, check and train the finalists (``options.workers`` at a time, on Ray when > 1 or with an
    ``address``); each result goes to the study as soon as its training ends."""
    from evaluator.training.parallel import TrainJob, TrainOutcome, train_many

    start = time.perf_counter()
    plan = plan_finalists(study, options, out)
    by_trial = {f.trial: f for f in plan.finalists}
    records = dict(plan.done)
    csv_path = plan.out / FOLDER / CSV_NAME

    def say(text: str) -> None:
        if progress:
            print(text, file=sys.stderr, flush=True)

    def save() -> None:
        write_csv([records[f.trial] for f in plan.finalists if f.trial in records], csv_path)

    def record(outcome: TrainOutcome) -> None:
        if not outcome.ok or outcome.result is None:
            return
        trial = int(str(outcome.job.label).split()[-1])
        finalist, result = by_trial[trial], outcome.result
        rec = FinalistRecord(trial, finalist.arch.to_string(), finalist.arch.arch_id, finalist.picked_for,
                             finalist.proxy_accuracy, finalist.proxy_source, float(result.val_top1),
                             float(result.val_top5), int(result.epochs), plan.data_spec.name, plan.input_size,
                             plan.data_spec.limit, plan.setup_key, plan.data_spec.resolve(plan.recipe).to_dict(),
                             plan.recipe_file, str(outcome.job.out_dir), float(result.seconds),
                             picked_by=plan.pick)
        study.set_user_attr(finalist_key(trial), rec.to_dict())  # durable at once: a kill keeps it
        records[trial] = rec
        save()

    todo = plan.todo
    say(f"finalists of {plan.study}: {len(plan.finalists)} (k = {plan.k} per target), {len(plan.done)} already "
        f"re-scored, {len(todo)} to train ({plan.describe()}) into {plan.out / FOLDER}")
    jobs = [TrainJob(f.arch, plan.data_spec, plan.recipe, str(plan.folder(f.trial)), f"trial {f.trial}") for f in todo]
    outcomes = train_many(jobs, workers=plan.workers, address=address, progress=progress, on_outcome=record)
    failed = tuple((int(str(o.job.label).split()[-1]), o.error or "failed") for o in outcomes if not o.ok)
    if records:
        save()
    return FinalistsResult(plan.study, str(plan.out / FOLDER), plan.k, RULES[plan.pick], plan.describe(),
                           plan.setup_key,
                           tuple(records[f.trial] for f in plan.finalists if f.trial in records),
                           tuple(f.trial for f in todo if f.trial in records), tuple(sorted(plan.done)), failed,
                           str(csv_path) if records else None, time.perf_counter() - start)


def raise_failures(result: FinalistsResult) -> None:
    """One line for the failed trainings (exit code 2), after the others were recorded."""
    if result.failed:
        number, error = result.failed[0]
        raise FinalistError(f"{len(result.failed)} of {len(result.records) + len(result.failed)} finalist trainings "
                            f"failed; trial {number}: {error}")


__all__ = ["CSV_NAME", "FOLDER", "Finalist", "FinalistError", "FinalistPlan", "FinalistsResult", "PICKS", "RULES",
           "bands", "check_options", "pick_finalists", "pick_indices", "plan_finalists", "raise_failures",
           "run_finalists", "setup_key", "spread", "study_targets", "write_csv"]
