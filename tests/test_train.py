"""`shufflenas train` and its parts: real training steps on a slice of digits at 16x16, real
checkpoint files, real ONNX Runtime sessions on the exported model, a real SQLite study."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from conftest import run_main

from evaluator.training.augment import random_crop_flip
from evaluator.training.checkpoint import load_checkpoint
from evaluator.training.ema import ModelEMA
from evaluator.training.loop import lr_at, param_groups, train_architecture
from evaluator.training.outputs import METRIC_COLUMNS
from evaluator.training.recipe import DataSpec, RecipeError, TrainRecipe, read_train_table
from experiments.cli.main import main
from search_space import Architecture, build_model

TINY = "stem8_w16-32-48_d1-1-1_r0.5-0.5-0.5_k3-3-3_c64"
DATA = ("--dataset", "digits", "--limit", "300", "--input-size", "16")
FAST = ("--batch-size", "32", "--threads", "1")
FILES = ("checkpoint.pt", "metrics.csv", "curves.png", "model.pt", "model.onnx")


def read_metrics(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# -- the command, end to end --------------------------------------------------------------------------
def test_cli_trains_and_writes_every_file(cli, tmp_path):
    """The real entry point in a fresh interpreter trains; the rest of the checks run in this process."""
    out = tmp_path / "run"
    done = cli("train", TINY, *DATA, *FAST, "--epochs", "2", "--out", str(out), "--json", "--no-progress",
               env={"SHUFFLENAS_HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stderr
    assert "training on cpu, 1 thread" in done.stderr
    summary = json.loads(done.stdout)
    for key in ("arch", "arch_id", "dataset", "val_top1", "val_top5", "epochs", "model_pt", "model_onnx", "out",
                "seconds"):
        assert key in summary, key
    assert summary["arch"] == TINY and summary["dataset"] == "digits" and summary["epochs"] == 2
    assert summary["arch_id"] == Architecture.from_string(TINY).arch_id
    assert 0.0 <= summary["val_top1"] <= summary["val_top5"] <= 1.0
    for name in FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rows = read_metrics(out / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2] and tuple(rows[0]) == METRIC_COLUMNS
    assert float(rows[-1]["val_top1"]) == summary["val_top1"]
    assert all(float(r["images_per_s"]) > 0 and float(r["lr"]) > 0 for r in rows)

    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["epoch"] == 2 and ckpt["arch"] == TINY and len(ckpt["metrics"]) == 2
    assert ckpt["dataset"]["name"] == "digits" and ckpt["dataset"]["input_size"] == 16
    assert ckpt["dataset"]["classes"] == [str(i) for i in range(10)]
    assert {"torch", "data", "numpy", "python"} <= set(ckpt["rng"]) and ckpt["optimizer"]["state"]

    # the trained weights: model.pt loads, and ONNX Runtime gives the same logits on real images
    import onnxruntime as ort

    from evaluator.datasets import load_dataset
    from evaluator.training.weights import load_model

    module, info = load_model(out / "model.pt")
    assert info.arch == TINY and info.num_classes == 10 and info.input_size == 16
    assert info.metrics["val_top1"] == summary["val_top1"]
    data = load_dataset("digits", input_size=16, limit=300)
    images = data.val_x[:8]
    with torch.no_grad():
        expected = module.eval()(images).numpy()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {session.get_inputs()[0].name: images[i:i + 1].numpy()})[0]
                          for i in range(images.shape[0])])
    assert np.allclose(got, expected, atol=1e-4)

    # model.pt records the run's data (the --limit cap too), so `evaluate` scores the run's own split
    assert info.recipe["data"]["limit"] == 300
    scored = run_main("evaluate", str(out / "model.pt"), "--json", env={"SHUFFLENAS_HOME": str(tmp_path / "home")})
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["top1"] == pytest.approx(summary["val_top1"], abs=1e-6)

    # the same command again (in this process): already trained, nothing rewritten
    before = {name: (out / name).read_bytes() for name in FILES}
    again = run_main("train", TINY, *DATA, *FAST, "--epochs", "2", "--out", str(out), "--json", "--no-progress",
                env={"SHUFFLENAS_HOME": str(tmp_path / "home")})
    assert again.returncode == 0, again.stderr
    assert "already trained" in again.stderr
    assert json.loads(again.stdout)["val_top1"] == summary["val_top1"]
    assert {name: (out / name).read_bytes() for name in ("checkpoint.pt", "model.pt", "model.onnx")} == \
        {name: before[name] for name in ("checkpoint.pt", "model.pt", "model.onnx")}


def test_config_file_and_flags(tmp_path, capsys):
    """A [train] table sets the recipe; flags override it; the recipe is stored in the checkpoint."""
    config = tmp_path / "recipe.toml"
    config.write_text('[train]\noptimizer = "adamw"\nlr = 0.003\nweight_decay = 0.05\nepochs = 5\n'
                      "ema = true\nlabel_smoothing = 0.0\nwarmup_epochs = 0.5\nflip = true\n")
    out = tmp_path / "run"
    code = main(["train", TINY, *DATA, *FAST, "--config", str(config), "--epochs", "1", "--no-flip", "--out", str(out),
                 "--no-progress", "--json"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs"] == 1
    recipe = load_checkpoint(out / "checkpoint.pt")["recipe"]
    assert recipe["optimizer"] == "adamw" and recipe["lr"] == 0.003 and recipe["epochs"] == 1 and recipe["ema"]
    assert recipe["weight_decay"] == 0.05 and recipe["warmup_epochs"] == 0.5
    assert recipe["flip"] is False  # --no-flip over the file's flip = true


def test_shipped_recipe_is_valid():
    from pathlib import Path

    table = read_train_table(Path(__file__).resolve().parents[1] / "experiments/configs/train_fashion.toml")
    recipe = TrainRecipe.from_dict(table)
    assert recipe.epochs >= 10 and recipe.augment


def _study(tmp_path) -> str:
    """A real SQLite study with three finished trials, two of them on the front."""
    import optuna
    from optuna.distributions import FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # (its handler would hold an old captured stderr)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=url, study_name="s", directions=["maximize", "minimize"])
    archs = [TINY, "stem8_w16-32-32_d1-1-1_r0.5-0.5-0.5_k3-3-3_c64", "stem8_w24-32-48_d1-1-1_r0.5-0.5-0.5_k3-3-3_c64"]
    for values, arch in zip(([0.9, 2.0], [0.8, 1.0], [0.7, 3.0]), archs):  # the third is dominated
        study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                                                  values=values, user_attrs={"arch": arch}))
    return url


def test_front_trains_each_trial_into_its_folder(tmp_path, capsys):
    url = _study(tmp_path)
    out = tmp_path / "front"
    code = main(["train", "--storage", url, "--study", "s", "--front", *DATA, *FAST, "--epochs", "1",
                 "--out", str(out), "--no-progress", "--json"])
    assert code == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert [t["trial"] for t in result["trials"]] == [0, 1]
    assert sorted(p.name for p in out.iterdir()) == ["trial-0", "trial-1"]
    for t in result["trials"]:
        assert (out / f"trial-{t['trial']}" / "model.onnx").is_file() and t["study"] == "s"
    assert load_checkpoint(out / "trial-1" / "checkpoint.pt")["arch"] == \
        "stem8_w16-32-32_d1-1-1_r0.5-0.5-0.5_k3-3-3_c64"
    # (one trial alone, --trial N: test_a_trial_trains_on_the_studys_proxy_data_by_default)


def test_a_trial_trains_on_the_studys_proxy_data_by_default(tmp_path, capsys):
    """Without --dataset, a study's trial is trained on the data set, cap and input size its search used."""
    import optuna

    url = _study(tmp_path)
    study = optuna.load_study(study_name="s", storage=url)
    study.set_user_attr("config", {"proxy": {"dataset": "digits", "data_root": None, "input_size": 16,
                                             "limit": 300, "epochs": 2, "extra": {}}})
    out = tmp_path / "proxy-data"
    code = main(["train", "--storage", url, "--study", "s", "--trial", "0", *FAST, "--epochs", "1",
                 "--out", str(out), "--no-progress", "--json"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["dataset"] == "digits" and summary["study"] == "s" and summary["trial"] == 0
    assert (out / "model.onnx").is_file()  # a single trial trains into --out itself
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["dataset"]["input_size"] == 16 and ckpt["dataset"]["train"] + ckpt["dataset"]["val"] == 300

    code = main(["train", TINY, "--epochs", "1", "--out", str(tmp_path / "no-data"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "missing --dataset" in err[0], err


@pytest.mark.parametrize("argv, message", [
    (["--storage", "STUDY", "--study", "s", "--trial", "9"], "no trial 9"),
    (["--storage", "STUDY", "--study", "nope", "--front"], "no study 'nope'"),
    (["--storage", "STUDY", "--study", "s"], "--trial"),
    (["--storage", "STUDY", "--study", "s", "--trial", "0", "--front"], "not both"),
    ([TINY, "--storage", "STUDY", "--study", "s", "--trial", "0"], "not both"),
    ([], "missing ARCHITECTURE"),
])
def test_study_usage_errors(tmp_path, capsys, argv, message):
    url = _study(tmp_path)
    argv = [url if a == "STUDY" else a for a in argv]
    code = main(["train", *argv, *DATA, "--epochs", "1", "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "o").exists()


def test_init_from_torchvision_weights(tmp_path, capsys):
    """--init loads a torchvision-layout state dict (here: one written from our own 0.5x build)."""
    source = build_model(Architecture.from_string(TINY), 1000)
    torch.save(source.state_dict(), tmp_path / "tv.pth")
    out = tmp_path / "run"
    code = main(["train", TINY, *DATA, *FAST, "--epochs", "1", "--lr", "1e-9", "--warmup-epochs", "0",
                 "--no-augment", "--init", f"torchvision:{tmp_path / 'tv.pth'}", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    trained = load_checkpoint(out / "checkpoint.pt")["model"]
    # with a vanishing learning rate the convolutions keep the given weights; the classifier is new (10 classes)
    assert torch.allclose(trained["conv1.0.weight"], source.state_dict()["conv1.0.weight"], atol=1e-6)
    assert trained["fc.weight"].shape[0] == 10


# -- the recipe -----------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, message", [
    ({"epochs": 0}, "epochs"), ({"lr": 0}, "lr"), ({"lr": float("nan")}, "lr"), ({"optimizer": "rmsprop"}, "optimizer"),
    ({"momentum": 1.0}, "momentum"), ({"label_smoothing": 1.5}, "label_smoothing"),
    ({"batch_size": True}, "batch_size"),
    ({"crop_padding": 20}, "crop_padding"), ({"ema": "yes"}, "ema"), ({"flip": "yes"}, "flip"), ({"flip": 1}, "flip"), ({"warmup_epochs": 50, "epochs": 2}, "warmup"),
    ({"threads": 0}, "threads"), ({"input_size": 4}, "input_size"), ({"epochz": 3}, "unknown train option"),
])
def test_recipe_rejects_bad_values(changes, message):
    with pytest.raises(RecipeError, match=message):
        TrainRecipe.from_dict(changes)


def test_recipe_file_errors(tmp_path):
    cases = {"bad.toml": "[train\n", "stray.toml": "epochs = 2\n[train]\nlr = 0.1\n", "nested.toml": "[train.x]\na=1\n"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(RecipeError):
            read_train_table(tmp_path / name)
    with pytest.raises(RecipeError, match="does not exist"):
        read_train_table(tmp_path / "missing.toml")
    (tmp_path / "bare.toml").write_text("epochs = 4\nseed = 2\n")
    assert read_train_table(tmp_path / "bare.toml") == {"epochs": 4, "seed": 2}


def test_input_size_defaults_to_the_native_size():
    assert DataSpec("fashion-mnist").input_size(TrainRecipe()) == 28
    assert DataSpec("emnist-letters").input_size(TrainRecipe()) == 28
    assert DataSpec("cifar10").input_size(TrainRecipe()) == 32
    assert DataSpec("digits").input_size(TrainRecipe(input_size=16)) == 16


def test_flip_defaults_to_what_the_data_set_allows():
    """A mirrored digit or letter is another glyph: flipped by default only where the class survives it."""
    from evaluator.datasets import DATASETS, FLIP_OK

    assert set(FLIP_OK) == set(DATASETS)  # every data set says
    flipped = {name for name in DATASETS if DataSpec(name).resolve(TrainRecipe()).flip}
    assert flipped == {"fashion-mnist", "cifar10", "cifar100", "imagefolder"}
    assert {"digits", "mnist", "kmnist", "emnist-digits", "emnist-letters", "emnist-byclass"} <= set(DATASETS) - flipped
    assert DataSpec("Fashion_MNIST").resolve(TrainRecipe()).flip is True  # any spelling load_dataset accepts
    # an explicit value wins, either way
    assert DataSpec("digits").resolve(TrainRecipe(flip=True)).flip is True
    assert DataSpec("cifar10").resolve(TrainRecipe(flip=False)).flip is False
    # a resumed run keeps the flip its checkpoint recorded, unless the recipe names one
    assert DataSpec("digits").resolve(TrainRecipe(), started={"flip": True}).flip is True
    assert DataSpec("digits").resolve(TrainRecipe(flip=False), started={"flip": True}).flip is False
    assert TrainRecipe().flip is None and TrainRecipe.from_dict({"flip": False}).flip is False


def test_schedule_warms_up_then_follows_a_cosine():
    recipe = TrainRecipe(lr=0.4, min_lr=0.0, epochs=10, warmup_epochs=1)
    total, warm = 100, 10
    rates = [lr_at(recipe, s, total, warm) for s in range(total)]
    assert rates[:warm] == pytest.approx([0.4 * (s + 1) / warm for s in range(warm)])
    assert rates[warm] == pytest.approx(0.4)
    assert all(a >= b for a, b in zip(rates[warm:], rates[warm + 1:]))
    assert rates[-1] < 0.001 and rates[warm + 45] == pytest.approx(0.2 * (1 + math.cos(math.pi * 0.5)))


def test_no_weight_decay_on_batchnorm_and_bias():
    model = build_model(Architecture.from_string(TINY), 10, 16)
    decay, no_decay = param_groups(model, 1e-4)
    names = {id(p): n for n, p in model.named_parameters()}
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 1e-4
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert any(names[id(p)].endswith("fc.bias") for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


# -- augmentation and EMA ---------------------------------------------------------------------------
def test_augmentation_is_seeded_and_shifts_or_flips():
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    a = random_crop_flip(images, torch.Generator().manual_seed(1), padding=2, flip=True)
    b = random_crop_flip(images, torch.Generator().manual_seed(1), padding=2, flip=True)
    assert a.shape == images.shape and torch.equal(a, b)
    assert torch.equal(random_crop_flip(images, torch.Generator(), padding=0, flip=False), images)
    flipped = random_crop_flip(images, torch.Generator().manual_seed(0), padding=0, flip=True)
    for i in range(2):  # each image is itself or its mirror image
        assert torch.equal(flipped[i], images[i]) or torch.equal(flipped[i], images[i].flip(-1))
    # a shift keeps every pixel of the image or replaces it by zero padding
    many = random_crop_flip(images.repeat(16, 1, 1, 1), torch.Generator().manual_seed(2), padding=2, flip=False)
    assert not all(torch.equal(m, images[0]) for m in many[::2])
    assert set(many.unique().tolist()) <= set(images.unique().tolist()) | {0.0}


def test_ema_averages_weights_and_copies_buffers():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    ema = ModelEMA(model, decay=0.5)
    start = ema.module[0].weight.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.fill_(3.0)
    ema.update(model)  # first decay is min(0.5, 1/10)
    assert torch.allclose(ema.module[0].weight, 0.1 * start + 0.9 * model[0].weight)
    assert torch.equal(ema.module[1].running_mean, model[1].running_mean)
    state = ema.state_dict()
    other = ModelEMA(model, decay=0.9)
    other.load_state_dict(state)
    assert other.updates == 1 and other.decay == 0.5


def test_ema_model_is_the_one_evaluated_and_saved(tmp_path):
    """Also: the flip the run trained with (digits: none, by default) is what it records."""
    from evaluator.training.checkpoint import CheckpointError
    from evaluator.training.loop import plan_run
    from evaluator.training.weights import load_model

    arch, spec = Architecture.from_string(TINY), DataSpec("digits", limit=300)
    recipe = TrainRecipe(epochs=1, batch_size=32, threads=1, input_size=16, ema=True)
    result = train_architecture(arch, spec, recipe, tmp_path / "r", progress=False)
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    module, info = load_model(result.model_pt)
    saved = module.state_dict()
    assert all(torch.equal(saved[k], v) for k, v in ckpt["ema"]["module"].items())
    assert not all(torch.equal(saved[k], v) for k, v in ckpt["model"].items())
    assert ckpt["recipe"]["flip"] is False and info.recipe["flip"] is False

    # a checkpoint from before the default followed the data set recorded flip = true: it still resumes,
    # with that flip; asking for the other value is another recipe
    ckpt["recipe"]["flip"] = True
    torch.save(ckpt, tmp_path / "r" / "checkpoint.pt")
    assert plan_run(arch, spec, recipe, tmp_path / "r").recipe.flip is True
    with pytest.raises(CheckpointError, match="recipe option flip"):
        plan_run(arch, spec, recipe.replace(flip=False), tmp_path / "r")


def test_a_diverging_run_stops_with_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", TINY, *DATA, *FAST, "--epochs", "1", "--lr", "1e12", "--warmup-epochs", "0",
                 "--out", str(out), "--no-progress"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(err) == 1 and "diverged" in err[0], err
    assert not (out / "model.pt").exists() and not (out / "checkpoint.pt").exists()


def test_batchnorm_statistics_are_re_estimated_before_validation(tmp_path):
    """The saved model's BatchNorm statistics are those of its final weights on the first training
    images, not running averages that lag behind a high learning rate."""
    from evaluator.datasets import load_dataset
    from evaluator.proxy import recalibrate_bn
    from evaluator.training.loop import BN_RECALIBRATION_IMAGES
    from evaluator.training.weights import load_model

    recipe = TrainRecipe(epochs=1, batch_size=32, lr=0.4, warmup_epochs=0.0, threads=1, input_size=16)
    result = train_architecture(Architecture.from_string(TINY), DataSpec("digits", limit=300), recipe,
                                tmp_path / "run", progress=False)
    module, _ = load_model(result.model_pt)
    saved = {k: v.clone() for k, v in module.state_dict().items() if "running_" in k}
    data = load_dataset("digits", input_size=16, limit=300)
    with torch.no_grad():
        recalibrate_bn(module, data.train_x[:BN_RECALIBRATION_IMAGES], 32)
    again = {k: v for k, v in module.state_dict().items() if "running_" in k}
    assert saved and all(torch.allclose(saved[k], again[k], rtol=1e-4, atol=1e-5) for k in saved)
