"""`shufflenas evaluate` and `shufflenas export --weights` through the CLI's own entry point, run in
this process, on digits at 16 px.

The model.pt files are written directly (a few real SGD steps, then save_model): no training
command is needed to test the weights path. One test runs `shufflenas train --init` end to end.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from evaluator.datasets import load_dataset
from evaluator.training.weights import ModelInfo, read_onnx_metadata, save_model
from experiments.cli.main import main
from search_space import Architecture, build_model, get_preset

TINY = Architecture.from_string("stem8_w8-16-32_d1-2-1_c64")
OTHER_MEAN, OTHER_STD = (0.2, 0.3, 0.4), (0.5, 0.6, 0.7)


def _raw(data) -> torch.Tensor:
    """The validation images before the data set's normalisation (RGB in [0, 1])."""
    return data.val_x * torch.tensor(data.std).view(1, 3, 1, 1) + torch.tensor(data.mean).view(1, 3, 1, 1)


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """model.pt files next to each other: the data set's statistics, other statistics, 3 classes,
    renamed classes; plus an earlier export, a corrupt file and a folder."""
    root = tmp_path_factory.mktemp("evaluate")
    data = load_dataset("digits", input_size=16, seed=0)
    torch.manual_seed(0)
    model = build_model(TINY, 10, 16)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(40):
        xb, yb = data.train_x[step * 64 % 1400:][:64], data.train_y[step * 64 % 1400:][:64]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    model.eval()
    base = dict(arch=TINY.to_string(), num_classes=10, input_size=16, classes=data.classes, dataset="digits",
                recipe={"seed": 0})
    save_model(root / "model.pt", model, ModelInfo(**base, mean=data.mean, std=data.std))
    save_model(root / "other-stats.pt", model, ModelInfo(**base, mean=OTHER_MEAN, std=OTHER_STD))
    save_model(root / "three.pt", build_model(TINY, 3, 16),
               ModelInfo(**{**base, "num_classes": 3, "classes": ("a", "b", "c")}))
    save_model(root / "renamed.pt", model, ModelInfo(**{**base, "classes": tuple("abcdefghij")}))
    (root / "existing.onnx").write_bytes(b"an earlier export that must survive")
    (root / "corrupt.pt").write_bytes(b"PK\x03\x04 not really a zip" * 20)
    (root / "folder").mkdir()
    return {"root": root, "data": data, "model": model}


