"""The representation stage: `stcore embed` with each backbone, its files and provenance, a
cancelled embedding resumed, and the pseudo-labels and the graph reading the embedding."""
from __future__ import annotations

import hashlib
import json
import urllib.error

import numpy as np
import pytest
import torch

from stcore import api, embed, graph as G, neighbours
from stcore.train import build_graph
from stcore.data import images, training_data
from stcore.errors import ConfigError, ProjectError

from conftest import cancel_at_step, stcore

pytestmark = pytest.mark.needs_fmnist


def embedding_of(project, name):
    npy, meta = embed.paths(project, name)
    return np.load(npy), json.loads(meta.read_text())


def test_pixels_embedding_is_written_with_its_provenance_and_becomes_the_projects(small_project):
    p = small_project
    assert api.embeddings(p) == [] and embed.load(p) is None  # without one, everything works as before
    run_id = api.start_embedding(p, "pixels", detach=False)
    assert api.run(p, run_id)["state"] == "finished"
    z, info = embedding_of(p, "pixels")
    c = api.counts(p)
    assert z.dtype == np.float16 and z.shape == (c["labeled"] + c["pool"] + c["test"], 128)
    assert info["rows"] == {"train": c["labeled"] + c["pool"], "test": c["test"]}
    assert info["backbone"] == "pixels" and info["seconds"] > 0 and info["created"]
    assert [e["backbone"] for e in api.embeddings(p) if e["current"]] == ["pixels"]
    train, test = embed.load(p)
    assert len(train) == c["labeled"] + c["pool"] and len(test) == c["test"]


def test_efficientnet_lite0_runs_offline_from_its_wheel_and_records_the_weights_hash(small_project):
    p = small_project
    api.start_embedding(p, "efficientnet-lite0", image_size=32, batch_size=512, detach=False)
    z, info = embedding_of(p, "efficientnet-lite0")
    assert z.shape[1] == 1280 and np.isfinite(z.astype(np.float32)).all() and z.astype(np.float32).std() > 0
    assert info["weights_sha256"] == hashlib.sha256(open(info["weights"], "rb").read()).hexdigest()
    assert info["image_size"] == 32


def test_torchvision_backbone_reads_a_weights_file_and_says_weights_when_offline(small_project, tmp_path,
                                                                                  monkeypatch):
    import torchvision
    p = small_project
    weights = tmp_path / "mnv3.pt"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), weights)
    api.start_embedding(p, "torchvision:mobilenet_v3_small", weights=str(weights), image_size=32, detach=False)
    z, info = embedding_of(p, "torchvision:mobilenet_v3_small")
    assert z.shape[1] == 576 and info["weights"] == str(weights.resolve())

    def offline(*a, **k):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(ConfigError, match="--weights FILE"):
        embed.build("torchvision:resnet18", p)
    with pytest.raises(ConfigError, match="no model 'resnet9000'"):
        api.start_embedding(p, "torchvision:resnet9000")
    with pytest.raises(ConfigError, match="does not fit"):
        embed.build("torchvision:resnet18", p, weights=str(weights))


def test_a_model_exported_by_stcore_is_a_backbone(trained_project, tmp_path):
    p = trained_project
    model = tmp_path / "teacher.pt"
    api.export_model(p, model, api.teacher(p)["id"])
    api.start_embedding(p, f"file:{model}", detach=False)
    z, _ = embedding_of(p, f"file:{model}")
    assert z.shape[1] == 96  # the small CNN's pooled features (4 x 24 channels)


def test_a_torchscript_file_is_refused_with_what_to_do_instead(small_project, tmp_path):
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(tmp_path / "ts.pt"))
    with pytest.raises(ConfigError, match="TorchScript archive, which carries code and is not loaded"):
        embed.build(f"file:{tmp_path / 'ts.pt'}", small_project)


