"""Small helpers shared by the subcommands: architecture arguments and JSON/table output."""

from __future__ import annotations

import json
import math
from typing import Any

import click

from search_space import Architecture, resolve_arch


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
