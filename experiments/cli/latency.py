"""`shufflenas latency`: targets, measurement, estimation and calibration."""

from __future__ import annotations

import click


@click.group()
def latency() -> None:
    """Measure and estimate latency on named targets (local CPU, CUDA, ARM boards, paper devices)."""


def _register() -> None:
    """Commands are split by job: measuring (latency_measure) and estimating (latency_estimate)."""
    import importlib

    for module_name in ("experiments.cli.latency_measure", "experiments.cli.latency_estimate",
                        "experiments.cli.latency_tables"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        for command in getattr(module, "COMMANDS", []):
            latency.add_command(command)


_register()
