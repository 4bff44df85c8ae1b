"""The training benchmarks on tiny real runs: CSV contents, resuming after a rerun, bad flags.

The scripts' own ``main(argv)`` runs in this process (what ``python benchmarks/X.py`` calls), on
a few hundred digits images: the same code paths as a full run, in seconds rather than minutes.
"""

from __future__ import annotations

import csv

import pytest
from bench_scripts import load_benchmark


@pytest.fixture(scope="module")
def scripts():
    return {name: load_benchmark(name) for name in ("train_reference", "budget_bias")}


def run(scripts, capsys, script: str, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``benchmarks/<script>.py ARGS``."""
    capsys.readouterr()
    code = scripts[script].main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_reference_trains_resumes_and_tabulates(tmp_path, scripts, capsys):
    args = ("--dataset", "digits", "--limit", "400", "--input-size", "8", "--epochs", "1", "--k", "1",
            "--presets", "0.5x", "--seeds", "2", "--threads", "1", "--out", str(tmp_path))
    code, out, err = run(scripts, capsys, "train_reference", *args)
    assert code == 0, err
    csv_path = tmp_path / "digits-n400-8px-1ep" / "results.csv"
    rows = list(csv.DictReader(csv_path.open()))
    assert [(r["label"], r["seed"]) for r in rows] == [("0.5x", "0"), ("0.5x", "1"), ("sample0", "0"),
                                                        ("sample0", "1")]
    assert all(r["input_size"] == "8" and r["epochs"] == "1" and 0 <= float(r["val_top1"]) <= 1 for r in rows)
    assert (tmp_path / "digits-n400-8px-1ep" / "0.5x-seed1" / "checkpoint.pt").exists()
    assert "| 0.5x | 0.5x |" in out and "320 training / 80 validation images at 8x8" in out
    ref = list(csv.DictReader((tmp_path / "digits-n400-8px-1ep" / "reference.csv").open()))  # search_quality's rows
    assert [(r["arch_id"], r["label"]) for r in ref][:2] == [("720b27c32ab2", "0.5x")] * 2
    assert len({r["setup_key"] for r in ref}) == 2 and ref[0]["setup_key"] == ref[2]["setup_key"]  # one per seed
    assert [float(r["accuracy"]) for r in ref] == pytest.approx([float(r["val_top1"]) for r in rows], abs=1e-4)
    assert {(r["limit"], r["input_size"], r["epochs"], r["complete"]) for r in ref} == {("400", "8", "1", "1")}
    code, _, err = run(scripts, capsys, "train_reference", *args)  # all trained: same figures, nothing retrained
    assert code == 0, err
    assert "already trained" in err
    assert list(csv.DictReader(csv_path.open())) == rows
    assert list(csv.DictReader((tmp_path / "digits-n400-8px-1ep" / "reference.csv").open())) == ref  # epochs' seconds


TINY = ("--dataset", "digits", "--limit", "400", "--input-size", "8", "--epochs", "1", "--k", "1",
        "--presets", "0.5x", "--threads", "1")


def test_train_reference_reuses_committed_rows(tmp_path, scripts, capsys):
    """A second seed trained in a fresh folder from the first run's results.csv: the reused rows are not retrained."""
    code, _, err = run(scripts, capsys, "train_reference", *TINY, "--seeds", "1", "--out", str(tmp_path / "a"))
    assert code == 0, err
    first = tmp_path / "a" / "digits-n400-8px-1ep" / "results.csv"
    rows_a = list(csv.DictReader(first.open()))
    assert [(r["label"], r["seed"]) for r in rows_a] == [("0.5x", "0"), ("sample0", "0")]
    code, out, err = run(scripts, capsys, "train_reference", *TINY, "--seeds", "2", "--out", str(tmp_path / "b"),
                         "--reuse", str(first))
    assert code == 0, err
    folder = tmp_path / "b" / "digits-n400-8px-1ep"
    rows_b = list(csv.DictReader((folder / "results.csv").open()))
    assert [(r["label"], r["seed"]) for r in rows_b] == [("0.5x", "0"), ("0.5x", "1"), ("sample0", "0"),
                                                         ("sample0", "1")]
    assert [rows_b[0], rows_b[2]] == rows_a  # byte for byte the committed rows
    assert not (folder / "0.5x-seed0").exists() and (folder / "0.5x-seed1" / "checkpoint.pt").exists()
    assert f"reused 2 rows of {first}" in out
    ref = list(csv.DictReader((folder / "reference.csv").open()))
    assert [(r["label"], r["epochs"], r["complete"]) for r in ref][:2] == [("0.5x", "1", "1")] * 2
    assert [r["arch_id"] for r in ref][:2] == ["720b27c32ab2"] * 2


def test_train_reference_refuses_other_setups(tmp_path, scripts, capsys):
    code, _, err = run(scripts, capsys, "train_reference", *TINY, "--k", "0", "--seeds", "1",
                       "--out", str(tmp_path / "a"))
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "a" / "digits-n400-8px-1ep" / "results.csv").open()))
    other = tmp_path / "other.csv"
    with other.open("w", newline="") as fh:  # the same row, trained for 2 epochs
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "epochs": "2"} for r in rows)
    for path, words in ((other, ("other.csv", "0.5x", "epochs")), (tmp_path / "none.csv", ("none.csv",))):
        code, _, err = run(scripts, capsys, "train_reference", *TINY, "--seeds", "1", "--out", str(tmp_path / "b"),
                           "--reuse", str(path))
        assert code == 2, err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
        assert all(word in err for word in words), err
    assert not (tmp_path / "b").exists()  # refused before anything was trained


def test_budget_bias_rows_per_budget_and_resume(tmp_path, scripts, capsys):
    args = ("--candidates", "digits:200@8", "--budgets", "1,2", "--n", "1", "--out", str(tmp_path))
    code, out, err = run(scripts, capsys, "budget_bias", *args)
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "budget_bias.csv").open()))
    assert sorted((r["budget"], r["label"]) for r in rows) == [("1", "0.5x"), ("1", "2.0x"), ("1", "sample0"),
                                                               ("2", "0.5x"), ("2", "2.0x"), ("2", "sample0")]
    assert "| digits:200@8 (160/40) |" in out
    code, _, err = run(scripts, capsys, "budget_bias", *args)
    assert code == 0 and err == ""  # nothing left to train
    assert len(list(csv.DictReader((tmp_path / "budget_bias.csv").open()))) == 6


def test_bad_flags_are_one_line_errors(tmp_path, scripts, capsys):
    for script, args in (("budget_bias", ("--candidates", "digits", "--out", str(tmp_path))),
                         ("budget_bias", ("--budgets", "1,x", "--out", str(tmp_path))),
                         ("train_reference", ("--recipe", str(tmp_path / "none.toml"), "--out", str(tmp_path))),
                         ("train_reference", ("--dataset", "nope", "--out", str(tmp_path)))):
        code, _, err = run(scripts, capsys, script, *args)
        assert code == 2, (script, args, err)
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "budget_bias.csv").exists()
