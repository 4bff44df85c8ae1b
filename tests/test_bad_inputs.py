"""Bad-input battery: every command, fed malformed input, fails with one line and touches nothing.

Each case is a command line (plus files it points to). It must exit non-zero (2: a user error), print
exactly one line on stderr (``error: ...``), never a ``Traceback``, and leave every file that existed
before it (a real study, the measurement and ONNX caches, calibrations, an earlier export and
report) byte-for-byte unchanged.

A CLI start costs seconds (torch, optuna), so the cases run through ``experiments.cli.main.main`` in
a few worker subprocesses, one case after the other, with file descriptors 1 and 2 redirected to
files per case (so output written by C libraries is seen too). A handful of cases also go through
the real ``python -m experiments`` entry point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_SPACE, run_main

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real entry point in a subprocess (as tests/conftest.py's ``cli``; usable by module fixtures)."""
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=cwd or REPO,
                          env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=600)

# -- the world the commands must not damage ---------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A directory with a real study, a populated measurement/ONNX cache and earlier outputs."""
    root = tmp_path_factory.mktemp("bad-inputs")
    home = root / "home"
    env = {"SHUFFLENAS_HOME": str(home)}
    config = root / "good.toml"
    config.write_text(_toml({"trials": 2, "workers": 1, "evaluator": "sequential", "sampler": "random", "seed": 0,
                             "targets": ["local-cpu"], "deploy_input": 32, "deploy_classes": 10, "presets": [],
                             "progress": False, "space": TINY_SPACE,
                             "proxy": {"epochs": 1, "max_train_batches": 2, "batch_size": 32},
                             "latency": {"measure_budget_s": 0.05}}))
    done = run_main("search", "--config", str(config), "--storage", f"sqlite:///{root / 'study.db'}",
                    "--study", "good", "--out", str(root / "run"), env=env)
    assert done.returncode == 0, done.stderr
    (root / "existing.onnx").write_bytes(b"an earlier export that must survive")
    (root / "report").mkdir()
    (root / "report" / "trials.csv").write_text("an,earlier,report\n")
    _write_inputs(root)
    return root


def _toml(table: dict, prefix: str = "") -> str:
    """A tiny TOML writer (scalars, lists, one level of sub-tables) for the fixtures."""
    lines, subs = [], []
    for key, value in table.items():
        if isinstance(value, dict):
            subs.append((key, value))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    for key, value in subs:
        lines.append(f"[{prefix}{key}]")
        lines.append(_toml(value, f"{prefix}{key}."))
    return "\n".join(lines) + "\n"


RANDOM = bytes(range(256)) * 3 + b"\x00\xff\xfe"


def _write_inputs(root: Path) -> None:
    """Malformed files the cases point to."""
    bad = root / "in"
    bad.mkdir()
    files: dict[str, str | bytes] = {
        "not-json.json": "{widths: [1, 2",
        "wrong-types.json": json.dumps({"widths": "wide", "depths": [4, 8, 4]}),
        "list.json": json.dumps([116, 232, 464]),
        "negative.json": json.dumps({"widths": [-116, 232, 464], "depths": [4, 8, 4]}),
        "zero-depth.json": json.dumps({"widths": [116, 232, 464], "depths": [0, 8, 4]}),
        "deep.json": "[" * 5000 + "]" * 5000,
        "random.json": RANDOM,
        "empty.json": "",
        "malformed.toml": "trials = [1, 2\n[proxy\n",
        "random.toml": RANDOM,
        "wrong-type.toml": 'trials = "ten"\n',
        "wrong-type-list.toml": 'objectives = "accuracy"\n',
        "wrong-type-table.toml": 'proxy = 3\n',
        "unknown-key.toml": "trails = 3\n",
        "unknown-proxy.toml": "[proxy]\nepochz = 2\n",
        "unknown-latency.toml": "[latency]\nbudget = 2\n",
        "negative-trials.toml": "trials = -4\n",
        "zero-workers.toml": "workers = 0\n",
        "bad-sampler.toml": 'sampler = "annealing"\n',
        "nan-budget.toml": "[latency]\nmeasure_budget_s = nan\n",
        "inf-timeout.toml": "trial_timeout_s = -inf\n",
        "bad-proxy-lr.toml": "[proxy]\nlr = -1.0\n",
        "tiny-deploy.toml": "deploy_input = 2\n",
        "bad-space.toml": "[space]\nwidth_ranges = [[64, 8]]\n",
        "bad-run.toml": "run = 3\n",
        "targets-malformed.toml": "[targets.x\nkind = \n",
        "targets-unknown-key.toml": '[targets.mine]\nkind = "measure"\nbackend = "onnxruntime"\nspeed = 3\n',
        "targets-wrong-type.toml": '[targets.mine]\nkind = "measure"\nbackend = "onnxruntime"\nthreads = "many"\n',
        "targets-bad-kind.toml": '[targets.mine]\nkind = "guess"\n',
        "targets-negative.toml": '[targets.mine]\nkind = "measure"\nbackend = "onnxruntime"\nbatch = -1\n',
        "targets-random.toml": RANDOM,
        "not-a-model.onnx": RANDOM,
        "corrupt.db": RANDOM * 8,
    }
    for name, data in files.items():
        path = bad / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    (bad / "empty-dir").mkdir()
    (bad / "no-images" / "cat").mkdir(parents=True)
    corrupt = bad / "corrupt-images"
    for label in ("cat", "dog"):
        (corrupt / label).mkdir(parents=True)
        for i in range(3):
            (corrupt / label / f"{i}.png").write_bytes(RANDOM)
    (bad / "cifar-corrupt" / "cifar-10-batches-py").mkdir(parents=True)
    for name in ("data_batch_1", "test_batch"):
        (bad / "cifar-corrupt" / "cifar-10-batches-py" / name).write_bytes(RANDOM)
    # broken user calibrations: a home per kind of damage
    for kind, data in (("truncated", b'{"target": "paper-arm-sd810", "coef'), ("random", RANDOM)):
        cal = root / f"home-cal-{kind}" / "calibrations"
        cal.mkdir(parents=True)
        for name in ("paper-arm-sd810.json", "paper-arm-sd810.lut.json", "paper-arm-sd810.predictor.json",
                     "local-cpu.json"):
            (cal / name).write_bytes(data)


