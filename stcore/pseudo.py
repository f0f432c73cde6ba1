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


def as_stored(probs: torch.Tensor) -> torch.Tensor:
    """Test-set probabilities rounded as test_probs.npy keeps them (float16): the accuracy a run
    reports and the predictions read back from the file then agree, near-tie for near-tie."""
    return probs.half().float()


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float in [0, 1]."""
    return x.float().div_(255)


def faster(model: torch.nn.Module, sample: torch.Tensor, n: int, *, runtime: str, device: str,
           say: Callable[[str], None] = print, precise: bool = False):
    """model's forward pass (float32 images in [0, 1] -> logits, as numpy) on a faster runtime for
    n images like the uint8 sample, or None where PyTorch stays (runtime.compile_model)."""
    from .runtime import MIN_MODEL_IMAGES, compile_model
    return compile_model(model.eval(), normalize(sample), runtime=runtime, device=device, n=n, say=say, keep=False,
                         min_images=MIN_MODEL_IMAGES, precise=precise)[0]


@torch.inference_mode()
def predict(model: torch.nn.Module, images: torch.Tensor, *, device: str = "cpu", batch_size: int = 1024,
            progress: Callable[[int, int], None] | None = None, runtime: str = "torch",
            say: Callable[[str], None] = print, fast=None, precise: bool = False) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (start, probs) per batch: probs is (B, K) on the CPU, for images[start:start+B].
    runtime: 'torch', or 'auto' (or a name) for a faster runtime where one takes the model and
    there are enough images to repay its export (runtime.py; say: a line when one refuses it;
    precise: float32 throughout); fast: the model already compiled by faster()."""
    from .models import folded
    model.eval().to(device)
    n = len(images)
    if fast is None and n:
        fast = faster(model, images[:2], n, runtime=runtime, device=device, say=say, precise=precise)
    net = folded(model) if fast is None and n else model  # batch norms folded into their convolutions
    for start in range(0, n, batch_size):
        x = normalize(images[start:start + batch_size].to(device, non_blocking=True))
        logits = torch.from_numpy(fast(x.numpy())) if fast is not None else net(x).float()
        yield start, torch.softmax(logits, 1).cpu()
        if progress:
            progress(min(start + batch_size, n), n)


def image_model(project, run_id: str, device: str = "cpu") -> torch.nn.Module:
    """A run's model as a map from images in [0, 1] (N, C, H, W) to logits (N, K), in eval mode on
    device: its network, or for a head the backbone of the embedding it learned on, then the head."""
    from .checkpoints import model_from, run_checkpoint
    from .embed import HeadOnImages, rebuild
    from .models import EmbeddingHead
    ck = run_checkpoint(project, run_id)
    model = model_from(project, ck, f"run {run_id}")
    if isinstance(model, EmbeddingHead):
        model = HeadOnImages(rebuild(project, ck.get("embedding")), model)
    # channels_last: oneDNN's and cuDNN's fastest convolutions, as training and embedding run them
    return model.to(device, memory_format=torch.channels_last).eval()


def pseudo_label(project, teacher: dict, *, device: str = "cpu", batch_size: int = 1024,
                 progress: Callable[[int, int], None] | None = None,
                 phase: Callable[[str], None] | None = None) -> dict:
    """Label the whole pool with a teacher run: store pred, confidence, margin, entropy and
    probabilities of every pool item. Returns a summary (items, seconds, images/s). phase(text)
    says what it does after the inference (spreading over the graph, writing the store)."""
    phase = phase or (lambda text: None)
    import time
    from .checkpoints import run_model
    from .data import images
    from .models import EmbeddingHead
    model = run_model(project, teacher["id"], device=device)
    ids, rows = project.store.items.pool_order()
    train = images(project, "train")
    x = train[rows] if rows != list(range(len(rows))) else train[:len(rows)]
    t0 = time.perf_counter()
    if isinstance(model, EmbeddingHead):  # a head reads the embedding, not the images
        from .embed import load
        probs = model.probs(load(project)[0][rows])
        if progress:
            progress(len(rows), len(rows))
    else:
        probs = torch.cat([p for _, p in predict(model, x, device=device, batch_size=batch_size, progress=progress,
                                                 runtime="auto", say=phase)]
                          or [torch.zeros(0, len(project.classes))])
    if project.store.meta().get("embedding"):
        phase(f"spreading the teacher's labels with yours over the embedding's graph of {len(rows):,} pool images")
    spread = spread_over_embedding(project, rows, probs, device)
    if spread is not None:
        probs = spread
    pred, conf, margin, ent = prediction_stats(probs)
    p16 = probs.half().numpy()
    pending = [(int(a), float(b), float(c), float(d), p16[k].tobytes(), teacher["id"], ids[k])
               for k, (a, b, c, d) in enumerate(zip(pred.tolist(), conf.tolist(), margin.tolist(), ent.tolist()))]
    phase(f"writing {len(pending):,} pseudo-labels to the project's store")
    # One transaction that rebuilds the pool's indexes once: about a second for 60,000 items.
    # Readers keep their snapshot meanwhile (WAL); inference is over, so no heartbeat waits long.
    project.store.items.write_predictions(pending, reindex=True)
    seconds = time.perf_counter() - t0
    return {"teacher_run": teacher["id"], "items": len(ids), "seconds": round(seconds, 2),
            "spread_over": project.store.meta().get("embedding") if spread is not None else None,
            "images_per_s": round(len(ids) / seconds, 1) if seconds else None}


def spread_over_embedding(project, pool_rows: list[int], probs: torch.Tensor, device: str = "cpu",
                          corrected_weight: float = 2.0) -> torch.Tensor | None:
    """The teacher's pool probabilities (n, K), spread with the human labels (the labeled set,
    accepted and corrected items) over a k-NN graph of the project's embedding and aligned to
    the labeled class mix; None when the project has no embedding or fewer than 3 images for the graph."""
    from . import balance, graph as graph_mod, neighbours
    from .methods import sharpen
    if not project.store.meta().get("embedding") or not len(pool_rows):
        return None
    lab, reviewed = project.store.items.labeled_set(), project.store.items.reviewed_set()
    rows = [r for r, _ in lab] + [r for r, _, _ in reviewed]
    if not graph_mod.buildable(len(rows) + len(pool_rows)):
        return None
    labels = torch.tensor([c for _, c in lab] + [c for _, c, _ in reviewed], dtype=torch.long)
    weights = torch.tensor([1.0] * len(lab) + [corrected_weight if s == "corrected" else 1.0 for _, _, s in reviewed])
    k = probs.shape[1]
    mix = torch.bincount(torch.tensor([c for _, c in lab], dtype=torch.long), minlength=k).float() + 1
    mix = mix / mix.sum()
    g = neighbours.graph(project, rows + list(pool_rows), device=device)
    if g is None:
        return None
    w = graph_mod.PRIOR_WEIGHT["teacher"]
    # no class's seeds above its cap; the pool's labels aligned to what the human labels left in it
    weights = balance.balanced_weights(labels, weights, mix)
    in_pool = set(pool_rows)
    outside = torch.tensor([c for r, c in zip(rows, labels.tolist()) if r not in in_pool], dtype=torch.long)
    target = balance.pool_mix(mix, outside, len(pool_rows))
    spread = graph_mod.spread_labels(g, len(rows), labels, weights, k, probs, w, target)
    # Spread labels are flat; a temperature fitted on held-out human labels makes them confidences.
    return sharpen(spread, graph_mod.held_out_temperature(g, len(rows), labels, weights, k, probs, w, target))
