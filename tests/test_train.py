"""The training loop on a tiny dataset: what it reports, evaluates, checkpoints and resumes."""
import dataclasses
import math

import pytest
import torch

from stcore import train as T
from stcore.checkpoints import load_checkpoint
from stcore.config import make_config
from stcore.data import TrainData
from stcore.errors import UsageError
from stcore.models import build


def tiny_data(n_lab=12, n_unl=48, k=3, size=28, with_probs=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n_lab + n_unl, 1, size, size), dtype=torch.uint8, generator=g)
    y = torch.arange(n_lab + n_unl) % k
    probs = torch.softmax(3 * torch.randn(n_unl, k, generator=g), 1) if with_probs else None
    return TrainData(x_lab=x[:n_lab], y_lab=y[:n_lab], w_lab=torch.ones(n_lab), x_unl=x[n_lab:],
                       p_unl=probs, x_test=x[:20], y_test=y[:20], classes=[str(c) for c in range(k)])


# ------------------------------------------------------------------ pure pieces
def test_update_ema_interpolates_parameters_and_copies_buffers():
    a, b = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        a.weight.fill_(0.0)
        b.weight.fill_(1.0)
        b.running_mean.fill_(5.0)
    T.update_ema(a, b, decay=0.75)
    assert torch.allclose(a.weight, torch.full((3,), 0.25))
    assert torch.equal(a.running_mean, b.running_mean)


def test_eval_subset_is_fixed_stratified_and_covers_every_class():
    """A folder's test set is stored class by class: its first rows would hold the first classes only."""
    y = torch.arange(10).repeat_interleave(300)  # 10 classes, 300 images each, in class order
    idx = T.eval_subset(y, 2000)
    assert len(idx) == 2000 and len(set(idx.tolist())) == 2000
    counts = torch.bincount(y[idx], minlength=10)
    assert counts.min() == counts.max() == 200
    assert torch.equal(idx, T.eval_subset(y, 2000))  # the same for every run
    assert idx.tolist() != list(range(2000))
    skewed = torch.cat([torch.zeros(1900, dtype=torch.long), torch.ones(100, dtype=torch.long), torch.full((500,), 2)])
    counts = torch.bincount(skewed[T.eval_subset(skewed, 600)], minlength=3)
    assert counts.tolist() == [250, 100, 250]  # a small class is taken whole, the rest share the places
    assert torch.equal(T.eval_subset(y[:50], 2000), torch.arange(50))


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
    {"role": "student", "method": "consistency", "target_model": "student", "distribution_alignment": False,
     "adaptive_threshold": False, "threshold": 0.0},
    {"role": "student", "method": "consistency", "temperature": 0.5},
    {"role": "student", "method": "self-training", "threshold": 0.5, "balanced": True, "rounds": 2},
    {"role": "student", "method": "self-training", "temperature": 1.0, "rounds": 3},
    {"role": "student", "method": "labelprop", "rounds": 1},
])
def test_fit_reports_train_rows_and_evaluations_on_schedule(overrides):
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
    # the final evaluation is on the whole test set, and its probabilities come back to be saved
    assert out["eval"]["n"] == len(data.x_test) and out["test_probs"].shape == (len(data.x_test), 3)
    assert out["eval"]["accuracy"] == round((out["test_probs"].argmax(1) == data.y_test).float().mean().item(), 4)


def test_evaluations_along_the_way_use_the_stratified_subset_and_the_last_all_of_the_test_set(monkeypatch):
    """On a test set stored class by class (as a folder's is), the evaluations during the run
    still measure every class alike; the last one measures all of the test set."""
    monkeypatch.setattr(T, "EVAL_SUBSET", 9)
    data = tiny_data()
    order = data.y_test.argsort(stable=True)  # class 0 first, then 1, then 2
    data = dataclasses.replace(data, x_test=data.x_test[order], y_test=data.y_test[order])
    seen, measured = [], []
    real = T.evaluate
    monkeypatch.setattr(T, "evaluate", lambda model, x, y, *a, **k: measured.append(y.bincount(minlength=3).tolist())
                        or real(model, x, y, *a, **k))
    cfg = make_config(role="teacher", steps=4, batch_size=4, eval_every=2)
    T.fit(build("cnn", 1, 3, 28), data, cfg, callback=lambda k, s, v: k == "eval" and seen.append(v["n"]))
    assert seen == [9, 20]
    assert measured == [[3, 3, 3], data.y_test.bincount(minlength=3).tolist()]


