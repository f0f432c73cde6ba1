"""The configs of the job kinds other than training (config.TrainConfig): one frozen dataclass
each, holding its defaults. Built from plain values by fields.from_values; light at import."""
from __future__ import annotations

from dataclasses import dataclass

MAP_METHODS = ("auto", "umap", "pca")  # projection.METHODS, without importing torch


# ------------------------------------------------------------------ configs
# Teachers and students: config.TrainConfig. A key left out takes the default below; a stored
# run's config is read back through the same class (missing keys: these defaults).
@dataclass(frozen=True)
class PseudoLabelConfig:
    device: str = "cpu"
    teacher_run: str = ""      # '' -> the project's current teacher (pinned when the run is queued)
    batch_size: int = 1024     # pool images per forward pass


@dataclass(frozen=True)
class EmbedConfig:
    device: str = "cpu"             # several GPUs: cuda:0,cuda:1 (one process each)
    nproc: int | None = None        # processes sharing a pretrained backbone's batches; None: from device
    backbone: str = ""              # '' -> the one recommended for the project's images
    batch_size: int = 256           # images per forward pass (ssl: per pretraining step)
    weights: str | None = None      # torchvision:ARCH: a state dict of that architecture
    image_size: int | None = None   # pretrained backbones: resize to this side (None: embed.DEFAULT_IMAGE_SIZE)
    epochs: float | None = None     # ssl: pretraining passes (None: ssl.EPOCHS) ...
    minutes: float | None = None    # ... or minutes, whichever ends first (None: ssl.MINUTES)
    seed: int = 0                   # ssl: the pretraining's random seed
    runtime: str = "auto"           # the forward passes on one CPU process: auto|openvino|onnxruntime|torch


@dataclass(frozen=True)
class EvaluateConfig:
    run: str = ""                   # the finished teacher or student to evaluate again (required)
    device: str = "cpu"


@dataclass(frozen=True)
class LabelIssuesConfig:
    device: str = "cpu"


@dataclass(frozen=True)
class DuplicatesConfig:
    device: str = "cpu"
    threshold: float = 0.98         # cosine similarity of a pair of near-identical images


@dataclass(frozen=True)
class PredictConfig:
    paths: str = ""                 # the image files and folders to classify, one a line (required)
    run: str = ""                   # whose model: '' -> the latest finished student, else teacher (pinned when queued)
    device: str = "cpu"


@dataclass(frozen=True)
class MapConfig:
    method: str = "auto"            # umap, pca, or auto (UMAP up to the exact neighbour search's size)
    device: str = "cpu"


@dataclass(frozen=True)
class RefreshConfig:
    """Continuous mode's job: a head teacher on the embedding, then the pool's pseudo-labels."""
    device: str = "cpu"             # a linear head trains in seconds on the CPU
    steps: int = 0                  # the head's steps (0: a teacher's default)
    upto: int = 0                   # the newest decision (history seq) when it was queued: the next counts from it
