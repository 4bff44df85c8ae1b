"""The supernet in the search: ``evaluator = "supernet"`` on a real SQLite study, what its trials
record, reuse that never crosses scorers, the one-line refusals, and ``train --init supernet:DIR``.

Data: tiny Fashion-MNIST-format IDX files written here, at 16 px. Supernets are made directly
(untrained weights: these tests are of the plumbing, not of the scores) and stored with
``store.save_supernet``; latency is an estimate only (no measurement), so each trial takes well
under a second.
"""

from __future__ import annotations

import json
import re
import os
import shutil
import time
from pathlib import Path

import optuna
import pytest
import torch

from conftest import TINY_SPACE, run_main
from test_idx import make_set

from evaluator.base import EvalTask
from evaluator.datasets import load_dataset
from evaluator.supernet import Supernet
from evaluator.supernet.evaluator import SupernetEvaluator
from evaluator.supernet.scoring import BN_BATCHES, VAL_SIZE
from evaluator.supernet.store import load_supernet, save_supernet
from evaluator.training.init_weights import read_init
from evaluator.training.loop import dataset_identity
from evaluator.training.weights import WeightsError
from experiments.config import ConfigError, load_config
from experiments.search import SearchError, run_search
from experiments.study_handling import check_same_scorer
from experiments.trial_record import Scorer, TrialRecord
from search_space import Architecture, SearchSpace
from search_space.errors import ShufflenasError

SPACE = SearchSpace.from_dict(TINY_SPACE)
#: wider than the tiny space: outside every supernet made here
OUTSIDE = Architecture(widths=(24, 48, 96), depths=(1, 1, 1), stem=8, conv5=64)
INSIDE = "stem8_w16-32-48_d1-1-1_r0.5-0.5-0.5_k3-3-3_c64"
LEGACY = Path(__file__).parent / "data" / "legacy_study.db"


@pytest.fixture(autouse=True)
def home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path_factory.getbasetemp() / "shufflenas-home"))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """IDX data, two supernets of the tiny space on it (different weights), one of another data set
    and one of another input size."""
    root = tmp_path_factory.mktemp("supernet-search")
    make_set(root / "fm", n_train=60, n_val=30)
    data = load_dataset("fashion-mnist", str(root / "fm"), 16, 1)
    digits = load_dataset("digits", None, 16, 1)
    made = {}
    for name, seed, split, size in (("a", 0, data, 16), ("b", 1, data, 16), ("digits", 0, digits, 16),
                                    ("px24", 0, data, 24)):
        torch.manual_seed(seed)
        supernet = Supernet(SPACE, 10, size, shape_samples=4)
        identity = {**dataset_identity(split), "input_size": size}
        made[name] = save_supernet(root / f"sn-{name}", supernet, dataset=identity, method="spos", epochs=0)
    return {"root": root, "data_root": str(root / "fm"), "data": data, **made}


def config(tmp_path: Path, world: dict, sn: str | None = "a", **overrides):
    options = {"out": str(tmp_path), "trials": 3, "workers": 1, "sampler": "random", "seed": 1, "presets": [],
               "targets": ["paper-arm-sd810"], "objectives": ["accuracy", "latency:paper-arm-sd810"],
               "deploy_input": 32, "deploy_classes": 10, "space": TINY_SPACE, "progress": False,
               "proxy": {"dataset": "fashion-mnist", "data_root": world["data_root"], "epochs": 1,
                         "max_train_batches": 2, "batch_size": 16}}
    if sn is not None:
        options.update(evaluator="supernet", supernet={"checkpoint": str(world[sn].path.parent), "bn_batches": 1})
    options.update(overrides)
    return load_config(None, options)


def trials(cfg) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=cfg.study, storage=cfg.storage_url).trials


