"""The work on one trial between ask and tell, as plain functions the driver's loop calls.

A :class:`PendingTrial` carries a :class:`~experiments.trial_record.TrialRecord` that grows as
results arrive: the architecture and its analytic costs at ask, every target's latency
(:func:`local_latency`, the search's one measure-or-estimate decision, and the remote boards'
results), then the proxy training's outcome. :func:`settle` turns it into what is told.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from experiments.config import SearchConfig
from experiments.failures import failure_kind
from experiments.trial_record import MAC, OWNER, LatencyRecord, Scorer, TrialRecord, finite
from search_space import Architecture, SearchSpace, preset_name
from search_space.errors import ShufflenasError

if TYPE_CHECKING:
    import optuna

    from experiments.objectives import Budget, Objective
    from latency_models.measurement.targets import Target


def trace(event: str, number: int) -> None:
    """``trace: EVENT TRIAL`` on stderr when ``SHUFFLENAS_TRACE`` is set, so crash tests can kill the
    driver in a known phase (measure, train, told)."""
    if os.environ.get("SHUFFLENAS_TRACE"):
        os.write(2, f"trace: {event} {number}\n".encode())


class OverheadClock:
    """Sums the driver's own time (ask, tell, bookkeeping, storage writes): ``with clock: ...``."""

    def __init__(self) -> None:
        self.total = 0.0
        self._started = 0.0

    def __enter__(self) -> OverheadClock:
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.total += time.perf_counter() - self._started


@dataclasses.dataclass
class PendingTrial:
    """A trial between ask and tell; ``record`` grows as results arrive."""

    trial: optuna.trial.Trial
    arch: Architecture | None
    record: TrialRecord
    remote: dict[str, Any] = dataclasses.field(default_factory=dict)   # target name -> ray ObjectRef
    reused: bool = False            # the proxy result comes from an earlier trial (no training)
    failure_kind: str | None = None  # set when the failure was classified from its exception


def ask(study: optuna.Study, space: SearchSpace, config: SearchConfig, owner: str,
        scorer: Scorer | str, target: int | None = None) -> PendingTrial | None:
    """A new trial, its owner stored at once (stale-trial recovery reads it), costed analytically;
    ``scorer`` (or a proxy key) says what will give it its accuracy. With ``target`` (the trials to
    reach), None when another process took the study's last place first: the trial is given back."""
    from latency_models.costs.analytic import summary

    from experiments.study_handling import places_taken_before

    trial = owned_trial(study, owner)
    if target is not None and places_taken_before(study, trial.number) >= target:
        give_back(study, trial)
        return None
    record = TrialRecord(owner=owner).scored_by(scorer if isinstance(scorer, Scorer) else Scorer("proxy", scorer))
    try:
        arch = space.suggest(trial)
    except ShufflenasError as exc:
        return PendingTrial(trial, None, record.failing(f"invalid architecture: {exc}"))
    costs = summary(arch, config.deploy_input, config.deploy_classes)
    return PendingTrial(trial, arch, record.with_arch(arch.to_string(), arch.arch_id, preset_name(arch), costs))


def owned_trial(study: optuna.Study, owner: str) -> optuna.trial.Trial:
    """``study.ask()`` with the owner stored from the first write on: a new trial is created RUNNING
    with its owner in one write, so no kill leaves a RUNNING trial without one (which stale-trial
    recovery could only fail after ``stale_after_s``: a day, on a journal or server storage). A queued
    trial (preset, re-queued) is taken as ``ask`` takes it and gets its owner right after."""
    import datetime

    import optuna
    from optuna.trial import FrozenTrial, TrialState

    pop = getattr(study, "_pop_waiting_trial_id", None)
    if pop is None:  # an Optuna without the queue hook: its ask, then the owner
        trial = study.ask()
        trial.set_user_attr(OWNER, owner)
        return trial
    study._thread_local.cached_all_trials = None  # what ask does first
    trial_id = pop()
    if trial_id is not None:
        trial = optuna.Trial(study, trial_id)
        trial.set_user_attr(OWNER, owner)
        return trial
    template = FrozenTrial(number=-1, state=TrialState.RUNNING, value=None, values=None,
                           datetime_start=datetime.datetime.now(), datetime_complete=None, params={},
                           distributions={}, user_attrs={OWNER: owner}, system_attrs={}, intermediate_values={},
                           trial_id=-1)
    return optuna.Trial(study, study._storage.create_new_trial(study._study_id, template_trial=template))


