"""`shufflenas supernet`: train a weight-sharing supernet over a search space, score candidates with
its inherited weights, and show what a stored supernet was trained for."""

from __future__ import annotations

from typing import Any

import click

from experiments.cli.common import ARCH, emit_json, json_option
from experiments.config import SupernetOptions
from search_space import Architecture

#: recipe flags: option name -> SupernetRecipe field
_RECIPE_FLAGS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "warmup_epochs",
                 "label_smoothing", "augment", "flip", "method", "sandwich_paths", "sandwich_smallest", "path_draws",
                 "distill", "kernel_transform", "channel_ids", "nested_rows", "touched_only", "input_size", "seed",
                 "threads")


@click.group()
def supernet() -> None:
    """Weight-sharing supernet: one training over a whole search space, then any candidate scored
    in seconds by inherited weights and recalibrated BatchNorm."""


def _space(space_config: str | None):
    """The ``[space]`` table of a search config (the default space without one)."""
    from latency_models.artifacts import read_toml
    from search_space import SearchSpace
    from search_space.errors import ShufflenasError

    if space_config is None:
        return SearchSpace()
    table = read_toml(space_config, kind="search config", error=ShufflenasError).get("space", {})
    try:
        return SearchSpace.from_dict(table)
    except ShufflenasError as exc:
        raise ShufflenasError(f"--space-config {space_config}: [space]: {exc}") from None


def _recipe(config: str | None, flags: dict[str, Any]):
    """The recipe of the config's table and the flags, and the names of the options they set (a
    resumed run takes every other option from its checkpoint)."""
    from evaluator.supernet.training import SupernetRecipe, read_recipe_table

    table = read_recipe_table(config) if config else {}
    given = {k: v for k, v in flags.items() if v is not None}
    if "epochs" not in table and "epochs" not in given:
        raise click.UsageError("missing --epochs (or epochs in the config's [supernet_train] table)")
    return SupernetRecipe.from_dict({**table, **given}), set(table) | set(given)


@supernet.command("train")
@click.option("--dataset", required=True, help="Data set: digits, fashion-mnist, mnist, cifar10, imagefolder, ...")
@click.option("--data-root", type=click.Path(file_okay=False), help="Where the data set's files are.")
@click.option("--limit", type=click.IntRange(min=4), help="Use at most N images (train + val, stratified).")
@click.option("--input-size", type=click.IntRange(min=8, max=1024),
              help="Input resolution [default: 16, the search's [proxy] default].")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs (required here or in the config).")
@click.option("--out", required=True, type=click.Path(), help="Output directory (resumed when it holds this run).")
@click.option("--config", type=click.Path(dir_okay=False),
              help="A TOML file with a [supernet_train] table (flags override it).")
@click.option("--space-config", type=click.Path(dir_okay=False),
              help="A search config whose [space] table sets the space [default: the default space].")
@click.option("--method", type=click.Choice(["spos", "sandwich"]),
              help="sandwich: largest + smallest + N random paths per step (about 4x an SPOS epoch; ranks "
                   "candidates best, docs/supernet.md); spos: one uniform path per step [default: sandwich].")
@click.option("--sandwich-paths", type=click.IntRange(min=0, max=64),
              help="Random paths per step besides the largest and smallest (sandwich) [default: 2].")
@click.option("--sandwich-smallest/--no-sandwich-smallest", "sandwich_smallest", default=None,
              help="Sandwich: train the smallest path every step; off, only the largest and the random ones "
                   "(docs/supernet.md) [default: on].")
@click.option("--path-draws", type=click.IntRange(min=1, max=64),
              help="Each random path is the one with the most FLOPs among N uniform draws: 1 is uniform, more "
                   "trains larger networks more often (docs/supernet.md) [default: 1].")
@click.option("--distill/--no-distill", default=None,
              help="Sandwich: the other paths learn from the largest's soft outputs [default: on].")
@click.option("--kernel-transform/--no-kernel-transform", default=None,
              help="OFA's kernel transformation for smaller kernels [default: off].")
@click.option("--channel-ids/--positional-channels", "channel_ids", default=None,
              help="Index the bank's input channels by canonical channel id instead of position (3.4x the bank on "
                   "the default space; ranks candidates best, docs/supernet.md) [default: channel ids].")
@click.option("--nested-rows/--first-rows", "nested_rows", default=None,
              help="Store each unit's outputs by fate so a unit's reads nest across widths and ratios; implies "
                   "--channel-ids; measured to rank candidates worse (docs/supernet.md) [default: off].")
