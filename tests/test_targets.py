"""Targets: built-ins, user TOML overrides, validation and availability."""

from __future__ import annotations

import pytest

from latency_models.measurement.targets import Target, TargetError, UnknownTargetError, get_target, load_targets
from search_space.errors import ShufflenasError


def test_builtins_follow_the_contract():
    targets = load_targets()
    for name in ("local-cpu", "local-cuda", "local-cuda-b8", "local-cuda-ort", "paper-gpu-1080ti",
                 "paper-arm-sd810", "rpi4"):
        assert name in targets
    cpu = targets["local-cpu"]
    assert (cpu.kind, cpu.backend, cpu.device, cpu.providers, cpu.threads, cpu.batch, cpu.input_size) == (
        "measure", "onnxruntime", "cpu", ("CPUExecutionProvider",), 1, 1, 224)
    assert cpu.resources == {} and cpu.unavailable_reason() is None
    assert targets["local-cuda"].backend == "torch" and targets["local-cuda-b8"].batch == 8
    assert targets["local-cuda-ort"].providers == ("CUDAExecutionProvider",)
    gpu, arm = targets["paper-gpu-1080ti"], targets["paper-arm-sd810"]
    assert (gpu.kind, gpu.backend, gpu.batch, gpu.calibration) == ("estimate", None, 8, "paper-gpu-1080ti")
    assert (arm.kind, arm.batch, arm.calibration) == ("estimate", 1, "paper-arm-sd810")
    for t in (gpu, arm):
        assert "estimate" in t.description.lower()
    assert targets["rpi4"].resources == {"device:rpi4": 1} and targets["rpi4"].threads == 1
    assert isinstance(hash(targets["rpi4"]), int)


def test_get_target_names_the_known_ones():
    with pytest.raises(UnknownTargetError, match="local-cpu") as info:
        get_target("nope")
    assert isinstance(info.value, ShufflenasError) and "\n" not in str(info.value)
    assert get_target(get_target("local-cpu")) == get_target("local-cpu")


def test_user_file_adds_and_overrides(tmp_path, monkeypatch):
    user = tmp_path / "t.toml"
    user.write_text('[targets.local-cpu]\nthreads = 2\n\n'
                    '[targets.board]\ndescription = "a board"\nkind = "measure"\nbackend = "onnxruntime"\n'
                    'device = "cpu"\ninput_size = 32\nresources = { "device:board" = 1 }\n')
    targets = load_targets(user)
    assert targets["local-cpu"].threads == 2 and targets["local-cpu"].backend == "onnxruntime"
    assert targets["board"].providers == ("CPUExecutionProvider",) and targets["board"].is_remote
    monkeypatch.setenv("SHUFFLENAS_TARGETS", str(user))
    assert get_target("board").input_size == 32


def test_estimate_description_is_labelled(tmp_path):
    user = tmp_path / "t.toml"
    user.write_text('[targets.phone]\ndescription = "my phone"\nkind = "estimate"\ndevice = "cpu"\n'
                    'calibration = "phone"\n')
    assert load_targets(user)["phone"].description.startswith("ESTIMATE ONLY")


@pytest.mark.parametrize("body, needle", [
    ('[targets.x]\nkind = "measure"\nfoo = 1\n', "unknown key"),
    ('[targets.x]\ndescription = "d"\nkind = "guess"\ndevice = "cpu"\n', "kind must be one of"),
    ('[targets.x]\ndescription = "d"\nkind = "measure"\nbackend = "onnxruntime"\ndevice = "cpu"\nthreads = "2"\n',
     "threads must be an integer"),
    ('[targets.x]\ndescription = "d"\nkind = "measure"\nbackend = "onnxruntime"\ndevice = "cpu"\nbatch = 0\n',
     "batch must be >= 1"),
    ('[targets.x]\ndescription = "d"\nkind = "measure"\nbackend = "onnxruntime"\ndevice = "tpu"\n', "device must be"),
    ('[targets.x]\ndescription = "d"\nkind = "measure"\ndevice = "cpu"\n', "missing required key 'backend'"),
    ('[targets.x]\ndescription = "d"\nkind = "estimate"\ndevice = "cpu"\n', "needs a calibration"),
    ('[targets.x]\ndescription = "d"\nkind = "measure"\nbackend = "onnxruntime"\ndevice = "cpu"\n'
     'resources = { "device:b" = -1 }\n', "resources must be"),
    ('[targets.x]\ndescription = "d"\nkind = "measure"\nbackend = "torch"\ndevice = "cpu"\n'
     'providers = ["CPUExecutionProvider"]\n', "providers only apply"),
    ('[other]\nx = 1\n', "unknown top-level"),
    ('[targets\n', "not valid TOML"),
])
def test_invalid_files_give_one_line_errors(tmp_path, body, needle):
    user = tmp_path / "t.toml"
    user.write_text(body)
    with pytest.raises(TargetError, match=needle) as info:
        load_targets(user)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(TargetError, match="does not exist"):
        load_targets(tmp_path / "none.toml")


def test_unavailable_reasons():
    ort_cuda = Target("g", "d", "measure", "onnxruntime", "cuda", ("NoSuchExecutionProvider",), 1, 1, 224, {}, None)
    assert "NoSuchExecutionProvider" in ort_cuda.unavailable_reason()
    torch = pytest.importorskip("torch")
    reason = get_target("local-cuda").unavailable_reason()
    assert (reason is None) == torch.cuda.is_available()
    assert get_target("paper-gpu-1080ti").unavailable_reason() is None  # nothing to measure


def test_cli_lists_targets(cli_here):
    result = cli_here("latency", "targets", "--json")
    assert result.returncode == 0, result.stderr
    import json

    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["local-cpu"]["available"] == "yes"
    assert rows["paper-gpu-1080ti"]["available"] == "estimate only"
    assert rows["rpi4"]["available"].startswith("remote")
    text = cli_here("latency", "targets")
    assert text.returncode == 0 and "estimate only" in text.stdout


def test_cli_bad_targets_file(cli_here, tmp_path):
    bad = tmp_path / "t.toml"
    bad.write_text("[targets.x]\nkind = 3\n")
    result = cli_here("latency", "targets", "--targets-file", str(bad))
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr


@pytest.mark.parametrize("extra, needle", [
    ('reference = "not-an-arch"', "reference is not an architecture"),
    ('reference = "1.0x"\nbackend = "torch"', "reference applies to local onnxruntime cpu targets only"),
])
def test_reference_is_validated(tmp_path, extra, needle):
    path = tmp_path / "t.toml"
    path.write_text(f'[targets.x]\ndescription = "x"\nkind = "measure"\nbackend = "onnxruntime"\n'
                    f'device = "cpu"\n{extra}\n'.replace('backend = "onnxruntime"\n', "", extra.count("torch")))
    with pytest.raises(TargetError, match=needle):
        load_targets(path)


def test_reference_can_be_switched_off(tmp_path):
    assert get_target("local-cpu").reference == "stem24_w116-232-464_d4-8-4_r0.5-0.5-0.5_k3-3-3_c1024"
    assert "reference" in get_target("local-cpu").fingerprint()
    path = tmp_path / "t.toml"
    path.write_text('[targets.local-cpu]\nreference = "none"\n')
    target = get_target("local-cpu", path)
    assert target.reference is None and "reference" not in target.fingerprint()
