"""`shufflenas study guidelines`: estimated on a paper target, measured (real ONNX Runtime) on the CPU."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from experiments.studies.guidelines import StudyError, run_study, verdicts
from latency_models.paper import microbench
from latency_models.measurement.targets import get_target


def test_paper_target_study_writes_tables_charts_and_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path / "home"))
    result = run_study(get_target("paper-arm-sd810"), tmp_path / "out", quick=True)
    assert result.source == "estimate"
    names = sorted(p.name for p in result.files)
    assert names == ["g1.csv", "g1.png", "g2.csv", "g2.png", "g3.csv", "g3.png", "g4.csv", "g4.png", "summary.md"]
    g1 = pd.read_csv(tmp_path / "out" / "g1.csv")
    assert list(g1["config"]) == ["1:1", "1:2", "1:6", "1:12"]
    assert g1.loc[0, "paper_arm_images_per_s"] == 76.2 and g1.loc[0, "paper_gpu_batches_per_s"] == 1480
    assert g1.loc[0, "rel_speed"] == 1.0 and g1.loc[0, "paper_arm_rel"] == 1.0
    assert (g1["guideline_ms"] == g1["ms"]).all()  # estimate-only: the model is the figure
    assert "ESTIMATED" in (tmp_path / "out" / "summary.md").read_text()
    assert (tmp_path / "out" / "g1.png").read_bytes()[:4] == b"\x89PNG"


def test_measured_study_on_the_local_cpu(tmp_path, monkeypatch):
    """Real ONNX Runtime measurements of the G3 x1 networks only (keeps the test short), in 2 rounds."""
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(microbench, "quick_benchmarks",
                        lambda column="arm": microbench.benchmarks(column, ("x1",), ("G3",)))
    seen = []
    result = run_study(get_target("local-cpu"), tmp_path / "out", quick=True, budget_s=0.05, repeats=2,
                       progress=lambda done, total, msg: seen.append((done, total, msg)))
    assert result.source == "measured" and seen[-1][:2] == (10, 10)
    assert [m.split(":")[0] for _, _, m in seen[:5]] == [m.split(":")[0] for _, _, m in seen[5:]][::-1]  # interleaved
    g3 = result.tables["G3"]
    assert (g3["ms"] > 0).all() and g3["guideline_rel"].isna().all()  # no local calibration yet
    assert set(result.tables) == {"G3"}
    assert (g3["repeats"] == 2).all() and all(len(r) == 2 for r in g3["ms_repeats"])
    assert (g3["rel_lo"] <= g3["rel_speed"]).all() and (g3["rel_speed"] <= g3["rel_hi"]).all()
    assert (g3["ms_min"] <= g3["ms"]).all() and (g3["ms"] <= g3["ms_max"]).all()
    (check,) = verdicts(result.tables)
    assert check["verdict"] in ("holds", "does not hold", "within noise")
    assert check["margin_lo"] <= check["margin"] <= check["margin_hi"] and check["margin"] >= 1.0
    assert check["spread_lo"] <= check["spread_here"] <= check["spread_hi"]
    csv = pd.read_csv(tmp_path / "out" / "g3.csv")
    assert {"rel_lo", "rel_hi", "ms_repeats", "repeats"} <= set(csv.columns)
    assert [len(json.loads(v)) for v in csv["ms_repeats"]] == [2] * 5
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert f"| {check['verdict']} |" in summary and "timed 2 times" in summary


def _table(guideline: str, rounds: dict[str, list[float]]) -> pd.DataFrame:
    """A guideline table as run_study builds it, from per-round milliseconds per config."""
    rows = [{"guideline": guideline, "config": c, "scale": "x1", "ms_repeats": ms, "ms": float(np.median(ms)),
             "repeats": len(ms), "paper_gpu_batches_per_s": 1.0, "paper_arm_images_per_s": 1.0}
            for c, ms in rounds.items()]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("rounds, verdict, margin", [
    # 1:1 fastest in every round: holds, margin against the runner-up
    ({"1:1": [1.0, 1.1, 1.0], "1:2": [1.5, 1.6, 1.4], "1:6": [2.0, 2.0, 2.0]}, "holds", (1.455, 1.4, 1.5)),
    # 1:2 faster than 1:1 in every round: does not hold
    ({"1:1": [2.0, 2.2, 2.1], "1:2": [1.0, 1.0, 1.0], "1:6": [3.0, 3.0, 3.0]}, "does not hold", (2.1, 2.0, 2.2)),
    # 1:1 wins on the median but loses one round: within noise
    ({"1:1": [1.0, 1.2, 1.0], "1:2": [1.1, 1.0, 1.1], "1:6": [3.0, 3.0, 3.0]}, "within noise", (1.1, 0.833, 1.1)),
])
def test_verdict_reads_the_interval_of_the_rounds(rounds, verdict, margin):
    (check,) = verdicts({"G1": _table("G1", rounds)})
    assert check["verdict"] == verdict and check["holds"] == (verdict == "holds")
    assert (check["margin"], check["margin_lo"], check["margin_hi"]) == pytest.approx(margin, abs=1e-3)
    assert check["repeats"] == 3 and check["spread_lo"] <= check["spread_here"] <= check["spread_hi"]


def test_cli_table_prints_verdict_and_intervals(cli_here, tmp_path):
    """Estimate-only targets run once: the verdict column is there, without a (min-max) interval."""
    result = cli_here("study", "guidelines", "--target", "paper-arm-sd810", "--out", str(tmp_path / "o"), "--quick",
                 env={"SHUFFLENAS_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "verdict" in lines[0] and "margin" in lines[0]
    assert all(any(word in line for word in ("holds", "does not hold", "within noise")) for line in lines[1:5])
    assert "(" not in "".join(lines[1:5])


def test_cli_bad_input_is_one_line_exit_2(cli_here, tmp_path):
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    env = {"SHUFFLENAS_HOME": str(tmp_path / "home")}
    for args in (["--target", "nope", "--out", str(tmp_path / "o")], ["--target", "paper-gpu-1080ti", "--out", str(afile)]):
        result = cli_here("study", "guidelines", *args, env=env)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1


def test_cli_json_on_the_paper_gpu(cli_here, tmp_path):
    result = cli_here("study", "guidelines", "--target", "paper-gpu-1080ti", "--out", str(tmp_path / "o"), "--quick", "--json",
                 env={"SHUFFLENAS_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["estimated"] is True and len(data["verdicts"]) == 4
    # the model calibrated on the paper reproduces every guideline's winner on the paper's GPU
    assert all(v["holds"] for v in data["verdicts"])


def test_estimate_target_without_calibration_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path))
    target = get_target("paper-gpu-1080ti")
    import dataclasses

    orphan = dataclasses.replace(target, name="orphan", calibration="does-not-exist")
    with pytest.raises(StudyError, match="no guideline calibration"):
        run_study(orphan, tmp_path / "out", quick=True)
