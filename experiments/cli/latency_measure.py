"""`shufflenas latency targets`, `measure` and `anchor`: list targets, time an architecture, show
or redraw the reference anchor that normalised targets report at."""

from __future__ import annotations

import os
import warnings
from typing import Any

import click

from experiments.cli.common import ARCH, emit_json, json_option, on_device_option, resolve_target, targets_file_option
from search_space import Architecture


def _availability(target: Any) -> str:
    if target.is_estimate:
        return "estimate only"
    if target.is_remote:
        return "remote: " + ", ".join(f"{k}={v:g}" for k, v in target.resources.items())
    reason = target.unavailable_reason()
    return "yes" if reason is None else f"no: {reason}"


@click.command()
@targets_file_option
@json_option
def targets(targets_file: str | None, as_json: bool) -> None:
    """List latency targets: what is measured where, and which are estimates only."""
    from latency_models.measurement.targets import load_targets

    rows = []
    for target in load_targets(targets_file).values():
        row = target.to_dict()
        row["available"] = _availability(target)
        rows.append(row)
    if as_json:
        emit_json(rows)
        return
    header = f"{'name':18s} {'kind':9s} {'backend':12s} {'device':6s} {'threads':>7s} {'batch':>5s} {'size':>5s}  available"
    click.echo(header)
    click.echo("-" * len(header))
    for r in rows:
        click.echo(f"{r['name']:18s} {r['kind']:9s} {r['backend'] or '-':12s} {r['device']:6s} {r['threads']:>7d} "
                   f"{r['batch']:>5d} {r['input_size']:>5d}  {r['available']}")
    click.echo("\nEstimate-only targets are never measured: `shufflenas latency predict` estimates them.")


def _measure_remote(architecture: Architecture, target: Any, budget_s: float | None, use_cache: bool,
                    ray_address: str | None) -> Any:
    from search_space.errors import ShufflenasError

    address = ray_address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise ShufflenasError(f"{target.name} is a remote target ({', '.join(target.resources)}): pass "
                              "--ray-address HEAD:6379 (or set RAY_ADDRESS) to reach the cluster its board joined")
    from evaluator.ray_connect import ensure_ray, release_ray
    from evaluator.remote_latency import measure_remote

    owned = ensure_ray(address)  # probes the address first: seconds, where Ray's own loop retries for minutes
    try:
        return measure_remote(architecture, target, budget_s=budget_s, cache=use_cache)
    finally:
        release_ray(owned)


@click.command()
@click.argument("architecture", type=ARCH)
@click.option("--target", "target_name", default="local-cpu", show_default=True, help="Target name (see `latency targets`).")
@targets_file_option
@click.option("--budget-s", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="Seconds of timed runs after warm-up (default 1).")
@click.option("--no-cache", is_flag=True, help="Measure again even if a cached result exists (and do not store it).")
@click.option("--ray-address", default=None, help="Ray cluster for remote targets (default $RAY_ADDRESS).")
@on_device_option
@json_option
def measure(architecture: Architecture, target_name: str, targets_file: str | None, budget_s: float | None,
            no_cache: bool, ray_address: str | None, on_device: bool, as_json: bool) -> None:
    """Measure the latency of ARCHITECTURE on a target (median of many timed runs, ms per batch)."""
    from latency_models.latency import latency_for

    target = resolve_target(target_name, targets_file, on_device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if target.is_remote and not target.is_estimate:  # the board measures it, through Ray
            result = _measure_remote(architecture, target, budget_s, not no_cache, ray_address)
        else:
            result = latency_for(architecture, target, mode="measure", cache=False if no_cache else None,
                                 budget_s=budget_s)
    shown = set()
    for warning in caught:
        text = " ".join(str(warning.message).split())
        if issubclass(warning.category, UserWarning) and text not in shown:  # each attempt warns alike
            shown.add(text)
            click.echo(f"warning: {text}", err=True)
    data = result.to_dict()
    if as_json:
        emit_json(data)
        return
    click.echo(f"{architecture}  (id {result.arch_id})")
    click.echo(f"target   {result.target}: {target.description}")
    click.echo(f"median   {result.median_ms:.3f} ms per batch of {result.batch} at {result.input_size}x{result.input_size}"
               f"{'  (cached)' if result.cached else ''}")
    click.echo(f"spread   p10 {result.p10_ms:.3f}  p90 {result.p90_ms:.3f}  IQR {result.iqr_ms:.3f} ms  "
               f"cv {result.cv:.3f}  runs {result.runs}")
    if not result.stable:
        click.echo(f"UNSTABLE  {result.unstable} after {result.attempts} attempt(s): the device was disturbed; "
                   "this number is not cached")
    if result.niceness is not None or result.load_avg is not None:
        load = ", ".join(f"{v:.2f}" for v in result.load_avg) if result.load_avg else "unknown"
        click.echo(f"process  niceness {result.niceness if result.niceness is not None else 'unknown'}, "
                   f"load average {load}")
    if result.reference is not None and result.raw_median_ms is not None and result.slowdown is not None:
        click.echo(f"speed    at the anchor of reference {_label(result.reference)}; this run saw "
                   f"{result.raw_median_ms:.3f} ms on a machine {result.slowdown:.2f}x the anchor's time")
    click.echo("versions " + ", ".join(f"{k}={v}" for k, v in result.versions.items()))


def _label(text: str) -> str:
    """A reference architecture by its preset name when it is one (``1.0x``), else its string."""
    from search_space import preset_name, resolve_arch

    try:
        return preset_name(resolve_arch(text)) or text
    except ValueError:
        return text


@click.command()
@click.option("--target", "target_name", default="local-cpu", show_default=True, help="Target name (see `latency targets`).")
@targets_file_option
@click.option("--redraw", is_flag=True,
              help="Time the reference again and replace the anchor (cached measurements are rescaled to it).")
@json_option
def anchor(target_name: str, targets_file: str | None, redraw: bool, as_json: bool) -> None:
    """Show (drawing it on first use) the reference anchor of a normalised target.

    A target with a reference network reports every median at the speed the reference had when
    its anchor was drawn, so numbers stay comparable while a shared machine's speed drifts.
    Redraw after the anchor was drawn on a busy machine (measurements then show slowdowns well
    below 1).
    """
    from latency_models.measurement.measure import reference_anchor

    target = resolve_target(target_name, targets_file)
    drawn = reference_anchor(target, redraw=redraw)
    if as_json:
        emit_json({"target": target.name, **drawn.to_dict()})
        return
    medians = ", ".join(f"{v:.3f}" for v in drawn.chunk_medians_ms)
    click.echo(f"target     {target.name}: reference {_label(drawn.reference)}")
    click.echo(f"anchor     {drawn.anchor_ms:.3f} ms (lowest of {len(drawn.chunk_medians_ms)} quarter-second medians)")
    click.echo(f"medians    {medians} ms")


COMMANDS = [targets, measure, anchor]
