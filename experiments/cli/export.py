"""`shufflenas export`: write an architecture as an ONNX model."""

from __future__ import annotations

from pathlib import Path

import click

from experiments.cli.common import ARCH, emit_json, json_option
from search_space import Architecture
from search_space.errors import ShufflenasError


@click.command()
@click.argument("architecture", type=ARCH)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Output .onnx file.")
@click.option("--input-size", default=224, show_default=True, type=click.IntRange(min=8))
@click.option("--num-classes", default=1000, show_default=True, type=click.IntRange(min=1))
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1))
@json_option
def export(architecture: Architecture, out: str, input_size: int, num_classes: int, batch: int, as_json: bool) -> None:
    """Export ARCHITECTURE (randomly initialised) to an ONNX file."""
    from latency_models.onnx_export import export_file

    path = Path(out)
    if path.exists() and path.is_dir():
        raise click.BadParameter(f"{out} is a directory", param_hint="--out")
    try:
        written = export_file(architecture, path, input_size, num_classes, batch)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != out else ""
        raise ShufflenasError(f"cannot write {out}: {exc.strerror or exc}{where}") from None
    info = {"arch": architecture.to_string(), "arch_id": architecture.arch_id, "out": str(written),
            "bytes": written.stat().st_size, "input_size": input_size, "batch": batch}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"wrote {written} ({info['bytes']:,d} bytes)")
