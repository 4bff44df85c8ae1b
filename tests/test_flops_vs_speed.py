"""The FLOPs-vs-speed study: real ONNX Runtime measurements on tiny inputs, real files written."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from experiments.studies.flops_vs_speed import (StudyError, check_out_dir, correlations, run_study,
                                                same_flops_pairs, study_architectures)
from latency_models.measurement.targets import get_target
from experiments.cli.main import main
from search_space import PAPER_PRESETS

from conftest import TINY_TARGETS, run_main

@pytest.fixture
def tiny_env(tiny_targets, tmp_path):
    return {"SHUFFLENAS_HOME": str(tmp_path / "home"), "targets": str(tiny_targets)}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One study on a measured target (tiny-cpu) and an estimate-only one (paper-arm-sd810), then
    the same command again (plain output, every measurement cached): what the CLI tests read."""
    root = tmp_path_factory.mktemp("flops-vs-speed")
    targets = root / "targets.toml"
    targets.write_text(TINY_TARGETS)
    env = {"SHUFFLENAS_HOME": str(root / "home")}
    args = ("study", "flops-vs-speed", "--samples", "2", "--target", "tiny-cpu", "--target", "paper-arm-sd810",
            "--out", str(root / "study"), "--seed", "3", "--budget-s", "0.02", "--targets-file", str(targets))
    first = run_main(*args, "--json", env=env)
    assert first.returncode == 0, first.stderr
    first_rows = pd.read_csv(root / "study" / "flops_vs_speed.csv")  # the rerun rewrites the file
    again = run_main(*args, env=env)
    assert again.returncode == 0, again.stderr
    return {"out": root / "study", "first": first, "first_rows": first_rows, "again": again}


def test_study_cli_writes_every_output(study):
    out, result = study["out"], study["first"]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["rows"] == 12  # (2 random + 4 presets) x 2 targets
    assert "[12/12] paper-arm-sd810" in result.stderr and "tiny-cpu" in result.stderr  # progress per row
    everything = pd.read_csv(out / "flops_vs_speed.csv")
    table = everything[everything["target"] == "tiny-cpu"]
    assert len(table) == 6 and set(table["source"]) == {"measured"}
    assert set(everything[everything["target"] == "paper-arm-sd810"]["source"]) == {"estimate:guideline"}
    assert (table["latency_ms"] > 0).all()
    assert set(table["preset"].dropna()) >= set(PAPER_PRESETS)
    assert len(pd.read_parquet(out / "flops_vs_speed.parquet")) == 12
    corr = pd.read_csv(out / "correlations.csv")
    corr = corr[corr["target"] == "tiny-cpu"]
    assert set(corr["metric"]) == {"flops", "mac", "params", "kernels", "guideline_ms"}
    flops_rho = corr.loc[corr["metric"] == "flops", "spearman"].item()
    assert -1.0 <= flops_rho <= 1.0
    pairs = pd.read_csv(out / "same_flops_pairs.csv")
    assert {"fast_arch", "slow_arch", "latency_ratio", "flops_diff_pct"} <= set(pairs.columns)
    assert (pairs["flops_diff_pct"] <= 5.0 + 1e-9).all() and (pairs["latency_ratio"] >= 1.0).all()
    png = out / "scatter_tiny-cpu.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (out / "summary.md").read_text()
    assert "FLOPs vs speed" in summary and "0.5x" in summary

    # the rerun read every measurement the first run found stable from the cache (a run the machine's
    # load disturbed is never cached, so it is measured again; the files read above are the rerun's,
    # where such a row may be stable now, so count the first run's)
    first = study["first_rows"]
    stable_first = int(first.loc[first["target"] == "tiny-cpu", "stable"].sum())
    assert study["again"].stderr.count("(cached)") == int(table["cached"].sum()) == stable_first


