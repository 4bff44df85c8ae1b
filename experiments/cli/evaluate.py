"""`shufflenas evaluate`: top-1/top-5 and images/s of a trained model.pt on a data set's validation split."""

from __future__ import annotations

import click

from experiments.cli.common import emit_json, json_option


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--dataset", help="Data set name (digits, cifar10, imagefolder, ...) [default: the model's].")
@click.option("--data-root", type=click.Path(file_okay=False),
              help="Directory of the data set's files [default: the one the model was trained from, if recorded].")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate at most this many validation images.")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1))
@json_option
def evaluate(model: str, dataset: str | None, data_root: str | None, limit: int | None, batch_size: int,
             as_json: bool) -> None:
    """Score MODEL (a model.pt from `shufflenas train`) on a data set's validation split.

    The split is the one the model was trained with (its recorded seed, validation fraction and
    image cap), the images are resized to the model's input size and normalised with the model's
    recorded mean and std. The data set must have the model's classes.
    """
    from evaluator.datasets import load_dataset
    from evaluator.training.model_eval import evaluate_on_split, split_settings
    from evaluator.training.weights import load_model

    module, info = load_model(model)
    name = dataset or info.dataset
    if not name:
        raise click.UsageError("the model records no data set: give --dataset")
    settings = split_settings(info)
    recorded_root = settings.pop("root", None)
    if _key(name) != _key(info.dataset):  # another data set: the training run's cap and folder do not apply
        settings.pop("limit", None)
        recorded_root = None
    root = data_root if data_root is not None else recorded_root
    data = load_dataset(name, root=root, input_size=info.input_size, **settings)
    result = evaluate_on_split(module, info, data, batch_size=batch_size, limit=limit)
    if as_json:
        emit_json({"model": model, **result.to_dict()})
        return
    k = min(5, info.num_classes)
    click.echo(f"{model}: {info.arch} on {result.dataset} ({result.images} validation images, "
               f"{info.input_size} px)")
    click.echo(f"top-1 {result.top1:.2%}  top-{k} {result.top5:.2%}  loss {result.loss:.4f}  "
               f"{result.images_per_s:,.0f} images/s (batch {batch_size})")


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")
