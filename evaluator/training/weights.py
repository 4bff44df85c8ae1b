"""Trained weights in and out: ``model.pt`` and ONNX with trained weights (``--init`` is in ``init_weights``).

A ``model.pt`` is a plain dictionary (``format``, ``version``, ``info``, ``state_dict``) of strings,
numbers, lists and tensors. Every file is read with ``torch.load(weights_only=True)``, which only
rebuilds tensors and plain containers, so a hostile file cannot run code when it is opened. Every
problem with a file (missing, truncated, foreign, another architecture) is one
:class:`WeightsError` line naming the file.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import numbers
import os
import pickle
import platform
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from latency_models.atomic import atomic_write
from search_space import PRESETS, Architecture, build_model
from search_space.errors import ArchitectureError, ShufflenasError

MODEL_FORMAT = "shufflenas-model"
MODEL_VERSION = 1


class WeightsError(ShufflenasError):
    """A weights file cannot be read, written or used with the requested architecture."""


@dataclass(frozen=True)
class ModelInfo:
    """What a trained model is, beyond its weights: enough to rebuild it and to feed it data.

    ``mean``/``std`` are the per-channel statistics the inputs were normalised with (on RGB in
    [0, 1]); normalisation stays outside the network, in model.pt and in the exported ONNX file.
    """

    arch: str
    num_classes: int
    input_size: int
    classes: tuple[str, ...] = ()
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    dataset: str = ""
    recipe: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:  # an Architecture, a preset name or a compact string; stored as the compact string
            arch = self.arch if isinstance(self.arch, Architecture) else \
                PRESETS.get(str(self.arch)) or Architecture.from_string(str(self.arch))
        except ArchitectureError as exc:
            raise WeightsError(f"model info: invalid architecture: {exc}") from None
        object.__setattr__(self, "arch", arch.to_string())
        for name, low in (("num_classes", 1), ("input_size", 8)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise WeightsError(f"model info: {name} must be an integer >= {low}, got {value!r}")
            object.__setattr__(self, name, int(value))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        object.__setattr__(self, "dataset", str(self.dataset or ""))
        if self.classes and len(self.classes) != self.num_classes:
            raise WeightsError(f"model info: {len(self.classes)} class names for {self.num_classes} classes")
        for name in ("mean", "std"):
            try:
                values = tuple(float(v) for v in getattr(self, name))
            except (TypeError, ValueError):
                raise WeightsError(f"model info: {name} must be 3 numbers, got {getattr(self, name)!r}") from None
            if len(values) != 3 or not all(math.isfinite(v) for v in values):
                raise WeightsError(f"model info: {name} must be 3 finite numbers, got {values}")
            object.__setattr__(self, name, values)
        if min(self.std) <= 0:
            raise WeightsError(f"model info: std must be > 0, got {self.std}")
        for name in ("recipe", "metrics", "versions"):
            if not isinstance(getattr(self, name), Mapping):
                raise WeightsError(f"model info: {name} must be a table, got {type(getattr(self, name)).__name__}")
            object.__setattr__(self, name, _plain(getattr(self, name), name))

    @property
    def architecture(self) -> Architecture:
        return Architecture.from_string(self.arch)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("classes", "mean", "std"):
            data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ModelInfo:
        """The info stored in a model file; unknown keys (from a newer minor release) are ignored."""
        if not isinstance(data, Mapping):
            raise WeightsError(f"model info must be a table, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [n for n in ("arch", "num_classes", "input_size") if n not in data]
        if missing:
            raise WeightsError(f"model info lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in names})


def _plain(value: Any, where: str) -> Any:
    """``value`` as built-in types only (str, int, float, bool, None, list, dict with str keys).

    ``torch.load(weights_only=True)`` rebuilds nothing else, so a ``torch.__version__`` (a str
    subclass), a Path or a numpy number stored as is would make the file unreadable.
    """
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, (str, os.PathLike)):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return _plain(value.item(), where)
    raise WeightsError(f"model info: {where} holds a {type(value).__name__}; only numbers, strings, lists and "
                       "tables can be stored")


def current_versions() -> dict[str, str]:
    """The software a model was trained and saved with (recorded in ``ModelInfo.versions``)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version(), "torch": str(torch.__version__)}
    for package in ("shufflenas", "onnx", "onnxruntime"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


# -- writing files ------------------------------------------------------------------------------------
def _write_atomic(path: Path, write) -> Path:
    """:func:`latency_models.atomic.atomic_write`, with its failures as one :class:`WeightsError` line."""
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"cannot write {path}: it is a directory")
    try:
        return atomic_write(path, write)
    except OSError as exc:
        raise WeightsError(f"cannot write {path}: {exc.strerror or exc}") from None


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in module.state_dict().items()}