def test_bad_backbones_are_one_line_errors(small_project):
    r = stcore("embed", small_project.path, "--backbone", "vgg-imaginary", check=False)
    assert r.returncode == 2 and r.stderr.startswith("error: unknown backbone 'vgg-imaginary'")
    r = stcore("embed", small_project.path, "--backbone", "file:/nonexistent.pt", check=False)
    assert r.returncode == 2 and "no such file" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert api.runs(small_project) == []  # nothing was started


def test_a_cancelled_embedding_resumes_where_it_stopped(small_project):
    p = small_project
    run_id = api.start_embedding(p, "efficientnet-lite0", image_size=64, batch_size=32, detach=True)
    stopped = cancel_at_step(api, p, run_id, 64)
    assert stopped["state"] == "cancelled" and 0 < stopped["step"] < stopped["total"]
    npy, _ = embed.paths(p, "efficientnet-lite0")
    assert not npy.exists() and npy.with_name("." + npy.name + ".partial").exists()
    api.resume(p, run_id, detach=False)
    done = api.run(p, run_id)
    assert done["state"] == "finished" and done["step"] == done["total"]
    z, _ = embedding_of(p, "efficientnet-lite0")
    fresh = embed.build("efficientnet-lite0", p, image_size=64)
    with torch.inference_mode():
        fresh.module.eval()
        first = fresh.encode(images(p, "train")[:4]).numpy()
    assert np.allclose(z[:4].astype(np.float32), first.astype(np.float32), atol=2e-2)
    assert np.abs(z.astype(np.float32)).sum(1).min() > 0  # no row was left unwritten


def test_pseudo_labels_spread_over_the_embedding_are_more_accurate_and_calibrated(trained_project):
    p = trained_project
    before = api.pseudo_label_accuracy(p)["accuracy"]
    api.start_embedding(p, "pixels", detach=False)
    job = api.start_pseudo_label(p, detach=False)
    assert api.run(p, job)["result"]["spread_over"] == "pixels"
    after = api.pseudo_label_accuracy(p)["accuracy"]
    assert after > before + 0.1, (before, after)  # a 30-step teacher: about 0.3 alone, 0.7 spread
    bins = [b for b in api.calibration(p)["hidden"] if b["n"] >= 50]
    gaps = [abs(b["accuracy"] - (b["lo"] + b["hi"]) / 2) for b in bins]
    assert max(gaps) < 0.25, bins
    # Expected calibration error: about 0.04 with the temperature fitted on aligned held-out
    # folds, 0.15 (every bin under-confident) when it was fitted on unaligned rows.
    ece = sum(gap * b["n"] for gap, b in zip(gaps, bins)) / sum(b["n"] for b in bins)
    assert ece < 0.08, (ece, bins)


def test_a_labelprop_student_builds_its_graph_on_the_embedding(trained_project):
    p = trained_project
    api.start_embedding(p, "pixels", detach=False)
    data = training_data(p, role="student", corrected_weight=2.0, use_unreviewed=True, needs_pseudo_labels=True)
    data.knn = neighbours.of_embedding(p)
    nodes = data.rows_lab + data.rows_unl
    assert len(data.knn[0]) == len(embed.load(p)[0]) and len(data.rows_unl) == len(data.x_unl)
    # the graph cut from the lists of every row is the one found on the nodes themselves (all rows here)
    assert sorted(nodes) == list(range(len(data.knn[0])))
    cut = build_graph(data, "cpu", lambda *a: False, 0).matrix.to_dense()
    found = G.feature_graph(G.features(embed.load(p)[0][nodes])).matrix.to_dense()
    assert torch.allclose(cut, found, atol=1e-6)
    run_id = api.start_training(p, {"role": "student", "steps": 30, "eval_every": 15}, detach=False)
    assert api.run(p, run_id)["state"] == "finished"


