"""`shufflenas arch` and `shufflenas export`: the real entry point in subprocesses (few, they cost
~2 s each: help, sample, export and one bad input) plus in-process calls of the same `main()`."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from experiments.cli.arch import arch as arch_group
from experiments.cli.main import main
from search_space import DEFAULT_SPACE, PRESETS, Architecture

TINY = "stem8_w8-8-8_d1-1-1_c8"  # exports in a fraction of a second


def _one_error_line(stderr: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in stderr


# -- the command as a user runs it: in a subprocess where the process itself is checked ---------

def test_cost_json(cli_here):
    result = cli_here("arch", "cost", "1.0x", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["params"] == 2_278_604
    assert abs(data["flops"] / 146e6 - 1) < 0.02
    assert data["mac"] > 0 and data["kernels"] == 117 and data["elementwise"] > 0
    assert data["preset"] == "1.0x" and data["arch_id"] == PRESETS["1.0x"].arch_id
    assert Architecture.from_string(data["arch"]) == PRESETS["1.0x"]


def test_show_table(cli_here):
    result = cli_here("arch", "show", "2.0x")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert PRESETS["2.0x"].to_string() in out and "preset 2.0x" in out
    for stage in ("stem", "stage2", "stage3", "stage4", "head"):
        assert stage in out
    assert "976" in out and "2048" in out


def test_sample_json_is_deterministic(cli, capsys):
    result = cli("arch", "sample", "--n", "3", "--seed", "1", "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    archs = [Architecture.from_string(json.loads(line)["arch"]) for line in lines]
    assert archs == DEFAULT_SPACE.sample_many(3, seed=1)
    assert [json.loads(line)["arch_id"] for line in lines] == [a.arch_id for a in archs]
    # the same seed through the same entry point in another process gives the same bytes
    assert main(["arch", "sample", "--n", "3", "--seed", "1", "--json"]) == 0
    assert capsys.readouterr().out == result.stdout
    assert main(["arch", "sample", "--n", "3", "--seed", "2", "--json"]) == 0
    assert capsys.readouterr().out != result.stdout


def test_export_writes_a_model_onnx_runtime_runs(cli, tmp_path):
    out = tmp_path / "sub" / "net.onnx"
    result = cli("export", "0.5x", "--out", str(out), "--input-size", "32")
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout and out.is_file()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": np.zeros((1, 3, 32, 32), dtype=np.float32)})
    assert logits.shape == (1, 1000) and np.isfinite(logits).all()
    assert not list(out.parent.glob("*.tmp"))


def test_cheap_commands_do_not_import_torch(tmp_path):
    """`arch sample/cost/show`, errors and --help start without torch (it costs ~2 s per call)."""
    import subprocess
    import sys

    code = ("import sys; from experiments.cli.main import main; "
            "main(['arch', 'sample', '--n', '1']); main(['arch', 'cost', '0.5x']); main(['arch', 'show', '1.0x']); "
            "main(['arch', 'cost', 'nope']); main(['--help']); "
            "sys.stderr.write('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.stderr.strip().endswith("NO-TORCH"), result.stderr


def test_top_level_help(cli):
    result = cli("--help")
    assert result.returncode == 0 and "arch" in result.stdout and "export" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("case", ["unknown-preset", "malformed-string", "malformed-json", "unknown-field",
                                  "missing-file", "negative-input-size", "n-zero", "export-to-directory"])
def test_bad_inputs_exit_2_with_one_error_line(cli, cli_here, tmp_path, case):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{widths: [48, 96, 192]")
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({**PRESETS["0.5x"].to_dict(), "colour": "red"}))
    args, expected = {
        "unknown-preset": (["arch", "cost", "3.0x"], "'3.0x' is not a preset"),
        "malformed-string": (["arch", "show", "stem24_w116-232_d4-8-4"], "widths must have 3 entries"),
        "malformed-json": (["arch", "cost", str(bad_json)], "not valid JSON"),
        "unknown-field": (["arch", "cost", str(extra)], "unknown architecture field(s): colour"),
        "missing-file": (["export", str(tmp_path / "nope.json"), "--out", str(tmp_path / "x.onnx")],
                         "architecture file not found"),
        "negative-input-size": (["arch", "cost", "1.0x", "--input-size", "-16"], "--input-size"),
        "n-zero": (["arch", "sample", "--n", "0"], "must be > 0"),
        "export-to-directory": (["export", "0.5x", "--out", str(tmp_path)], "is a directory"),
    }[case]
    # one case as the real process exits, the others through the same main() in this process
    result = (cli if case == "unknown-preset" else cli_here)(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    _one_error_line(result.stderr)
    assert expected in result.stderr
    assert result.stdout == ""


# -- in-process: same main(), no interpreter start-up --------------------------------------------

@pytest.mark.parametrize("argv", [["--help"], ["arch", "--help"], ["export", "--help"]]
                         + [["arch", name, "--help"] for name in sorted(arch_group.commands)])
def test_help_on_every_arch_command(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: shufflenas") and "--help" in out


def test_arch_group_has_the_documented_commands():
    assert {"cost", "show", "sample"} <= set(arch_group.commands)


def test_cost_layers_csv_sums_to_totals(tmp_path, capsys):
    import pandas as pd

    csv = tmp_path / "layers.csv"
    assert main(["arch", "cost", "0.5x", "--input-size", "16", "--num-classes", "10", "--layers", str(csv),
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    table = pd.read_csv(csv)
    for column in ("params", "flops", "mac", "kernels", "elementwise"):
        assert int(table[column].sum()) == data[column]
    assert data["input_size"] == 16 and data["num_classes"] == 10


def test_cost_text_output(capsys):
    assert main(["arch", "cost", "stem24_w48-96-192_d4-8-4"]) == 0
    out = capsys.readouterr().out
    assert "1,366,792" in out and "preset" in out and "0.5x" in out


def test_show_json_stages(capsys):
    assert main(["arch", "show", "1.0x", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [row["stage"] for row in data["stages"]] == ["stem", "stage2", "stage3", "stage4", "head"]
    assert sum(row["params"] for row in data["stages"]) == 2_278_604
    assert [row["width"] for row in data["stages"][1:4]] == [116, 232, 464]


def test_unwritable_paths_are_user_errors(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["export", TINY, "--out", str(blocker / "net.onnx"), "--input-size", "16"]) == 2
    _one_error_line(capsys.readouterr().err)
    assert main(["arch", "cost", "0.5x", "--layers", str(blocker / "x.csv")]) == 2
    _one_error_line(capsys.readouterr().err)


def test_sample_text_and_export_json(tmp_path, capsys):
    assert main(["arch", "sample", "--n", "2", "--seed", "4"]) == 0
    lines = capsys.readouterr().out.split()
    assert [Architecture.from_string(line) for line in lines] == DEFAULT_SPACE.sample_many(2, seed=4)
    out = tmp_path / "a.onnx"
    assert main(["export", TINY, "--out", str(out), "--input-size", "16", "--num-classes", "3", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["bytes"] == out.stat().st_size and info["input_size"] == 16
    assert Architecture.from_string(info["arch"]) == Architecture.from_string(TINY)


# -- sizes and parsing edges -----------------------------------------------------------------------

HUGE = "stem24_w8192-8192-8192_d64-64-64"  # the top of the string form's ranges


def test_cost_text_of_a_non_preset_says_dash(capsys):
    assert main(["arch", "cost", "stem24_w116-232-464_d4-8-4_c1000"]) == 0
    out = capsys.readouterr().out
    assert "None" not in out
    assert any(line.split() == ["preset", "-"] for line in out.splitlines())
    kernels = next(line for line in out.splitlines() if line.startswith("kernels"))
    assert kernels.split() == ["kernels", "117"]  # no "(117)" echo for small counts


def test_show_text_has_context_and_totals(capsys):
    assert main(["arch", "show", "1.0x", "--input-size", "32", "--num-classes", "10"]) == 0
    out = capsys.readouterr().out
    assert "input 32x32, 10 classes" in out
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert total.split()[1] == "16" and total.split()[-1] == "116"  # units, kernels (small stem)


def test_show_and_cost_of_the_largest_architecture_allocate_nothing(capsys):
    assert main(["arch", "show", HUGE]) == 0
    assert main(["arch", "cost", HUGE, "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["params"] > 6 * 10**9


@pytest.mark.parametrize("argv, expected", [
    (["export", "1.0x", "--num-classes", "1000000000", "--out", "{tmp}/m.onnx"],
     "1.0x with 1000000000 classes at 224x224 would need about"),
    (["export", HUGE, "--out", "{tmp}/m.onnx"], HUGE),
    (["arch", "cost", "1.0x", "--input-size", "100000"], "--input-size"),
    (["arch", "show", "1.0x", "--num-classes", str(2**40)], "--num-classes"),
    (["arch", "cost", "1.0x", "--batch", str(2**40), "--json"], "--batch"),
    (["arch", "cost", "{tmp}/huge.json", "--json"], "an integer with 5001 digits"),
    (["arch", "show", "{tmp}/float.json"], "widths[0] must be a JSON integer"),
    (["arch", "cost", "{tmp}/dup.json"], "key 'depths' appears twice"),
    (["arch", "cost", "stem24_w1" + "0" * 5000 + "-232-464_d4-8-4", "--json"], "bad value"),
])
def test_size_and_parsing_errors_are_one_line(tmp_path, capsys, argv, expected):
    (tmp_path / "huge.json").write_text('{"widths": [1' + "0" * 5000 + ', 232, 464], "depths": [4, 8, 4]}')
    (tmp_path / "float.json").write_text('{"widths": [116.0, 232, 464], "depths": [4, 8, 4]}')
    (tmp_path / "dup.json").write_text('{"widths": [116, 232, 464], "depths": [4, 8, 4], "depths": [1, 1, 1]}')
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    captured = capsys.readouterr()
    _one_error_line(captured.err)
    assert expected in captured.err and len(captured.err) < 600
    assert captured.out == "" and not (tmp_path / "m.onnx").exists()
