"""What the search stores on a trial, as one typed value: the only home of the user-attr keys.

Optuna keeps a trial's record as flat user attrs. Their names are a stored format (studies made
by earlier versions must resume and report), so they are spelled here once and nowhere else:
the driver builds a :class:`TrialRecord` and writes ``to_user_attrs()``, the report reads
``from_user_attrs()``. Keys this version does not know are kept in ``extra`` and written back
unchanged, so a round trip never loses what another version stored.

Per-target latency keys are ``latency_<field>:<target>`` (``latency_ms:local-cpu``,
``latency_source:paper-arm-sd810``); see :class:`LatencyRecord`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

from search_space import Architecture
from search_space.errors import ShufflenasError

# -- the keys (a stored format: never rename one) -----------------------------------------------------
OWNER = "owner"                      # host:pid:start of the driver that asked the trial
PROXY_KEY = "proxy_key"              # the proxy-training setup (equal keys: results can be reused)
ARCH = "arch"                        # compact architecture string
ARCH_ID = "arch_id"
PRESET = "preset"                    # paper preset name, when the architecture is one
FAIL_REASON = "fail_reason"
FAILURE_KIND = "failure_kind"        # "candidate" or "environment" (experiments.failures)
REQUEUED = "requeued"                # failed by the driver (stopped, stale), parameters queued again
REQUEUED_FROM = "requeued_from"      # trial number this queued trial repeats (environment failure, stop)
REQUEUED_FROM_STALE = "requeued_from_stale"  # queued again after a dead driver's trial was recovered
REUSED_FROM = "reused_from"          # trial number whose proxy result this trial copies
REUSED_FROM_STUDY = "reused_from_study"
ATTEMPTS = "attempts"
WORKER_PID = "worker_pid"
ACCURACY = "accuracy"
CURVE = "curve"                      # validation accuracy per epoch
LOSS_CURVE = "loss_curve"            # mean training loss per epoch
#: Analytic costs of the architecture (latency_models.costs.analytic.summary), at the deploy input.
PARAMS, FLOPS, MAC, KERNELS, ELEMENTWISE = COST_KEYS = ("params", "flops", "mac", "kernels", "elementwise")
#: Proxy-result fields as stored (``ProxyResult`` field -> user attr); the rest keep their names.
PROXY_RENAMES = {"val_curve": CURVE, "status": "proxy_status", "reason": "proxy_reason"}
PROXY_KEYS = (ACCURACY, "train_time_s", "images_per_s", CURVE, "loss_curve", "epochs_run", "proxy_status",
              "proxy_reason")
LATENCY_FIELDS = ("ms", "source", "p90_ms", "cv", "runs", "cached", "stable", "estimate_ms", "estimate_model")
MEASURED = "measured"                # latency_source of a measurement (else "estimate:<model>")
#: Where ``accuracy`` came from: the proxy training, or a weight-sharing supernet (then with its
#: checksum and training method, so scores of two supernets are never mixed). Absent on trials of
#: earlier versions: they were all proxy-trained.
ACCURACY_SOURCE = "accuracy_source"
SUPERNET_CHECKSUM = "supernet_checksum"
SUPERNET_METHOD = "supernet_method"
ACCURACY_SOURCES = ("proxy", "supernet")
#: Successive halving (``[fidelity]``): ``rung:<epochs>`` holds the validation accuracy after that many
#: epochs, ``rung`` the highest rung (in epochs) the trial reached.
RUNG = "rung"
RUNG_PREFIX = "rung:"


def rung_key(epochs: int) -> str:
    """``rung:<epochs>``: a trial's validation accuracy at that rung."""
    return f"{RUNG_PREFIX}{int(epochs)}"


def parse_rung_key(key: str) -> int | None:
    """The epochs of a ``rung:<epochs>`` key, or None."""
    if not key.startswith(RUNG_PREFIX) or not key[len(RUNG_PREFIX):].isdigit():
        return None
    return int(key[len(RUNG_PREFIX):])


