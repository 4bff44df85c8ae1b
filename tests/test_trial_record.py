"""TrialRecord: the one home of a trial's user-attr keys, read from a study the previous driver wrote.

``tests/data/legacy_study.db`` was written by the search as it was before TrialRecord existed
(see tests/data/README.md): study ``legacy`` (a paper preset, a killed driver's trial recovered
and re-queued, a budget), ``legacy-b`` (results reused from ``legacy``) and ``legacy-fail`` (a
candidate failure and an environment failure, re-queued).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from experiments.config import load_config
from experiments.report import hypervolume, trials_frame, write_report
from experiments.search import run_search
from experiments.study_handling import count_trials
from experiments.trial_record import LatencyRecord, TrialRecord, latency_key, latency_targets, parse_latency_key

LEGACY = Path(__file__).parent / "data" / "legacy_study.db"
LEGACY_SPACE = {"width_ranges": [[40, 48], [88, 96], [184, 192]], "depth_ranges": [[1, 4], [1, 8], [1, 4]],
                "stem_choices": [24], "conv5_choices": [1024]}


@pytest.fixture(autouse=True)
def home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path_factory.getbasetemp() / "shufflenas-home"))


@pytest.fixture
def legacy(tmp_path) -> str:
    path = tmp_path / "study.db"
    shutil.copy(LEGACY, path)
    return f"sqlite:///{path}"


def trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=url).trials


def test_every_stored_trial_round_trips_unchanged(legacy):
    for name in ("legacy", "legacy-b", "legacy-fail"):
        for t in trials(legacy, name):
            record = TrialRecord.from_user_attrs(t.user_attrs)
            assert record.to_user_attrs() == t.user_attrs, (name, t.number)
            assert not record.extra, (name, t.number)  # every key the old driver wrote is a typed field


def test_stored_attrs_read_as_typed_fields(legacy):
    preset, recovered, resumed, *_ = [TrialRecord.from_user_attrs(t.user_attrs) for t in trials(legacy, "legacy")]
    assert preset.preset == "0.5x" and preset.arch_id == "720b27c32ab2" and preset.costs["params"] == 352042
    assert preset.latency["local-cpu"].source == "measured" and preset.latency["local-cpu"].runs > 0
    assert preset.latency["paper-arm-sd810"].source == "estimate:guideline"
    assert 0 <= preset.accuracy <= 1 and preset.proxy["curve"] and preset.attempts == 1
    assert recovered.requeued and recovered.fail_reason.startswith("interrupted: owner")
    assert resumed.requeued_from_stale
    reused = [TrialRecord.from_user_attrs(t.user_attrs) for t in trials(legacy, "legacy-b")]
    assert all(r.reused_from_study == "legacy" and r.reused_from is not None for r in reused)
    failed = [TrialRecord.from_user_attrs(t.user_attrs) for t in trials(legacy, "legacy-fail")]
    assert [r.failure_kind for r in failed[:2]] == ["candidate", "environment"]
    assert failed[2].requeued_from == 1


def test_a_record_built_by_the_driver_writes_the_keys_the_old_driver_wrote(legacy):
    stored = trials(legacy, "legacy")[0].user_attrs
    old = TrialRecord.from_user_attrs(stored)
    record = (TrialRecord(owner="host:1:2", proxy_key=old.proxy_key)
              .with_arch(old.arch, old.arch_id, "0.5x", old.costs)
              .with_latency("local-cpu", LatencyRecord.measured({"median_ms": 1.5, "p90_ms": 1.7, "cv": 0.1, "runs": 9,
                                                                 "cached": False}))
              .with_latency("paper-arm-sd810", LatencyRecord.estimated(7.5, "guideline"))
              .with_result({"status": "ok", "accuracy": 0.5, "val_curve": [0.5], "loss_curve": [2.0],
                            "train_time_s": 1.0, "images_per_s": 10.0, "epochs_run": 1, "reason": None}, 1, 42))
    assert set(record.to_user_attrs()) == set(stored)
    assert record.latency_ms("local-cpu") == 1.5 and record.accuracy == 0.5
    failed = record.failing("training failed: x", "candidate").to_user_attrs()
    assert failed["fail_reason"] == "training failed: x" and failed["failure_kind"] == "candidate"


def test_unknown_keys_survive_and_reuse_drops_bookkeeping():
    attrs = {"arch_id": "abc", "accuracy": 0.7, "latency_ms:x": 2.0, "latency_source:x": "measured",
             "some_future_key": {"a": 1}, "owner": "h:1:2", "preset": "1.0x", "requeued": True}
    record = TrialRecord.from_user_attrs(attrs)
    assert record.extra == {"some_future_key": {"a": 1}} and record.to_user_attrs() == attrs
    mine = TrialRecord(owner="me", arch_id="abc").reusing(record, "other", 7, same_latency=False)
    out = mine.to_user_attrs()
    assert out["owner"] == "me" and "preset" not in out and "requeued" not in out and "latency_ms:x" not in out
    assert out["accuracy"] == 0.7 and out["reused_from"] == 7 and out["reused_from_study"] == "other"
    assert TrialRecord().reusing(record, "s", 1, same_latency=True).latency_ms("x") == 2.0


def test_latency_keys():
    assert latency_key("local-cpu") == "latency_ms:local-cpu"
    assert parse_latency_key("latency_estimate_model:paper-gpu") == ("estimate_model", "paper-gpu")
    assert parse_latency_key("latency_ms") is None and parse_latency_key("accuracy") is None
    assert parse_latency_key("latency_stable:local-cpu") == ("stable", "local-cpu")
    assert latency_targets(["accuracy", "latency_ms:a", "latency_source:a", "latency_ms:b"]) == ["a", "b"]


def test_counts_of_a_stored_study(legacy):
    storage = optuna.storages.RDBStorage(legacy)
    counts = count_trials(optuna.load_study(study_name="legacy", storage=storage))
    assert (counts.finished, counts.complete, counts.failed) == (4, 4, 0)  # the recovered trial does not count
    counts = count_trials(optuna.load_study(study_name="legacy-fail", storage=storage))
    assert (counts.finished, counts.complete, counts.failed) == (3, 2, 1)  # the environment failure does not count


def test_the_report_reads_the_stored_study_through_the_record(legacy, tmp_path):
    study = optuna.load_study(study_name="legacy", storage=legacy)
    frame = trials_frame(study)
    assert "owner" not in frame.columns
    for t in study.trials:
        row = frame[frame["number"] == t.number].iloc[0]
        columns = TrialRecord.from_user_attrs(t.user_attrs).report_columns()
        assert set(columns) <= set(frame.columns)
        assert row["latency_ms:local-cpu"] == t.user_attrs.get("latency_ms:local-cpu") or t.state != TrialState.COMPLETE
    summary = write_report(study, tmp_path / "report")
    assert summary["targets"] == ["local-cpu", "paper-arm-sd810"]
    table = pd.read_csv(tmp_path / "report" / "trials.csv")
    assert table.loc[table["number"] == 0, "preset"].item() == "0.5x"
    assert table.loc[table["number"] == 1, "fail_reason"].item().startswith("interrupted")
    assert all(row["preset"] != "0.5x" for row in summary["front"])  # over the params budget: off the front


def test_the_new_driver_resumes_the_stored_study(legacy, tmp_path):
    before = {t.number: t.user_attrs for t in trials(legacy, "legacy")}
    config = load_config(None, {"study": "legacy", "storage": legacy, "out": str(tmp_path), "trials": 5,
                                "workers": 1, "sampler": "random", "seed": 3, "presets": ["0.5x"],
                                "targets": ["local-cpu", "paper-arm-sd810"], "deploy_input": 32,
                                "deploy_classes": 10, "budgets": {"params": 300000}, "space": LEGACY_SPACE,
                                "progress": False, "proxy": {"epochs": 1, "max_train_batches": 2, "batch_size": 32},
                                "latency": {"measure_budget_s": 0.05}})
    result = run_search(config)
    assert (result.finished, result.new_trials) == (5, 1)
    after = trials(legacy, "legacy")
    assert {t.number: t.user_attrs for t in after[:len(before)]} == before
    new = TrialRecord.from_user_attrs(after[-1].user_attrs)
    assert set(after[-1].user_attrs) >= set(before[3]) - {"requeued_from_stale"}  # the same keys as before
    assert new.latency["local-cpu"].source == "measured" and new.preset is None


def test_one_hypervolume_rule():
    # both minimised; a point with a missing value or beyond the reference is on no front
    assert hypervolume([(0.5, 0.5), (0.2, 0.8), (None, 0.1), (2.0, 2.0)], [False, False], (1.1, 1.1)) == \
        pytest.approx(0.45)
    # maximising the first objective is the same area seen from the other side
    assert hypervolume([(-0.5, 0.5), (-0.2, 0.8)], [True, False], (-1.1, 1.1)) == pytest.approx(0.45)
    assert hypervolume([], [False, False], (1.0, 1.0)) == 0.0
    with pytest.raises(ValueError):
        hypervolume([(1, 2, 3)], [False] * 3, (1, 1, 1))


def test_a_disturbed_measurement_is_recorded_as_unstable_and_read_back():
    record = TrialRecord().with_latency("local-cpu", LatencyRecord.measured({"median_ms": 3.0, "stable": False}))
    attrs = record.to_user_attrs()
    assert attrs["latency_stable:local-cpu"] is False
    assert TrialRecord.from_user_attrs(attrs).latency["local-cpu"].stable is False
