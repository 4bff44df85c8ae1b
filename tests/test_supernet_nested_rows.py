"""Nested rows: a unit's outputs stored by fate, so the channels a unit reads nest across widths and
ratios; every path still equals its stand-alone model, and files without the option load as before."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from test_supernet import MIXED, SMALL, _same_as_standalone
from test_supernet_channels import V2, _ids_read

from evaluator.supernet import Supernet, SupernetSpec, slot
from evaluator.supernet.nested_rows import Pools, row_pools, stage_fates
from evaluator.supernet.session import check_identity, open_session
from evaluator.supernet.store import load_supernet, save_supernet
from evaluator.supernet.training import SupernetRecipe
from evaluator.training.checkpoint import CheckpointError
from search_space import Architecture


@pytest.fixture(scope="module")
def nested() -> Supernet:
    torch.manual_seed(0)
    return Supernet(V2, 10, 16, shape_samples=8, nested_rows=True)


def test_nested_rows_imply_channel_ids_and_every_path_equals_its_model(nested: Supernet) -> None:
    assert nested.spec.channel_ids and nested.spec.nested_rows
    rng = random.Random(5)
    for arch in (nested.largest, nested.smallest, *(nested.sample(rng) for _ in range(8))):
        _same_as_standalone(nested, arch)


def test_every_option_and_unit_type_with_nested_rows() -> None:
    torch.manual_seed(0)
    for space, seed in ((SMALL, 3), (MIXED, 6)):
        supernet = Supernet(space, 10, 16, nested_rows=True)
        for arch in space.sample_many(6, seed=seed):
            _same_as_standalone(supernet, arch)


def test_fates_follow_the_shuffle() -> None:
    """A stride-1 unit at ratio 0.5 and width 16: the next unit's branch reads half of the previous
    branch's outputs (fate 1), the unit after it a quarter (fate 2), and so on down the stage."""
    fates = stage_fates("v2", False, False, 16, 0.5, 3, 4, False)
    branch = fates[(1, "branch2.5")]            # unit 1's conv branch: 8 outputs
    assert (branch == 1).sum() == 4 and (branch == 2).sum() == 2 and (branch == 3).sum() == 2  # 3: the next stage
    assert (fates[(1, "branch2.0")] == 0).all()  # a unit's first 1x1 feeds its own depthwise conv
    assert (fates[(3, "branch2.5")] == 1).all()   # the last unit's outputs all go to the next stage


def test_a_reader_reads_a_prefix_of_each_pool_at_every_width(nested: Supernet) -> None:
    """Stage 3's second unit reads a subset of unit 1's rows at width 32 that contains the subset
    it reads at width 16: the sets nest (with first rows they are disjoint)."""
    base = Architecture(widths=(24, 16, 64), depths=(1, 3, 1), split_ratios=(0.5, 0.5, 0.5), kernels=(3, 3, 3),
                        stem=8, conv5=32)
    wide = base.replace(widths=(24, 32, 64))
    name = "stage3.2.branch2.0.weight"            # unit 2's first 1x1 reads unit 1's branch outputs
    bank_key = slot(name, base).replace(".", ":")
    producer = slot("stage3.1.branch2.5", base)

    def rows_read(arch: Architecture) -> set[int]:
        ids = _ids_read(nested, arch, name.rsplit(".", 1)[0])
        columns = nested.regions(arch)[bank_key][1]
        return {int(columns[i]) for i, (p, _) in enumerate(ids) if p == producer}

    narrow_rows, wide_rows = rows_read(base), rows_read(wide)
    assert narrow_rows and narrow_rows < wide_rows
    torch.manual_seed(0)
    first = Supernet(V2, 10, 16, shape_samples=8, channel_ids=True)
    cols_narrow = {int(c) for c in first.regions(base)[bank_key][1]}
    cols_wide = {int(c) for c in first.regions(wide)[bank_key][1]}
    assert not cols_narrow <= cols_wide            # first rows: the width-16 path reads columns width 32 does not


def test_pools_refuse_what_they_cannot_hold() -> None:
    pools = Pools(((1, 0, 2), (2, 2, 1)))
    assert pools.total == 3
    assert pools.rows(np.array([2, 1, 1])).tolist() == [2, 0, 1]
    assert pools.rows(np.array([2, 2])) is None and pools.rows(np.array([3])) is None
    assert row_pools(V2) is row_pools(V2)          # computed once per space