def test_fit_keeps_only_the_latest_checkpoint_never_one_chosen_on_test_images(tmp_path):
    cfg = make_config(role="teacher", steps=6, batch_size=4, eval_every=2)
    T.fit(build("cnn", 1, 3, 28), tiny_data(), cfg, checkpoint_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]
    ck = load_checkpoint(tmp_path / "latest.pt")
    assert ck["step"] == 6 and "best" not in ck


@pytest.mark.parametrize("method, balanced", [("self-training", False), ("consistency", True)])
def test_fit_refuses_offline_or_balanced_students_without_pseudo_labels(method, balanced):
    cfg = make_config(role="student", method=method, balanced=balanced, steps=2, batch_size=4)
    with pytest.raises(UsageError, match="pseudo-label"):
        T.fit(build("cnn", 1, 3, 28), tiny_data(with_probs=False), cfg)


def test_labelprop_student_learns_labels_spread_over_the_graph():
    """The default student: pool items get the label of their neighbours, even where the teacher's
    probabilities (a weak prior) say otherwise; with no pseudo-labels at all it still runs."""
    g = torch.Generator().manual_seed(0)
    k, n_lab, n_unl, n_test = 2, 4, 40, 40
    y = torch.arange(n_lab + n_unl + n_test) % k
    # class 0: bright left half; class 1: bright right half; plus noise
    x = torch.randint(0, 60, (len(y), 1, 28, 28), dtype=torch.uint8, generator=g)
    x[y == 0, :, :, :14] += 180
    x[y == 1, :, :, 14:] += 180
    guess = y[n_lab:n_lab + n_unl].clone()
    guess[:6] = 1 - guess[:6]  # the teacher is wrong on six items
    wrong = torch.nn.functional.one_hot(guess, k).float() * 0.9 + 0.05
    data = TrainData(x_lab=x[:n_lab], y_lab=y[:n_lab], w_lab=torch.ones(n_lab), x_unl=x[n_lab:n_lab + n_unl],
                     p_unl=wrong, x_test=x[n_lab + n_unl:], y_test=y[n_lab + n_unl:], classes=["left", "right"],
                     flip=False)  # a mirrored image is the other class here
    G = T.graph_mod  # the halves differ along one direction: a 2-component embedding keeps it clear
    pool_graph = G.build(*G.knn(G.embed(torch.cat([data.x_lab, data.x_unl]), dims=2), k=5))
    labels = T.propagated_labels(pool_graph, data, data.p_unl, T.PRIOR_WEIGHT["teacher"], torch.full((k,), 1 / k))
    assert labels.shape == (n_unl, k) and torch.allclose(labels.sum(1), torch.ones(n_unl))
    assert (labels.argmax(1) == y[n_lab:n_lab + n_unl]).all()
    cfg = make_config(role="student", steps=60, batch_size=4, unlabeled_ratio=2, eval_every=60)
    assert cfg.method == "labelprop" and cfg.rounds == 3
    for p_unl in (wrong, None):  # with the teacher's (partly wrong) prior, and with none
        data.p_unl = p_unl
        out = T.fit(build("cnn", 1, k, 28), data, cfg)
        # 40 unseen test images: learned from 4 labels and the propagated pool, not by chance (0.5)
        assert out["step"] == 60 and out["eval"]["accuracy"] >= 0.9, out["eval"]["accuracy"]


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
        # the labeled mix, (7, 5, 3) / 15 smoothed, over all 60 images, less the 4 labels of each class
        assert t is None if not alignment else torch.allclose(t, torch.tensor([24, 16, 8]) / 48)


