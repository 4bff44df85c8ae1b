"""Objectives and hard budgets of a search, declared as data (name, direction, budget) as in Archai.

An objective names a metric a trial records as a user attr: ``accuracy`` (maximise), ``mac``,
``flops``, ``params`` (minimise) or ``latency:<target>`` (milliseconds per batch on that target,
minimise). A budget is a hard upper limit on a metric, told to Optuna as a constraint
(``value - limit <= 0`` is feasible), so samplers keep infeasible trials off the front.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Literal

from experiments import trial_record
from experiments.config import ConfigError

Direction = Literal["maximize", "minimize"]
COST_METRICS = (trial_record.MAC, trial_record.FLOPS, trial_record.PARAMS)  # their names are their user-attr keys


@dataclasses.dataclass(frozen=True)
class Objective:
    """One optimised metric: ``name`` as written in configs, ``key`` as stored in trial user attrs."""

    name: str
    direction: Direction
    key: str
    target: str | None = None  # latency objectives: the target whose latency this is


@dataclasses.dataclass(frozen=True)
class Budget:
    """A hard limit: a trial is feasible when ``metric value <= limit``."""

    name: str      # "latency:local-cpu", "mac", ...
    key: str       # user-attr key of the metric
    limit: float

    @property
    def constraint_key(self) -> str:
        return f"budget:{self.name}"

    def violation(self, value: float) -> float:
        """Optuna's constraint value: <= 0 feasible."""
        return float(value) - self.limit


def latency_key(target: str) -> str:
    """The user-attr key of a target's latency (``latency_ms:<target>``)."""
    return trial_record.latency_key(target)


def parse_objective(name: str, targets: Iterable[str]) -> Objective:
    targets = list(targets)
    if name == "accuracy":
        return Objective("accuracy", "maximize", trial_record.ACCURACY)
    if name in COST_METRICS:
        return Objective(name, "minimize", name)
    if name.startswith("latency:"):
        target = name.split(":", 1)[1]
        if target not in targets:
            raise ConfigError(f"objective {name!r} names target {target!r}, which is not searched "
                              f"(targets: {', '.join(targets)})")
        return Objective(name, "minimize", latency_key(target), target)
    raise ConfigError(f"unknown objective {name!r} (known: accuracy, {', '.join(COST_METRICS)}, latency:<target>)")


def parse_objectives(names: Iterable[str], targets: Iterable[str]) -> list[Objective]:
    targets = list(targets)
    objectives = [parse_objective(n, targets) for n in names]
    seen = [o.name for o in objectives]
    if len(set(seen)) != len(seen):
        raise ConfigError(f"objectives must be distinct, got {seen}")
    return objectives


def parse_budgets(table: Mapping[str, float], targets: Iterable[str]) -> list[Budget]:
    """``{"local-cpu": 20, "mac": 5e7}``: keys are target names (latency in ms) or cost metrics."""
    targets = list(targets)
    budgets = []
    for name, limit in table.items():
        if name in COST_METRICS:
            budgets.append(Budget(name, name, float(limit)))
            continue
        target = name.split(":", 1)[1] if name.startswith("latency:") else name
        if target not in targets:
            raise ConfigError(f"budget {name!r} is neither a cost metric ({', '.join(COST_METRICS)}) nor a searched "
                              f"target ({', '.join(targets)})")
        if limit <= 0:
            raise ConfigError(f"budget {name!r} must be > 0 ms, got {limit}")
        budgets.append(Budget(f"latency:{target}", latency_key(target), float(limit)))
    return budgets
