"""benchmarks/search_quality.py on tiny real runs: equal compute, resuming, scoring, bad flags.

The script's own ``main(argv)`` runs in this process: real searches (random search and successive
halving) over a space of tiny networks on 200 digits images at 8 px, real local-cpu measurements at
32 px (a fresh ``SHUFFLENAS_HOME``), real reference trainings of one epoch. The charging rule, the
hypervolume and the domination logic are also checked on known values.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import pytest
from bench_scripts import load_benchmark

from conftest import TINY_SPACE_TOML
from experiments.compute_charge import trial_charge
from experiments.storage import load_study
from experiments.trial_record import TrialRecord


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("search_quality")


def run(bench, capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = bench.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_charge_rule_and_increments(bench):
    plain = TrialRecord(proxy={"train_time_s": 4.0, "epochs_run": 2})
    assert trial_charge(plain, "s") == 4.0
    # successive halving: rungs 1 and 2 epochs reached, 4 s for the 2-epoch rung -> 2 s/epoch x (1 + 2)
    sha = TrialRecord(proxy={"train_time_s": 4.0, "epochs_run": 2}, rungs={1: 0.5, 2: 0.6}, rung=2)
    assert trial_charge(sha, "s") == pytest.approx(6.0)
    assert trial_charge(TrialRecord(proxy={"train_time_s": 3.0}, rungs={1: 0.5}, rung=1), "s") == 3.0
    # copied from another study: paid as if trained; a repeat within the study: free
    copied = TrialRecord(proxy={"train_time_s": 4.0}, reused_from=3, reused_from_study="t")
    assert trial_charge(copied, "s") == 4.0
    assert trial_charge(copied, "t") == 0.0
    assert trial_charge(TrialRecord(fail_reason="build error"), "s") == 0.0

    step = bench.next_increment
    assert step(bench.Charge(0.0, 0), 100.0, 2) == 2                 # nothing known yet: the smallest step
    assert step(bench.Charge(20.0, 4), 100.0, 2) == 12                # 5 s per trial, 75% of 80 s left
    assert step(bench.Charge(98.0, 10), 100.0, 2) == 2                # close to the budget: the smallest step
    assert bench.promotion_growth([1, 3], 3) == 2.0                   # a third reach 3 epochs: 1 + 3 / 3
    assert step(bench.Charge(20.0, 4), 100.0, 2, 2.0) == 6             # successive halving: half the naive guess
    assert step(bench.Charge(98.0, 10), 100.0, 1) == 1


def test_hypervolume_domination_and_speedup_on_known_points(bench):
    P = bench.Point

    def point(label, acc, ms):
        return P(label, label, label, acc, {t: ms for t in bench.TARGETS}, None)

    finalists = [point("a", 0.9, 10.0), point("b", 0.8, 5.0)]
    presets = {"0.5x": point("0.5x", 0.7, 4.0), "1.0x": point("1.0x", 0.85, 12.0)}
    box = bench.Box.around(finalists + list(presets.values()))
    assert (box.worst_acc, box.worst_ms, box.best_acc, box.best_ms) == (0.7, 12.0, 0.9, 4.0)
    # area up to (0.7, 12 ms): 0.2 x 2 + 0.1 x 5 = 0.9, over the 0.2 x 8 box
    assert box.hypervolume(finalists) == pytest.approx(0.9 / 1.6)
    assert box.hypervolume([presets["0.5x"]]) == 0.0  # the reference corner itself adds nothing
    assert bench.dominates(finalists, presets["1.0x"], "local-cpu")
    assert not bench.dominates(finalists, presets["0.5x"], "local-cpu")   # nothing as fast
    assert not bench.dominates([point("c", 0.85, 12.0)], presets["1.0x"], "local-cpu")  # equal is not better
    assert bench.fastest_at(finalists, 0.85).label == "a" and bench.fastest_at(finalists, 0.95) is None
    row = bench.score(finalists, presets, box)
    assert row["dominates:local-cpu"] == "1.0x" and row["scored"] == 2
    assert row["speedup:1.0x"] == pytest.approx(1.2) and row["fastest_ms:0.5x"] == 5.0
    assert row["speedup:0.5x"] == pytest.approx(0.8)
    assert [p.label for p in bench.front_of(finalists + [point("d", 0.75, 11.0)])] == ["b", "a"]


def tiny_args(folder: Path, budget: str = "0.8") -> tuple[str, ...]:
    config = folder / "tiny.toml"
    config.write_text("deploy_input = 32\ndeploy_classes = 10\n[proxy]\nmax_train_batches = 2\nbatch_size = 32\n"
                      "[latency]\nmeasure_budget_s = 0.02\n" + TINY_SPACE_TOML)
    return ("--config", str(config), "--dataset", "digits", "--limit", "200", "--input-size", "8", "--epochs", "2",
            "--rungs", "1", "2", "--budget-s", budget, "--seeds", "0", "--methods", "random", "sha", "supernet",
            "--k", "1", "--ref-epochs", "1", "--ref-limit", "200", "--ref-input-size", "8", "--presets", "0.5x", "1.0x",
            "--workers", "1", "--out", str(folder / "out"))


def test_an_increment_that_asks_too_much_stops_at_the_budget(bench, capsys, tmp_path, monkeypatch):
    """--step 30 asks for 30 trials at once, far more than 0.3 CPU-s buys: the increment carries the
    budget, so the driver starts nothing charged after the trial that crossed it."""
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path / "home"))
    args = list(tiny_args(tmp_path, budget="0.3"))
    args[args.index("--methods") + 1:args.index("--methods") + 4] = ["random"]
    code, _, err = run(bench, capsys, *args, "--step", "30")
    assert code == 0, err
    out = tmp_path / "out"
    (row,) = rows(out / "searches.csv")
    study = load_study(f"sqlite:///{out / 'studies.db'}", row["study"])
    complete = sorted((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.number)
    costs = [0.0 if t.user_attrs.get("reused_from") is not None else t.user_attrs["train_time_s"] for t in complete]
    crossed = next(i for i in range(len(costs)) if sum(costs[:i + 1]) >= 0.3)
    assert sum(costs[crossed + 1:]) == 0 and len(complete) < 30

    # a search logged as stopped because its sampler only repeated is not resumed at that budget
    with (out / "searches.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        writer.writeheader()
        writer.writerow({**row, "budget_s": "5", "stop": bench.IDLE_STOP})
    args[args.index("--budget-s") + 1] = "5"
    code, stdout, err = run(bench, capsys, *args, "--step", "30")
    assert code == 0, err
    assert "CPU-s charged" not in stdout and "stopped early" in stdout
    assert len(load_study(f"sqlite:///{out / 'studies.db'}", row["study"]).trials) == len(study.trials)


def test_tiny_run_equal_compute_resume_and_report(bench, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path / "home"))
    out = tmp_path / "out"
    args = tiny_args(tmp_path)
    code, stdout, err = run(bench, capsys, *args)
    assert code == 0, err
    searches = rows(out / "searches.csv")
    assert [(r["method"], r["seed"]) for r in searches] == [("random", "0"), ("sha", "0")]
    storage = f"sqlite:///{out / 'studies.db'}"
    for row in searches:
        charged, last = float(row["charged_s"]), float(row["last_increment_s"])
        assert charged >= 0.8 > charged - last  # stopped at the first increment that crossed the budget
        study = load_study(storage, row["study"])
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        assert len(complete) == int(row["trials"])
        # the charge, recomputed here from the stored attrs (trials of this study copy nothing from elsewhere)
        expected = 0.0
        for t in complete:
            a = t.user_attrs
            if a.get("reused_from") is not None:
                continue
            per_epoch = a["train_time_s"] / a["epochs_run"]
            expected += per_epoch * (sum(int(k.split(":")[1]) for k in a if k.startswith("rung:")) or a["epochs_run"])
        assert charged == pytest.approx(expected, abs=2e-3)  # the row keeps 3 decimals
        if row["method"] == "sha":
            assert {t.user_attrs["rung"] for t in complete} <= {1, 2}

    finalists = rows(out / "finalists.csv")
    sha_top = max(t.user_attrs["rung"] for t in load_study(storage, "sha-seed0").trials if t.state.name == "COMPLETE")
    assert all(int(f["rung"]) == sha_top for f in finalists if f["method"] == "sha")  # the highest rung only
    refs = rows(out / "reference.csv")
    assert [r["label"] for r in refs[:2]] == ["0.5x", "1.0x"]
    assert {r["arch_id"] for r in refs} == {r["arch_id"] for r in refs[:2]} | {f["arch_id"] for f in finalists}
    assert all(0 <= float(r["accuracy"]) <= 1 and r["input_size"] == "8" and r["epochs"] == "1" for r in refs)
    table = rows(out / "search_quality.csv")
    assert [(r["method"], r["seed"]) for r in table] == [("random", "0"), ("sha", "0")]
    assert table[0]["hv_ratio"] in ("1", "")  # random against itself (empty: no area at all)
    md = (out / "search_quality.md").read_text()
    assert "| random search | 0 |" in md and "| MO successive halving | 0 |" in md
    assert "supernet + NSGA-II: not run" in md and "docs/supernet.md" in md
    assert "reference point the worst accuracy" in md and "| 0.5x |" in md
    assert (out / "search_quality.png").stat().st_size > 0

    # a rerun: nothing searched, nothing trained, no row added
    code, stdout, err = run(bench, capsys, *args)
    assert code == 0, err
    assert "0 to train" in stdout and "CPU-s charged" not in stdout
    assert rows(out / "searches.csv") == searches and rows(out / "reference.csv") == refs

    # a killed run: a torn last line is skipped, a lost row is trained again (from its finished checkpoint)
    lines = (out / "reference.csv").read_text().splitlines()
    (out / "reference.csv").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    code, stdout, err = run(bench, capsys, *args)
    assert code == 0, err
    assert "1 to train" in stdout
    again = rows(out / "reference.csv")
    assert [r["arch_id"] for r in again if r["complete"] == "1"] == [r["arch_id"] for r in refs]

    # a second reference seed: the first seed's runs are kept, each architecture trained once more
    # (same data, the recipe's next seed), and the reference accuracy is the mean of the two
    code, stdout, err = run(bench, capsys, *args, "--ref-seeds", "2")
    assert code == 0, err
    n = len({r["arch_id"] for r in refs})
    assert f"{n} architectures x 2 seed(s), {n} already trained, {n} to train" in stdout
    kept = [r for r in again if r["complete"] == "1"]
    both = [r for r in rows(out / "reference.csv") if r["complete"] == "1"]
    assert both[:n] == kept and len(both) == 2 * n
    first, second = {r["setup_key"] for r in kept}, {r["setup_key"] for r in both[n:]}
    assert len(first) == len(second) == 1 and first != second
    for f in rows(out / "finalists.csv"):
        runs = [float(r["accuracy"]) for r in both if r["arch_id"] == f["arch_id"]]
        assert len(runs) == 2 and float(f["reference_accuracy"]) == pytest.approx(sum(runs) / 2, abs=1e-4)
    assert "the mean of 2 training seeds" in (out / "search_quality.md").read_text()

    # a larger budget (above what both studies hold) extends the same studies
    budget = round(max(float(r["charged_s"]) for r in searches) + 0.5, 2)
    code, stdout, err = run(bench, capsys, *tiny_args(tmp_path, budget=str(budget)))
    assert code == 0, err
    more = rows(out / "searches.csv")
    assert len(more) == 4 and all(float(r["charged_s"]) >= budget for r in more[2:])
    assert all(int(new["trials"]) > int(old["trials"]) for old, new in zip(searches, more[2:]))


def test_bad_input_is_one_line_and_writes_nothing(bench, capsys, tmp_path):
    out = tmp_path / "never"
    for args in (("--budget-s", "0"), ("--budget-s", "nan"), ("--methods", "random", "grid"), ("--k", "0"),
                 ("--seeds", "1", "1"), ("--presets", "3.0x"), ("--rungs", "2", "1"), ("--limit", "2"),
                 ("--recipe", str(tmp_path / "none.toml")), ("--supernet", str(tmp_path / "none")),
                 ("--workers", "x"), ("--pick", "bands"), ("--ref-seeds", "0")):
        code, stdout, err = run(bench, capsys, *args, "--out", out)
        assert code == 2, (args, err)
        assert err.startswith("error: ") and err.count("\n") == 1, (args, err)
    assert not out.exists()
    assert math.isfinite(bench.GOAL_HV_RATIO)


def test_supernet_methods_score_with_the_supernet_under_their_own_samplers(bench, capsys, tmp_path, monkeypatch):
    """supernet (NSGA-II), supernet-tpe and supernet-random: one study each, every trial scored by the
    given supernet (untrained here: this checks the plumbing, not the scores) and charged its scoring
    seconds, each under its own sampler."""
    import torch

    from evaluator.datasets import load_dataset
    from evaluator.supernet import Supernet
    from evaluator.supernet.store import save_supernet
    from evaluator.training.loop import dataset_identity
    from search_space import SearchSpace
    from conftest import TINY_SPACE

    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path / "home"))
    torch.manual_seed(0)
    split = load_dataset("digits", None, 8, 0, limit=200)  # the benchmark's proxy data in tiny_args
    saved = save_supernet(tmp_path / "sn", Supernet(SearchSpace.from_dict(TINY_SPACE), 10, 8, shape_samples=4),
                          dataset={**dataset_identity(split), "input_size": 8}, method="spos", epochs=0)
    args = list(tiny_args(tmp_path, budget="0.3"))
    args[args.index("--methods") + 1:args.index("--methods") + 4] = ["supernet", "supernet-tpe", "supernet-random"]
    code, _, err = run(bench, capsys, *args, "--supernet", str(saved.path.parent))
    assert code == 0, err
    out = tmp_path / "out"
    searches = rows(out / "searches.csv")
    assert [r["method"] for r in searches] == ["supernet", "supernet-tpe", "supernet-random"]
    samplers = {"supernet": "nsga2", "supernet-tpe": "tpe", "supernet-random": "random"}
    for row in searches:
        study = load_study(f"sqlite:///{out / 'studies.db'}", row["study"])
        assert study.user_attrs["config"]["sampler"] == samplers[row["method"]]
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        assert complete and all(TrialRecord.from_user_attrs(t.user_attrs).source.startswith("supernet")
                                for t in complete)
        assert float(row["charged_s"]) >= 0.3
    md = (out / "search_quality.md").read_text()
    assert "| supernet + TPE | 0 |" in md and "| supernet + random | 0 |" in md and "not run" not in md
    # one supernet keeps the setup's earlier form (a path); an ensemble is another setup: its own --out
    setup = json.loads((out / "setup.json").read_text())
    assert setup["supernet"] == os.path.abspath(saved.path.parent)
    # scores read the supernet's own split: a run of an earlier version (scored on the proxy split) is another setup
    assert setup["supernet_data"] == "supernet"
    torch.manual_seed(1)
    other = save_supernet(tmp_path / "sn2", Supernet(SearchSpace.from_dict(TINY_SPACE), 10, 8, shape_samples=4),
                          dataset={**dataset_identity(split), "input_size": 8}, method="spos", epochs=0)
    both = ("--supernet", str(saved.path.parent), str(other.path.parent))
    code, _, err = run(bench, capsys, *args, *both)
    assert code == 2 and "another search setup (supernet differ)" in err
    bench_plan = bench.build(bench.parser().parse_args([*map(str, args), *both]), bench.parser())
    assert bench_plan.config("supernet", 0).supernet.checkpoint == (str(saved.path.parent), str(other.path.parent))
    assert bench_plan.fingerprint()["supernet"] == [os.path.abspath(saved.path.parent),
                                                    os.path.abspath(other.path.parent)]