@pytest.mark.parametrize("overrides, magnitude", [({}, 0.3), ({"strength": 0.6}, 0.6),
                                                  ({"method": "consistency"}, 1.0)])
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
    monkeypatch.setattr(T.graph_mod, "pixel_graph", lambda *a, **kw: graphs.append(len(a[0])) or real_graph(*a, **kw))
    cfg = make_config(role="student", steps=6, batch_size=4, unlabeled_ratio=2, eval_every=2, log_every=1)
    stop_at_5 = lambda kind, step, v: step == 5
    T.fit(build("cnn", 1, 3, 28), tiny_data(), cfg, checkpoint_dir=tmp_path, callback=stop_at_5)
    # the teacher's prior at the start, the student's at round 2 (step 2) and round 3 (step 4)
    assert calls == [T.PRIOR_WEIGHT["teacher"]] + [T.PRIOR_WEIGHT["student"]] * 2
    ck = load_checkpoint(tmp_path / "latest.pt")
    assert graphs == [60]
    calls.clear()
    T.fit(build("cnn", 1, 3, 28), tiny_data(), cfg, resume=ck)
    assert calls == [] and graphs == [60]  # resumed inside the last round with its labels: no graph needed
    T.fit(build("cnn", 1, 3, 28), tiny_data(n_unl=40), cfg, resume=ck)
    assert calls == [T.PRIOR_WEIGHT["teacher"]]  # the pool changed while paused: labels made again
    assert graphs == [60, 52]


def test_labelprop_reports_its_phases_with_their_progress():
    rows = []
    cfg = make_config(role="student", steps=6, batch_size=4, unlabeled_ratio=2, log_every=1)
    T.fit(build("cnn", 1, 3, 28), tiny_data(), cfg, callback=lambda k, s, v: rows.append((k, s, v)) and False)
    phases = [(s, v["phase"]) for k, s, v in rows if k == "phase"]
    assert sorted(set(phases)) == [(0, "building the nearest-neighbour graph of 60 images"),
                                   (2, "re-labeling 48 pool images for round 2 of 3"),
                                   (4, "re-labeling 48 pool images for round 3 of 3")]
    # each phase reports its progress, from 0 to all of it, with the time it started
    for step, total in ((0, 60), (2, 48)):
        progress = [(v["done"], v["total"]) for k, s, v in rows if k == "phase" and s == step]
        assert progress[0] == (0, total) and progress[-1] == (total, total)
        assert len({v["started"] for k, s, v in rows if k == "phase" and s == step}) == 1
    # each phase comes before the training step that follows it
    order = [(k, s) for k, s, _ in rows if k in ("phase", "train")]
    assert order.index(("phase", 2)) == order.index(("train", 2)) + 1


def test_a_cancel_during_a_phase_stops_the_run_with_a_checkpoint(tmp_path):
    cfg = make_config(role="student", steps=6, batch_size=4, unlabeled_ratio=2)
    stop_in_relabel = lambda kind, step, v: kind == "phase" and step == 2 and v["done"] > 0
    out = T.fit(build("cnn", 1, 3, 28), tiny_data(), cfg, checkpoint_dir=tmp_path, callback=stop_in_relabel)
    assert out["stopped"] and out["step"] == 2
    assert load_checkpoint(tmp_path / "latest.pt")["step"] == 2


def test_labelprop_past_the_exact_graph_size_builds_an_approximate_graph(monkeypatch):
    """No cap: past EXACT_MAX the graph is built with the approximate neighbour search, with its
    phase shown, and the run learns as below it."""
    monkeypatch.setattr(T.graph_mod, "EXACT_MAX", 10)
    cfg = make_config(role="student", method="labelprop", steps=2, batch_size=4, unlabeled_ratio=2)
    phases = []
    out = T.fit(build("cnn", 1, 3, 28), tiny_data(with_probs=False), cfg, callback=lambda k, s, v: (
        k == "phase" and phases.append(v["phase"])) and False)
    assert out["step"] == 2
    assert any(p.startswith("building the nearest-neighbour graph") for p in phases)
    with pytest.raises(UsageError, match="labelprop's graph needs at least 3 images"):
        T.fit(build("cnn", 1, 3, 28), tiny_data(n_lab=1, n_unl=1, with_probs=False), cfg)


def test_resume_continues_rounds_with_the_saved_pseudo_labels(tmp_path):
    data = tiny_data()
    cfg = make_config(role="student", method="self-training", threshold=0.0, rounds=2, steps=8, batch_size=4,
                      unlabeled_ratio=2, eval_every=4)
    stop_at_4 = lambda kind, step, v: kind == "eval" and step == 4
    out = T.fit(build("cnn", 1, 3, 28), data, cfg, checkpoint_dir=tmp_path, callback=stop_at_4)
    assert out["stopped"] and out["step"] == 4
    ck = load_checkpoint(tmp_path / "latest.pt")
    assert ck["p_unl"].shape == data.p_unl.shape and ck["config"]["rounds"] == 2
    out = T.fit(build("cnn", 1, 3, 28), data, cfg, resume=ck)
    assert out["step"] == 8 and not out["stopped"]


