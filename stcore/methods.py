"""The student methods: one entry each in METHODS, with the few small functions they need.

Every student learns the human labels (cross-entropy, corrections weighted) plus a loss on
unlabeled pool images: the cross-entropy of a strongly augmented view against a target made
from probabilities, on the rows whose confidence clears a threshold. The methods differ in
two things only:
- where the probabilities come from: fixed pool labels, re-made once per round (offline), or
  the model's own prediction on a weak view of the same images in each batch (online);
- which threshold a row must clear.

Each entry holds both: its pool-label source (or online) and its threshold rule, a function.
Adding a method is one entry in METHODS (and, if it makes pool labels in a new way, one
branch in train.round_labels) plus its test.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

STATS_MOMENTUM = 0.99  # class statistics average over ~100 unlabeled batches (FreeMatch uses 0.999 over 1M steps)
STEPS_PER_ROUND = 600  # a student's default budget per round
TEACHER_STEPS = 400    # a teacher's default budget


def every_row(probs: torch.Tensor, stats: dict, cfg) -> float:
    """Threshold rule: every row counts (propagated labels are already weighed by the graph)."""
    return 0.0


def fixed_threshold(probs: torch.Tensor, stats: dict, cfg) -> float:
    """Threshold rule: --threshold for every row."""
    return cfg.threshold


def adaptive_or_fixed(probs: torch.Tensor, stats: dict, cfg) -> torch.Tensor | float:
    """Threshold rule: FreeMatch's per-class thresholds, or --threshold with --no-adaptive-threshold."""
    return adaptive_thresholds(stats)[probs.argmax(1)] if cfg.adaptive_threshold else cfg.threshold


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    online: bool                      # targets from the weak view of each batch, as it trains
    pool_labels: str | None           # offline: 'graph' (propagated) or 'model' (predictions) each round
    row_threshold: Callable = fixed_threshold  # (probs, class stats, cfg) -> the confidence a row must reach
    cuts_pool: bool = False           # sample only pool items whose stored label clears --threshold
    defaults: dict = field(default_factory=dict)  # config values set unless the user gives them
    options: tuple[str, ...] = ()     # config fields it reads besides the shared ones (the page shows these)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("labelprop",
           "your labels spread over a nearest-neighbour graph of the pool (the teacher's probabilities "
           "as a weak prior), learned on mildly augmented images; each round the student's predictions "
           "become the prior and the labels are spread again",
           online=False, pool_labels="graph", row_threshold=every_row, defaults={"rounds": 3, "strength": 0.3},
           options=("rounds", "strength", "distribution_alignment", "balanced", "temperature")),
    Method("consistency",
           "each unlabeled image is labeled from a weak view by the EMA model and that label is learned on "
           "a strong view (FixMatch), above a confidence threshold that adapts per class (FreeMatch) "
           "unless --no-adaptive-threshold",
           online=True, pool_labels=None, row_threshold=adaptive_or_fixed,
           defaults={"rounds": 1, "strength": 1.0, "adaptive_threshold": True},
           options=("adaptive_threshold", "threshold", "target_model", "temperature", "strength",
                    "distribution_alignment", "rounds")),
    Method("self-training",
           "learns the teacher's stored pseudo-labels above --threshold (hard, or its probabilities with "
           "--temperature 1); each round the student re-labels the pool",
           online=False, pool_labels="model", row_threshold=fixed_threshold, cuts_pool=True,
           defaults={"rounds": 1, "strength": 1.0},
           options=("threshold", "temperature", "balanced", "rounds", "strength", "distribution_alignment")),
)}
DEFAULT_METHOD = "labelprop"
TEACHER_METHOD = "supervised"

# Names from earlier versions and the literature: each is a method with options set.
ALIASES: dict[str, tuple[str, dict]] = {
    "freematch": ("consistency", {"adaptive_threshold": True}),
    "fixmatch": ("consistency", {"adaptive_threshold": False, "threshold": 0.9}),
    "meanteacher": ("consistency", {"adaptive_threshold": False, "threshold": 0.0}),
    "pseudo": ("self-training", {}),
    "soft": ("self-training", {"temperature": 1.0}),
}


