"""Augmentation on whole batches of tensors: random crop from a zero-padded image, and a
horizontal flip, both drawn from one seeded generator so a resumed run draws the same crops.

The flip has no default here: whether a mirrored image keeps its class depends on the data set
(a mirrored 2 is another glyph), so the caller passes the recipe's resolved ``flip``.

Working on the batch in one gather keeps augmentation a small share of a step on small images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, *, padding: int = 2,
                     flip: bool) -> torch.Tensor:
    """``images`` (NCHW) shifted by up to ``padding`` px each way (zero fill), and flipped with p=0.5
    when ``flip``.

    The offsets and flips are drawn on the CPU from ``generator`` whatever the images' device,
    so the draw sequence does not depend on where the model trains.
    """
    n, _, h, w = images.shape
    if n == 0 or (padding == 0 and not flip):
        return images
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    mirror = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    cols = torch.arange(w)
    cols = torch.where(mirror[:, None], w - 1 - cols, cols) + dx[:, None]
    rows = torch.arange(h) + dy[:, None]
    device = images.device
    padded = F.pad(images, (padding, padding, padding, padding)) if padding else images
    batch = torch.arange(n, device=device)[:, None, None]
    out = padded[batch, :, rows.to(device)[:, :, None], cols.to(device)[:, None, :]]  # N H W C
    return out.permute(0, 3, 1, 2).contiguous(memory_format=torch.contiguous_format)


__all__ = ["random_crop_flip"]
