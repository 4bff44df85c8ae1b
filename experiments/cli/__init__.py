"""The `shufflenas` command. Subcommands live one per module and load lazily, so ``--help`` and
the cheap commands never pay for importing ray or optuna."""

from experiments.cli.main import main

__all__ = ["main"]
