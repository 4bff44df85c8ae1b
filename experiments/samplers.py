"""Optuna samplers by name: a new search method is one factory plus one ``SAMPLERS`` entry.

Each factory takes ``(seed, trials, n_objectives)``: small budgets get a short random start-up so
the model-based samplers get used at all. optuna is imported inside the factories, so the names
(``--help``, config validation) cost nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from search_space.registry import Registry

if TYPE_CHECKING:
    import optuna

SamplerFactory = Callable[[int | None, int, int], "optuna.samplers.BaseSampler"]


def _tpe(seed: int | None, trials: int, n_objectives: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(4, min(10, trials // 3)),
                                      multivariate=True, constant_liar=True)


def _nsga2(seed: int | None, trials: int, n_objectives: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials // 4)))


def _gp(seed: int | None, trials: int, n_objectives: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=max(4, min(10, trials // 3)))


def _random(seed: int | None, trials: int, n_objectives: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


#: sampler name -> factory; the CLI's ``--sampler`` choices and the config's ``sampler`` key.
SAMPLERS: Registry[SamplerFactory] = Registry("sampler", {"tpe": _tpe, "nsga2": _nsga2, "gp": _gp,
                                                          "random": _random})


def make_sampler(name: str, seed: int | None, trials: int, n_objectives: int) -> optuna.samplers.BaseSampler:
    """The configured sampler (an unknown name is one line listing the known ones)."""
    return SAMPLERS.get(name)(seed, trials, n_objectives)
