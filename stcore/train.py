"""The one training loop, for teachers and students, in plain functions.

`fit` samples batches, augments them on the device, computes the loss of the run's method
(methods.py), steps the optimizer, keeps an EMA of the weights, evaluates the EMA, saves a
checkpoint and reports through one callback. A student's pool labels are made at the start
and again at each round (`round_labels`).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from . import augment, balance, graph as graph_mod
from .checkpoints import save_checkpoint
from .config import TrainConfig, to_dict
from .data import TrainData
from .distributed import Group
from .errors import NonFiniteLoss, UsageError
from .methods import METHODS, initial_class_stats, select_unlabeled, unlabeled_loss
from .metrics import confusion, summarize
from .pseudo import as_stored, normalize, predict

EVAL_SUBSET = 2000  # test images in the evaluations along a run; the last one uses them all
PRIOR_WEIGHT = graph_mod.PRIOR_WEIGHT

# callback(kind, step, values) -> True to ask the loop to stop (after saving a checkpoint).
# kind is 'train' (loss, lr, samples/s), 'eval' (accuracy on the evaluation subset),
# 'phase' (what the run does between steps, with its progress) or 'checkpoint'.
Callback = Callable[[str, int, dict], bool]


class Cancelled(Exception):
    """The callback asked to stop during a phase between training steps."""


@dataclass
class Loop:
    """What one run changes as it trains; a checkpoint saves all of it."""
    model: torch.nn.Module
    ema: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    gen: torch.Generator
    step: int = 0
    stats: dict = field(default_factory=dict)   # running class statistics of the unlabeled batches
    labels: torch.Tensor | None = None          # offline students: the pool labels (n_unl, K) of this round
    active: torch.Tensor | None = None          # pool indices the student samples from
    graph: graph_mod.Graph | None = None        # labelprop's graph of the labeled set + pool
    net: torch.nn.Module | None = None          # model wrapped for training on several processes (DDP)
    draw_lab: torch.Tensor | None = None        # how likely each labeled row is drawn (balance); None: uniform


# ------------------------------------------------------------------ small pieces
@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, m in zip(ema.parameters(), model.parameters()):
        e.lerp_(m.detach(), 1 - decay)
    for e, m in zip(ema.buffers(), model.buffers()):
        e.copy_(m)


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


def total_steps(cfg: TrainConfig, data: TrainData) -> int:
    """cfg.steps, or the steps that make cfg.epochs passes over the role's main set."""
    if cfg.steps:
        return cfg.steps
    if cfg.role == "student" and len(data.x_unl):
        per, n = cfg.batch_size * cfg.unlabeled_ratio, len(data.x_unl)
    else:
        per, n = cfg.batch_size, len(data.x_lab)
    return max(1, math.ceil(cfg.epochs * n / per))


def eval_subset(y: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of at most n test items, the same for every run of a project: each class's items
    shuffled, then taken class by class in turn, so every class is measured (a folder's test set
    is stored class by class, and its first rows would hold only the first classes)."""
    if len(y) <= n:
        return torch.arange(len(y))
    g = torch.Generator().manual_seed(seed)
    per_class = [idx[torch.randperm(len(idx), generator=g)] for c in y.unique()
                 if len(idx := (y == c).nonzero().squeeze(1))]
    longest = max(len(p) for p in per_class)
    order = torch.stack([torch.cat([p, p.new_full((longest - len(p),), -1)]) for p in per_class], 1).flatten()
    return order[order >= 0][:n].sort().values


def propagated_labels(g: graph_mod.Graph, data: TrainData, probs: torch.Tensor | None,
                      weight: float, p_target: torch.Tensor | None) -> torch.Tensor:
    """Pool labels (n_unl, K): the human labels (x_lab, weighted by w_lab, no class above its cap:
    balance) spread over the graph whose nodes are x_lab then x_unl, with probs (n_unl, K) * weight
    as the prior, then, unless p_target is None, aligned to the class mix p_target (K,):
    propagation favours classes whose images crowd together, and the pool's labels should not."""
    seeds = balance.balanced_weights(data.y_lab, data.w_lab, class_mix(data))
    return graph_mod.spread_labels(g, len(data.x_lab), data.y_lab, seeds, len(data.classes), probs, weight, p_target)


# ------------------------------------------------------------------ evaluation
@torch.inference_mode()
def predict_probs(model: torch.nn.Module, x: torch.Tensor, *, device: str = "cpu",
                  progress: Callable[[int, int], None] | None = None, runtime: str = "torch",
                  precise: bool = False) -> torch.Tensor:
    """The model's probabilities (N, K) on the CPU for uint8 images x, in eval mode (runtime: see
    pseudo.predict)."""
    was_training = model.training
    probs = [p for _, p in predict(model, x, device=device, progress=progress, runtime=runtime, precise=precise)]
    model.train(was_training)
    return torch.cat(probs) if probs else torch.zeros(0, 0)


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, classes: list[str], *,
             device: str = "cpu") -> tuple[dict, torch.Tensor]:
    """(accuracy, per-class metrics and confusion matrix; the probabilities (N, K)) on images x."""
    probs = as_stored(predict_probs(model, x, device=device))
    pred = probs.argmax(1) if len(probs) else torch.zeros(0, dtype=torch.long)
    return summarize(confusion(y.cpu(), pred, len(classes)), classes), probs


