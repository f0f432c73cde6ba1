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

from . import augment, graph as graph_mod
from .config import TrainConfig, to_dict
from .metrics import confusion, summarize
from .pseudo import normalize, predict

DEFAULT_STEPS = {"teacher": 400, "student": 600}  # a student's default: this many per round
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
    class_prior: torch.Tensor | None = None  # (K,) label counts of the original labeled set


# ------------------------------------------------------------------ method pieces
# Online methods label the weak view of each unlabeled batch as they train; offline methods
# learn the stored pseudo-labels of a teacher (re-labeled by the student every round);
# labelprop learns labels propagated from the human labels over a graph of the pool, with the
# teacher's (then each round the student's) probabilities as a prior.
ONLINE = ("freematch", "fixmatch", "meanteacher")
OFFLINE = ("labelprop", "pseudo", "soft")
THRESHOLDED = ("pseudo", "soft")  # learn only the stored pseudo-labels at least --threshold confident
PRIOR_WEIGHT = {"teacher": 0.2, "student": 0.5}  # the model's probabilities against a label's 1
STATS_MOMENTUM = 0.99  # class statistics average over ~100 unlabeled batches (FreeMatch uses 0.999 over 1M steps)


def pseudo_targets(probs: torch.Tensor, threshold: float | torch.Tensor,
                   temperature: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets (N, K) from probabilities (N, K): sharpened by 1/temperature (0: one-hot argmax),
    and a float mask (N,) of rows whose max prob >= threshold (a float, or one per row)."""
    probs = probs.detach().float()
    return sharpen(probs, temperature), (probs.max(1).values >= threshold).float()


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Raise probabilities (N, K) to 1/T and renormalize; T < 1 sharpens, T = 1 keeps them,
    T = 0 gives one-hot rows (the argmax)."""
    if temperature == 0:
        return F.one_hot(probs.argmax(1), probs.shape[1]).to(probs.dtype)
    if temperature == 1.0:
        return probs
    p = probs.clamp_min(1e-12) ** (1.0 / temperature)
    return p / p.sum(1, keepdim=True)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy against target distributions (N, K)."""
    return -(targets * F.log_softmax(logits, 1)).sum(1)


def align_distribution(probs: torch.Tensor, p_model: torch.Tensor, p_target: torch.Tensor) -> torch.Tensor:
    """Distribution alignment (ReMixMatch): scale probs (N, K) by p_target / p_model (K,) and
    renormalize, so that classes the model over-predicts lose mass and rare ones gain it."""
    p = probs * (p_target / p_model.clamp_min(1e-6))
    return p / p.sum(1, keepdim=True)


def update_class_stats(stats: dict, probs: torch.Tensor, momentum: float = STATS_MOMENTUM) -> dict:
    """Running means over unlabeled batches: p_model (K,), the mean predicted distribution, and
    tau (), the mean confidence. Both start at 1/K (FreeMatch)."""
    return {"p_model": momentum * stats["p_model"] + (1 - momentum) * probs.mean(0),
            "tau": momentum * stats["tau"] + (1 - momentum) * probs.max(1).values.mean()}


def initial_class_stats(k: int) -> dict:
    return {"p_model": torch.full((k,), 1.0 / k), "tau": torch.tensor(1.0 / k)}


def adaptive_thresholds(stats: dict) -> torch.Tensor:
    """FreeMatch's self-adaptive per-class thresholds (K,): the global mean confidence tau,
    scaled down for classes the model predicts less often (p_model / max p_model). Early on,
    and for hard classes, the threshold is low, so more of the pool is learned from."""
    return stats["tau"] * stats["p_model"] / stats["p_model"].max()


def balanced_selection(probs: torch.Tensor, per_class: int) -> torch.Tensor:
    """Noisy Student's class balancing: for each predicted class, the indices of its per_class
    most confident rows of probs (N, K); a class with fewer rows has them repeated to fill."""
    conf, pred = probs.max(1)
    picked = []
    for c in range(probs.shape[1]):
        idx = (pred == c).nonzero().squeeze(1)
        if len(idx) == 0:
            continue
        idx = idx[conf[idx].argsort(descending=True)[:per_class]]
        picked.append(idx.repeat(-(-per_class // len(idx)))[:per_class])
    return torch.cat(picked) if picked else torch.zeros(0, dtype=torch.long)


def select_unlabeled(probs: torch.Tensor | None, n: int, method: str, threshold: float,
                     balanced: bool) -> torch.Tensor:
    """Indices into the pool (n items) that a student samples from. Offline methods keep the
    items whose stored pseudo-label is at least threshold confident; balanced keeps the same
    number of items per predicted class, most confident first."""
    if probs is None:
        return torch.arange(n)
    keep = torch.arange(n, device=probs.device)
    if method in THRESHOLDED:
        keep = (probs.max(1).values >= threshold).nonzero().squeeze(1)
    if balanced and len(keep):
        keep = keep[balanced_selection(probs[keep], max(1, len(keep) // probs.shape[1]))]
    return keep


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, m in zip(ema.parameters(), model.parameters()):
        e.lerp_(m.detach(), 1 - decay)
    for e, m in zip(ema.buffers(), model.buffers()):
        e.copy_(m)


def unlabeled_loss(method: str, logits_strong: torch.Tensor, probs: torch.Tensor, stats: dict,
                   p_target: torch.Tensor, cfg: TrainConfig) -> tuple[torch.Tensor, float, dict]:
    """The student's loss on an unlabeled batch (strong-view logits against targets made from
    probs, the weak view's or the teacher's probabilities), the fraction of the batch it used,
    and the updated class statistics."""
    stats = update_class_stats(stats, probs)
    if cfg.distribution_alignment:
        probs = align_distribution(probs, stats["p_model"], p_target)
    match method:
        case "freematch":
            threshold = adaptive_thresholds(stats)[probs.argmax(1)]
        case "fixmatch" | "pseudo" | "soft":
            threshold = cfg.threshold
        case "meanteacher" | "labelprop":  # every item counts, no confidence mask
            threshold = 0.0
        case _:
            raise ValueError(f"unknown student method {method!r}")
    targets, mask = pseudo_targets(probs, threshold, cfg.resolved_temperature)
    return (soft_cross_entropy(logits_strong, targets) * mask).mean(), mask.mean().item(), stats


def cosine_lr(total: int, warmup: int, cycles: int = 1) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to 5% of the peak (a factor for LambdaLR). With
    cycles > 1 the decay restarts at each round, so that each round ends at a low rate."""
    length = math.ceil(total / cycles)

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        start = warmup if step < length else 0
        t = (step % length - start) / max(1, length - start)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