def test_search_scores_with_the_supernet_and_records_which(tmp_path, world):
    cfg = config(tmp_path, world)
    result = run_search(cfg)
    assert (result.complete, result.failed) == (3, 0)
    assert result.accuracy_source == "supernet" and result.supernet["checksum"] == world["a"].checksum
    assert result.seconds_per_candidate is not None and result.seconds_per_candidate > 0
    assert any(n.startswith(f"accuracy: supernet {world['a'].checksum} (spos") for n in result.notes)
    for t in trials(cfg):
        record = TrialRecord.from_user_attrs(t.user_attrs)
        assert (record.source, record.supernet_checksum, record.supernet_method) == ("supernet", world["a"].checksum,
                                                                                     "spos")
        assert t.user_attrs["epochs_run"] == 0 and t.user_attrs["curve"] == [t.user_attrs["accuracy"]]
        assert 0 <= t.values[0] <= 1 and t.user_attrs["train_time_s"] > 0
    study = optuna.load_study(study_name=cfg.study, storage=cfg.storage_url)
    assert study.user_attrs["accuracy_source"] == "supernet"
    assert study.user_attrs["supernet_checksum"] == world["a"].checksum


def test_reuse_never_crosses_supernets_or_the_proxy(tmp_path, world):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    first = config(tmp_path, world, storage=storage, study="sn-a", trials=2)
    run_search(first)
    archs = {t.user_attrs["arch_id"] for t in trials(first)}
    # the same draws, scored by another supernet: nothing reused, every trial names supernet b
    other = config(tmp_path, world, sn="b", storage=storage, study="sn-b", trials=2)
    run_search(other)
    assert {t.user_attrs["arch_id"] for t in trials(other)} == archs
    for t in trials(other):
        assert "reused_from" not in t.user_attrs and t.user_attrs["supernet_checksum"] == world["b"].checksum
    # and by the proxy training: trained, recorded as proxy
    proxy = config(tmp_path, world, sn=None, storage=storage, study="proxy", trials=2)
    run_search(proxy)
    for t in trials(proxy):
        assert "reused_from" not in t.user_attrs and t.user_attrs["accuracy_source"] == "proxy"
        assert "supernet_checksum" not in t.user_attrs and t.user_attrs["epochs_run"] == 1
    # the same supernet again: reused from the first study, not from the others
    again = config(tmp_path, world, storage=storage, study="sn-a-again", trials=2)
    run_search(again)
    for t in trials(again):
        assert t.user_attrs["reused_from_study"] == "sn-a"
        assert t.user_attrs["supernet_checksum"] == world["a"].checksum
    # another BN setup with the same supernet is another score: not reused either
    bn = config(tmp_path, world, storage=storage, study="sn-a-bn2",
                supernet={"checkpoint": str(world["a"].path.parent), "bn_batches": 2}, trials=2)
    run_search(bn)
    assert all("reused_from" not in t.user_attrs for t in trials(bn))


def test_a_study_keeps_one_scorer(tmp_path, world):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    run_search(config(tmp_path, world, sn=None, storage=storage, study="mixed", trials=1))
    with pytest.raises(SearchError, match=r"holds accuracies from the proxy training, not from supernet "
                                          rf"{world['a'].checksum} \(spos\).*another --study"):
        run_search(config(tmp_path, world, storage=storage, study="mixed", trials=2))
    run_search(config(tmp_path, world, storage=storage, study="sn", trials=1))
    with pytest.raises(SearchError, match=rf"holds accuracies from supernet {world['a'].checksum}.*"
                                          rf"not from supernet {world['b'].checksum}"):
        run_search(config(tmp_path, world, sn="b", storage=storage, study="sn", trials=2))
    with pytest.raises(SearchError, match="not from the proxy training"):
        run_search(config(tmp_path, world, sn=None, storage=storage, study="sn", trials=2))
    assert run_search(config(tmp_path, world, storage=storage, study="sn", trials=2)).complete == 2  # same one: resumes


def test_studies_of_earlier_versions_hold_proxy_accuracies(tmp_path):
    db = tmp_path / "legacy.db"
    shutil.copy(LEGACY, db)
    study = optuna.load_study(study_name="legacy", storage=f"sqlite:///{db}")
    check_same_scorer(study, "legacy", Scorer("proxy", "anything"))
    with pytest.raises(SearchError, match="holds accuracies from the proxy training"):
        check_same_scorer(study, "legacy", Scorer("supernet", "k", "0123456789abcdef", "spos"))
    for t in study.trials:
        record = TrialRecord.from_user_attrs(t.user_attrs)
        assert record.source == "proxy" and record.accuracy_source is None
        assert record.to_user_attrs() == t.user_attrs


