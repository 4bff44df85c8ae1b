"""`shufflenas train`: train an architecture, a study's trial, or a study's whole front, and keep
the trained model (model.pt, model.onnx) with its checkpoint, metrics and curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from experiments.cli.common import ARCH, emit_json, json_option
from search_space import Architecture
from search_space.errors import ShufflenasError

#: recipe flags: option name -> TrainRecipe field
_RECIPE_FLAGS = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "warmup_epochs", "label_smoothing",
                 "ema", "augment", "flip", "seed", "threads", "input_size", "init")


def _study_trials(storage: str, study_name: str, number: int | None,
                  front: bool) -> tuple[list[tuple[int, Architecture]], dict[str, Any]]:
    """(trial number, architecture) of one trial or of the study's front (read-only), and the study's
    ``[proxy]`` settings (so the trained model sees the data the search scored it on, by default)."""
    from experiments.report import front_trials
    from experiments.storage import load_study, open_storage

    study = load_study(open_storage(storage, create=False), study_name)
    if front:
        trials = front_trials(study)
        if not trials:
            raise ShufflenasError(f"study {study_name!r} has no complete feasible trial, so no front to train")
    else:
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        if number not in by_number:
            raise ShufflenasError(f"study {study_name!r} has no trial {number} (trials 0..{len(by_number) - 1})")
        trials = [by_number[number]]
    from experiments.trial_record import trial_architecture

    found = [(t.number, trial_architecture(t, study_name)) for t in trials]
    proxy = (study.user_attrs.get("config") or {}).get("proxy") or {}
    return found, proxy if isinstance(proxy, dict) else {}


def _recipe(config: str | None, flags: dict[str, Any]):
    from evaluator.training.recipe import TrainRecipe, read_train_table

    table = read_train_table(config) if config else {}
    return TrainRecipe.from_dict({**table, **{k: v for k, v in flags.items() if v is not None}})


@click.command()
@click.argument("architecture", type=ARCH, required=False)
@click.option("--dataset", help="Data set: digits, fashion-mnist, mnist, cifar10, imagefolder, ... "
                                "[default with --storage: the study's proxy data set, root and input size].")
@click.option("--data-root", type=click.Path(file_okay=False), help="Where the data set's files are.")
@click.option("--limit", type=click.IntRange(min=4), help="Use at most N images (train + val, stratified).")
@click.option("--out", "out", required=True, type=click.Path(),
              help="Output directory (resumed when it holds this run).")
@click.option("--config", type=click.Path(dir_okay=False), help="A TOML file with a [train] table (flags override it).")
@click.option("--storage",
              help="Train a trial of a study in this Optuna storage (with --study and --trial or --front): "
                   "sqlite:///rel.db or journal:///rel.log relative, four slashes absolute.")
@click.option("--study", "study_name", help="Study name (with --storage).")
@click.option("--trial", "trial_number", type=click.IntRange(min=0), help="Trial number (with --storage).")
@click.option("--front", is_flag=True, help="Train every trial on the study's front, into OUT/trial-<N>/.")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs [default: 30, or the config's].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Batch size [default: 128].")
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]),
              help="sgd (Nesterov momentum) or adamw [default: sgd].")
@click.option("--lr", type=float, help="Peak learning rate (after warm-up) [default: 0.1].")
@click.option("--weight-decay", type=float, help="Weight decay of conv and linear weights [default: 5e-4].")
@click.option("--warmup-epochs", type=float, help="Linear warm-up, in epochs [default: 1].")
@click.option("--label-smoothing", type=float, help="Label smoothing [default: 0.1].")
@click.option("--ema/--no-ema", default=None, help="Keep (and evaluate) an EMA of the weights [default: off].")
@click.option("--augment/--no-augment", default=None,
              help="Random crop, and horizontal flip where --flip is on [default: on].")
@click.option("--flip/--no-flip", default=None,
              help="Horizontal flip in the augmentation [default: the data set's: off for digit and letter sets "
                   "(digits, mnist, kmnist, emnist-*), on for fashion-mnist, cifar10/100, imagefolder].")
@click.option("--seed", type=click.IntRange(min=0), help="Seed of weights, data order and augmentation [default: 0].")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads [default: torch's].")
@click.option("--input-size", type=click.IntRange(min=8, max=1024), help="Input resolution [default: the data set's].")
@click.option("--init", help="Start from given weights: torchvision:FILE, or supernet:DIR (the architecture's "
                             "inherited weights from the supernet `shufflenas supernet train --out DIR` wrote).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train up to N runs of --front at once as Ray tasks (1: one after the other, no Ray).")
@click.option("--ray-address", help="Run on this Ray cluster (HOST:PORT or auto) instead of a local Ray.")
@click.option("--cpus-per-job", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="CPUs Ray reserves per training (and torch threads, unless --threads) or per DDP worker.")
@click.option("--gpus-per-job", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="GPU share per training with --workers; fractions pack runs on one GPU (0.25: four per GPU).")
@click.option("--ddp-workers", type=click.IntRange(min=1),
              help="Train one run over N Ray Train workers with DDP (gloo on CPUs, nccl with --use-gpu).")
@click.option("--use-gpu", is_flag=True, help="With --ddp-workers: one GPU per worker.")
@click.option("--no-progress", is_flag=True, help="No progress bar or per-epoch lines on stderr.")
@json_option
def train(architecture: Architecture | None, dataset: str | None, data_root: str | None, limit: int | None, out: str,
          config: str | None, storage: str | None, study_name: str | None, trial_number: int | None, front: bool,
          workers: int, ray_address: str | None, cpus_per_job: float, gpus_per_job: float, ddp_workers: int | None,
          use_gpu: bool, no_progress: bool, as_json: bool, **flags: Any) -> None:
    """Train ARCHITECTURE on a data set into OUT: checkpoint.pt (every epoch), metrics.csv, curves.png,
    and at the end model.pt and model.onnx.

    Or train a trial of a search (--storage URL --study NAME --trial N), or the whole front
    (--front, one after the other into OUT/trial-<N>/). Rerunning the same command resumes from
    the checkpoint; a checkpoint of another architecture, data set or recipe is refused.
    """
    from evaluator.training.loop import plan_run, run_plan
    from evaluator.training.recipe import DataSpec

    recipe = _recipe(config, {k: flags[k] for k in _RECIPE_FLAGS})
    from_study = storage is not None or study_name is not None or trial_number is not None or front
    out_dir = Path(out)
    if from_study:
        if architecture is not None:
            raise click.UsageError("give either ARCHITECTURE or --storage/--study with --trial or --front, not both")
        if front and trial_number is not None:
            raise click.UsageError("give either --trial or --front, not both")
        missing = [f"--{n}" for n, v in (("storage", storage), ("study", study_name)) if v is None]
        if not front and trial_number is None:
            missing.append("--trial (or --front)")
        if missing:
            raise click.UsageError(f"training a study's trial needs {', '.join(missing)}")
        trials, proxy = _study_trials(storage, study_name, trial_number, front)
        if dataset is None:  # the data the search scored these architectures on
            dataset, data_root = proxy.get("dataset") or "digits", data_root or proxy.get("data_root")
            limit = limit or proxy.get("limit")
            if recipe.input_size is None and isinstance(proxy.get("input_size"), int):
                recipe = recipe.replace(input_size=proxy["input_size"])
        runs = [(number, arch, out_dir / f"trial-{number}" if front else out_dir) for number, arch in trials]
    elif architecture is None:
        raise click.UsageError("missing ARCHITECTURE (or --storage/--study with --trial or --front)")
    else:
        runs = [(None, architecture, out_dir)]
    if dataset is None:
        raise click.UsageError("missing --dataset (it defaults to the study's only with --storage)")
    spec = DataSpec(dataset, data_root, limit, seed=recipe.seed)

    if ddp_workers is not None and (len(runs) > 1 or workers > 1):
        raise click.UsageError("--ddp-workers trains one run: give ARCHITECTURE or --trial, not --front or --workers")
    if use_gpu and ddp_workers is None:
        raise click.UsageError("--use-gpu goes with --ddp-workers (for --workers, give --gpus-per-job)")
    if ddp_workers is not None and gpus_per_job:
        raise click.UsageError("--gpus-per-job goes with --workers; DDP workers take one GPU each with --use-gpu")
    plans = [(number, plan_run(arch, spec, recipe, run_out)) for number, arch, run_out in runs]  # all checked first
    summaries, failures = [], []
    if ddp_workers is not None:
        from evaluator.training.distributed import train_ddp

        number, arch, run_out = runs[0]
        results = [(number, train_ddp(arch, spec, recipe, run_out, num_workers=ddp_workers, use_gpu=use_gpu,
                                      address=ray_address, cpus_per_worker=cpus_per_job,
                                      progress=not no_progress))]
    elif workers > 1 or ray_address is not None:
        from evaluator.training.parallel import TrainJob, train_many

        jobs = [TrainJob(arch, spec, recipe, str(run_out), None if number is None else f"trial {number}")
                for number, arch, run_out in runs]
        outcomes = train_many(jobs, workers=workers, address=ray_address, num_cpus=cpus_per_job,
                              num_gpus=gpus_per_job, progress=not no_progress)  # in the order of runs
        results = [(number, o.result) for (number, _, _), o in zip(runs, outcomes) if o.ok]
        failures = [(number, o) for (number, _, _), o in zip(runs, outcomes) if not o.ok]
    else:
        results = ((number, run_plan(plan, progress=not no_progress)) for number, plan in plans)
    for number, result in results:
        summary = result.summary()
        if number is not None:
            summary = {"study": study_name, "trial": number, **summary}
        summaries.append(summary)
        if not as_json:
            where = ", ".join(str(Path(p).name) for p in (result.model_pt, result.model_onnx) if p) or "checkpoint"
            click.echo(f"{'trial ' + str(number) + ': ' if number is not None else ''}{result.arch} on "
                       f"{result.dataset}: val top-1 {result.val_top1:.4f}, top-5 {result.val_top5:.4f} after "
                       f"{result.epochs} epochs ({result.seconds:.1f} s); wrote {where} in {result.out}")
    if as_json:
        failed = [{"trial": number, "arch": o.job.arch.to_string(), "out": o.job.out_dir, "error": o.error}
                  for number, o in failures]
        if front:
            emit_json({"study": study_name, "out": str(out_dir), "trials": summaries,
                       **({"failed": failed} if failed else {})})
        else:
            emit_json(summaries[0] if summaries else {"failed": failed})
    if failures:
        _, first = failures[0]
        raise ShufflenasError(f"{len(failures)} of {len(runs)} trainings failed; "
                              f"{first.job.name()}: {first.error}")
