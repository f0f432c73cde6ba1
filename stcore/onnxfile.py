"""A run's model as an ONNX file, for runtimes without PyTorch (onnxruntime and others): images in
[0, 1] (N, C, H, W) at the project's input shape -> class probabilities (N, K). A head on an
embedding carries its backbone inside (embed.HeadOnImages), so the file reads images too.

torch.onnx's dynamo exporter writes it (it needs onnxscript): the TorchScript exporter is
deprecated since PyTorch 2.9 and cannot export the antialiased resize of the pretrained backbones."""
from __future__ import annotations

import json
import warnings

import torch
from torch import nn

from .errors import ConfigError
from .pseudo import image_model


def preprocessing(project, model: nn.Module) -> dict:
    """What is done to an image file before the model reads it, and what the model then does itself."""
    c, h, w = project.meta["input_shape"]
    out = {"decode": "the first frame; transparency composited on white; converted to "
                     + ("L (gray, 1 channel)" if c == 1 else "RGB (3 channels)"),
           "resize": [h, w], "resample": "bilinear (Pillow, reducing_gap=3.0)", "scale": "uint8 / 255",
           "mean": [0.0] * c, "std": [1.0] * c, "layout": "NCHW float32"}
    backbone = getattr(model, "backbone", None)
    if backbone is not None:  # a head on an embedding: its backbone resizes and normalizes inside the graph
        out["in_model"] = {"backbone": backbone.name, "image_size": backbone.image_size,
                           "mean": list(backbone.mean), "std": list(backbone.std)}
    return out


def onnx_bytes(project, run_id: str) -> bytes:
    """The ONNX model of a run (input 'images', output 'probs', any batch size), with metadata_props
    classes (a JSON list), input_shape ([C, H, W]), preprocessing (JSON, see preprocessing) and run."""
    try:
        import onnx
        import onnxscript  # noqa: F401 (the exporter imports it; said here in one line)
    except ImportError as e:
        raise ConfigError(f"an ONNX export needs the packages onnx and onnxscript (`pip install onnx onnxscript`): "
                          f"{e}") from e
    model = image_model(project, run_id)
    probs = nn.Sequential(model, nn.Softmax(1)).eval()
    c, h, w = project.meta["input_shape"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals are not the user's to act on
        program = torch.onnx.export(probs, (torch.rand(2, c, h, w),), dynamo=True, verbose=False,
                                    input_names=["images"], output_names=["probs"],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},))
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {"classes": json.dumps(project.classes), "input_shape": json.dumps([c, h, w]),
                                        "preprocessing": json.dumps(preprocessing(project, model)), "run": run_id})
    return proto.SerializeToString()
