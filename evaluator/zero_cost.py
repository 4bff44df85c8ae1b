"""Zero-cost proxies: score an untrained network in well under a second, no training.

- :func:`naswot` (Mellor et al., "Neural Architecture Search without Training", ICML 2021): the
  log-determinant of the kernel ``K[i, j] = number of ReLUs on which images i and j agree``
  (active or not), over one mini-batch. Networks that separate inputs into distinct linear regions
  score higher.
- :func:`synflow` (Tanaka et al., "Pruning neural networks without any data by iteratively
  conserving synaptic flow", NeurIPS 2020, as used for NAS by Abdelfattah et al. 2021): with all
  parameters replaced by their absolute values and BatchNorm in eval mode, feed an all-ones input,
  back-propagate the sum of the outputs and sum ``|theta * dR/dtheta|``. Computed in float64 and
  returned as a natural log, since the raw score grows geometrically with depth.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from evaluator.datasets import DataSplit
from evaluator.proxy import torch_threads
from search_space import Architecture, build_model


def _sample(data: DataSplit, batch_size: int, seed: int) -> torch.Tensor:
    n = data.train_size
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=generator)[: min(batch_size, n)]
    return data.train_x[idx]


def naswot(arch: Architecture, data: DataSplit, batch_size: int = 32, seed: int = 0, threads: int | None = 1) -> float:
    """NASWOT score (higher is better) of ``arch`` freshly initialised from ``seed``.

    Returns ``-inf`` when the kernel is singular (two images with identical activation codes).
    """
    with torch_threads(threads), torch.no_grad():
        return _naswot(arch, data, batch_size, seed)


def _naswot(arch: Architecture, data: DataSplit, batch_size: int, seed: int) -> float:
    torch.manual_seed(seed)
    model = build_model(arch, data.num_classes, data.input_size)
    model.train()  # batch statistics, as in the reference implementation
    x = _sample(data, batch_size, seed)
    n = x.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        codes = (output.reshape(n, -1) > 0).to(torch.float64)
        kernel.add_(codes @ codes.T).add_((1.0 - codes) @ (1.0 - codes).T)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if float(sign) > 0 else float("-inf")


def synflow(arch: Architecture, input_size: int = 16, num_classes: int = 10, seed: int = 0,
            threads: int | None = 1) -> float:
    """log(SynFlow score) of ``arch`` (higher is better); data-free, so it needs only the shapes."""
    with torch_threads(threads):
        return _synflow(arch, input_size, num_classes, seed)


def _synflow(arch: Architecture, input_size: int, num_classes: int, seed: int) -> float:
    torch.manual_seed(seed)
    model = build_model(arch, num_classes, input_size).to(torch.float64)
    model.eval()  # BatchNorm as a fixed affine map (running mean 0, variance 1)
    with torch.no_grad():
        for param in model.parameters():
            param.abs_()
    model.zero_grad(set_to_none=True)
    ones = torch.ones(1, 3, input_size, input_size, dtype=torch.float64)
    model(ones).sum().backward()
    total = torch.zeros((), dtype=torch.float64)
    for param in model.parameters():
        if param.grad is not None:
            total += (param.detach() * param.grad).abs().sum()
    value = float(total)
    if value <= 0.0:
        return float("-inf")
    return math.log(value) if math.isfinite(value) else float("inf")


#: name -> scorer taking (arch, data, seed); the correlation benchmark iterates over these
ZERO_COST: dict[str, Callable[..., float]] = {
    "naswot": lambda arch, data, seed=0: naswot(arch, data, seed=seed),
    "synflow": lambda arch, data, seed=0: synflow(arch, data.input_size, data.num_classes, seed=seed),
}

__all__ = ["ZERO_COST", "naswot", "synflow"]
