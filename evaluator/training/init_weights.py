"""Initial weights from another network: ``--init torchvision:FILE`` or ``--init supernet:DIR``.

torchvision's ShuffleNetV2 state dicts have the presets' key layout and load as they are; a
MobileNetV2 one has other key names and is paired with the architecture's tensors in order
(:mod:`evaluator.training.key_map`). A supernet gives the candidate's inherited weights
(``Supernet.extract``). A classifier of another size is replaced (fine-tuning).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from evaluator.training.key_map import rename_by_order
from evaluator.training.weights import MODEL_FORMAT, WeightsError, tensor_dict, read_weights_file, first_mismatch
from search_space import Architecture, build_model

#: ``--init`` schemes: ``torchvision:FILE``, ``supernet:DIR`` (the folder ``supernet train --out`` wrote).
INIT_SCHEMES = ("torchvision", "supernet")
CLASSIFIER_KEYS = ("fc.weight", "fc.bias")


@dataclass(frozen=True)
class InitWeights:
    """A state dict ready for ``load_state_dict(strict=True)``, and what was changed to make it fit."""

    state_dict: dict[str, torch.Tensor]
    source: str
    reinitialised: tuple[str, ...] = ()  # keys given a fresh init (the classifier, when fine-tuning)
    file_classes: int | None = None      # the classifier size the file was trained with


def _parse_spec(spec: str) -> tuple[str, Path]:
    scheme, sep, rest = str(spec).partition(":")
    if not sep or scheme not in INIT_SCHEMES:
        raise WeightsError(f"unknown init {spec!r}: expected torchvision:FILE or supernet:DIR")
    if not rest.strip():
        raise WeightsError(f"init {spec!r} names no file (expected {scheme}:FILE)")
    return scheme, Path(rest).expanduser()


def read_init(spec: str, arch: Architecture | str, num_classes: int) -> InitWeights:
    """Initial weights for ``arch`` with ``num_classes`` outputs from ``spec`` (``torchvision:FILE``).

    The file is a torchvision ShuffleNetV2 state dict (``shufflenet_v2_x0_5`` .. ``x2_0`` have the
    same key layout as ``build_model``'s presets, at every input size: the small stem has the same
    weights) or a torchvision MobileNetV2 one (``mobilenet_v2``, other key names: its tensors are
    paired with the architecture's in order, see :mod:`evaluator.training.key_map`). A classifier of
    another size is replaced by a fresh one (fine-tuning); any other key that is missing, unexpected
    or mis-shaped is an error naming the first one.
    """
    scheme, path = _parse_spec(spec)
    if not isinstance(arch, Architecture):
        arch = Architecture.from_string(str(arch))
    if scheme == "supernet":
        return _from_supernet(spec, path, arch, num_classes)
    data = read_weights_file(path, "init")
    if isinstance(data, Mapping) and data.get("format") == MODEL_FORMAT:
        data = data.get("state_dict")
    elif isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]  # a training checkpoint around the weights
    state = tensor_dict(data, path, "init")
    reference = build_model(arch, num_classes).state_dict()
    if not any(key in state for key in reference if not key.endswith("num_batches_tracked")):
        state, problem = rename_by_order(state, reference, CLASSIFIER_KEYS)  # another layout (MobileNetV2's)
        if problem:
            raise WeightsError(f"init file {path} does not fit {arch.to_string()}: {problem}")
    fixed: dict[str, torch.Tensor] = {}
    replaced: list[str] = []
    file_classes = None
    weight, bias = state.get("fc.weight"), state.get("fc.bias")
    if weight is not None and bias is not None and weight.dim() == 2 and bias.dim() == 1 \
            and weight.shape[0] == bias.shape[0] and weight.shape[1] == reference["fc.weight"].shape[1]:
        file_classes = int(weight.shape[0])
        if file_classes != num_classes:
            replaced = list(CLASSIFIER_KEYS)
    for key, ref in reference.items():
        if key in replaced:
            fixed[key] = ref.clone()
        elif key not in state and key.endswith("num_batches_tracked"):
            fixed[key] = ref.clone()  # a counter only; older torchvision files lack it
        elif key in state:
            fixed[key] = state[key]
    problem = first_mismatch(reference, {**fixed, **{k: v for k, v in state.items() if k not in reference}})
    if problem:
        raise WeightsError(f"init file {path} does not fit {arch.to_string()}: {problem}")
    ready = {k: v.to(reference[k].dtype).contiguous() for k, v in fixed.items()}
    return InitWeights(ready, str(spec), tuple(replaced), file_classes)


def _from_supernet(spec: str, path: Path, arch: Architecture, num_classes: int) -> InitWeights:
    """``arch``'s inherited weights from the supernet at ``path`` (BatchNorm statistics fresh: training
    re-estimates them); a classifier for another class count is replaced by a fresh one."""
    from evaluator.supernet.store import load_supernet
    from evaluator.supernet.weights import SupernetError

    try:
        supernet, info = load_supernet(path)
        model = supernet.extract(arch)
    except SupernetError as exc:
        hint = " (a torchvision state dict goes with torchvision:FILE)" if path.is_file() else ""
        raise WeightsError(f"init {spec!r}: {exc}{hint}") from None
    state = model.state_dict()
    file_classes = info.spec.num_classes
    replaced: tuple[str, ...] = ()
    if file_classes != num_classes:
        fresh = build_model(arch, num_classes).state_dict()
        state.update({key: fresh[key] for key in CLASSIFIER_KEYS})
        replaced = CLASSIFIER_KEYS
    ready = {k: v.detach().clone().contiguous() for k, v in state.items()}
    return InitWeights(ready, f"{spec} (checksum {info.checksum})", replaced, file_classes)


def load_init(spec: str, arch: Architecture | str, num_classes: int) -> dict[str, torch.Tensor]:
    """The state dict of :func:`read_init` alone."""
    return read_init(spec, arch, num_classes).state_dict



__all__ = ["CLASSIFIER_KEYS", "INIT_SCHEMES", "InitWeights", "load_init", "read_init"]