def test_evaluate_reports_the_models_accuracy(world, cli_here):
    done = cli_here("evaluate", str(world["root"] / "model.pt"), "--dataset", "digits", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    data, model = world["data"], world["model"]
    assert result["images"] == data.val_size == 359
    assert result["top1"] == pytest.approx(_accuracy(model, data.val_x, data.val_y))
    assert result["top1"] > 0.4  # 40 SGD steps already beat chance (0.1) by far
    assert result["top1"] <= result["top5"] <= 1.0
    assert result["images_per_s"] > 0 and result["arch"] == TINY.to_string()
    # the data set defaults to the model's; the plain output is two lines with the numbers
    done = cli_here("evaluate", str(world["root"] / "model.pt"), "--limit", "50", "--batch-size", "16")
    assert done.returncode == 0, done.stderr
    assert "50 validation images" in done.stdout and "top-1" in done.stdout and "images/s" in done.stdout


def test_evaluate_normalises_with_the_models_statistics(world, cli_here):
    done = cli_here("evaluate", str(world["root"] / "other-stats.pt"), "--dataset", "digits", "--limit", "100",
               "--batch-size", "32", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    data = world["data"]
    x = (_raw(data) - torch.tensor(OTHER_MEAN).view(1, 3, 1, 1)) / torch.tensor(OTHER_STD).view(1, 3, 1, 1)
    assert result["images"] == 100
    assert result["top1"] == pytest.approx(_accuracy(world["model"], x[:100], data.val_y[:100]))


def test_export_weights_matches_torch_in_onnx_runtime(world, cli_here):
    root, data, model = world["root"], world["data"], world["model"]
    out = root / "trained.onnx"
    done = cli_here("export", TINY.to_string(), "--weights", str(root / "model.pt"), "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["arch"] == TINY.to_string() and info["num_classes"] == 10 and info["input_size"] == 16
    assert info["mean"] == pytest.approx(list(data.mean))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        for i in range(8):
            x = data.val_x[i:i + 1]
            got = session.run(None, {"input": x.numpy()})[0]
            np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4, rtol=0)
    meta = read_onnx_metadata(out)
    assert meta["arch"] == TINY.to_string() and json.loads(meta["classes"]) == list(data.classes)


def _run(argv: list[str], capfd) -> tuple[int, str]:
    code = main(argv)
    captured = capfd.readouterr()
    return code, captured.err


@pytest.mark.parametrize("argv,needle", [
    (["export", "0.5x", "--weights", "{root}/model.pt", "--out", "{root}/existing.onnx"],
     "is not the architecture of"),
    (["export", "--weights", "{root}/corrupt.pt", "--out", "{root}/existing.onnx"], "corrupted or not a torch file"),
    (["export", "--weights", "{root}/missing.pt", "--out", "{root}/existing.onnx"], "model file not found"),
    (["export", "--weights", "{root}/model.pt", "--out", "/proc/nope/model.onnx"], "cannot write /proc/nope"),
    (["export", "--weights", "{root}/model.pt", "--out", "{root}/folder"], "is a directory"),
    (["export", "--weights", "{root}/model.pt", "--out", "{root}/model.pt"], "is the weights file itself"),
    (["export", "--weights", "{root}/model.pt", "--out", "{root}/existing.onnx", "--input-size", "32"],
     "differs from"),
    (["export", "--weights", "{root}/model.pt", "--storage", "sqlite:///x.db", "--study", "s", "--trial", "0",
      "--out", "{root}/existing.onnx"], "either --weights or"),
    (["evaluate", "{root}/three.pt", "--dataset", "digits"], "has 10 classes, the model predicts 3"),
    (["evaluate", "{root}/renamed.pt", "--dataset", "digits"], "names its classes differently"),
    (["evaluate", "{root}/corrupt.pt", "--dataset", "digits"], "corrupted or not a torch file"),
    (["evaluate", "{root}/missing.pt", "--dataset", "digits"], "model file not found"),
    (["evaluate", "{root}/folder", "--dataset", "digits"], "is a directory"),
    (["evaluate", "{root}/model.pt", "--dataset", "imagenet"], "unknown data set"),
    (["evaluate", "{root}/model.pt", "--limit", "0"], "--limit"),
])
def test_bad_input_is_one_line_and_changes_nothing(world, capfd, argv, needle):
    root = world["root"]
    before = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
    code, err = _run([a.format(root=root) for a in argv], capfd)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()} == before


def test_train_with_torchvision_init(tmp_path, cli_here):
    """`train --init torchvision:FILE`: a file of another architecture names its first bad key
    before anything is written; a fitting one fine-tunes (new classifier) into a model.pt that
    `evaluate` and `export --weights` read."""
    mismatched = tmp_path / "tv-1.0x.pth"
    torch.save(build_model(get_preset("1.0x"), 1000).state_dict(), mismatched)
    done = cli_here("train", "0.5x", "--dataset", "digits", "--init", f"torchvision:{mismatched}",
               "--out", str(tmp_path / "refused"), "--epochs", "1", "--no-progress")
    assert done.returncode == 2, done.stderr
    assert "'stage2.0.branch1.2.weight'" in done.stderr and "(24, 24, 1, 1)" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "refused").exists()

    fitting = tmp_path / "tv-tiny.pth"  # a 1000-class state dict of the tiny architecture stands in
    torch.manual_seed(3)
    torch.save(build_model(TINY, 1000).state_dict(), fitting)
    run = tmp_path / "run"
    done = cli_here("train", TINY.to_string(), "--dataset", "digits", "--input-size", "16", "--limit", "300",
               "--epochs", "1", "--batch-size", "32", "--init", f"torchvision:{fitting}", "--out", str(run),
               "--no-progress", "--json")
    assert done.returncode == 0, done.stderr
    assert (run / "model.pt").is_file() and (run / "model.onnx").is_file()
    done = cli_here("evaluate", str(run / "model.pt"), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["num_classes"] == 10 and result["input_size"] == 16 and result["dataset"] == "digits"
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0


def test_evaluate_uses_the_training_runs_split(world, tmp_path, capfd):
    """A run trained on a capped data set (``recipe["data"]``) is scored on that run's validation
    split, not on a split of the whole data set (which would hold its training images)."""
    capped = load_dataset("digits", input_size=16, seed=1, limit=200)
    info = ModelInfo(arch=TINY.to_string(), num_classes=10, input_size=16, classes=capped.classes, dataset="digits",
                     mean=capped.mean, std=capped.std,
                     recipe={"seed": 1, "data": {"name": "digits", "limit": 200, "seed": 1, "val_fraction": 0.2}})
    path = save_model(tmp_path / "capped.pt", world["model"], info)
    assert main(["evaluate", str(path), "--json"]) == 0
    result = json.loads(capfd.readouterr().out)
    assert result["images"] == capped.val_size == 40
    assert result["top1"] == pytest.approx(_accuracy(world["model"], capped.val_x, capped.val_y))
