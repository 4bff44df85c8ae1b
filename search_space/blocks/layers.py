"""`Layer`: one op after BN/ReLU fusion, the unit every cost model reads.

It lives with the block specs (not in ``latency_models``) because every spec yields its layers from the
same description that yields its torch module; ``latency_models.costs.analytic`` re-exports it.

MAC follows the paper (Sec. 2): a conv with BN/ReLU fused reads its input and weights and writes
its output once, ``h_in*w_in*c_in + h_out*w_out*c_out + k*k*c_in*c_out/g`` (activations times the
batch); data-movement and element-wise ops (split, concat, shuffle, pooling, SE scaling) cost the
elements they read plus those they write. ``kernels`` counts the ops left after fusion (G3);
``elementwise`` counts the elements touched by element-wise work, fused epilogues included (G4).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

LayerKind = Literal["conv", "fc", "maxpool", "avgpool", "gap", "split", "concat", "shuffle", "add", "relu", "mul"]
COST_COLUMNS = ("params", "flops", "mac", "kernels", "elementwise")


@dataclasses.dataclass(frozen=True)
class Layer:
    """One op after BN/ReLU fusion, with its input and output shapes (NCHW, batch excluded)."""

    name: str
    kind: LayerKind
    c_in: int
    c_out: int
    h_in: int
    w_in: int
    h_out: int
    w_out: int
    k: int = 1
    stride: int = 1
    groups: int = 1
    bn: bool = False        # a fused BatchNorm (params 2*c_out, one element-wise pass)
    relu: bool = False      # a fused activation (one element-wise pass)
    bias: bool = False
    inputs: int = 1         # tensors read by an element-wise op (concat: 2, add: 2)
    stage: str = ""

    @property
    def in_elems(self) -> int:
        return self.c_in * self.h_in * self.w_in

    @property
    def out_elems(self) -> int:
        return self.c_out * self.h_out * self.w_out

    def costs(self, batch: int = 1) -> dict[str, int]:
        """params, flops, mac, kernels, elementwise of this layer for a batch."""
        if self.kind in ("conv", "fc"):
            weights = self.k * self.k * self.c_in * self.c_out // self.groups
            params = weights + (2 * self.c_out if self.bn else 0) + (self.c_out if self.bias else 0)
            flops = batch * self.h_out * self.w_out * weights
            mac = batch * (self.in_elems + self.out_elems) + weights
            epilogue = int(self.bn) + int(self.relu) + int(self.bias)
            return {"params": params, "flops": flops, "mac": mac, "kernels": 1,
                    "elementwise": batch * self.out_elems * epilogue}
        if self.kind == "split":  # two slices: each reads and writes its part
            return {"params": 0, "flops": 0, "mac": 2 * batch * self.in_elems, "kernels": 2,
                    "elementwise": batch * self.in_elems}
        moved = batch * (self.in_elems * self.inputs + self.out_elems)
        if self.kind == "concat":
            moved = batch * (self.in_elems + self.out_elems)  # c_in = sum of the inputs' channels
        elif self.kind == "mul":  # SE scaling: the map times a broadcast per-channel vector (c_in values)
            moved = batch * (self.in_elems + self.c_in + self.out_elems)
        return {"params": 0, "flops": 0, "mac": moved, "kernels": 1, "elementwise": batch * self.out_elems}

    @property
    def params(self) -> int:
        """Weights of this layer (what ``costs()["params"]`` says, without the other columns)."""
        if self.kind not in ("conv", "fc"):
            return 0
        weights = self.k * self.k * self.c_in * self.c_out // self.groups
        return weights + (2 * self.c_out if self.bn else 0) + (self.c_out if self.bias else 0)