def test_supernet_search_on_two_ray_workers_and_a_dead_actor_replaced(tmp_path, world, ray_session, capfd):
    """A search spread over two scoring actors; then one actor is killed, and the candidate sent to it is
    scored again by a fresh one with the same weights (one pair of actors: each costs seconds to start)."""
    capfd.readouterr()
    evaluator = SupernetEvaluator(world["data"], world["a"].path.parent, bn_batches=1, workers=2)
    inside = Architecture.from_string(INSIDE)
    try:
        cfg = config(tmp_path, world, workers=2, trials=4)
        result = run_search(cfg, evaluator=evaluator)
        outside = evaluator.run_all([EvalTask("outside", OUTSIDE)])
        # the actors run with max_restarts=0 (the driver replaces them), so Ray has no restart warning to print
        err = capfd.readouterr().err
        before = evaluator.run_all([EvalTask(i, inside) for i in range(2)])
        victim = evaluator._actors[0]
        ray_session.kill(victim)  # Ray will not restart it; wait until it is gone, so a task must meet it dead
        for _ in range(600):
            try:
                ray_session.get(victim.__ray_ready__.remote())
            except ray_session.exceptions.RayActorError:
                break
            time.sleep(0.05)
        after = evaluator.run_all([EvalTask(i, inside) for i in range(2, 6)])
    finally:
        evaluator.close()
    assert result.complete == 4
    pids = {t.user_attrs["worker_pid"] for t in trials(cfg)}
    assert len(pids) == 2 and os.getpid() not in pids  # spread over both actors, none in this process
    assert not outside[0].ok and "outside the supernet's space" in outside[0].error
    assert "constructor arguments in the object store" not in err, err
    assert all(o.ok for o in before + after)
    assert {o.accuracy for o in before + after} == {before[0].accuracy}  # same weights in the new actor
    assert [o.attempts for o in after].count(2) == 1  # the one sent to the dead actor, scored again
    assert {o.worker_pid for o in after} - {o.worker_pid for o in before}  # by a fresh process


def test_a_candidate_outside_the_space_is_a_failed_outcome(world):
    evaluator = SupernetEvaluator(world["data"], world["a"].path, bn_batches=1, val_size=7)
    inside = Architecture.from_string(INSIDE)
    out = {o.key: o for o in evaluator.run_all([EvalTask("in", inside), EvalTask("out", OUTSIDE)])}
    assert out["in"].ok and out["in"].result.status == "ok" and out["in"].result.epochs_run == 0
    assert out["in"].accuracy in {k / 7 for k in range(8)}  # val_size caps the validation images
    assert not out["out"].ok and out["out"].result is None
    assert "outside the supernet's space" in out["out"].error and "\n" not in out["out"].error


def test_a_supernet_of_other_data_is_refused_at_construction(world):
    for name, words in (("digits", "trained on digits"), ("px24", "at 24 px")):
        with pytest.raises(Exception, match=words):
            SupernetEvaluator(world["data"], world[name].path.parent)


# -- the command: one line, exit 2, nothing written ---------------------------------------------------
def recipe(tmp_path: Path, world: dict, supernet: str, proxy: str = "") -> Path:
    path = tmp_path / "sn.toml"
    path.write_text(f'''out = "out"
trials = 2
workers = 1
sampler = "random"
presets = []
progress = false
targets = ["paper-arm-sd810"]
objectives = ["accuracy", "latency:paper-arm-sd810"]
deploy_input = 32
evaluator = "supernet"
[proxy]
dataset = "fashion-mnist"
data_root = "{world['data_root']}"
batch_size = 16
{proxy}
[supernet]
{supernet}
[space]
width_ranges = [[8, 16], [16, 32], [32, 48]]
depth_ranges = [[1, 2], [1, 2], [1, 2]]
stem_choices = [8]
conv5_choices = [64, 128]
''')
    return path