def latency_key(target: str, field: str = "ms") -> str:
    """``latency_ms:<target>`` and its siblings (``field`` from :data:`LATENCY_FIELDS`)."""
    return f"latency_{field}:{target}"


def parse_latency_key(key: str) -> tuple[str, str] | None:
    """(field, target) of a per-target latency key, or None."""
    head, sep, target = key.partition(":")
    if not sep or not head.startswith("latency_") or head[len("latency_"):] not in LATENCY_FIELDS or not target:
        return None
    return head[len("latency_"):], target


def latency_targets(keys: Iterable[str]) -> list[str]:
    """Targets that have a latency in ``keys`` (user attrs or report columns), in order."""
    out = []
    for key in keys:
        parsed = parse_latency_key(str(key))
        if parsed and parsed[0] == "ms" and parsed[1] not in out:
            out.append(parsed[1])
    return out


def plain(value: Any) -> Any:
    """A JSON-storable version of a value (Optuna user attrs must serialise; NaN becomes None)."""
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)):
        try:
            return value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class LatencyRecord:
    """One target's latency: ``ms`` with its ``source`` (``measured`` or ``estimate:<model>``);
    measurement statistics, and the calibrated estimate recorded beside a measurement."""

    ms: float | None = None
    source: str | None = None
    p90_ms: float | None = None
    cv: float | None = None
    runs: int | None = None
    cached: bool | None = None
    stable: bool | None = None           # False: a disturbed run, kept on the trial but never cached
    estimate_ms: float | None = None
    estimate_model: str | None = None

    @classmethod
    def measured(cls, data: Mapping[str, Any], *, estimate: LatencyRecord | None = None) -> LatencyRecord:
        """From a measurement's ``to_dict()`` (median, p90, cv, runs, cached, stable)."""
        base = estimate or cls()
        return dataclasses.replace(base, ms=float(data["median_ms"]), source=MEASURED,
                                   **{f: plain(data[f]) for f in ("p90_ms", "cv", "runs", "cached", "stable")
                                      if f in data})

    @classmethod
    def estimated(cls, ms: float, model: str) -> LatencyRecord:
        return cls(ms=float(ms), source=f"estimate:{model}")