def give_back(study: optuna.Study, trial: optuna.trial.Trial) -> None:
    """Fail a trial asked beyond the study's target as re-queued (it does not count, and nothing ran);
    one taken from the queue (a preset, a re-queued trial) goes back to the queue as it was."""
    from optuna.trial import TrialState

    frozen = study._storage.get_trial(trial._trial_id)
    marks = TrialRecord(fail_reason="surplus: another process took the study's last place first; not run",
                        requeued=True)
    for key, value in marks.to_user_attrs().items():
        trial.set_user_attr(key, value)
    study.tell(trial, state=TrialState.FAIL)
    params = frozen.system_attrs.get("fixed_params")
    if params:
        study.enqueue_trial(dict(params), user_attrs={k: v for k, v in frozen.user_attrs.items() if k != OWNER})


def local_latency(arch: Architecture, target: Target, config: SearchConfig) -> LatencyRecord:
    """One target's latency as far as it is taken here, through ``latency_models.latency.latency_for``
    (the project's one measure-or-estimate rule). Estimate-only targets get their estimate (never a
    measurement); measured targets are measured (remote ones later, on their board) with the
    calibrated estimate beside it when asked."""
    from latency_models.latency import latency_for

    model = config.latency.estimate_model
    if target.is_estimate:
        est = latency_for(arch, target, allow_measure=False, estimate_model=model)
        return LatencyRecord.estimated(est.median_ms, est.model)
    record = LatencyRecord()
    if config.latency.record_estimates and target.calibration:
        try:  # never measures: an estimate that would need a measurement is not recorded
            est = latency_for(arch, target, mode="estimate", allow_measure=False, estimate_model=model)
            record = LatencyRecord(estimate_ms=float(est.median_ms), estimate_model=est.model)
        except ShufflenasError:
            pass  # no calibration for this target yet: the measurement is what counts
    if target.is_remote:
        return record
    m = latency_for(arch, target, budget_s=config.latency.measure_budget_s, num_classes=config.deploy_classes,
                    estimate_model=model)
    return LatencyRecord.measured(m.to_dict(), estimate=record)


def take_latency(item: PendingTrial, targets: Mapping[str, Target], config: SearchConfig) -> None:
    """Every target's latency taken here (remote ones submitted); a failure fails the trial."""
    try:
        item.remote = submit_remote(item.arch, targets, config)
        trace("measure", item.trial.number)
        for name, target in targets.items():
            item.record = item.record.with_latency(name, local_latency(item.arch, target, config))
    except ShufflenasError as exc:
        item.record, item.failure_kind = item.record.failing(f"latency: {exc}"), failure_kind(exc)
    except Exception as exc:  # export / runtime failure of this candidate
        reason = f"latency: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        item.record, item.failure_kind = item.record.failing(reason), failure_kind(exc)


def submit_remote(arch: Architecture, targets: Mapping[str, Target], config: SearchConfig) -> dict[str, Any]:
    remote = {name: t for name, t in targets.items() if t.is_remote}
    if not remote:
        return {}
    from evaluator.remote_latency import submit_measurement

    budget = config.latency.measure_budget_s
    return {name: submit_measurement(arch, t, budget_s=budget) for name, t in remote.items()}


def collect_remote(item: PendingTrial, targets: Mapping[str, Target]) -> str | None:
    """The remote measurements into the record; the failure reason, if one failed."""
    import ray

    from evaluator.remote_latency import collect

    for name, ref in item.remote.items():
        try:
            m = collect(ray.get(ref), item.arch, targets[name])
        except Exception as exc:  # the board died or the measurement raised
            return f"latency on {name} failed: {' '.join(str(exc).split())[:300]}"
        data = m.to_dict() if hasattr(m, "to_dict") else dict(m)
        item.record = item.record.with_latency(name, LatencyRecord.measured(data, estimate=item.record.latency.get(name)))
    return None


