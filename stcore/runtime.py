"""Forward-only passes through a faster runtime than eager PyTorch, where one is installed.

Measured on 2 cores (benchmarks/speed.py, EfficientNet-Lite0 at 128 px): OpenVINO, which on a
CPU with bfloat16 units (AMX, AVX-512 BF16) runs in bfloat16 by default, then ONNX Runtime,
then eager PyTorch. The network is exported once to ONNX (torch.onnx's dynamo exporter) and the
file is kept in the user's cache, named by what determines it. A runtime that is missing, or that refuses a network (a
user's own `file:` backbone may hold operators it lacks), falls back to the next, with one line
saying why. GPUs and several processes keep PyTorch.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .errors import UsageError

RUNTIMES = ("auto", "openvino", "onnxruntime", "torch")
# auto keeps PyTorch below this many images: the one-time export (about 10 s on 2 cores) would
# cost more than the faster passes save (about 5 ms an image for EfficientNet-Lite0 at 128 px)
MIN_IMAGES = 4000
# a run's own model (a small CNN at 28 px: about 0.2 ms an image on PyTorch) is exported for each
# run and round, about 2 s, so the faster runtime pays from about this many images
MIN_MODEL_IMAGES = 20_000
Forward = Callable[[np.ndarray], np.ndarray]  # float32 (B, C, H, W) -> float32 (B, D)


def available() -> list[str]:
    """The runtimes installed here, fastest first; torch always."""
    return [r for r in ("openvino", "onnxruntime") if importlib.util.find_spec(r)] + ["torch"]


def candidates(runtime: str, device: str, n: int | None = None) -> list[str]:
    """The runtimes to try, in order, for runtime ('auto' or a name) on device, for n images."""
    if runtime not in RUNTIMES:
        raise UsageError(f"--runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if device != "cpu" or runtime == "torch" or (runtime == "auto" and n is not None and n < MIN_IMAGES):
        return ["torch"]
    if runtime == "auto":
        return available()
    return [runtime, "torch"]


def export_onnx(module: nn.Module, sample: torch.Tensor, dest: Path) -> Path:
    """module (float32 images -> features) as ONNX at dest, any batch size; kept once written."""
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        program = torch.onnx.export(module.eval(), (sample,), dynamo=True, verbose=False, input_names=["x"],
                                    output_names=["z"], dynamic_shapes=({0: torch.export.Dim("batch")},))
    program.save(str(tmp))
    os.replace(tmp, dest)
    return dest


def cache_name(*parts: object) -> str:
    """A file name for an exported network, from what determines it (backbone, weights, sizes)."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16] + ".onnx"


