"""Forward passes on a faster runtime (runtime.py): the same features as PyTorch, a fallback with
one line where a runtime is missing or refuses the network, and the runtime in the embedding's
provenance."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from stcore import api, embed, runtime
from stcore.errors import UsageError


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.fc = nn.Conv2d(3, 8, 3), nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.conv(x).relu().mean((2, 3)))


class NotExportable(Small):
    def forward(self, x):
        y = super().forward(x)
        return y * 2 if float(y.mean()) > 0 else y  # a branch on the data: no graph can hold it


def test_the_choice_of_runtime():
    assert runtime.candidates("torch", "cpu") == ["torch"]
    assert runtime.candidates("auto", "cuda:0") == ["torch"]  # GPUs keep PyTorch
    assert runtime.candidates("auto", "cpu", n=10) == ["torch"]  # a few images: the export would cost more
    assert runtime.candidates("auto", "cpu", n=10 ** 6) == runtime.available()
    assert runtime.candidates("onnxruntime", "cpu", n=10) == ["onnxruntime", "torch"]
    with pytest.raises(UsageError, match="--runtime must be one of"):
        runtime.candidates("tensorrt", "cpu")


@pytest.mark.parametrize("name, tol", [("onnxruntime", 1e-5), ("openvino", 5e-2)])
def test_a_runtime_gives_the_features_pytorch_gives(tmp_path, name, tol):
    pytest.importorskip(name)
    x = torch.rand(7, 3, 16, 16)
    forward, what = runtime.compile_forward(Small().eval(), x[:2], runtime=name, device="cpu",
                                            onnx_path=tmp_path / "s.onnx")
    assert forward is not None and what.startswith(name), what
    with torch.inference_mode():
        want = Small().eval()(x).numpy()
    got = forward(x.numpy())
    assert got.shape == want.shape == (7, 5)
    # openvino may run in bfloat16 (on a CPU with bf16 units): close, not equal
    assert np.abs(got - want).max() <= tol * max(1.0, np.abs(want).max()), np.abs(got - want).max()


def test_a_network_no_runtime_takes_stays_on_pytorch_with_one_line_each(tmp_path):
    lines = []
    forward, what = runtime.compile_forward(NotExportable().eval(), torch.rand(2, 3, 16, 16), runtime="auto",
                                            device="cpu", onnx_path=tmp_path / "n.onnx", say=lines.append)
    assert forward is None and what.startswith("torch")
    assert len(lines) == len(runtime.available()) - 1 and all("cannot run this network" in s for s in lines), lines


def test_an_embed_job_on_onnxruntime_records_it_and_matches_pytorch(tmp_path, small_project, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    p = small_project
    api.start_embedding(p, "efficientnet-lite0", image_size=32, runtime="onnxruntime", detach=False)
    info = json.loads((p.path / "embeddings" / "efficientnet-lite0.json").read_text())
    assert info["runtime"].startswith("onnxruntime")
    fast = np.load(p.path / "embeddings" / "efficientnet-lite0.npy").astype(np.float32)
    api.start_embedding(p, "efficientnet-lite0", image_size=32, runtime="torch", detach=False)
    info = json.loads((p.path / "embeddings" / "efficientnet-lite0.json").read_text())
    assert info["runtime"].startswith("torch")
    eager = np.load(p.path / "embeddings" / "efficientnet-lite0.npy").astype(np.float32)
    assert fast.shape == eager.shape and np.abs(fast - eager).max() < 2e-2  # float16 rows of the same features
    assert list((tmp_path / "cache" / "stcore" / "onnx").glob("*.onnx"))  # exported once, kept for the next job


def test_accelerate_leaves_the_pixel_backbone_alone(small_project):
    b = embed.build("pixels", small_project)
    assert embed.accelerate(b, torch.zeros(3, 1, 28, 28, dtype=torch.uint8)) == "torch" and b.fast is None


def test_two_networks_of_one_name_get_their_own_exported_file(tmp_path, monkeypatch):
    """An ssl encoder has no weights file: the export is named by the weights themselves, so a
    second project's encoder is never run with the first one's network."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    images = torch.randint(0, 255, (5, 3, 8, 8), dtype=torch.uint8)
    got = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        b = embed.Backbone("ssl", None, None, nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1)))
        assert embed.accelerate(b, images, runtime="onnxruntime").startswith("onnxruntime")
        with torch.inference_mode():
            want = b.features(images.float() / 255).numpy()
        got.append(b.encode(images.clone()).numpy())
        assert np.abs(got[-1] - want).max() < 1e-5
    assert len(list((tmp_path / "stcore" / "onnx").glob("*.onnx"))) == 2 and np.abs(got[0] - got[1]).max() > 1e-3


def test_a_runs_model_predicts_on_a_faster_runtime_as_on_pytorch_and_leaves_no_file(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from stcore.models import build
    from stcore.pseudo import predict
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = build("cnn", 1, 10, 28).eval()
    x = torch.randint(0, 256, (300, 1, 28, 28), dtype=torch.uint8)
    want = torch.cat([p for _, p in predict(model, x, batch_size=128)])
    got = torch.cat([p for _, p in predict(model, x, batch_size=128, runtime="onnxruntime")])
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    assert not (tmp_path / "cache").exists()  # a run's model changes every run: its export is not kept
    # auto: a few images stay on PyTorch, with no export at all
    monkeypatch.setattr(runtime, "export_onnx", lambda *a: pytest.fail("exported for a few images"))
    few = torch.cat([p for _, p in predict(model, x, batch_size=128, runtime="auto")])
    assert torch.equal(few, want)


def test_the_export_cache_keeps_the_most_recently_used_within_its_size(tmp_path):
    import os
    import time
    files = []
    for i in range(4):
        f = tmp_path / f"{i}.onnx"
        f.write_bytes(b"x" * 100)
        os.utime(f, (time.time() - 100 + i, time.time() - 100 + i))  # 3 is the newest
        files.append(f)
    assert runtime.prune(tmp_path, used=files[0], limit=250) == [files[2], files[1]]  # 0 was just used
    assert sorted(f.name for f in tmp_path.glob("*.onnx")) == ["0.onnx", "3.onnx"]
    assert runtime.prune(tmp_path, used=files[3], limit=50) == [files[0]]  # the one in use stays, alone