@click.option("--touched-only/--all-weights", "touched_only", default=None,
              help="A step changes only the bank elements its paths read (weight decay and momentum included) "
                   "[default: on].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Global batch size [default: 128].")
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), help="sgd (Nesterov) or adamw [default: sgd].")
@click.option("--lr", type=float, help="Peak learning rate (after warm-up) [default: 0.02].")
@click.option("--momentum", type=float, help="Momentum (adamw: beta1) [default: 0.9].")
@click.option("--weight-decay", type=float, help="Weight decay of conv and linear weights [default: 5e-4].")
@click.option("--warmup-epochs", type=float, help="Linear warm-up, in epochs [default: 1].")
@click.option("--label-smoothing", type=float, help="Label smoothing [default: 0.1].")
@click.option("--augment/--no-augment", default=None, help="Random crop (and flip where on) [default: on].")
@click.option("--flip/--no-flip", default=None, help="Horizontal flip in the augmentation [default: the data set's].")
@click.option("--seed", type=click.IntRange(min=0), help="Seed of weights, data order, augmentation and paths "
                                                         "[default: 0].")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads [default: torch's].")
@click.option("--ddp-workers", type=click.IntRange(min=1),
              help="Train over N Ray Train workers with DDP (gloo on CPUs, nccl with --use-gpu).")
@click.option("--use-gpu", is_flag=True, help="With --ddp-workers: one GPU per worker.")
@click.option("--ray-address", help="With --ddp-workers: this Ray cluster (HOST:PORT or auto) instead of a local Ray.")
@click.option("--cpus-per-worker", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="CPUs Ray reserves per DDP worker (and its torch threads, unless --threads).")
@click.option("--no-progress", is_flag=True, help="No progress bar or per-epoch lines on stderr.")
@json_option
def train(dataset: str, data_root: str | None, limit: int | None, out: str, config: str | None,
          space_config: str | None, ddp_workers: int | None, use_gpu: bool, ray_address: str | None,
          cpus_per_worker: float, no_progress: bool, as_json: bool, **flags: Any) -> None:
    """Train a supernet over the space into OUT: checkpoint.pt (every epoch), metrics.csv (the
    one-shot top-1 of fixed probes), curves.png, and at the end supernet.pt.

    Rerunning the same command resumes from the checkpoint; a checkpoint of another space, data
    set or recipe is refused.
    """
    from evaluator.training.recipe import DataSpec

    if (use_gpu or ray_address) and ddp_workers is None:
        raise click.UsageError("--use-gpu and --ray-address go with --ddp-workers")
    recipe, given = _recipe(config, {k: flags[k] for k in _RECIPE_FLAGS})
    space = _space(space_config)
    spec = DataSpec(dataset, data_root, limit)  # split seed 0: the search's default split
    if ddp_workers is not None:
        from evaluator.supernet.distributed import train_supernet_ddp

        result = train_supernet_ddp(space, spec, recipe, out, num_workers=ddp_workers, use_gpu=use_gpu, given=given,
                                    address=ray_address, cpus_per_worker=cpus_per_worker, progress=not no_progress)
    else:
        from evaluator.supernet.training import plan_supernet, run_plan

        result = run_plan(plan_supernet(space, spec, recipe, out, given=given), progress=not no_progress)
    if as_json:
        emit_json(result.summary())
        return
    probes = ", ".join(f"{name} {acc:.4f}" for name, acc in result.probes)
    click.echo(f"supernet ({result.method}, {result.epochs} epochs, {result.seconds:.1f} s, "
               f"{result.images_per_s:.0f} img/s): one-shot top-1 {probes}; wrote {result.supernet} "
               f"(checksum {result.checksum})")


@supernet.command("score")
@click.argument("directory", type=click.Path())
@click.argument("architectures", nargs=-1, type=ARCH)
@click.option("--sample", type=click.IntRange(min=1), help="Also score N candidates drawn from the supernet's space.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of --sample.")
@click.option("--dataset", help="Data set [default: the one the supernet was trained on, same root, cap and split].")
@click.option("--data-root", type=click.Path(file_okay=False), help="Where the data set's files are.")
@click.option("--limit", type=click.IntRange(min=4), help="Use at most N images (train + val, stratified).")
@click.option("--bn-batches", type=click.IntRange(min=1), default=SupernetOptions.bn_batches, show_default=True,
              help="Training batches of 128 that recalibrate BatchNorm.")
@click.option("--val-size", type=click.IntRange(min=0), default=SupernetOptions.val_size, show_default=True,
              help="Validate on the first N images of the (shuffled) validation split; 0: all of it.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads [default: torch's].")
@click.option("--also", "also", type=click.Path(), multiple=True,
              help="Another supernet folder (repeatable): each candidate scores the mean of every supernet's "
                   "score (an ensemble, as a search with several [supernet] checkpoints).")
@json_option
def score(directory: str, architectures: tuple[Architecture, ...], sample: int | None, seed: int,
          dataset: str | None, data_root: str | None, limit: int | None, bn_batches: int, val_size: int | None,
          threads: int | None, also: tuple[str, ...], as_json: bool) -> None:
    """Score candidates with the supernet in DIRECTORY: extract, recalibrate BN, validate (top-1).

    One line per candidate: arch_id, accuracy, seconds, architecture.
    """
    from evaluator.supernet.ensemble import check_inside, check_scorer, load_scorer, own_split, score_mean
    from evaluator.supernet.scoring import ScoringData

    if not architectures and sample is None:
        raise click.UsageError("give the architectures to score (ARCH...) or --sample N")
    nets, scorer = load_scorer([directory, *also])
    candidates = list(architectures) + (nets[0].space.sample_many(sample, seed=seed) if sample else [])
    for arch in candidates:  # all refused before any is scored
        check_inside(nets, arch)
    data = own_split(scorer, dataset=dataset, data_root=data_root, limit=limit)
    check_scorer(nets, scorer, data)
    scoring = ScoringData.from_split(data, bn_batches=bn_batches, val_size=val_size)
    rows = []
    for arch in candidates:
        result = score_mean(nets, arch, scoring, threads=threads)
        row = {"arch_id": arch.arch_id, "arch": result.arch, "accuracy": result.accuracy, "seconds": result.seconds,
               "bn_images": result.bn_images, "val_images": result.val_images, "supernet": scorer.checksum}
        rows.append(row)
        if not as_json:
            click.echo(f"{row['arch_id']}  {row['accuracy']:.4f}  {row['seconds']:.2f} s  {row['arch']}")
    if as_json:
        emit_json(rows)


@supernet.command("info")
@click.argument("directory", type=click.Path())
@json_option
def info(directory: str, as_json: bool) -> None:
    """What the supernet in DIRECTORY was trained for: space, data set, method, epochs, checksum."""
    from evaluator.supernet.store import read_info

    summary = read_info(directory).summary()
    if as_json:
        emit_json(summary)
        return
    for key, value in summary.items():
        click.echo(f"{key}: {value}")


__all__ = ["supernet"]
