"""The `ssl` backbone: an encoder pretrained by self-supervision (SimCLR) on the project's own
images, every split but test.

Two augmented views of each image (the batched strong augmentation of augment.py) go through
the encoder and a small projector; the NT-Xent loss pulls each pair together and pushes the
other images of the batch apart. The encoder is the feature part of the project's small CNN
(models.SmallCNN, or ResNet-18 for images larger than 32 px), so the same weights can start a
teacher or a student (`--init ssl`).

It trains for a budget of epochs or minutes, whichever ends first: on two CPU cores ten
minutes are about four passes over 60,000 small images, on a GPU the epochs are the limit. Its
state is saved along the way, so a cancelled or crashed run resumes where it stopped.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import augment
from .checkpoints import load_checkpoint, save_checkpoint
from .errors import ProjectError
from .models import build as build_model

EPOCHS, MINUTES = 100, 10.0   # the default budget: whichever ends first
TAU = 0.2                     # NT-Xent temperature
STRENGTH = 0.6                # augmentation magnitude of each view
SAVE_EVERY = 30.0             # seconds between saved states
ENCODER_FILE = "ssl.pt"       # in P/embeddings/, beside the embedding it computed
Report = Callable[[str, int, dict], bool]


def encoder(in_channels: int, image_size: int) -> nn.Module:
    """The feature layers of the model a run builds for these images ('cnn'): (N, C, H, W)
    floats in [0, 1] -> (N, d)."""
    if image_size <= 32:
        return build_model("cnn", in_channels, 2, image_size).features
    net = build_model("resnet18", in_channels, 2, image_size)
    net.fc = nn.Identity()
    return net


class SimCLR(nn.Module):
    def __init__(self, enc: nn.Module, dims: int, out: int = 128):
        super().__init__()
        self.encoder = enc
        self.projector = nn.Sequential(nn.Linear(dims, 2 * dims), nn.BatchNorm1d(2 * dims), nn.ReLU(inplace=True),
                                       nn.Linear(2 * dims, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.encoder(x))


def nt_xent(a: torch.Tensor, b: torch.Tensor, tau: float = TAU) -> torch.Tensor:
    """SimCLR's loss for two views (B, d) of the same B images: each view's partner is its
    positive, the other 2B - 2 rows are its negatives."""
    z = F.normalize(torch.cat([a, b]).float(), dim=1)
    sim = z @ z.t() / tau
    sim.fill_diagonal_(float("-inf"))
    n = len(a)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def encoder_path(project) -> Path:
    return project.path / "embeddings" / ENCODER_FILE


def _model(shape) -> SimCLR:
    enc = encoder(shape[0], shape[1])
    with torch.no_grad():
        dims = enc(torch.zeros(2, *shape)).shape[1]
    return SimCLR(enc, dims)


def pretrain(project, images: torch.Tensor, state_file: Path, *, device: str = "cpu", batch_size: int = 256,
             epochs: float = EPOCHS, minutes: float = MINUTES, seed: int = 0, report: Report,
             set_total: Callable[[int], None], forget_after: Callable[[int], None]) -> dict:
    """Train the SimCLR encoder on uint8 images (N, C, H, W) and save it to P/embeddings/ssl.pt.
    report(kind, step, values) gets the loss; True from it stops the run (its state is saved
    first). set_total(steps) is told the run's length, once the pace shows how many steps fit
    the time budget. Resumes from state_file when it exists, after forget_after(step) drops what
    was reported after the saved step. Returns what it did."""
    shape = list(images.shape[1:])
    model = _model(shape).to(device, memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3 * batch_size / 256, weight_decay=1e-4)
    per_epoch = max(1, len(images) // batch_size)
    epoch_total = planned_steps(len(images), batch_size, epochs)
    total, step, spent = epoch_total, 0, 0.0
    if state_file.exists():
        state = load_checkpoint(state_file)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        total, step, spent = state["total"], state["step"], state["seconds"]
    forget_after(step)
    gen = torch.Generator().manual_seed(seed + step)
    flip = bool(project.meta.get("flip", True))
    set_total(total)
    started, saved = time.time() - spent, time.time()

    def save() -> None:
        save_checkpoint(state_file, {"model": model.state_dict(), "opt": opt.state_dict(), "total": total,
                                     "step": step, "seconds": time.time() - started})

    model.train()
    while step < total:
        lr = 1e-3 * batch_size / 256 * _schedule(step, total)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(len(images), (batch_size,), generator=gen)
        x = images[idx].to(device, non_blocking=True).float().div_(255)
        views = torch.cat([augment.strong(x, flip=flip, magnitude=STRENGTH) for _ in range(2)])  # two views each
        out = model(views.contiguous(memory_format=torch.channels_last))
        loss = nt_xent(out[:batch_size], out[batch_size:])
        if not torch.isfinite(loss):
            raise ProjectError(f"self-supervised pretraining diverged at step {step} (loss {loss.item()}); "
                               f"lower --batch-size or try again")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        elapsed = time.time() - started
        if step in (2, 5) or step % 50 == 0:  # fit the run to the time budget at the pace so far
            fits = min(epoch_total, max(step + 1, int(step / max(elapsed, 1e-6) * minutes * 60)))
            if fits != total:
                total = fits
                set_total(total)
        stop = report("train", step, {"loss": round(loss.item(), 4), "lr": lr,
                                      "samples_per_s": round(step * batch_size / max(elapsed, 1e-6), 1)})
        if stop or time.time() - saved > SAVE_EVERY:
            save()
            saved = time.time()
            if stop:
                return {"stopped": True, "step": step}
    save()
    path = encoder_path(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, {"encoder": model.encoder.state_dict(), "input_shape": shape,
                           "steps": step, "epochs": round(step / per_epoch, 2), "batch_size": batch_size})
    return {"steps": step, "epochs": round(step / per_epoch, 2), "seconds": round(time.time() - started, 1)}


def planned_steps(n_images: int, batch_size: int, epochs: float) -> int:
    """The steps of `epochs` passes over n_images in batches of batch_size (before the time budget)."""
    return max(1, math.ceil(epochs * max(1, n_images // batch_size)))


def _schedule(step: int, total: int, warmup: int = 20) -> float:
    """Linear warm-up, then cosine decay to 5%."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def load_encoder(project) -> tuple[nn.Module, str]:
    """The pretrained encoder of the project and its file; a clear error when there is none."""
    path = encoder_path(project)
    if not path.exists():
        raise ProjectError(f"the project has no self-supervised encoder ({path} is missing); run "
                           f"`stcore embed {project.path} --backbone ssl` first")
    ck = load_checkpoint(path)
    shape = ck["input_shape"]
    if list(shape) != list(project.meta["input_shape"]):
        raise ProjectError(f"{path} was pretrained on {shape} images, this project's are "
                           f"{project.meta['input_shape']}; run `stcore embed --backbone ssl` again")
    enc = encoder(shape[0], shape[1])
    enc.load_state_dict(ck["encoder"])
    return enc, str(path)


def start_from_encoder(project, model: nn.Module, name: str) -> None:
    """Load the project's pretrained encoder into a new model's feature layers (--init ssl)."""
    enc, path = load_encoder(project)
    want = "cnn" if project.meta["input_shape"][1] <= 32 else "resnet18"
    if name != want:
        raise ProjectError(f"the self-supervised encoder of {project.meta['input_shape'][1]} px images is a {want}'s; "
                           f"train a {want} with --init ssl, or use --init scratch")
    if name == "cnn":
        model.features.load_state_dict(enc.state_dict())
    else:
        missing, unexpected = model.load_state_dict(enc.state_dict(), strict=False)
        assert not unexpected and all(k.startswith("fc.") for k in missing), (missing, unexpected)
