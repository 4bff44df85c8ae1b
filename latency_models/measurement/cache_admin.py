"""What lies under ``$SHUFFLENAS_HOME``, and pruning it: `shufflenas cache info` / `cache prune`.

The state directory holds one folder per kind: ``onnx`` (exports, about 11-12 MB each at
224x224 and re-made on demand), ``measurements`` (the SQLite measurement cache), ``calibrations``
(guideline fits, lookup tables, predictors: hours of measuring) and ``benchmarks`` (results the
benchmark scripts reuse). Pruning removes whole *units*, oldest first: one file, or for the
measurement cache the database with its ``-wal``/``-shm`` companions. Only the kinds in
:data:`PRUNED_BY_DEFAULT` are pruned unless the caller names others: a calibration or the
measurement cache is never deleted by accident.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from latency_models.paths import data_home
from search_space.errors import ShufflenasError

KINDS = ("onnx", "measurements", "calibrations", "benchmarks")
PRUNED_BY_DEFAULT = ("onnx",)
_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)


class CacheAdminError(ShufflenasError):
    """A bad size, age or kind for `shufflenas cache`."""


@dataclasses.dataclass(frozen=True)
class Unit:
    """Files deleted together (one export; the measurement database and its WAL files)."""

    kind: str
    paths: tuple[Path, ...]
    bytes: int
    mtime: float

    @property
    def name(self) -> str:
        return self.paths[0].name

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.paths[0]), "files": len(self.paths), "bytes": self.bytes,
                "modified": iso(self.mtime)}


@dataclasses.dataclass(frozen=True)
class KindInfo:
    """Totals of one kind: file count, bytes, oldest and newest modification time."""

    kind: str
    path: Path
    files: int
    bytes: int
    oldest: float | None
    newest: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path), "files": self.files, "bytes": self.bytes,
                "oldest": iso(self.oldest), "newest": iso(self.newest)}


@dataclasses.dataclass(frozen=True)
class PruneResult:
    """What a prune removed (or, with ``dry_run``, would remove)."""

    units: tuple[Unit, ...]
    kinds: tuple[str, ...]
    dry_run: bool
    failed: tuple[str, ...] = ()

    @property
    def freed_bytes(self) -> int:
        return sum(u.bytes for u in self.units)

    @property
    def files(self) -> int:
        return sum(len(u.paths) for u in self.units)

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "kinds": list(self.kinds), "freed_bytes": self.freed_bytes,
                "files": self.files, "deleted": [u.to_dict() for u in self.units], "failed": list(self.failed)}


def iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return _dt.datetime.fromtimestamp(stamp, _dt.timezone.utc).isoformat(timespec="seconds")


def parse_size(text: str) -> int:
    """Bytes in ``200M``, ``1G``, ``1.5g``, ``512k``, ``10MB``, ``4096`` (binary units)."""
    match = _SIZE.fullmatch(str(text))
    if not match:
        raise CacheAdminError(f"bad size {text!r}: use a number with an optional unit K, M, G or T (e.g. 200M, 1G)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def format_size(count: float) -> str:
    for unit, scale in (("G", 1024 ** 3), ("M", 1024 ** 2), ("k", 1024)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}B"
    return f"{int(count)} B"


def _kinds_present(home: Path) -> list[str]:
    extra = sorted(p.name for p in home.iterdir() if p.is_dir() and p.name not in KINDS) if home.is_dir() else []
    return [*KINDS, *extra]


def units(kind: str, home: Path | None = None) -> list[Unit]:
    """Every unit of ``kind``, oldest first."""
    folder = (home or data_home()) / kind
    if not folder.is_dir():
        return []
    groups: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        name = str(path)
        for suffix in ("-wal", "-shm", "-journal"):  # SQLite companions go with their database
            if name.endswith(suffix) and Path(name[: -len(suffix)]).is_file():
                name = name[: -len(suffix)]
                break
        groups.setdefault(name, []).append(path)
    found = []
    for name, paths in groups.items():
        stats = [p.stat() for p in paths]
        ordered = tuple(sorted(paths, key=lambda p: str(p) != name))  # the main file first
        found.append(Unit(kind, ordered, sum(s.st_size for s in stats), max(s.st_mtime for s in stats)))
    return sorted(found, key=lambda u: (u.mtime, u.name))


def info(home: Path | None = None) -> list[KindInfo]:
    """Totals per kind (the known kinds always, any other folder too)."""
    home = home or data_home()
    out = []
    for kind in _kinds_present(home):
        found = units(kind, home)
        out.append(KindInfo(kind, home / kind, sum(len(u.paths) for u in found), sum(u.bytes for u in found),
                            min((u.mtime for u in found), default=None), max((u.mtime for u in found), default=None)))
    return out


def check_kinds(kinds: Iterable[str], home: Path | None = None) -> tuple[str, ...]:
    """``kinds`` checked against what exists (default :data:`PRUNED_BY_DEFAULT`)."""
    chosen = tuple(dict.fromkeys(kinds)) or PRUNED_BY_DEFAULT
    known = _kinds_present(home or data_home())
    unknown = [k for k in chosen if k not in known]
    if unknown:
        raise CacheAdminError(f"unknown cache kind(s) {', '.join(map(repr, unknown))} (known: {', '.join(known)})")
    return chosen


def prune(*, older_than_days: float | None = None, max_bytes: int | None = None, kinds: Sequence[str] = (),
          dry_run: bool = False, now: float | None = None, home: Path | None = None) -> PruneResult:
    """Delete units of ``kinds`` older than ``older_than_days``, then the oldest until the kinds
    together hold at most ``max_bytes``. At least one of the two limits is required."""
    if older_than_days is None and max_bytes is None:
        raise CacheAdminError("say what to prune: --older-than DAYS and/or --max-size SIZE")
    if older_than_days is not None and not (math.isfinite(older_than_days) and older_than_days >= 0):
        raise CacheAdminError(f"--older-than must be a finite number of days >= 0, got {older_than_days}")
    if max_bytes is not None and max_bytes < 0:
        raise CacheAdminError(f"--max-size must be >= 0, got {max_bytes}")
    home = home or data_home()
    chosen = check_kinds(kinds, home)
    candidates = sorted((u for kind in chosen for u in units(kind, home)), key=lambda u: (u.mtime, u.name))
    doomed: list[Unit] = []
    if older_than_days is not None:
        cutoff = (time.time() if now is None else now) - older_than_days * 86400
        doomed = [u for u in candidates if u.mtime < cutoff]
    if max_bytes is not None:
        remaining = sum(u.bytes for u in candidates) - sum(u.bytes for u in doomed)
        for unit in candidates:
            if remaining <= max_bytes:
                break
            if unit not in doomed:
                doomed.append(unit)
                remaining -= unit.bytes
    doomed.sort(key=lambda u: (u.mtime, u.name))
    failed: list[str] = []
    if not dry_run:
        done = []
        for unit in doomed:
            try:
                for path in unit.paths:
                    path.unlink(missing_ok=True)
                done.append(unit)
            except OSError as exc:
                failed.append(f"{unit.paths[0]}: {exc.strerror or exc}")
        doomed = done
    return PruneResult(tuple(doomed), chosen, dry_run, tuple(failed))
