"""The search driver's side of successive halving: the rungs' pools, the waiting trials, resumption.

``experiments.successive_halving`` decides; this keeps the state it decides on. A trial that
finished a rung below the last stays RUNNING in the study and waits here (its ``rung:<epochs>``
accuracy already stored on it), until it is promoted or the search ends. A killed driver's waiting
trials are re-queued with their rung results (:func:`carried_attrs`), and :meth:`RungScheduler.adopt`
takes them back without training again what they finished.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from experiments import trial_record as keys
from experiments.storage import write_trial_attrs
from experiments.successive_halving import Fidelity, RungResult, next_promotion
from experiments.trial_record import TrialRecord, finite

if TYPE_CHECKING:
    import optuna

    from experiments.objectives import Objective
    from experiments.trial_steps import PendingTrial


@dataclasses.dataclass
class Waiting:
    """A trial between rungs: its pending state, the outcome of its highest rung and that rung's index."""

    item: PendingTrial
    outcome: Any
    index: int


def carried_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """What a re-queued successive-halving trial takes along: its rung accuracies and the proxy result of
    its highest rung (nothing for other trials)."""
    if attrs.get(keys.RUNG) is None:
        return {}
    return {k: v for k, v in attrs.items()
            if k == keys.RUNG or keys.parse_rung_key(k) is not None or k in keys.PROXY_KEYS}


def outcome_from_record(key: str, record: TrialRecord) -> Any:
    """The evaluator outcome of a trial's highest rung, rebuilt from its stored proxy attrs."""
    from evaluator.base import EvalOutcome
    from evaluator.proxy import ProxyResult

    stored = {v: k for k, v in keys.PROXY_RENAMES.items()}
    data = {stored.get(k, k): v for k, v in record.proxy.items()}
    fields = {f.name for f in dataclasses.fields(ProxyResult)}
    data = {k: v for k, v in data.items() if k in fields}
    data.setdefault("status", "ok")
    data.setdefault("accuracy", record.rungs[record.rung])
    for name, default in (("val_curve", ()), ("loss_curve", ()), ("train_time_s", 0.0), ("images_per_s", 0.0),
                          ("epochs_run", record.rung)):
        if data.get(name) is None:
            data[name] = default
    return EvalOutcome.from_result(key, ProxyResult.from_dict(data), record.attempts or 1, record.worker_pid)


class RungScheduler:
    """Rung pools and waiting trials of one search; see the module docstring."""

    def __init__(self, fidelity: Fidelity, objectives: Sequence[Objective], study: optuna.Study) -> None:
        self.fidelity = fidelity
        self.objectives = list(objectives)
        self.pool: dict[int, list[RungResult]] = {}
        self.waiting: dict[int, Waiting] = {}
        self.in_flight: dict[int, int] = {}   # trial number -> rung index being trained
        self.study = study
        self._pooled: set[tuple[int, int]] = set()   # (rung index, trial number) already in the pool
        self._changed = True   # since the last promote() found nothing (the loop asks every poll)
        self._load(study)

    @property
    def rungs(self) -> tuple[int, ...]:
        return self.fidelity.rungs

    def _load(self, study: optuna.Study) -> None:
        """Rung results of trials told by earlier runs: they count toward every rung's share."""
        from optuna.trial import TrialState

        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            record = TrialRecord.from_user_attrs(trial.user_attrs)
            self._add(trial.number, record)

    def _add(self, number: int, record: TrialRecord) -> None:
        attrs = record.to_user_attrs()
        costs = tuple(float(attrs[o.key]) if finite(attrs.get(o.key)) else float("inf")
                      for o in self.objectives if o.direction == "minimize")
        flops = float(record.costs.get(keys.FLOPS) or 0)
        for index, epochs in enumerate(self.rungs):
            accuracy = record.rungs.get(epochs)
            if finite(accuracy) and (index, number) not in self._pooled:
                self._pooled.add((index, number))
                self.pool.setdefault(index, []).append(RungResult(number, float(accuracy), costs, flops))
        self._changed = True

    # -- the driver's calls --------------------------------------------------------------------------
    def epochs(self, index: int) -> int:
        return self.rungs[index]

    def started(self, number: int, index: int) -> None:
        self.in_flight[number] = index

    def finished(self, item: PendingTrial, outcome: Any) -> bool:
        """A rung's training came back ok: record it; True when the trial is done (its last rung)."""
        number = item.trial.number
        index = self.in_flight.pop(number, 0)
        epochs = self.rungs[index]
        item.record = item.record.with_result(outcome.result, getattr(outcome, "attempts", 1),
                                              getattr(outcome, "worker_pid", None)).at_rung(epochs, outcome.accuracy)
        self._add(number, item.record)
        if index == len(self.rungs) - 1:
            return True
        self.waiting[number] = Waiting(item, outcome, index)
        # stored now, in one transaction: a killed search keeps this rung
        write_trial_attrs(self.study, item.trial, carried_attrs(item.record.to_user_attrs()))
        return False

    def failed(self, number: int) -> None:
        self.in_flight.pop(number, None)
        self._changed = True

    def adopt(self, item: PendingTrial, key: str) -> bool:
        """A re-queued trial that carries rung results waits at its highest rung instead of training;
        False when it carries none (train it from the first rung)."""
        carried = TrialRecord.from_user_attrs(item.trial.user_attrs)
        if carried.rung is None or carried.rung not in self.rungs:
            return False
        item.record = dataclasses.replace(item.record, rungs=dict(carried.rungs), rung=carried.rung,
                                          proxy={**item.record.proxy, **carried.proxy})
        index = self.rungs.index(carried.rung)
        self._add(item.trial.number, item.record)
        self.waiting[item.trial.number] = Waiting(item, outcome_from_record(key, item.record), index)
        return True

    def promote(self) -> tuple[PendingTrial, int] | None:
        """The waiting trial to train next and its rung index, or None (at once when nothing changed
        since the last None: the ranking is not re-taken on every poll)."""
        if not self._changed:
            return None
        choice = next_promotion(self.pool, {n: w.index for n, w in self.waiting.items()}, self.fidelity,
                                self.in_flight)
        if choice is None:
            self._changed = False
            return None
        number, index = choice
        waiting = self.waiting.pop(number)
        self.in_flight[number] = index
        return waiting.item, index

    def drain(self) -> list[Waiting]:
        """Every waiting trial (the search has nothing left to run): they are told at their highest rung."""
        out = sorted(self.waiting.values(), key=lambda w: w.item.trial.number)
        self.waiting.clear()
        return out


__all__ = ["RungScheduler", "Waiting", "carried_attrs", "outcome_from_record"]