def test_a_nested_supernet_file_round_trips_and_older_files_read_first_rows(tmp_path: Path,
                                                                            nested: Supernet) -> None:
    identity = {"name": "tiny", "input_size": 16, "num_classes": 10, "train": 64, "val": 32}
    info = save_supernet(tmp_path / "sn", nested, dataset=identity, method="spos", epochs=1)
    loaded, again = load_supernet(tmp_path / "sn")
    assert again.spec.nested_rows and loaded.spec.nested_rows
    x = torch.randn(2, 3, 16, 16)
    nested.train()
    loaded.train()
    for arch in V2.sample_many(3, seed=9):
        torch.testing.assert_close(loaded(x, arch), nested(x, arch), rtol=0, atol=0)
    spec = dict(torch.load(info.path, weights_only=True)["spec"])
    assert SupernetSpec.from_dict({k: v for k, v in spec.items() if k != "nested_rows"}).nested_rows is False
    torch.manual_seed(0)
    ids_only = Supernet(V2, 10, 16, shape_samples=8, channel_ids=True)
    assert "nested_rows" not in ids_only.spec.to_dict()   # a file without the option is written as before


def test_a_checkpoint_without_nested_rows_resumes_as_it_was_and_refuses_the_option() -> None:
    recipe = SupernetRecipe(epochs=2, batch_size=16, threads=1, method="spos", channel_ids=True)
    fresh = open_session((V2, 10, 16), 48, recipe, "cpu", state=None, checkpoint_path=Path("unused"))
    identity = {"spec": fresh.supernet.spec.to_dict(), "dataset": {"name": "tiny"}, "recipe": recipe.identity()}
    state = fresh.checkpoint(identity, 1, {})
    state["recipe"] = {k: v for k, v in state["recipe"].items() if k != "nested_rows"}  # as written before
    check_identity(state, Path("checkpoint.pt"), identity)
    resumed = open_session((V2, 10, 16), 48, recipe, "cpu", state=state, checkpoint_path=Path("checkpoint.pt"))
    assert resumed.supernet.spec.nested_rows is False
    nested_recipe = recipe.replace(nested_rows=True)
    asking = {**identity, "recipe": nested_recipe.identity(), "spec": {**identity["spec"], "nested_rows": True}}
    with pytest.raises(CheckpointError, match="nested_rows"):
        check_identity(state, Path("checkpoint.pt"), asking)


def test_a_run_from_before_the_option_resumes_without_nested_rows(tmp_path: Path) -> None:
    from test_idx import make_set
    from test_supernet_train import SPACE

    from evaluator.supernet.session import load_checkpoint, save_checkpoint
    from evaluator.supernet.training import plan_supernet, train_supernet
    from evaluator.training.recipe import DataSpec

    make_set(tmp_path / "data", n_train=48, n_val=16, size=16)
    data = DataSpec("fashion-mnist", root=str(tmp_path / "data"))
    default = SupernetRecipe(epochs=2, batch_size=16, threads=1, method="spos")
    assert not plan_supernet(SPACE, data, default, tmp_path / "new").spec.nested_rows
    assert plan_supernet(SPACE, data, default.replace(nested_rows=True), tmp_path / "new").spec.nested_rows
    train_supernet(SPACE, data, default.replace(epochs=1, nested_rows=False), tmp_path / "old", progress=False)
    ckpt = tmp_path / "old" / "checkpoint.pt"
    state = load_checkpoint(ckpt)
    state["recipe"] = {k: v for k, v in state["recipe"].items() if k != "nested_rows"}   # as written before
    state["recipe"]["epochs"] = 2
    save_checkpoint(ckpt, {k: v for k, v in state.items() if k not in ("format", "version")})
    plan = plan_supernet(SPACE, data, default, tmp_path / "old")   # the same command as before: no flag
    assert plan.state is not None and plan.recipe.nested_rows is False and not plan.spec.nested_rows
    with pytest.raises(CheckpointError, match=r"another run \(supernet (channel_ids|nested_rows)"):
        plan_supernet(SPACE, data, default.replace(nested_rows=True), tmp_path / "old")
