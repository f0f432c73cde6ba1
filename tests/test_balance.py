"""A lopsided mix of human labels (a bulk accept of one class), on tiny tensors."""
import pytest
import torch

from stcore import balance, graph as G


def lopsided(big=500, small=10, k=3):
    """Labels: `big` of class 0, `small` of every other class; weights 1."""
    y = torch.cat([torch.zeros(big, dtype=torch.long)] + [torch.full((small,), c) for c in range(1, k)])
    return y, torch.ones(len(y))


def test_a_class_with_its_share_of_labels_keeps_them_all():
    y, w = lopsided(big=10)
    assert torch.equal(balance.class_scale(y, w, torch.full((3,), 1 / 3)), torch.ones(3))
    # many labels of a class the original labeled set also had many of: its share, not an excess
    y, w = lopsided(big=500)
    assert torch.equal(balance.class_scale(y, w, torch.tensor([500, 10, 10]) / 520), torch.ones(3))
    assert balance.draw_weights(*lopsided(big=10), torch.full((3,), 1 / 3)) is None


@pytest.mark.parametrize("cap", [1.0, 2.0])
def test_a_class_with_50x_its_share_is_scaled_to_cap_times_the_median_class(cap):
    y, w = lopsided(big=500)
    w[-1] = 2.0  # a correction weighs more: class 2 holds 11 units
    scale = balance.class_scale(y, w, torch.full((3,), 1 / 3), cap)
    assert scale[1] == scale[2] == 1
    assert scale[0] * 500 == pytest.approx(cap * 11)  # the median class's mass, times cap
    b = balance.balanced_weights(y, w, torch.full((3,), 1 / 3), cap)
    assert b[:500].sum() == pytest.approx(cap * 11) and torch.equal(b[500:], w[500:])


@pytest.mark.parametrize("cap, shares", [(1.0, [1 / 3, 1 / 3, 1 / 3]), (2.0, [0.5, 0.25, 0.25])])
def test_batches_drawn_follow_the_expected_mix_not_the_raw_counts(cap, shares):
    y, w = lopsided(big=500)
    draw = balance.draw_weights(y, w, torch.full((3,), 1 / 3), cap)
    idx = balance.draw(len(y), 30_000, torch.Generator().manual_seed(0), draw)
    got = torch.bincount(y[idx], minlength=3).float() / len(idx)
    assert torch.allclose(got, torch.tensor(shares), atol=0.015), got  # raw counts would give [0.96, 0.02, 0.02]


def test_uniform_draws_are_the_generators_randint():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(balance.draw(50, 8, g1), torch.randint(50, (8,), generator=g2))
    w = torch.rand(50)
    g1.manual_seed(4)
    a = balance.draw(50, 8, g1, w)
    g1.manual_seed(4)
    assert torch.equal(a, balance.draw(50, 8, g1, w))  # the same generator state, the same batch


def test_the_pool_mix_leaves_out_what_the_human_labels_took():
    mix = torch.full((3,), 1 / 3)
    y, _ = lopsided(big=10)
    assert torch.allclose(balance.pool_mix(mix, y, 270), mix)  # 100 of each class, 10 of each labeled
    y, _ = lopsided(big=80)  # 70 of class 0 accepted out of the pool
    assert torch.allclose(balance.pool_mix(mix, y, 200), torch.tensor([20, 90, 90]) / 200.0)
    y, _ = lopsided(big=200)  # more than its share: kept at one item, not below
    assert balance.pool_mix(mix, y, 100)[0] > 0


def planted_cluster(seeds_big=500, seeds_small=5):
    """A big cluster of class 0 (600 nodes, seeds_big of them seeds) and, close beside it, a planted
    cluster of class 1 (60 nodes, seeds_small seeds). (graph with the seeds first, seed labels,
    the class of every other node)."""
    g = torch.Generator().manual_seed(0)
    c0 = torch.randn(1, 16, generator=g)
    c1 = c0 + 0.35 * torch.randn(1, 16, generator=g)
    z = torch.cat([c0 + 0.3 * torch.randn(600, 16, generator=g), c1 + 0.3 * torch.randn(60, 16, generator=g)])
    y = torch.cat([torch.zeros(600, dtype=torch.long), torch.ones(60, dtype=torch.long)])
    seeds = torch.cat([torch.arange(seeds_big), torch.arange(600, 600 + seeds_small)])
    rest = torch.tensor(sorted(set(range(660)) - set(seeds.tolist())))
    order = torch.cat([seeds, rest])
    return G.build(*G.knn(torch.nn.functional.normalize(z[order], dim=1), k=10)), y[seeds], y[rest]


def test_a_class_with_100x_the_seeds_no_longer_floods_a_planted_cluster_of_another():
    graph, labels, truth = planted_cluster()
    w, mix = torch.ones(len(labels)), torch.tensor([0.5, 0.5])
    acc = lambda f, c: (f.argmax(1)[truth == c] == c).float().mean().item()
    raw = G.spread_labels(graph, len(labels), labels, w, 2, None, 0.0, None)
    assert acc(raw, 1) < 0.2  # the 500 seeds of class 0 flood the 60 nodes of class 1
    fair = G.spread_labels(graph, len(labels), labels, balance.balanced_weights(labels, w, mix), 2, None, 0.0, None)
    assert acc(fair, 1) > 0.9 and acc(fair, 0) > 0.9