def propagated_labels(g: "graph_mod.Graph", data: TrainData, probs: torch.Tensor | None,
                      weight: float, p_target: torch.Tensor | None) -> torch.Tensor:
    """Pool pseudo-labels (n_unl, K): the human labels (x_lab, weighted by w_lab) spread over
    the graph whose nodes are x_lab then x_unl, with probs (n_unl, K) * weight as the prior,
    then, unless p_target is None, aligned to the class mix p_target (K,): propagation favours
    classes whose images crowd together, and the pool's labels should not."""
    n_lab, k = len(data.x_lab), len(data.classes)
    seeds = torch.zeros(g.size, k)
    seeds[torch.arange(n_lab), data.y_lab.cpu()] = data.w_lab.float().cpu()
    prior = torch.zeros(g.size, k)
    if probs is not None:
        prior[n_lab:] = weight * probs.float().cpu()
    f = graph_mod.propagate(g, seeds, prior)[n_lab:]
    return f if p_target is None else align_distribution(f, f.mean(0), p_target.float().cpu())


def total_steps(cfg: TrainConfig, data: TrainData) -> int:
    if cfg.steps:
        return cfg.steps
    if cfg.epochs:
        if cfg.role == "student" and len(data.x_unl):
            per, n = cfg.batch_size * cfg.unlabeled_ratio, len(data.x_unl)
        else:
            per, n = cfg.batch_size, len(data.x_lab)
        return max(1, math.ceil(cfg.epochs * n / per))
    return default_steps(cfg)