def test_cli_supernet_search_and_its_refusals(tmp_path, world):
    sn_dir = tmp_path / "sn"
    shutil.copytree(world["a"].path.parent, sn_dir)
    good = run_main("search", "--config", str(recipe(tmp_path, world, 'checkpoint = "sn"\nbn_batches = 1')))
    assert good.returncode == 0, good.stderr
    assert "accuracy from supernet:" in good.stdout and "s per candidate scored this run" in good.stdout
    assert (tmp_path / "out" / "study.db").is_file()  # checkpoint and out: relative to the config's folder
    shutil.rmtree(tmp_path / "out")
    bad = {
        "": 'evaluator = "supernet" needs [supernet] checkpoint',
        'checkpoint = "sn"\nbn_batch = 2': "unknown option(s) 'supernet.bn_batch'",
        'checkpoint = "sn"\nval_size = -1': "supernet.val_size must be >= 0",
        'checkpoint = "nowhere"': "no supernet at",
        f'checkpoint = "{world["digits"].path.parent}"': "was trained on digits at 16 px",
        f'checkpoint = "{world["px24"].path.parent}"': "at 24 px",
    }
    for text, message in bad.items():
        run = run_main("search", "--config", str(recipe(tmp_path, world, text)))
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert run.returncode == 2 and len(lines) == 1 and message in lines[0], (text, run.stderr)
        assert not (tmp_path / "out").exists()  # refused before any trial: no database
    wider = recipe(tmp_path, world, 'checkpoint = "sn"').read_text().replace("[32, 48]", "[32, 96]")
    (tmp_path / "wide.toml").write_text(wider)
    run = run_main("search", "--config", str(tmp_path / "wide.toml"))
    assert run.returncode == 2 and "reaches outside supernet" in run.stderr and not (tmp_path / "out").exists()
    # --supernet DIR: the flag form (relative to the working directory)
    run = run_main("search", "--config", str(recipe(tmp_path, world, "")), "--supernet", str(sn_dir),
                   "--trials", "1", "--json")
    assert run.returncode == 0, run.stderr
    run = run_main("search", "--config", str(recipe(tmp_path, world, "")), "--supernet", str(sn_dir),
                   "--evaluator", "ray")
    assert run.returncode == 2 and "--supernet" in run.stderr


def test_config_keys(tmp_path, world):
    cfg = config(tmp_path, world)
    assert cfg.supernet.checkpoint == str(world["a"].path.parent) and cfg.supernet.bn_batches == 1
    assert cfg.to_dict()["supernet"]["val_size"] == VAL_SIZE
    with pytest.raises(ConfigError, match="supernet.threads must be >= 1"):
        config(tmp_path, world, supernet={"checkpoint": "x", "threads": 0})
    assert cfg.supernet.data == "supernet"
    with pytest.raises(ConfigError, match="supernet.data must be one of supernet, proxy, got 'val'"):
        config(tmp_path, world, supernet={"checkpoint": "x", "data": "val"})
    assert load_config(None, {}).supernet.checkpoint is None  # the defaults need no supernet


def test_scoring_defaults_are_one_pair_and_zero_means_the_whole_split(tmp_path, world):
    """The config's and the CLI's defaults are the scorer's; val_size 0 scores on every image."""
    defaults = load_config(None, {}).supernet
    assert (defaults.bn_batches, defaults.val_size) == (BN_BATCHES, VAL_SIZE)
    whole = config(tmp_path, world, supernet={"checkpoint": str(world["a"].path.parent), "val_size": 0})
    assert whole.supernet.val_size == 0
    evaluator = SupernetEvaluator(world["data"], world["a"].path, bn_batches=1, val_size=whole.supernet.val_size)
    try:
        (outcome,) = evaluator.run_all([EvalTask("in", Architecture.from_string(INSIDE))])
    finally:
        evaluator.close()
    n = world["data"].val_size
    assert outcome.ok and outcome.accuracy in {k / n for k in range(n + 1)}
    scored = {}
    for size in ("0", "3", "100000"):
        run = run_main("supernet", "score", str(world["a"].path.parent), INSIDE, "--data-root", world["data_root"],
                       "--val-size", size, "--json")
        assert run.returncode == 0, run.stderr
        scored[size] = json.loads(run.stdout)[0]["val_images"]
    assert scored["0"] == scored["100000"] > scored["3"] == 3


