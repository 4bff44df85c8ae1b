"""Optuna storages from URLs, study loading with clear errors, and recovery of trials left RUNNING.

Storage URLs:

* ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` - the default (one file); the
  directory is created when a search starts.
* ``journal:///relative/study.log`` or ``journal:////absolute/study.log`` - Optuna's JournalStorage
  on a file (safe for several writer processes on one machine or a shared file system; SQLite is
  not). The slashes follow SQLAlchemy's SQLite convention: three, then a path relative to the
  working directory; four, an absolute path (``journal:///tmp/x.log`` is ``./tmp/x.log``).
* ``postgresql://...``, ``mysql+pymysql://...`` - any SQLAlchemy URL Optuna's RDBStorage accepts; the
  server is probed first so an unreachable one fails in seconds with one line.
* a bare path: ``*.log`` / ``*.journal`` is a journal file, anything else a SQLite file.

Ownership: every trial the driver asks for records its owner (``host:pid:start-time``) as a user
attr. A RUNNING trial whose owner is a dead process on this host (or, on another host, older than
``stale_after_s``) was left by a killed driver; :func:`recover_stale_trials` fails it and returns
its parameters so the driver re-runs it. Live drivers never fail each other's trials.

Writes: a search's SQLite file runs in WAL mode with ``synchronous=NORMAL`` (:func:`open_storage`), and
a finished trial's user attrs and constraints go in one transaction (:func:`write_trial_attrs`), so
telling a trial costs two commits instead of ~30 fsyncs (``benchmarks/search_overhead.py``).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from experiments.trial_record import FAIL_REASON as FAIL_REASON_ATTR
from experiments.trial_record import OWNER as OWNER_ATTR
from experiments.trial_record import REQUEUED as REQUEUED_ATTR
from search_space.errors import ShufflenasError

if TYPE_CHECKING:
    import optuna

__all__ = ["FAIL_REASON_ATTR", "OWNER_ATTR", "REQUEUED_ATTR", "StorageError", "StorageSpec", "check_writer_free", "checkpoint",
           "load_study", "open_storage", "owner_alive", "owner_token", "parse_storage_url", "recover_stale_trials",
           "study_names", "write_trial_attrs", "writer_lock"]


#: WAL + ``synchronous=NORMAL`` on a search's SQLite file and one transaction per told trial (see
#: :func:`_sqlite_pragmas`). Off only to measure what they save (``search_overhead.py --compare``).
FAST_WRITES = True


class StorageError(ShufflenasError):
    """A storage URL is malformed or unreachable, or a study is missing."""


@dataclass(frozen=True)
class StorageSpec:
    """A parsed storage URL: ``kind`` is sqlite, journal or rdb; ``path`` for file-based kinds."""

    url: str
    kind: str
    path: Path | None = None


def parse_storage_url(url: str) -> StorageSpec:
    url = url.strip()
    if not url:
        raise StorageError("storage URL is empty")
    if "://" not in url:
        path = Path(url)
        kind = "journal" if path.suffix in (".log", ".journal") else "sqlite"
        return StorageSpec(url=f"{kind}:///{path}", kind=kind, path=path)
    scheme, rest = url.split("://", 1)
    if scheme == "sqlite":
        if not rest.startswith("/"):
            raise StorageError(f"bad SQLite URL {url!r}: use sqlite:///relative.db or sqlite:////absolute.db")
        if rest in ("/", "/:memory:"):
            raise StorageError("an in-memory SQLite storage cannot be resumed or reported; give a file path")
        return StorageSpec(url=url, kind="sqlite", path=Path(rest[1:]))
    if scheme == "journal":
        if not rest.startswith("/") or rest == "/":
            raise StorageError(f"bad journal URL {url!r}: use journal:///relative.log or journal:////absolute.log")
        return StorageSpec(url=url, kind="journal", path=Path(rest[1:]))
    parts = urlsplit(url)
    if not parts.scheme or not (parts.hostname or parts.path):
        raise StorageError(f"cannot parse storage URL {url!r}")
    return StorageSpec(url=url, kind="rdb")


_DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433}


def _probe_server(url: str, timeout: float = 3.0) -> None:
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return  # unix socket or driver-specific form: let the driver report
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.split("+")[0])
    except ValueError:
        raise StorageError(f"bad port in storage URL {_redact(url)}") from None
    if port is None:
        return
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise StorageError(f"cannot reach storage {_redact(url)}: {reason} ({host}:{port})") from None


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def open_storage(url: str, *, create: bool = True) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``.

    ``create=False`` (reports, exports) never creates a file: a missing SQLite or journal file is an
    error naming it.
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    spec = parse_storage_url(url)
    if spec.kind in ("sqlite", "journal"):
        assert spec.path is not None
        if not create and not spec.path.is_file():
            raise StorageError(f"no study storage at {spec.path} ({spec.url})")
        if create:
            try:
                spec.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create the directory for {spec.path}: {exc.strerror}") from None
        if spec.path.exists() and spec.path.is_dir():
            raise StorageError(f"storage path {spec.path} is a directory")
    try:
        if spec.kind == "journal":
            return JournalStorage(JournalFileBackend(str(spec.path)))
        if spec.kind == "sqlite":
            storage = optuna.storages.RDBStorage(spec.url, engine_kwargs={"connect_args": {"timeout": 60}})
            if create and FAST_WRITES:
                _write_ahead(storage)
            return storage
        _probe_server(spec.url)
        return optuna.storages.RDBStorage(spec.url)
    except ModuleNotFoundError as exc:
        raise StorageError(f"storage {_redact(url)} needs the Python package {exc.name!r} (pip install it)") from None
    except StorageError:
        raise
    except Exception as exc:  # sqlalchemy / driver errors: one line, no traceback
        text = " ".join(str(exc).split())[:300]
        raise StorageError(f"cannot open storage {_redact(url)}: {text}") from None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL journal, ``synchronous=NORMAL``: a commit appends to the WAL without an fsync.

    Durability: a committed trial survives the process being killed (``kill -9``, OOM, Ctrl-C) - the
    WAL is in the OS's page cache and the next open replays it; only a power loss or an OS crash may
    lose the last commits (never corrupt the file). ``synchronous=FULL`` (the default) would fsync
    every commit: ~10 ms each on this VM, ~55 commits per trial. On a file system without shared
    memory (some network mounts) WAL cannot be set and SQLite keeps its rollback journal.
    """
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    except Exception:  # noqa: BLE001 - a file system without WAL: the slower default stays
        pass
    finally:
        cursor.close()


