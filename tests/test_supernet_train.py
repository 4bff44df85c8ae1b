"""`shufflenas supernet train / score / info`: real training steps of a small supernet on tiny IDX data
(48 training and 16 validation images at 16 px), through the CLI and the function.

A kill hits a real `supernet train` subprocess in a known phase (``SHUFFLENAS_TRACE=1`` prints ``trace:
checkpoint N`` right after the checkpoint of epoch N is written); the rerun must give exactly the
metrics and weights of a run never interrupted. The DDP case runs two real Ray Train workers (gloo).
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_idx import make_set

from evaluator.supernet import Supernet
from evaluator.supernet.session import load_checkpoint, open_session
from evaluator.supernet.store import load_supernet, read_info, save_supernet
from evaluator.supernet.training import SupernetRecipe, train_supernet
from evaluator.training.recipe import DataSpec
from experiments.cli.main import main
from search_space import Architecture, SearchSpace

REPO = Path(__file__).resolve().parents[1]
SPACE = SearchSpace(width_ranges=((8, 16), (16, 32), (32, 64)), depth_ranges=((1, 2), (1, 2), (1, 2)),
                    stem_choices=(8,), conv5_choices=(32,))
SPACE_TOML = ("[space]\nwidth_ranges = [[8, 16], [16, 32], [32, 64]]\ndepth_ranges = [[1, 2], [1, 2], [1, 2]]\n"
              "stem_choices = [8]\nconv5_choices = [32]\n")
OTHER_TOML = SPACE_TOML.replace("conv5_choices = [32]", "conv5_choices = [48]")
RECIPE = SupernetRecipe(epochs=2, batch_size=16, threads=1, method="spos")  # one path a step: the cheapest
#: columns of metrics.csv a resumed run must share with an uninterrupted one (timings may differ)
SAME = ("epoch", "train_loss", "lr", "val_top1_smallest", "val_top1_largest")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("supernet")
    make_set(root / "data", n_train=48, n_val=16, size=16)
    (root / "space.toml").write_text(SPACE_TOML)
    (root / "other-space.toml").write_text(OTHER_TOML)
    return root


def run_args(world: Path, out: Path, *extra: str, method: str | None = "spos") -> list[str]:
    return ["supernet", "train", "--dataset", "fashion-mnist", "--data-root", str(world / "data"), "--epochs", "2",
            "--batch-size", "16", "--threads", "1", "--space-config", str(world / "space.toml"), "--no-progress",
            *(("--method", method) if method else ()), "--out", str(out), *extra]


def rows(folder: Path) -> list[tuple]:
    with open(folder / "metrics.csv", newline="") as fh:
        return [tuple(r[c] for c in SAME) for r in csv.DictReader(fh)]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()} if folder.is_dir() else {}


@pytest.fixture(scope="module")
def reference(world) -> Path:
    """An uninterrupted 2-epoch SPOS run through the CLI (in this process)."""
    out = world / "reference"
    assert main(run_args(world, out)) == 0
    return out


def test_train_writes_every_output_and_info_and_score_read_it(world, reference, capsys):
    assert {"checkpoint.pt", "metrics.csv", "curves.png", "supernet.pt"} <= {p.name for p in reference.iterdir()}
    assert [r[0] for r in rows(reference)] == ["1", "2"]
    info = read_info(reference)
    assert info.method == "spos" and info.epochs == 2 and info.spec.space == SPACE and info.spec.input_size == 16
    assert info.dataset["name"] == "fashion-mnist" and info.dataset["train"] == 48
    assert info.extra["data"]["root"] == str(world / "data") and info.extra["recipe"]["batch_size"] == 16

    capsys.readouterr()
    assert main(["supernet", "info", str(reference), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checksum"] == info.checksum
    arch = "stem8_w16-32-64_d2-1-2_r0.5-0.5-0.5_k3-3-3_c32"
    assert main(["supernet", "score", str(reference), arch, "--sample", "2", "--seed", "3", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert [s["arch"] for s in scored[:1]] == [arch] and len(scored) == 3
    assert all(0.0 <= s["accuracy"] <= 1.0 and s["val_images"] == 16 and s["supernet"] == info.checksum
               for s in scored)
    assert main(["supernet", "score", str(reference), arch]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(Architecture.from_string(arch).arch_id) and line.endswith(arch)


def test_the_function_gives_the_same_run_and_states_threads(world, reference, tmp_path, capsys):
    result = train_supernet(SPACE, DataSpec("fashion-mnist", root=str(world / "data")), RECIPE, tmp_path / "run")
    err = capsys.readouterr().err
    assert "training the supernet on cpu, 1 thread" in err and "epoch 2/2: loss" in err
    assert rows(tmp_path / "run") == rows(reference)
    summary = result.summary()
    assert summary["checksum"] == read_info(tmp_path / "run").checksum and summary["epochs"] == 2
    assert set(summary["probes"]) == {"smallest", "largest"} and summary["images_per_s"] > 0


@pytest.fixture(scope="module")
def killed(world) -> Path:
    """The folder of a run SIGKILLed right after its epoch-1 checkpoint (copy it before use)."""
    out = world / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "experiments", *run_args(world, out)], cwd=REPO,
                            env={**os.environ, "SHUFFLENAS_TRACE": "1"}, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if line.strip() == "trace: checkpoint 1":
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=600)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1 and not (out / "supernet.pt").exists()
    return out


def test_a_killed_run_resumes_with_the_same_metrics_and_weights(world, reference, killed, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(killed, out)
    capsys.readouterr()
    assert main(run_args(world, out)) == 0  # the same command again
    assert "resuming from" in capsys.readouterr().err
    assert rows(out) == rows(reference)
    ours, theirs = load_checkpoint(out / "checkpoint.pt"), load_checkpoint(reference / "checkpoint.pt")
    assert ours["paths"] == theirs["paths"] and ours["epoch"] == 2
    assert all(torch.equal(ours["supernet"][k], v) for k, v in theirs["supernet"].items())
    assert not list(out.glob(".*.tmp"))


def test_a_finished_run_is_not_trained_or_rewritten_again(world, reference, capsys):
    before = snapshot(reference)
    capsys.readouterr()
    assert main([*run_args(world, reference)[:-1], str(reference)]) == 0
    assert "all 2 epochs already trained" in capsys.readouterr().err
    after = snapshot(reference)
    assert after["supernet.pt"] == before["supernet.pt"] and after["checkpoint.pt"] == before["checkpoint.pt"]


@pytest.mark.parametrize("extra, message", [
    (("--space-config", "OTHER"), "space conv5_choices"),
    (("--limit", "40"), "data set train"),
    (("--epochs", "3"), "recipe option epochs"),
    (("--method", "sandwich"), "recipe option method"),
    (("--lr", "0.05"), "recipe option lr"),
])
def test_another_runs_checkpoint_is_refused_and_kept(world, reference, capsys, extra, message):
    extra = tuple(str(world / "other-space.toml") if e == "OTHER" else e for e in extra)
    before = snapshot(reference)
    capsys.readouterr()
    assert main([*run_args(world, reference), *extra]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert snapshot(reference) == before


def test_a_run_begun_under_older_defaults_resumes_with_its_own_options(world, tmp_path, capsys):
    """The defaults changed (lr, warm-up, channel ids, method spos -> sandwich); rerunning the same
    command resumes a run begun before, since every option the command does not give comes from the
    checkpoint. A flag that differs from the checkpoint is still refused."""
    out = tmp_path / "old"
    old = RECIPE.replace(epochs=1, lr=0.1, warmup_epochs=1.0, channel_ids=False)
    train_supernet(SPACE, DataSpec("fashion-mnist", root=str(world / "data")), old, out, progress=False)
    ckpt = out / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    state["recipe"] = {k: v for k, v in state["recipe"].items()
                       if k not in ("channel_ids", "nested_rows", "sandwich_smallest", "path_draws")}
    torch.save(state, ckpt)   # as a build before those options wrote it
    before = snapshot(out)
    capsys.readouterr()
    assert main([*run_args(world, out, method=None), "--epochs", "1"]) == 0  # no --method: the run's spos
    assert "all 1 epochs already trained" in capsys.readouterr().err
    assert snapshot(out)["supernet.pt"] == before["supernet.pt"]
    assert main([*run_args(world, out), "--epochs", "1", "--channel-ids"]) == 2
    assert "channel_ids" in capsys.readouterr().err


def test_score_also_scores_with_an_ensemble(reference, tmp_path, capsys):
    info = read_info(reference)
    torch.manual_seed(5)
    other = save_supernet(tmp_path / "other", Supernet(SPACE, 10, 16, shape_samples=4), dataset=info.dataset,
                          method="spos", epochs=0, data=info.extra["data"])
    arch = "stem8_w16-32-64_d2-1-2_r0.5-0.5-0.5_k3-3-3_c32"
    scored = {}
    for name, argv in (("a", [str(reference)]), ("b", [str(other.path.parent)]),
                       ("both", [str(reference), "--also", str(other.path.parent)])):
        capsys.readouterr()
        assert main(["supernet", "score", *argv, arch, "--json"]) == 0
        scored[name] = json.loads(capsys.readouterr().out)[0]
    assert scored["both"]["accuracy"] == pytest.approx((scored["a"]["accuracy"] + scored["b"]["accuracy"]) / 2)
    assert scored["both"]["supernet"] == "+".join(sorted((info.checksum, other.checksum)))
    assert main(["supernet", "score", str(reference), "--also", str(reference), arch]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "listed twice" in err[0]


def test_score_refusals_are_one_line(world, reference, tmp_path, capsys):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "supernet.pt").write_bytes(b"PK\x03\x04 torn")
    for argv, message in (
        (["score", str(reference), "1.0x"], "outside the supernet's space"),
        (["score", str(reference), "--sample", "1", "--dataset", "digits"], "was trained on fashion-mnist"),
        (["score", str(tmp_path / "none"), "1.0x"], "no supernet at"),
        (["score", str(corrupt), "1.0x"], "unreadable"),
        (["info", str(corrupt)], "unreadable"),
        (["score", str(reference)], "--sample"),
    ):
        capsys.readouterr()
        assert main(["supernet", *argv]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and message in err[0], err


def test_an_extracted_subnet_of_the_trained_supernet_is_its_own_forward(reference):
    net, _ = load_supernet(reference)
    net.train()
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for arch in [net.largest, net.smallest, *SPACE.sample_many(3, seed=1)]:
        model = net.extract(arch).train()
        with torch.no_grad():
            torch.testing.assert_close(model(x), net(x, arch), rtol=0, atol=1e-5)


def test_sandwich_with_distillation_and_kernel_transform_trains(world, tmp_path):
    space = SearchSpace(width_ranges=((8, 16), (16, 32), (32, 64)), depth_ranges=((1, 2), (1, 2), (1, 2)),
                        stem_choices=(8,), conv5_choices=(32,), kernel_choices=(3, 5))
    recipe = RECIPE.replace(epochs=1, method="sandwich", sandwich_paths=1, kernel_transform=True)
    result = train_supernet(space, DataSpec("fashion-mnist", root=str(world / "data")), recipe, tmp_path / "run",
                            progress=False)
    net, info = load_supernet(tmp_path / "run")
    assert info.method == "sandwich" and info.spec.kernel_transform and result.epochs == 1
    assert len(net.transforms) > 0
    assert any(not torch.equal(t, torch.eye(t.shape[0])) for t in net.transforms.values())  # the matrices learnt


def test_the_default_method_is_the_sandwich_rule(world, tmp_path):
    """The measured better ranker (docs/supernet.md) is what a run without --method trains."""
    assert SupernetRecipe(epochs=1).method == "sandwich"
    out = tmp_path / "default"
    assert main([*run_args(world, out, "--epochs", "1", method=None)]) == 0
    assert read_info(out).method == "sandwich"


def _step_once(recipe: SupernetRecipe, steps: int = 3):
    """A few SPOS steps on random data; (bank before, bank after, union of the paths' regions)."""
    from evaluator.supernet.session import _mark, _regions

    session = open_session((SPACE, 10, 16), 48, recipe, "cpu", state=None, checkpoint_path=Path("unused"))
    before = {k: p.detach().clone() for k, p in session.supernet.bank.items()}
    touched: dict[str, torch.Tensor] = {}
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        archs = session.draw()
        session.train_step(session.forward, torch.randn(16, 3, 16, 16, generator=gen),
                           torch.randint(0, 10, (16,), generator=gen), archs)
        for arch in archs:
            for key, region in _regions(session.supernet, arch).items():
                _mark(touched.setdefault(key, torch.zeros(before[key].shape, dtype=torch.bool)), region)
    return before, {k: p.detach() for k, p in session.supernet.bank.items()}, touched


def test_spos_steps_change_the_bank_only_where_a_path_read_it():
    recipe = RECIPE.replace(weight_decay=5e-4, momentum=0.9, seed=4)
    before, after, touched = _step_once(recipe)
    assert any(not m.all() for m in touched.values())  # the paths read parts of tensors only
    for key, old in before.items():
        mask = touched.get(key, torch.zeros(old.shape, dtype=torch.bool))
        assert torch.equal(after[key][~mask], old[~mask]), key
    assert any(not torch.equal(after[k][m], before[k][m]) for k, m in touched.items())
    # without touched_only, weight decay and momentum move what no path read
    before, after, touched = _step_once(recipe.replace(touched_only=False))
    assert any(not torch.equal(after[k][~m], before[k][~m]) for k, m in touched.items())


def test_nested_rows_train_through_the_cli_and_steps_touch_only_what_paths_read(world, tmp_path, capsys):
    out = tmp_path / "nested"
    assert main(run_args(world, out, "--nested-rows", "--epochs", "1")) == 0
    net, info = load_supernet(out)
    assert info.spec.nested_rows and info.spec.channel_ids and net.spec.nested_rows
    assert main(["supernet", "info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["nested_rows"] is True
    before, after, touched = _step_once(RECIPE.replace(nested_rows=True, weight_decay=5e-4, seed=2))
    for key, old in before.items():  # moved rows are index sets: still nothing outside them changes
        mask = touched.get(key, torch.zeros(old.shape, dtype=torch.bool))
        assert torch.equal(after[key][~mask], old[~mask]), key


def test_paths_are_drawn_from_the_seed():
    recipe = RECIPE.replace(seed=7)
    draws = [open_session((SPACE, 10, 16), 48, recipe, "cpu", state=None, checkpoint_path=Path("x")).draw()
             for _ in range(2)]
    assert draws[0] == draws[1] == [SPACE.sample(random.Random(7))]
    sandwich = open_session((SPACE, 10, 16), 48, recipe.replace(method="sandwich"), "cpu", state=None,
                            checkpoint_path=Path("x"))
    paths = sandwich.draw()
    assert paths[:2] == [sandwich.supernet.largest, sandwich.supernet.smallest] and len(paths) == 4
    no_min = open_session((SPACE, 10, 16), 48, recipe.replace(method="sandwich", sandwich_smallest=False), "cpu",
                          state=None, checkpoint_path=Path("x"))
    paths = no_min.draw()
    assert paths[0] == no_min.supernet.largest and len(paths) == 3  # the largest and the two random ones


def test_path_draws_trains_the_largest_of_several_uniform_draws():
    """``path_draws`` N: each random path is the one with the most FLOPs among N uniform draws from
    the same generator, so larger networks are trained more often; 1 keeps the uniform draw."""
    recipe = RECIPE.replace(seed=3)
    uniform = open_session((SPACE, 10, 16), 48, recipe, "cpu", state=None, checkpoint_path=Path("x"))
    tilted = open_session((SPACE, 10, 16), 48, recipe.replace(path_draws=3), "cpu", state=None,
                          checkpoint_path=Path("x"))
    rng = random.Random(3)
    for _ in range(5):
        three = [SPACE.sample(rng) for _ in range(3)]
        assert tilted.draw() == [max(three, key=tilted.supernet._flops)]
    flops = tilted.supernet._flops
    mean = {name: statistics.mean(flops(s.draw()[0]) for _ in range(60)) for name, s in (("uniform", uniform),
                                                                                         ("tilted", tilted))}
    assert mean["tilted"] > mean["uniform"]


def test_a_sandwich_without_the_smallest_trains_and_is_its_own_run(world, tmp_path, capsys):
    """``--no-sandwich-smallest`` is recorded in the checkpoint, so the same run resumes and a run
    with the smallest is refused on that folder."""
    out = tmp_path / "nomin"
    args = run_args(world, out, "--epochs", "1", "--no-sandwich-smallest", method="sandwich")
    assert main(args) == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["recipe"]["sandwich_smallest"] is False
    capsys.readouterr()
    assert main(args) == 0 and "all 1 epochs already trained" in capsys.readouterr().err
    assert main([*args[:-1], "--sandwich-smallest"]) == 2
    assert "sandwich_smallest" in capsys.readouterr().err
    assert main([*args[:-1], "--path-draws", "2"]) == 2  # nor is a run that draws its paths otherwise
    assert "path_draws" in capsys.readouterr().err


def test_ddp_finishes_a_single_process_run_and_one_process_reads_it_back(world, killed, ray_session, tmp_path):
    """Two Ray Train workers resume the killed run's epoch-1 checkpoint; one process then accepts theirs."""
    from evaluator.supernet.distributed import train_supernet_ddp

    out = tmp_path / "run"
    shutil.copytree(killed, out)
    data = DataSpec("fashion-mnist", root=str(world / "data"))
    result = train_supernet_ddp(SPACE, data, RECIPE, out, num_workers=2, progress=False)
    assert result.resumed_from == 1 and result.epochs == 2 and result.threads == 1
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["epoch"] == 2 and ckpt["ddp_workers"] == 2
    assert ckpt["metrics"][0] == load_checkpoint(killed / "checkpoint.pt")["metrics"][0]
    net, info = load_supernet(out)
    assert info.checksum == result.checksum and info.epochs == 2
    # back on one process: the DDP checkpoint is accepted (nothing left to train; supernet.pt rewritten from it)
    (out / "supernet.pt").unlink()
    again = train_supernet(SPACE, data, RECIPE, out, progress=False)
    assert again.resumed_from == 2
    rebuilt, _ = load_supernet(out)
    assert all(torch.equal(rebuilt.state_dict()[k], v) for k, v in net.state_dict().items())
