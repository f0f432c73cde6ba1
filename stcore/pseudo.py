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


def pseudo_label(project, teacher: dict, *, device: str = "cpu", batch_size: int = 1024,
                 progress: Callable[[int, int], None] | None = None) -> dict:
    """Label the whole pool with a teacher run: store pred, confidence, margin, entropy and
    probabilities of every pool item. Returns a summary (items, seconds, images/s)."""
    import time
    from .checkpoints import run_model
    from .data import images
    model = run_model(project, teacher["id"], device=device)
    ids, rows = project.store.pool_order()
    train = images(project, "train")
    x = train[rows] if rows != list(range(len(rows))) else train[:len(rows)]
    t0 = time.perf_counter()
    pending: list[tuple] = []
    for start, probs in predict(model, x, device=device, batch_size=batch_size, progress=progress):
        pred, conf, margin, ent = prediction_stats(probs)
        p16 = probs.half().numpy()
        pending += [(int(a), float(b), float(c), float(d), p16[k].tobytes(), teacher["id"], ids[start + k])
                    for k, (a, b, c, d) in enumerate(zip(pred.tolist(), conf.tolist(), margin.tolist(),
                                                         ent.tolist()))]
    # One transaction that rebuilds the pool's indexes once: about a second for 60,000 items.
    # Readers keep their snapshot meanwhile (WAL); inference is over, so no heartbeat waits long.
    project.store.write_predictions(pending, reindex=True)
    seconds = time.perf_counter() - t0
    return {"teacher_run": teacher["id"], "items": len(ids), "seconds": round(seconds, 2),
            "images_per_s": round(len(ids) / seconds, 1) if seconds else None}
