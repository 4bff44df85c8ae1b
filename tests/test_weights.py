"""Weights in and out: model.pt round trips, torchvision initialisation, ONNX export with trained weights.

torchvision is not a dependency: when it is importable its own ShuffleNetV2 state dicts are used;
otherwise a state dict of the project's 0.5x preset (the same key layout, checked by the first test
when torchvision is there) stands in for torchvision's file.
"""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import onnxruntime as ort
import pytest
import torch

from evaluator.datasets import load_dataset
from evaluator.training.weights import (
    MODEL_FORMAT, ModelInfo, WeightsError, export_onnx, load_init, load_model, read_init, read_onnx_metadata,
    save_model,
)
from search_space import Architecture, build_model, get_preset

TINY = Architecture.from_string("stem8_w8-16-32_d1-2-1_c64")

try:
    import torchvision
except ImportError:  # not a dependency
    torchvision = None


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory):
    """A ShuffleNetV2 0.5x ImageNet state dict file, as torchvision ships it (1000 classes)."""
    path = tmp_path_factory.mktemp("tv") / "shufflenetv2_x0.5.pth"
    if torchvision is not None:
        state = torchvision.models.shufflenet_v2_x0_5().state_dict()
    else:
        torch.manual_seed(1)
        state = build_model(get_preset("0.5x"), 1000).state_dict()
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", input_size=16, seed=0)


def _trained(arch: Architecture, data, steps: int = 3) -> torch.nn.Module:
    """A few real SGD steps, so weights and BatchNorm statistics are no longer the initial ones."""
    torch.manual_seed(0)
    model = build_model(arch, data.num_classes, data.input_size)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    for step in range(steps):
        xb, yb = data.train_x[step * 64:(step + 1) * 64], data.train_y[step * 64:(step + 1) * 64]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    return model.eval()


def _info(data, arch: Architecture = TINY, **changes) -> ModelInfo:
    fields = dict(arch=str(arch), num_classes=data.num_classes, input_size=data.input_size,
                  classes=data.classes, mean=data.mean, std=data.std, dataset="digits",
                  recipe={"seed": 0, "epochs": 1}, metrics={"val_top1": 0.5}, versions={"torch": torch.__version__})
    return ModelInfo(**{**fields, **changes})


