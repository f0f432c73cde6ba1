"""Batched augmentations on float image tensors (N, C, H, W) in [0, 1], on any device.

Every op draws its parameters per sample and applies them to the whole batch at once
(one affine grid_sample, a few elementwise ops), so there is no per-sample Python loop.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _affine(x: torch.Tensor, theta: torch.Tensor, mode: str) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def _rand(n: int, lo: float, hi: float, like: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=g, device=g.device if g is not None else like.device).to(like.device) \
        * (hi - lo) + lo


def weak(x: torch.Tensor, *, flip: bool, shift: float = 0.125, g: torch.Generator | None = None) -> torch.Tensor:
    """Random translation by up to shift * size whole pixels, and a horizontal flip if flip."""
    n, _, h, w = x.shape
    px = torch.round(_rand(n, -1, 1, x, g) * shift * w) * 2 / w
    py = torch.round(_rand(n, -1, 1, x, g) * shift * h) * 2 / h
    sx = torch.ones(n, device=x.device)
    if flip:
        sx = torch.where(_rand(n, 0, 1, x, g) < 0.5, -sx, sx)
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = sx, 1.0, px, py
    return _affine(x, theta, "nearest")


def strong(x: torch.Tensor, *, flip: bool, g: torch.Generator | None = None, magnitude: float = 1.0,
           cutout: float | None = None) -> torch.Tensor:
    """RandAugment-like: a random affine (rotate, shear, scale, translate, flip); then brightness
    and contrast (half the samples each), solarize (a fifth) and autocontrast (three in ten); then cutout.
    magnitude scales every range; cutout is the largest hole's side as a fraction of the image
    (by default 0.25 + 0.25 * magnitude: a half at full magnitude)."""
    if cutout is None:
        cutout = 0.25 + 0.25 * magnitude
    n, c, h, w = x.shape
    m = magnitude
    ang = _rand(n, -30, 30, x, g) * m * math.pi / 180
    shear = _rand(n, -0.3, 0.3, x, g) * m
    scale = 1 + _rand(n, -0.2, 0.2, x, g) * m
    tx, ty = _rand(n, -0.3, 0.3, x, g) * m, _rand(n, -0.3, 0.3, x, g) * m
    sx = torch.ones(n, device=x.device)
    if flip:
        sx = torch.where(_rand(n, 0, 1, x, g) < 0.5, -sx, sx)
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos * sx, -sin + shear, tx], 1),
                         torch.stack([sin * sx, cos, ty], 1)], 1)
    x = _affine(x, theta, "bilinear")

    def on(p: float) -> torch.Tensor:  # per-sample coin, shaped to broadcast over (C, H, W)
        return (_rand(n, 0, 1, x, g) < p).view(n, 1, 1, 1)

    b = _rand(n, 1 - 0.5 * m, 1 + 0.5 * m, x, g).view(n, 1, 1, 1)
    x = torch.where(on(0.5), x * b, x)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    k = _rand(n, 1 - 0.5 * m, 1 + 0.5 * m, x, g).view(n, 1, 1, 1)
    x = torch.where(on(0.5), (x - mean) * k + mean, x)
    x = x.clamp(0, 1)
    t = _rand(n, 0.5, 1.0, x, g).view(n, 1, 1, 1)
    x = torch.where(on(0.2) & (x > t), 1 - x, x)
    # Autocontrast: stretch each image to the full [0, 1] range.
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    x = torch.where(on(0.3), (x - lo) / (hi - lo).clamp_min(1e-3), x)
    if cutout > 0:
        size = (_rand(n, 0.25, cutout, x, g) * min(h, w)).view(n, 1, 1)
        cy = _rand(n, 0, h, x, g).view(n, 1, 1)
        cx = _rand(n, 0, w, x, g).view(n, 1, 1)
        yy = torch.arange(h, device=x.device).view(1, h, 1)
        xx = torch.arange(w, device=x.device).view(1, 1, w)
        hole = ((yy - cy).abs() < size / 2) & ((xx - cx).abs() < size / 2)
        x = x.masked_fill(hole.unsqueeze(1), 0.5)
    return x
