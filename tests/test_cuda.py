"""Device selection and training on a real CUDA GPU. Skipped where torch sees none; run them on a
machine with one (`python -m pytest tests/test_cuda.py`)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from stcore import devices, graph as G, train as T
from stcore.config import make_config
from stcore.errors import DeviceError
from stcore.models import build
from conftest import stcore
from test_train import tiny_data

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


def test_devices_lists_every_gpu_and_resolves_cuda_names():
    names = [d["name"] for d in devices.available()]
    assert names[0] == "cpu" and f"cuda:{torch.cuda.device_count() - 1}" in names
    gpu = next(d for d in devices.available() if d["name"] == "cuda:0")
    assert 0 < gpu["free"] <= gpu["total"] and torch.cuda.get_device_name(0) in gpu["label"]
    assert devices.resolve("auto") == devices.resolve("cuda") == devices.resolve(" CUDA:0 ") == "cuda:0"
    missing = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(DeviceError, match=f"'{missing}' is not available here; available: cpu, cuda:0"):
        devices.resolve(missing)


def test_knn_and_graph_on_the_gpu_match_the_cpu():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3000, 1, 28, 28), dtype=torch.uint8, generator=g)
    z = G.embed(images)
    idx, sim = G.knn(z, chunk=700)  # several chunks, so the self-exclusion offset is exercised
    idx_gpu, sim_gpu = G.knn(z.to("cuda"), chunk=700)
    assert idx_gpu.is_cuda and (idx_gpu.cpu() != torch.arange(3000)[:, None]).all()
    assert torch.allclose(sim_gpu.cpu(), sim, atol=1e-4)
    assert (idx_gpu.cpu() == idx).float().mean() > 0.99  # ties may order differently
    cpu, gpu = G.pixel_graph(images, "cpu"), G.pixel_graph(images, "cuda:0")
    assert not gpu.matrix.is_cuda and gpu.size == cpu.size == 3000
    seeds = torch.zeros(3000, 3)
    seeds[torch.arange(30), torch.arange(30) % 3] = 1
    assert (G.propagate(gpu, seeds, torch.zeros_like(seeds)).argmax(1)
            == G.propagate(cpu, seeds, torch.zeros_like(seeds)).argmax(1)).float().mean() > 0.99


@pytest.mark.parametrize("overrides", [
    {"role": "teacher"},
    {"role": "student"},  # the default: labelprop, its k-NN on the GPU
    {"role": "student", "method": "consistency", "adaptive_threshold": False, "threshold": 0.0},
    {"role": "student", "method": "consistency", "balanced": True},  # adaptive thresholds (FreeMatch)
    {"role": "student", "method": "self-training", "threshold": 0.5, "balanced": True, "rounds": 2},
])
def test_fit_trains_on_the_gpu(overrides):
    model = build("cnn", 1, 3, 28)
    cfg = make_config(steps=6, batch_size=4, unlabeled_ratio=2, eval_every=3, device="cuda:0", **overrides)
    out = T.fit(model, tiny_data(), cfg, device="cuda:0")
    assert out["step"] == 6 and math.isfinite(out["eval"]["accuracy"])
    assert out["test_probs"].shape == (20, 3) and not out["test_probs"].is_cuda  # saved by the worker
    assert all(p.is_cuda for p in model.parameters()) and all(p.is_cuda for p in out["ema"].parameters())


@pytest.mark.needs_fmnist
@pytest.mark.slow
def test_the_cli_loop_runs_on_the_gpu(small_project):
    p = small_project.path
    stcore("train", p, "--role", "teacher", "--device", "cuda", "--steps", "60")
    stcore("pseudo-label", p, "--device", "cuda")
    stcore("review", p, "--simulate", "50")
    stcore("train", p, "--role", "student", "--device", "auto", "--steps", "90")
    runs = json.loads(stcore("runs", p, "--json").stdout)
    assert {(r["role"], r["device"], r["state"]) for r in runs} == {
        (role, "cuda:0", "finished") for role in ("teacher", "pseudo-label", "student")}
    student = next(r for r in runs if r["role"] == "student")
    assert student["step"] == student["total"] == 90 and 0.3 < student["last_metrics"]["accuracy"] <= 1
