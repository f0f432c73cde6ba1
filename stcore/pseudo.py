"""Inference over the pool: label, confidence, margin and entropy for each image."""
from __future__ import annotations

from typing import Callable, Iterator

import torch


def prediction_stats(probs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """probs (N, K) -> pred (N,), confidence = top-1 prob, margin = top-1 minus top-2,
    entropy in nats (0 = certain, ln K = uniform)."""
    top = probs.topk(min(2, probs.shape[1]), dim=1)
    conf, pred = top.values[:, 0], top.indices[:, 0]
    margin = conf - top.values[:, 1] if probs.shape[1] > 1 else conf
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(1)
    return pred, conf, margin, entropy


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float in [0, 1]."""
    return x.float().div_(255)


@torch.inference_mode()
def predict(model: torch.nn.Module, images: torch.Tensor, *, device: str = "cpu", batch_size: int = 1024,
            progress: Callable[[int, int], None] | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (start, probs) per batch: probs is (B, K) on the CPU, for images[start:start+B]."""
    model.eval().to(device)
    n = len(images)
    for start in range(0, n, batch_size):
        x = normalize(images[start:start + batch_size].to(device, non_blocking=True))
        yield start, torch.softmax(model(x).float(), 1).cpu()
        if progress:
            progress(min(start + batch_size, n), n)
