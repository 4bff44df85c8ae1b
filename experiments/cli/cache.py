"""`shufflenas cache info` and `cache prune`: see and bound what $SHUFFLENAS_HOME holds."""

from __future__ import annotations

import math
from typing import Any

import click

from experiments.cli.common import emit_json, json_option


@click.group()
def cache() -> None:
    """Inspect and prune the state directory ($SHUFFLENAS_HOME): ONNX exports, the measurement
    cache, calibrations and benchmark results."""


@cache.command("info")
@json_option
def info(as_json: bool) -> None:
    """Files, bytes and oldest/newest modification per kind."""
    from latency_models.measurement import cache_admin
    from latency_models.paths import data_home

    kinds = cache_admin.info()
    if as_json:
        emit_json({"home": str(data_home()), "kinds": {k.kind: k.to_dict() for k in kinds},
                   "total_bytes": sum(k.bytes for k in kinds)})
        return
    click.echo(f"state directory {data_home()}")
    header = f"{'kind':14s} {'files':>6s} {'size':>10s}  {'oldest':25s}  {'newest':25s}"
    click.echo(header)
    click.echo("-" * len(header))
    for k in kinds:
        click.echo(f"{k.kind:14s} {k.files:>6d} {cache_admin.format_size(k.bytes):>10s}  "
                   f"{cache_admin.iso(k.oldest) or '-':25s}  {cache_admin.iso(k.newest) or '-':25s}")
    click.echo(f"{'total':14s} {sum(k.files for k in kinds):>6d} "
               f"{cache_admin.format_size(sum(k.bytes for k in kinds)):>10s}")


def _size(ctx: click.Context, param: click.Parameter, value: Any) -> int | None:
    from latency_models.measurement.cache_admin import CacheAdminError, parse_size

    if value is None:
        return None
    try:
        return parse_size(value)
    except CacheAdminError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _days(ctx: click.Context, param: click.Parameter, value: Any) -> float | None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise click.BadParameter(f"must be a finite number of days >= 0, got {value}", ctx, param)
    return value


@cache.command("prune")
@click.option("--older-than", "older_than", type=float, default=None, callback=_days, metavar="DAYS",
              help="Delete files not modified for DAYS days (0: all of the chosen kinds).")
@click.option("--max-size", "max_size", default=None, callback=_size, metavar="SIZE",
              help="Then delete the oldest files until the chosen kinds hold at most SIZE (e.g. 200M, 1G).")
@click.option("--kind", "kinds", multiple=True, metavar="KIND",
              help="What to prune (repeatable): onnx (the default), measurements, calibrations, benchmarks.")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@json_option
def prune(older_than: float | None, max_size: int | None, kinds: tuple[str, ...], dry_run: bool,
          as_json: bool) -> None:
    """Delete cached files, oldest first. Only ONNX exports unless --kind names others: calibrations
    and the measurement cache are never deleted unless asked for."""
    from latency_models.measurement import cache_admin

    if older_than is None and max_size is None:
        raise click.UsageError("say what to prune: --older-than DAYS and/or --max-size SIZE")
    try:
        chosen = cache_admin.check_kinds(kinds)
    except cache_admin.CacheAdminError as exc:
        raise click.BadParameter(str(exc), param_hint="'--kind'") from None
    result = cache_admin.prune(older_than_days=older_than, max_bytes=max_size, kinds=chosen, dry_run=dry_run)
    if as_json:
        emit_json(result.to_dict())
        return
    verb = "would delete" if dry_run else "deleted"
    for unit in result.units:
        click.echo(f"{verb} {unit.kind:12s} {cache_admin.format_size(unit.bytes):>10s}  "
                   f"{cache_admin.iso(unit.mtime)}  {unit.paths[0]}")
    for failure in result.failed:
        click.echo(f"warning: could not delete {failure}", err=True)
    click.echo(f"{'would free' if dry_run else 'freed'} {cache_admin.format_size(result.freed_bytes)} in "
               f"{result.files} file(s) ({', '.join(result.kinds)})")
