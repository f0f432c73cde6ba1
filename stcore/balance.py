"""Human labels in a lopsided class mix, kept from flooding the other classes.

A bulk accept can make the human labels lopsided: 4,000-5,000 Trousers beside 10 labels of
every other class (Fashion-MNIST, 10 labels per class). Learned as they come, the next student
lost 38 points on Dress (benchmarks/lopsided.py), for three reasons, each handled here:
- labeled batches were drawn uniformly, so 98% Trouser: a class's labels are now drawn (and, in
  the head's full-batch loss, weighed) at most CAP times as much as the median class's, per
  unit of its expected share (the class mix of the original labeled set);
- in label propagation Trouser's seeds carried 500 times the mass of any other class's, and
  flooded the images beside them: the seeds are capped the same way (the smallest of the three
  effects on a student; it keeps the pool's labels from over-predicting Trouser by 40%);
- the pool's labels were aligned to the labeled mix (10% Trouser) although the accept had taken
  most Trousers out of the pool (about 2% left), which turned Dresses into Trousers: they are now
  aligned to the mix the human labels left in the pool (pool_mix).
A class with more labels because the reviews went there (the hard classes, under the default
review order) stays within the cap and keeps them.
"""
from __future__ import annotations

import torch

CAP = 3.0  # a class's labels weigh at most this many times the median class's, per unit of expected share


def class_scale(labels: torch.Tensor, weights: torch.Tensor, mix: torch.Tensor, cap: float = CAP) -> torch.Tensor:
    """Factors (K,) in (0, 1] for the human labels of each class: labels (N,) class indices,
    weights (N,) their weights, mix (K,) the expected class mix. A class whose total weight per
    unit of its share of mix is above cap times the median class's is scaled down to it; the
    others keep 1."""
    mix = mix.float().cpu()
    mass = torch.zeros(len(mix)).index_add_(0, labels.cpu(), weights.float().cpu())
    per_share = mass / mix.clamp_min(1e-12)
    present = mass > 0
    if not present.any():
        return torch.ones(len(mix))
    limit = cap * per_share[present].median()  # the lower middle: of two classes, the smaller
    return (limit / per_share.clamp_min(1e-12)).clamp(max=1.0)


def balanced_weights(labels: torch.Tensor, weights: torch.Tensor, mix: torch.Tensor, cap: float = CAP) -> torch.Tensor:
    """weights (N,) of the human labels with each class scaled by class_scale: the seeds of label
    propagation and the weights of a full-batch loss."""
    return weights.float().cpu() * class_scale(labels, weights, mix, cap)[labels.cpu()]


def draw_weights(labels: torch.Tensor, weights: torch.Tensor, mix: torch.Tensor, cap: float = CAP) -> torch.Tensor | None:
    """How likely each labeled row (N,) is to be drawn into a batch (unnormalized, on the CPU), or
    None when every row is equally likely (no class above its cap)."""
    scale = class_scale(labels, weights, mix, cap)
    return None if bool((scale == 1).all()) else scale[labels.cpu()]


def draw(n: int, size: int, gen: torch.Generator, weights: torch.Tensor | None = None) -> torch.Tensor:
    """size indices into n rows, with replacement, from gen: uniform, or in proportion to weights (n,)."""
    if weights is None:
        return torch.randint(n, (size,), generator=gen)
    return torch.multinomial(weights, size, replacement=True, generator=gen)


def pool_mix(mix: torch.Tensor, labels: torch.Tensor, n_pool: int) -> torch.Tensor:
    """The class mix (K,) expected of the pool that is left: the whole set's (mix, over the human
    labels (N,) and the n_pool pool items) less the human labels, each class kept at one item at
    least. After 700 Trousers are accepted out of a pool of 10,000, Trouser is 3% of it, not 10%,
    and aligning the pool's labels to 10% would turn Dresses into Trousers."""
    mix = mix.float().cpu()
    counts = torch.bincount(labels.cpu(), minlength=len(mix)).float()
    left = (mix * (len(labels) + n_pool) - counts).clamp_min(1.0)
    return left / left.sum()
