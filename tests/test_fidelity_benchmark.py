"""benchmarks/accuracy_fidelity.py on a tiny IDX Fashion-MNIST: every stage's rows, resuming, the report.

The script's own ``main(argv)`` runs in this process on 6 candidates (the four presets plus two
samples) at 8 px with one-epoch trainings; ``--jobs 2`` runs as the real script in a subprocess
(its spawned workers import the script by path). The supernet is a real, untrained one over the
default space, saved with ``store.save_supernet``.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bench_scripts import load_benchmark
from test_idx import make_set

from evaluator.datasets import load_dataset
from evaluator.supernet.store import save_supernet
from evaluator.supernet.weights import Supernet
from evaluator.training.loop import dataset_identity
from search_space import DEFAULT_SPACE, get_preset

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "accuracy_fidelity.py"
TINY = ("--n", "2", "--limit", "150", "--input-size", "8", "--ref-epochs", "1", "--proxy-train", "64")


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("accuracy_fidelity")


@pytest.fixture(scope="module")
def ff():
    return load_benchmark("finalist_fidelity")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fashion")
    make_set(path, n_train=200, n_val=100, size=28)
    return path


@pytest.fixture(scope="module")
def supernet_dir(root, tmp_path_factory) -> Path:
    data = load_dataset("fashion-mnist", root=root, input_size=8, limit=150, val_fraction=1 / 3)
    out = tmp_path_factory.mktemp("sn")
    save_supernet(out, Supernet(DEFAULT_SPACE, 10, 8, shape_samples=4), dataset=dataset_identity(data),
                  method="spos", epochs=0)
    (out / "metrics.csv").write_text("epoch,train_loss,lr,images_per_s,seconds\n1,2.3,0.1,100,12.5\n2,2.2,0.05,100,7.5\n")
    return out


@pytest.fixture(scope="module")
def other_supernet_dir(root, tmp_path_factory) -> Path:
    """Another untrained supernet of the same data (other weights): with ``supernet_dir``, an ensemble."""
    data = load_dataset("fashion-mnist", root=root, input_size=8, limit=150, val_fraction=1 / 3)
    out = tmp_path_factory.mktemp("sn-other")
    torch.manual_seed(1)
    save_supernet(out, Supernet(DEFAULT_SPACE, 10, 8, shape_samples=4), dataset=dataset_identity(data),
                  method="spos", epochs=0)
    return out


def run(bench, capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = bench.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def rows(out: Path) -> list[dict[str, str]]:
    with (out / "rows.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_every_stage_rows_resume_and_report(bench, capsys, tmp_path, root, supernet_dir):
    out = tmp_path / "fid"
    args = ("all", *TINY, "--data-root", str(root), "--out", str(out), "--supernet", f"spos={supernet_dir}")
    code, stdout, err = run(bench, capsys, *args)
    assert code == 0, err
    assert stdout.startswith("command: benchmarks/accuracy_fidelity.py all") and "CPUs, torch" in stdout
    assert "data: fashion-mnist at 8 px, 100 training / 50 validation images (6 candidates)" in stdout
    assert "[reference] 2.0x seed 1: acc" in stdout and "[proxy] 2.0x seed 0: acc" in stdout
    with (out / "candidates.csv").open(newline="") as fh:
        cands = list(csv.DictReader(fh))
    assert [c["label"] for c in cands] == ["0.5x", "1.0x", "1.5x", "2.0x", "sample0", "sample1"]
    assert cands[1]["arch_id"] == "7e67833bedee" and float(cands[0]["mflops"]) == pytest.approx(40.476, abs=0.01)

    first = rows(out)
    by_stage: dict[str, list[dict[str, str]]] = {}
    for row in first:
        by_stage.setdefault(row["stage"], []).append(row)
    assert {k: len(v) for k, v in by_stage.items()} == {"reference": 12, "proxy": 6, "naswot": 6, "synflow": 6,
                                                        "supernet:spos": 6}
    ref = by_stage["reference"]
    assert [r["seed"] for r in ref] == ["0"] * 6 + ["1"] * 6  # every seed 0 before any seed 1
    assert {r["label"] for r in ref[:2]} == {"0.5x", "2.0x"}  # smallest and largest first (interleaved)
    assert all(0 <= float(r["accuracy"]) <= 1 and r["train_images"] == "100" and r["val_images"] == "50" for r in ref)
    assert {r["train_images"] for r in by_stage["proxy"]} == {"64"}
    assert all(r["accuracy"] == "" and r["score"] for r in by_stage["naswot"])
    sn = by_stage["supernet:spos"]
    assert {r["method"] for r in sn} == {"spos"} and {r["supernet_train_s"] for r in sn} == {"20.0"}
    assert len({r["checksum"] for r in sn}) == 1

    with (out / "fidelity.csv").open(newline="") as fh:
        table = list(csv.DictReader(fh))
    assert tuple(table[0]) == bench.FIDELITY_FIELDS
    assert [t["estimator"] for t in table] == [bench.CEILING, "supernet:spos", "proxy", "naswot", "synflow",
                                               "-FLOPs", "-params"]
    assert all(t["n"] == "6" for t in table)
    flops = next(t for t in table if t["estimator"] == "-FLOPs")
    assert float(flops["capacity_bias"]) == pytest.approx(-1.0) and float(flops["seconds_per_candidate"]) == 0
    assert "| estimator | n | Spearman | Kendall tau |" in stdout and "| proxy | 6 |" in stdout
    assert (out / "fidelity.md").read_text().startswith("# Accuracy-estimate fidelity")
    assert (out / "fidelity.png").stat().st_size > 0

    code, stdout, err = run(bench, capsys, *args)  # everything there: nothing retrained, no row added
    assert code == 0, err
    assert rows(out) == first and "6 of 6 already in" in stdout and "to train" in stdout

    # one reference seed, reported elsewhere: the main report stays as it was
    report_md = (out / "fidelity.md").read_text()
    code, stdout, err = run(bench, capsys, "report", *TINY, "--data-root", str(root), "--out", str(out),
                            "--ref-seeds", "0", "--report-dir", str(tmp_path / "seed0"))
    assert code == 0, err
    assert "seeds 0 only (--ref-seeds); 6 rows of other seeds left out" in stdout and "seed 0 n=6" in stdout
    with (tmp_path / "seed0" / "fidelity.csv").open(newline="") as fh:
        ceiling = next(csv.DictReader(fh))
    assert ceiling["estimator"] == bench.CEILING and ceiling["n"] == "0"  # no second seed: no ceiling
    assert (out / "fidelity.md").read_text() == report_md and (tmp_path / "seed0" / "fidelity.png").is_file()

    # a torn last line (a killed run) is skipped; another recipe makes new rows instead of mixing
    with (out / "rows.csv").open("a") as fh:
        fh.write("reference,0.5x,720b27c32ab2,0,0.5")
    code, stdout, err = run(bench, capsys, "reference", *TINY, "--ref-epochs", "2", "--seeds", "0",
                            "--data-root", str(root), "--out", str(out))
    assert code == 0, err
    after = rows(out)
    assert len(after) == len(first) + 1 + 6  # the torn line, ended, plus 6 new rows
    assert {r["fingerprint"] for r in after[-6:]}.isdisjoint({r["fingerprint"] for r in ref})
    code, stdout, err = run(bench, capsys, "report", *TINY, "--data-root", str(root), "--out", str(out))
    assert code == 0, err
    assert "reference: 6 rows of another data split or recipe left out" in stdout


def test_an_ensemble_row_is_the_mean_of_its_members_rows(bench, capsys, tmp_path, root, supernet_dir,
                                                          other_supernet_dir):
    other = other_supernet_dir
    out = tmp_path / "fid-ens"
    common = (*TINY, "--data-root", str(root), "--out", str(out))
    for name, dirs in (("one", [str(supernet_dir)]), ("two", [str(other)]), ("both", [str(supernet_dir), str(other)])):
        code, stdout, err = run(bench, capsys, "supernet", "--name", name, "--dir", *dirs, *common)
        assert code == 0, err
    by = {}
    for r in rows(out):
        by.setdefault(r["stage"], {})[r["arch_id"]] = r
    assert len(by["supernet:both"]) == 6
    for arch_id, row in by["supernet:both"].items():
        mean = (float(by["supernet:one"][arch_id]["score"]) + float(by["supernet:two"][arch_id]["score"])) / 2
        assert float(row["score"]) == pytest.approx(mean)
        assert row["checksum"] == "+".join(sorted((by["supernet:one"][arch_id]["checksum"],
                                                   by["supernet:two"][arch_id]["checksum"])))
    assert {r["supernet_train_s"] for r in by["supernet:both"].values()} == {""}  # one member has no metrics.csv
    before = (out / "rows.csv").read_bytes()
    code, _, err = run(bench, capsys, "supernet", "--name", "twice", "--dir", str(supernet_dir), str(supernet_dir),
                       *common)
    assert code == 2 and err.count("\n") == 1 and "listed twice" in err
    assert (out / "rows.csv").read_bytes() == before


def test_supernet_of_another_input_size_is_refused_in_one_line(bench, capsys, tmp_path, root, supernet_dir):
    out = tmp_path / "fid16"
    code, _, err = run(bench, capsys, "supernet", "--name", "spos", "--dir", str(supernet_dir), *TINY,
                       "--input-size", "16", "--data-root", str(root), "--out", str(out))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: supernet ") and "at 8 px" in err and "at 16 px" in err
    assert not out.exists()  # refused before anything is written


def test_bad_flags_and_another_candidate_list(bench, capsys, tmp_path, root):
    code, _, err = run(bench, capsys, "candidates", "--jobs", "0", "--out", str(tmp_path))
    assert code == 2 and err == "error: --jobs must be >= 1, got 0\n"
    assert run(bench, capsys, "candidates", "--n", "1", "--out", str(tmp_path))[0] == 0
    code, _, err = run(bench, capsys, "candidates", "--n", "2", "--out", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "other candidates than --n 2" in err


def test_jobs_train_in_spawned_workers(tmp_path, root):
    out = tmp_path / "jobs"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(SCRIPT), "reference", *TINY, "--n", "0", "--seeds", "0,1", "--jobs", "2",
           "--data-root", str(root), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    got = rows(out)
    assert len(got) == 8 and [r["seed"] for r in got] == ["0"] * 4 + ["1"] * 4
    assert "2 trainings at once" in done.stdout and "(8/8)" in done.stdout


def test_supernet_cost_prints_both_times_side_by_side(capsys, root, supernet_dir, other_supernet_dir, tmp_path):
    cost = load_benchmark("supernet_cost")
    flags = ["--supernet", str(supernet_dir), "--data-root", str(root), "--limit", "150", "--proxy-train", "64",
             "--bn-batches", "1"]
    assert cost.main([*flags, "0.5x"]) == 0
    out = capsys.readouterr().out
    assert "| 0.5x |" in out and "median: a supernet score costs 1/" in out
    assert cost.main([*flags[:1], str(tmp_path / "none"), *flags[2:], "0.5x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert cost.main([*flags[:2], "--supernet", str(other_supernet_dir), *flags[2:], "0.5x"]) == 0  # an ensemble
    assert "+" in capsys.readouterr().out.split("supernet ", 1)[1].split(";")[0]
    assert cost.main([*flags[:2], "--supernet", str(supernet_dir), *flags[2:], "0.5x"]) == 2
    err = capsys.readouterr().err.strip()
    assert "listed twice" in err and "\n" not in err


def test_scoring_budget_grids_bn_batches_and_validation_images(bench, capsys, root, supernet_dir, tmp_path):
    out = tmp_path / "budget"
    flags = ("--n", "0", *TINY[2:], "--data-root", str(root), "--out", str(out))
    code, _, err = run(bench, capsys, "reference", *flags, "--seeds", "0")
    assert code == 0, err
    budget = load_benchmark("scoring_budget")
    fidelity_flags = [f for f in flags if f != "--out" and f != str(out)]
    assert budget.main(["--supernet", f"spos={supernet_dir}", "--fidelity", str(out), "--bn", "1", "2",
                        "--val", "10", "50", *fidelity_flags]) == 0
    printed = capsys.readouterr().out
    assert "| spos | 1 | 10 |" in printed and "| spos | 2 | 50 |" in printed
    with (out / "scoring_budget.csv").open(newline="") as fh:
        grid = list(csv.DictReader(fh))
    assert len(grid) == 4 * 2 * 2  # the presets x BN settings x validation prefixes
    assert {r["val_size"] for r in grid} == {"10", "50"} and all(0 <= float(r["accuracy"]) <= 1 for r in grid)
    assert budget.main(["--supernet", f"spos={supernet_dir}", "--fidelity", str(tmp_path / "none"),
                        *fidelity_flags]) == 2  # no reference rows there: one line
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no reference rows") and "\n" not in err


def test_finalist_fidelity_scores_a_reference_file_with_each_scorer(ff, root, supernet_dir, other_supernet_dir,
                                                                  tmp_path, capsys):
    """``finalist_fidelity.py``: every architecture of one setup of a search_quality reference.csv scored by
    one supernet and by an ensemble, the table and plot written; bad input is one line, exit 2."""
    archs = ["0.5x", "1.0x", "1.5x", *(a.to_string() for a in DEFAULT_SPACE.sample_many(3, seed=5))]
    from search_space import Architecture

    archs = [get_preset(a) if a.endswith("x") else Architecture.from_string(a) for a in archs]
    ref = tmp_path / "reference.csv"
    lines = ["setup_key,arch_id,arch,label,accuracy,epochs,complete"]
    lines += [f"k8,{a.arch_id},{a.to_string()},,{0.6 + 0.01 * i},8,1" for i, a in enumerate(archs)]
    lines += [f"k2,{a.arch_id},{a.to_string()},,0.5,2,1" for a in archs[:2]]  # a shorter setup: not read
    ref.write_text("\n".join(lines) + "\n")
    out = tmp_path / "ff"
    args = ["--reference", str(ref), "--supernet", f"one={supernet_dir}", "--supernet",
            f"two={supernet_dir},{other_supernet_dir}", "--data-root", str(root), "--val-size", "20",
            "--bn-batches", "1", "--out", str(out)]
    capsys.readouterr()
    assert ff.main(args) == 0
    text = capsys.readouterr().out
    assert "setup k8, 6 architectures" in text and "| one | 6 |" in text and "| two | 6 |" in text
    with (out / "rows.csv").open(newline="") as fh:
        got = list(csv.DictReader(fh))
    assert len(got) == 6 and [float(r["mflops"]) for r in got] == sorted(float(r["mflops"]) for r in got)
    assert all(0 <= float(r["score:one"]) <= 1 and 0 <= float(r["score:two"]) <= 1 for r in got)
    assert (out / "finalist_fidelity.png").stat().st_size > 0 and (out / "finalist_fidelity.md").read_text() == text
    for bad, message in ((["--supernet", "x=missing-dir"], "no such folder"),
                         (["--reference", str(tmp_path / "none.csv")], "cannot read it"),
                         (["--val-size", "-1"], "--val-size"),
                         (["--bn-batches", "0"], "--bn-batches"),
                         (["--supernet", "no-equals-sign"], "NAME=DIR"),
                         (["--out", str(ref)], "--out")):  # a file, not a folder
        argv = [*args, *bad]
        assert ff.main(argv) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_finalist_fidelity_judges_scores_saved_before_the_reference(ff, root, supernet_dir, tmp_path, capsys):
    """``--scores NAME=JSON``: the output of ``shufflenas supernet score --json``, saved before the
    reference existed, is a scorer like a supernet folder and gives the same row as scoring there."""
    from experiments.cli.main import main as cli

    archs = [get_preset("0.5x"), get_preset("1.0x"), *DEFAULT_SPACE.sample_many(2, seed=5)]
    capsys.readouterr()
    assert cli(["supernet", "score", str(supernet_dir), *(a.to_string() for a in archs), "--data-root", str(root),
                "--val-size", "20", "--bn-batches", "1", "--threads", "1", "--json"]) == 0
    saved = tmp_path / "scores.json"
    saved.write_text(capsys.readouterr().out)
    ref = tmp_path / "reference.csv"
    ref.write_text("\n".join(["setup_key,arch_id,arch,label,accuracy,epochs,complete",
                              *(f"k8,{a.arch_id},{a.to_string()},,{0.6 + 0.01 * i},8,1" for i, a in enumerate(archs))])
                   + "\n")
    args = ["--reference", str(ref), "--data-root", str(root), "--val-size", "20", "--bn-batches", "1"]
    assert ff.main([*args, "--scores", f"sn={saved}", "--out", str(tmp_path / "stored")]) == 0
    assert ff.main([*args, "--supernet", f"sn={supernet_dir}", "--out", str(tmp_path / "live")]) == 0
    stored, live = rows(tmp_path / "stored"), rows(tmp_path / "live")
    assert len(stored) == 4 and [r["score:sn"] for r in stored] == [r["score:sn"] for r in live]
    capsys.readouterr()
    (tmp_path / "bad.json").write_text('{"not": "a list"}')
    for bad, message in ((f"sn={tmp_path / 'none.json'}", "cannot read it"), (f"sn={tmp_path / 'bad.json'}", "JSON"),
                         ("no-equals-sign", "NAME=JSON")):
        assert ff.main([*args, "--scores", bad, "--out", str(tmp_path / "bad")]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_finalist_fidelity_pools_files_averages_seeds_and_trains_the_proxy(ff, root, tmp_path, capsys):
    """Two reference files pooled; two training seeds of one recipe averaged (their seed-to-seed tau is the
    ceiling row); the proxy trained for real on the reference's own split, its rows kept so a rerun trains
    nothing; the free scorers beside it."""
    archs = [get_preset("0.5x"), get_preset("1.0x"), *DEFAULT_SPACE.sample_many(2, seed=5)]
    head = "setup_key,arch_id,arch,label,accuracy,epochs,dataset,input_size,limit,complete"
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("\n".join([head, *(f"s0,{a.arch_id},{a.to_string()},,{0.5 + 0.1 * i},8,fashion-mnist,8,150,1"
                                        for i, a in enumerate(archs)),
                                *(f"s1,{a.arch_id},{a.to_string()},,{0.9 - 0.1 * i},8,fashion-mnist,8,150,1"
                                  for i, a in enumerate(archs[:3]))]) + "\n")
    a0 = archs[0]
    second.write_text(f"{head}\ns0,{a0.arch_id},{a0.to_string()},,0.4,8,fashion-mnist,8,150,1\n")  # a second run
    out = tmp_path / "pool"
    args = ["--reference", str(first), str(second), "--ref-seeds", "2", "--proxy", "--proxy-epochs", "1",
            "--proxy-train", "64", "--data-root", str(root), "--out", str(out)]
    capsys.readouterr()
    assert ff.main(args) == 0
    text = capsys.readouterr().out
    assert "the mean of 2 training seeds (setups s0, s1), 3 architectures (8 epochs)" in text
    assert f"| {ff.CEILING} | 3 | -1.000 |" in text  # s1 ranks the three the other way round
    assert "| proxy | 3 |" in text and "| -FLOPs | 3 |" in text and "| -params | 3 |" in text
    with (out / "rows.csv").open(newline="") as fh:
        got = {r["arch_id"]: r for r in csv.DictReader(fh)}
    assert set(got) == {a.arch_id for a in archs[:3]}
    assert float(got[a0.arch_id]["reference:s0"]) == pytest.approx(0.45)  # 0.5 and 0.4: one setup, two runs
    assert float(got[a0.arch_id]["reference"]) == pytest.approx(0.675)
    assert all(0 <= float(r["score:proxy"]) <= 1 for r in got.values())
    with (out / "proxy_rows.csv").open(newline="") as fh:
        proxy_rows = list(csv.DictReader(fh))
    assert len(proxy_rows) == 3 and {r["train_images"] for r in proxy_rows} == {"64"}
    assert {r["val_images"] for r in proxy_rows} == {"30"}  # the reference's split: 150 images, a fifth held out
    assert ff.main(args) == 0  # a rerun reads the rows it kept
    assert "3 of 3 already in" in capsys.readouterr().out
    for bad, message in ((["--ref-seeds", "3"], "training seed(s)"), (["--setup", "nope"], "no rows of that setup")):
        assert ff.main([*args, *bad]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and message in err[0], err
    assert ff.main(["--reference", str(first), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == "error: give a --supernet, --scores or --proxy to score with"
    cands = tmp_path / "candidates.csv"  # --candidates: only these (one seed: all four trained, three kept)
    cands.write_text("label,arch_id\n" + "".join(f"x,{a.arch_id}\n" for a in archs[1:]))
    only = ["--reference", str(first), "--candidates", str(cands), "--proxy", "--proxy-epochs", "1", "--proxy-train",
            "64", "--data-root", str(root), "--out", str(tmp_path / "only")]
    assert ff.main(only) == 0
    assert f"setup s0, 3 architectures of {cands} (8 epochs)" in capsys.readouterr().out
    assert ff.main([*only[:3], str(tmp_path / "none.csv"), *only[4:]]) == 2
    assert "--candidates" in capsys.readouterr().err


def test_small_end_lift_is_the_smallest_quarters_rank_gain(ff):
    flops = {"a": 1, "b": 2, "c": 3, "d": 4}
    reference = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}  # training: the smallest is the worst
    assert ff.small_end_lift({"a": 0.9, "b": 0.2, "c": 0.3, "d": 0.4}, reference, flops) == pytest.approx(1.0)
    assert ff.small_end_lift(reference, reference, flops) == 0
    assert ff.rank_fraction({"x": 1.0, "y": 1.0, "z": 0.0}) == {"x": 0.75, "y": 0.75, "z": 0.0}


def test_bias_gap_interval_brackets_the_gap_a_list_of_this_size_allows(ff):
    ids = [f"n{i}" for i in range(30)]
    flops = {a: float(i) for i, a in enumerate(ids)}
    reference = {a: float((7 * i) % 30) for i, a in enumerate(ids)}  # nearly no capacity bias
    assert ff.bias_gap_interval(reference, reference, flops, 200) == (0.0, 0.0)
    low, high = ff.bias_gap_interval({a: -f for a, f in flops.items()}, reference, flops, 200)
    assert -2 <= low <= high < 0  # -FLOPs: favours small networks in every resample
    rows = ff.table(ff.Reference(("s0",), {a: a for a in ids}, (reference,), "d", 16, None, 8),
                    {"-FLOPs": {a: -f for a, f in flops.items()}}, {"-FLOPs": 0.0}, flops, bootstrap=50)
    assert rows[0].endswith("| bias minus reference's (90% interval) |")
    assert rows[1].count("|") == rows[2].count("|") == 9