@dataclasses.dataclass(frozen=True)
class Scorer:
    """Who gives a trial its accuracy: the evaluator's identity, as the trial stores it.

    ``key`` is stored as ``proxy_key``: equal keys mean an accuracy can be reused. For the proxy it
    hashes the training setup; for a supernet its checksum, BN batches, validation size and data,
    so a score is never reused across supernets or between a supernet and the proxy.
    """

    source: str = "proxy"                 # one of ACCURACY_SOURCES
    key: str | None = None
    checksum: str | None = None           # the supernet file's checksum (source "supernet")
    method: str | None = None             # the supernet's training method ("spos", "sandwich")

    def describe(self) -> str:
        return f"supernet {self.checksum} ({self.method})" if self.source == "supernet" else "the proxy training"


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """Everything the search stores on one trial (see the module docstring)."""

    owner: str | None = None
    proxy_key: str | None = None
    accuracy_source: str | None = None    # None: a trial of an earlier version (proxy-trained)
    supernet_checksum: str | None = None
    supernet_method: str | None = None
    arch: str | None = None
    arch_id: str | None = None
    preset: str | None = None
    costs: Mapping[str, int] = dataclasses.field(default_factory=dict)
    latency: Mapping[str, LatencyRecord] = dataclasses.field(default_factory=dict)  # target -> record
    proxy: Mapping[str, Any] = dataclasses.field(default_factory=dict)   # PROXY_KEYS (and new result fields)
    attempts: int | None = None
    worker_pid: int | None = None
    reused_from: int | None = None
    reused_from_study: str | None = None
    requeued: bool = False
    requeued_from: int | None = None
    requeued_from_stale: bool = False
    fail_reason: str | None = None
    failure_kind: str | None = None
    rungs: Mapping[int, float] = dataclasses.field(default_factory=dict)  # epochs -> val accuracy at that rung
    rung: int | None = None               # the highest rung reached, in epochs
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)   # keys this version does not know

    # -- reading ------------------------------------------------------------------------------------
    @property
    def accuracy(self) -> Any:
        return self.proxy.get(ACCURACY)

    @property
    def source(self) -> str:
        """``proxy`` or ``supernet`` (trials of earlier versions were proxy-trained)."""
        return self.accuracy_source or "proxy"

    @property
    def scorer(self) -> Scorer:
        return Scorer(self.source, self.proxy_key, self.supernet_checksum, self.supernet_method)

    @property
    def failed(self) -> bool:
        return self.fail_reason is not None

    def metric(self, key: str) -> Any:
        """The value stored under a user-attr key (an objective's or a budget's ``key``)."""
        return self.to_user_attrs().get(key)

    def latency_ms(self, target: str) -> float | None:
        record = self.latency.get(target)
        return record.ms if record is not None else None

    # -- building (each returns a new record) -------------------------------------------------------
    def scored_by(self, scorer: Scorer) -> TrialRecord:
        """This trial's accuracy comes from ``scorer`` (its key, source and supernet identity)."""
        return dataclasses.replace(self, proxy_key=scorer.key, accuracy_source=scorer.source,
                                   supernet_checksum=scorer.checksum, supernet_method=scorer.method)

    def with_arch(self, arch: str, arch_id: str, preset: str | None, costs: Mapping[str, Any]) -> TrialRecord:
        return dataclasses.replace(self, arch=arch, arch_id=arch_id, preset=preset or self.preset,
                                   costs={k: int(v) for k, v in costs.items()})

    def with_latency(self, target: str, record: LatencyRecord) -> TrialRecord:
        return dataclasses.replace(self, latency={**self.latency, target: record})

    def with_result(self, result: Any, attempts: int | None, worker_pid: int | None) -> TrialRecord:
        """The evaluator's ProxyResult (accuracy, train time, images/s, curves) and who trained it."""
        data = result.to_dict() if hasattr(result, "to_dict") else dict(result or {})
        proxy = {PROXY_RENAMES.get(k, k): plain(v) for k, v in data.items() if k not in (ARCH, ARCH_ID)}
        return dataclasses.replace(self, proxy={**self.proxy, **proxy}, attempts=attempts, worker_pid=worker_pid)

    def at_rung(self, epochs: int, accuracy: float) -> TrialRecord:
        """This trial reached the rung of ``epochs`` with ``accuracy``."""
        return dataclasses.replace(self, rungs={**self.rungs, int(epochs): float(accuracy)},
                                   rung=max(int(epochs), self.rung or 0))

    def failing(self, reason: str, kind: str | None = None) -> TrialRecord:
        return dataclasses.replace(self, fail_reason=reason, failure_kind=kind or self.failure_kind)

    def reusing(self, source: TrialRecord, study: str, number: int, *, same_latency: bool) -> TrialRecord:
        """This trial with ``source``'s proxy result (and latency when measured the same way): never
        its bookkeeping (owner, preset, queue and reuse marks, failure, proxy key)."""
        return dataclasses.replace(
            self, costs={**source.costs, **self.costs}, proxy={**source.proxy, **self.proxy},
            attempts=self.attempts if self.attempts is not None else source.attempts,
            worker_pid=self.worker_pid if self.worker_pid is not None else source.worker_pid,
            latency={**source.latency, **self.latency} if same_latency else self.latency,
            extra={**source.extra, **self.extra}, reused_from=number, reused_from_study=study,
            rungs={**source.rungs, **self.rungs}, rung=self.rung if self.rung is not None else source.rung)

    # -- the stored form ----------------------------------------------------------------------------
    def to_user_attrs(self) -> dict[str, Any]:
        """The flat user attrs, JSON-storable; unset fields are left out (as earlier versions did)."""
        out: dict[str, Any] = {}

        def put(key: str, value: Any, keep_none: bool = False) -> None:
            if value is not None or keep_none:
                out[key] = plain(value)

        put(OWNER, self.owner)
        put(PROXY_KEY, self.proxy_key)
        put(ACCURACY_SOURCE, self.accuracy_source)
        put(SUPERNET_CHECKSUM, self.supernet_checksum)
        put(SUPERNET_METHOD, self.supernet_method)
        put(ARCH, self.arch)
        put(ARCH_ID, self.arch_id)
        put(PRESET, self.preset)
        for key, value in self.costs.items():
            put(key, value)
        if self.requeued_from_stale:
            out[REQUEUED_FROM_STALE] = True
        put(REQUEUED_FROM, self.requeued_from)
        for target, record in self.latency.items():
            for field in LATENCY_FIELDS:
                put(latency_key(target, "ms" if field == "ms" else field), getattr(record, field))
        for key, value in self.proxy.items():
            put(key, value, keep_none=True)  # proxy_reason: None is stored
        put(ATTEMPTS, self.attempts)
        if self.attempts is not None:
            put(WORKER_PID, self.worker_pid, keep_none=True)
        else:
            put(WORKER_PID, self.worker_pid)
        put(REUSED_FROM, self.reused_from)
        put(REUSED_FROM_STUDY, self.reused_from_study)
        for epochs, accuracy in sorted(self.rungs.items()):
            put(rung_key(epochs), accuracy)
        put(RUNG, self.rung)
        for key, value in self.extra.items():
            out.setdefault(key, plain(value))
        put(FAIL_REASON, self.fail_reason)
        put(FAILURE_KIND, self.failure_kind)
        if self.requeued:
            out[REQUEUED] = True
        return out

    @classmethod
    def from_user_attrs(cls, attrs: Mapping[str, Any]) -> TrialRecord:
        """Read the attrs of any version so far; unknown keys go to ``extra``."""
        values: dict[str, Any] = {}
        costs: dict[str, Any] = {}
        proxy: dict[str, Any] = {}
        latency: dict[str, dict[str, Any]] = {}
        rungs: dict[int, float] = {}
        extra: dict[str, Any] = {}
        simple = {OWNER: "owner", PROXY_KEY: "proxy_key", ACCURACY_SOURCE: "accuracy_source",
                  SUPERNET_CHECKSUM: "supernet_checksum", SUPERNET_METHOD: "supernet_method", ARCH: "arch", ARCH_ID: "arch_id", PRESET: "preset",
                  ATTEMPTS: "attempts", WORKER_PID: "worker_pid", REUSED_FROM: "reused_from",
                  REUSED_FROM_STUDY: "reused_from_study", REQUEUED_FROM: "requeued_from",
                  FAIL_REASON: "fail_reason", FAILURE_KIND: "failure_kind"}
        for key, value in attrs.items():
            parsed = parse_latency_key(key)
            if key in simple:
                values[simple[key]] = value
            elif key in (REQUEUED, REQUEUED_FROM_STALE):
                values[key] = bool(value)
            elif key in COST_KEYS:
                costs[key] = value
            elif key in PROXY_KEYS:
                proxy[key] = value
            elif parsed is not None:
                latency.setdefault(parsed[1], {})[parsed[0]] = value
            elif key == RUNG:
                values["rung"] = value
            elif parse_rung_key(key) is not None:
                rungs[parse_rung_key(key)] = value
            else:
                extra[key] = value
        return cls(**values, costs=costs, proxy=proxy, extra=extra, rungs=rungs,
                   latency={t: LatencyRecord(**fields) for t, fields in latency.items()})

    def report_columns(self) -> dict[str, Any]:
        """The attrs as report columns: everything but the owner token (a host and pid, not a result)."""
        return {k: v for k, v in self.to_user_attrs().items() if k != OWNER}


