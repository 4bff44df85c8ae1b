"""Search configuration: defaults, TOML files, overrides, [[run]] entries and bad input named."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.config import ConfigError, SearchConfig, load_config, load_configs
from experiments.objectives import parse_budgets, parse_objectives

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_demo():
    config = load_config()
    assert config == SearchConfig()
    assert config.storage_url == "sqlite:///runs/search/study.db"
    assert config.objectives == ("accuracy", "latency:local-cpu")
    assert config.presets == ("0.5x", "1.0x", "1.5x", "2.0x")
    assert config.proxy.input_size == 16 and config.deploy_input == 224


def test_shipped_default_recipe_equals_embedded_defaults():
    assert load_config(CONFIGS / "default.toml") == SearchConfig()


@pytest.mark.parametrize("name", ["default", "baseline", "device_variants"])
def test_shipped_recipes_load(name):
    assert load_configs(CONFIGS / f"{name}.toml")


def test_file_then_overrides(tmp_path):
    path = write(tmp_path, 'trials = 7\nsampler = "nsga2"\n[proxy]\nepochs = 3\nbatch_size = 32\n[budgets]\n"local-cpu" = 20\n')
    config = load_config(path, {"trials": 9, "seed": None, "proxy": {"epochs": 1}})
    assert config.trials == 9 and config.sampler == "nsga2" and config.seed == 0
    assert config.proxy.epochs == 1 and dict(config.proxy.extra) == {"batch_size": 32}
    assert dict(config.budgets) == {"local-cpu": 20.0}


def test_runs_are_one_config_each(tmp_path):
    path = write(tmp_path, 'study = "dev"\ntrials = 5\n[[run]]\nname = "cpu"\nobjectives = ["accuracy", "latency:local-cpu"]\n'
                           '[[run]]\nname = "arm"\ntrials = 6\n')
    configs = load_configs(path)
    assert [(c.name, c.study, c.trials) for c in configs] == [("cpu", "dev-cpu", 5), ("arm", "dev-arm", 6)]
    assert [c.name for c in load_configs(path, run="arm")] == ["arm"]
    with pytest.raises(ConfigError, match="no \\[\\[run\\]\\] named 'gpu'"):
        load_configs(path, run="gpu")


@pytest.mark.parametrize("text, message", [
    ("trails = 3\n", "unknown option(s) 'trails'"),
    ("[latency]\nbudget = 1\n", "'latency.budget'"),
    ("trials = \"many\"\n", "trials must be an integer, got str"),
    ("trials = 0\n", "trials must be > 0, got 0"),
    ("trials = -4\n", "trials must be > 0, got -4"),
    ("workers = true\n", "workers must be an integer, got bool"),
    ("objectives = \"accuracy\"\n", "objectives must be a list of strings"),
    ("sampler = \"cmaes\"\n", "unknown sampler 'cmaes'"),
    ("[budgets]\nmac = \"small\"\n", "budgets.mac must be a number"),
    ("[[run]]\ntrials = 2\n", "run[0] needs a 'name'"),
    ("[[run]]\nname = \"a\"\ntrails = 2\n", "'run[0].trails'"),
    ("trials = [\n", "not valid TOML"),
])
def test_bad_config_is_named(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_configs(write(tmp_path, text))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_foreign_section_is_accepted(tmp_path):
    config = load_config(write(tmp_path, "trials = 2\n[flops_vs_speed]\ncount = 30\n"))
    assert config.trials == 2


def test_objectives_and_budgets():
    objectives = parse_objectives(["accuracy", "latency:local-cpu", "mac"], ["local-cpu"])
    assert [(o.direction, o.key) for o in objectives] == [
        ("maximize", "accuracy"), ("minimize", "latency_ms:local-cpu"), ("minimize", "mac")]
    with pytest.raises(ConfigError, match="not searched"):
        parse_objectives(["latency:rpi4"], ["local-cpu"])
    with pytest.raises(ConfigError, match="unknown objective 'speed'"):
        parse_objectives(["speed"], ["local-cpu"])
    (budget, mac) = parse_budgets({"local-cpu": 10, "mac": 5e6}, ["local-cpu"])
    assert budget.key == "latency_ms:local-cpu" and budget.violation(12.5) == 2.5 and budget.violation(3) < 0
    assert mac.constraint_key == "budget:mac"
    with pytest.raises(ConfigError, match="budget 'gpu'"):
        parse_budgets({"gpu": 3}, ["local-cpu"])


def test_flops_vs_speed_recipe_points_to_its_command():
    with pytest.raises(ConfigError) as info:
        load_configs(CONFIGS / "flops_vs_speed.toml")
    assert "shufflenas study flops-vs-speed --samples 30 --seed 0 --out runs/flops_vs_speed" in str(info.value)
    assert "--target local-cpu --target paper-arm-sd810" in str(info.value)


@pytest.mark.parametrize("body", ['flops_vs_speed = ""', "flops_vs_speed = false", "flops_vs_speed = [1]"])
def test_a_foreign_section_that_is_not_a_table_is_a_config_error(tmp_path, body):
    """Found by the config fuzzer: a scalar where the [flops_vs_speed] table belongs."""
    path = write(tmp_path, body + "\n")
    with pytest.raises(ConfigError, match="flops_vs_speed must be a table"):
        load_configs(path)
