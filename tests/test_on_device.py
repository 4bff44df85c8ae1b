"""`--on-device`: a board with shufflenas installed measures its own remote target locally (no Ray),
and the files it writes are accepted as that target's own on the search machine."""

from __future__ import annotations

import json

import pytest

from conftest import TINY_TARGETS
from latency_models.estimation import lut
from latency_models.measurement.measure import MeasurementError, measure
from latency_models.measurement.targets import get_target
from search_space import Architecture

TINY = Architecture(widths=(8, 16, 32), depths=(1, 1, 1), stem=8, conv5=32)
BOARD = ('[targets.tiny-board]\ndescription = "test: a board that joins the Ray cluster"\nkind = "measure"\n'
         'backend = "onnxruntime"\ndevice = "cpu"\ninput_size = 16\nresources = { "device:tiny-board" = 1 }\n')


@pytest.fixture
def board(tiny_targets):
    tiny_targets.write_text(TINY_TARGETS + BOARD)  # $SHUFFLENAS_TARGETS points at this file
    return get_target("tiny-board")


def test_on_this_device_measures_locally_with_the_same_fingerprint(board):
    here = board.on_this_device()
    assert board.is_remote and not here.is_remote
    assert here.fingerprint() == board.fingerprint() and here.resources == board.resources
    assert here.unavailable_reason() is None
    assert here.to_dict() == board.to_dict()  # a role of the process, not a target key
    m = measure(TINY, here, budget_s=0.02)
    assert m.median_ms > 0 and m.target == "tiny-board" and m.versions["onnxruntime"]
    with pytest.raises(MeasurementError, match="measure it through Ray"):
        measure(TINY, board, budget_s=0.02)


def test_cli_measure_on_device(cli_here, board):
    done = cli_here("latency", "measure", TINY.to_string(), "--target", "tiny-board", "--on-device",
               "--budget-s", "0.02", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["measured"] and data["target"] == "tiny-board" and data["median_ms"] > 0
    through_ray = cli_here("latency", "measure", TINY.to_string(), "--target", "tiny-board", env={"RAY_ADDRESS": ""})
    assert through_ray.returncode == 2 and "--ray-address" in through_ray.stderr
    local = cli_here("latency", "measure", TINY.to_string(), "--target", "tiny-cpu", "--on-device")
    assert local.returncode == 2 and "--on-device is for remote targets" in local.stderr
    assert len(local.stderr.strip().splitlines()) == 1


def test_a_table_built_on_the_board_serves_the_remote_target(cli_here, board):
    built = cli_here("latency", "build-lut", "--target", "tiny-board", "--on-device", "--samples", "1", "--calibrate", "0",
                "--passes", "1", "--block-budget-s", "0.02", "--budget-s", "0.02", "--json")
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["blocks"] > 0
    table = lut.load(board)  # the search machine's view: the remote target, no --on-device
    assert table is not None and table.blocks and not table.auto_extend
    predicted = cli_here("latency", "predict", "1.0x", "--target", "tiny-board", "--model", "lut", "--json")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["median_ms"] > 0


def test_a_calibration_made_on_the_board_estimates_it_on_the_search_machine(cli_here, board, tiny_targets):
    """calibrate --on-device writes <target>.json; the remote target and an estimate-only target whose
    `calibration` names it both predict from that file."""
    done = cli_here("latency", "calibrate", "--target", "tiny-board", "--on-device", "--quick", "--budget", "0.01", "--json")
    assert done.returncode == 0, done.stderr
    written = json.loads(done.stdout)
    assert written["path"].endswith("tiny-board.json")
    tiny_targets.write_text(TINY_TARGETS + BOARD + '[targets.tiny-board-est]\ndescription = "estimated from the '
                            'board\'s own calibration"\nkind = "estimate"\ndevice = "cpu"\ninput_size = 16\n'
                            'calibration = "tiny-board"\n')
    for name in ("tiny-board", "tiny-board-est"):
        predicted = cli_here("latency", "predict", "1.0x", "--target", name, "--model", "guideline", "--json")
        assert predicted.returncode == 0, predicted.stderr
        data = json.loads(predicted.stdout)
        assert data["estimated"] and data["median_ms"] > 0 and "tiny-board" in data["calibration"]