@pytest.mark.parametrize("values, expected", [
    ({"role": "teacher"}, 400), ({"role": "student"}, 1800), ({"role": "student", "method": "consistency"}, 600),
    ({"role": "student", "steps": 50}, 50), ({"role": "teacher", "epochs": 2.0, "batch_size": 4}, 6),
    ({"role": "student", "epochs": 1.0, "batch_size": 4, "unlabeled_ratio": 2}, 6),
])
def test_total_steps_from_the_budget_or_epochs(values, expected):
    assert T.total_steps(make_config(**values), tiny_data()) == expected


# ------------------------------------------------------------------ a lopsided mix of human labels
def lopsided_data():
    """40 labels of class 0 (a bulk accept) and 4 of each other class, where the original labeled
    set had 4 of each."""
    data = tiny_data(n_lab=48)
    data.y_lab = torch.cat([torch.zeros(40, dtype=torch.long), torch.tensor([1, 2] * 4)])
    data.class_prior = torch.tensor([4, 4, 4])
    return data


def test_labeled_batches_follow_the_expected_mix_not_the_raw_counts(monkeypatch):
    drawn = []
    real = T.balance.draw
    monkeypatch.setattr(T.balance, "draw", lambda n, size, gen, w=None: drawn.append(r := real(n, size, gen, w)) or r)
    data = lopsided_data()
    T.fit(build("cnn", 1, 3, 28), data, make_config(role="teacher", steps=40, batch_size=16, eval_every=40))
    share = torch.bincount(data.y_lab[torch.cat(drawn)], minlength=3).float() / (40 * 16)
    # class 0 is held to CAP times the median class, 3 / 5 of the draws, not its raw 40 / 48 = 83%
    expected = torch.tensor([T.balance.CAP, 1, 1]) / (T.balance.CAP + 2)
    assert torch.allclose(share, expected, atol=0.07), share


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_a_resumed_run_on_lopsided_labels_ends_where_an_uninterrupted_one_does(tmp_path, role):
    cfg = make_config(role=role, steps=6, batch_size=8, unlabeled_ratio=2, eval_every=3, log_every=1,
                      **({"rounds": 1} if role == "student" else {}))
    torch.manual_seed(0)
    straight = T.fit(build("cnn", 1, 3, 28), lopsided_data(), cfg)["ema"].state_dict()
    torch.manual_seed(0)
    T.fit(build("cnn", 1, 3, 28), lopsided_data(), cfg, checkpoint_dir=tmp_path,
          callback=lambda kind, step, v: kind == "eval" and step == 3)
    resumed = T.fit(build("cnn", 1, 3, 28), lopsided_data(), cfg,
                    resume=load_checkpoint(tmp_path / "latest.pt"))["ema"].state_dict()
    assert all(torch.allclose(straight[k].float(), resumed[k].float(), atol=1e-5) for k in straight)


def test_propagated_labels_cap_a_class_with_many_more_seeds_than_its_share(monkeypatch):
    seen = []
    real = T.graph_mod.spread_labels
    monkeypatch.setattr(T.graph_mod, "spread_labels", lambda g, n, y, w, *a: seen.append(w) or real(g, n, y, w, *a))
    data = lopsided_data()
    G = T.graph_mod
    pool_graph = G.build(*G.knn(G.embed(torch.cat([data.x_lab, data.x_unl]), dims=8), k=5))
    T.propagated_labels(pool_graph, data, None, 0.0, None)
    assert seen[0][:40].sum() == pytest.approx(T.balance.CAP * 4)  # class 0's 40 seeds: CAP times the median class
    assert torch.equal(seen[0][40:], torch.ones(8))


def test_a_students_pool_is_aligned_to_the_mix_the_human_labels_left_in_it():
    data = lopsided_data()
    target = T.pool_target(data)
    # 96 images, a third of each class expected (32): the 40 labels of class 0 leave none of it in the
    # pool (kept at 1), the 4 of each other class leave 28
    assert torch.allclose(target, torch.tensor([1.0, 28.0, 28.0]) / 57)
