"""The supernet's core: shared weights sliced into build_model's own modules, extraction, scoring, storage."""

from __future__ import annotations

import random

import pytest
import torch

from evaluator.datasets import DataSplit
from evaluator.supernet import ScoringData, Supernet, SupernetError, check_fits, score, slot
from evaluator.supernet.store import load_supernet, read_info, save_supernet
from search_space import DEFAULT_SPACE, Architecture, SearchSpace, build_model
from search_space.presets import PAPER_PRESETS

SMALL = SearchSpace(width_ranges=((8, 24), (16, 48), (32, 64)), depth_ranges=((1, 3), (1, 3), (1, 2)),
                    split_ratios=(0.25, 0.5, 0.75), stem_choices=(8, 12), conv5_choices=(32, 64),
                    kernel_choices=(3, 5, 7), se_choices=(False, True), extra_dw_choices=(False, True))
MIXED = SearchSpace(width_ranges=((48, 72), (96, 120), (144, 168)), width_divisor=12,
                    depth_ranges=((1, 2), (1, 2), (1, 2)), stem_choices=(24,), conv5_choices=(0, 128),
                    block_choices=("v2", "v1g3", "mb6", "xc"))


@pytest.fixture(scope="module")
def small() -> Supernet:
    torch.manual_seed(0)
    return Supernet(SMALL, 10, 16)


def _same_as_standalone(supernet: Supernet, arch: Architecture, size: int = 16) -> None:
    """The supernet's forward of ``arch`` is exactly its extracted build_model(arch) (batch statistics)."""
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(1))
    supernet.train()
    shared = supernet(x, arch)
    model = supernet.extract(arch)
    model.train()
    assert type(model) is type(build_model(arch, supernet.spec.num_classes, size))
    assert sum(p.numel() for p in model.parameters()) == supernet.arch_parameters(arch)
    torch.testing.assert_close(shared, model(x), rtol=0, atol=1e-5)


def test_every_option_of_a_space_runs_as_its_standalone_model(small: Supernet) -> None:
    rng = random.Random(3)
    archs = [small.largest, small.smallest, *(small.sample(rng) for _ in range(12))]
    assert {a.kernels[0] for a in archs} >= {3, 5, 7} and {a.se for a in archs} == {False, True}
    for arch in archs:
        _same_as_standalone(small, arch)


def test_mixed_unit_types_share_one_bank_per_type() -> None:
    torch.manual_seed(0)
    supernet = Supernet(MIXED, 10, 16)
    seen = set()
    for arch in MIXED.sample_many(16, seed=5):
        _same_as_standalone(supernet, arch)
        seen |= set(arch.blocks)
    assert seen == {"v2", "v1g3", "mb6", "xc"}
    families = {key.split("|")[0].split("-")[0] for key in supernet.bank}
    assert {"v2", "v1g3", "mb6", "xc", "net"} <= families


def test_paper_presets_are_paths_of_the_default_supernet() -> None:
    torch.manual_seed(0)
    supernet = Supernet(DEFAULT_SPACE, 10, 16, shape_samples=4)
    for name in ("0.5x", "2.0x"):
        _same_as_standalone(supernet, PAPER_PRESETS[name])


def test_width_depth_and_kernel_slice_the_same_tensors(small: Supernet) -> None:
    """Two candidates differing in width, depth and kernel read the first channels and the centre kernel."""
    base = small.smallest.replace(kernels=(7, 7, 7))
    wide = base.replace(widths=(24, 48, 64), depths=(3, 3, 2), kernels=(3, 3, 3))
    name = "stage2.0.branch1.0.weight"  # stride-2 depthwise kernel
    narrow_t, wide_t = small.tensors(base)[name], small.tensors(wide)[name]
    assert slot(name, base) == slot(name, wide)
    c = narrow_t.shape[0]
    torch.testing.assert_close(wide_t[:c], narrow_t[:, :, 2:5, 2:5])
    assert "stage3.2.branch2.0.weight" in small.tensors(wide) and "stage3.2.branch2.0.weight" not in small.tensors(base)