# ------------------------------------------------------------------ setting a run up
def new_loop(model: torch.nn.Module, cfg: TrainConfig, total: int, resume: dict | None) -> Loop:
    """Model, EMA, optimizer and schedule of a run, restored from resume (a checkpoint) if given."""
    ema = copy.deepcopy(model).eval()  # the EMA labels weak views in eval mode (Mean Teacher)
    for p in ema.parameters():
        p.requires_grad_(False)
    # No weight decay on BatchNorm and biases, as is usual for small-data training.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_lr(total, max(1, total // 20), cfg.rounds))
    loop = Loop(model, ema, opt, sched, torch.Generator().manual_seed(cfg.seed))
    torch.manual_seed(cfg.seed)
    if resume:
        model.load_state_dict(resume["model"])
        ema.load_state_dict(resume["ema"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        loop.step = resume["step"]
        loop.gen.set_state(resume["rng"]["sampler"])
        torch.set_rng_state(resume["rng"]["torch"])
        loop.stats = resume.get("class_stats") or {}
    return loop


def on_device(data: TrainData, loop: Loop, k: int, device: str) -> TrainData:
    """Move the (small, uint8) dataset and the loop's tensors to the device, once."""
    loop.model.to(device).train()
    loop.ema.to(device)
    loop.stats = {n: t.to(device) for n, t in (loop.stats or initial_class_stats(k)).items()}
    if device == "cpu":
        return data
    return TrainData(**{n: (v.to(device) if isinstance(v, torch.Tensor) else v) for n, v in vars(data).items()})


def class_mix(data: TrainData) -> torch.Tensor:
    """The labeled set's class frequencies (K,), smoothed: what distribution alignment aims for."""
    prior = data.class_prior if data.class_prior is not None else torch.bincount(
        data.y_lab.cpu(), minlength=len(data.classes))
    return ((prior.float() + 1) / (prior.float() + 1).sum()).to(data.y_lab.device)


def pool_target(data: TrainData) -> torch.Tensor:
    """The class mix (K,) the pool's labels are aligned to: class_mix less what the human labels
    took out of the pool (a bulk accept of one class leaves little of it there)."""
    return balance.pool_mix(class_mix(data), data.y_lab, len(data.x_unl)).to(data.y_lab.device)


def phase(callback: Callback, step: int, text: str, done: int = 0, total: int = 0,
          started: float | None = None) -> None:
    """Report what the run does between steps, with its progress; Cancelled if asked to stop."""
    if callback("phase", step, {"phase": text, "done": done, "total": total,
                                "started": started if started is not None else time.time()}):
        raise Cancelled


# ------------------------------------------------------------------ a student's pool labels
def first_labels(loop: Loop, data: TrainData, cfg: TrainConfig, total: int, device: str,
                 callback: Callback, resume: dict | None) -> None:
    """The pool labels a student starts with: the teacher's stored probabilities (self-training),
    those spread over the graph (labelprop), or none (online methods label as they go). A
    resumed later round keeps the labels saved with its checkpoint, unless the pool changed
    while it was paused; then the round starts again from the stored pseudo-labels."""
    method, loop.labels = METHODS[cfg.method], data.p_unl
    saved = (resume or {}).get("p_unl")
    resumed = saved is not None and len(saved) == len(data.x_unl)
    if resumed:
        loop.labels = saved.float().to(device)
    round_len = math.ceil(total / cfg.rounds)
    # A run resumed inside its last round with its labels re-labels nothing more: no graph.
    if method.pool_labels == "graph" and (not resumed or loop.step < round_len * (cfg.rounds - 1)):
        loop.graph = build_graph(data, device, callback, loop.step)
        if loop.graph is None and loop.labels is None:
            raise UsageError("labelprop's graph needs at least 3 images (the labeled set and the pool); "
                             "add images, or use another --method")
        if loop.graph is not None and not resumed:
            loop.labels = propagated_labels(loop.graph, data, loop.labels, PRIOR_WEIGHT["teacher"],
                                            pool_target(data) if cfg.distribution_alignment else None).to(device)
    loop.active = select_unlabeled(loop.labels, len(data.x_unl), cfg.method, cfg.threshold, cfg.balanced).to(device)
    if len(loop.active) == 0:
        raise UsageError(f"no unreviewed pseudo-labels with confidence >= {cfg.threshold}; lower --threshold")


def build_graph(data: TrainData, device: str, callback: Callback, step: int) -> graph_mod.Graph | None:
    n = len(data.x_lab) + len(data.x_unl)
    if not graph_mod.buildable(n):
        return None
    text, started = f"building the nearest-neighbour graph of {n:,} images", time.time()
    phase(callback, step, text, 0, n, started)
    progress = lambda d, t: phase(callback, step, text, d, t, started)
    if data.knn is not None:  # the project's embedding: cut from its k-NN lists (neighbours.py)
        return graph_mod.restricted(*data.knn, torch.tensor(data.rows_lab + data.rows_unl, dtype=torch.long))
    return graph_mod.pixel_graph(torch.cat([data.x_lab.cpu(), data.x_unl.cpu()]), device, progress)


def round_labels(loop: Loop, data: TrainData, cfg: TrainConfig, device: str, callback: Callback,
                 round_no: int) -> None:
    """Noisy Student: at a new round the student so far re-labels the pool (through the graph
    for labelprop) and becomes the teacher of the round."""
    n, started = len(data.x_unl), time.time()
    text = f"re-labeling {n:,} pool images for round {round_no} of {cfg.rounds}"
    phase(callback, loop.step, text, 0, n, started)
    probs = predict_probs(loop.ema, data.x_unl, device=device, runtime="auto",
                          progress=lambda d, t: phase(callback, loop.step, text, d, t, started)).to(device)
    if loop.graph is not None:
        probs = propagated_labels(loop.graph, data, probs, PRIOR_WEIGHT["student"],
                                  pool_target(data) if cfg.distribution_alignment else None).to(device)
    picked = select_unlabeled(probs, n, cfg.method, cfg.threshold, cfg.balanced)
    if len(picked):  # else nothing is confident enough yet: keep the last round's labels
        loop.labels, loop.active = probs, picked.to(device)


# ------------------------------------------------------------------ one step
def train_step(loop: Loop, data: TrainData, cfg: TrainConfig, p_target: torch.Tensor,
               student: bool) -> tuple[float, float, float]:
    """One optimizer step on a batch of labeled (and, for a student, unlabeled) images.
    Returns (loss, unlabeled loss, fraction of the unlabeled batch used)."""
    dev = data.y_lab.device
    B, U = cfg.batch_size, cfg.batch_size * cfg.unlabeled_ratio
    pick = lambda n, size: torch.randint(n, (size,), generator=loop.gen).to(dev)
    aug_lab = augment.strong if cfg.label_aug == "strong" else augment.weak
    i = balance.draw(len(data.x_lab), B, loop.gen, loop.draw_lab).to(dev)
    xl = aug_lab(normalize(data.x_lab[i]), flip=data.flip, g=loop.gen)
    yl, wl = data.y_lab[i], data.w_lab[i]
    lu, used = torch.zeros((), device=dev), 0.0
    net = loop.net or loop.model
    if student:
        j = loop.active[pick(len(loop.active), U)]
        xu = normalize(data.x_unl[j])
        logits = net(torch.cat([xl, augment.strong(xu, flip=data.flip, g=loop.gen, magnitude=cfg.strength)]))
        if METHODS[cfg.method].online:  # pseudo-label the weak view of the same images (FixMatch)
            with torch.no_grad():
                labeler = loop.ema if cfg.target_model == "ema" else loop.model
                probs = torch.softmax(labeler(augment.weak(xu, flip=data.flip, g=loop.gen)).float(), 1)
        else:
            probs = loop.labels[j].float()
        lu, used, loop.stats = unlabeled_loss(cfg.method, logits[B:], probs, loop.stats, p_target, cfg)
        logits = logits[:B]
    else:
        logits = net(xl)
    loss = (F.cross_entropy(logits, yl, reduction="none") * wl).sum() / wl.sum() + cfg.unlabeled_weight * lu
    if not torch.isfinite(loss):
        raise NonFiniteLoss(f"loss became {loss.item()} at step {loop.step + 1}; lower --lr "
                            f"(now {cfg.lr}) or check the data")
    loop.opt.zero_grad(set_to_none=True)
    loss.backward()
    loop.opt.step()
    loop.sched.step()
    loop.step += 1
    # Warm the EMA up: early on, a decay of 0.99 would average mostly the random init.
    update_ema(loop.ema, loop.model, min(cfg.ema_decay, (1 + loop.step) / (10 + loop.step)))
    return loss.item(), lu.item(), used


class Meter:
    """Averages of the step results between two metric rows, and the training throughput."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.t0, self.seen, self.sums, self.n = time.perf_counter(), 0, [0.0, 0.0, 0.0], 0

    def add(self, results: tuple[float, float, float], samples: int) -> None:
        self.sums = [a + b for a, b in zip(self.sums, results)]
        self.n, self.seen = self.n + 1, self.seen + samples

    def row(self, lr: float) -> dict:
        dt, (loss, lu, used) = time.perf_counter() - self.t0, (s / max(1, self.n) for s in self.sums)
        out = {"loss": loss, "unlabeled_loss": lu, "mask_rate": used, "lr": lr,
               "samples_per_s": self.seen / dt if dt > 0 else 0.0}
        self.reset()
        return out


def checkpoint_state(loop: Loop, cfg: TrainConfig, extra: dict | None) -> dict:
    """One dict with everything a resume needs (USB's get_save_dict), plus extra (the project's
    id, classes and input shape, so that a checkpoint can be checked before use)."""
    return {"model": loop.model.state_dict(), "ema": loop.ema.state_dict(), "optimizer": loop.opt.state_dict(),
            "scheduler": loop.sched.state_dict(), "step": loop.step, "config": to_dict(cfg),
            "rng": {"sampler": loop.gen.get_state(), "torch": torch.get_rng_state()}, "class_stats": loop.stats,
            # a later round's pool labels are the student's own: keep them to resume
            "p_unl": loop.labels.half().cpu() if loop.labels is not None and cfg.rounds > 1 else None,
            **(extra or {})}


# ------------------------------------------------------------------ the loop
def check_pool_labels(cfg: TrainConfig, data: TrainData, student: bool) -> None:
    """UsageError when a student's method needs the teacher's stored pseudo-labels and there are none."""
    if student and data.p_unl is None and (METHODS[cfg.method].pool_labels == "model" or cfg.balanced):
        raise UsageError(f"the {cfg.method} student{' with --balanced' if cfg.balanced else ''} needs the "
                         f"teacher's pseudo-labels; run pseudo-label first")


def fit(model: torch.nn.Module, data: TrainData, cfg: TrainConfig, *, device: str = "cpu",
        callback: Callback | None = None, checkpoint_dir: Path | None = None,
        resume: dict | None = None, extra: dict | None = None, group: Group | None = None) -> dict:
    """Train model in place on data. Returns {'stopped', 'step', 'eval' (the last evaluation),
    'test_probs' (the EMA's probabilities on the whole test set, after the last step), 'ema',
    'model'}. The EMA model is what is evaluated, checkpointed (runs/RUN/latest.pt) and exported;
    no checkpoint is chosen by its test accuracy.

    group: this process's rank in a run on several processes. Each rank then trains on its own
    share of the batch (DDP averages the gradients); rank 0 alone labels a student's pool,
    evaluates, reports through callback and checkpoints, and the ranks stop at the same step."""
    callback = callback or (lambda *a: False)
    total, k = total_steps(cfg, data), len(data.classes)
    student = cfg.role == "student" and len(data.x_unl) > 0
    check_pool_labels(cfg, data, student)
    loop = new_loop(model, cfg, total, resume)
    lead, world = group is None or group.lead, group.world if group else 1
    data = on_device(data, loop, k, device)
    local, callback = (cfg, callback) if group is None else as_rank(loop, cfg, group, callback)
    p_target, round_len = pool_target(data), math.ceil(total / cfg.rounds)
    # a class with far more human labels than its share (a bulk accept) is drawn less often
    loop.draw_lab = balance.draw_weights(data.y_lab, data.w_lab, class_mix(data))
    eval_idx, eval_every = eval_subset(data.y_test.cpu(), EVAL_SUBSET), cfg.eval_every or max(1, total // 10)
    meter, last_eval, test_probs, stopped = Meter(), None, None, False
    samples = local.batch_size * (1 + student * cfg.unlabeled_ratio) * world

    def save() -> None:
        if checkpoint_dir is not None and lead:
            save_checkpoint(checkpoint_dir / "latest.pt", checkpoint_state(loop, cfg, extra))
            callback("checkpoint", loop.step, {})

    def pool_labels(make) -> None:
        if lead:
            make()
        if group is not None:
            sent = (loop.labels.cpu() if loop.labels is not None else None, loop.active.cpu()) if lead else None
            loop.labels, loop.active = (t.to(device) if t is not None else None for t in group.share(sent))
    try:
        if student:
            pool_labels(lambda: first_labels(loop, data, cfg, total, device, callback, resume))
        while loop.step < total and not stopped:
            if student and loop.step and loop.step % round_len == 0:
                pool_labels(lambda: round_labels(loop, data, cfg, device, callback, loop.step // round_len + 1))
            meter.add(train_step(loop, data, local, p_target, student), samples)
            final = loop.step == total
            log_due, eval_due = loop.step % cfg.log_every == 0 or final, loop.step % eval_every == 0 or final
            stop = log_due and callback("train", loop.step, meter.row(loop.sched.get_last_lr()[0]))
            if eval_due and lead:
                last_eval, test_probs, asked = evaluate_ema(loop, data, eval_idx, final, device, callback)
                stop = asked or stop
            if group is not None and (log_due or eval_due):
                stop = group.any_stop(bool(stop))
            if stop or eval_due:
                save()
            stopped = bool(stop) and not final
    except Cancelled:
        save()
        stopped = True
    return {"stopped": stopped, "step": loop.step, "eval": last_eval, "test_probs": test_probs, "ema": loop.ema,
            "model": loop.model}


def as_rank(loop: Loop, cfg: TrainConfig, group: Group, callback: Callback) -> tuple[TrainConfig, Callback]:
    """One rank's part of a run on several processes: its own batches (rank 0 keeps the run's
    random stream), the model wrapped in DDP, its share of the batch, and a callback that keeps
    a stop asked for during a phase for the next training row."""
    if not group.lead:
        loop.gen.manual_seed(cfg.seed + 100_003 * group.rank + loop.step)
    loop.net = group.wrap(loop.model)
    return dataclasses.replace(cfg, batch_size=group.local_batch(cfg.batch_size)), deferred_phase_stops(callback)


def evaluate_ema(loop: Loop, data: TrainData, eval_idx: torch.Tensor, final: bool, device: str,
                 callback: Callback) -> tuple[dict, torch.Tensor | None, bool]:
    """The EMA's evaluation: on the fixed stratified subset along the run, on the whole test set
    after the last step. (the evaluation, the test-set probabilities after the last step else
    None, whether the callback asks to stop)."""
    x, y = (data.x_test, data.y_test) if final else (data.x_test[eval_idx], data.y_test[eval_idx])
    result, probs = evaluate(loop.ema, x, y, data.classes, device=device)
    stop = callback("eval", loop.step, {"accuracy": result["accuracy"], "per_class": result["per_class"],
                                        "n": len(y)})
    return result, (probs if final else None), bool(stop)


def deferred_phase_stops(callback: Callback) -> Callback:
    """A callback for rank 0 of several: a stop asked for during a phase (which rank 0 runs alone,
    while the others wait) is kept for the next training row, where every rank stops together."""
    asked = [False]

    def wrapped(kind: str, step: int, values: dict) -> bool:
        wants = bool(callback(kind, step, values))
        if kind == "phase":
            asked[0] = asked[0] or wants
            return False
        return wants or asked[0]
    return wrapped