def _saved_on_split(world: dict, folder: Path, limit: int, seed: int = 0) -> object:
    """A supernet of the tiny space that records the split it trained on (as `supernet train` does)."""
    data = load_dataset("fashion-mnist", world["data_root"], 16, seed, limit=limit)
    torch.manual_seed(limit)
    supernet = Supernet(SPACE, 10, 16, shape_samples=4)
    return save_supernet(folder, supernet, dataset=dataset_identity(data), method="spos", epochs=0,
                         data={"name": "fashion-mnist", "root": world["data_root"], "limit": limit, "seed": seed,
                               "val_fraction": 0.2})


def test_scores_read_the_split_the_supernet_held_out_unless_told_otherwise(tmp_path, world):
    """By default a trial's score is the supernet's top-1 on the validation images of its own split
    (what `supernet score` and the fidelity benchmark read), whatever the search's seed and limit;
    ``data = "proxy"`` scores on the search's split, under another reuse key."""
    from evaluator.supernet.ensemble import load_scorer, own_split, score_mean
    from evaluator.supernet.scoring import ScoringData

    info = _saved_on_split(world, tmp_path / "sn-own", limit=80)
    nets, _ = load_scorer(info.path.parent)
    own = own_split(info)
    search = load_dataset("fashion-mnist", world["data_root"], 16, 1, limit=40)
    assert (own.val_size, search.val_size) == (16, 8)
    keys = {}
    for mode, split in (("supernet", own), ("proxy", search)):
        cfg = config(tmp_path / mode, world, sn=None, evaluator="supernet", seed=1,
                     proxy={"dataset": "fashion-mnist", "data_root": world["data_root"], "limit": 40, "batch_size": 8},
                     supernet={"checkpoint": str(info.path.parent), "bn_batches": 1, "data": mode})
        result = run_search(cfg)
        assert result.complete == 3
        where = "the split it held out" if mode == "supernet" else "the search split"
        assert any(f"validated on {split.val_size} images of {where}" in n for n in result.notes), result.notes
        scoring = ScoringData.from_split(split, bn_batches=1)
        for t in trials(cfg):
            expected = score_mean(nets, Architecture.from_string(t.user_attrs["arch"]), scoring).accuracy
            assert t.values[0] == pytest.approx(expected)
        keys[mode] = {t.user_attrs["proxy_key"] for t in trials(cfg)}
    assert len(keys["supernet"]) == len(keys["proxy"]) == 1 and keys["supernet"] != keys["proxy"]


def test_a_proxy_split_key_is_the_key_earlier_versions_wrote(tmp_path, world):
    """``data = "proxy"`` keeps the reuse key of every version before the option (so their supernet
    studies resume and reuse as before); the default key is another."""
    import hashlib

    from experiments.study_handling import supernet_key

    cfg = config(tmp_path, world, supernet={"checkpoint": "x", "bn_batches": 1, "data": "proxy"})
    earlier = {"evaluator": "supernet", "checksum": "c0ffee", "bn_batches": 1, "val_size": VAL_SIZE,
               "dataset": "fashion-mnist", "root": os.path.abspath(world["data_root"]), "input": 16, "limit": None,
               "seed": 1}
    assert supernet_key(cfg, "c0ffee") == hashlib.sha1(json.dumps(earlier, sort_keys=True).encode()).hexdigest()[:12]
    assert supernet_key(config(tmp_path, world, supernet={"checkpoint": "x", "bn_batches": 1}), "c0ffee") != \
        supernet_key(cfg, "c0ffee")


def test_an_ensemble_of_two_splits_is_refused_on_its_own_data(tmp_path, world):
    """Members trained on different splits would each validate on images another trained on."""
    folders = [str(_saved_on_split(world, tmp_path / f"sn-{n}", limit=n).path.parent) for n in (60, 80)]
    cfg = config(tmp_path, world, sn=None, evaluator="supernet", supernet={"checkpoint": folders, "bn_batches": 1})
    with pytest.raises(ShufflenasError, match="were trained on different splits of fashion-mnist "
                                              r"\(limit 60, seed 0, .* vs limit 80, seed 0"):
        run_search(cfg)
    assert not (tmp_path / "study.db").exists()
    run = run_main("supernet", "score", *folders[:1], INSIDE, "--also", folders[1])
    assert run.returncode == 2 and "different splits" in run.stderr and "Traceback" not in run.stderr
    proxy = config(tmp_path, world, sn=None, evaluator="supernet",
                   supernet={"checkpoint": folders, "bn_batches": 1, "data": "proxy"})
    assert run_search(proxy).complete == 3  # on the search's split they score as before


