"""Unit specs: for every registered family the torch module and the analytic layers are one description.

Checked on real torch modules: parameter counts equal the layers' params, the forward output has the
layers' final shape at stride 1 and 2; the stem and head keep the lookup-table keys of the code before
block specs; the network walk places exactly the modules build_model builds; registry errors are one line.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from latency_models.costs.analytic import architecture_layers, summary
from search_space import Architecture, ArchitectureError, build_model, count_parameters
from search_space.blocks import (
    BLOCK_FAMILIES,
    UnitSpec,
    block_choices_help,
    check_token,
    family_of,
    register_block,
    unit_spec,
)
from search_space.blocks import network
from search_space.blocks.stem_head import HeadSpec, StemSpec


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tokens() -> list[str]:
    """One or more well-formed tokens of every registered family (the family alone, or with a number)."""
    found = []
    for family in BLOCK_FAMILIES:
        for token in (family, *(f"{family}{n}" for n in (1, 3, 6, 8))):
            try:
                check_token(token)
            except ArchitectureError:
                continue
            found.append(token)
    return found


def cases() -> list[tuple[str, int, int, int, dict]]:
    """(token, c_in, c_out, stride, options) for every token, both strides, with every option it accepts."""
    out = []
    for token in tokens():
        for c_in, c_out, stride in ((48, 96, 2), (96, 96, 1)):
            for options in ({}, {"se": True}, {"extra_dw": True}, {"kernel": 5}, {"ratio": 0.25}):
                if "ratio" in options and not family_of(token).uses_ratio:
                    continue
                try:
                    unit_spec(token, c_in=c_in, c_out=c_out, stride=stride, **options)
                except ArchitectureError:
                    continue  # this family refuses the option (e.g. no SE for ShuffleNetV1): tested below
                out.append((token, c_in, c_out, stride, options))
    return out


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_every_built_in_family_is_registered_with_tokens():
    assert list(BLOCK_FAMILIES)[0] == "v2"
    assert {"v2", "v1g", "mb", "xc"} <= set(BLOCK_FAMILIES)
    assert {"v2", "v1g3", "mb6", "xc"} <= set(tokens())
    assert all(family in block_choices_help() for family in BLOCK_FAMILIES)


@pytest.mark.parametrize("token, c_in, c_out, stride, options", cases())
def test_module_and_layers_are_one_description(token, c_in, c_out, stride, options):
    spec = unit_spec(token, c_in=c_in, c_out=c_out, stride=stride, **options)
    assert isinstance(spec, UnitSpec) and spec.token == token
    module = spec.module().eval()
    layers, h_out, w_out = spec.layers("u", "stage3", 9, 7)
    assert _params(module) == sum(layer.params for layer in layers)
    with torch.no_grad():
        out = module(torch.randn(2, c_in, 9, 7))
    assert tuple(out.shape) == (2, c_out, h_out, w_out)
    assert (h_out, w_out) == ((5, 4) if stride == 2 else (9, 7))
    assert layers[-1].c_out == c_out and all(layer.stage == "stage3" and layer.name.startswith("u.") for layer in layers)


def test_keys_tell_apart_every_distinct_unit():
    specs = {unit_spec(t, c_in=ci, c_out=co, stride=s, **o) for t, ci, co, s, o in cases()}
    keys = {spec.key(9, 7) for spec in specs}
    assert len(keys) == len(specs)
    assert len({spec.key(9, 7) for spec in specs} | {spec.key(5, 5) for spec in specs}) == 2 * len(specs)


def test_the_shufflenet_v2_key_is_the_old_one():
    spec = unit_spec("v2", c_in=116, c_out=232, stride=2, ratio=0.5, kernel=3)
    assert spec.key(28, 28) == "unit:116-232:h28x28:s2:r0.5:k3:se0:xdw0"
    assert unit_spec("v2", c_in=232, c_out=232, stride=1, ratio=0.375, se=True, extra_dw=True).key(14, 14) == \
        "unit:232-232:h14x14:s1:r0.375:k3:se1:xdw1"


@pytest.mark.parametrize("spec, size, key", [
    (StemSpec(24), 224, "stem:3-24:h224x224:s2:pool1"),
    (StemSpec(8, 1, False), 16, "stem:3-8:h16x16:s1:pool0"),
    (StemSpec(32, 2, False, "relu6"), 224, "stem:3-32:h224x224:s2:pool0:relu6"),
    (HeadSpec(464, 1024), 7, "head:464-1024:h7x7:fc1000"),
    (HeadSpec(960, 0, 10), 7, "head:960-0:h7x7:fc10"),
    (HeadSpec(320, 1280, 1000, "relu6"), 7, "head:320-1280:h7x7:fc1000:relu6"),
])
def test_stem_and_head_keep_their_keys_and_agree_with_their_modules(spec, size, key):
    assert spec.key(size, size) == key
    layers, h, w = spec.layers(size, size)
    module = spec.module().eval()
    assert _params(module) == sum(layer.params for layer in layers)
    c_in = 3 if isinstance(spec, StemSpec) else spec.c_in
    with torch.no_grad():
        out = module(torch.randn(1, c_in, size, size))
    expected = (1, spec.c_out, h, w) if isinstance(spec, StemSpec) else (1, spec.num_classes)
    assert tuple(out.shape) == expected


MIXED = [
    Architecture(widths=(48, 96, 192), depths=(2, 3, 2), blocks=("v2", "mb6", "xc")),
    Architecture(widths=(240, 480, 960), depths=(2, 2, 1), blocks=("v1g3",) * 3, conv5=0, stem=24),
    Architecture(widths=(16, 24, 32, 64), depths=(1, 2, 2, 1), blocks=("mb1", "mb6", "mb6", "mb6"),
                 strides=(1, 2, 2, 1), stem=16, conv5=320, stem_pool=False),
    Architecture(widths=(64,), depths=(3,), conv5=0),
]


@pytest.mark.parametrize("arch", MIXED, ids=str)
@pytest.mark.parametrize("size", [64, 16])
def test_the_network_walk_places_what_build_model_builds(arch, size):
    model = build_model(arch, 10, size).eval()
    assert count_parameters(model) == summary(arch, size, 10)["params"]
    modules = dict(model.named_modules())
    for unit in network.units(arch, size):
        assert _params(modules[unit.prefix]) == sum(layer.params for layer in unit.spec.layers("", "", 1, 1)[0])
    assert [n for n, _ in model.named_children()] == ["conv1", "maxpool", *arch.stage_names, "conv5", "fc"]
    if arch.conv5 == 0:
        assert not any(key.startswith("conv5") for key in model.state_dict())
    with torch.no_grad():
        assert tuple(model(torch.randn(1, 3, size, size)).shape) == (1, 10)
    names = [layer.name for layer in architecture_layers(arch, size, 10)]
    assert len(names) == len(set(names))  # every layer has its own name


def test_runs_collapse_the_repeated_units_of_a_stage():
    arch = MIXED[0]
    runs = network.runs(arch, 64)
    assert [(r.stage_name, r.index, r.count) for r in runs] == [
        ("stage2", 0, 1), ("stage2", 1, 1), ("stage3", 0, 1), ("stage3", 1, 2), ("stage4", 0, 1), ("stage4", 1, 1)]
    assert [u.prefix for u in network.units(arch, 64)][3:5] == ["stage3.1", "stage3.2"]
    assert (runs[0].h, runs[-1].h_out) == (16, 2)
    head, h, w = network.head(arch, 64, 10)
    assert (head.c_in, head.conv5, h, w) == (192, 1024, 2, 2)


def test_the_first_unit_reads_the_stem_in_its_own_form():
    """The network's first unit is the spec's ``after_stem`` form (ShuffleNetV1: its first 1x1 ungrouped)."""
    plain = unit_spec("v1g3", c_in=24, c_out=240, stride=2)
    after = unit_spec("v1g3", c_in=24, c_out=240, stride=2, after_stem=True)
    assert after == plain.after_stem() != plain and after.key(56, 56) == plain.key(56, 56) + ":first"
    units = network.units(MIXED[1], 224)
    assert units[0].spec == after and units[1].spec == unit_spec("v1g3", c_in=240, c_out=240, stride=1)
    assert _params(after.module()) - _params(plain.module()) == 24 * 60 - 24 * 60 // 3  # its first 1x1, ungrouped
    assert unit_spec("v2", c_in=24, c_out=48, stride=2, after_stem=True) == unit_spec("v2", c_in=24, c_out=48, stride=2)


@pytest.mark.parametrize("changes, message", [
    ({"widths": (115, 232, 464)}, "widths[0] = 115 is odd"),
    ({"blocks": ("v2", "v1g3", "v2")}, "stage3 (v1g3): "),
    ({"blocks": ("v2", "zz", "v2")}, "blocks[1]: unknown block type 'zz' (known families: v2"),
    ({"blocks": ("v2", "v1g5", "v2")}, "stage3 (v1g5): block token 'v1g5'"),
    ({"blocks": ("mb6", "v2", "v2"), "split_ratios": (0.25, 0.5, 0.5)}, "a mb6 unit does not split"),
    ({"strides": (1, 2, 2)}, "stage2 (v2): a stride-1 v2 unit keeps its width"),
    ({"extra_dw": True, "blocks": ("mb6",) * 3}, "stage2 (mb6): "),
])
def test_each_stage_is_checked_by_its_unit_type_in_one_line(changes, message):
    with pytest.raises(ArchitectureError) as info:
        Architecture(**{"widths": (116, 232, 464), "depths": (4, 8, 4), **changes})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_registry_errors():
    with pytest.raises(ArchitectureError, match=r"unknown block type 'q7' \(known families: v2"):
        family_of("q7")
    with pytest.raises(ArchitectureError, match="unknown block type 7"):
        family_of(7)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="registered twice"):
        register_block(BLOCK_FAMILIES["v2"])
    with pytest.raises(ValueError, match="empty"):
        register_block(UnitSpec)
    with pytest.raises(ArchitectureError, match="takes no option"):
        unit_spec("v27", c_in=8, c_out=8, stride=1)
    assert family_of("v1g3") is BLOCK_FAMILIES["v1g"] and family_of("v2") is BLOCK_FAMILIES["v2"]


def test_specs_layers_and_costs_need_no_torch():
    code = ("import sys; from search_space import Architecture; from search_space.blocks import network; "
            "from latency_models.costs.analytic import summary; "
            "a = Architecture(widths=(48, 96, 192), depths=(2, 3, 2), blocks=('v2', 'mb6', 'xc')); "
            "network.units(a, 224); summary(a); assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
