"""The one training loop, for teachers and students, in plain functions.

Each method is a small loss function over a batch; `fit` samples batches, augments them
on the device, calls the method's loss, steps the optimizer, keeps an EMA of the weights,
evaluates the EMA on the test set, saves checkpoints and reports through one callback.
"""
from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from . import augment
from .config import TrainConfig, to_dict
from .metrics import confusion, summarize
from .pseudo import normalize

DEFAULT_STEPS = {"teacher": 400, "student": 600}
EVAL_SUBSET = 2000  # test images used by evaluations before the last one

# callback(kind, step, values) -> True to ask the loop to stop (after saving a checkpoint).
# kind is 'train' (loss, lr, samples/s), 'eval' (test accuracy) or 'checkpoint'.
Callback = Callable[[str, int, dict], bool]


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; training stops at once."""


@dataclass
class TrainData:
    """uint8 images (N, C, H, W). w_lab weighs each human label (corrections weigh more).
    p_unl holds the teacher's probabilities for x_unl (K columns), or None."""
    x_lab: torch.Tensor
    y_lab: torch.Tensor
    w_lab: torch.Tensor
    x_unl: torch.Tensor
    p_unl: torch.Tensor | None
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    flip: bool = True


# ------------------------------------------------------------------ method pieces
def pseudo_targets(logits: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard targets from logits (N, K): argmax, and a float mask of rows whose max prob >= threshold."""
    probs = torch.softmax(logits.detach().float(), 1)
    conf, targets = probs.max(1)
    return targets, (conf >= threshold).float()


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Raise probabilities (N, K) to 1/T and renormalize; T < 1 sharpens, T = 1 keeps them."""
    if temperature == 1.0:
        return probs
    p = probs.clamp_min(1e-12) ** (1.0 / temperature)
    return p / p.sum(1, keepdim=True)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy against target distributions (N, K)."""
    return -(targets * F.log_softmax(logits, 1)).sum(1)


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, m in zip(ema.parameters(), model.parameters()):
        e.lerp_(m.detach(), 1 - decay)
    for e, m in zip(ema.buffers(), model.buffers()):
        e.copy_(m)


def unlabeled_loss(method: str, model: torch.nn.Module, logits_strong: torch.Tensor, xu_weak: torch.Tensor,
                   pu: torch.Tensor | None, cfg: TrainConfig) -> tuple[torch.Tensor, float]:
    """The student's loss on an unlabeled batch, and the fraction of the batch it used."""
    match method:
        case "fixmatch":
            # Pseudo-label from the weak view, learn it on the strong view (FixMatch).
            with torch.no_grad():
                targets, mask = pseudo_targets(model(xu_weak), cfg.threshold)
            return (F.cross_entropy(logits_strong, targets, reduction="none") * mask).mean(), mask.mean().item()
        case "pseudo":
            return F.cross_entropy(logits_strong, pu.argmax(1)).mean(), 1.0
        case "soft":
            return soft_cross_entropy(logits_strong, sharpen(pu, cfg.temperature)).mean(), 1.0
    raise ValueError(f"unknown student method {method!r}")


def cosine_lr(total: int, warmup: int) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to 5% of the peak (a factor for LambdaLR)."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


def total_steps(cfg: TrainConfig, data: TrainData) -> int:
    if cfg.steps:
        return cfg.steps
    if cfg.epochs:
        if cfg.role == "student" and len(data.x_unl):
            per, n = cfg.batch_size * cfg.unlabeled_ratio, len(data.x_unl)
        else:
            per, n = cfg.batch_size, len(data.x_lab)
        return max(1, math.ceil(cfg.epochs * n / per))
    return DEFAULT_STEPS[cfg.role]


# ------------------------------------------------------------------ evaluation
@torch.inference_mode()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, classes: list[str], *,
             device: str = "cpu", batch_size: int = 1024) -> dict:
    """Accuracy, per-class metrics and the confusion matrix of model on uint8 images x."""
    was_training = model.training
    model.eval()
    preds = []
    for i in range(0, len(x), batch_size):
        preds.append(model(normalize(x[i:i + batch_size].to(device))).argmax(1).cpu())
    model.train(was_training)
    pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
    return summarize(confusion(y.cpu(), pred, len(classes)), classes)


