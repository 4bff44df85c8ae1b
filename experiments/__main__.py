"""`python -m experiments` is the `shufflenas` command."""

from experiments.cli.main import entry

entry()
