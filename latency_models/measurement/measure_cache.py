"""A cache of latency measurements shared by every process of a search.

One SQLite file in WAL mode with a busy timeout, so parallel workers (Ray tasks, several search
processes) can read and write at once. Entries are keyed by a dict (architecture id or caller key,
target name and fingerprint, input size, batch, backend, software versions, CPU/GPU model),
hashed to a short hex digest; the dict itself is stored next to the record for inspection.
A corrupted or unreadable cache file is ignored with one warning: measuring again is always correct.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from search_space.errors import first_line
from latency_models.paths import cache_dir

FILENAME = "measurements.sqlite"
_SCHEMA = ("CREATE TABLE IF NOT EXISTS measurements (key TEXT PRIMARY KEY, key_json TEXT NOT NULL, "
           "record TEXT NOT NULL, created REAL NOT NULL)")


class MeasurementCacheWarning(UserWarning):
    """The cache file is unusable; measurements run uncached."""


def cache_key(fields: Mapping[str, Any]) -> str:
    """A stable digest of the key fields (order-independent)."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class MeasurementCache:
    """``get(fields) -> dict | None`` and ``put(fields, record)`` over one SQLite file."""

    def __init__(self, path: str | Path | None = None, timeout_s: float = 30.0) -> None:
        self.path = Path(path) if path is not None else cache_dir("measurements") / FILENAME
        self.timeout_s = timeout_s
        self._broken: str | None = None

    def _connect(self) -> sqlite3.Connection | None:
        if self._broken is not None:
            return None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(_SCHEMA)
            return conn
        except (sqlite3.DatabaseError, OSError) as exc:
            self._disable(exc)
            return None

    def _disable(self, exc: Exception) -> None:
        self._broken = first_line(exc)
        warnings.warn(f"measurement cache {self.path} is unusable ({self._broken}); measuring without it "
                      "(delete the file to start a fresh cache)", MeasurementCacheWarning, stacklevel=3)

    @property
    def usable(self) -> bool:
        return self._broken is None

    def get(self, fields: Mapping[str, Any]) -> dict[str, Any] | None:
        """The stored record for ``fields``, or ``None``."""
        conn = self._connect()
        if conn is None:
            return None
        try:
            row = conn.execute("SELECT record FROM measurements WHERE key = ?", (cache_key(fields),)).fetchone()
            return json.loads(row[0]) if row else None
        except (sqlite3.DatabaseError, ValueError) as exc:
            self._disable(exc)
            return None
        finally:
            conn.close()

    def put(self, fields: Mapping[str, Any], record: Mapping[str, Any]) -> None:
        """Store ``record`` (JSON-serialisable) under ``fields``; replaces an older entry."""
        conn = self._connect()
        if conn is None:
            return
        try:
            conn.execute("INSERT OR REPLACE INTO measurements (key, key_json, record, created) VALUES (?, ?, ?, ?)",
                         (cache_key(fields), json.dumps(fields, sort_keys=True, default=str),
                          json.dumps(dict(record), default=str), time.time()))
        except sqlite3.DatabaseError as exc:
            self._disable(exc)
        finally:
            conn.close()

    def setdefault(self, fields: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
        """Store ``record`` unless an entry exists; return the stored one (first writer wins)."""
        conn = self._connect()
        if conn is None:
            return dict(record)
        try:
            key = cache_key(fields)
            conn.execute("INSERT OR IGNORE INTO measurements (key, key_json, record, created) VALUES (?, ?, ?, ?)",
                         (key, json.dumps(fields, sort_keys=True, default=str),
                          json.dumps(dict(record), default=str), time.time()))
            row = conn.execute("SELECT record FROM measurements WHERE key = ?", (key,)).fetchone()
            return json.loads(row[0]) if row else dict(record)
        except (sqlite3.DatabaseError, ValueError) as exc:
            self._disable(exc)
            return dict(record)
        finally:
            conn.close()

    def __len__(self) -> int:
        conn = self._connect()
        if conn is None:
            return 0
        try:
            return int(conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            self._disable(exc)
            return 0
        finally:
            conn.close()

    def clear(self) -> None:
        conn = self._connect()
        if conn is None:
            return
        try:
            conn.execute("DELETE FROM measurements")
        finally:
            conn.close()
