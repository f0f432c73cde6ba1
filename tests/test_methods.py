"""The student methods: their small functions on tiny tensors, and each method learning."""
import math

import pytest
import torch

from stcore import methods as M
from stcore.config import make_config
from stcore.data import TrainData
from stcore.models import build
from stcore.train import fit


@pytest.mark.parametrize("threshold, expected_mask", [(0.0, [1, 1]), (0.6, [1, 0]), (0.99, [0, 0]),
                                                     (torch.tensor([0.99, 0.3]), [0, 1])])
@pytest.mark.parametrize("temperature", [0.0, 0.5])
def test_pseudo_targets_masks_by_confidence(threshold, expected_mask, temperature):
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.3, 0.4, 0.3]])
    targets, mask = M.pseudo_targets(probs, threshold, temperature)
    assert targets.argmax(1).tolist() == [0, 1]
    assert mask.tolist() == expected_mask
    assert (targets.max(1).values == 1).all() == (temperature == 0)


@pytest.mark.parametrize("temperature", [0.0, 0.5, 1.0, 2.0])
def test_sharpen_keeps_distributions_and_argmax(temperature):
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    out = M.sharpen(probs, temperature)
    assert torch.allclose(out.sum(1), torch.ones(2))
    assert out.argmax(1).tolist() == [0, 2]
    top = out.max(1).values
    if temperature == 0:
        assert top.tolist() == [1.0, 1.0]
    elif temperature < 1:
        assert (top > probs.max(1).values).all()
    elif temperature > 1:
        assert (top < probs.max(1).values).all()
    else:
        assert torch.equal(out, probs)


def test_soft_cross_entropy_matches_hard_cross_entropy_on_one_hot():
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 3, 1, 1, 2])
    expected = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    assert torch.allclose(M.soft_cross_entropy(logits, torch.eye(4)[y]), expected)


@pytest.mark.parametrize("p_model, expected_top", [([0.8, 0.1, 0.1], 1), ([0.1, 0.8, 0.1], 0)])
def test_align_distribution_moves_mass_from_overpredicted_classes(p_model, expected_top):
    probs = torch.tensor([[0.45, 0.45, 0.10]])
    out = M.align_distribution(probs, torch.tensor(p_model), torch.full((3,), 1 / 3))
    assert torch.allclose(out.sum(1), torch.ones(1))
    assert out.argmax(1).item() == expected_top


def test_class_stats_move_toward_batch_statistics():
    stats = M.initial_class_stats(4)
    probs = torch.tensor([[0.97, 0.01, 0.01, 0.01]] * 8)
    for _ in range(50):
        stats = M.update_class_stats(stats, probs, momentum=0.9)
    assert stats["tau"].item() == pytest.approx(0.97, abs=0.01)
    assert stats["p_model"].argmax().item() == 0
    assert stats["p_model"].sum().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("p_model, tau", [([0.4, 0.4, 0.2], 0.9), ([0.25, 0.5, 0.25], 0.6)])
def test_adaptive_thresholds_scale_global_tau_by_class_frequency(p_model, tau):
    thr = M.adaptive_thresholds({"p_model": torch.tensor(p_model), "tau": torch.tensor(tau)})
    p = torch.tensor(p_model)
    assert thr.max().item() == pytest.approx(tau)
    assert torch.allclose(thr, tau * p / p.max())
    assert thr.argmin() == p.argmin()  # the rarest class gets the lowest bar


@pytest.mark.parametrize("per_class", [1, 2, 5])
def test_balanced_selection_takes_most_confident_per_class(per_class):
    # class 0: rows 0, 1, 2 (confidences 0.9, 0.6, 0.8); class 1: row 3 only.
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7]])
    idx = M.balanced_selection(probs, per_class)
    assert len(idx) == 2 * per_class
    pred = probs.argmax(1)[idx]
    assert (pred == 0).sum() == per_class and (pred == 1).sum() == per_class
    zeros = idx[pred == 0].tolist()
    assert zeros[:min(per_class, 3)] == [0, 2, 1][:min(per_class, 3)]
    assert set(idx[pred == 1].tolist()) == {3}  # the lone class-1 row is repeated


@pytest.mark.parametrize("method, threshold, balanced, expected", [
    ("consistency", 0.9, False, [0, 1, 2, 3]),   # online: the whole pool
    ("self-training", 0.75, False, [0, 2]),      # above the threshold
    ("self-training", 0.5, True, [0, 2, 3, 3]),  # balanced: 2 per class, the lone class-1 row twice
    ("labelprop", 0.9, False, [0, 1, 2, 3]),     # every propagated label
])
def test_select_unlabeled(method, threshold, balanced, expected):
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7]])
    assert sorted(M.select_unlabeled(probs, 4, method, threshold, balanced).tolist()) == expected


