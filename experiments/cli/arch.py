"""`shufflenas arch`: inspect, cost and sample architectures."""

from __future__ import annotations

import click

from experiments.cli.common import ARCH, emit_json, format_count, json_option, positive
from search_space import DEFAULT_SPACE, Architecture, preset_name
from search_space.errors import ShufflenasError
from search_space.layout import MAX_BATCH, MAX_INPUT_SIZE, MAX_NUM_CLASSES


@click.group()
def arch() -> None:
    """Inspect, cost and sample architectures."""


input_size_option = click.option("--input-size", default=224, show_default=True,
                                 type=click.IntRange(min=8, max=MAX_INPUT_SIZE), help="Input resolution (square).")
classes_option = click.option("--num-classes", default=1000, show_default=True,
                              type=click.IntRange(min=1, max=MAX_NUM_CLASSES), help="Classifier outputs.")


@arch.command()
@click.argument("architecture", type=ARCH)
@input_size_option
@classes_option
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1, max=MAX_BATCH),
              help="Batch size (scales FLOPs/MAC).")
@click.option("--layers", "layers_csv", type=click.Path(dir_okay=False, writable=True),
              help="Also write the per-layer cost table to this CSV file.")
@json_option
def cost(architecture: Architecture, input_size: int, num_classes: int, batch: int, layers_csv: str | None,
         as_json: bool) -> None:
    """Analytic costs of ARCHITECTURE: params, FLOPs (multiply-adds), MAC, kernels, element-wise volume."""
    from latency_models.atomic import atomic_write_frame
    from latency_models.costs.analytic import costs, totals

    table = costs(architecture, input_size, num_classes, batch)
    if layers_csv:
        try:
            atomic_write_frame(layers_csv, table, index=False, mkdir=False)
        except OSError as exc:
            raise ShufflenasError(f"cannot write {layers_csv}: {exc.strerror or exc}") from None
    result = {"arch": architecture.to_string(), "arch_id": architecture.arch_id, "preset": preset_name(architecture),
              "input_size": input_size, "num_classes": num_classes, "batch": batch, **totals(table)}
    if as_json:
        emit_json(result)
        return
    for key in ("arch", "arch_id", "preset", "input_size", "num_classes", "batch"):
        click.echo(f"{key:12s} {'-' if result[key] is None else result[key]}")
    for key in ("params", "flops", "mac", "kernels", "elementwise"):
        short = f"  ({format_count(result[key])})" if result[key] >= 1000 else ""
        click.echo(f"{key:12s} {result[key]:>14,d}{short}")


@arch.command()
@click.argument("architecture", type=ARCH)
@input_size_option
@classes_option
@json_option
def show(architecture: Architecture, input_size: int, num_classes: int, as_json: bool) -> None:
    """A per-stage table of ARCHITECTURE: unit type, widths, depths, strides, split ratios and costs."""
    from latency_models.costs.analytic import costs, per_stage
    from search_space.blocks import family_of

    table = per_stage(costs(architecture, input_size, num_classes))
    a = architecture
    shapes = {"stem": (a.stem, 1, "-", 3, "conv", "-"), "head": (a.conv5, 1, "-", 1, "conv" if a.conv5 else "fc", "-")}
    for i, stage in enumerate(a.stage_names):
        ratio = a.split_ratios[i] if family_of(a.blocks[i]).uses_ratio else "-"  # (V1 / MB units do not split)
        shapes[stage] = (a.widths[i], a.depths[i], ratio, a.kernels[i], a.blocks[i], a.strides[i])
    rows = []
    for stage, row in table.iterrows():
        width, depth, ratio, kernel, block, stride = shapes[stage]
        rows.append({"stage": stage, "block": block, "width": width, "depth": depth, "stride": stride,
                     "split_ratio": ratio, "kernel": kernel,
                     **{k: int(row[k]) for k in ("params", "flops", "mac", "kernels")}})
    if as_json:
        emit_json({"arch": a.to_string(), "arch_id": a.arch_id, "stages": rows})
        return
    name = preset_name(a)
    click.echo(f"{a}  (id {a.arch_id}{', preset ' + name if name else ''})")
    click.echo(f"input {input_size}x{input_size}, {num_classes} classes, batch 1; k = depthwise kernel size, "
               "s = first unit's stride, kernels = ops after fusion")
    flags = [f for f, on in (("SE", a.se), ("extra depthwise (V2*)", a.extra_dw), ("no stem max-pool", not a.stem_pool),
                             ("no head conv", not a.conv5)) if on]
    if flags:
        click.echo("variants: " + ", ".join(flags))
    header = (f"{'stage':8s} {'unit':>5s} {'width':>6s} {'depth':>5s} {'s':>2s} {'split':>6s} {'k':>2s} {'params':>9s} "
              f"{'FLOPs':>9s} {'MAC':>9s} {'kernels':>7s}")
    rule = "-" * len(header)
    click.echo(header)
    click.echo(rule)
    for r in rows:
        click.echo(f"{r['stage']:8s} {r['block']:>5s} {r['width']:>6d} {r['depth']:>5d} {r['stride']!s:>2s} "
                   f"{r['split_ratio']!s:>6s} {r['kernel']:>2} {format_count(r['params']):>9s} "
                   f"{format_count(r['flops']):>9s} {format_count(r['mac']):>9s} {r['kernels']:>7d}")
    total = {k: sum(r[k] for r in rows) for k in ("params", "flops", "mac", "kernels")}
    click.echo(rule)
    click.echo(f"{'total':8s} {'':>5s} {'':>6s} {a.num_units:>5d} {'':>2s} {'':>6s} {'':>2s} "
               f"{format_count(total['params']):>9s} {format_count(total['flops']):>9s} "
               f"{format_count(total['mac']):>9s} {total['kernels']:>7d}")


@arch.command()
@click.option("--n", "count", default=5, show_default=True, type=int, callback=positive("n"),
              help="How many architectures.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed (same seed, same list).")
@json_option
def sample(count: int, seed: int, as_json: bool) -> None:
    """Sample architectures uniformly from the default search space (one per line)."""
    for architecture in DEFAULT_SPACE.sample_many(count, seed=seed):
        if as_json:
            emit_json({"arch": architecture.to_string(), "arch_id": architecture.arch_id})
        else:
            click.echo(architecture.to_string())