# -- finalists: re-scored at a higher fidelity after the search (study-level attrs) -----------------
#: A finished trial's user attrs cannot change in Optuna, a study's can: each finalist's re-scored
#: result is the study attr ``finalist:<trial number>`` (a :class:`FinalistRecord` as a dict).
FINALIST_PREFIX = "finalist:"
#: ``accuracy_source`` of a finalist's re-scored accuracy (stand-alone training with a recipe).
TRAINED = "trained"
#: Report columns of a finalist (trials.csv, pareto.csv): empty on the trials that are none.
FINALIST = "finalist"                        # True on a finalist (its trained accuracy is known)
FINALIST_FOR = "finalist_for"                # the latency targets whose front picked it
TRAINED_ACCURACY = "trained_accuracy"        # validation top-1 of the stand-alone training
TRAINED_ACCURACY_SOURCE = "trained_accuracy_source"  # "trained (30 epochs, fashion-mnist 28 px)"


def finalist_key(number: int) -> str:
    return f"{FINALIST_PREFIX}{int(number)}"


@dataclasses.dataclass(frozen=True)
class FinalistRecord:
    """One finalist's re-scored accuracy, as the study stores it (``finalist:<trial>``).

    ``setup_key`` hashes the data and the recipe: a finalist recorded under the same key is not
    trained again. ``proxy_accuracy``/``proxy_source`` keep what the search scored it with, so the
    report can show both accuracies and where each came from.
    """

    trial: int
    arch: str
    arch_id: str
    picked_for: tuple[str, ...]
    proxy_accuracy: float | None
    proxy_source: str
    accuracy: float                     # validation top-1 after the stand-alone training
    top5: float | None
    epochs: int
    dataset: str
    input_size: int
    limit: int | None
    setup_key: str
    recipe: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    recipe_file: str | None = None
    out: str | None = None
    seconds: float | None = None
    accuracy_source: str = TRAINED
    #: The ``[finalists] pick`` that chose it (records of earlier versions: "front", the only rule then).
    picked_by: str = "front"

    def describe(self) -> str:
        """Where the accuracy came from, in words: ``trained (1 epochs, digits 16 px, 400 images)``."""
        limit = f", {self.limit} images" if self.limit else ""
        return f"{self.accuracy_source} ({self.epochs} epochs, {self.dataset} {self.input_size} px{limit})"

    def to_dict(self) -> dict[str, Any]:
        data = plain(dataclasses.asdict(self))
        data["picked_for"] = list(self.picked_for)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FinalistRecord | None:
        """None for a value this version cannot read (it is left alone, never rewritten)."""
        if not isinstance(data, Mapping):
            return None
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            record = cls(**{k: v for k, v in data.items() if k in names})
            return dataclasses.replace(record, picked_for=tuple(record.picked_for or ()))
        except TypeError:
            return None


