"""The driver side every DDP run shares (a training, a supernet): the epoch lines it prints while
rank 0 rewrites ``metrics.csv``, and its opening lines. Real metrics files, written as a run writes
them; the Ray Train side runs in test_train_ddp.py and test_supernet_train.py."""

from __future__ import annotations

from evaluator.supernet.outputs import read_metrics as read_supernet_metrics
from evaluator.supernet.outputs import write_metrics as write_supernet_metrics
from evaluator.supernet.session import SupernetEpoch
from evaluator.training.distributed import DDPSettings, EpochLines, ddp_banner, describe_workers
from evaluator.training.outputs import METRICS_NAME, EpochMetrics, read_metrics, write_metrics


def training_rows(n: int) -> list[EpochMetrics]:
    return [EpochMetrics(i, 2.0 / i, 0.5 + i / 100, 0.9, 0.1 / i, 120.0, 3.5) for i in range(1, n + 1)]


def test_each_epoch_is_printed_once_as_the_file_grows(tmp_path, capsys):
    write_metrics(tmp_path, training_rows(1))
    lines = EpochLines(lambda: read_metrics(tmp_path), epochs=3, already=0)
    lines.poll()
    write_metrics(tmp_path, training_rows(3))
    lines.poll()
    lines.poll()
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in err] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert err[1] == training_rows(3)[1].line(3)


def test_a_resumed_run_shows_only_its_new_epochs_and_a_torn_file_waits(tmp_path, capsys):
    write_metrics(tmp_path, training_rows(2))
    lines = EpochLines(lambda: read_metrics(tmp_path), epochs=4, already=2)
    lines.poll()
    assert capsys.readouterr().err == ""
    (tmp_path / METRICS_NAME).write_text("epoch,train_loss\n3,not-a-number\n")  # caught mid-write
    lines.poll()
    assert capsys.readouterr().err == "" and lines.shown == 2
    write_metrics(tmp_path, training_rows(3))
    lines.poll()
    assert capsys.readouterr().err.startswith("epoch 3/4: loss")


def test_a_supernet_run_prints_its_probes(tmp_path, capsys):
    rows = [SupernetEpoch(1, 1.5, 0.05, 300.0, 9.0, (("smallest", 0.61), ("largest", 0.4)))]
    write_supernet_metrics(tmp_path, rows)
    assert read_supernet_metrics(tmp_path) == rows
    EpochLines(lambda: read_supernet_metrics(tmp_path), epochs=5, already=0).poll()
    assert capsys.readouterr().err.strip() == rows[0].line(5)


def test_the_opening_lines_name_the_workers_and_what_is_resumed(tmp_path):
    cpu = DDPSettings(num_workers=2, use_gpu=False, cpus_per_worker=1.0, threads=1)
    gpu = DDPSettings(num_workers=4, use_gpu=True, cpus_per_worker=1.0, threads=1)
    assert describe_workers(cpu) == "2 CPU workers x 1 thread"
    assert describe_workers(gpu) == "4 GPU workers"
    ckpt = tmp_path / "checkpoint.pt"
    assert ddp_banner("training", cpu, 64, ckpt, 0, 3) == "training with DDP on 2 CPU workers x 1 thread (gloo), " \
                                                          "global batch 64"
    resumed = ddp_banner("training the supernet", gpu, 256, ckpt, 1, 3).splitlines()
    assert resumed == ["training the supernet with DDP on 4 GPU workers (nccl), global batch 256",
                       f"resuming from {ckpt} after epoch 1/3"]
    assert ddp_banner("training", cpu, 64, ckpt, 3, 3).splitlines()[1] == f"{ckpt}: all 3 epochs already trained"
