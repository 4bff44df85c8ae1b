"""`shufflenas export`: write an architecture, or a study trial's architecture, as an ONNX model."""

from __future__ import annotations

from pathlib import Path

import click

from experiments.cli.common import ARCH, emit_json, json_option
from search_space import Architecture
from search_space.errors import ShufflenasError


def _trial_arch(storage: str, study_name: str, number: int) -> tuple[Architecture, dict]:
    """The architecture a study's trial evaluated (read-only), plus the study's deploy settings."""
    from experiments.storage import load_study, open_storage

    study = load_study(open_storage(storage, create=False), study_name)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise ShufflenasError(f"study {study_name!r} has no trial {number} (trials 0..{len(trials) - 1})")
    from experiments.trial_record import trial_architecture

    return trial_architecture(trials[number], study_name), dict(study.user_attrs)


@click.command()
@click.argument("architecture", type=ARCH, required=False)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Output .onnx file.")
@click.option("--storage", help="Export a trial of a study in this Optuna storage (with --study, --trial): "
                                "sqlite:///rel.db or journal:///rel.log relative, four slashes absolute.")
@click.option("--study", "study_name", help="Study name (with --storage).")
@click.option("--trial", "trial_number", type=click.IntRange(min=0), help="Trial number (with --storage).")
@click.option("--input-size", type=click.IntRange(min=8), help="Input resolution [default: 224, or the study's].")
@click.option("--num-classes", type=click.IntRange(min=1), help="Classifier outputs [default: 1000, or the study's].")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--weights", type=click.Path(dir_okay=False),
              help="A trained model.pt: export its weights (architecture, classes, input size come from it).")
@json_option
def export(architecture: Architecture | None, out: str, storage: str | None, study_name: str | None,
           trial_number: int | None, input_size: int | None, num_classes: int | None, batch: int,
           weights: str | None, as_json: bool) -> None:
    """Export ARCHITECTURE (randomly initialised) to an ONNX file.

    Or export the architecture of a search trial: --storage URL --study NAME --trial N.
    Or a trained model with its weights: --weights model.pt (ARCHITECTURE, if given, must match it).
    """
    from_study = storage is not None or study_name is not None or trial_number is not None
    if weights is not None:
        if from_study:
            raise click.UsageError("give either --weights or --storage/--study/--trial, not both")
        _export_weights(weights, architecture, out, input_size, num_classes, batch, as_json)
        return
    extra: dict = {}
    if from_study:
        if architecture is not None:
            raise click.UsageError("give either ARCHITECTURE or --storage/--study/--trial, not both")
        missing = [f"--{n}" for n, v in (("storage", storage), ("study", study_name), ("trial", trial_number)) if v is None]
        if missing:
            raise click.UsageError(f"exporting a trial needs {', '.join(missing)}")
        architecture, attrs = _trial_arch(storage, study_name, trial_number)
        input_size = input_size or attrs.get("deploy_input")
        num_classes = num_classes or attrs.get("deploy_classes")
        extra = {"study": study_name, "trial": trial_number}
    elif architecture is None:
        raise click.UsageError("missing ARCHITECTURE (or --storage/--study/--trial)")
    from latency_models.measurement.onnx_export import export_file

    input_size = input_size or 224
    num_classes = num_classes or 1000
    path = Path(out)
    if path.exists() and path.is_dir():
        raise click.BadParameter(f"{out} is a directory", param_hint="--out")
    try:
        written = export_file(architecture, path, input_size, num_classes, batch)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != out else ""
        raise ShufflenasError(f"cannot write {out}: {exc.strerror or exc}{where}") from None
    info = {"arch": architecture.to_string(), "arch_id": architecture.arch_id, **extra, "out": str(written),
            "bytes": written.stat().st_size, "input_size": input_size, "batch": batch}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"wrote {written} ({info['bytes']:,d} bytes)")


def _check_out(out: str) -> Path:
    path = Path(out)
    if path.exists() and path.is_dir():
        raise click.BadParameter(f"{out} is a directory", param_hint="--out")
    return path


def _export_weights(weights: str, architecture: Architecture | None, out: str, input_size: int | None,
                    num_classes: int | None, batch: int, as_json: bool) -> None:
    """The trained model.pt as ONNX; its output is checked against torch before it is written."""
    from evaluator.training.weights import export_onnx, load_model

    path = _check_out(out)
    if path.exists() and Path(weights).exists() and path.resolve() == Path(weights).resolve():
        raise click.BadParameter(f"{out} is the weights file itself", param_hint="--out")
    module, info = load_model(weights)
    if architecture is not None and architecture != info.architecture:
        raise click.UsageError(f"ARCHITECTURE {architecture.to_string()} is not the architecture of {weights} "
                               f"({info.arch}); leave it out to export the model's own")
    for flag, given, own in (("--input-size", input_size, info.input_size), ("--num-classes", num_classes,
                                                                               info.num_classes)):
        if given is not None and given != own:
            raise click.BadParameter(f"{given} differs from {weights}'s {own}", param_hint=flag)
    written = export_onnx(module, info, path, batch=batch)
    result = {"arch": info.arch, "arch_id": info.architecture.arch_id, "weights": weights, "out": str(written),
              "bytes": written.stat().st_size, "input_size": info.input_size, "num_classes": info.num_classes,
              "batch": batch, "classes": list(info.classes), "mean": list(info.mean), "std": list(info.std)}
    if as_json:
        emit_json(result)
    else:
        click.echo(f"wrote {written} ({result['bytes']:,d} bytes, trained weights of {weights}; inputs "
                   f"normalised outside the graph with mean {_fmt(info.mean)}, std {_fmt(info.std)})")


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