# -- the cases --------------------------------------------------------------------------------------
def _dataset_config(dataset: str, root: str | None) -> str:
    proxy = {"dataset": dataset, **({"data_root": root} if root else {})}
    return _toml({"trials": 1, "workers": 1, "presets": [], "targets": ["paper-arm-sd810"],
                  "objectives": ["accuracy", "latency:paper-arm-sd810"], "deploy_input": 32, "progress": False,
                  "space": TINY_SPACE, "proxy": proxy})


ARCH_TEXTS = ["", " ", "stem24", "stem24_w1-2", "w116-232-464", "9.9x", "1.0x-",
              "stem24_w116-232-464_d4-8-4_rnan-0.5-0.5",
              "stem24_w116-232-464_d4-8-4_r0.5-0.5-0.5_k3-3-3_c-1024", "stem24_w0-0-0_d4-8-4",
              "stem24_w116-232-464_d0-8-4", "stem24_w116-232-464_d4-8-4_k4-3-3",
              "stem24_w99999999999999999999-2-2_d1-1-1", "stem24_w116-232-464_d4-8-4_r1e400-0.5-0.5",
              "stem２４_w116-232-464_d4-8-4", "\x00", "{}", "../../etc/passwd"]
ARCH_FILES = ["not-json.json", "wrong-types.json", "list.json", "negative.json", "zero-depth.json", "deep.json",
              "random.json", "empty.json", "missing.json"]
BAD_CONFIGS = ["malformed.toml", "random.toml", "wrong-type.toml", "wrong-type-list.toml", "wrong-type-table.toml",
               "unknown-key.toml", "unknown-proxy.toml", "unknown-latency.toml", "negative-trials.toml",
               "zero-workers.toml", "bad-sampler.toml", "nan-budget.toml", "inf-timeout.toml", "bad-proxy-lr.toml",
               "tiny-deploy.toml", "bad-space.toml", "bad-run.toml", "missing.toml"]
BAD_TARGET_FILES = ["targets-malformed.toml", "targets-unknown-key.toml", "targets-wrong-type.toml",
                    "targets-bad-kind.toml", "targets-negative.toml", "targets-random.toml", "missing.toml"]
BAD_STORAGES = ["foo://bar", "sqlite://relative.db", "sqlite:///:memory:", "postgresql://u:secret@127.0.0.1:1/db",
                "mysql+pymysql://u@127.0.0.1:1/db", "sqlite:////proc/shufflenas/study.db", "journal:///", "",
                "in/corrupt.db",
                "in/empty-dir", "sqlite:///in/random.json"]