def finalist_records(study_attrs: Mapping[str, Any]) -> dict[int, FinalistRecord]:
    """Trial number -> finalist record, from a study's user attrs (unreadable ones are skipped)."""
    out: dict[int, FinalistRecord] = {}
    for key, value in study_attrs.items():
        if not key.startswith(FINALIST_PREFIX) or not key[len(FINALIST_PREFIX):].isdigit():
            continue
        record = FinalistRecord.from_dict(value)
        if record is not None:
            out[int(key[len(FINALIST_PREFIX):])] = record
    return dict(sorted(out.items()))


def trial_architecture(trial: Any, study_name: str) -> Architecture:
    """The architecture a stored trial evaluated; a trial without one is one line naming it."""
    text = trial.user_attrs.get(ARCH)
    if not text:
        raise ShufflenasError(f"trial {trial.number} of study {study_name!r} has no architecture recorded "
                              f"(state {trial.state.name})")
    return Architecture.from_string(text)


def counts_toward_target(trial: Any) -> bool:
    """Whether a finished trial is one of the ``trials`` to reach: COMPLETE, or FAILED for a reason of
    its own (a re-queued trial or an environment failure is run again and does not count)."""
    from optuna.trial import TrialState

    if trial.state == TrialState.COMPLETE:
        return True
    return (trial.state == TrialState.FAIL and not trial.user_attrs.get(REQUEUED)
            and trial.user_attrs.get(FAILURE_KIND) != "environment")
