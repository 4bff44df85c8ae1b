"""Analytic costs: the paper's MAC guidelines G1/G2, per-layer formulas and agreement with torch."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latency_models.costs.analytic import (
    COST_COLUMNS,
    Layer,
    architecture_layers,
    conv1x1_flops,
    conv1x1_mac,
    costs,
    layer_costs,
    per_stage,
    summary,
    totals,
)
from search_space import DEFAULT_SPACE, PRESETS, SearchSpace, build_model, count_parameters

VARIANTS = SearchSpace(kernel_choices=(3, 5, 7), se_choices=(False, True), extra_dw_choices=(False, True))


# -- G1: equal channel width minimises MAC -----------------------------------------------------

def _g1_bound(h: int, w: int, flops: int) -> float:
    return 2 * math.sqrt(h * w * flops) + flops / (h * w)


@pytest.mark.parametrize("h, w, c", [(8, 8, 64), (56, 56, 128), (7, 7, 32), (1, 1, 16)])
def test_g1_mac_is_minimal_at_equal_widths_and_meets_the_bound(h, w, c):
    budget = h * w * c * c
    pairs = [(c1, c * c // c1) for c1 in range(1, c * c + 1) if (c * c) % c1 == 0]
    macs = {pair: conv1x1_mac(h, w, *pair) for pair in pairs}
    assert all(conv1x1_flops(h, w, *pair) == budget for pair in pairs)
    assert min(macs, key=macs.get) == (c, c)
    assert macs[(c, c)] == pytest.approx(_g1_bound(h, w, budget), rel=1e-12)
    assert all(mac > macs[(c, c)] for pair, mac in macs.items() if pair != (c, c))


@settings(max_examples=200, deadline=None)
@given(h=st.integers(1, 64), w=st.integers(1, 64), c1=st.integers(1, 2048), c2=st.integers(1, 2048))
def test_g1_lower_bound_holds_everywhere(h, w, c1, c2):
    budget = conv1x1_flops(h, w, c1, c2)
    mac = conv1x1_mac(h, w, c1, c2)
    bound = _g1_bound(h, w, budget)
    assert mac >= bound * (1 - 1e-12)
    if c1 == c2:
        assert mac == pytest.approx(bound, rel=1e-12)


def test_g1_paper_table1_rows_rank_by_mac():
    # Table 1 (GPU column, 56x56): FLOPs are roughly equal, MAC and measured time grow with c1:c2
    rows = [(128, 128), (90, 180), (52, 312), (36, 432)]
    flops = [conv1x1_flops(56, 56, *r) for r in rows]
    macs = [conv1x1_mac(56, 56, *r) for r in rows]
    assert max(flops) / min(flops) < 1.06
    assert macs == sorted(macs) and len(set(macs)) == 4


# -- G2: group convolution increases MAC -------------------------------------------------------

@pytest.mark.parametrize("h, w, c1, c2, g", [(4, 4, 64, 64, 1), (4, 4, 64, 128, 2), (56, 56, 128, 512, 8),
                                             (7, 7, 24, 96, 3), (14, 14, 240, 240, 240)])
def test_g2_group_conv_mac_formula(h, w, c1, c2, g):
    budget = conv1x1_flops(h, w, c1, c2, g)
    assert budget == h * w * c1 * c2 // g
    assert conv1x1_mac(h, w, c1, c2, g) == h * w * c1 + budget * g // c1 + budget // (h * w)


def test_g2_mac_grows_with_groups_at_fixed_input_and_flops():
    h, w, c1 = 4, 4, 64
    budget = h * w * c1 * 64
    macs = []
    for g in (1, 2, 4, 8, 16, 32, 64):
        c2 = budget * g // (h * w * c1)  # keep B fixed: more groups, more output channels
        assert conv1x1_flops(h, w, c1, c2, g) == budget
        mac = conv1x1_mac(h, w, c1, c2, g)
        assert mac == h * w * c1 + budget * g // c1 + budget // (h * w)
        macs.append(mac)
    assert all(a < b for a, b in zip(macs, macs[1:]))


def test_g2_paper_table2_rows_rank_by_mac():
    rows = [(1, 128), (2, 180), (4, 256), (8, 360)]  # (g, c) at 56x56, c1 = c2 = c, FLOPs kept equal
    flops = [conv1x1_flops(56, 56, c, c, g) for g, c in rows]
    macs = [conv1x1_mac(56, 56, c, c, g) for g, c in rows]
    assert max(flops) / min(flops) < 1.02
    assert macs == sorted(macs)


# -- per-layer formulas (module docstring) -----------------------------------------------------

def test_conv_layer_costs_follow_the_docstring():
    layer = Layer("c", "conv", c_in=16, c_out=32, h_in=10, w_in=10, h_out=5, w_out=5, k=3, stride=2, groups=2,
                  bn=True, relu=True)
    weights = 3 * 3 * 16 * 32 // 2
    for batch in (1, 3):
        got = layer.costs(batch)
        assert got == {
            "params": weights + 2 * 32,
            "flops": batch * 5 * 5 * weights,
            "mac": batch * (16 * 10 * 10 + 32 * 5 * 5) + weights,
            "kernels": 1,
            "elementwise": batch * 32 * 5 * 5 * 2,  # fused BN + ReLU
        }


def test_depthwise_and_fc_layer_costs():
    dw = Layer("dw", "conv", 8, 8, 6, 6, 6, 6, k=5, groups=8, bn=True)
    assert dw.costs() == {"params": 25 * 8 + 16, "flops": 36 * 25 * 8, "mac": 2 * 8 * 36 + 25 * 8, "kernels": 1,
                          "elementwise": 8 * 36}
    fc = Layer("fc", "fc", 1024, 10, 1, 1, 1, 1, bias=True)
    assert fc.costs(2) == {"params": 10250, "flops": 20480, "mac": 2 * 1034 + 10240, "kernels": 1,
                           "elementwise": 20}


@pytest.mark.parametrize("layer, mac, kernels", [
    (Layer("s", "split", 10, 10, 4, 4, 4, 4), 2 * 160, 2),
    (Layer("c", "concat", 10, 10, 4, 4, 4, 4, inputs=2), 160 + 160, 1),
    (Layer("sh", "shuffle", 10, 10, 4, 4, 4, 4), 160 + 160, 1),
    (Layer("p", "maxpool", 10, 10, 8, 8, 4, 4, k=3, stride=2), 640 + 160, 1),
    (Layer("g", "gap", 10, 10, 4, 4, 1, 1), 160 + 10, 1),
    (Layer("a", "add", 10, 10, 4, 4, 4, 4, inputs=2), 2 * 160 + 160, 1),
    (Layer("m", "mul", 10, 10, 4, 4, 4, 4, inputs=2), 160 + 10 + 160, 1),  # map x per-channel scale
])
def test_data_movement_layers_cost_what_they_read_and_write(layer, mac, kernels):
    got = layer.costs()
    assert got["params"] == got["flops"] == 0
    assert got["mac"] == mac and got["kernels"] == kernels
    assert layer.costs(4)["mac"] == 4 * mac


# -- whole architectures -----------------------------------------------------------------------

def test_summary_has_the_cost_columns_and_matches_totals():
    table = costs(PRESETS["1.0x"])
    assert set(COST_COLUMNS) <= set(table.columns)
    result = summary(PRESETS["1.0x"])
    assert list(result) == list(COST_COLUMNS) and all(type(v) is int for v in result.values())
    assert result == totals(table) == totals(layer_costs(architecture_layers(PRESETS["1.0x"])))


@pytest.mark.parametrize("name, size", [("1.0x", 224), ("2.0x-se", 16), ("0.5x*", 224)])
def test_per_stage_sums_equal_totals(name, size):
    table = costs(PRESETS[name], size)
    stages = per_stage(table)
    assert list(stages.index) == ["stem", "stage2", "stage3", "stage4", "head"]
    assert {c: int(stages[c].sum()) for c in COST_COLUMNS} == totals(table)


def test_batch_scales_activations_not_weights():
    one, four = summary(PRESETS["0.5x"], batch=1), summary(PRESETS["0.5x"], batch=4)
    assert four["params"] == one["params"] and four["kernels"] == one["kernels"]
    assert four["flops"] == 4 * one["flops"] and four["elementwise"] == 4 * one["elementwise"]
    assert one["mac"] < four["mac"] < 4 * one["mac"]  # weights are read once per batch


def test_kernel_counts_of_variants():
    # plain: stem conv + pool, 7 ops per unit (split counts 2 slices), conv5 + pool + fc
    units = PRESETS["1.0x"].num_units
    assert summary(PRESETS["2.0x"])["kernels"] == 2 + 7 * units + 3 == 117
    assert summary(PRESETS["2.0x"], 16)["kernels"] == 116  # small stem: no max-pool
    assert summary(PRESETS["2.0x-se"])["kernels"] == 117 + 4 * units  # pool, fc1, fc2, scale
    assert summary(PRESETS["2.0x*"])["kernels"] == 117 + units + 3  # one extra dw per branch
    plain = summary(PRESETS["2.0x"])
    for name in ("2.0x-se", "2.0x*"):
        variant = summary(PRESETS[name])
        assert all(variant[c] > plain[c] for c in COST_COLUMNS)


def test_small_stem_layers():
    layers = architecture_layers(PRESETS["0.5x"], input_size=16, num_classes=10)
    assert layers[0].name == "conv1" and layers[0].stride == 1 and layers[0].h_out == 16
    assert "maxpool" not in [layer.kind for layer in layers]
    assert layers[-1].kind == "fc" and layers[-1].c_out == 10
    big = architecture_layers(PRESETS["0.5x"], input_size=224)
    assert [layer.kind for layer in big[:2]] == ["conv", "maxpool"] and big[1].h_out == 56


def _torch_convs(arch, size: int, classes: int) -> tuple[list[tuple[int, ...]], int]:
    """Shapes of every Conv2d / Linear as torch runs them, and their multiply-adds."""
    model = build_model(arch, classes, size).eval()
    seen: list[tuple[int, ...]] = []
    flops = [0]

    def hook(module, inputs, output):
        x = inputs[0]
        if isinstance(module, torch.nn.Conv2d):
            seen.append((module.in_channels, module.out_channels, x.shape[2], x.shape[3], output.shape[2],
                         output.shape[3], module.kernel_size[0], module.stride[0], module.groups))
            flops[0] += output[0].numel() * module.weight[0].numel()
        else:
            seen.append((module.in_features, module.out_features, 1, 1, 1, 1, 1, 1, 1))
            flops[0] += module.weight.numel()

    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            module.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.randn(1, 3, size, size))
    return seen, flops[0]


@pytest.mark.parametrize("seed, size", [(0, 16), (1, 224), (2, 16), (3, 64)])
def test_layer_list_is_what_torch_runs(seed, size):
    arch = VARIANTS.sample(seed) if seed else PRESETS["0.5x"].replace(se=True, extra_dw=True, kernels=(5, 3, 7))
    layers = architecture_layers(arch, size, 10)
    expected = [(l.c_in, l.c_out, l.h_in, l.w_in, l.h_out, l.w_out, l.k, l.stride, l.groups)
                for l in layers if l.kind in ("conv", "fc")]
    seen, flops = _torch_convs(arch, size, 10)
    assert seen == expected
    result = summary(arch, size, 10)
    assert result["flops"] == flops
    assert result["params"] == count_parameters(build_model(arch, 10, size))


@pytest.mark.parametrize("seed", range(5))
def test_params_match_build_model_for_sampled_architectures(seed):
    arch = DEFAULT_SPACE.sample(seed)
    for size in (224, 16):
        assert summary(arch, size)["params"] == count_parameters(build_model(arch, 1000, size))


def test_summary_equals_the_sum_of_the_per_layer_table():
    """summary() sums without building the table; both must say the same, at any size and batch."""
    from latency_models.costs.analytic import costs, summary, totals
    from search_space import DEFAULT_SPACE, PAPER_PRESETS

    for arch in [*DEFAULT_SPACE.sample_many(12, seed=5), *PAPER_PRESETS.values()]:
        for size, classes, batch in ((224, 1000, 1), (16, 10, 8)):
            assert summary(arch, size, classes, batch) == totals(costs(arch, size, classes, batch))