def cases() -> list[dict]:
    """Every bad input: ``argv`` (relative paths resolve in the world dir), optional ``home`` variant."""
    out: list[dict] = []

    def add(*argv: str, home: str = "home", code: int = 2, files: dict[str, str] | None = None) -> None:
        out.append({"argv": list(argv), "home": home, "code": code, "files": files or {}})

    # arch
    for text in ARCH_TEXTS:
        add("arch", "cost", text)
        add("arch", "show", text)
    for name in ARCH_FILES:
        add("arch", "cost", f"in/{name}")
    for flag, value in (("--input-size", "0"), ("--input-size", "-5"), ("--input-size", "x"), ("--batch", "0"),
                        ("--num-classes", "0"), ("--num-classes", "-1"), ("--layers", "/proc/nope/layers.csv"),
                        ("--layers", "in/empty-dir")):
        add("arch", "cost", "1.0x", flag, value)
    for n in ("0", "-3", "abc", "1e3"):
        add("arch", "sample", "--n", n)
    add("arch", "sample", "--seed", "x")
    add("arch", "nope")
    # export
    add("export", "1.0x")
    add("export", "not-an-arch", "--out", "existing.onnx")
    add("export", "in/random.json", "--out", "existing.onnx")
    for flag, value in (("--input-size", "0"), ("--input-size", "3"), ("--num-classes", "0"), ("--batch", "-1")):
        add("export", "1.0x", "--out", "existing.onnx", flag, value)
    add("export", "1.0x", "--out", "/proc/nope/model.onnx")
    add("export", "1.0x", "--out", "in/empty-dir")
    for storage in BAD_STORAGES:
        add("export", "--storage", storage, "--study", "good", "--trial", "0", "--out", "existing.onnx")
    add("export", "--storage", "sqlite:///study.db", "--study", "nope", "--trial", "0", "--out", "existing.onnx")
    add("export", "--storage", "sqlite:///study.db", "--study", "good", "--trial", "999", "--out", "existing.onnx")
    add("export", "--storage", "sqlite:///study.db", "--study", "good", "--trial", "-1", "--out", "existing.onnx")
    add("export", "--storage", "sqlite:///study.db", "--study", "good", "--out", "existing.onnx")
    add("export", "1.0x", "--storage", "sqlite:///study.db", "--study", "good", "--trial", "0",
        "--out", "existing.onnx")
    # latency
    for name in BAD_TARGET_FILES:
        add("latency", "targets", "--targets-file", f"in/{name}")
        add("latency", "measure", "0.5x", "--target", "local-cpu", "--targets-file", f"in/{name}")
        add("latency", "predict", "0.5x", "--target", "paper-arm-sd810", "--targets-file", f"in/{name}")
    add("latency", "measure", "0.5x", "--target", "nope")
    add("latency", "measure", "0.5x", "--target", "")
    add("latency", "measure", "not-an-arch", "--target", "local-cpu")
    add("latency", "measure", "in/not-a-model.onnx", "--target", "local-cpu")
    add("latency", "measure", "0.5x", "--target", "paper-arm-sd810")
    for budget in ("0", "-1", "nan", "inf", "x"):
        add("latency", "measure", "0.5x", "--target", "local-cpu", "--budget-s", budget)
    add("latency", "predict", "0.5x", "--target", "nope")
    add("latency", "predict", "not-an-arch", "--target", "paper-arm-sd810")
    add("latency", "predict", "0.5x", "--target", "paper-arm-sd810", "--model", "oracle")
    for kind in ("truncated", "random"):
        for model in ("auto", "guideline", "lut", "predictor"):
            add("latency", "predict", "0.5x", "--target", "paper-arm-sd810", "--model", model, home=f"home-cal-{kind}")
        add("latency", "predict", "0.5x", "--target", "local-cpu", home=f"home-cal-{kind}")
    add("latency", "calibrate", "--target", "paper-arm-sd810")
    add("latency", "calibrate", "--target", "nope")
    add("latency", "calibrate", "--target", "local-cpu", "--budget", "0")
    add("latency", "calibrate", "--target", "local-cpu", "--budget", "-1")
    add("latency", "calibrate", "--target", "local-cpu", "--targets-file", "in/targets-malformed.toml")
    add("latency", "calibrate")
    # search: configs, flags, storages, data sets, targets
    search = ("search", "--out", "run-bad", "--no-progress")
    for name in BAD_CONFIGS:  # (a --workers flag would override the config's value)
        add(*search, "--config", f"in/{name}")
    search = (*search, "--workers", "1")
    for flag, value in (("--trials", "0"), ("--trials", "-1"), ("--trials", "x"), ("--workers", "0"),
                        ("--workers", "-2"), ("--epochs", "0"), ("--epochs", "-1"), ("--sampler", "annealing"),
                        ("--evaluator", "slurm"), ("--study", ""), ("--study", " "), ("--run", "nope"),
                        ("--targets-file", "in/targets-malformed.toml"),
                        ("--targets-file", "in/targets-unknown-key.toml"), ("--targets-file", "in/missing.toml")):
        add(*search, "--storage", "sqlite:///study.db", "--study", "good", flag, value)
    for address in ("127.0.0.1:1", "no-port", "ray://", "[::1]:x"):  # (Ray is only used with several workers)
        add(*search, "--storage", "sqlite:///study.db", "--study", "good", "--workers", "2", "--ray-address", address)
    # resuming a study with another search space (Optuna cannot mix distributions): refused, untouched
    add(*search, "--storage", "sqlite:///study.db", "--study", "good", "--trials", "3")
    for storage in BAD_STORAGES:
        add(*search, "--storage", storage, "--trials", "1")
    # a config that does not match the stored study: refused before anything is written
    add(*search, "--storage", "sqlite:///study.db", "--study", "good", "--trials", "3",
        "--config", "in/other-objectives.toml", files={"in/other-objectives.toml": _toml(
            {"objectives": ["accuracy", "mac"], "targets": ["local-cpu"], "deploy_input": 32, "presets": [],
             "space": TINY_SPACE})})
    for dataset, root in (("imagefolder", "in/missing-dir"), ("imagefolder", "in/empty-dir"),
                          ("imagefolder", "in/no-images"), ("imagefolder", "in/corrupt-images"),
                          ("imagefolder", None), ("cifar10", "in/empty-dir"), ("cifar10", "in/cifar-corrupt"),
                          ("cifar100", "in/missing-dir"), ("imagenet", None)):
        name = f"in/data-{dataset}-{Path(root or 'none').name}.toml"
        add(*search, "--storage", "sqlite:///study.db", "--study", "good", "--trials", "3", "--config", name,
            # (data_root in a config file is relative to the file's folder, in/)
            files={name: _dataset_config(dataset, root and str(Path(root).relative_to("in")))})
    # report
    for storage in BAD_STORAGES + ["sqlite:///missing.db", "journal:///missing.log"]:
        add("report", "--storage", storage, "--study", "good", "--out", "report")
    add("report", "--storage", "sqlite:///study.db", "--study", "nope", "--out", "report")
    add("report", "--storage", "sqlite:///study.db", "--study", "good", "--out", "existing.onnx")
    add("report", "--storage", "sqlite:///study.db", "--study", "good", "--out", "/proc/nope/report")
    add("report", "--study", "good", "--out", "report")
    # studies
    for target in ("nope", "paper-arm-sd810-typo", ""):
        add("study", "guidelines", "--target", target, "--out", "guide-bad")
        add("study", "flops-vs-speed", "--target", target, "--out", "fvs-bad")
    for budget in ("0", "-1", "nan"):
        add("study", "guidelines", "--target", "local-cpu", "--budget", budget, "--out", "guide-bad")
        add("study", "flops-vs-speed", "--budget", budget, "--out", "fvs-bad")
    for samples in ("0", "-1", "x"):
        add("study", "flops-vs-speed", "--samples", samples, "--out", "fvs-bad")
    add("study", "guidelines", "--target", "local-cpu", "--out", "existing.onnx")
    add("study", "flops-vs-speed", "--out", "/proc/nope/fvs")
    for name in ("targets-malformed.toml", "targets-unknown-key.toml", "targets-random.toml"):
        add("study", "guidelines", "--target", "local-cpu", "--targets-file", f"in/{name}", "--out", "guide-bad")
        add("study", "flops-vs-speed", "--targets-file", f"in/{name}", "--out", "fvs-bad")
    # -- data sets, target names, state directory
    evil = '[targets."../../../tmp/shufflenas-evil"]\ndescription = "d"\nkind = "measure"\nbackend = "onnxruntime"\n' \
           'device = "cpu"\ninput_size = 16\n'
    add("latency", "targets", "--targets-file", "in/targets-evil-name.toml", files={"in/targets-evil-name.toml": evil})
    for command in (("latency", "build-lut", "--samples", "1"), ("latency", "calibrate", "--quick"),
                    ("latency", "train-predictor", "--samples", "4"), ("latency", "measure", "0.5x")):
        add(*command, "--target", "../../../tmp/shufflenas-evil", "--targets-file", "in/targets-evil-name.toml",
            files={"in/targets-evil-name.toml": evil})
    for key, value in (("input_size", 100000), ("batch", 100000), ("threads", 100000)):
        name = f"in/targets-huge-{key}.toml"
        add("latency", "targets", "--targets-file", name, files={name: f"[targets.local-cpu]\n{key} = {value}\n"})
        add("latency", "measure", "0.5x", "--target", "local-cpu", "--targets-file", name,
            files={name: f"[targets.local-cpu]\n{key} = {value}\n"})
    add("latency", "targets", "--targets-file", "in/targets-evil-calibration.toml",
        files={"in/targets-evil-calibration.toml": '[targets.paper-arm-sd810]\ncalibration = "../../x"\n'})
    for sub in ("", "/sub"):  # $SHUFFLENAS_HOME is a file, or lies under one
        add("latency", "measure", "0.5x", "--target", "local-cpu", home=f"in/home-is-a-file{sub}",
            files={"in/home-is-a-file": "a file, not a folder\n"})
        add("latency", "predict", "0.5x", "--target", "paper-arm-sd810", home=f"in/home-is-a-file{sub}",
            files={"in/home-is-a-file": "a file, not a folder\n"})
    idx_garbage = {f"in/{name}": "not an IDX file" for name in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
    crafted = {"in/data_batch_1": "cos\nsystem\n(Vtouch pwned-by-a-cifar-batch\ntR."}  # a protocol-0 pickle
    # (data_root in a config file is relative to the file's folder, in/)
    for dataset, root, files in (("mnist", "empty-dir", {}), ("fashion-mnist", "random.json", {}),
                                 ("kmnist", "missing-dir", {}), ("emnist-letters", "empty-dir", {}),
                                 ("imagefolder", "random.json", {}), ("cifar10", "random.json", {}),
                                 ("mnist", ".", idx_garbage), ("cifar10", ".", crafted)):
        name = f"in/data-{dataset}-{root.strip('.') or 'in'}-{len(files)}.toml"
        add(*search, "--storage", "sqlite:///study.db", "--study", "good", "--trials", "3", "--config", name,
            files={name: _dataset_config(dataset, root), **files})
    # -- sizes and architecture parsing
    huge_int = "1" + "0" * 5000  # past Python's 4300-digit int-to-text limit
    strict_json = {"in/huge-int.json": '{"widths": [%s, 232, 464], "depths": [4, 8, 4]}' % huge_int,
                   "in/float-width.json": '{"widths": [116.0, 232, 464], "depths": [4, 8, 4]}',
                   "in/duplicate-key.json": '{"widths": [116, 232, 464], "depths": [4, 8, 4], "depths": [1, 1, 1]}'}
    for name in strict_json:
        for command in (("arch", "cost"), ("arch", "cost", "--json"), ("arch", "show")):
            add(*command, name, files={name: strict_json[name]})
        add("export", name, "--out", "existing.onnx", files={name: strict_json[name]})
    add("arch", "cost", f"stem24_w{huge_int}-232-464_d4-8-4", "--json")
    # unit types per stage: an unknown token, and a unit its stage's shapes cannot build
    add("arch", "show", "stem24_w116-232-464_d4-8-4_bzz-v2-v2")
    add("arch", "cost", "stem24_w116-232-464_d4-8-4_bv1g3-v1g3-v1g3", "--json")
    for flag, value in (("--input-size", "100000"), ("--num-classes", str(2**40)), ("--batch", str(2**40))):
        add("arch", "cost", "1.0x", flag, value, "--json")
        if flag != "--batch":
            add("arch", "show", "1.0x", flag, value)
    # refused before anything is allocated (show/cost of these only count, so they succeed)
    add("export", "1.0x", "--num-classes", "1000000000", "--out", "x.onnx")
    add("export", "1.0x", "--num-classes", "1000000000", "--out", "existing.onnx")
    add("export", "stem24_w8192-8192-8192_d64-64-64", "--out", "existing.onnx")
    add("export", "1.0x", "--input-size", "100000", "--out", "existing.onnx")
    # -- latency commands, caches and remote measurements
    add("latency", "measure", "0.5x", "--target", "rpi4", "--ray-address", "127.0.0.1:1")  # nothing listens
    add("latency", "measure", "0.5x", "--target", "rpi4", "--ray-address", "no-port-here")
    add("latency", "measure", "0.5x", "--target", "local-cpu", "--targets-file", "in/niced.toml",
        files={"in/niced.toml": '[targets.local-cpu]\nniced = "sometimes"\n'})
    for command in (("latency", "targets"), ("latency", "measure", "0.5x", "--target", "phone")):
        add(*command, "--targets-file", "in/unknown-backend.toml",
            files={"in/unknown-backend.toml": '[targets.phone]\ndescription = "d"\nkind = "measure"\n'
                                              'backend = "tflite"\ndevice = "cpu"\n'})
    add("latency", "predict", "0.5x", "--target", "local-cpu", "--model", "lut")  # no table was built
    for flags in (("--max-size", "1x"), ("--max-size", "-5M"), ("--older-than", "-1"), ("--older-than", "nan"),
                  ("--older-than", "soon"), ("--older-than", "1", "--kind", "nope"), ()):
        add("cache", "prune", *flags)
    add("cache", "info", "--bogus")
    # -- search: validated before the study is touched
    checked = ("search", "--out", "run-checked", "--no-progress", "--workers", "1")
    for seed in ("4294967296", "-1", "99999999999999999999"):
        add(*checked, "--seed", seed)
    for name, text in (("seed-huge", "seed = 99999999999999\n"), ("seed-negative", "seed = -1\n"),
                       ("batch-huge", "[proxy]\nbatch_size = 100000\n"), ("input-huge", "[proxy]\ninput_size = 100000\n"),
                       ("limit-tiny", "[proxy]\nlimit = 2\n"), ("limit-type", '[proxy]\nlimit = "all"\n'),
                       ("estimator-magic", '[latency]\nestimate_model = "magic"\n'),
                       ("remote-no-cluster", 'targets = ["local-cpu", "rpi4"]\nworkers = 2\n'),
                       ("blocks-invalid", '[space]\nblock_choices = ["v2", "v1g3"]\n'),
                       ("blocks-unknown", '[space]\nblock_choices = ["v2", "zz"]\n'),
                       ("supernet-none", 'evaluator = "supernet"\n'),
                       ("supernet-key", '[supernet]\ncheckpoint = "empty-dir"\nbn_batch = 3\n'),
                       ("supernet-zero", 'evaluator = "supernet"\n[supernet]\ncheckpoint = "x"\nbn_batches = 0\n')):
        add(*checked, "--config", f"in/search-{name}.toml", files={f"in/search-{name}.toml": text})
    for where in ("in/empty-dir", "in/random.json", "in/missing-dir"):  # not a supernet: refused before any trial
        add(*checked, "--supernet", where)
    for dataset, root in (("nope", None), ("imagefolder", "in/missing-dir"), ("imagefolder", "in/no-images"),
                          ("imagefolder", "in/corrupt-images"), ("cifar10", "in/cifar-corrupt")):
        add(*checked, "--dataset", dataset, *(("--data-root", root) if root else ()))
    # -- reports, storages and studies
    fvs = '[flops_vs_speed]\nsamples = 1\ntargets = ["local-cpu"]\nout = "fvs-bad"\n'
    for name, text in (("fvs-unknown-key.toml", fvs + "sample = 2\n"),
                       ("fvs-zero-samples.toml", fvs.replace("samples = 1", "samples = 0")),
                       ("fvs-targets-number.toml", fvs.replace('["local-cpu"]', "3")),
                       ("fvs-bad-target.toml", fvs.replace('["local-cpu"]', '["nope"]')),
                       ("fvs-no-table.toml", "[search]\ntrials = 1\n"), ("fvs-malformed.toml", "[flops_vs_speed\n")):
        add("study", "flops-vs-speed", "--config", f"in/{name}", files={f"in/{name}": text})
    add("study", "flops-vs-speed", "--config", "in/missing.toml")
    add("study", "flops-vs-speed", "--config", "in/empty-dir")
    for repeats in ("0", "-1", "x"):
        add("study", "guidelines", "--target", "local-cpu", "--repeats", repeats, "--out", "guide-bad")
    add("report", "--storage", "journal:///tmp/shufflenas-no-such/study.log", "--study", "good", "--out", "report")
    # -- training
    # trained weights: evaluate and export --weights (a model.pt of another architecture or with other
    # classes needs a binary file: tests/test_evaluate_cli.py covers those, with the same checks)
    weights_files = {"in/corrupt-model.pt": "not a model", "in/zip-model.pt": "PK\x03\x04 a torn zip"}
    for model in ("in/missing.pt", "in/corrupt-model.pt", "in/zip-model.pt", "in/random.json", "in/empty-dir"):
        add("evaluate", model, "--dataset", "digits", files=weights_files)
        add("export", "--weights", model, "--out", "existing.onnx", files=weights_files)
    add("export", "1.0x", "--weights", "in/corrupt-model.pt", "--out", "existing.onnx", files=weights_files)
    add("export", "--weights", "in/missing.pt", "--out", "/proc/nope/model.onnx")
    add("export", "--weights", "in/missing.pt", "--out", "in/empty-dir")
    add("export", "--weights", "in/missing.pt", "--storage", "sqlite:///study.db", "--study", "good", "--trial", "0",
        "--out", "existing.onnx")
    for flag, value in (("--limit", "0"), ("--limit", "x"), ("--batch-size", "0"), ("--data-root", "in/random.json")):
        add("evaluate", "in/missing.pt", "--dataset", "digits", flag, value)
    add("evaluate")
    train = ("train", "stem8_w16-32-48_d1-1-1_r0.5-0.5-0.5_k3-3-3_c64", "--limit", "100", "--input-size", "16",
             "--batch-size", "16", "--no-progress")
    for flag, value in (("--epochs", "0"), ("--epochs", "-1"), ("--batch-size", "0"), ("--lr", "nan"),
                        ("--lr", "-1"), ("--limit", "2"), ("--threads", "0"), ("--input-size", "4"),
                        ("--optimizer", "rmsprop"), ("--label-smoothing", "1.5"), ("--warmup-epochs", "99"),
                        ("--batch-size", "100000"), ("--init", "torchvision:in/missing.pth"),
                        ("--init", "torchvision:in/random.json"), ("--init", "nope:in/random.json"),
                        ("--init", "supernet:in/empty-dir"), ("--init", "supernet:in/random.json"),
                        ("--config", "in/malformed.toml"), ("--config", "in/random.toml"),
                        ("--config", "in/unknown-key.toml"), ("--config", "in/missing.toml"),
                        ("--config", "in/empty-dir")):
        add(*train, "--dataset", "digits", "--out", "train-bad", flag, value)
    # on Ray: several trainings at once, or one over DDP workers
    for extra in (("--ddp-workers", "0"), ("--use-gpu",), ("--workers", "2", "--ddp-workers", "2"),
                  ("--gpus-per-job", "-1"), ("--ddp-workers", "2", "--gpus-per-job", "0.5"),
                  ("--ray-address", "127.0.0.1:1"), ("--ddp-workers", "200"), ("--workers", "0")):
        add(*train, "--dataset", "digits", "--out", "train-bad", *extra)
    for name, text in (("in/train-bad-lr.toml", "[train]\nlr = -1.0\n"),
                       ("in/train-bad-type.toml", '[train]\nepochs = "ten"\n'),
                       ("in/train-stray.toml", "epochs = 2\n[train]\nlr = 0.1\n"),
                       ("in/train-bad-flip.toml", '[train]\nflip = "yes"\n')):
        add(*train, "--dataset", "digits", "--out", "train-bad", "--config", name, files={name: text})
    for dataset, root in (("nope", None), ("fashion-mnist", "in/empty-dir"), ("imagefolder", "in/no-images"),
                          ("cifar10", "in/cifar-corrupt")):
        add(*train, "--dataset", dataset, *(("--data-root", root) if root else ()), "--epochs", "1", "--out",
            "train-bad")
    for out_dir in ("existing.onnx", "existing.onnx/sub", "/proc/nope/train"):
        add(*train, "--dataset", "digits", "--epochs", "1", "--out", out_dir)
    add(*train, "--dataset", "digits", "--epochs", "1", "--out", "in/train-corrupt",
        files={"in/train-corrupt/checkpoint.pt": "not a checkpoint"})
    add(*train, "--dataset", "digits", "--epochs", "1", "--out", "in/train-results",
        files={"in/train-results/model.pt": "an earlier model, no checkpoint"})
    add("train", "--dataset", "digits", "--out", "train-bad")
    add("train", "not-an-arch", "--dataset", "digits", "--out", "train-bad")
    add("train", "0.5x", "--out", "train-bad")
    for extra in (("--trial", "999"), ("--trial", "-1"), (), ("--trial", "0", "--front")):
        add("train", "--storage", "sqlite:///study.db", "--study", "good", *extra, "--dataset", "digits",
            "--out", "train-bad")
    add("train", "--storage", "sqlite:///study.db", "--study", "nope", "--front", "--dataset", "digits",
        "--out", "train-bad")
    add("train", "--storage", "in/corrupt.db", "--study", "good", "--front", "--dataset", "digits", "--out",
        "train-bad")
    # supernets: train (checked before the bank is built), score and info of missing or damaged folders
    sn = ("supernet", "train", "--dataset", "digits", "--limit", "100", "--batch-size", "16", "--no-progress")
    for flag, value in (("--epochs", "0"), ("--batch-size", "100000"), ("--method", "nope"),
                        ("--sandwich-paths", "-1"), ("--path-draws", "0"), ("--lr", "nan"), ("--input-size", "4"),
                        ("--config", "in/malformed.toml"), ("--config", "in/missing.toml"),
                        ("--config", "in/unknown-key.toml"), ("--space-config", "in/bad-space.toml"),
                        ("--space-config", "in/malformed.toml"), ("--space-config", "in/missing.toml"),
                        ("--ddp-workers", "0"), ("--use-gpu", "")):
        add(*sn, "--epochs", "1", "--out", "sn-bad", flag, *((value,) if value else ()))
    add(*sn, "--out", "sn-bad")
    add(*sn[:3], "nope", *sn[4:], "--epochs", "1", "--out", "sn-bad")
    for out_dir in ("existing.onnx", "existing.onnx/sub", "/proc/nope/supernet"):
        add(*sn, "--epochs", "1", "--out", out_dir)
    sn_files = {"in/sn-corrupt/checkpoint.pt": "not a checkpoint", "in/sn-results/supernet.pt": "a supernet, no "
                "checkpoint", "in/sn-torn/supernet.pt": "PK\x03\x04 a torn zip"}
    add(*sn, "--epochs", "1", "--out", "in/sn-corrupt", files=sn_files)
    add(*sn, "--epochs", "1", "--out", "in/sn-results", files=sn_files)
    for folder in ("in/missing", "in/sn-torn", "in/sn-results", "in/empty-dir", "in/random.json"):
        add("supernet", "score", folder, "0.5x", files=sn_files)
        add("supernet", "info", folder, files=sn_files)
    add("supernet", "score", "in/sn-torn")
    add("supernet", "score", "in/sn-torn", "not-an-arch")
    return out


CASES = cases()

# -- the runner: many cases in one interpreter ------------------------------------------------------
RUNNER = r'''
import hashlib, json, os, signal, sys, traceback
from pathlib import Path

world = Path(sys.argv[1]); cases = json.loads(Path(sys.argv[2]).read_text()); result_path = Path(sys.argv[3])
os.chdir(world)
from experiments.cli.main import main

class CaseTimeout(BaseException):
    pass

def alarm(signum, frame):
    raise CaseTimeout(f"still running after {CASE_TIMEOUT_S} s: the bad input was accepted")

CASE_TIMEOUT_S = int(os.environ.get("CASE_TIMEOUT_S", "45"))
signal.signal(signal.SIGALRM, alarm)

def snapshot():
    state = {}
    for path in sorted(world.rglob("*")):
        rel = f"/{path.relative_to(world)}"
        if path.is_file() and not path.name.endswith(("-wal", "-shm", "-journal")) and "/in/" not in rel:
            state[str(path.relative_to(world))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state

results = []
for case in cases:
    for name, text in case["files"].items():
        (world / name).parent.mkdir(parents=True, exist_ok=True)
        (world / name).write_text(text)
    os.environ["SHUFFLENAS_HOME"] = str(world / case["home"])
    before = snapshot()
    out_fd, err_fd = os.dup(1), os.dup(2)
    out_file, err_file = open("/tmp/.bad-out-%d" % os.getpid(), "w+b"), open("/tmp/.bad-err-%d" % os.getpid(), "w+b")
    os.dup2(out_file.fileno(), 1); os.dup2(err_file.fileno(), 2)
    code, crash = None, None
    signal.alarm(CASE_TIMEOUT_S)
    try:
        code = main(case["argv"])
    except SystemExit as exc:
        code = exc.code
    except CaseTimeout as exc:
        crash = f"TIMEOUT: {exc}"
    except BaseException:
        crash = traceback.format_exc()
    finally:
        signal.alarm(0)
        sys.stdout.flush(); sys.stderr.flush()
        os.dup2(out_fd, 1); os.dup2(err_fd, 2); os.close(out_fd); os.close(err_fd)
    out_file.seek(0); err_file.seek(0)
    stderr = err_file.read().decode(errors="replace") + (crash or "")
    after = snapshot()
    changed = sorted(k for k in before if after.get(k) != before[k])
    results.append({"argv": case["argv"], "home": case["home"], "code": code, "stderr": stderr,
                    "stdout": out_file.read().decode(errors="replace")[-500:], "changed": changed})
    out_file.close(); err_file.close()
    result_path.write_text(json.dumps(results))
'''

SHARDS = 3


def _run_shard(world: Path, shard: int) -> list[dict]:
    chunk = CASES[shard::SHARDS]
    cases_file = world / f"cases-{shard}.json"
    result_file = world / f"results-{shard}.json"
    cases_file.write_text(json.dumps(chunk))
    runner = world / "runner.py"
    runner.write_text(RUNNER)
    env = {**os.environ, "PYTHONWARNINGS": "default", "SHUFFLENAS_TRACE": ""}
    done = subprocess.run([sys.executable, str(runner), str(world), str(cases_file), str(result_file)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    results = json.loads(result_file.read_text()) if result_file.exists() else []
    assert len(results) == len(chunk), f"runner stopped after {len(results)} cases: {done.stderr[-2000:]}"
    return results


def _problems(result: dict) -> list[str]:
    problems = []
    lines = [line for line in result["stderr"].splitlines() if line.strip()]
    if "Traceback" in result["stderr"]:
        problems.append("traceback")
    if result["code"] in (0, None):
        problems.append(f"exit code {result['code']}")
    elif result["code"] != 2:
        problems.append(f"exit code {result['code']} (usage errors exit 2)")
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr")
    elif not lines[0].startswith("error: "):
        problems.append("stderr line does not start with 'error: '")
    if result["changed"]:
        problems.append(f"changed {result['changed']}")
    return problems


@pytest.mark.parametrize("shard", range(SHARDS))
def test_bad_inputs_fail_cleanly(world, shard):
    results = _run_shard(world, shard)
    bad = []
    for result in results:
        problems = _problems(result)
        if problems:
            bad.append(f"{' '.join(result['argv'])!r} [{result['home']}]: {'; '.join(problems)}\n"
                       f"    stderr: {result['stderr'][-600:]!r}")
    assert not bad, f"{len(bad)} of {len(results)} bad inputs misbehaved:\n" + "\n".join(bad)


def test_case_count():
    """The battery stays large (the number is reported in benchmarks/results/reliability.md)."""
    assert len(CASES) >= 200


@pytest.mark.parametrize("argv", [
    ["arch", "cost", "stem24_w1-2"],
    ["search", "--config", "in/unknown-key.toml"],
    ["report", "--storage", "postgresql://u:secret@127.0.0.1:1/db", "--study", "good", "--out", "report"],
])
def test_real_entry_point(world, argv):
    """The same contract through ``python -m experiments`` (exit code from the process itself)."""
    argv = [str(world / a) if a.startswith("in/") else a for a in argv]
    done = run_cli(*argv, cwd=world, env={"SHUFFLENAS_HOME": str(world / "home"), "PYTHONPATH": str(REPO)})
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "secret" not in done.stderr


def test_corrupt_onnx_export_cache_still_measures(tmp_path):
    """A damaged cached ONNX export (random bytes, empty file) is exported again: measuring still works."""
    import onnx

    env = {"SHUFFLENAS_HOME": str(tmp_path / "home")}
    targets = tmp_path / "targets.toml"
    targets.write_text("[targets.local-cpu]\ninput_size = 32\n")  # overrides only the input size
    args = ("latency", "measure", "0.5x", "--target", "local-cpu", "--targets-file", str(targets), "--no-cache",
            "--budget-s", "0.05")
    first = run_main(*args, env=env)
    assert first.returncode == 0, first.stderr
    exports = sorted((tmp_path / "home" / "onnx").glob("*.onnx"))
    assert len(exports) == 2  # the candidate and local-cpu's reference network (1.0x)
    for damage in (RANDOM, b""):
        for path in exports:
            path.write_bytes(damage)
        done = run_main(*args, env=env)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        for path in exports:
            onnx.checker.check_model(onnx.load(str(path)))  # replaced by a whole model
