"""What a search's evaluations cost, in CPU-seconds of proxy training: the unit of ``budget_s``.

A trial costs its recorded ``train_time_s`` (wall seconds of a one-thread training, about its
CPU-seconds on a free core). With successive halving every rung trains from scratch, so a trial
costs every rung it reached (the rung's epochs times its seconds per epoch). A result copied from
this study's own earlier trial costs nothing (the search did not train it again); one copied from
another study costs what it cost there, so studies compare at equal compute. Re-queued and
environment failures cost nothing: their parameters ran again under a new trial.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from experiments.trial_record import TrialRecord, counts_toward_target, finite


def trial_charge(record: TrialRecord, study: str) -> float:
    """CPU-seconds of proxy training one finished trial is charged (the rule above)."""
    if record.reused_from is not None and record.reused_from_study in (None, study):
        return 0.0
    seconds = record.proxy.get("train_time_s")
    if not finite(seconds):
        return 0.0
    if record.rung is None or not record.rungs:
        return float(seconds)
    epochs_run = record.proxy.get("epochs_run")
    epochs_run = epochs_run if finite(epochs_run) and epochs_run > 0 else record.rung
    return float(seconds) / float(epochs_run) * float(sum(record.rungs))


@dataclasses.dataclass(frozen=True)
class Charge:
    seconds: float
    finished: int   # COMPLETE + counted failures (what a search's ``trials`` counts)


def study_charge(study: Any) -> Charge:
    """Seconds charged to a study over its finished trials."""
    from optuna.trial import TrialState

    seconds, finished = 0.0, 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        if not counts_toward_target(trial):  # re-queued or an environment failure: run again, not charged
            continue
        finished += 1
        seconds += trial_charge(TrialRecord.from_user_attrs(trial.user_attrs), study.study_name)
    return Charge(seconds, finished)


__all__ = ["Charge", "study_charge", "trial_charge"]
