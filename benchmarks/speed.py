"""Training and pseudo-labeling throughput: stcore against a bare PyTorch loop doing the same work.

Both sides use the same model constructor, batch sizes, augmentation functions and data
tensors. They run alternately in this process, and the ratio is taken per pair of runs.
"""
from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from stcore import api, augment
from stcore.checkpoints import run_model
from stcore.config import make_config, to_dict
from stcore.data import TrainData, images, training_data
from stcore.methods import METHODS
from stcore.metrics import agreement
from stcore.models import build
from stcore.project import Project
from stcore.pseudo import pseudo_label
from stcore.runtime import available
from stcore.train import fit
from stcore.worker import Reporter

from .common import alternate, paired_ratio, summary, timed

# Students that learn stored (or propagated) pool labels; every other method labels the weak
# view of each unlabeled batch with a forward pass as it trains (FixMatch and its variants).
OFFLINE_METHODS = tuple(m for m, method in METHODS.items() if not method.online)
TEST_SLICE = 256  # fit evaluates at its last step; a small test slice keeps that out of the way


def make_project(folder: Path, *, limit: int | None, teacher_steps: int, say=print) -> tuple[Project, str]:
    """A Fashion-MNIST project (10 labels per class, seed 0) with a short-trained teacher and
    pseudo-labels. The teacher's quality does not matter for speed; it only has to exist."""
    t0 = time.perf_counter()
    p = api.create_project(folder, dataset="fashion-mnist", labels_per_class=10, seed=0, limit=limit)
    say(f"  project: {api.counts(p)['pool']} pool items ({time.perf_counter() - t0:.1f} s)")
    teacher = api.start_training(p, {"role": "teacher", "steps": teacher_steps, "device": "cpu"}, detach=False)
    state = p.store.runs.get(teacher)["state"]
    if state != "finished":
        raise RuntimeError(f"the benchmark teacher {teacher} ended {state}: {p.store.runs.get(teacher)['error']}")
    labeled = api.start_pseudo_label(p, device="cpu", detach=False)
    if p.store.runs.get(labeled)["state"] != "finished":
        raise RuntimeError(f"the benchmark's pseudo-labeling {labeled} ended {p.store.runs.get(labeled)['state']}: "
                           f"{p.store.runs.get(labeled)['error']}")
    say(f"  teacher {teacher} ({teacher_steps} steps) and pseudo-labels ready "
        f"({time.perf_counter() - t0:.1f} s)")
    return p, teacher


