"""The two checkpoint kinds (a `shufflenas train` run, a supernet training) share one tagged file format;
each refuses the other's file, an older or newer version and an incomplete file with one line."""

from __future__ import annotations

import pytest
import torch

from evaluator.supernet import session as supernet_ckpt
from evaluator.training import checkpoint as train_ckpt
from evaluator.training.checkpoint import CheckpointError


def full(required):
    return {k: 0 for k in required}


def test_each_kind_reads_back_what_it_wrote(tmp_path):
    path = train_ckpt.save_checkpoint(tmp_path / "t.pt", {**full(train_ckpt.REQUIRED), "epoch": 3})
    assert train_ckpt.load_checkpoint(path)["epoch"] == 3
    path = supernet_ckpt.save_checkpoint(tmp_path / "s.pt", {**full(supernet_ckpt.REQUIRED), "epoch": 4})
    assert supernet_ckpt.load_checkpoint(path)["epoch"] == 4


def test_a_training_checkpoint_handed_to_the_supernet_is_named(tmp_path):
    path = train_ckpt.save_checkpoint(tmp_path / "t.pt", full(train_ckpt.REQUIRED))
    with pytest.raises(CheckpointError, match=r"checkpoint of a `shufflenas train` run, not of a supernet"):
        supernet_ckpt.load_checkpoint(path)


@pytest.mark.parametrize("tag", [["a", "list"], {"a": 1}, None, 3])
def test_a_file_with_an_odd_format_tag_is_one_line_for_both_kinds(tmp_path, tag):
    path = tmp_path / "odd.pt"
    torch.save({"format": tag, "version": 1}, path)
    for module, what in ((train_ckpt, "training"), (supernet_ckpt, "supernet")):
        with pytest.raises(CheckpointError, match=f"is not a shufflenas {what} checkpoint"):
            module.load_checkpoint(path)


def test_a_supernet_checkpoint_handed_to_training_is_refused(tmp_path):
    path = supernet_ckpt.save_checkpoint(tmp_path / "s.pt", full(supernet_ckpt.REQUIRED))
    with pytest.raises(CheckpointError, match="is not a shufflenas training checkpoint"):
        train_ckpt.load_checkpoint(path)


@pytest.mark.parametrize("module", [train_ckpt, supernet_ckpt], ids=["training", "supernet"])
def test_another_version_and_a_missing_key_are_one_line_each(tmp_path, module):
    keys = module.REQUIRED
    other = tmp_path / "other.pt"
    torch.save({"format": module.CHECKPOINT_FORMAT, "version": module.CHECKPOINT_VERSION + 1, **full(keys)}, other)
    with pytest.raises(CheckpointError, match=f"format version {module.CHECKPOINT_VERSION + 1}; this build reads"):
        module.load_checkpoint(other)
    partial = module.save_checkpoint(tmp_path / "partial.pt", full(keys[1:]))
    with pytest.raises(CheckpointError, match=rf"incomplete \(no {keys[0]}\)") as info:
        module.load_checkpoint(partial)
    assert "\n" not in str(info.value)