# -- shufflenas train --init supernet:DIR ---------------------------------------------------------------
def test_init_from_a_supernet_is_the_inherited_weights(world):
    arch = Architecture.from_string(INSIDE)
    supernet, _ = load_supernet(world["a"].path.parent)
    inherited = supernet.extract(arch).state_dict()
    same = read_init(f"supernet:{world['a'].path.parent}", arch, 10)
    assert same.reinitialised == () and same.file_classes == 10
    for key, tensor in inherited.items():
        torch.testing.assert_close(same.state_dict[key], tensor, rtol=0, atol=0)
    other = read_init(f"supernet:{world['a'].path.parent}", arch, 5)  # another class count: a fresh classifier
    assert other.reinitialised == ("fc.weight", "fc.bias") and other.state_dict["fc.weight"].shape[0] == 5
    torch.testing.assert_close(other.state_dict["conv1.0.weight"], inherited["conv1.0.weight"])
    with pytest.raises(WeightsError, match="outside the supernet's space"):
        read_init(f"supernet:{world['a'].path.parent}", OUTSIDE, 10)
    with pytest.raises(WeightsError, match="no supernet at"):
        read_init(f"supernet:{world['root']}", arch, 10)


def test_cli_train_one_epoch_from_inherited_weights(tmp_path, world):
    sn = str(world["a"].path.parent)
    common = ("--dataset", "fashion-mnist", "--data-root", world["data_root"], "--input-size", "16", "--epochs", "1",
              "--batch-size", "16", "--no-progress")
    done = run_main("train", INSIDE, *common, "--init", f"supernet:{sn}", "--out", str(tmp_path / "ft"), "--json")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ft" / "model.pt").is_file()
    for arch, spec, message in ((OUTSIDE.to_string(), f"supernet:{sn}", "outside the supernet's space"),
                                (INSIDE, f"supernet:{tmp_path}", "no supernet at"),
                                (INSIDE, "supernet:", "names no file")):
        run = run_main("train", arch, *common, "--init", spec, "--out", str(tmp_path / "bad"))
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert run.returncode == 2 and len(lines) == 1 and message in lines[0], run.stderr
        assert not (tmp_path / "bad").exists()


def test_the_recipe_reads():
    cfg = load_config(Path(__file__).resolve().parents[1] / "experiments" / "configs" / "supernet.toml")
    assert cfg.evaluator == "supernet" and cfg.proxy.dataset == "fashion-mnist" and cfg.proxy.input_size == 16
    assert Path(cfg.supernet.checkpoint).is_absolute() and cfg.supernet.checkpoint.endswith("runs/supernet/fashion16")
    assert cfg.supernet.data == "supernet"


# -- an ensemble: [supernet] checkpoint = [A, B] --------------------------------------------------------
def test_an_ensemble_scores_the_mean_of_its_members_in_either_order(world):
    inside = [EvalTask("in", Architecture.from_string(INSIDE)), EvalTask("out", OUTSIDE)]
    single = {n: SupernetEvaluator(world["data"], world[n].path.parent, bn_batches=1).run_all(inside[:1])[0]
              for n in ("a", "b")}
    both = SupernetEvaluator(world["data"], [world["a"].path.parent, world["b"].path], bn_batches=1)
    out = both.run_all(inside)
    assert out[0].accuracy == pytest.approx((single["a"].accuracy + single["b"].accuracy) / 2)
    assert out[0].result.epochs_run == 0 and out[0].result.train_time_s > 0
    assert not out[1].ok and "outside the supernet's space" in out[1].error  # still an outcome, not a crash
    joined = "+".join(sorted((world["a"].checksum, world["b"].checksum)))
    assert both.info.checksum == both.identity.checksum == joined and both.info.method == "spos"
    swapped = SupernetEvaluator(world["data"], [world["b"].path.parent, world["a"].path.parent], bn_batches=1)
    assert swapped.info.checksum == joined
    assert swapped.run_all(inside[:1])[0].accuracy == pytest.approx(out[0].accuracy)
    alone = SupernetEvaluator(world["data"], [world["a"].path.parent], bn_batches=1)  # one listed: that supernet
    assert alone.info is not None and alone.info.checksum == world["a"].checksum