# ------------------------------------------------------------------ checkpoints
def save_checkpoint(path: Path, state: dict) -> None:
    """Write to a temporary file, fsync, then rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: Path, map_location: str = "cpu") -> dict:
    # weights_only=True: a checkpoint is data, never code (no arbitrary unpickling).
    return torch.load(path, map_location=map_location, weights_only=True)


# ------------------------------------------------------------------ the loop
def fit(model: torch.nn.Module, data: TrainData, cfg: TrainConfig, *, device: str = "cpu",
        callback: Callback | None = None, checkpoint_dir: Path | None = None,
        resume: dict | None = None, extra: dict | None = None) -> dict:
    """Train model in place on data. Returns {'stopped': bool, 'step': int, 'eval': dict | None}.

    The EMA model is what gets evaluated and exported. extra is stored in each checkpoint
    (the project id, classes and input shape, so that a checkpoint can be checked before use).
    """
    method = cfg.resolved_method
    callback = callback or (lambda *a: False)
    total = total_steps(cfg, data)
    student = cfg.role == "student" and len(data.x_unl) > 0
    model.to(device).train()
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)
    # No weight decay on BatchNorm and biases, as is usual for small-data training.
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_lr(total, warmup=max(1, total // 20)))
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    step, best = 0, -1.0
    if resume:
        model.load_state_dict(resume["model"])
        ema.load_state_dict(resume["ema"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        step, best = resume["step"], resume.get("best", -1.0)
        g.set_state(resume["rng"]["sampler"])
        torch.set_rng_state(resume["rng"]["torch"])

    if device != "cpu":  # small uint8 datasets fit on the device; saves a copy per step
        data = TrainData(**{k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                            for k, v in vars(data).items()})
    eval_every = cfg.eval_every or max(1, total // 10)
    B, U = cfg.batch_size, cfg.batch_size * cfg.unlabeled_ratio

    def state(step: int) -> dict:
        return {"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "step": step, "best": best, "config": to_dict(cfg),
                "rng": {"sampler": g.get_state(), "torch": torch.get_rng_state()}, **(extra or {})}

    def checkpoint(step: int, is_best: bool) -> None:
        if checkpoint_dir is None:
            return
        s = state(step)
        save_checkpoint(checkpoint_dir / "latest.pt", s)
        if is_best:
            save_checkpoint(checkpoint_dir / "best.pt", s)
        callback("checkpoint", step, {})

    def pick(n: int, size: int) -> torch.Tensor:
        return torch.randint(n, (size,), generator=g).to(device)

    last_eval, stopped = None, False
    t0, seen, acc_loss, acc_lu, acc_mask, n_acc = time.perf_counter(), 0, 0.0, 0.0, 0.0, 0
    while step < total and not stopped:
        i = pick(len(data.x_lab), B)
        xl = augment.weak(normalize(data.x_lab[i]), flip=data.flip, g=g)
        yl, wl = data.y_lab[i], data.w_lab[i]
        if student:
            j = pick(len(data.x_unl), U)
            xu = normalize(data.x_unl[j])
            xu_s = augment.strong(xu, flip=data.flip, g=g)
            xu_w = augment.weak(xu, flip=data.flip, g=g) if method == "fixmatch" else None
            logits = model(torch.cat([xl, xu_s]))
            lab_loss = (F.cross_entropy(logits[:B], yl, reduction="none") * wl).sum() / wl.sum()
            pu = data.p_unl[j].float() if data.p_unl is not None else None
            lu, used = unlabeled_loss(method, model, logits[B:], xu_w, pu, cfg)
            loss = lab_loss + cfg.unlabeled_weight * lu
        else:
            logits = model(xl)
            loss = (F.cross_entropy(logits, yl, reduction="none") * wl).sum() / wl.sum()
            lu, used = torch.zeros(()), 0.0
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"loss became {loss.item()} at step {step + 1}; lower --lr "
                                f"(now {cfg.lr}) or check the data")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        # Warm the EMA up: early on, a decay of 0.99 would average mostly the random init.
        update_ema(ema, model, min(cfg.ema_decay, (1 + step) / (10 + step)))
        seen += B + (U if student else 0)
        acc_loss += loss.item()
        acc_lu += float(lu)
        acc_mask += used
        n_acc += 1
        stop = False
        if step % cfg.log_every == 0 or step == total:
            dt = time.perf_counter() - t0
            stop = callback("train", step, {"loss": acc_loss / n_acc, "unlabeled_loss": acc_lu / n_acc,
                                            "mask_rate": acc_mask / n_acc, "lr": sched.get_last_lr()[0],
                                            "samples_per_s": seen / dt if dt > 0 else 0.0})
            t0, seen, acc_loss, acc_lu, acc_mask, n_acc = time.perf_counter(), 0, 0.0, 0.0, 0.0, 0
        if step % eval_every == 0 or step == total:
            # Evaluations along the way use a fixed slice of the test set; the last one uses all of it.
            n_eval = len(data.x_test) if step == total else min(len(data.x_test), EVAL_SUBSET)
            last_eval = evaluate(ema, data.x_test[:n_eval], data.y_test[:n_eval], data.classes, device=device)
            is_best = last_eval["accuracy"] > best
            best = max(best, last_eval["accuracy"])
            stop = callback("eval", step, {"accuracy": last_eval["accuracy"],
                                           "per_class": last_eval["per_class"]}) or stop
            checkpoint(step, is_best)
        elif stop:
            checkpoint(step, False)
        stopped = stop and step < total
        if stopped:
            break
    return {"stopped": stopped, "step": step, "eval": last_eval, "ema": ema}
