"""The ShuffleNetV1, MobileNetV2 and Xception unit specs: one description, module and layers agree.

Each spec yields a torch module and an analytic layer list from the same ops; these tests hold the
two against each other (parameters, conv multiply-adds, output shape) at stride 1 and 2, check the
residual is taken exactly where the shapes allow it, and that impossible units are refused in one line.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest
import torch
from torch import nn

from search_space.blocks import BLOCK_FAMILIES, unit_spec
from search_space.blocks.mobilenet_v2 import MobileNetV2Unit
from search_space.blocks.shufflenet_v1 import ShuffleNetV1Unit
from search_space.blocks.xception import XceptionUnit
from search_space.errors import ArchitectureError

H = 14

#: (token, c_in, c_out, stride, options): units of every family at both strides.
CASES = [
    ("mb1", 32, 16, 1, {}),
    ("mb6", 16, 24, 2, {}),
    ("mb6", 24, 24, 1, {}),
    ("mb6", 24, 32, 1, {}),            # stride 1, widths differ: no residual
    ("mb4", 40, 40, 1, {"kernel": 5, "se": True}),
    ("mb3", 40, 80, 2, {"kernel": 7}),
    ("v1g3", 24, 240, 2, {"first": True}),
    ("v1g3", 240, 480, 2, {}),
    ("v1g3", 240, 240, 1, {}),
    ("v1g1", 144, 144, 1, {"kernel": 5}),
    ("v1g8", 384, 768, 2, {}),
    ("v1g2", 200, 200, 1, {}),
    ("xc", 24, 116, 2, {}),
    ("xc", 116, 116, 1, {}),
    ("xc", 96, 96, 1, {"ratio": 0.25, "kernel": 5}),
    ("xc", 64, 128, 2, {"se": True, "extra_dw": True}),
    ("xc", 128, 128, 1, {"se": True, "extra_dw": True, "kernel": 7}),
]


def _spec(token, c_in, c_out, stride, options):
    options = dict(options)
    first = options.pop("first", False)
    spec = unit_spec(token, c_in=c_in, c_out=c_out, stride=stride, **options)
    return spec.after_stem() if first else spec


def _ids():
    return [f"{t}-{a}-{b}-s{s}" + "".join(f"-{k}" for k in o) for t, a, b, s, o in CASES]


def _conv_flops(module: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of every conv in ``module`` on ``x`` (batch 1), counted by forward hooks."""
    total = 0

    def hook(conv, _inputs, out):
        nonlocal total
        total += out.numel() * (conv.in_channels // conv.groups) * conv.kernel_size[0] * conv.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        module(x)
    for handle in handles:
        handle.remove()
    return total


def test_the_three_families_are_registered():
    assert {"v1g", "mb", "xc"} <= set(BLOCK_FAMILIES)
    assert BLOCK_FAMILIES["mb"].activation == "relu6"
    assert BLOCK_FAMILIES["v1g"].activation == BLOCK_FAMILIES["xc"].activation == "relu"


@pytest.mark.parametrize("case", CASES, ids=_ids())
def test_module_and_layers_agree(case):
    spec = _spec(*case)
    assert spec.token == case[0]
    module = spec.module().eval()
    layers, h, w = spec.layers("stage2.0", "stage2", H, H)
    assert sum(p.numel() for p in module.parameters()) == sum(layer.params for layer in layers)
    x = torch.randn(1, spec.c_in, H, H)
    with torch.no_grad():
        out = module(x)
    assert tuple(out.shape) == (1, spec.c_out, h, w) == (1, layers[-1].c_out, layers[-1].h_out, layers[-1].w_out)
    assert h == (H if spec.stride == 1 else (H + 1) // 2)
    conv_flops = sum(layer.costs()["flops"] for layer in layers if layer.kind == "conv")
    assert _conv_flops(module, x) == conv_flops
    assert all(layer.stage == "stage2" and layer.name.startswith("stage2.0.") for layer in layers)


def _zero_path(module: nn.Module) -> None:
    """Make the conv path output zero: every BatchNorm's affine weight and bias to 0."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)


@pytest.mark.parametrize(("c_in", "c_out", "stride", "residual"),
                         [(24, 24, 1, True), (24, 32, 1, False), (24, 24, 2, False), (16, 24, 2, False)])
def test_mobilenet_v2_adds_its_input_only_where_shapes_allow(c_in, c_out, stride, residual):
    spec = unit_spec("mb6", c_in=c_in, c_out=c_out, stride=stride)
    assert spec.residual is residual
    layers, _, _ = spec.layers("u", "stage2", H, H)
    assert [layer.kind for layer in layers].count("add") == int(residual)
    module = spec.module().eval()
    _zero_path(module)
    x = torch.randn(1, c_in, H, H)
    with torch.no_grad():
        out = module(x)
    if residual:
        assert torch.equal(out, x)
    else:
        assert not out.abs().any()  # the path alone, zeroed by its last BatchNorm


def test_mobilenet_v2_expansion_one_has_no_expand_conv_and_relu6_everywhere():
    spec = unit_spec("mb1", c_in=32, c_out=16, stride=1)
    layers, _, _ = spec.layers("u", "s", H, H)
    assert [layer.name for layer in layers] == ["u.conv.dw", "u.conv.project"]
    assert not layers[-1].relu  # the linear bottleneck
    module = spec.module()
    assert [type(m).__name__ for m in module.conv] == ["Conv2d", "BatchNorm2d", "ReLU6", "Conv2d", "BatchNorm2d"]
    assert MobileNetV2Unit(24, 24, 1, expansion=6).hidden == 144


def test_shufflenet_v1_adds_at_stride_1_and_concatenates_an_avgpool_at_stride_2():
    one = unit_spec("v1g3", c_in=240, c_out=240, stride=1)
    kinds = [layer.kind for layer in one.layers("u", "s", H, H)[0]]
    assert kinds[-2:] == ["add", "relu"] and "avgpool" not in kinds and "shuffle" in kinds
    module = one.module().eval()
    _zero_path(module)
    x = torch.randn(1, 240, H, H)
    with torch.no_grad():
        assert torch.equal(module(x), torch.relu(x))
    two = unit_spec("v1g3", c_in=240, c_out=480, stride=2)
    layers, h, _ = two.layers("u", "s", H, H)
    assert layers[0].kind == "avgpool" and layers[0].c_out == 240 and layers[-1].kind == "concat"
    assert two.branch_out == 240 and two.mid == 120
    module = two.module().eval()
    _zero_path(module)
    with torch.no_grad():
        out = module(x)
    assert torch.allclose(out[:, :240], nn.functional.avg_pool2d(x, 3, 2, 1)) and not out[:, 240:].any()
    assert h == 7


def test_shufflenet_v1_first_unit_keeps_its_first_conv_ungrouped():
    plain = ShuffleNetV1Unit(240, 480, 2, groups=3)
    first = unit_spec("v1g3", c_in=24, c_out=240, stride=2).after_stem()
    assert first.first_group and not plain.first_group
    assert first.module().branch_main[0].groups == 1 and plain.module().branch_main[0].groups == 3
    assert first.key(56, 56) != unit_spec("v1g3", c_in=24, c_out=240, stride=2).key(56, 56)
    g1 = unit_spec("v1g1", c_in=144, c_out=144, stride=1)
    assert "shuffle" not in [layer.kind for layer in g1.layers("u", "s", H, H)[0]]  # one group: nothing to shuffle


def test_xception_has_three_separable_convs_and_keeps_half_at_stride_1():
    spec = unit_spec("xc", c_in=116, c_out=116, stride=1)
    layers, _, _ = spec.layers("u", "s", H, H)
    names = [layer.name for layer in layers]
    assert names == ["u.split", "u.branch2.dw1", "u.branch2.pw1", "u.branch2.dw2", "u.branch2.pw2",
                     "u.branch2.dw3", "u.branch2.pw3", "u.concat", "u.shuffle"]
    assert all(layer.groups == layer.c_in for layer in layers if ".dw" in layer.name)
    module = spec.module().eval()
    _zero_path(module)
    x = torch.randn(1, 116, H, H)
    with torch.no_grad():
        out = module(x)
    assert torch.equal(out[:, 0::2], x[:, :58]) and not out[:, 1::2].any()  # the kept half, shuffled with zeros
    two = unit_spec("xc", c_in=24, c_out=116, stride=2)
    assert [layer.name for layer in two.layers("u", "s", H, H)[0]][:2] == ["u.branch1.dw", "u.branch1.pw"]
    assert two.branch1_ops()[0].stride == 2 and two.branch2_ops()[0].stride == 2


def test_keys_are_unique_per_distinct_module_and_name_the_token():
    specs = {_spec(*case) for case in CASES}
    specs |= {MobileNetV2Unit(24, 24, 1, se=True), MobileNetV2Unit(24, 24, 1, kernel=5), XceptionUnit(96, 96, 1)}
    keys = {spec.key(H, H) for spec in specs}
    assert len(keys) == len(specs)
    assert all(spec.key(H, H).startswith(f"unit:{spec.token}:{spec.c_in}-{spec.c_out}:h{H}x{H}:s{spec.stride}:k")
               for spec in specs)
    assert _spec(*CASES[0]).key(H, H) == _spec(*CASES[0]).key(H, H)
    assert MobileNetV2Unit(24, 24, 1).key(14, 14) != MobileNetV2Unit(24, 24, 1).key(28, 28)


BAD = [
    ("v1g5", {"c_in": 240, "c_out": 240, "stride": 1}, "groups"),
    ("v1g", {"c_in": 240, "c_out": 240, "stride": 1}, "groups"),
    ("v1g3", {"c_in": 100, "c_out": 121, "stride": 2}, "100 input channels are not a multiple of 3"),
    ("v1g3", {"c_in": 240, "c_out": 228, "stride": 1}, "adds its input back"),
    ("v1g8", {"c_in": 240, "c_out": 240, "stride": 1}, "bottleneck"),             # 240 // 4 = 60 is not a multiple of 8
    ("v1g3", {"c_in": 240, "c_out": 481, "stride": 2}, "branch's 241 output"),
    ("v1g3", {"c_in": 480, "c_out": 240, "stride": 2}, "must exceed"),
    ("v1g3", {"c_in": 240, "c_out": 240, "stride": 1, "se": True}, "SE"),
    ("v1g3", {"c_in": 240, "c_out": 240, "stride": 1, "extra_dw": True}, "extra-depthwise"),
    ("mb0", {"c_in": 16, "c_out": 16, "stride": 1}, "expansion"),
    ("mb9", {"c_in": 16, "c_out": 16, "stride": 1}, "expansion"),
    ("mbx", {"c_in": 16, "c_out": 16, "stride": 1}, "digits"),
    ("mb6", {"c_in": 16, "c_out": 16, "stride": 1, "extra_dw": True}, "extra-depthwise"),
    ("mb6", {"c_in": 16, "c_out": 16, "stride": 3}, "stride"),
    ("mb6", {"c_in": 16, "c_out": 16, "stride": 1, "kernel": 4}, "odd"),
    ("xc2", {"c_in": 116, "c_out": 116, "stride": 1}, "no option"),
    ("xc", {"c_in": 115, "c_out": 115, "stride": 1}, "odd"),
    ("xc", {"c_in": 116, "c_out": 232, "stride": 1}, "keeps its width"),
    ("xc", {"c_in": 4, "c_out": 4, "stride": 1, "ratio": 0.01}, "no channel"),
    ("zz3", {"c_in": 16, "c_out": 16, "stride": 1}, "unknown block type"),
]


@pytest.mark.parametrize(("token", "kwargs", "words"), BAD, ids=[f"{t}-{w}" for t, _, w in BAD])
def test_impossible_units_are_refused_in_one_line(token, kwargs, words):
    with pytest.raises(ArchitectureError) as info:
        unit_spec(token, **kwargs)
    message = str(info.value)
    assert words in message and "\n" not in message and len(message) < 400


@pytest.mark.parametrize("token", ["mb0", "mb9", "v1g5", "v1g", "xc2", "mbx"])
def test_bad_tokens_are_refused_before_any_shape_is_known(token):
    from search_space.blocks import check_token

    with pytest.raises(ArchitectureError, match=f"block token '{token}'"):
        check_token(token)


def test_modules_pickle_and_the_files_import_without_torch():
    module = unit_spec("v1g3", c_in=240, c_out=240, stride=1).module()
    assert type(pickle.loads(pickle.dumps(module))).__name__ == "ShuffleV1Block"
    for token in ("mb6", "xc"):
        pickle.loads(pickle.dumps(unit_spec(token, c_in=24, c_out=48, stride=2).module()))
    code = ("import sys; import search_space.blocks.mobilenet_v2, search_space.blocks.shufflenet_v1, "
            "search_space.blocks.xception; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
