"""The ssl backbone: SimCLR pretraining on the project's own images, as an embed job with a
live loss, a budget, cancel and resume, and an encoder that can start a teacher."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from stcore import api, embed, ssl
from stcore.data import images
from stcore.errors import ProjectError, UsageError

from conftest import cancel_at_step, stcore

pytestmark = pytest.mark.needs_fmnist


def test_nt_xent_rewards_views_that_agree():
    a = torch.randn(32, 16)
    assert ssl.nt_xent(a, a + 0.01 * torch.randn(32, 16)) < ssl.nt_xent(a, torch.randn(32, 16))


def losses(p, run_id):
    return [(m["step"], m["loss"]) for m in api.metrics(p, run_id) if m["kind"] == "train"]


def test_ssl_pretraining_learns_and_its_encoder_embeds_the_project(small_project):
    p = small_project
    r = stcore("embed", p.path, "--backbone", "ssl", "--epochs", "3", "--batch-size", "64")
    assert "with ssl (pretrained 3.0 epochs, 93 steps" in r.stdout, r.stdout
    run = api.runs(p)[0]
    assert run["state"] == "finished" and run["step"] == run["total"] == 93
    loss = [v for _, v in losses(p, run["id"])]
    assert np.mean(loss[-10:]) < np.mean(loss[:10]) - 0.3, loss  # it learns to pick an image's other view
    z, test = embed.load(p)
    c = api.counts(p)
    assert z.shape == (c["labeled"] + c["pool"], 96) and len(test) == c["test"]
    info = next(e for e in api.embeddings(p) if e["current"])
    assert info["backbone"] == "ssl" and info["weights"].endswith("ssl.pt") and len(info["weights_sha256"]) == 64
    enc, _ = ssl.load_encoder(p)
    with torch.inference_mode():  # the stored rows are the saved encoder's features
        first = enc.eval()(images(p, "train")[:4].float().div(255))
    assert np.allclose(z[:4].numpy(), first.numpy(), atol=2e-2)


def test_a_cancelled_pretraining_resumes_from_its_saved_state(small_project, monkeypatch):
    p = small_project
    run_id = api.start_embedding(p, "ssl", epochs=4, batch_size=32, detach=True)
    stopped = cancel_at_step(api, p, run_id, 15)
    assert stopped["state"] == "cancelled" and 15 <= stopped["step"] < stopped["total"] == 4 * (2000 // 32)
    assert (p.run_dir(run_id) / "ssl-state.pt").exists() and embed.load(p) is None
    api.resume(p, run_id, detach=False)
    done = api.run(p, run_id)
    assert done["state"] == "finished" and done["step"] == 248
    steps = [s for s, _ in losses(p, run_id)]
    assert sorted(steps) == list(range(1, 249))  # no step trained twice, none skipped
    assert next(e for e in api.embeddings(p) if e["current"])["pretraining"]["steps"] == 248


def test_ssl_options_and_a_missing_encoder_are_clear_errors(small_project):
    p = small_project
    with pytest.raises(UsageError, match="--epochs and --minutes are the ssl backbone's"):
        api.start_embedding(p, "pixels", epochs=3)
    with pytest.raises(UsageError, match="must be positive"):
        api.start_embedding(p, "ssl", minutes=0)
    with pytest.raises(UsageError, match="lower --batch-size"):
        api.start_embedding(p, "ssl", batch_size=100_000)
    with pytest.raises(ProjectError, match="--backbone ssl"):
        embed.build("ssl", p)
    assert api.runs(p) == []


def test_a_teacher_starts_from_the_pretrained_encoder(small_project):
    p = small_project
    with pytest.raises(UsageError, match="--backbone ssl` first"):
        api.start_training(p, {"role": "teacher", "init": "ssl", "steps": 2})
    api.start_embedding(p, "ssl", epochs=0.5, batch_size=64, detach=False)
    enc, _ = ssl.load_encoder(p)
    from stcore.models import build
    model = build("cnn", 1, 10, 28)
    ssl.start_from_encoder(p, model, "cnn")
    assert all(torch.equal(a, b) for a, b in zip(model.features.state_dict().values(), enc.state_dict().values()))
    with pytest.raises(ProjectError, match="train a cnn with --init ssl"):
        ssl.start_from_encoder(p, build("resnet18", 1, 10, 28), "resnet18")
    run_id = api.start_training(p, {"role": "teacher", "model": "cnn", "init": "ssl", "steps": 3}, detach=False)
    assert api.run(p, run_id)["state"] == "finished" and api.run(p, run_id)["config"]["init"] == "ssl"