def test_an_ensemble_search_records_its_joined_checksum_and_never_mixes_with_a_member(tmp_path, world):
    storage = f"sqlite:///{tmp_path / 'ens.db'}"
    members = [str(world["a"].path.parent), str(world["b"].path.parent)]
    cfg = config(tmp_path, world, storage=storage, study="ens", trials=2,
                 supernet={"checkpoint": members, "bn_batches": 1})
    assert cfg.supernet.checkpoint == tuple(members)
    result = run_search(cfg)
    joined = "+".join(sorted((world["a"].checksum, world["b"].checksum)))
    assert result.complete == 2 and result.supernet["checksum"] == joined
    assert all(t.user_attrs["supernet_checksum"] == joined for t in trials(cfg))
    with pytest.raises(SearchError, match=rf"holds accuracies from supernet {re.escape(joined)}.*not from supernet "
                                          rf"{world['a'].checksum}"):
        run_search(config(tmp_path, world, storage=storage, study="ens", trials=3))
    single = config(tmp_path, world, storage=storage, study="a-only", trials=2)  # the same draws: nothing reused
    run_search(single)
    assert all("reused_from" not in t.user_attrs for t in trials(single))
    # the members in the other order are the same scorer: the study resumes, its trials are reused
    again = config(tmp_path, world, storage=storage, study="ens-again", trials=2,
                   supernet={"checkpoint": members[::-1], "bn_batches": 1})
    run_search(again)
    assert all(t.user_attrs["reused_from_study"] == "ens" for t in trials(again))


def test_an_ensemble_on_two_ray_workers(world, ray_session):
    folders = [world["a"].path.parent, world["b"].path.parent]
    evaluator = SupernetEvaluator(world["data"], folders, bn_batches=1, workers=2)
    try:
        tasks = [EvalTask("in", Architecture.from_string(INSIDE)), EvalTask("out", OUTSIDE)]
        remote = {o.key: o for o in evaluator.run_all(tasks)}  # completion order
    finally:
        evaluator.close()
    here = SupernetEvaluator(world["data"], folders, bn_batches=1).run_all(tasks[:1])[0]
    assert remote["in"].ok and remote["in"].accuracy == pytest.approx(here.accuracy)
    assert remote["in"].worker_pid != os.getpid() and not remote["out"].ok


def test_cli_ensemble_and_its_refusals(tmp_path, world):
    for name in ("a", "b"):
        shutil.copytree(world[name].path.parent, tmp_path / f"sn-{name}")
    good = run_main("search", "--config", str(recipe(tmp_path, world, 'checkpoint = ["sn-a", "sn-b"]\nbn_batches = 1')),
                    "--json")
    assert good.returncode == 0, good.stderr  # the list's paths: relative to the config's folder
    assert json.loads(good.stdout)["supernet"]["checksum"] == "+".join(sorted((world["a"].checksum,
                                                                                world["b"].checksum)))
    shutil.rmtree(tmp_path / "out")
    bad = {
        'checkpoint = ["sn-a", "sn-a"]': "is listed twice",
        f'checkpoint = ["sn-a", "{world["digits"].path.parent}"]': "were trained on different data",
        "checkpoint = []": 'evaluator = "supernet" needs [supernet] checkpoint',
        'checkpoint = ["sn-a", 3]': "supernet.checkpoint must be a list of strings",
        'checkpoint = ["sn-a", "nowhere"]': "no supernet at",
    }
    for text, message in bad.items():
        run = run_main("search", "--config", str(recipe(tmp_path, world, text)))
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert run.returncode == 2 and len(lines) == 1 and message in lines[0], (text, run.stderr)
        assert not (tmp_path / "out").exists()
    # --supernet A --supernet B: the flag form
    run = run_main("search", "--config", str(recipe(tmp_path, world, "")), "--supernet", str(tmp_path / "sn-a"),
                   "--supernet", str(tmp_path / "sn-b"), "--trials", "1", "--json")
    assert run.returncode == 0, run.stderr
    assert "+" in json.loads(run.stdout)["supernet"]["checksum"]