@pytest.mark.parametrize("args, message", [
    (["--samples", "3", "--target", "no-such-target"], "no-such-target"),
    (["--samples", "0", "--target", "tiny-cpu"], "samples"),
    (["--samples", "-2", "--target", "tiny-cpu"], "samples"),
])
def test_study_cli_rejects_bad_input(capsys, tmp_path, tiny_env, args, message):
    code = main(["study", "flops-vs-speed", *args, "--out", str(tmp_path / "o"), "--targets-file", tiny_env["targets"]])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert not (tmp_path / "o" / "flops_vs_speed.csv").exists()


def test_study_cli_rejects_file_as_output(capsys, tmp_path, tiny_env):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    code = main(["study", "flops-vs-speed", "--samples", "2", "--target", "tiny-cpu", "--out", str(blocker),
                 "--targets-file", tiny_env["targets"]])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "not a directory" in lines[0]


def test_real_cli_error_is_one_line(cli, tmp_path, tiny_env):
    result = cli("study", "flops-vs-speed", "--samples", "3", "--target", "nope", "--out", str(tmp_path / "o"),
                 env={"SHUFFLENAS_HOME": tiny_env["SHUFFLENAS_HOME"]})
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:") and "nope" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_architectures_include_presets_once_and_are_reproducible():
    first = study_architectures(5, seed=1)
    assert first == study_architectures(5, seed=1)
    assert first[:4] == list(PAPER_PRESETS.values())
    assert len(set(first)) == len(first) == 9
    with pytest.raises(StudyError):
        study_architectures(0)


def test_check_out_dir(tmp_path):
    assert check_out_dir(tmp_path / "a" / "b").is_dir()
    (tmp_path / "f").write_text("")
    with pytest.raises(StudyError, match="not a directory"):
        check_out_dir(tmp_path / "f")


def _table(rows):
    base = {"arch_id": "x", "preset": "", "params": 1, "mac": 1, "kernels": 1, "guideline_ms": float("nan"),
            "source": "measured"}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_same_flops_pairs_finds_the_widest_spread_within_tolerance():
    table = _table([
        {"target": "t", "arch": "a", "flops": 100e6, "latency_ms": 10.0},
        {"target": "t", "arch": "b", "flops": 104e6, "latency_ms": 25.0},   # 4% more FLOPs, 2.5x slower
        {"target": "t", "arch": "c", "flops": 120e6, "latency_ms": 50.0},   # outside +-5% of everything
        {"target": "t", "arch": "d", "flops": 102e6, "latency_ms": 12.0},
    ])
    pairs = same_flops_pairs(table)
    best = pairs.iloc[0]
    assert (best["fast_arch"], best["slow_arch"]) == ("a", "b")
    assert best["latency_ratio"] == pytest.approx(2.5)
    assert "c" not in set(pairs["fast_arch"]) | set(pairs["slow_arch"])
    assert list(pairs["rank"]) == list(range(1, len(pairs) + 1))


def test_correlations_are_per_target_and_skip_missing_estimates():
    rows = [{"target": "t", "arch": str(i), "flops": i * 1e6, "latency_ms": float(i)} for i in range(1, 8)]
    corr = correlations(_table(rows))
    flops = corr[corr["metric"] == "flops"].iloc[0]
    assert flops["spearman"] == pytest.approx(1.0) and flops["kendall"] == pytest.approx(1.0)
    assert pd.isna(corr[corr["metric"] == "guideline_ms"].iloc[0]["spearman"])


