"""Batched augmentations: shapes, ranges, determinism under a generator, and per-sample draws."""
import pytest
import torch

from stcore import augment


def images(n=6, c=1, size=16, seed=0):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fn", [augment.weak, augment.strong])
@pytest.mark.parametrize("c, flip", [(1, True), (3, False)])
def test_shape_range_and_determinism(fn, c, flip):
    x = images(c=c)
    a = fn(x, flip=flip, g=torch.Generator().manual_seed(1))
    b = fn(x, flip=flip, g=torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, fn(x, flip=flip, g=torch.Generator().manual_seed(2)))


def test_weak_moves_whole_pixels_only():
    # Whole-pixel shifts and flips only move values around: every output value is an input value or 0.
    x = images(n=4)
    out = augment.weak(x, flip=True, g=torch.Generator().manual_seed(0))
    for xi, oi in zip(x, out):
        allowed = set(xi.flatten().tolist()) | {0.0}
        assert set(oi.flatten().tolist()) <= allowed


def test_strong_draws_parameters_per_sample():
    x = images(n=1).repeat(8, 1, 1, 1)
    out = augment.strong(x, flip=True, g=torch.Generator().manual_seed(0))
    distinct = {tuple(o.flatten()[:50].tolist()) for o in out}
    assert len(distinct) == 8


@pytest.mark.parametrize("magnitude", [1.0, 0.3])
def test_strong_cutout_follows_the_magnitude_by_default(magnitude):
    x = images(n=16)
    run = lambda **kw: augment.strong(x, flip=False, g=torch.Generator().manual_seed(0), magnitude=magnitude, **kw)
    assert torch.equal(run(), run(cutout=0.25 + 0.25 * magnitude))
    assert not torch.equal(run(), run(cutout=0.9))
    change = lambda m: (augment.strong(x, flip=False, g=torch.Generator().manual_seed(0), magnitude=m) - x).abs().mean()
    assert change(0.3) < change(1.0)