def test_a_path_trains_only_the_weights_it_uses(small: Supernet) -> None:
    small.zero_grad(set_to_none=True)
    arch = small.smallest
    small.train()
    small(torch.randn(2, 3, 16, 16), arch).sum().backward()
    touched = {k for k, p in small.bank.items() if p.grad is not None}
    assert touched and len(touched) < len(small.bank)
    grad = small.bank[next(k for k in touched if k.endswith("conv1:0:weight"))].grad
    assert grad[arch.stem:].abs().sum() == 0 and grad[:arch.stem].abs().sum() > 0
    small.zero_grad(set_to_none=True)


def test_extracted_weights_are_a_copy(small: Supernet) -> None:
    arch = small.sample(random.Random(0))
    model = small.extract(arch)
    before = {k: p.detach().clone() for k, p in small.bank.items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[k], p) for k, p in small.bank.items())


def test_kernel_transform_starts_as_the_plain_centre_crop() -> None:
    torch.manual_seed(0)
    plain = Supernet(SMALL, 10, 16, shape_samples=8)
    torch.manual_seed(0)
    transformed = Supernet(SMALL, 10, 16, shape_samples=8, kernel_transform=True)
    assert len(transformed.transforms) > 0
    arch = plain.smallest.replace(kernels=(3, 5, 3))
    for name, t in plain.tensors(arch).items():
        torch.testing.assert_close(transformed.tensors(arch)[name], t)
    _same_as_standalone(transformed, arch)


def test_an_architecture_outside_the_space_is_one_line(small: Supernet) -> None:
    outside = small.smallest.replace(widths=(200, 48, 64))
    with pytest.raises(SupernetError, match="outside the supernet's space") as exc:
        small(torch.randn(1, 3, 16, 16), outside)
    assert "\n" not in str(exc.value)
    with pytest.raises(SupernetError, match="outside"):
        small.extract(PAPER_PRESETS["1.0x"])


def _tiny_data(size: int = 16, classes: int = 10) -> DataSplit:
    g = torch.Generator().manual_seed(0)
    return DataSplit("tiny", torch.randn(64, 3, size, size, generator=g), torch.arange(64) % classes,
                     torch.randn(32, 3, size, size, generator=g), torch.arange(32) % classes, classes)


def test_scoring_is_deterministic_and_checks_the_data(small: Supernet) -> None:
    data = _tiny_data()
    scoring = ScoringData.from_split(data, bn_batches=2, bn_batch=16, val_size=20)
    arch = small.sample(random.Random(1))
    first, second = score(small, arch, scoring, bn_batch=16), score(small, arch, scoring, bn_batch=16)
    assert first.accuracy == second.accuracy and 0.0 <= first.accuracy <= 1.0
    assert (first.bn_images, first.val_images) == (32, 20) and first.arch == arch.to_string()
    check_fits(small, data)
    with pytest.raises(SupernetError, match="16 px"):
        check_fits(small, _tiny_data(size=12))


def test_store_round_trip_checksum_and_refusals(small: Supernet, tmp_path) -> None:
    data = _tiny_data()
    identity = {"name": "tiny", "input_size": 16, "num_classes": 10, "train": 64, "val": 32}
    info = save_supernet(tmp_path / "sn", small, dataset=identity, method="spos", epochs=3, recipe={"lr": 0.1})
    loaded, again = load_supernet(tmp_path / "sn")
    assert again.checksum == info.checksum == read_info(tmp_path / "sn" / "supernet.pt").checksum
    assert (again.method, again.epochs, again.extra["recipe"]) == ("spos", 3, {"lr": 0.1})
    arch = small.sample(random.Random(2))
    x = torch.randn(2, 3, 16, 16)
    small.train()
    loaded.train()
    torch.testing.assert_close(loaded(x, arch), small(x, arch))
    again.check_data(data)
    with pytest.raises(SupernetError, match="was trained on tiny at 16 px"):
        again.check_data(_tiny_data(size=12))

    with pytest.raises(SupernetError, match="no supernet at"):
        load_supernet(tmp_path / "missing")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "supernet.pt").write_bytes(b"not a file torch wrote")
    with pytest.raises(SupernetError, match="unreadable"):
        read_info(broken)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    torch.save({"format": "something-else"}, foreign / "supernet.pt")
    with pytest.raises(SupernetError, match="not a shufflenas supernet"):
        load_supernet(foreign)
