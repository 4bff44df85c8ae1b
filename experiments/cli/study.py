"""`shufflenas study`: the paper's guideline experiments and the FLOPs-vs-speed study."""

from __future__ import annotations

import importlib

import click


@click.group()
def study() -> None:
    """Why FLOPs is not speed: the paper's G1-G4 experiments and FLOPs-vs-latency on your devices."""


for _module_name in ("experiments.cli.study_guidelines", "experiments.cli.study_flops"):
    try:
        _module = importlib.import_module(_module_name)
    except ModuleNotFoundError as _exc:
        if _exc.name != _module_name:
            raise
        continue
    for _command in getattr(_module, "COMMANDS", []):
        study.add_command(_command)