def first_mismatch(reference: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> str | None:
    """The first key of ``state`` that does not fit ``reference`` (missing, mis-shaped, unexpected), in words."""
    for key, ref in reference.items():
        if key not in state:
            return f"key {key!r} is missing (the architecture needs shape {tuple(ref.shape)})"
        if tuple(state[key].shape) != tuple(ref.shape):
            return f"key {key!r} has shape {tuple(state[key].shape)}, the architecture needs {tuple(ref.shape)}"
    for key, value in state.items():
        if key not in reference:
            return f"unexpected key {key!r} (shape {tuple(value.shape)}), not in the architecture"
    return None


def save_model(path: str | os.PathLike, module: torch.nn.Module, info: ModelInfo) -> Path:
    """Write ``module``'s weights and ``info`` to ``path`` (model.pt) atomically; returns the path.

    The weights must fit ``build_model(info.arch, info.num_classes)``, so the file always loads.
    """
    state = _cpu_state(module)
    reference = build_model(info.architecture, info.num_classes, info.input_size).state_dict()
    problem = first_mismatch(reference, state)
    if problem:
        raise WeightsError(f"cannot save {path}: the module does not match {info.arch} with "
                           f"{info.num_classes} classes: {problem}")
    payload = {"format": MODEL_FORMAT, "version": MODEL_VERSION, "info": info.to_dict(), "state_dict": state}
    return _write_atomic(Path(path), lambda fh: torch.save(payload, fh))


# -- reading files ------------------------------------------------------------------------------------
def read_weights_file(path: str | os.PathLike, kind: str) -> Any:
    """``torch.load(weights_only=True)`` with every failure as one line (the file is untrusted input)."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{kind} file not found: {path}")
    if path.is_dir():
        raise WeightsError(f"{kind} file {path} is a directory")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise WeightsError(f"cannot read {kind} file {path}: {exc.strerror or exc}") from None
    try:
        with warnings.catch_warnings():  # (a note on the pickle protocol would be a second stderr line)
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc) or "Unsupported class" in str(exc):
            raise WeightsError(f"{kind} file {path} refused: it holds pickled Python objects, not only tensors "
                               "and plain containers (loading it could run code)") from None
        raise WeightsError(f"{kind} file {path} is corrupted or not a torch file") from None
    except Exception as exc:  # noqa: BLE001 - any parse failure of an untrusted file is the same user error
        raise WeightsError(f"{kind} file {path} is corrupted or not a torch file ({type(exc).__name__})") from None


def tensor_dict(obj: Any, path: Path, kind: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{kind} file {path} holds no state dict (a table of tensors)")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise WeightsError(f"{kind} file {path}: entry {key!r} is not a named tensor")
    return dict(obj)


def load_model(path: str | os.PathLike) -> tuple[torch.nn.Module, ModelInfo]:
    """The trained module (eval mode, CPU) and its info from a model.pt written by :func:`save_model`."""
    path = Path(path)
    data = read_weights_file(path, "model")
    if not isinstance(data, Mapping) or data.get("format") != MODEL_FORMAT:
        if isinstance(data, Mapping) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
            raise WeightsError(f"model file {path} is a bare state dict, not a shufflenas model; "
                               "to start training from it use --init torchvision:FILE")
        raise WeightsError(f"model file {path} is not a shufflenas model (no format {MODEL_FORMAT!r})")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise WeightsError(f"model file {path} is invalid: missing or bad format version")
    if version > MODEL_VERSION:
        raise WeightsError(f"model file {path} has format version {version}, newer than this shufflenas "
                           f"supports ({MODEL_VERSION})")
    try:
        info = ModelInfo.from_dict(data.get("info"))
    except (WeightsError, TypeError) as exc:
        raise WeightsError(f"model file {path} is invalid: {exc}") from None
    state = tensor_dict(data.get("state_dict"), path, "model")
    module = build_model(info.architecture, info.num_classes, info.input_size)
    problem = first_mismatch(module.state_dict(), state)
    if problem:
        raise WeightsError(f"model file {path} does not fit its own architecture {info.arch}: {problem}")
    module.load_state_dict(state, strict=True)
    return module.eval(), info


# -- ONNX with trained weights --------------------------------------------------------------------------
def onnx_metadata(info: ModelInfo) -> dict[str, str]:
    """The ``metadata_props`` an exported model carries: what a deployment needs besides the graph."""
    return {"format": MODEL_FORMAT, "arch": info.arch, "num_classes": str(info.num_classes),
            "input_size": str(info.input_size), "classes": json.dumps(list(info.classes)),
            "mean": json.dumps(list(info.mean)), "std": json.dumps(list(info.std)), "dataset": info.dataset,
            "normalisation": "input = (rgb - mean) / std per channel, rgb in [0, 1], NCHW; applied outside the graph",
            "metrics": json.dumps(info.metrics, default=str)}


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata an exported model carries (``metadata_props`` as a dict)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is a user error
        raise WeightsError(f"cannot read ONNX file {path} ({type(exc).__name__})") from None
    return {prop.key: prop.value for prop in model.metadata_props}


def export_onnx(module: torch.nn.Module, info: ModelInfo, path: str | os.PathLike, *, atol: float = 1e-4,
                batch: int = 1, checks: int = 3) -> Path:
    """Write ``module`` (in eval mode, trained weights) as ONNX to ``path``; returns the path.

    Before anything is written, ONNX Runtime runs the graph on ``checks`` random inputs and its
    outputs must agree with torch's within ``atol``; otherwise nothing is written. The caller's
    module keeps its train/eval mode.
    """
    import onnx
    import onnxruntime as ort

    from latency_models.measurement.onnx_export import export_module_bytes

    first = next(iter(module.parameters()), torch.empty(0))
    plain = first.device.type == "cpu" and first.dtype == torch.float32
    work = module if plain else copy.deepcopy(module).float().to("cpu")  # (a GPU / half-precision run)
    was_training = work.training
    shape = (batch, 3, info.input_size, info.input_size)
    try:
        proto = onnx.load_from_string(export_module_bytes(work, shape))
        for key, value in onnx_metadata(info).items():
            proto.metadata_props.add(key=key, value=value)
        data = proto.SerializeToString()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        generator = torch.Generator().manual_seed(0)
        worst = 0.0
        with torch.no_grad():
            for _ in range(checks):
                x = torch.randn(*shape, generator=generator)
                expected = work(x).numpy()
                if expected.shape != (batch, info.num_classes):
                    raise WeightsError(f"cannot export {path}: the module gives {expected.shape[1:]} outputs, "
                                       f"its info says {info.num_classes} classes")
                got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
                worst = max(worst, float(abs(got - expected).max()))
    finally:
        work.train(was_training)
    if not worst <= atol:
        raise WeightsError(f"ONNX export of {info.arch} not written to {path}: ONNX Runtime's outputs differ "
                           f"from torch's by {worst:.3g} (more than {atol:g})")
    return _write_atomic(Path(path), lambda fh: fh.write(data))


__all__ = ["MODEL_FORMAT", "MODEL_VERSION", "ModelInfo", "WeightsError", "current_versions", "export_onnx",
           "first_mismatch", "load_model", "onnx_metadata", "read_onnx_metadata", "save_model"]


def __getattr__(name: str) -> Any:
    """The ``--init`` names, where they lived before ``init_weights`` had its own module."""
    if name in ("CLASSIFIER_KEYS", "INIT_SCHEMES", "InitWeights", "load_init", "read_init"):
        from evaluator.training import init_weights

        return getattr(init_weights, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