def test_estimate_only_targets_are_estimated_and_labelled(tmp_path, monkeypatch):
    """The paper's devices cannot be measured: their shipped guideline calibrations stand in, labelled."""
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path / "home"))
    progress = []
    result = run_study([get_target("paper-arm-sd810"), get_target("paper-gpu-1080ti")], 6, tmp_path / "out", seed=1,
                       on_progress=lambda done, total, row: progress.append((done, total)))
    assert progress[-1] == (20, 20)
    assert set(result.table["source"]) == {"estimate:guideline"}
    assert (result.table["latency_ms"] > 0).all()
    # the estimate is not ranked against itself: no guideline_ms row where the latency is that estimate
    assert "guideline_ms" not in set(result.correlations["metric"])
    assert set(result.correlations["metric"]) == {"flops", "mac", "params", "kernels"}
    assert (tmp_path / "out" / "scatter_paper-gpu-1080ti.png").is_file()
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "estimate:guideline" in summary and "estimate only: no measured ranking" in summary
    assert "1.000 |" not in summary and "with measured latency" not in summary
    assert " 1.00x slower" not in summary


def test_cli_says_estimate_only_targets_have_no_measured_ranking(study):
    """A measured target keeps its Spearman row; an estimate-only one gets one plain line instead."""
    result = study["again"]
    lines = result.stdout.splitlines()
    assert lines[0] == "Spearman rank correlation with measured latency"
    assert any(line.startswith("tiny-cpu ") for line in lines[2:3])
    arm = [line for line in lines if line.startswith("paper-arm-sd810")]
    assert len(arm) == 1 and arm[0].split(None, 1)[1] == ("estimate only (estimate:guideline): no measured ranking; "
                                                          "see summary.md")
    assert "1.000" not in result.stdout.split("tiny-cpu", 1)[0] and "paper-arm-sd810:" not in result.stdout


def test_unmeasurable_target_without_estimate_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path / "home"))
    with pytest.raises(StudyError, match="rpi4.*cannot be measured here"):
        run_study([get_target("rpi4")], 2, tmp_path / "out")


def _recipe(tmp_path, tiny_env, body: str) -> str:
    path = tmp_path / "in" / "fvs.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(body.replace("TARGETS", tiny_env["targets"]).replace("OUT", str(tmp_path / "from-config")))
    return str(path)


GOOD_RECIPE = """[flops_vs_speed]
samples = 1
targets = ["tiny-cpu"]
seed = 3
out = "OUT"
budget_s = 0.02
targets_file = "TARGETS"
"""


def test_config_gives_every_setting_and_flags_override_it(cli_here, tmp_path, tiny_env):
    recipe = _recipe(tmp_path, tiny_env, GOOD_RECIPE)
    env = {"SHUFFLENAS_HOME": tiny_env["SHUFFLENAS_HOME"]}
    result = cli_here("study", "flops-vs-speed", "--config", recipe, "--json", env=env)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["rows"], info["samples"], info["seed"], info["targets"]) == (5, 1, 3, ["tiny-cpu"])
    assert info["out"] == str(tmp_path / "from-config")
    assert len(pd.read_csv(tmp_path / "from-config" / "flops_vs_speed.csv")) == 5

    result = cli_here("study", "flops-vs-speed", "--config", recipe, "--samples", "2", "--seed", "4",
                      "--out", str(tmp_path / "from-flags"), "--json", env=env)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["rows"], info["samples"], info["seed"]) == (6, 2, 4)
    assert info["out"] == str(tmp_path / "from-flags") and (tmp_path / "from-flags" / "summary.md").is_file()


def test_the_shipped_recipe_is_read_by_the_study_command():
    from experiments.cli.study_flops import read_study_config

    recipe = read_study_config("experiments/configs/flops_vs_speed.toml")
    assert recipe == {"samples": 30, "targets": ["local-cpu", "paper-arm-sd810"], "seed": 0,
                      "out": "runs/flops_vs_speed"}