def default_steps(cfg: TrainConfig) -> int:
    """The budget when neither steps nor epochs is given: 400 for a teacher, 600 per round for a
    student (labelprop: 3 rounds, 1,800 steps)."""
    return DEFAULT_STEPS[cfg.role] * (cfg.resolved_rounds if cfg.role == "student" else 1)


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
@torch.no_grad()
def label_pool(model: torch.nn.Module, x: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """The model's probabilities (N, K) for uint8 images x, in eval mode (a new round's pseudo-labels)."""
    was_training = model.training
    probs = torch.cat([p for _, p in predict(model, x, device=device)]) if len(x) else None
    model.train(was_training)
    return probs.to(x.device) if probs is not None else None


def fit(model: torch.nn.Module, data: TrainData, cfg: TrainConfig, *, device: str = "cpu",
        callback: Callback | None = None, checkpoint_dir: Path | None = None,
        resume: dict | None = None, extra: dict | None = None) -> dict:
    """Train model in place on data. Returns {'stopped': bool, 'step': int, 'eval': dict | None, 'ema': model}.

    The EMA model is what gets evaluated and exported. extra is stored in each checkpoint
    (the project id, classes and input shape, so that a checkpoint can be checked before use).
    """
    method = cfg.resolved_method
    callback = callback or (lambda *a: False)
    total = total_steps(cfg, data)
    student = cfg.role == "student" and len(data.x_unl) > 0
    online = method in ONLINE
    k = len(data.classes)
    if student and data.p_unl is None and (method in THRESHOLDED or cfg.balanced):
        raise ValueError(f"the {method} student{' with --balanced' if cfg.balanced else ''} needs the "
                         f"teacher's pseudo-labels; run pseudo-label first")
    model.to(device).train()
    ema = copy.deepcopy(model).eval()  # the EMA labels weak views in eval mode (Mean Teacher)
    for p in ema.parameters():
        p.requires_grad_(False)
    # No weight decay on BatchNorm and biases, as is usual for small-data training.
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, momentum=0.9, nesterov=True)
    rounds = cfg.resolved_rounds
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_lr(total, max(1, total // 20), rounds))
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    step, best = 0, -1.0
    stats = initial_class_stats(k)
    p_unl, resumed_labels = data.p_unl, False
    if resume:
        model.load_state_dict(resume["model"])
        ema.load_state_dict(resume["ema"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        step, best = resume["step"], resume.get("best", -1.0)
        g.set_state(resume["rng"]["sampler"])
        torch.set_rng_state(resume["rng"]["torch"])
        stats = resume.get("class_stats", stats)
        # A later round's labels, saved with the checkpoint; unless the pool changed meanwhile
        # (items reviewed or undone): then the round starts again from the stored pseudo-labels.
        if resume.get("p_unl") is not None and len(resume["p_unl"]) == len(data.x_unl):
            p_unl, resumed_labels = resume["p_unl"].float(), True

    if device != "cpu":  # small uint8 datasets fit on the device; saves a copy per step
        data = TrainData(**{k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                            for k, v in vars(data).items()})
        p_unl = p_unl.to(device) if p_unl is not None else None
        stats = {n: t.to(device) for n, t in stats.items()}
    # Distribution alignment pulls the pool's predictions (and labelprop's propagated labels)
    # toward the labeled class frequencies.
    prior = data.class_prior if data.class_prior is not None else torch.bincount(data.y_lab, minlength=k)
    p_target = (prior.float() + 1) / (prior.float() + 1).sum()
    align_to = p_target if cfg.distribution_alignment else None
    # labelprop: spread the human labels over a graph of the images, the teacher's probabilities
    # as the prior. A resumed later round keeps the labels it had (saved with the checkpoint), and
    # a run resumed inside its last round, which re-labels nothing more, needs no graph at all.
    round_len = math.ceil(total / rounds)
    pool_graph = None
    needs_graph = not resumed_labels or step < round_len * (rounds - 1)
    if student and method == "labelprop" and needs_graph:
        n_nodes = len(data.x_lab) + len(data.x_unl)
        if graph_mod.buildable(n_nodes):
            callback("phase", step, {"phase": f"building the nearest-neighbour graph of {n_nodes:,} images"})
        pool_graph = graph_mod.pixel_graph(torch.cat([data.x_lab.cpu(), data.x_unl.cpu()]), device)
        if pool_graph is None and p_unl is None:
            raise ValueError(f"the pool is too large for labelprop's graph (over {graph_mod.MAX_NODES:,} "
                             f"images) and has no pseudo-labels; run pseudo-label first")
        if pool_graph is not None and not resumed_labels:
            p_unl = propagated_labels(pool_graph, data, p_unl, PRIOR_WEIGHT["teacher"], align_to).to(device)
    active = select_unlabeled(p_unl, len(data.x_unl), method, cfg.threshold, cfg.balanced).to(device) \
        if student else None
    if student and len(active) == 0:
        raise ValueError(f"no unreviewed pseudo-labels with confidence >= {cfg.threshold}; lower --threshold")
    eval_every = cfg.eval_every or max(1, total // 10)
    B, U = cfg.batch_size, cfg.batch_size * cfg.unlabeled_ratio
    labeler = ema if cfg.target_model == "ema" else model

    def state(step: int) -> dict:
        return {"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "step": step, "best": best, "config": to_dict(cfg),
                "rng": {"sampler": g.get_state(), "torch": torch.get_rng_state()}, "class_stats": stats,
                # a later round's pseudo-labels are the student's own: keep them to resume
                "p_unl": p_unl.half().cpu() if p_unl is not None and rounds > 1 else None,
                **(extra or {})}

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

    aug_lab = augment.strong if cfg.label_aug == "strong" else augment.weak
    strength = cfg.resolved_strength
    last_eval, stopped = None, False
    t0, seen, acc_loss, acc_lu, acc_mask, n_acc = time.perf_counter(), 0, 0.0, 0.0, 0.0, 0
    while step < total and not stopped:
        if student and step and step % round_len == 0:
            # Noisy Student: the student so far becomes the teacher of the next round.
            callback("phase", step, {"phase": f"re-labeling {len(data.x_unl):,} pool images for round "
                                              f"{step // round_len + 1} of {rounds}"})
            relabeled = label_pool(ema, data.x_unl, device)
            if pool_graph is not None:
                relabeled = propagated_labels(pool_graph, data, relabeled, PRIOR_WEIGHT["student"],
                                              align_to).to(device)
            picked = select_unlabeled(relabeled, len(data.x_unl), method, cfg.threshold, cfg.balanced)
            if len(picked):  # else nothing is confident enough yet: keep the last round's labels
                p_unl, active = relabeled, picked.to(device)
        i = pick(len(data.x_lab), B)
        xl = aug_lab(normalize(data.x_lab[i]), flip=data.flip, g=g)
        yl, wl = data.y_lab[i], data.w_lab[i]
        if student:
            j = active[pick(len(active), U)]
            xu = normalize(data.x_unl[j])
            xu_s = augment.strong(xu, flip=data.flip, g=g, magnitude=strength)
            logits = model(torch.cat([xl, xu_s]))
            lab_loss = (F.cross_entropy(logits[:B], yl, reduction="none") * wl).sum() / wl.sum()
            if online:  # pseudo-label the weak view of the same images (FixMatch)
                with torch.no_grad():
                    pu = torch.softmax(labeler(augment.weak(xu, flip=data.flip, g=g)).float(), 1)
            else:
                pu = p_unl[j].float()
            lu, used, stats = unlabeled_loss(method, logits[B:], pu, stats, p_target, cfg)
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
        acc_lu += lu.item()
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
