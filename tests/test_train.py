"""The training loop's method pieces on tiny tensors, and the loop itself on a tiny dataset."""
import math

import pytest
import torch

from stcore import train as T
from stcore.config import METHODS, make_config
from stcore.models import build


def tiny_data(n_lab=12, n_unl=48, k=3, size=28, with_probs=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n_lab + n_unl, 1, size, size), dtype=torch.uint8, generator=g)
    y = torch.arange(n_lab + n_unl) % k
    probs = torch.softmax(3 * torch.randn(n_unl, k, generator=g), 1) if with_probs else None
    return T.TrainData(x_lab=x[:n_lab], y_lab=y[:n_lab], w_lab=torch.ones(n_lab), x_unl=x[n_lab:],
                       p_unl=probs, x_test=x[:20], y_test=y[:20], classes=[str(c) for c in range(k)])


# ------------------------------------------------------------------ pure pieces
@pytest.mark.parametrize("threshold, expected_mask", [(0.0, [1, 1]), (0.6, [1, 0]), (0.99, [0, 0]),
                                                     (torch.tensor([0.99, 0.3]), [0, 1])])
@pytest.mark.parametrize("temperature", [0.0, 0.5])
def test_pseudo_targets_masks_by_confidence(threshold, expected_mask, temperature):
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.3, 0.4, 0.3]])
    targets, mask = T.pseudo_targets(probs, threshold, temperature)
    assert targets.argmax(1).tolist() == [0, 1]
    assert mask.tolist() == expected_mask
    assert (targets.max(1).values == 1).all() == (temperature == 0)


@pytest.mark.parametrize("temperature", [0.0, 0.5, 1.0, 2.0])
def test_sharpen_keeps_distributions_and_argmax(temperature):
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    out = T.sharpen(probs, temperature)
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
    assert torch.allclose(T.soft_cross_entropy(logits, torch.eye(4)[y]), expected)


@pytest.mark.parametrize("p_model, expected_top", [([0.8, 0.1, 0.1], 1), ([0.1, 0.8, 0.1], 0)])
def test_align_distribution_moves_mass_from_overpredicted_classes(p_model, expected_top):
    probs = torch.tensor([[0.45, 0.45, 0.10]])
    out = T.align_distribution(probs, torch.tensor(p_model), torch.full((3,), 1 / 3))
    assert torch.allclose(out.sum(1), torch.ones(1))
    assert out.argmax(1).item() == expected_top


def test_class_stats_move_toward_batch_statistics():
    stats = T.initial_class_stats(4)
    probs = torch.tensor([[0.97, 0.01, 0.01, 0.01]] * 8)
    for _ in range(50):
        stats = T.update_class_stats(stats, probs, momentum=0.9)
    assert stats["tau"].item() == pytest.approx(0.97, abs=0.01)
    assert stats["p_model"].argmax().item() == 0
    assert stats["p_model"].sum().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("p_model, tau", [([0.4, 0.4, 0.2], 0.9), ([0.25, 0.5, 0.25], 0.6)])
def test_adaptive_thresholds_scale_global_tau_by_class_frequency(p_model, tau):
    thr = T.adaptive_thresholds({"p_model": torch.tensor(p_model), "tau": torch.tensor(tau)})
    p = torch.tensor(p_model)
    assert thr.max().item() == pytest.approx(tau)
    assert torch.allclose(thr, tau * p / p.max())
    assert thr.argmin() == p.argmin()  # the rarest class gets the lowest bar


@pytest.mark.parametrize("per_class", [1, 2, 5])
def test_balanced_selection_takes_most_confident_per_class(per_class):
    # class 0: rows 0, 1, 2 (confidences 0.9, 0.6, 0.8); class 1: row 3 only.
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7]])
    idx = T.balanced_selection(probs, per_class)
    assert len(idx) == 2 * per_class
    pred = probs.argmax(1)[idx]
    assert (pred == 0).sum() == per_class and (pred == 1).sum() == per_class
    zeros = idx[pred == 0].tolist()
    assert zeros[:min(per_class, 3)] == [0, 2, 1][:min(per_class, 3)]
    assert set(idx[pred == 1].tolist()) == {3}  # the lone class-1 row is repeated


@pytest.mark.parametrize("method, threshold, balanced, expected", [
    ("fixmatch", 0.9, False, [0, 1, 2, 3]),   # online: the whole pool
    ("pseudo", 0.75, False, [0, 2]),           # offline: above the threshold
    ("soft", 0.5, True, [0, 2, 3, 3]),         # balanced: 2 per class, the lone class-1 row twice
])
def test_select_unlabeled(method, threshold, balanced, expected):
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7]])
    assert sorted(T.select_unlabeled(probs, 4, method, threshold, balanced).tolist()) == expected


