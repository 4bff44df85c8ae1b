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


def nsga2_population(trials: int) -> int:
    """NSGA-II's population for a budget of ``trials``: about ten generations, at most 100.

    Selection only acts between generations, so a budget of ``trials`` is split into ~10 of them
    (``trials // 10``), capped at 100: the population Deb et al. (2002) used for NSGA-II (over 250
    generations, which no NAS budget here affords), and enough to hold a two-objective front of a
    1,000-trial search. Small budgets keep their earlier sizes (``trials // 4``, at least 4, up to
    10), so a 24- or 40-trial search still gets 4-6 generations of a usable population.
    """
    return max(4, min(10, trials // 4), min(100, trials // 10))


def _nsga2(seed: int | None, trials: int, n_objectives: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed, population_size=nsga2_population(trials))


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
