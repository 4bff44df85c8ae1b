"""Small helpers shared by the subcommands: architecture arguments and JSON/table output."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import click

from search_space import Architecture, resolve_arch

if TYPE_CHECKING:
    from latency_models.measurement.targets import Target


class ArchType(click.ParamType):
    """ARCH: a preset name, a compact string or a JSON file; errors are usage errors (exit 2)."""

    name = "ARCH"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Architecture:
        if isinstance(value, Architecture):
            return value
        from search_space import ArchitectureError

        try:
            return resolve_arch(str(value))
        except ArchitectureError as exc:
            self.fail(str(exc), param, ctx)


ARCH = ArchType()

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")

targets_file_option = click.option(
    "--targets-file", type=click.Path(dir_okay=False), default=None,
    help="A TOML file that adds or overrides targets ([targets.NAME] tables); $SHUFFLENAS_TARGETS works too.")

on_device_option = click.option(
    "--on-device", is_flag=True,
    help="This machine is the board a remote target names (e.g. rpi4): measure here instead of through Ray.")


def resolve_target(name: str, targets_file: str | None, on_device: bool = False) -> Target:
    """The target called ``name``; with ``on_device`` a remote target is measured by this process."""
    from latency_models.measurement.targets import get_target

    target = get_target(name, targets_file)
    if on_device:
        if not target.resources:
            raise click.UsageError(f"--on-device is for remote targets (with Ray resources); {target.name} is "
                                   "measured where the command runs anyway")
        target = target.on_this_device()
    return target


def positive(name: str):
    """A click callback that rejects zero and negative numbers with a usage error."""

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None and value <= 0:
            raise click.BadParameter(f"must be > 0, got {value}", ctx, param)
        return value

    return check


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, default=_plain, sort_keys=False))


def format_count(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:g}"