def test_update_ema_interpolates_parameters_and_copies_buffers():
    a, b = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        a.weight.fill_(0.0)
        b.weight.fill_(1.0)
        b.running_mean.fill_(5.0)
    T.update_ema(a, b, decay=0.75)
    assert torch.allclose(a.weight, torch.full((3,), 0.25))
    assert torch.equal(a.running_mean, b.running_mean)


@pytest.mark.parametrize("method", METHODS["student"])
def test_unlabeled_loss_is_finite_and_uses_the_right_fraction(method):
    g = torch.Generator().manual_seed(0)
    probs = torch.tensor([[0.98, 0.01, 0.01], [0.4, 0.35, 0.25]])
    logits = torch.randn(2, 3, generator=g, requires_grad=True)
    cfg = make_config(role="student", method=method, threshold=0.9, distribution_alignment=False)
    loss, used, stats = T.unlabeled_loss(method, logits, probs, T.initial_class_stats(3),
                                         torch.full((3,), 1 / 3), cfg)
    loss.backward()
    assert torch.isfinite(loss) and logits.grad is not None
    # meanteacher and labelprop use everything; freematch's thresholds start near 1/K; the rest use 0.9
    assert used == {"meanteacher": 1.0, "freematch": 1.0, "labelprop": 1.0}.get(method, 0.5)
    assert stats["tau"].item() > 1 / 3


@pytest.mark.parametrize("total, warmup, cycles", [(100, 5, 1), (90, 4, 3)])
def test_cosine_lr_warms_up_decays_and_restarts_each_round(total, warmup, cycles):
    f = T.cosine_lr(total, warmup, cycles)
    assert f(0) == pytest.approx(1 / warmup)
    assert f(warmup) == pytest.approx(1.0)
    length = math.ceil(total / cycles)
    assert f(length - 1) < 0.1
    if cycles > 1:
        assert f(length) == pytest.approx(1.0)  # a new round starts at the peak again


# ------------------------------------------------------------------ the loop
@pytest.mark.parametrize("overrides", [
    {"role": "teacher"},
    {"role": "teacher", "label_aug": "strong"},
    {"role": "student"},
    {"role": "student", "method": "fixmatch", "target_model": "student", "distribution_alignment": False,
     "threshold": 0.0},
    {"role": "student", "method": "meanteacher", "temperature": 0.5},
    {"role": "student", "method": "pseudo", "threshold": 0.5, "balanced": True, "rounds": 2},
    {"role": "student", "method": "soft", "rounds": 3},
    {"role": "student", "method": "labelprop", "rounds": 1},
])
def test_fit_runs_every_method_and_reports(overrides):
    data = tiny_data()
    cfg = make_config(steps=6, batch_size=4, unlabeled_ratio=2, log_every=2, eval_every=3, **overrides)
    rows = []
    out = T.fit(build("cnn", 1, 3, 28), data, cfg, callback=lambda k, s, v: rows.append((k, s, v)) and False)
    assert out["step"] == 6 and not out["stopped"]
    assert [s for k, s, _ in rows if k == "eval"] == [3, 6]
    train_rows = [v for k, _, v in rows if k == "train"]
    assert len(train_rows) == 3 and all(math.isfinite(v["loss"]) for v in train_rows)
    if overrides["role"] == "student":
        assert any(v["unlabeled_loss"] > 0 for v in train_rows)
    assert 0 <= out["eval"]["accuracy"] <= 1


@pytest.mark.parametrize("method, balanced", [("pseudo", False), ("freematch", True)])
def test_fit_refuses_offline_or_balanced_students_without_pseudo_labels(method, balanced):
    cfg = make_config(role="student", method=method, balanced=balanced, steps=2, batch_size=4)
    with pytest.raises(ValueError, match="pseudo-label"):
        T.fit(build("cnn", 1, 3, 28), tiny_data(with_probs=False), cfg)


