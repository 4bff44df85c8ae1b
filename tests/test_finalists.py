"""Finalists on a real study: a tiny real search (SQLite, digits at 16 px, the 0.5x preset in the
space), its fronts' top k re-scored by real stand-alone trainings (1 epoch, 400 images), in-process
and on the test session's real Ray; a rerun trains nothing twice; bad input is one line and exit 2;
the report marks which accuracy each point carries and draws the finalists."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import matplotlib
import optuna
import pandas as pd
import pytest

from conftest import run_main
from experiments import trial_record as keys
from experiments.config import FinalistOptions
from experiments.finalists import bands, pick_finalists, pick_indices, run_finalists, spread
from experiments.report import non_dominated, scatter_figure, trials_frame, write_report
from experiments.storage import load_study
from experiments.trial_record import finalist_records
from search_space import Architecture

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TARGETS = ("local-cpu", "paper-arm-sd810")
TINY = Architecture.from_string("stem8_w16-32-48_d1-1-1_r0.5-0.5-0.5_k3-3-3_c64")
SMALL = Architecture.from_string("stem8_w16-32-32_d1-1-1_r0.5-0.5-0.5_k3-3-3_c64")


def recipe(folder: Path, finalists: str = "epochs = 1\nlimit = 400\nworkers = 1\n") -> Path:
    """A tiny search whose space holds the 0.5x preset, and a [finalists] table (k from the flag)."""
    path = folder / "tiny.toml"
    path.write_text(f'''out = "{folder / 'out'}"
trials = 3
workers = 1
sampler = "random"
seed = 2
presets = ["0.5x"]
targets = {json.dumps(list(TARGETS))}
deploy_input = 32
deploy_classes = 10
progress = false
[proxy]
epochs = 1
max_train_batches = 2
batch_size = 32
[latency]
measure_budget_s = 0.05
[space]
width_ranges = [[40, 48], [88, 96], [184, 192]]
depth_ranges = [[1, 4], [1, 8], [1, 4]]
stem_choices = [24]
conv5_choices = [1024]
[finalists]
{finalists}''')
    return path


def env(folder: Path) -> dict[str, str]:
    return {"SHUFFLENAS_HOME": str(folder / "home")}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """`shufflenas search --finalists 2 --json` on the tiny recipe: the study, then its finalists."""
    folder = tmp_path_factory.mktemp("finalists")
    proc = run_main("search", "--config", recipe(folder), "--finalists", "2", "--json", env=env(folder))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    return folder, data


def study_of(folder: Path, db: Path | None = None) -> optuna.Study:
    return load_study(f"sqlite:///{db or folder / 'out' / 'study.db'}", "shufflenas")


def test_spread_keeps_both_ends_and_spaces_the_rest():
    assert spread(3, 5) == [0, 1, 2]
    assert spread(10, 1) == [9]          # the most accurate point (a front's slowest)
    assert spread(10, 2) == [0, 9]
    assert spread(9, 3) == [0, 4, 8]
    assert spread(7, 5) == [0, 2, 3, 5, 6]
    assert all(len(spread(n, k)) == min(n, k) for n in range(1, 30) for k in range(1, 8))


def test_bands_split_the_latency_range_evenly_in_log():
    assert bands([1.0, 2.0, 4.0, 8.0, 16.0], 2) == [0, 0, 1, 1, 1]   # the edge (4 ms) is the upper band's
    assert bands([1.0, 2.0, 4.0, 8.0], 3) == [0, 1, 2, 2]
    assert bands([1.0, 26.0, 5.0], 1) == [0, 0, 0] and bands([3.0, 3.0], 4) == [0, 0] and bands([], 2) == []


def test_front_plus_bands_adds_the_best_of_each_band_the_front_leaves_empty():
    # a collapsed front: the two smallest networks beat everything, all in the fastest band
    rows = [(1.0, 0.63, 0), (1.1, 0.64, 1), (5.0, 0.58, 2), (9.0, 0.60, 3), (20.0, 0.55, 4), (9.0, 0.60, 5)]
    assert sorted(pick_indices(rows, 2, "front")) == [0, 1]
    assert sorted(pick_indices(rows, 2, "front+bands")) == [0, 1, 3]   # band 2 (> 4.5 ms): 9 ms, 0.60, lower number
    # a front spanning both bands: nothing added, the same picks as "front"
    spanning = [(1.0, 0.60, 0), (3.0, 0.62, 1), (20.0, 0.70, 2), (8.0, 0.65, 3)]
    assert sorted(pick_indices(spanning, 2, "front+bands")) == sorted(pick_indices(spanning, 2, "front")) == [0, 2]
    # k = 1: the most accurate point, and the best of one band is that same point
    assert pick_indices(rows, 1, "front+bands") == pick_indices(rows, 1, "front") == [1]


def test_pick_on_a_real_study_and_its_one_line_refusals(searched):
    folder, _ = searched
    study = study_of(folder)
    front = {f.trial for f in pick_finalists(study, 2)}
    assert front <= {f.trial for f in pick_finalists(study, 2, "front+bands")}
    with pytest.raises(Exception, match="finalists pick must be one of front, front\\+bands, got 'bands'"):
        pick_finalists(study, 2, "bands")


def test_front_plus_bands_trains_a_band_leader_of_a_collapsed_front_and_says_so(searched, tmp_path):
    """A front collapsed to one tiny network (fastest and most accurate): ``front`` trains only it,
    ``front+bands`` also the best-scored trial of the slower band; each record and the report name
    the rule that picked it."""
    folder, _ = searched
    db = tmp_path / "study.db"
    shutil.copy(folder / "out" / "study.db", db)
    study = study_of(folder, db)
    for key in [k for k in study.user_attrs if k.startswith("finalist:")]:
        study.set_user_attr(key, None)  # start with no finalists on this copy
    attrs = {"arch": TINY.to_string(), "arch_id": TINY.arch_id, "accuracy": 0.999, "accuracy_source": "proxy",
             **{keys.latency_key(t): 1e-4 for t in TARGETS}}
    study.add_trial(optuna.trial.create_trial(values=[0.999, 1e-4], user_attrs=attrs))
    tiny = len(study.trials) - 1
    assert [f.trial for f in pick_finalists(study, 2)] == [tiny]
    picked = pick_finalists(study, 2, "front+bands")
    assert tiny in {f.trial for f in picked} and len(picked) >= 2
    result = run_finalists(study_of(folder, db), FinalistOptions(k=2, pick="front+bands", epochs=1, limit=300,
                                                                  workers=1), tmp_path / "out", progress=False)
    assert sorted(r.trial for r in result.records) == sorted(f.trial for f in picked) and "log latency" in result.rule
    stored = finalist_records(study_of(folder, db).user_attrs)
    assert {stored[f.trial].picked_by for f in picked} == {"front+bands"}
    rows = list(csv.DictReader(open(tmp_path / "out" / "finalists" / "finalists.csv")))
    assert {r["picked_by"] for r in rows} == {"front+bands"}
    write_report(study_of(folder, db), tmp_path / "report")
    assert "front+bands: spread evenly along" in (tmp_path / "report" / "summary.md").read_text()


def test_search_then_finalists_recorded_on_the_study(searched):
    folder, data = searched
    study = study_of(folder)
    final = data["finalists"]
    records = finalist_records(study.user_attrs)
    picked = pick_finalists(study, 2)
    assert sorted(records) == [f.trial for f in picked] == [r["trial"] for r in final["finalists"]]
    assert final["trained"] == sorted(records) and final["skipped"] == [] and final["failed"] == []
    # the picks: both ends of every target's (accuracy, latency) front, computed here independently
    trials = {t.number: t for t in study.trials if t.state.name == "COMPLETE"}
    for target in TARGETS:
        rows = sorted((t.user_attrs[keys.latency_key(target)], t.user_attrs["accuracy"], n) for n, t in trials.items())
        front = sorted(rows[i] for i in non_dominated([r[:2] for r in rows], [False, True]))
        ends = {front[0][2], front[-1][2]}
        assert ends <= set(records) and all(target in records[n].picked_for for n in ends)
    for number, record in records.items():
        assert record.accuracy_source == "trained" and record.epochs == 1 and record.dataset == "digits"
        assert record.input_size == 16 and record.limit == 400  # the study's proxy data, capped by the table
        assert record.proxy_accuracy == trials[number].user_attrs["accuracy"] and record.proxy_source == "proxy"
        assert 0.0 <= record.accuracy <= record.top5 <= 1.0
        run = folder / "out" / "finalists" / f"trial-{number}"
        assert all((run / name).stat().st_size > 0 for name in ("model.pt", "model.onnx", "checkpoint.pt"))
    with open(folder / "out" / "finalists" / "finalists.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["trial"]) for r in rows] == sorted(records)
    assert {r["accuracy_source"] for r in rows} == {"trained"}
    # the trials themselves are untouched: a finished trial's attrs never change
    assert all(keys.FINALIST_PREFIX not in k for t in study.trials for k in t.user_attrs)


def test_rerun_trains_no_finalist_again(searched):
    folder, _ = searched
    runs = sorted((folder / "out" / "finalists").glob("trial-*/metrics.csv"))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in runs}
    proc = run_main("finalists", "--storage", f"sqlite:///{folder / 'out' / 'study.db'}", "--study", "shufflenas",
                    "--config", recipe(folder), "--k", "2", "--json", env=env(folder))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["trained"] == [] and len(data["skipped"]) == len(runs) == len(data["finalists"])
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in runs} == before


def test_on_ray_a_partial_run_resumes_without_retraining(searched, ray_session, tmp_path):
    folder, _ = searched
    db = tmp_path / "study.db"
    shutil.copy(folder / "out" / "study.db", db)  # a copy: this test records another setup
    study = study_of(folder, db)
    before = finalist_records(study.user_attrs)  # the search's finalists (limit 400): kept as they are
    # two tiny networks told as the front's ends on both targets (fastest; most accurate), so k = 1 picks
    # one of them and k = 2 both, whatever the random search drew
    for arch, accuracy, ms in ((TINY, 0.01, 1e-4), (SMALL, 0.99, 1e-3)):
        attrs = {"arch": arch.to_string(), "arch_id": arch.arch_id, "accuracy": accuracy, "accuracy_source": "proxy",
                 **{keys.latency_key(t): ms for t in TARGETS}}
        study.add_trial(optuna.trial.create_trial(values=[accuracy, ms], user_attrs=attrs))
    tiny, small = len(study.trials) - 2, len(study.trials) - 1
    out = tmp_path / "ray"
    options = FinalistOptions(k=1, epochs=1, limit=300, workers=2)
    first = run_finalists(study_of(folder, db), options, out, progress=False)
    assert first.trained == (small,) and not first.skipped and not first.failed
    assert {r.limit for r in first.records} == {300}
    done = {n: (out / "finalists" / f"trial-{n}" / "metrics.csv").stat().st_mtime_ns for n in first.trained}

    second = run_finalists(study_of(folder, db), FinalistOptions(k=2, epochs=1, limit=300, workers=2), out,
                           progress=False)
    assert second.skipped == (small,) and second.trained == (tiny,)  # finished ones are not trained again
    assert {n: (out / "finalists" / f"trial-{n}" / "metrics.csv").stat().st_mtime_ns for n in done} == done
    stored = finalist_records(study_of(folder, db).user_attrs)
    assert {n for n, r in stored.items() if r.setup_key == second.setup_key} == {tiny, small}
    assert {n: r for n, r in stored.items() if n not in (tiny, small)} == before


@pytest.mark.parametrize("argv, message", [
    (["finalists", "--k", "0"], "finalists.k must be >= 1, got 0"),
    (["finalists", "--k", "-2"], "finalists.k must be >= 1, got -2"),
    (["finalists", "--epochs", "0"], "finalists.epochs must be >= 1, got 0"),
    (["finalists", "--study", "nope"], "no study 'nope'"),
    (["finalists", "--config", "BAD"], "unknown option(s) 'finalists.kay'"),
    (["finalists", "--config", "ZERO"], "finalists.k must be >= 1, got 0"),
    (["finalists", "--config", "PICK"], "finalists.pick must be one of front, front+bands, got 'spread'"),
    (["finalists", "--pick", "bands"], "Invalid value for '--pick'"),
    (["finalists", "--recipe", "/nonexistent/train.toml"], "train.toml"),
    (["search", "--finalists", "0"], "finalists.k must be >= 1, got 0"),
    (["search", "--finalists", "2", "--no-finalists"], "not both"),
])
def test_bad_input_is_one_line_and_exit_2(searched, tmp_path, argv, message):
    folder, _ = searched
    bad = tmp_path / "bad.toml"
    bad.write_text("[finalists]\nkay = 3\n" if "BAD" in argv else "[finalists]\npick = \"spread\"\n"
                   if "PICK" in argv else "[finalists]\nk = 0\n")
    argv = [str(bad) if a in ("BAD", "ZERO", "PICK") else a for a in argv]
    if argv[0] == "finalists":
        argv[1:1] = ["--storage", f"sqlite:///{folder / 'out' / 'study.db'}"]
        if "--study" not in argv:
            argv[1:1] = ["--study", "shufflenas"]
    else:
        argv[1:1] = ["--config", str(recipe(tmp_path))]
    proc = run_main(*argv, env=env(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and message in proc.stderr
    assert not (tmp_path / "out").exists()  # a refused search creates nothing


def test_report_marks_each_points_accuracy_and_draws_the_finalists(searched, tmp_path):
    folder, _ = searched
    study = study_of(folder)
    records = finalist_records(study.user_attrs)
    summary = write_report(study, tmp_path)
    frame = pd.read_csv(tmp_path / "trials.csv")
    done = frame[frame["state"] == "COMPLETE"]
    assert set(done[keys.ACCURACY_SOURCE]) == {"proxy"}
    marked = done[done[keys.FINALIST]]
    assert sorted(marked["number"]) == sorted(records)
    for _, row in marked.iterrows():
        record = records[row["number"]]
        assert row[keys.TRAINED_ACCURACY] == pytest.approx(record.accuracy)
        assert row[keys.TRAINED_ACCURACY_SOURCE] == "trained (1 epochs, digits 16 px, 400 images)"
    assert done[~done[keys.FINALIST]][keys.TRAINED_ACCURACY].isna().all()
    assert keys.TRAINED_ACCURACY in pd.read_csv(tmp_path / "pareto.csv").columns
    assert [r["trial"] for r in summary["finalists"]] == sorted(records)
    assert "## Finalists" in (tmp_path / "summary.md").read_text()
    assert {r["picked_by"] for r in summary["finalists"]} == {"front"}

    fig = scatter_figure(trials_frame(study), keys.latency_key("local-cpu"), keys.ACCURACY, "t", "latency",
                         "proxy accuracy", front_by=(False, True))
    ax = fig.axes[0]
    found = {c.get_label(): c for c in ax.collections}
    diamonds = found["finalists: trained (1 epochs, digits 16 px, 400 images)"]
    assert sorted(round(p[1], 6) for p in diamonds.get_offsets()) == sorted(round(r.accuracy, 6)
                                                                            for r in records.values())
    assert "paper presets" in found  # the 0.5x preset, a star on every front plot
    dotted = [ln for ln in ax.lines if ln.get_linestyle() == ":"]
    assert len(dotted) == len(records)  # each finalist joined to its search point
    low, high = ax.get_ylim()
    assert all(low <= r.accuracy <= high for r in records.values())
    plt.close(fig)
