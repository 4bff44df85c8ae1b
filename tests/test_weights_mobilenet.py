"""``--init torchvision:FILE`` for MobileNetV2: torchvision's key names differ, its tensors are paired in order.

torchvision is not a dependency. When it is importable its own ``mobilenet_v2`` is loaded and the
outputs compared. Otherwise the test writes a file with torchvision's key layout itself, from the
project's own preset: ``conv1.*`` -> ``features.0.*``, unit n's flat ``conv.<i>`` path ->
``features.<n>.conv.<j>[.<k>]`` (a Conv2dNormActivation is a nested Sequential), ``conv5.*`` ->
``features.18.*``, ``fc.*`` -> ``classifier.1.*`` (after a Dropout).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from evaluator.training.weights import WeightsError, load_init, read_init
from search_space import build_model, get_preset

try:
    import torchvision
except ImportError:  # not a dependency
    torchvision = None

ARCH = get_preset("mobilenetv2-1.0")


def torchvision_layout(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict under torchvision's mobilenet_v2 key names, in torchvision's order."""
    state = model.state_dict()
    out: dict[str, torch.Tensor] = {}

    def put(prefix: str, src: str) -> None:
        for key, value in state.items():
            if key.startswith(src + "."):
                out[prefix + key[len(src):]] = value

    put("features.0.0", "conv1.0")
    put("features.0.1", "conv1.1")
    n = 1
    for stage in (f"stage{i}" for i in range(2, 9)):
        if not hasattr(model, stage):
            break
        for unit in getattr(model, stage):
            convs = [i for i, m in enumerate(unit.conv) if isinstance(m, nn.Conv2d)]
            # every conv but the last one is a Conv2dNormActivation (conv.<j>.0, .1); the project conv is bare
            for j, i in enumerate(convs[:-1]):
                put(f"features.{n}.conv.{j}.0", f"{stage}.{unit_index(model, stage, unit)}.conv.{i}")
                put(f"features.{n}.conv.{j}.1", f"{stage}.{unit_index(model, stage, unit)}.conv.{i + 1}")
            last = convs[-1]
            put(f"features.{n}.conv.{len(convs) - 1}", f"{stage}.{unit_index(model, stage, unit)}.conv.{last}")
            put(f"features.{n}.conv.{len(convs)}", f"{stage}.{unit_index(model, stage, unit)}.conv.{last + 1}")
            n += 1
    put(f"features.{n}.0", "conv5.0")
    put(f"features.{n}.1", "conv5.1")
    put("classifier.1", "fc")
    return out


def unit_index(model: nn.Module, stage: str, unit: nn.Module) -> int:
    return next(i for i, m in enumerate(getattr(model, stage)) if m is unit)


@pytest.fixture(scope="module")
def source():
    """(the network the file was made from, the file's state dict): torchvision's when importable."""
    torch.manual_seed(3)
    if torchvision is not None:
        net = torchvision.models.mobilenet_v2()
        return net, net.state_dict()
    net = build_model(ARCH, 1000)
    for m in net.modules():  # non-trivial BatchNorm statistics, so a mis-paired tensor shows in the outputs
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net, torchvision_layout(net)


@pytest.fixture(scope="module")
def tv_file(tmp_path_factory, source):
    path = tmp_path_factory.mktemp("tv") / "mobilenet_v2.pth"
    torch.save(source[1], path)
    return path


def test_the_file_has_torchvision_names_and_the_preset_its_parameter_count(source):
    _, state = source
    assert "features.0.0.weight" in state and "classifier.1.weight" in state and "conv1.0.weight" not in state
    assert sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k) == 3_504_872
    if torchvision is not None:
        assert sum(p.numel() for p in torchvision.models.mobilenet_v2().parameters()) == 3_504_872
        assert sum(p.numel() for p in torchvision.models.mobilenet_v2(width_mult=1.4).parameters()) == \
            sum(p.numel() for p in build_model(get_preset("mobilenetv2-1.4")).parameters())


def test_torchvision_mobilenet_v2_loads_strict_and_gives_the_same_outputs(source, tv_file):
    net, _ = source
    model = build_model(ARCH, 1000)
    model.load_state_dict(load_init(f"torchvision:{tv_file}", ARCH, 1000), strict=True)
    net.eval()
    model.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (model(x) - net(x)).abs().max().item()
    assert diff < 1e-5


def test_ten_classes_replace_the_classifier(tv_file):
    init = read_init(f"torchvision:{tv_file}", ARCH, 10)
    assert init.reinitialised == ("fc.weight", "fc.bias") and init.file_classes == 1000
    model = build_model(ARCH, 10)
    model.load_state_dict(init.state_dict, strict=True)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_a_file_that_does_not_fit_names_the_first_misfit_in_one_line(tmp_path, tv_file):
    with pytest.raises(WeightsError) as info:
        load_init(f"torchvision:{tv_file}", get_preset("mobilenetv2-1.4"), 1000)
    message = str(info.value)
    assert "\n" not in message and "tensor 0 'features.0.0.weight' has shape (32, 3, 3, 3)" in message
    assert "'conv1.0.weight' needs (48, 3, 3, 3)" in message
    state = torch.load(tv_file, weights_only=True)
    del state["features.5.conv.1.0.weight"]
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(WeightsError, match="has 261 tensors .* 262"):
        load_init(f"torchvision:{tmp_path / 'short.pth'}", ARCH, 1000)