def test_labelprop_student_learns_labels_spread_over_the_graph():
    """The default student: pool items get the label of their neighbours, even where the teacher's
    probabilities (a weak prior) say otherwise; with no pseudo-labels at all it still runs."""
    g = torch.Generator().manual_seed(0)
    k, n_lab, n_unl = 2, 4, 40
    y = torch.arange(n_lab + n_unl) % k
    # class 0: bright left half; class 1: bright right half; plus noise
    x = torch.randint(0, 60, (n_lab + n_unl, 1, 28, 28), dtype=torch.uint8, generator=g)
    x[y == 0, :, :, :14] += 180
    x[y == 1, :, :, 14:] += 180
    guess = y[n_lab:].clone()
    guess[:6] = 1 - guess[:6]  # the teacher is wrong on six items
    wrong = torch.nn.functional.one_hot(guess, k).float() * 0.9 + 0.05
    data = T.TrainData(x_lab=x[:n_lab], y_lab=y[:n_lab], w_lab=torch.ones(n_lab), x_unl=x[n_lab:],
                       p_unl=wrong, x_test=x[:8], y_test=y[:8], classes=["left", "right"])
    G = T.graph_mod  # the halves differ along one direction: a 2-component embedding keeps it clear
    pool_graph = G.build(*G.knn(G.embed(torch.cat([data.x_lab, data.x_unl]), dims=2), k=5))
    labels = T.propagated_labels(pool_graph, data, data.p_unl, T.PRIOR_WEIGHT["teacher"], torch.full((k,), 1 / k))
    assert labels.shape == (n_unl, k) and torch.allclose(labels.sum(1), torch.ones(n_unl))
    assert (labels.argmax(1) == y[n_lab:]).all()
    cfg = make_config(role="student", steps=4, batch_size=4, unlabeled_ratio=2, eval_every=4)
    assert cfg.resolved_method == "labelprop" and cfg.resolved_rounds == 3
    for p_unl in (wrong, None):
        data.p_unl = p_unl
        out = T.fit(build("cnn", 1, k, 28), data, cfg)
        assert out["step"] == 4 and math.isfinite(out["eval"]["accuracy"])


def test_propagated_labels_are_aligned_to_the_labeled_class_mix():
    """Labels propagated from balanced seeds come out about balanced; aligned to a skewed
    target mix they move toward it, and each row stays a distribution."""
    data = tiny_data(n_lab=12, n_unl=200)
    G = T.graph_mod
    pool_graph = G.build(*G.knn(G.embed(torch.cat([data.x_lab, data.x_unl]), dims=8), k=5))
    target = torch.tensor([0.5, 0.3, 0.2])
    seeds = torch.zeros(pool_graph.size, 3)
    seeds[torch.arange(12), data.y_lab] = 1
    raw = G.propagate(pool_graph, seeds, torch.zeros_like(seeds))[12:]
    aligned = T.propagated_labels(pool_graph, data, None, 0.0, target)
    assert torch.allclose(aligned.sum(1), torch.ones(200))
    assert (aligned.mean(0) - target).abs().sum() < 0.5 * (raw.mean(0) - target).abs().sum()


@pytest.mark.parametrize("alignment", [True, False])
def test_fit_aligns_labelprop_labels_to_the_labeled_mix_unless_alignment_is_off(monkeypatch, alignment):
    targets = []
    real = T.propagated_labels
    monkeypatch.setattr(T, "propagated_labels", lambda *a: targets.append(a[4]) or real(*a))
    data = tiny_data()
    data.class_prior = torch.tensor([6, 4, 2])  # the original labeled set's mix
    cfg = make_config(role="student", steps=6, batch_size=4, unlabeled_ratio=2, distribution_alignment=alignment)
    T.fit(build("cnn", 1, 3, 28), data, cfg)
    assert len(targets) == 3  # the first labels and two re-labelings
    for t in targets:
        assert t is None if not alignment else torch.allclose(t, torch.tensor([7, 5, 3]) / 15)


@pytest.mark.parametrize("overrides, magnitude", [({}, 0.3), ({"strength": 0.6}, 0.6),
                                                  ({"method": "fixmatch"}, 1.0)])
def test_unlabeled_images_are_augmented_at_the_methods_strength(monkeypatch, overrides, magnitude):
    seen = set()
    real = T.augment.strong
    monkeypatch.setattr(T.augment, "strong", lambda x, **kw: seen.add(kw["magnitude"]) or real(x, **kw))
    cfg = make_config(role="student", steps=2, batch_size=4, unlabeled_ratio=2, **overrides)
    T.fit(build("cnn", 1, 3, 28), tiny_data(), cfg)
    assert seen == {magnitude}


