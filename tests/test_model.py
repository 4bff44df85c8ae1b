"""build_model: torchvision-identical presets, the small proxy stem, unit semantics, ONNX export.

The property test builds random architectures from the default space, runs them at the proxy
(16 px) and deploy (224 px) resolutions and checks ONNX Runtime gives torch's outputs.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latency_models.costs.analytic import summary
from latency_models.measurement.onnx_export import export_bytes
from search_space import (
    DEFAULT_SPACE,
    PAPER_PRESETS,
    PRESETS,
    Architecture,
    ArchitectureError,
    SearchSpace,
    build_model,
    channel_shuffle,
    count_parameters,
    stem_layout,
)
from search_space.model import InvertedResidual

@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: these nets are tiny and the test machines are small and shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


#: torchvision.models.shufflenet_v2_x0_5 ... x2_0 parameter counts (1000 classes).
TORCHVISION_PARAMS = {"0.5x": 1_366_792, "1.0x": 2_278_604, "1.5x": 3_503_624, "2.0x": 7_393_996}
#: The paper's Table 5 / Table 8 complexity, MFLOPs (multiply-adds) at 224x224.
PAPER_MFLOPS = {"0.5x": 41, "1.0x": 146, "1.5x": 299, "2.0x": 591}


@pytest.mark.parametrize("name", list(PAPER_PRESETS))
def test_presets_have_torchvision_parameter_counts(name):
    arch = PAPER_PRESETS[name]
    for size in (224, 16):  # the small stem changes strides only, not weights
        model = build_model(arch, num_classes=1000, input_size=size)
        assert count_parameters(model) == TORCHVISION_PARAMS[name]
        assert summary(arch, size, 1000)["params"] == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("name", list(PAPER_PRESETS))
def test_preset_flops_within_2_percent_of_paper(name):
    flops = summary(PAPER_PRESETS[name], 224, 1000)["flops"]
    assert abs(flops / (PAPER_MFLOPS[name] * 1e6) - 1) < 0.02


def test_module_names_follow_torchvision():
    model = build_model(PRESETS["1.0x"])
    top = [name for name, _ in model.named_children()]
    assert top == ["conv1", "maxpool", "stage2", "stage3", "stage4", "conv5", "fc"]
    keys = set(model.state_dict())
    for key in ("conv1.0.weight", "conv1.1.running_mean", "stage2.0.branch1.0.weight", "stage2.0.branch2.0.weight",
                "stage3.7.branch2.5.weight", "stage4.3.branch2.6.running_var", "conv5.0.weight", "fc.weight", "fc.bias"):
        assert key in keys
    assert tuple(model.state_dict()["stage2.0.branch1.2.weight"].shape) == (58, 24, 1, 1)
    assert len(model.stage3) == 8 and len(model.stage2[1].branch1) == 0


def _stage_shapes(model: torch.nn.Module, size: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [getattr(model, n).register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape)))
             for n in ("conv1", "maxpool", "stage2", "stage3", "stage4", "conv5")]
    with torch.no_grad():
        out = model.eval()(torch.randn(2, 3, size, size))
    for h in hooks:
        h.remove()
    shapes["fc"] = tuple(out.shape)
    return shapes


def test_deploy_stem_and_shapes():
    assert stem_layout(224) == (2, True) and stem_layout(64) == (2, True)
    shapes = _stage_shapes(build_model(PRESETS["0.5x"], num_classes=7, input_size=224), 224)
    assert shapes == {"conv1": (2, 24, 112, 112), "maxpool": (2, 24, 56, 56), "stage2": (2, 48, 28, 28),
                      "stage3": (2, 96, 14, 14), "stage4": (2, 192, 7, 7), "conv5": (2, 1024, 7, 7), "fc": (2, 7)}


def test_small_stem_for_proxy_resolution():
    assert stem_layout(16) == (1, False) and stem_layout(63) == (1, False)
    model = build_model(PRESETS["0.5x"], num_classes=10, input_size=16)
    assert isinstance(model.maxpool, torch.nn.Identity) and model.conv1[0].stride == (1, 1)
    shapes = _stage_shapes(model, 16)
    assert shapes["conv1"] == (2, 24, 16, 16) and shapes["maxpool"] == (2, 24, 16, 16)
    assert shapes["stage4"] == (2, 192, 2, 2) and shapes["fc"] == (2, 10)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_classes": 0}, "num_classes must be >= 1"),
    ({"input_size": 4}, "input_size must be >= 8"),
])
def test_build_model_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ArchitectureError, match=message):
        build_model(PRESETS["0.5x"], **kwargs)


def test_build_model_refuses_weights_that_cannot_fit_before_torch_allocates():
    """4 bytes x 1024 x 1e11 classes is 400 TB: one line instead of a DefaultCPUAllocator traceback."""
    from search_space.sizes import MemoryBudgetError

    with pytest.raises(MemoryBudgetError) as info:
        build_model(PRESETS["1.0x"], num_classes=10**11)
    message = str(info.value)
    assert message.startswith("1.0x with 100000000000 classes at 224x224 would need about ")
    assert "to build (weights " in message and "available" in message and "\n" not in message


def test_channel_shuffle_interleaves_two_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    y = torch.randn(2, 12, 3, 3)
    assert torch.equal(channel_shuffle(channel_shuffle(y, 2), 6), y)  # 6 groups undo 2 groups


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_stride1_unit_passes_kept_channels_unchanged(ratio):
    unit = InvertedResidual(16, 16, 1, split_ratio=ratio).eval()
    x = torch.randn(2, 16, 5, 5)
    with torch.no_grad():
        out = channel_shuffle(unit(x), 8)  # undo the 2-group shuffle: [kept | branch]
    kept = 16 - round(16 * ratio)
    assert unit.kept == kept
    assert torch.equal(out[:, :kept], x[:, :kept])
    assert sum(p.numel() for p in unit.branch2[0].parameters()) == (16 - kept) ** 2  # 1x1 conv on the branch


def test_stride2_unit_halves_the_map_and_sets_the_width():
    unit = InvertedResidual(24, 48, 2, split_ratio=0.25).eval()
    with torch.no_grad():
        out = unit(torch.randn(1, 24, 9, 9))
    assert out.shape == (1, 48, 5, 5)
    assert unit.branch1[-3].out_channels == 36 and unit.branch2[-3].out_channels == 12
    with pytest.raises(ValueError):
        InvertedResidual(24, 48, 1)


def test_variants_build_and_run():
    space = SearchSpace(kernel_choices=(3, 5, 7), se_choices=(True,), extra_dw_choices=(True,))
    arch = space.sample(0)
    model = build_model(arch, num_classes=5, input_size=16).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 16, 16)).shape == (1, 5)
    assert count_parameters(model) == summary(arch, 16, 5)["params"]
    assert count_parameters(model) > count_parameters(build_model(arch.replace(se=False, extra_dw=False), 5, 16))


@pytest.mark.parametrize("seed", range(6))
def test_analytic_params_match_random_architectures(seed):
    space = SearchSpace(kernel_choices=(3, 5, 7), se_choices=(False, True), extra_dw_choices=(False, True))
    arch = space.sample(seed)
    for size, classes in ((224, 1000), (16, 10)):
        assert summary(arch, size, classes)["params"] == count_parameters(build_model(arch, classes, size))


def _ort_outputs(data: bytes, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    return session.run(None, {"input": x})[0]


def _assert_onnx_matches_torch(arch: Architecture, size: int, classes: int, seed: int) -> None:
    # export_bytes draws the weights from torch's RNG first: the same seed rebuilds the same weights
    torch.manual_seed(seed)
    data = export_bytes(arch, input_size=size, num_classes=classes)
    torch.manual_seed(seed)
    model = build_model(arch, classes, size).eval()
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model(x).numpy()
    got = _ort_outputs(data, x.numpy())
    assert got.shape == expected.shape == (1, classes)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)
    assert np.isfinite(expected).all() and np.abs(expected).max() > 0  # a real, non-degenerate output


def test_preset_onnx_at_224_matches_torch():
    _assert_onnx_matches_torch(PRESETS["0.5x"], 224, 1000, seed=0)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_every_sampled_architecture_builds_runs_round_trips_and_exports(seed):
    arch = DEFAULT_SPACE.sample(seed)
    assert DEFAULT_SPACE.contains(arch)
    assert Architecture.from_string(arch.to_string()) == arch
    assert Architecture.from_json(arch.to_json()) == arch
    model = build_model(arch, num_classes=10, input_size=224).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 10) and torch.isfinite(out).all()
    _assert_onnx_matches_torch(arch, 16, 10, seed % 2**31)  # also runs torch at 16