# ------------------------------------------------------------------ 1. training
def bare_train(model: torch.nn.Module, data: TrainData, cfg, *, steps: int, mark_every: int) -> float:
    """The loop a user would write by hand for the same method family: sample, augment, forward,
    loss, step. No EMA, scheduler, metrics, evaluation or checkpoints; the thresholding maths is
    FixMatch's (a fixed threshold), which costs the same as any variant's. Returns images/s over
    steps mark_every..steps."""
    offline = cfg.method in OFFLINE_METHODS
    aug_lab = augment.strong if getattr(cfg, "label_aug", "weak") == "strong" else augment.weak
    B, U = cfg.batch_size, cfg.batch_size * cfg.unlabeled_ratio
    strength = cfg.strength
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True,
                          weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    model.train()
    t_first = None
    for step in range(1, steps + 1):
        i = torch.randint(len(data.x_lab), (B,), generator=g)
        j = torch.randint(len(data.x_unl), (U,), generator=g)
        xl = aug_lab(data.x_lab[i].float() / 255, flip=data.flip, g=g)
        xu = data.x_unl[j].float() / 255
        logits = model(torch.cat([xl, augment.strong(xu, flip=data.flip, g=g, magnitude=strength)]))
        loss = F.cross_entropy(logits[:B], data.y_lab[i])
        if offline:
            loss = loss + F.cross_entropy(logits[B:], data.p_unl[j].argmax(1))
        else:
            with torch.no_grad():
                conf, target = torch.softmax(model(augment.weak(xu, flip=data.flip, g=g)), 1).max(1)
            loss = loss + (F.cross_entropy(logits[B:], target, reduction="none") * (conf >= cfg.threshold)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step == mark_every:
            t_first = time.perf_counter()
    return (steps - mark_every) * (B + U) / (time.perf_counter() - t_first)


def fit_images_per_s(model, data: TrainData, cfg, callback) -> float:
    """Run stcore.train.fit and measure images/s between its first and last 'train' callback,
    which leaves out setup, the first few (warm-up) steps and the final evaluation."""
    marks: list[tuple[int, float]] = []

    def cb(kind: str, step: int, values: dict) -> bool:
        if kind == "train":
            marks.append((step, time.perf_counter()))
        return callback(kind, step, values)

    fit(model, data, cfg, device="cpu", callback=cb)
    (s0, t0), (s1, t1) = marks[0], marks[-1]
    per_step = cfg.batch_size * (1 + cfg.unlabeled_ratio)
    return (s1 - s0) * per_step / (t1 - t0)


def bench_train(project: Project, *, steps: int, repeats: int, overrides: dict | None = None,
                say=print) -> dict:
    """Student training, default model, batch and augmentation. Three sides, alternated:
    bare loop; fit with a no-op callback; fit with the worker's Reporter (metric rows and a
    heartbeat thread writing to the store once a second, as in a real run)."""
    overrides = overrides or {}
    # eval_every=steps: no evaluation inside the measured window (evaluation is not training);
    # rounds=1: re-labeling the pool between rounds is inference, measured by bench_pseudo.
    cfg = make_config(role="student", steps=steps, eval_every=steps, device="cpu", **{"rounds": 1, **overrides})
    data = training_data(project, role=cfg.role, corrected_weight=cfg.corrected_weight,
                         use_unreviewed=cfg.use_unreviewed, needs_pseudo_labels=cfg.method in OFFLINE_METHODS)
    data = dataclasses.replace(data, x_test=data.x_test[:TEST_SLICE], y_test=data.y_test[:TEST_SLICE])
    if not len(data.x_unl):
        raise RuntimeError("the student has no unlabeled data to train on")
    c, h, _ = project.meta["input_shape"]

    def fresh_model():
        torch.manual_seed(0)
        return build(cfg.model, c, len(project.classes), h)

    def bare() -> float:
        return bare_train(fresh_model(), data, cfg, steps=steps, mark_every=cfg.log_every)

    def fit_noop() -> float:
        return fit_images_per_s(fresh_model(), data, cfg, lambda *a: False)

    def fit_reporter() -> float:
        run_id = project.store.runs.create("student", "cpu", to_dict(cfg), steps, busy_check=False)
        try:
            with Reporter(project.path, run_id) as rep:
                return fit_images_per_s(fresh_model(), data, cfg, rep.report)
        finally:
            # a timing run keeps no model; left queued, it would hold the CPU against later runs
            project.store.runs.transition(run_id, ["queued"], state="cancelled", ended=time.time())

    runs = alternate({"bare": bare, "fit_noop": fit_noop, "fit_reporter": fit_reporter}, repeats)
    for k, v in runs.items():
        say(f"  train {k:<13} images/s: {', '.join(f'{x:.0f}' for x in v)}")
    ratio = paired_ratio(runs["fit_reporter"], runs["bare"])
    noop_ratio = paired_ratio(runs["fit_noop"], runs["bare"])
    reporting = paired_ratio(runs["fit_reporter"], runs["fit_noop"])
    return {
        "config": {k: v for k, v in to_dict(cfg).items() if k in (
            "method", "model", "batch_size", "unlabeled_ratio", "steps", "log_every", "threshold")},
        "strength": cfg.strength,
        "method": cfg.method,
        "bare_method": ("hard stored pseudo-labels" if cfg.method in OFFLINE_METHODS
                        else "fixmatch (weak view labels the strong view)"),
        "images_per_step": cfg.batch_size * (1 + cfg.unlabeled_ratio),
        "images_per_s": {k: summary(v, 1) for k, v in runs.items()},
        "ratio_vs_bare": ratio,                    # what a user's run gets (with reporting)
        "ratio_noop_vs_bare": noop_ratio,          # the loop alone (EMA, scheduler, loss.item)
        "reporting_cost": round(1 - reporting["median"], 4),  # fraction lost to metrics + heartbeat
        "reporting_ratio": reporting,
    }


# ------------------------------------------------------------------ 2. pseudo-labeling
def bench_pseudo(project: Project, teacher: str, *, repeats: int, batch_size: int = 1024, say=print) -> dict:
    """What a pseudo-label job runs (stcore.pseudo.pseudo_label over the whole pool, store writes
    and the agreement with hidden labels included) against bare batched inference with the same
    model over the same images, already in memory."""
    model = run_model(project, teacher)
    _, rows = project.store.items.pool_order()
    pool_images = images(project, "train")[rows]  # the bare side gets its tensor for free
    n = len(rows)

    @torch.inference_mode()
    def bare() -> float:
        t0 = time.perf_counter()
        model.eval()
        out = []
        for s in range(0, n, batch_size):
            probs = torch.softmax(model(pool_images[s:s + batch_size].float() / 255), 1)
            out.append(probs.max(1))
        return n / (time.perf_counter() - t0)

    def stcore_side() -> float:
        t0 = time.perf_counter()
        pseudo_label(project, project.store.runs.get(teacher), device="cpu", batch_size=batch_size)
        agreement(project.store.items.pseudo_label_agreement())
        return n / (time.perf_counter() - t0)

    bare()  # warm-up: first-touch of the weights and oneDNN's kernel choice
    runs = alternate({"bare": bare, "stcore": stcore_side}, repeats)
    for k, v in runs.items():
        say(f"  pseudo-label {k:<7} images/s: {', '.join(f'{x:.0f}' for x in v)}")
    return {"items": n, "batch_size": batch_size, "images_per_s": {k: summary(v, 1) for k, v in runs.items()},
            "ratio_vs_bare": paired_ratio(runs["stcore"], runs["bare"])}


def bench_embed(project: Project, *, repeats: int, n: int, image_size: int, batch_size: int = 128,
                say=print) -> dict:
    """An embed job's forward passes (stcore.embed.compute: EfficientNet-Lite0, resizing, writing
    float16 rows to the memory-mapped file) against a bare loop of the same forward passes with
    the same weights over the same images, already in memory."""
    from stcore import embed
    x = images(project, "train")[:n].clone()
    backbone = embed.build("efficientnet-lite0", project, image_size=image_size)
    model = backbone.module.to(memory_format=torch.channels_last).eval()
    mean = torch.tensor(backbone.mean).view(1, 3, 1, 1)
    std = torch.tensor(backbone.std).view(1, 3, 1, 1)

    @torch.inference_mode()
    def bare() -> float:
        t0 = time.perf_counter()
        for s in range(0, n, batch_size):
            xb = x[s:s + batch_size].float() / 255
            xb = xb.expand(-1, 3, -1, -1) if xb.shape[1] == 1 else xb
            xb = F.interpolate(xb, size=(image_size, image_size), mode="bilinear", align_corners=False)
            model(((xb - mean) / std).contiguous(memory_format=torch.channels_last))
        return n / (time.perf_counter() - t0)

    def side(b) -> Callable[[], float]:
        def run() -> float:
            t0 = time.perf_counter()
            embed.compute(project, b, x, device="cpu", batch_size=batch_size)
            return n / (time.perf_counter() - t0)
        return run

    # the runtime an embed job of many images gets (runtime.py), and the same backbone on PyTorch
    fast = embed.build("efficientnet-lite0", project, image_size=image_size)
    embed.accelerate(fast, x, runtime=available()[0], say=say)
    sides = {"bare": bare, "stcore": side(backbone), "runtime": side(fast)}
    for warm in sides.values():  # warm-up of each side alike: first-touch of the weights, oneDNN's kernel choice
        warm()
    runs = alternate(sides, repeats)
    for k, v in runs.items():
        say(f"  embed {k:<7} images/s: {', '.join(f'{v_:.1f}' for v_ in v)}")
    flops = image_flops(embed.Features(backbone), x[:1].float() / 255)
    return {"backbone": "efficientnet-lite0", "images": n, "image_size": image_size, "batch_size": batch_size,
            "images_per_s": {k: summary(v, 1) for k, v in runs.items()}, "runtime": fast.runtime,
            "ratio_vs_bare": paired_ratio(runs["stcore"], runs["bare"]),
            "runtime_vs_torch": paired_ratio(runs["runtime"], runs["stcore"]),
            "roofline": {"gflops_per_image": round(flops / 1e9, 4),
                         "gflops_per_s": {k: round(statistics.median(v) * flops / 1e9, 1) for k, v in runs.items()},
                         "matmul_gflops_per_s": matmul_peak(fast.runtime, say)}}


def image_flops(module: torch.nn.Module, x: torch.Tensor) -> float:
    """Floating-point operations of one forward pass of one image (a multiply-add is two)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        module.eval()(x)
    return float(counter.get_total_flops())


def matmul_peak(runtime: str, say=print, side: int = 2048, reps: int = 5) -> dict:
    """GFLOP/s of a plain side x side matrix multiply: PyTorch in float32 and bfloat16, and the
    runtime the embedding used (its own precision), the best of reps: a roof, not a mean."""
    from stcore.runtime import compile_forward
    a, w = torch.randn(side, side), torch.randn(side, side)

    def best(fn) -> float:
        fn()
        t = min(timed(fn)[0] for _ in range(reps))
        return round(2 * side ** 3 / t / 1e9, 1)
    out = {"torch f32": best(lambda: a @ w)}
    ab, wb = a.bfloat16(), w.bfloat16()
    out["torch bf16"] = best(lambda: ab @ wb)
    name = runtime.split()[0]
    if name in ("openvino", "onnxruntime"):
        class MatMul(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.w = torch.nn.Parameter(w)

            def forward(self, x):
                return x @ self.w
        with tempfile.TemporaryDirectory() as d:
            forward, what = compile_forward(MatMul(), a, runtime=name, device="cpu", onnx_path=Path(d) / "mm.onnx",
                                            say=say)
            if forward is not None:
                an = a.numpy()
                out[what] = best(lambda: forward(an))
    return out
