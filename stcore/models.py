"""Model constructors by name. Every model takes (N, C, H, W) floats and returns (N, classes) logits."""
from __future__ import annotations

import copy

import torch
from torch import nn

MODELS = ("cnn", "resnet18", "head")
IMAGE_MODELS = ("cnn", "resnet18")  # "head" reads the project's embedding, not images


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """A conv at full resolution, then two stages at 1/2 and 1/4 resolution, then global pooling.
    Most of the compute sits at 1/2 resolution, which keeps it at thousands of images per
    second on two CPU cores (with channels_last weights) while reaching ~92% on Fashion-MNIST."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 24, dropout: float = 0.1):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _block(in_channels, w), nn.MaxPool2d(2),
            _block(w, 2 * w), _block(2 * w, 2 * w), nn.MaxPool2d(2),
            _block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def resnet18_small(in_channels: int, num_classes: int) -> nn.Module:
    """torchvision's ResNet-18 with a 3x3 stem and no max-pool, as is usual for 28-32 px images."""
    from torchvision.models import resnet18
    m = resnet18(num_classes=num_classes)
    m.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    return m


class EmbeddingHead(nn.Module):
    """A linear classifier on embedding rows (N, dims), standardized by the mean and spread of
    the project's embedding (kept as buffers, so a checkpoint carries them)."""

    def __init__(self, dims: int, num_classes: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dims))
        self.register_buffer("std", torch.ones(dims))
        self.linear = nn.Linear(dims, num_classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear((z.float() - self.mean) / self.std)

    @torch.inference_mode()
    def probs(self, z: torch.Tensor, batch: int = 65536) -> torch.Tensor:
        """Class probabilities (N, K) of embedding rows z, in eval mode, on the CPU."""
        self.eval().cpu()
        out = [self(z[i:i + batch]).softmax(1) for i in range(0, len(z), batch)]
        return torch.cat(out) if out else torch.zeros(0, self.linear.out_features)


def folded(model: nn.Module) -> nn.Module:
    """model for forward passes only, in eval mode: where a Conv2d is followed by a BatchNorm2d in
    a Sequential, a copy with the two folded into one convolution (eval-mode batch norm is an
    affine map), which saves a pass over every activation (1.4x on the small CNN at 28 px, 2
    cores); the model itself, in eval mode, where there is nothing to fold."""
    def pairs(m: nn.Module):
        return [(seq, i) for seq in m.modules() if isinstance(seq, nn.Sequential) for i in range(len(seq) - 1)
                if type(seq[i]) is nn.Conv2d and type(seq[i + 1]) is nn.BatchNorm2d]
    if not pairs(model):
        return model.eval()
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    out = copy.deepcopy(model).eval()
    for seq, i in pairs(out):
        seq[i], seq[i + 1] = fuse_conv_bn_eval(seq[i], seq[i + 1]), nn.Identity()
    return out


def build(name: str, in_channels: int, num_classes: int, image_size: int, *, dims: int | None = None) -> nn.Module:
    """image_size is accepted so that every constructor can size itself from the input shape;
    dims is the embedding's width, for "head"."""
    if name == "head":
        if not dims:
            raise ValueError("the head model needs the embedding's width (dims)")
        return EmbeddingHead(dims, num_classes)
    match name:
        case "cnn":
            model = SmallCNN(in_channels, num_classes, width=24 if image_size <= 32 else 48)
        case "resnet18":
            model = resnet18_small(in_channels, num_classes)
        case _:
            raise ValueError(f"unknown model {name!r}; use one of {', '.join(MODELS)}")
    # channels_last lets oneDNN (CPU) and cuDNN pick their fastest convolution kernels.
    return model.to(memory_format=torch.channels_last)