class Payload:
    """A pickle that would create ``path`` when unpickled by an unrestricted loader."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


# -- torchvision initialisation -------------------------------------------------------------------------
@pytest.mark.skipif(torchvision is None, reason="torchvision is not installed")
@pytest.mark.parametrize("preset,factory", [("0.5x", "shufflenet_v2_x0_5"), ("1.0x", "shufflenet_v2_x1_0"),
                                            ("1.5x", "shufflenet_v2_x1_5"), ("2.0x", "shufflenet_v2_x2_0")])
def test_torchvision_state_dicts_load_strict_into_the_presets(preset, factory):
    state = getattr(torchvision.models, factory)().state_dict()
    build_model(get_preset(preset), 1000).load_state_dict(state, strict=True)


def test_torchvision_file_loads_strict_with_its_own_classifier(torchvision_file):
    file_state = torch.load(torchvision_file, weights_only=True)
    init = read_init(f"torchvision:{torchvision_file}", get_preset("0.5x"), 1000)
    assert init.reinitialised == () and init.file_classes == 1000
    model = build_model(get_preset("0.5x"), 1000)
    model.load_state_dict(init.state_dict, strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, file_state[key]), key


@pytest.mark.parametrize("input_size", [16, 224])
def test_classifier_is_replaced_for_ten_classes(torchvision_file, input_size):
    """Fine-tuning: every weight but the classifier comes from the file, at any input size (the
    small stem below 64 px has the same weights, only the stride and the max-pool differ)."""
    file_state = torch.load(torchvision_file, weights_only=True)
    init = read_init(f"torchvision:{torchvision_file}", get_preset("0.5x"), 10)
    assert init.reinitialised == ("fc.weight", "fc.bias") and init.file_classes == 1000
    model = build_model(get_preset("0.5x"), 10, input_size)
    model.load_state_dict(load_init(f"torchvision:{torchvision_file}", get_preset("0.5x"), 10), strict=True)
    assert model.fc.weight.shape == (10, 1024)
    for key, value in model.state_dict().items():
        if key not in init.reinitialised:
            assert torch.equal(value, file_state[key]), key
    assert model(torch.randn(2, 3, input_size, input_size)).shape == (2, 10)


def test_init_of_another_architecture_names_the_first_bad_key(torchvision_file):
    with pytest.raises(WeightsError) as err:
        load_init(f"torchvision:{torchvision_file}", get_preset("1.0x"), 10)
    message = str(err.value)
    assert "'stage2.0.branch1.2.weight'" in message and "(24, 24, 1, 1)" in message and "(58, 24, 1, 1)" in message
    assert "\n" not in message


def test_init_with_missing_or_unexpected_keys_is_refused(tmp_path, torchvision_file):
    state = torch.load(torchvision_file, weights_only=True)
    missing = dict(state)
    del missing["conv5.0.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match=r"'conv5\.0\.weight' is missing .*\(1024, 192, 1, 1\)"):
        load_init(f"torchvision:{tmp_path / 'missing.pth'}", get_preset("0.5x"), 10)
    torch.save({**state, "aux.weight": torch.zeros(3)}, tmp_path / "extra.pth")
    with pytest.raises(WeightsError, match=r"unexpected key 'aux\.weight' \(shape \(3,\)\)"):
        load_init(f"torchvision:{tmp_path / 'extra.pth'}", get_preset("0.5x"), 10)
    # a classifier whose inputs do not match conv5 is not fine-tuning: an error, not a silent re-init
    torch.save({**state, "fc.weight": torch.zeros(1000, 512)}, tmp_path / "fc.pth")
    with pytest.raises(WeightsError, match=r"'fc\.weight' has shape \(1000, 512\).*\(10, 1024\)"):
        load_init(f"torchvision:{tmp_path / 'fc.pth'}", get_preset("0.5x"), 10)


def test_unknown_init_scheme_lists_the_known_ones(torchvision_file):
    for spec in (f"supernet:{torchvision_file}", f"timm:{torchvision_file}", str(torchvision_file)):
        with pytest.raises(WeightsError, match="torchvision"):
            load_init(spec, get_preset("0.5x"), 10)
    with pytest.raises(WeightsError, match="names no file"):
        load_init("torchvision:", get_preset("0.5x"), 10)


# -- unreadable and hostile files -------------------------------------------------------------------
def test_corrupt_and_hostile_files_are_refused_without_running_code(tmp_path, torchvision_file):
    marker = tmp_path / "code-ran"
    hostile_zip = tmp_path / "hostile.pt"
    torch.save({"format": MODEL_FORMAT, "version": 1, "info": Payload(marker), "state_dict": {}}, hostile_zip)
    hostile_pickle = tmp_path / "hostile.pkl"
    hostile_pickle.write_bytes(pickle.dumps(Payload(marker), protocol=2))
    hostile_framed = tmp_path / "hostile-framed.pkl"
    hostile_framed.write_bytes(pickle.dumps(Payload(marker), protocol=5))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(torchvision_file.read_bytes()[:5000])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    for path in (hostile_zip, hostile_pickle):
        with pytest.raises(WeightsError, match="refused: it holds pickled Python objects"):
            load_model(path)
        with pytest.raises(WeightsError, match="refused"):
            load_init(f"torchvision:{path}", get_preset("0.5x"), 10)
    for path in (truncated, garbage, hostile_framed):  # (torch's restricted unpickler stops at the framing)
        with pytest.raises(WeightsError, match="corrupted or not a torch file"):
            load_model(path)
        with pytest.raises(WeightsError, match="corrupted or not a torch file"):
            load_init(f"torchvision:{path}", get_preset("0.5x"), 10)
    with pytest.raises(WeightsError, match="not found"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(WeightsError, match="is a directory"):
        load_model(tmp_path)
    assert not marker.exists()


def test_foreign_and_newer_model_files_are_refused(tmp_path, torchvision_file, digits):
    with pytest.raises(WeightsError, match="bare state dict.*--init torchvision:FILE"):
        load_model(torchvision_file)
    torch.save({"format": "something-else", "version": 1}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a shufflenas model"):
        load_model(tmp_path / "other.pt")
    good = save_model(tmp_path / "model.pt", build_model(TINY, 10, 16), _info(digits))
    payload = torch.load(good, weights_only=True)
    torch.save({**payload, "version": 99}, tmp_path / "newer.pt")
    with pytest.raises(WeightsError, match="format version 99, newer"):
        load_model(tmp_path / "newer.pt")
    # weights of another architecture under this file's info: the first bad key is named
    other = build_model(Architecture.from_string("stem8_w16-16-32_d1-2-1_c64"), 10, 16).state_dict()
    torch.save({**payload, "state_dict": other}, tmp_path / "mixed.pt")
    bad_key = (r"does not fit its own architecture.*'stage2\.0\.branch1\.2\.weight' "
               r"has shape \(8, 8, 1, 1\).*\(4, 8, 1, 1\)")
    with pytest.raises(WeightsError, match=bad_key):
        load_model(tmp_path / "mixed.pt")
    torch.save({**payload, "info": {**payload["info"], "num_classes": 0}}, tmp_path / "bad-info.pt")
    with pytest.raises(WeightsError, match="num_classes must be an integer >= 1"):
        load_model(tmp_path / "bad-info.pt")


# -- model.pt round trip -------------------------------------------------------------------------------
def test_model_round_trip_gives_identical_outputs(tmp_path, digits):
    model = _trained(TINY, digits)
    info = _info(digits)
    path = save_model(tmp_path / "run" / "model.pt", model, info)
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary file left behind
    loaded, loaded_info = load_model(path)
    assert loaded_info == info
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(model(digits.val_x), loaded(digits.val_x))
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == MODEL_FORMAT and raw["version"] == 1 and raw["info"]["arch"] == TINY.to_string()


def test_a_failed_save_leaves_the_earlier_file(tmp_path, digits):
    path = save_model(tmp_path / "model.pt", build_model(TINY, 10, 16), _info(digits))
    before = path.read_bytes()
    with pytest.raises(WeightsError, match="does not match"):
        save_model(path, build_model(TINY, 3, 16), _info(digits))
    with pytest.raises(WeightsError, match="is a directory"):
        save_model(tmp_path, build_model(TINY, 10, 16), _info(digits))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_model_info_is_validated(digits):
    with pytest.raises(WeightsError, match="invalid architecture"):
        _info(digits, arch="stem8_w8")
    with pytest.raises(WeightsError, match="3 class names for 10 classes"):
        _info(digits, classes=("a", "b", "c"))
    with pytest.raises(WeightsError, match="std must be > 0"):
        _info(digits, std=(1.0, 0.0, 1.0))
    for arch in ("0.5x", get_preset("0.5x"), get_preset("0.5x").to_string()):  # stored canonical
        assert _info(digits, arch=arch).arch == get_preset("0.5x").to_string()


# -- ONNX with trained weights -------------------------------------------------------------------------
def test_export_onnx_matches_torch_in_onnx_runtime(tmp_path, digits):
    model = _trained(TINY, digits)
    model.train()  # the caller's mode is kept; the export itself is in eval mode
    info = _info(digits)
    path = export_onnx(model, info, tmp_path / "model.onnx")
    assert model.training
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model.eval()
    with torch.no_grad():
        for i in range(5):
            x = digits.val_x[i:i + 1]
            got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
            np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4, rtol=0)
    meta = read_onnx_metadata(path)
    assert meta["arch"] == TINY.to_string() and meta["format"] == MODEL_FORMAT
    assert meta["num_classes"] == "10" and meta["input_size"] == "16"
    assert json.loads(meta["mean"]) == pytest.approx(list(digits.mean))
    assert json.loads(meta["std"]) == pytest.approx(list(digits.std))
    assert json.loads(meta["classes"]) == list(digits.classes)


def test_export_onnx_batch_and_refusal_write_nothing(tmp_path, digits):
    model = _trained(TINY, digits)
    path = export_onnx(model, _info(digits), tmp_path / "b4.onnx", batch=4)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [4, 3, 16, 16]
    earlier = tmp_path / "earlier.onnx"
    earlier.write_bytes(b"an earlier export")
    with pytest.raises(WeightsError, match="differ from torch's"):
        export_onnx(model, _info(digits), earlier, atol=-1.0)  # no agreement can pass: nothing is written
    assert earlier.read_bytes() == b"an earlier export"
    with pytest.raises(WeightsError, match="cannot write"):
        export_onnx(model, _info(digits), "/proc/nope/model.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b4.onnx", "earlier.onnx"]


def test_export_onnx_refuses_a_module_that_is_not_its_info(tmp_path, digits):
    with pytest.raises(WeightsError, match=r"gives \(3,\) outputs, its info says 10 classes"):
        export_onnx(build_model(TINY, 3, 16), _info(digits), tmp_path / "model.onnx")
    assert not list(tmp_path.iterdir())