def alias_meaning(name: str) -> str | None:
    """'fixmatch means --method consistency --no-adaptive-threshold --threshold 0.9', or None."""
    if name not in ALIASES:
        return None
    method, opts = ALIASES[name]
    flags = []
    for k, v in opts.items():
        flag = "--" + k.replace("_", "-")
        flags.append((flag if v else "--no-" + flag[2:]) if isinstance(v, bool) else f"{flag} {v:g}")
    return f"{name} means --method {method}" + "".join(" " + f for f in flags)


# ------------------------------------------------------------------ the small functions
def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Raise probabilities (N, K) to 1/T and renormalize; T < 1 sharpens, T = 1 keeps them,
    T = 0 gives one-hot rows (the argmax)."""
    if temperature == 0:
        return F.one_hot(probs.argmax(1), probs.shape[1]).to(probs.dtype)
    if temperature == 1.0:
        return probs
    return (probs.clamp_min(1e-12).log() / temperature).softmax(1)  # p ** (1/T), normalized, without underflow


def pseudo_targets(probs: torch.Tensor, threshold: float | torch.Tensor,
                   temperature: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets (N, K) from probabilities (N, K): sharpened by 1/temperature (0: one-hot argmax),
    and a float mask (N,) of rows whose max prob >= threshold (a float, or one per row)."""
    probs = probs.detach().float()
    return sharpen(probs, temperature), (probs.max(1).values >= threshold).float()


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy against target distributions (N, K)."""
    return -(targets * F.log_softmax(logits, 1)).sum(1)


def align_distribution(probs: torch.Tensor, p_model: torch.Tensor, p_target: torch.Tensor) -> torch.Tensor:
    """Distribution alignment (ReMixMatch): scale probs (N, K) by p_target / p_model (K,) and
    renormalize, so that classes the model over-predicts lose mass and rare ones gain it."""
    p = probs * (p_target / p_model.clamp_min(1e-6))
    return p / p.sum(1, keepdim=True)


def initial_class_stats(k: int) -> dict:
    return {"p_model": torch.full((k,), 1.0 / k), "tau": torch.tensor(1.0 / k)}


def update_class_stats(stats: dict, probs: torch.Tensor, momentum: float = STATS_MOMENTUM) -> dict:
    """Running means over unlabeled batches: p_model (K,), the mean predicted distribution, and
    tau (), the mean confidence. Both start at 1/K (FreeMatch)."""
    return {"p_model": momentum * stats["p_model"] + (1 - momentum) * probs.mean(0),
            "tau": momentum * stats["tau"] + (1 - momentum) * probs.max(1).values.mean()}


def adaptive_thresholds(stats: dict) -> torch.Tensor:
    """FreeMatch's self-adaptive per-class thresholds (K,): the global mean confidence tau,
    scaled down for classes the model predicts less often (p_model / max p_model). Early on,
    and for hard classes, the threshold is low, so more of the pool is learned from."""
    return stats["tau"] * stats["p_model"] / stats["p_model"].max()


def unlabeled_loss(method: str, logits_strong: torch.Tensor, probs: torch.Tensor, stats: dict,
                   p_target: torch.Tensor, cfg) -> tuple[torch.Tensor, float, dict]:
    """The loss on an unlabeled batch: strong-view logits against targets made from probs (the
    weak view's or the pool labels), the fraction of the batch it used, and the updated class
    statistics."""
    stats = update_class_stats(stats, probs)
    if cfg.distribution_alignment:
        probs = align_distribution(probs, stats["p_model"], p_target)
    targets, mask = pseudo_targets(probs, METHODS[method].row_threshold(probs, stats, cfg), cfg.temperature)
    return (soft_cross_entropy(logits_strong, targets) * mask).mean(), mask.mean().item(), stats


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
    """Indices into the pool (n items) that a student samples from: self-training keeps the items
    whose stored label is at least threshold confident; balanced keeps the same number of items
    per predicted class, most confident first."""
    if probs is None:
        return torch.arange(n)
    keep = torch.arange(n, device=probs.device)
    if METHODS[method].cuts_pool:
        keep = (probs.max(1).values >= threshold).nonzero().squeeze(1)
    if balanced and len(keep):
        keep = keep[balanced_selection(probs[keep], max(1, len(keep) // probs.shape[1]))]
    return keep
