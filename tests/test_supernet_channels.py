"""Canonical channel ids: every path still equals its stand-alone model, a bank column means one
producer's channel in every path, and files written before channel ids load and run as before."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from test_supernet import MIXED, SMALL, _same_as_standalone

from evaluator.supernet import Supernet, SupernetSpec, slot
from evaluator.supernet.channel_ids import INPUT, positional_units, trace
from evaluator.supernet.session import check_identity, open_session
from evaluator.supernet.store import load_supernet, save_supernet
from evaluator.supernet.training import SupernetRecipe
from evaluator.training.checkpoint import CheckpointError
from search_space import DEFAULT_SPACE, Architecture, SearchSpace
from search_space.presets import PAPER_PRESETS

V2 = SearchSpace(width_ranges=((8, 24), (16, 48), (32, 64)), depth_ranges=((1, 3), (1, 3), (1, 2)),
                 split_ratios=(0.25, 0.5, 0.75), stem_choices=(8, 12), conv5_choices=(32, 64))


@pytest.fixture(scope="module")
def small() -> Supernet:
    torch.manual_seed(0)
    return Supernet(SMALL, 10, 16, channel_ids=True)


def test_presets_and_samples_of_the_default_space_equal_their_standalone_models() -> None:
    torch.manual_seed(0)
    supernet = Supernet(DEFAULT_SPACE, 10, 16, shape_samples=4, channel_ids=True)
    assert supernet.spec.channel_ids
    for arch in (PAPER_PRESETS["0.5x"], PAPER_PRESETS["2.0x"], *DEFAULT_SPACE.sample_many(3, seed=11)):
        _same_as_standalone(supernet, arch)


def test_kernels_se_and_extra_depthwise_with_channel_ids(small: Supernet) -> None:
    rng = random.Random(8)
    archs = [small.largest, small.smallest, *(small.sample(rng) for _ in range(10))]
    assert {a.kernels[0] for a in archs} >= {3, 5, 7} and {a.se for a in archs} == {False, True}
    assert {a.extra_dw for a in archs} == {False, True}
    for arch in archs:
        _same_as_standalone(small, arch)


def test_mixed_unit_types_with_channel_ids() -> None:
    """Residual units (mb, v1g) keep positional indexing inside; the paths still equal their models."""
    torch.manual_seed(0)
    supernet = Supernet(MIXED, 10, 16, channel_ids=True)
    seen = set()
    for arch in MIXED.sample_many(10, seed=6):
        _same_as_standalone(supernet, arch)
        seen |= set(arch.blocks)
    assert seen == {"v2", "v1g3", "mb6", "xc"}


def _ids_read(supernet: Supernet, arch: Architecture, reader: str) -> list[tuple[str, int]]:
    model = supernet._skeleton(arch)
    t = trace(model, 3, INPUT, lambda name: slot(name, arch), positional_units(arch, slot))
    return t.channels(reader)


def test_a_producers_channel_reads_the_same_column_in_every_path() -> None:
    """Two paths that differ only in stage 2's depth: stage 3's first unit gets stage 2's channels in
    other positions, yet reads the same bank column (and weights) for each channel both share."""
    torch.manual_seed(0)
    supernet = Supernet(V2, 10, 16, shape_samples=8, channel_ids=True)
    one = Architecture(widths=(24, 48, 64), depths=(1, 2, 1), split_ratios=(0.5, 0.5, 0.5), kernels=(3, 3, 3),
                       stem=8, conv5=32)
    two = one.replace(depths=(3, 2, 1))
    for name in ("stage3.0.branch2.0.weight", "stage3.0.branch1.2.weight"):  # 1x1s reading stage 2's output
        reader = name.rsplit(".", 1)[0]
        ids_one = _ids_read(supernet, one, reader)
        ids_two = _ids_read(supernet, two, reader)
        shared = set(ids_one) & set(ids_two)
        assert shared and ids_one != ids_two
        assert any(ids_one.index(c) != ids_two.index(c) for c in shared)  # positions differ: first-n would mix them
        key = supernet.regions(one)
        bank_key = slot(name, one).replace(".", ":")
        cols_one, cols_two = key[bank_key][1], supernet.regions(two)[bank_key][1]
        w_one, w_two = supernet.tensors(one)[name], supernet.tensors(two)[name]
        for channel in shared:
            i, j = ids_one.index(channel), ids_two.index(channel)
            assert int(cols_one[i]) == int(cols_two[j])
            assert torch.equal(w_one[:, i], w_two[:, j])


def test_bank_size_and_gathers_are_differentiable() -> None:
    torch.manual_seed(0)
    positional = Supernet(V2, 10, 16, shape_samples=8, channel_ids=False)
    torch.manual_seed(0)
    ids = Supernet(V2, 10, 16, shape_samples=8, channel_ids=True)
    assert set(ids.bank) == set(positional.bank)
    assert sum(p.numel() for p in ids.bank.values()) > sum(p.numel() for p in positional.bank.values())
    for key, p in positional.bank.items():  # only input / channel dims widen; output dims and kernels stay
        q = ids.bank[key]
        assert q.ndim == p.ndim and q.shape[0] >= p.shape[0] and q.shape[2:] == p.shape[2:]
    arch = ids.sample(random.Random(4))
    ids.zero_grad(set_to_none=True)
    ids.train()
    ids(torch.randn(2, 3, 16, 16), arch).sum().backward()
    regions = ids.regions(arch)
    for key, p in ids.bank.items():
        if p.grad is None:
            assert key not in regions
            continue
        mask = torch.zeros(p.shape, dtype=torch.bool)
        mask[regions[key]] = True
        assert p.grad[~mask].abs().sum() == 0  # nothing outside the gathered columns moves
    ids.zero_grad(set_to_none=True)


def _strip_channel_ids(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k != "channel_ids"}


def test_a_supernet_file_written_before_channel_ids_loads_positional(tmp_path: Path) -> None:
    torch.manual_seed(0)
    old = Supernet(V2, 10, 16, shape_samples=8, channel_ids=False)
    identity = {"name": "tiny", "input_size": 16, "num_classes": 10, "train": 64, "val": 32}
    info = save_supernet(tmp_path / "sn", old, dataset=identity, method="spos", epochs=1)
    payload = torch.load(info.path, weights_only=True)
    payload["spec"] = _strip_channel_ids(payload["spec"])  # as the code before channel ids wrote it
    torch.save(payload, info.path)
    assert SupernetSpec.from_dict(payload["spec"]).channel_ids is False
    loaded, again = load_supernet(tmp_path / "sn")
    assert again.spec.channel_ids is False and loaded.spec.channel_ids is False
    assert {k: p.shape for k, p in loaded.bank.items()} == {k: p.shape for k, p in old.bank.items()}
    old.train()
    loaded.train()
    x = torch.randn(2, 3, 16, 16)
    for arch in V2.sample_many(4, seed=2):
        torch.testing.assert_close(loaded(x, arch), old(x, arch), rtol=0, atol=0)
        for name, t in loaded.tensors(arch).items():  # positional: the first channels, as before
            if t.ndim == 4 and t.shape[1] > 1:
                big = loaded.bank[slot(name, arch).replace(".", ":")]
                assert torch.equal(t, big[: t.shape[0], : t.shape[1]])


def test_a_checkpoint_written_before_channel_ids_resumes_positional() -> None:
    recipe = SupernetRecipe(epochs=2, batch_size=16, threads=1, method="spos", channel_ids=False)  # as before the option
    fresh = open_session((V2, 10, 16), 48, recipe, "cpu", state=None, checkpoint_path=Path("unused"))
    assert fresh.supernet.spec.channel_ids is False
    identity = {"spec": fresh.supernet.spec.to_dict(), "dataset": {"name": "tiny"}, "recipe": recipe.identity()}
    state = fresh.checkpoint(identity, 1, {})
    old_recipe = {k: v for k, v in state["recipe"].items() if k != "channel_ids"}
    state.update(spec=_strip_channel_ids(state["spec"]), recipe=old_recipe)  # as the code before the option wrote it
    check_identity(state, Path("checkpoint.pt"), identity)  # the same run
    resumed = open_session((V2, 10, 16), 48, recipe, "cpu", state=state, checkpoint_path=Path("checkpoint.pt"))
    assert resumed.supernet.spec.channel_ids is False and resumed.start_epoch == 1
    assert all(torch.equal(p, fresh.supernet.bank[k]) for k, p in resumed.supernet.bank.items())
    with_ids = SupernetRecipe(epochs=2, batch_size=16, threads=1, method="spos", channel_ids=True)
    asking = {**identity, "recipe": with_ids.identity(),
              "spec": {**identity["spec"], "channel_ids": True}}
    with pytest.raises(CheckpointError, match="channel_ids"):  # another run: refused, not silently positional
        check_identity(state, Path("checkpoint.pt"), asking)