def test_the_neighbour_lists_are_found_once_per_embedding(small_project, monkeypatch):
    p = small_project
    assert neighbours.of_embedding(p) is None and neighbours.graph(p, [0, 1, 2]) is None  # no embedding yet
    api.start_embedding(p, "pixels", detach=False)
    found, knn = [], G.knn
    monkeypatch.setattr(G, "knn", lambda *a, **k: found.append(1) or knn(*a, **k))
    first, again = neighbours.of_embedding(p), neighbours.of_embedding(p)
    assert len(found) == 1 and torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert first[0].shape == (len(embed.load(p)[0]), G.NEIGHBOURS)
    path = neighbours.cache_path(p, "pixels")
    assert path.exists()
    api.start_embedding(p, "pixels", detach=False)  # embedded again: its lists are found again
    neighbours.of_embedding(p)
    assert len(found) == 2
    path.write_bytes(b"not an npz file")  # a damaged file is found again, not an error
    assert torch.equal(neighbours.of_embedding(p)[0], first[0]) and len(found) == 3
    embed.paths(p, "pixels")[0].unlink()
    with pytest.raises(ProjectError, match="missing"):
        neighbours.of_embedding(p)


def test_the_nearest_rows_are_those_of_the_centred_cosine_search_and_their_centre_is_kept(small_project):
    p = small_project
    assert neighbours.nearest(p, 0, 5) is None
    api.start_embedding(p, "pixels", detach=False)
    feats = G.features(embed.load(p)[0])
    for row in (0, 7, 1500):
        rows, sims = neighbours.nearest(p, row, 8)
        want = feats @ feats[row]
        want[row] = -2.0
        top = want.topk(8)
        assert torch.allclose(sims, top.values, atol=2e-4) and row not in rows.tolist()
        assert len(set(rows.tolist()) & set(top.indices.tolist())) >= 7  # a near-tie may swap the last
    name = p.store.meta()["embedding"]
    assert embed.paths(p, name)[0].with_name(f"{name}.centre.npz").exists()


def test_a_head_on_the_embedding_teaches_pseudo_labels_and_a_student(small_project):
    p = small_project
    with pytest.raises(ProjectError, match="stcore embed"):
        api.start_training(p, {"role": "teacher", "model": "head"}, detach=False)
    api.start_embedding(p, "pixels", detach=False)
    teacher = api.start_training(p, {"role": "teacher", "model": "head", "steps": 200}, detach=False)
    acc, final = api.accuracy_of(p, api.run(p, teacher))
    assert final and acc > 0.45, acc  # a linear head on 100 labels; chance is 0.1
    job = api.start_evaluation(p, teacher, detach=False)
    assert api.run(p, job)["result"]["accuracy"] == acc  # recomputed from the stored embedding
    api.start_pseudo_label(p, detach=False)
    assert {r["teacher_run"] for r in api.review_page(p, statuses=["pending"], limit=5)} == {teacher}
    assert api.pseudo_label_accuracy(p)["accuracy"] > acc  # spread over the graph with the human labels
    head_student = api.start_training(p, {"role": "student", "model": "head", "steps": 200}, detach=False)
    s_acc, _ = api.accuracy_of(p, api.run(p, head_student))
    assert s_acc > acc + 0.05, (acc, s_acc)  # the pool's labels teach it more than the 100 labels did
    cnn = api.start_training(p, {"role": "student", "steps": 20, "eval_every": 10}, detach=False)
    assert api.run(p, cnn)["state"] == "finished"  # from scratch: a head shares no layers with a CNN


def test_the_recommended_backbone_and_model_follow_the_images_and_the_embedding(small_project):
    class Colour:
        meta = {"input_shape": [3, 32, 32]}
    assert api.recommended_backbone(Colour()) == "efficientnet-lite0"
    assert api.recommended_backbone(small_project) == "pixels"  # 28 px gray
    assert api.default_model(small_project) == "cnn"
    api.start_embedding(small_project, detach=False)  # no backbone given: the recommended one
    assert [e["backbone"] for e in api.embeddings(small_project)] == ["pixels"]
    assert api.default_model(small_project) == "cnn"  # a linear head on pixels is the weaker teacher
    small_project.store.set_meta(embedding="efficientnet-lite0")
    assert api.default_model(small_project) == "head"