def _openvino(path: Path, threads: int, precise: bool = False) -> tuple[Forward, str]:
    import openvino as ov
    core = ov.Core()
    # THROUGHPUT: one stream per core; a batch is split across them (one request each)
    config = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_NUM_THREADS": threads}
    compiled = core.compile_model(str(path), "CPU", {**config, "INFERENCE_PRECISION_HINT": "f32"} if precise else config)
    queue = ov.AsyncInferQueue(compiled, max(1, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    precision = hint.to_string() if hasattr(hint, "to_string") else str(hint)  # bf16 on AMX / AVX-512 BF16

    def forward(x: np.ndarray) -> np.ndarray:
        parts = np.array_split(x, min(len(queue), len(x)))
        out: list = [None] * len(parts)
        queue.set_callback(lambda request, k: out.__setitem__(k, request.get_output_tensor(0).data.copy()))
        for k, part in enumerate(parts):
            queue.start_async({0: np.ascontiguousarray(part)}, k)
        queue.wait_all()
        return np.concatenate(out)
    return forward, f"openvino {ov.__version__.split('-')[0]} ({precision})"


def _onnxruntime(path: Path, threads: int, precise: bool = False) -> tuple[Forward, str]:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return (lambda x: session.run(None, {"x": x})[0]), f"onnxruntime {ort.__version__} (f32)"


def weights_digest(module: nn.Module) -> str:
    """A digest of a network's weights: an ssl encoder, a file: model or a run's model has no
    file of its own to name its export by."""
    h = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        h.update(key.encode() + tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def compile_model(module: nn.Module, sample: torch.Tensor, *, runtime: str, device: str, n: int | None,
                  say: Callable[[str], None] = print, keep: bool = True, tag: tuple = (),
                  min_images: int = MIN_IMAGES, precise: bool = False) -> tuple[Forward | None, str]:
    """compile_forward for a network whose export is named by its weights (and tag): kept in
    cache_dir() (keep: a backbone, used again by later jobs), or in a folder removed at once (a
    run's model, which changes with every run and round). auto keeps PyTorch below min_images."""
    if device != "cpu" or runtime == "torch" or (runtime == "auto" and n is not None and n < min_images):
        return compile_forward(module, sample, runtime="torch", device=device, onnx_path=Path(), say=say)
    module = module.cpu().eval()
    if keep:
        name = cache_name(*tag, weights_digest(module), tuple(sample.shape[1:]), torch.__version__)
        out = compile_forward(module, sample, runtime=runtime, device=device, onnx_path=cache_dir() / name,
                              n=n, say=say, precise=precise)
        prune(cache_dir(), used=cache_dir() / name)
        return out
    import tempfile
    with tempfile.TemporaryDirectory(prefix="stcore-onnx-") as tmp:  # the runtimes read the file when compiling
        return compile_forward(module, sample, runtime=runtime, device=device, onnx_path=Path(tmp) / "model.onnx",
                               n=n, say=say, precise=precise)


CACHE_BYTES = 2 << 30  # the exported backbones kept, newest used first, up to this size in all


def prune(folder: Path, used: Path | None = None, limit: int = CACHE_BYTES) -> list[Path]:
    """Mark used as just used, then remove the least recently used exports in folder past limit
    bytes in all (the one just used is always kept); returns those removed."""
    if used is not None and used.exists():
        os.utime(used)
    files = sorted((f for f in folder.glob("*.onnx") if f.is_file()), key=lambda f: f.stat().st_mtime, reverse=True)
    gone, total = [], 0
    for f in files:
        total += f.stat().st_size
        if total > limit and f != used:
            f.unlink(missing_ok=True)
            gone.append(f)
    return gone


def cache_dir() -> Path:
    """Where exported networks are kept, once per machine: $XDG_CACHE_HOME/stcore/onnx."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stcore" / "onnx"


def compile_forward(module: nn.Module, sample: torch.Tensor, *, runtime: str, device: str, onnx_path: Path,
                    n: int | None = None, say: Callable[[str], None] = print,
                    precise: bool = False) -> tuple[Forward | None, str]:
    """(a forward pass of module on the fastest runtime that takes it, its description), or
    (None, 'torch ...') where eager PyTorch stays (n: the images it will see; auto keeps PyTorch
    for a few). say: one line for each runtime refused. precise: float32 throughout (a test
    set's accuracy), where OpenVINO would otherwise run in bfloat16."""
    threads = torch.get_num_threads()
    for name in candidates(runtime, device, n):
        if name == "torch":
            return None, f"torch {torch.__version__.split('+')[0]} (f32)"
        try:
            path = export_onnx(module, sample, onnx_path)
            forward, what = (_openvino if name == "openvino" else _onnxruntime)(path, threads, precise)
            forward(sample.numpy())  # a runtime that cannot run the network says so now, not mid-job
            return forward, what
        except ImportError:
            say(f"note: the {name} runtime is not installed; trying the next")
        except Exception as e:  # noqa: BLE001 (exporters and runtimes raise many types; each means: not this one)
            say(f"note: {name} cannot run this network ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                f"trying the next")
    return None, f"torch {torch.__version__.split('+')[0]} (f32)"
