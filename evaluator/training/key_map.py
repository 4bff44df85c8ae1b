"""Renaming a foreign state dict onto ``build_model``'s keys by order and shape.

torchvision's ShuffleNetV2 has ``build_model``'s own key names, but its MobileNetV2 does not:
``features.0.0`` (conv1), ``features.<n>.conv.<i>.<j>`` (the inverted residuals: a
Conv2dNormActivation is a nested Sequential), ``features.18.0`` (the last conv) and ``classifier.1``
(the FC after a Dropout) hold, in the same order and with the same shapes, the tensors that
``build_model('mobilenetv2-1.0')`` calls ``conv1.0``, ``stage<k>.<u>.conv.<i>`` (one flat path),
``conv5.0`` and ``fc``. Both walk the network in execution order, so the i-th weight of one is the
i-th weight of the other. The mapping is strict: every tensor used once, shapes equal (the classifier
excepted: a different class count is the caller's fine-tuning case), the first misfit named.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

COUNTER = "num_batches_tracked"


def _owner(key: str) -> str:
    return key.rsplit(".", 1)[0]


def rename_by_order(state: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor],
                    classifier: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], str | None]:
    """``state`` under ``reference``'s names, paired in order; ``(renamed, problem)``, problem None if it fits.

    BatchNorm step counters are not paired by position (older files lack them); a counter follows its
    BatchNorm: it takes the name of the module whose weight its module's weight was paired with.
    """
    ref_keys = [k for k in reference if not k.endswith(COUNTER)]
    file_keys = [k for k in state if not k.endswith(COUNTER)]
    if len(file_keys) != len(ref_keys):
        return {}, (f"the file has {len(file_keys)} tensors (BatchNorm counters aside), the architecture "
                    f"{len(ref_keys)}, and their names differ")
    renamed: dict[str, torch.Tensor] = {}
    owners: dict[str, str] = {}
    for i, (file_key, ref_key) in enumerate(zip(file_keys, ref_keys)):
        got, need = tuple(state[file_key].shape), tuple(reference[ref_key].shape)
        if got != need and ref_key not in classifier:
            return {}, (f"tensor {i} {file_key!r} has shape {got} where {ref_key!r} needs {need} "
                        f"(tensors are paired in order)")
        renamed[ref_key] = state[file_key]
        owners[_owner(file_key)] = _owner(ref_key)
    for key in state:
        if key.endswith(COUNTER):
            target = f"{owners.get(_owner(key), '?')}.{COUNTER}"
            if target not in reference:
                return {}, f"unexpected key {key!r}: no BatchNorm of the architecture pairs with its module"
            renamed[target] = state[key]
    return renamed, None