def all_cached(batch: Sequence[PendingTrial], targets: Mapping[str, Target], config: SearchConfig) -> bool:
    """Whether every local measurement of ``batch`` is already in the measurement cache."""
    from latency_models.measurement.measure import lookup

    local = [t for t in targets.values() if not t.is_estimate and not t.is_remote]
    if config.deploy_classes != 1000:
        return not local
    return all(lookup(item.arch, t) is not None for item in batch for t in local)


@dataclasses.dataclass(frozen=True)
class Settled:
    """What is told: the user attrs, and the objective values (None: failed, with ``reason`` and ``kind``)."""

    attrs: dict[str, Any]
    values: list[float] | None
    reason: str | None = None
    kind: str | None = None


def settle(item: PendingTrial, outcome: Any, targets: Mapping[str, Target], objectives: Sequence[Objective]) -> Settled:
    """The trial's record with the training outcome (and remote latencies) in it, checked for values."""
    reason = item.record.fail_reason
    if reason is None and outcome is not None:
        if not outcome.ok:
            reason = f"training failed: {outcome.error or 'unknown error'}"
        else:
            item.record = item.record.with_result(outcome.result, getattr(outcome, "attempts", 1),
                                                  getattr(outcome, "worker_pid", None))
            if not finite(item.record.accuracy):
                reason = f"training gave no finite accuracy ({item.record.accuracy!r})"
    if reason is None and item.remote:
        reason = collect_remote(item, targets)
    attrs = item.record.to_user_attrs()
    if reason is None:
        values = [attrs.get(o.key) for o in objectives]
        missing = [o.name for o, v in zip(objectives, values) if not finite(v)]
        if not missing:
            return Settled(attrs, values)
        reason = f"no finite value for objective(s) {', '.join(missing)}"
    kind = item.failure_kind or failure_kind(reason)
    failed = dataclasses.replace(item.record, fail_reason=None).failing(reason[:1000], kind)
    return Settled(failed.to_user_attrs(), None, reason, kind)


def violations(attrs: Mapping[str, Any], budgets: Sequence[Budget]) -> list[str]:
    """``latency:local-cpu 15.27 > 3.0 ms`` for every budget the trial exceeds."""
    out = []
    for budget in budgets:
        value = attrs.get(budget.key)
        if finite(value) and budget.violation(value) > 0:
            if budget.name.startswith("latency:"):
                out.append(f"{budget.name} {value:.2f} > {budget.limit:g} ms")
            else:
                out.append(f"{budget.name} {value:.4g} > {budget.limit:g}")
    return out


def describe(number: int, attrs: Mapping[str, Any], targets: Sequence[str], budgets: Sequence[Budget], study: str) -> str:
    """The progress line of a completed trial."""
    record = TrialRecord.from_user_attrs(attrs)
    parts = [f"trial {number}"]
    if record.preset:
        parts.append(f"[{record.preset}]")
    if finite(record.accuracy):
        parts.append(f"acc {record.accuracy:.3f}")
    for name in targets:
        value = record.latency_ms(name)
        if finite(value):
            parts.append(f"{name} {value:.2f} ms")
    if MAC in record.costs:
        parts.append(f"MAC {record.costs[MAC] / 1e6:.1f}M")
    seconds = record.proxy.get("train_time_s")
    if record.source == "supernet" and record.reused_from is None and finite(seconds):
        parts.append(f"scored in {seconds:.2f} s")
    if record.reused_from is not None:
        where = record.reused_from_study
        other = f" of study {where}" if where and where != study else ""
        parts.append(f"(reused trial {record.reused_from}{other})")
    parts += [f"INFEASIBLE {text}" for text in violations(attrs, budgets)]
    return " ".join(parts)
