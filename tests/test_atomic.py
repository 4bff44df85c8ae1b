"""Atomic report writes: a frame or a figure lands whole, and a writer that fails leaves the old file."""

from __future__ import annotations

import pandas as pd
import pytest

from latency_models.atomic import TEMP_SUFFIX, atomic_write_csv, atomic_write_figure, atomic_write_frame


def _no_temporaries(folder):
    return not list(folder.glob(f".*{TEMP_SUFFIX}"))


def test_frame_round_trips_as_csv_and_parquet(tmp_path):
    frame = pd.DataFrame({"arch": ["a", "b"], "ms": [1.5, 2.25]})
    csv_path = atomic_write_frame(tmp_path / "sub" / "t.csv", frame, index=False)
    parquet_path = atomic_write_frame(tmp_path / "sub" / "t.parquet", frame, index=False)
    pd.testing.assert_frame_equal(pd.read_csv(csv_path), frame)
    pd.testing.assert_frame_equal(pd.read_parquet(parquet_path), frame)
    assert _no_temporaries(tmp_path / "sub")


def test_figure_is_a_png_and_no_temporary_stays(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1.5))
    fig.add_subplot().plot([0, 1], [1, 0])
    path = atomic_write_figure(tmp_path / "f.png", fig, dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _no_temporaries(tmp_path)


class _Broken:
    def savefig(self, *args, **kwargs):
        raise RuntimeError("renderer failed")

    def to_csv(self, *args, **kwargs):
        raise RuntimeError("bad frame")


def test_a_failed_write_keeps_the_old_file(tmp_path):
    for name in ("f.png", "t.csv"):
        (tmp_path / name).write_bytes(b"old")
    with pytest.raises(RuntimeError):
        atomic_write_figure(tmp_path / "f.png", _Broken())
    with pytest.raises(RuntimeError):
        atomic_write_frame(tmp_path / "t.csv", _Broken())
    assert (tmp_path / "f.png").read_bytes() == b"old" and (tmp_path / "t.csv").read_bytes() == b"old"
    assert _no_temporaries(tmp_path)


def test_csv_rows_as_sequences_or_mappings(tmp_path):
    path = atomic_write_csv(tmp_path / "t.csv", ("a", "b"), [[1, "x,y"], {"b": 2}])
    assert path.read_text() == 'a,b\n1,"x,y"\n,2\n'
    assert _no_temporaries(tmp_path)