@pytest.mark.parametrize("body, message", [
    (GOOD_RECIPE + "sample = 3\n", "unknown option(s) 'flops_vs_speed.sample'"),
    (GOOD_RECIPE.replace("samples = 1", "samples = 0"), "flops_vs_speed.samples in"),
    (GOOD_RECIPE.replace('targets = ["tiny-cpu"]', "targets = []"), "flops_vs_speed.targets in"),
    (GOOD_RECIPE.replace("budget_s = 0.02", 'budget_s = "fast"'), "flops_vs_speed.budget_s in"),
    ("[search]\ntrials = 3\n", "has no [flops_vs_speed] table"),
    ("flops_vs_speed = 3\n", "must be a table"),
    (GOOD_RECIPE.replace("samples = 1\n", ""), "missing option --samples"),
    ("[flops_vs_speed\n", "not valid TOML"),
])
def test_bad_config_is_one_line(capsys, tmp_path, tiny_env, body, message):
    recipe = _recipe(tmp_path, tiny_env, body)
    assert main(["study", "flops-vs-speed", "--config", recipe]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert not (tmp_path / "from-config").exists()


# -- across families (--family) ------------------------------------------------------------------------
def test_family_architectures_add_every_table8_network_once():
    from search_space import PRESETS
    from search_space.presets import FAMILY_PRESETS

    archs = study_architectures(2, seed=0, families=True)
    assert len(archs) == len(set(archs)) == 4 + 1 + len(FAMILY_PRESETS) + 2  # ShuffleNetV2, 2.0x-se, others, samples
    assert {PRESETS[name] for name in FAMILY_PRESETS} <= set(archs)
    assert study_architectures(2, seed=0) == [a for a in archs if a in set(study_architectures(2, seed=0))]


def test_family_run_on_estimate_only_targets_compares_families_and_table8(cli_here, tmp_path):
    out = tmp_path / "fam"
    result = cli_here("study", "flops-vs-speed", "--samples", "1", "--target", "paper-gpu-1080ti", "--family",
                      "--out", str(out), "--json", env={"SHUFFLENAS_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout.strip().splitlines()[-1])
    table = pd.read_csv(out / "flops_vs_speed.csv", keep_default_na=False)
    assert set(table["family"]) == {"shufflenetv2", "mobilenetv2", "shufflenetv1", "xception", "sampled"}
    assert set(table["source"]) == {"estimate:guideline"}
    pairs = pd.read_csv(out / "family_pairs.csv")
    assert len(pairs) and (pairs["fast_family"] != pairs["slow_family"]).all()
    assert (pairs["flops_diff_pct"] <= 5.0 + 1e-9).all() and (pairs["latency_ratio"] >= 1.0).all()
    # MobileNetV2 1.0 and ShuffleNetV2 1.5x: 1.7% apart in FLOPs, a cross-family pair
    assert {"mobilenetv2-1.0", "1.5x"} in [{r.fast_preset, r.slow_preset} for r in pairs.itertuples()]
    t8 = pd.read_csv(out / "table8.csv")
    assert list(t8["preset"][-4:]) == ["mobilenetv2-1.0", "mobilenetv2-1.4", "shufflenetv1-2.0x-g3", "xception"]
    assert (t8["paper-gpu-1080ti ms"] > 0).all() and t8.loc[t8["preset"] == "mobilenetv2-1.0", "mflops"].item() == \
        pytest.approx(300.0, rel=0.02)
    assert list(t8["in_calibration"]) == [True] * 5 + [False] * 4
    assert len(info["table8"]) == 9 and info["family_pairs"]
    summary = (out / "summary.md").read_text()
    assert "different families" in summary and "Table 8 networks" in summary and "MobileNetV2 1.4" in summary


def test_family_key_in_the_recipe(tmp_path):
    from experiments.cli.study_flops import read_study_config
    from experiments.config import ConfigError

    good = tmp_path / "good.toml"
    good.write_text("[flops_vs_speed]\nfamily = true\n")
    assert read_study_config(str(good))["family"] is True
    bad = tmp_path / "bad.toml"
    bad.write_text("[flops_vs_speed]\nfamily = 1\n")
    with pytest.raises(ConfigError, match="flops_vs_speed.family .* must be true or false"):
        read_study_config(str(bad))