def _write_ahead(storage: optuna.storages.RDBStorage) -> None:
    """Every connection of a search's SQLite storage gets :func:`_sqlite_pragmas` (the ones the
    storage opened while creating its tables are closed, so none is left without them)."""
    from sqlalchemy import event

    event.listen(storage.engine, "connect", _sqlite_pragmas)
    storage.engine.dispose()


def checkpoint(url: str) -> None:
    """Fold a SQLite storage's WAL back into the file (best effort), so the ``.db`` alone holds every
    trial again: a copy of it is complete. Called when the search lets go of the writer lock; after a
    kill the WAL stays beside the file and the next open replays it."""
    import sqlite3

    spec = parse_storage_url(url)
    if spec.kind != "sqlite" or spec.path is None or not spec.path.with_name(spec.path.name + "-wal").exists():
        return
    try:
        with contextlib.closing(sqlite3.connect(str(spec.path), timeout=5)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error:
        pass  # a reader holds it: the WAL stays, which SQLite reads as part of the file


def write_trial_attrs(study: optuna.Study, trial: optuna.trial.Trial, user_attrs: Mapping[str, Any],
                      constraints: Mapping[str, float] | None = None) -> None:
    """A RUNNING trial's user attrs and constraints, in one transaction on an RDB storage.

    ``trial.set_user_attr`` commits each attr on its own (a finished trial stores ~30); here they go
    in one session, so they land together or not at all. The stored rows are the ones
    ``set_user_attr`` / ``set_constraint`` write (Optuna's own upsert, its ``constraints:<key>`` system
    attrs), so nothing that reads a study can tell. Other storages (journal) take the attrs one by one.
    """
    constraints = dict(constraints or {})
    for key, value in constraints.items():  # Trial.set_constraint's checks
        if not isinstance(value, (int, float)) or math.isnan(float(value)):
            raise ValueError(f"constraint {key!r} must be a number, not {value!r}")
    backend = _rdb_backend(study._storage)
    keys = _constraint_keys(constraints)
    if backend is None or keys is None or not FAST_WRITES:
        for key, value in user_attrs.items():
            trial.set_user_attr(key, value)
        for key, value in constraints.items():
            trial.set_constraint(key, value)
        return
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    system = {keys[k]: float(v) for k, v in constraints.items()}
    with _create_scoped_session(backend.scoped_session) as session:
        row = models.TrialModel.find_or_raise_by_id(trial._trial_id, session)
        backend.check_trial_is_updatable(trial._trial_id, row.state)  # a finished trial: Optuna's error
        _upsert(backend, session, models.TrialUserAttributeModel, trial._trial_id, user_attrs)
        _upsert(backend, session, models.TrialSystemAttributeModel, trial._trial_id, system)
    cached = getattr(trial, "_cached_frozen_trial", None)  # what trial.user_attrs returns
    if cached is not None:
        cached.user_attrs.update(user_attrs)
        cached.system_attrs.update(system)


def _upsert(backend: Any, session: Any, model: Any, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """Insert or replace ``attrs`` (key -> JSON value) of one trial: one statement on SQLite and
    PostgreSQL (the upsert Optuna issues per key), Optuna's own per-key write elsewhere."""
    import json
    import sqlite3

    if not attrs:
        return
    name = backend.engine.name
    if name == "postgresql" or (name == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0)):
        if name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(model).values([{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                                     for key, value in attrs.items()])
        session.execute(stmt.on_conflict_do_update(index_elements=[model.trial_id, model.key],
                                                   set_={"value_json": stmt.excluded.value_json}))
        return
    for key, value in attrs.items():
        backend._set_trial_attr_without_commit(session, model, trial_id, key, value)


def _rdb_backend(storage: Any) -> Any:
    """The RDBStorage under Optuna's cache wrapper, or None (journal, in-memory, gRPC)."""
    import optuna

    backend = getattr(storage, "_backend", storage)
    ok = isinstance(backend, optuna.storages.RDBStorage) and hasattr(backend, "_set_trial_attr_without_commit")
    return backend if ok else None


def _constraint_keys(constraints: Mapping[str, float]) -> dict[str, str] | None:
    """Constraint name -> the system-attr key ``Trial.set_constraint`` writes; None if this Optuna
    does not say (then the public calls are used)."""
    if not constraints:
        return {}
    try:
        from optuna.study._constrained_optimization import _CONSTRAINTS_KEY
    except ImportError:
        return None
    return {key: f"{_CONSTRAINTS_KEY}:{key}" for key in constraints}


def _busy_message(path: Path) -> str:
    return (f"another search is writing to {path}; SQLite takes one writer process at a time. To run "
            f"several searches on one study use journal:///{path.with_suffix('.log')} or a server database "
            "(postgresql://...)")


def check_writer_free(url: str) -> None:
    """Refuse at once when another search holds a SQLite storage's lock (creates nothing).

    A search checks this before its slower checks (loading the data set), so a second writer is
    told in a second, not after the first search may have finished; :func:`writer_lock` still
    takes the lock for real before anything is written.
    """
    spec = parse_storage_url(url)
    if spec.kind != "sqlite" or spec.path is None:
        return
    import fcntl

    lock_path = spec.path.with_name(spec.path.name + ".lock")
    try:
        handle = open(lock_path, "rb")  # noqa: SIM115 - only probed, never created here
    except OSError:
        return  # no lock file (or unreadable): nobody holds it, writer_lock decides
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise StorageError(_busy_message(spec.path)) from None
        fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def writer_lock(url: str) -> Iterator[None]:
    """Hold the single-writer lock of a SQLite storage (a no-op for journal and server storages).

    SQLite is not safe for several writer processes (schema creation races, a queued trial can be
    taken twice), so a second search on the same file is refused with a pointer to storages that
    are. The lock is ``flock`` on ``<file>.lock``: the kernel drops it when the process dies.
    """
    spec = parse_storage_url(url)
    if spec.kind != "sqlite" or spec.path is None:
        yield
        return
    import fcntl

    lock_path = spec.path.with_name(spec.path.name + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+")  # noqa: SIM115 - held for the whole search
    except OSError as exc:
        raise StorageError(f"cannot create the lock file {lock_path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise StorageError(_busy_message(spec.path)) from None
        try:
            yield
        finally:
            checkpoint(url)  # still the only writer: the .db holds every trial again
    finally:
        handle.close()


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return sorted(s.study_name for s in storage.get_all_studies())


def load_study(storage: optuna.storages.BaseStorage | str, name: str) -> optuna.Study:
    """Load an existing study; an unknown name lists the studies the storage holds."""
    import optuna

    if isinstance(storage, str):
        storage = open_storage(storage, create=False)
    names = study_names(storage)
    if name not in names:
        known = ", ".join(names) if names else "none"
        raise StorageError(f"no study {name!r} in this storage (studies: {known})")
    return optuna.load_study(study_name=name, storage=storage)


# -- ownership of RUNNING trials --------------------------------------------------------------------
def _process_start(pid: int) -> str:
    """The kernel's start time of ``pid`` (tells a reused pid from the original), or '' if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def owner_token(pid: int | None = None) -> str:
    """``host:pid:start`` of this (or the given) process, stored on every trial it runs."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_process_start(pid)}"


def owner_alive(token: str | None, started: float | None, stale_after_s: float, now: float | None = None) -> bool:
    """Whether the driver that owns a RUNNING trial may still be working on it."""
    if not token:
        # no owner recorded: a driver that died between ask and recording it, or a foreign tool
        return started is not None and (now or time.time()) - started < stale_after_s
    host, _, rest = token.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname():
        return started is not None and (now or time.time()) - started < stale_after_s
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    return not start or _process_start(pid) in ("", start)


def recover_stale_trials(study: optuna.Study, stale_after_s: float) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Fail this study's RUNNING trials whose owner is gone; return their params and user attrs (to re-enqueue).

    Optuna's own stale-trial recovery runs only inside ``study.optimize``; an ask/tell driver does it
    here, on start.
    """
    from optuna.trial import TrialState

    recovered = []
    storage = study._storage
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = trial.datetime_start.timestamp() if trial.datetime_start else None
        token = trial.user_attrs.get(OWNER_ATTR)
        if owner_alive(token, started, stale_after_s):
            continue
        try:
            storage.set_trial_user_attr(trial._trial_id, FAIL_REASON_ATTR,
                                        f"interrupted: owner {token or 'unknown'} is gone; re-queued")
            storage.set_trial_user_attr(trial._trial_id, REQUEUED_ATTR, True)
            study.tell(trial.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # UpdateFinishedTrialError & co: another driver recovered it first
            continue
        params = dict(trial.params) or dict(trial.system_attrs.get("fixed_params") or {})
        if params:
            recovered.append((params, dict(trial.user_attrs)))
    return recovered