def test_labelprop_propagates_once_per_round_and_again_on_a_resume_after_the_pool_changed(monkeypatch, tmp_path):
    calls, graphs = [], []
    real, real_graph = T.propagated_labels, T.graph_mod.pixel_graph
    monkeypatch.setattr(T, "propagated_labels", lambda *a: calls.append(a[3]) or real(*a))
    monkeypatch.setattr(T.graph_mod, "pixel_graph", lambda *a: graphs.append(len(a[0])) or real_graph(*a))
    cfg = make_config(role="student", steps=6, batch_size=4, unlabeled_ratio=2, eval_every=2, log_every=1)
    stop_at_5 = lambda kind, step, v: step == 5
    T.fit(build("cnn", 1, 3, 28), tiny_data(), cfg, checkpoint_dir=tmp_path, callback=stop_at_5)
    # the teacher's prior at the start, the student's at round 2 (step 2) and round 3 (step 4)
    assert calls == [T.PRIOR_WEIGHT["teacher"]] + [T.PRIOR_WEIGHT["student"]] * 2
    ck = T.load_checkpoint(tmp_path / "latest.pt")
    assert graphs == [60]
    calls.clear()
    T.fit(build("cnn", 1, 3, 28), tiny_data(), cfg, resume=ck)
    assert calls == [] and graphs == [60]  # resumed inside the last round with its labels: no graph needed
    T.fit(build("cnn", 1, 3, 28), tiny_data(n_unl=40), cfg, resume=ck)
    assert calls == [T.PRIOR_WEIGHT["teacher"]]  # the pool changed while paused: labels made again
    assert graphs == [60, 52]


def test_labelprop_reports_its_phases_between_training_steps():
    rows = []
    cfg = make_config(role="student", steps=6, batch_size=4, unlabeled_ratio=2, log_every=1)
    T.fit(build("cnn", 1, 3, 28), tiny_data(), cfg, callback=lambda k, s, v: rows.append((k, s, v)) and False)
    phases = [(s, v["phase"]) for k, s, v in rows if k == "phase"]
    assert phases == [(0, "building the nearest-neighbour graph of 60 images"),
                      (2, "re-labeling 48 pool images for round 2 of 3"),
                      (4, "re-labeling 48 pool images for round 3 of 3")]
    # each phase comes before the training step that follows it
    order = [(k, s) for k, s, _ in rows if k in ("phase", "train")]
    assert order.index(("phase", 2)) == order.index(("train", 2)) + 1


def test_labelprop_on_a_pool_too_large_for_the_graph(monkeypatch):
    """Past the graph's size limit labelprop learns the stored pseudo-labels (and says nothing of
    building a graph); with none, a clear error."""
    monkeypatch.setattr(T.graph_mod, "MAX_NODES", 10)
    cfg = make_config(role="student", method="labelprop", steps=2, batch_size=4, unlabeled_ratio=2)
    rows = []
    out = T.fit(build("cnn", 1, 3, 28), tiny_data(), cfg, callback=lambda k, s, v: rows.append(k) and False)
    assert out["step"] == 2
    assert "phase" not in rows[:1] and rows.count("phase") == 1  # only the round-2 re-labeling
    with pytest.raises(ValueError, match="too large for labelprop's graph .* run pseudo-label first"):
        T.fit(build("cnn", 1, 3, 28), tiny_data(with_probs=False), cfg)


def test_resume_continues_rounds_with_the_saved_pseudo_labels(tmp_path):
    data = tiny_data()
    cfg = make_config(role="student", method="pseudo", threshold=0.0, rounds=2, steps=8, batch_size=4,
                      unlabeled_ratio=2, eval_every=4)
    stop_at_4 = lambda kind, step, v: kind == "eval" and step == 4
    out = T.fit(build("cnn", 1, 3, 28), data, cfg, checkpoint_dir=tmp_path, callback=stop_at_4)
    assert out["stopped"] and out["step"] == 4
    ck = T.load_checkpoint(tmp_path / "latest.pt")
    assert ck["p_unl"].shape == data.p_unl.shape and ck["config"]["rounds"] == 2
    out = T.fit(build("cnn", 1, 3, 28), data, cfg, resume=ck)
    assert out["step"] == 8 and not out["stopped"]


@pytest.mark.parametrize("values, expected", [
    ({"role": "teacher"}, 400), ({"role": "student"}, 1800), ({"role": "student", "method": "fixmatch"}, 600),
    ({"role": "student", "method": "fixmatch", "rounds": 2}, 1200), ({"role": "student", "steps": 50}, 50),
])
def test_default_budget_is_per_round_for_students(values, expected):
    assert T.total_steps(make_config(**values), tiny_data()) == expected
