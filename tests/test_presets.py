"""The cross-family presets (the paper's Table 8 comparison networks) and the ShuffleNetV2 ones beside them.

MobileNetV2 1.0 must have torchvision's parameter count exactly and the paper's 300M multiply-adds
within 2%; MobileNetV2 1.4 585M; ShuffleNetV1 1.0x / 2.0x (g=3) the ShuffleNetV1 paper's 140M / 524M;
the Xception preset sits in the ~500 MFLOPs group. Adding them changes no existing preset.
"""

from __future__ import annotations

import json

import pytest
import torch

from latency_models.costs.analytic import summary
from search_space import PAPER_PRESETS, PRESETS, build_model, count_parameters, get_preset, preset_name, resolve_arch
from search_space.presets import FAMILIES, FAMILY_PRESETS

try:
    import torchvision
except ImportError:  # not a dependency
    torchvision = None

#: preset -> (exact params or None, published multiply-adds in millions, tolerance).
EXPECTED = {
    "mobilenetv2-1.0": (3_504_872, 300, 0.02),
    "mobilenetv2-1.4": (6_108_776, 585, 0.02),
    "shufflenetv1-1.0x-g3": (None, 140, 0.02),
    "shufflenetv1-2.0x-g3": (None, 524, 0.02),
    "xception": (None, 500, 0.03),
}

#: The existing presets: (arch_id, parameters with 1000 classes); none may change.
EXISTING = {"0.5x": 1_366_792, "1.0x": 2_278_604, "1.5x": 3_503_624, "2.0x": 7_393_996}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_family_presets_match_their_published_costs(name):
    params, mflops, tolerance = EXPECTED[name]
    costs = summary(get_preset(name), 224, 1000)
    if params is not None:
        assert costs["params"] == params
    assert abs(costs["flops"] / 1e6 - mflops) / mflops < tolerance, costs["flops"]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_family_presets_build_and_their_torch_params_equal_the_analytic_count(name):
    arch = get_preset(name)
    model = build_model(arch, 1000).eval()
    assert count_parameters(model) == summary(arch, 224, 1000)["params"]
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    assert preset_name(arch) == name and resolve_arch(name) == arch
    assert resolve_arch(arch.to_string()) == arch and resolve_arch(arch.to_string()).arch_id == arch.arch_id


def test_existing_presets_keep_their_ids_and_parameter_counts():
    assert list(PAPER_PRESETS) == ["0.5x", "1.0x", "1.5x", "2.0x"]
    assert PRESETS["1.0x"].arch_id == "7e67833bedee"
    for name, params in EXISTING.items():
        assert summary(PRESETS[name], 224, 1000)["params"] == params
    assert not set(FAMILY_PRESETS) & set(PAPER_PRESETS)


def test_every_preset_has_a_family_label():
    assert set(FAMILIES) == set(PRESETS)
    assert set(FAMILIES.values()) == {"shufflenetv2", "mobilenetv2", "shufflenetv1", "xception"}
    assert FAMILIES["2.0x-se"] == "shufflenetv2" and FAMILIES["xception"] == "xception"
    assert get_preset("mobilenetv2") == PRESETS["mobilenetv2-1.0"]


def test_the_layouts_are_those_of_the_reference_networks():
    mb = get_preset("mobilenetv2-1.0")
    assert mb.blocks == ("mb1", *("mb6",) * 6) and mb.strides == (1, 2, 2, 2, 1, 2, 1) and not mb.stem_pool
    v1 = get_preset("shufflenetv1-2.0x-g3")
    assert v1.conv5 == 0 and v1.widths == (480, 960, 1920) and v1.stem == 48
    model = build_model(get_preset("shufflenetv1-1.0x-g3"))
    assert model.stage2[0].branch_main[0].groups == 1  # the unit after the stem keeps its first 1x1 ungrouped
    assert model.stage3[0].branch_main[0].groups == 3


@pytest.mark.skipif(torchvision is None, reason="torchvision is not installed")
@pytest.mark.parametrize(("name", "width"), [("mobilenetv2-1.0", 1.0), ("mobilenetv2-1.4", 1.4)])
def test_mobilenet_v2_parameter_count_equals_torchvision(name, width):
    reference = torchvision.models.mobilenet_v2(width_mult=width)
    assert count_parameters(build_model(get_preset(name))) == count_parameters(reference)


def test_arch_cost_cli_prints_the_mobilenet_v2_figures(cli_here):
    result = cli_here("arch", "cost", "mobilenetv2-1.0", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["params"] == 3_504_872 and abs(data["flops"] / 300e6 - 1) < 0.02
    assert data["preset"] == "mobilenetv2-1.0"