@pytest.mark.parametrize("values, used", [
    ({"method": "labelprop"}, 1.0),                                   # every label counts
    ({"method": "consistency"}, 1.0),                                 # adaptive thresholds start near 1/K
    ({"method": "consistency", "adaptive_threshold": False}, 0.5),    # 0.9: one row of two
    ({"method": "meanteacher", "threshold": 0.0}, 1.0),               # every weak-view label
    ({"method": "self-training"}, 0.5),
])
def test_unlabeled_loss_is_finite_and_uses_the_rows_over_the_methods_threshold(values, used):
    probs = torch.tensor([[0.98, 0.01, 0.01], [0.4, 0.35, 0.25]])
    logits = torch.randn(2, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    cfg = make_config({"role": "student", "distribution_alignment": False, "threshold": 0.9, **values})
    loss, frac, stats = M.unlabeled_loss(cfg.method, logits, probs, M.initial_class_stats(3),
                                         torch.full((3,), 1 / 3), cfg)
    loss.backward()
    assert torch.isfinite(loss) and logits.grad is not None
    assert frac == used
    assert stats["tau"].item() > 1 / 3


def test_a_new_method_is_one_entry(monkeypatch):
    """An entry brings its own threshold rule and pool cut: nothing else names the method."""
    monkeypatch.setitem(M.METHODS, "strict", M.Method("strict", "only rows at least 0.95 sure", online=True,
                                                      pool_labels=None, row_threshold=lambda p, s, cfg: 0.95,
                                                      cuts_pool=True))
    probs = torch.tensor([[0.98, 0.01, 0.01], [0.9, 0.05, 0.05]])
    cfg = make_config({"role": "student", "distribution_alignment": False, "threshold": 0.5})
    _, frac, _ = M.unlabeled_loss("strict", torch.zeros(2, 3), probs, M.initial_class_stats(3),
                                  torch.full((3,), 1 / 3), cfg)
    assert frac == 0.5  # the entry's rule (0.95), not the config's threshold (0.5)
    assert M.select_unlabeled(probs, 2, "strict", 0.95, False).tolist() == [0]


@pytest.mark.parametrize("alias, meaning", [
    ("fixmatch", "fixmatch means --method consistency --no-adaptive-threshold --threshold 0.9"),
    ("soft", "soft means --method self-training --temperature 1"),
    ("pseudo", "pseudo means --method self-training"),
    ("labelprop", None),
])
def test_an_alias_says_what_it_means(alias, meaning):
    assert M.alias_meaning(alias) == meaning


# ------------------------------------------------------------------ each method learns
def blobs(n: int, k: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n noisy 28 px images of k classes: class c is a bright 8 px square at its own place."""
    y = torch.arange(n) % k
    x = torch.randint(0, 90, (n, 1, 28, 28), generator=g).float()
    for c, (r, col) in zip(range(k), [(3, 3), (3, 17), (17, 10)]):
        x[y == c, :, r:r + 8, col:col + 8] += 150
    return x.clamp(0, 255).to(torch.uint8), y


@pytest.mark.parametrize("method", [*M.METHODS, "fixmatch", "meanteacher"])
def test_each_method_learns_a_small_problem(method):
    """From 4 labels a class and a pool of 120, each student ends well above chance (1/3) and its
    loss falls; the teacher's stored pseudo-labels it starts from are right only 60% of the time."""
    g = torch.Generator().manual_seed(0)
    k = 3
    x_lab, y_lab = blobs(12, k, g)
    x_unl, y_unl = blobs(120, k, g)
    x_test, y_test = blobs(60, k, g)
    guess = torch.where(torch.rand(120, generator=g) < 0.6, y_unl, torch.randint(0, k, (120,), generator=g))
    p_unl = torch.nn.functional.one_hot(guess, k).float() * 0.6 + 0.4 / k
    data = TrainData(x_lab=x_lab, y_lab=y_lab, w_lab=torch.ones(12), x_unl=x_unl, p_unl=p_unl,
                     x_test=x_test, y_test=y_test, classes=["a", "b", "c"], flip=False)
    cfg = make_config(role="student", method=method, steps=100, batch_size=8, unlabeled_ratio=2, log_every=10,
                      threshold=0.5, lr=0.05)
    losses = []
    out = fit(build("cnn", 1, k, 28), data, cfg, callback=lambda kind, s, v: kind == "train" and
              losses.append(v["loss"]) and False)
    assert out["eval"]["accuracy"] >= 0.8, (method, out["eval"]["accuracy"])
    assert all(math.isfinite(v) for v in losses) and sum(losses[-2:]) < sum(losses[:2])
