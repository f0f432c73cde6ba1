"""Job kinds: one table. Each kind is one entry: its config (a frozen dataclass with its
defaults), its checks before a run is queued, its run in the worker, a one-line summary of a
finished run's result, and whether a stopped run resumes from where it stopped.

A run's role in the store is its kind's name. The API's start functions, the worker, the CLI
and the Train page read this table; nothing else lists the kinds or their defaults. Light at
import (no torch): the checks and the runs import the heavy modules when called.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from .errors import NotFound, ProjectError, UsageError
from .fields import from_values
from .project import Project

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
class MapConfig:
    method: str = "auto"            # umap, pca, or auto (UMAP up to the exact neighbour search's size)
    device: str = "cpu"


def _training(role: str) -> Callable[..., Any]:
    """The config of a teacher or student (config.TrainConfig), from plain values: strict for
    what a user gave, lenient for a stored run (config.stored_config)."""
    def config(values: dict, *, strict: bool = True):
        from .config import make_config, stored_config
        return make_config({**values, "role": role}) if strict else stored_config({**values, "role": role})
    return config


def _plain(cls) -> Callable[..., Any]:
    """The config builder of a kind whose config is the dataclass cls (fields.from_values)."""
    return lambda values, *, strict=True: from_values(cls, values, strict=strict)


# ------------------------------------------------------------------ what the project decides
def recommended_backbone(project: Project) -> str:
    """The backbone measured best for the project's kind of images: ImageNet features for colour
    photos; for small gray images (Fashion-MNIST) they are no better than the pixels, which take
    seconds instead of minutes."""
    channels, side, _ = project.meta["input_shape"]
    return "efficientnet-lite0" if channels == 3 else "pixels"


def default_model(project: Project) -> str:
    """The model a run gets unless told: a head on the embedding when the project's embedding is a
    pretrained network's (on CIFAR-10 with 100 labels per class and EfficientNet-Lite0 the head
    teacher reaches 71% where the small CNN reaches 47%), else the small CNN on the images (on
    the pixel embedding a linear head is weaker than the CNN, and on an ssl embedding pretrained
    for ten minutes on two CPU cores, 65.2% against 67.0% on Fashion-MNIST)."""
    current = project.store.meta().get("embedding")
    return "head" if current and current not in ("pixels", "ssl") else "cnn"


def has_ssl_encoder(project: Project) -> bool:
    """Whether a network can start from the project's self-supervised encoder (--init ssl)."""
    return any(e["backbone"] == "ssl" for e in embeddings(project))


def embeddings(project: Project) -> list[dict]:
    """The provenance of each finished embedding, and which one the project reads."""
    d = project.path / "embeddings"
    current = project.store.meta().get("embedding")
    found = [json.loads(p.read_text()) for p in sorted(d.glob("*.json"))] if d.is_dir() else []
    return [{**e, "current": e["backbone"] == current} for e in found]



def check_teacher(project: Project, cfg) -> None:
    """The teacher a student starts from must exist and have a checkpoint that fits this project
    (its id, class count, input shape and model); ProjectError otherwise, so that a bad teacher
    never gets as far as a failed run."""
    if cfg.teacher_run:
        project.store.runs.get(cfg.teacher_run)  # NotFound naming the known runs
    if cfg.model == "head" and not project.store.meta().get("embedding"):
        raise ProjectError("--model head learns on the project's embedding, and there is none; run "
                           "`stcore embed` first (or Train → Embed)")
    if not (cfg.role == "student" and cfg.init == "teacher"):
        return
    from .checkpoints import model_from, run_checkpoint
    chosen = project.store.runs.get(cfg.teacher_run) if cfg.teacher_run else project.teacher_run()
    if chosen is None:
        raise ProjectError("the student starts from the teacher's weights, and there is no finished teacher; "
                           "train one (stcore train PROJECT --role teacher), or use --init scratch")
    ck = run_checkpoint(project, chosen["id"])  # refuses another project's, or a wrong class count or shape
    if "head" in (ck["config"].get("model"), cfg.model) and ck["config"].get("model") != cfg.model:
        return  # a head and a network share no layers: the student starts from scratch
    if ck["config"].get("model") != cfg.model:
        raise ProjectError(f"the teacher {chosen['id']} is a {ck['config'].get('model')}, the student a "
                           f"{cfg.model}; use the same --model, or --init scratch")
    model_from(project, ck, f"the teacher {chosen['id']}")  # the weights themselves must fit too


# ------------------------------------------------------------------ checks
# Each takes the values a user gave and returns (the config the run is queued with, the run's
# total steps or items); what the project decides (the device, a pinned teacher, the backbone)
# is filled in, and anything that would only fail in the worker is refused here, with a reason.
def _device(name: str) -> str:
    from .devices import resolve
    return resolve(name)


def _check_training(project: Project, values: dict) -> tuple[Any, int]:
    """The device must exist and be free, and a student's teacher must fit this project."""
    from .config import TrainConfig, default_steps, make_config
    from .devices import resolve_many
    device, nproc = resolve_many(values.get("device", TrainConfig.device), values.get("nproc"))
    values = {"model": default_model(project), **values, "device": device, "nproc": nproc}
    if values.get("role") == "student" and not values.get("teacher_run") and project.teacher_run():
        values["teacher_run"] = project.teacher_run()["id"]  # pinned: a resume or a later promote keeps it
    cfg = make_config(values)
    check_teacher(project, cfg)
    if cfg.init == "ssl" and not has_ssl_encoder(project):
        raise UsageError(f"--init ssl starts from the project's self-supervised encoder, and it has none; run "
                         f"`stcore embed {project.path} --backbone ssl` first")
    return cfg, cfg.steps or default_steps(cfg.role, cfg.rounds)


def _check_teacher(project: Project, values: dict) -> tuple[Any, int]:
    return _check_training(project, {**values, "role": "teacher"})


def _check_student(project: Project, values: dict) -> tuple[Any, int]:
    return _check_training(project, {**values, "role": "student"})


def _check_pseudo_label(project: Project, values: dict) -> tuple[PseudoLabelConfig, int]:
    """A finished teacher (the current one by default) whose checkpoint fits this project."""
    cfg = from_values(PseudoLabelConfig, values)
    if cfg.batch_size <= 0:
        raise UsageError(f"--batch-size must be positive, not {cfg.batch_size}")
    chosen = project.store.runs.get(cfg.teacher_run) if cfg.teacher_run else project.teacher_run()
    if chosen is None or chosen["state"] != "finished":
        raise ProjectError("there is no finished teacher yet; train one first (stcore train PROJECT --role teacher)")
    from .checkpoints import run_model
    run_model(project, chosen["id"])  # a missing, damaged or foreign checkpoint is refused now
    return replace(cfg, device=_device(cfg.device), teacher_run=chosen["id"]), project.counts()["pool"]


def _check_embed(project: Project, values: dict) -> tuple[EmbedConfig, int]:
    """A backbone that exists here, a budget only for ssl (epochs or minutes, whichever ends
    first), several processes only for a pretrained network."""
    from . import embed, ssl
    from .devices import resolve_many
    cfg = from_values(EmbedConfig, values)
    backbone = cfg.backbone or recommended_backbone(project)
    if cfg.nproc is not None and cfg.nproc < 1:
        raise UsageError(f"--nproc must be at least 1, not {cfg.nproc}")
    device, nproc = resolve_many(cfg.device, cfg.nproc)
    if nproc > 1 and backbone in ("pixels", "ssl"):
        raise UsageError(f"the {backbone} backbone embeds in one process ("
                         + ("one PCA over every image, in seconds" if backbone == "pixels" else
                            "its self-supervised pretraining trains on one device")
                         + "); leave out --nproc, or pick a pretrained backbone")
    if cfg.batch_size <= 0:
        raise UsageError(f"--batch-size must be positive, not {cfg.batch_size}")
    if cfg.image_size is not None and not 16 <= cfg.image_size <= 512:
        raise UsageError(f"--image-size must be between 16 and 512 pixels, not {cfg.image_size}")
    if backbone != "ssl" and (cfg.epochs is not None or cfg.minutes is not None):
        raise UsageError(f"--epochs and --minutes are the ssl backbone's pretraining budget; {backbone} trains nothing")
    if backbone == "ssl" and cfg.image_size is not None:
        raise UsageError("--image-size is for pretrained backbones; ssl learns on the images as they are")
    embed.check(backbone, cfg.weights)
    cfg = replace(cfg, backbone=backbone, device=device, nproc=nproc,
                  weights=str(Path(cfg.weights).expanduser().resolve()) if cfg.weights else None)
    c = project.counts()
    if backbone != "ssl":
        return cfg, c["labeled"] + c["pool"] + c["test"]
    cfg = replace(cfg, epochs=ssl.EPOCHS if cfg.epochs is None else cfg.epochs,
                  minutes=ssl.MINUTES if cfg.minutes is None else cfg.minutes)
    if cfg.epochs <= 0 or cfg.minutes <= 0:
        raise UsageError(f"--epochs and --minutes must be positive, not {cfg.epochs} and {cfg.minutes}")
    if c["labeled"] + c["pool"] < cfg.batch_size:
        raise UsageError(f"ssl pretraining needs at least --batch-size ({cfg.batch_size}) images besides the test "
                         f"set; the project has {c['labeled'] + c['pool']}: lower --batch-size")
    return cfg, ssl.planned_steps(c["labeled"] + c["pool"], cfg.batch_size, cfg.epochs)


def _check_evaluate(project: Project, values: dict) -> tuple[EvaluateConfig, int]:
    """Only a finished teacher or student has a final model to evaluate."""
    cfg = from_values(EvaluateConfig, values)
    target = project.store.runs.get(cfg.run)  # NotFound naming the known runs
    if target["role"] not in ("teacher", "student") or target["state"] != "finished":
        raise UsageError(f"run {cfg.run} is {target['role']} and {target['state']}; only a finished teacher "
                         f"or student can be evaluated")
    return replace(cfg, device=_device(cfg.device)), project.counts()["test"]


def _check_label_issues(project: Project, values: dict) -> tuple[LabelIssuesConfig, int]:
    """Enough human labels to judge each one by the others."""
    from .quality import MIN_LABELS
    cfg = from_values(LabelIssuesConfig, values)
    n = len(project.store.items.human_labels())
    if n < MIN_LABELS:
        raise UsageError(f"finding label errors needs at least {MIN_LABELS} human labels, the project has {n}; "
                         f"label or review more items first")
    return replace(cfg, device=_device(cfg.device)), n


def _check_duplicates(project: Project, values: dict) -> tuple[DuplicatesConfig, int]:
    cfg = from_values(DuplicatesConfig, values)
    if not 0 < cfg.threshold <= 1:
        raise UsageError(f"--threshold must be within (0, 1], not {cfg.threshold}")
    c = project.counts()
    return replace(cfg, device=_device(cfg.device)), c["labeled"] + c["pool"] + c["test"]


def _check_map(project: Project, values: dict) -> tuple[MapConfig, int]:
    cfg = from_values(MapConfig, values)
    if cfg.method not in MAP_METHODS:
        raise UsageError(f"unknown map method {cfg.method!r}; use one of {', '.join(MAP_METHODS)}")
    c = project.counts()
    return replace(cfg, device=_device(cfg.device)), c["labeled"] + c["pool"]


# ------------------------------------------------------------------ runs (in the worker)
# Each takes (project, the run's row, the worker's reporter) and, for the kinds that train or
# embed on several processes, rank 0's group; it returns {'eval': the result, 'done': steps or
# items}, or the training loop's output with 'stopped' when cancelled.
def save_test_probs(run_dir: Path, probs) -> None:
    """The probabilities (N, K) of a run's model on the test set, float16, written whole or not at all."""
    import numpy as np
    tmp = run_dir / f".test_probs.{os.getpid()}.npy"
    np.save(tmp, probs.half().numpy())
    os.replace(tmp, run_dir / "test_probs.npy")


def _train(project: Project, run: dict, reporter, group=None) -> dict:
    from .checkpoints import model_from, project_tag, run_checkpoint
    from .config import stored_config
    from .data import training_data
    from .devices import resolve
    from .methods import METHODS
    from .models import build
    from .train import fit, total_steps

    cfg = stored_config(run["config"])
    device = group.device if group else resolve(cfg.device)
    teacher = _teacher(project, cfg)
    data = training_data(project, role=cfg.role, corrected_weight=cfg.corrected_weight,
                         use_unreviewed=cfg.use_unreviewed,
                         needs_pseudo_labels=cfg.role == "student" and (cfg.model == "head"
                                                                        or not METHODS[cfg.method].online))
    if cfg.role == "student" and METHODS[cfg.method].pool_labels == "graph":
        from .embed import attach
        attach(project, data)
    total = total_steps(cfg, data)
    project.store.runs.update(run["id"], total=total)
    run_dir = project.run_dir(run["id"])
    run_dir.mkdir(parents=True, exist_ok=True)
    for tmp in run_dir.glob(".*.tmp"):  # half-written checkpoints of a worker that was killed
        tmp.unlink(missing_ok=True)
    if cfg.model == "head":
        return _train_head(project, run, cfg, data, teacher, total, reporter)
    c, h, _ = project.meta["input_shape"]
    model, resume = build(cfg.model, c, len(project.classes), h), None
    if (run_dir / "latest.pt").exists():
        resume = run_checkpoint(project, run["id"])
        project.store.runs.truncate_metrics(run["id"], resume["step"])
    else:
        project.store.runs.truncate_metrics(run["id"], 0)
        if cfg.role == "student" and cfg.init == "teacher":
            if teacher is None:
                raise ProjectError("the student starts from the teacher's weights, and there is no finished "
                                   "teacher; train one, or use --init scratch")
            ck = run_checkpoint(project, teacher["id"])
            if ck["config"].get("model") not in (cfg.model, "head"):  # a head shares no layers with a network
                raise ProjectError(f"the teacher is a {ck['config'].get('model')}, the student a {cfg.model}; "
                                   f"use the same model, or --init scratch")
            if ck["config"].get("model") == cfg.model:
                model = model_from(project, ck, f"the teacher {teacher['id']}")
        if cfg.init == "ssl":
            from .ssl import start_from_encoder
            start_from_encoder(project, model, cfg.model)
    if group is not None:  # the other ranks train the same model on the same data
        group.share({"kind": "train", "model": model, "data": data, "cfg": cfg, "resume": resume})
    out = fit(model, data, cfg, device=device, callback=reporter.report, checkpoint_dir=run_dir, resume=resume,
              extra={**project_tag(project), "teacher_run": (teacher or {}).get("id")}, group=group)
    if group is not None:
        write_ranks(run_dir, group.gather(rank_report(group, out)))
    if out["test_probs"] is not None:
        save_test_probs(run_dir, out["test_probs"])
    return {**out, "done": total}



def _train_head(project: Project, run: dict, cfg, data, teacher: dict | None, total: int, reporter) -> dict:
    """A head on the project's embedding (--model head): a teacher, or a student that starts from
    a head teacher's weights where it has one, learning the stored (spread) pseudo-labels."""
    from . import embed
    from .checkpoints import project_tag, run_checkpoint
    from .head import fit_head, standardize_on
    from .methods import METHODS
    from .models import build
    import torch
    z = embed.load(project)
    if z is None:
        raise ProjectError("--model head learns on the project's embedding, and there is none; "
                           "run `stcore embed` first")
    train_z, data.z_test = z
    data.z_lab, data.z_unl = train_z[data.rows_lab], train_z[data.rows_unl]
    torch.manual_seed(cfg.seed)  # the head's initial weights, as a run's seed fixes the network's
    model = build("head", 0, len(project.classes), 0, dims=train_z.shape[1])
    standardize_on(model, train_z)
    run_dir, resume = project.run_dir(run["id"]), None
    if (run_dir / "latest.pt").exists():
        resume = run_checkpoint(project, run["id"])
        project.store.runs.truncate_metrics(run["id"], resume["step"])
    else:
        project.store.runs.truncate_metrics(run["id"], 0)
    if resume is None and cfg.role == "student" and cfg.init == "teacher" and teacher is not None:
        ck = run_checkpoint(project, teacher["id"])
        if ck["config"].get("model") == "head" and ck["ema"]["linear.weight"].shape[1] == train_z.shape[1]:
            model.load_state_dict(ck["ema"])  # else the head starts fresh: there is nothing to start from
    if cfg.role == "student" and data.p_unl is not None and METHODS[cfg.method].pool_labels == "graph" and resume is None:
        # labelprop: the pool's labels are spread again with today's human labels (reviews included)
        from .pseudo import spread_over_embedding
        reporter.report("phase", 0, {"phase": f"spreading the labels over the graph of {len(data.z_unl):,} pool "
                                              f"images", "done": 0, "total": 0, "started": time.time()})
        spread = spread_over_embedding(project, data.rows_unl, data.p_unl, corrected_weight=cfg.corrected_weight)
        data.p_unl = spread if spread is not None else data.p_unl
    out = fit_head(model, data, cfg, total=total, callback=reporter.report, checkpoint_dir=run_dir,
                   resume=resume, extra={**project_tag(project), "teacher_run": (teacher or {}).get("id"),
                                         "embedding": project.store.meta().get("embedding")})
    if out["test_probs"] is not None:
        save_test_probs(run_dir, out["test_probs"])
    return {**out, "done": total}


def _teacher(project: Project, cfg) -> dict | None:
    """The teacher a student learns from: the one named in its config, else the current one."""
    if cfg.role != "student" and not cfg.teacher_run:
        return None
    try:
        return project.store.runs.get(cfg.teacher_run) if cfg.teacher_run else project.teacher_run()
    except NotFound as e:
        raise ProjectError(f"the student's teacher {cfg.teacher_run} is gone ({e})") from e


def _pseudo_label(project: Project, run: dict, reporter) -> dict:
    from .devices import resolve
    from .metrics import agreement
    from .pseudo import pseudo_label
    cfg = from_values(PseudoLabelConfig, run["config"], strict=False)
    summary = pseudo_label(project, project.store.runs.get(cfg.teacher_run), device=resolve(cfg.device),
                           batch_size=cfg.batch_size, progress=reporter.progress,
                           phase=lambda text: reporter.report("phase", reporter.step, {
                               "phase": text, "done": 0, "total": 0, "started": time.time()}))
    summary["accuracy"] = agreement(project.store.items.pseudo_label_agreement())
    return {"eval": summary, "done": summary["items"]}


def _evaluate(project: Project, run: dict, reporter) -> dict:
    """Evaluate a finished run's model on the whole test set again: its stored result and its
    test-set probabilities are replaced."""
    from .checkpoints import run_model
    from .data import images
    from .devices import resolve
    from .metrics import confusion, summarize
    from .models import EmbeddingHead
    from .train import predict_probs
    cfg = from_values(EvaluateConfig, run["config"], strict=False)
    target, device = cfg.run, resolve(cfg.device)
    model = run_model(project, target, device=device)
    if isinstance(model, EmbeddingHead):  # a head reads the embedding, not the images
        from .embed import load
        probs = model.probs(load(project)[1])
    else:
        probs = predict_probs(model, images(project, "test"), device=device, progress=reporter.progress)
    _, labels = project.store.items.test_set()
    result = summarize(confusion(labels, probs.argmax(1).tolist() if len(probs) else [], len(project.classes)),
                       project.classes)
    save_test_probs(project.run_dir(target), probs)
    project.store.runs.update(target, result=result)
    return {"eval": result, "done": len(labels)}


def _embed(project: Project, run: dict, reporter, group=None) -> dict:
    """Embed every image of the project (train then test) with a backbone; a resumed job goes on
    from the last rows it reported as written. group: rank 0 of several processes."""
    import torch
    from . import embed
    from .data import images
    from .devices import resolve
    cfg = from_values(EmbedConfig, run["config"], strict=False)
    device = group.device if group else resolve(cfg.device)
    train, test = images(project, "train"), images(project, "test")
    everything = torch.cat([train, test]) if len(test) else train
    started, start, batch = time.time(), int(run.get("step") or 0), cfg.batch_size
    progress, pretrained = reporter.progress, None
    if cfg.backbone == "ssl":  # its steps are pretraining steps; the embedding pass is a phase after them
        pretrained = _pretrain(project, run, cfg, train, device, reporter)
        if pretrained.get("stopped"):
            return pretrained
        start, progress = 0, _phase_progress(reporter, pretrained["steps"], "embedding the images")
    else:
        project.store.runs.update(run["id"], total=len(everything))
    backbone = embed.build(cfg.backbone, project, weights=cfg.weights, image_size=cfg.image_size)
    caches = [str(project.image_cache(split)) for split, x in (("train", train), ("test", test)) if len(x)]
    embed.compute(project, backbone, everything, device=device, batch_size=batch, start=start, progress=progress,
                  group=group, job={"kind": "embed", "images": caches})
    info = embed.finish(project, backbone, {"train": len(train), "test": len(test)}, device=device,
                        seconds=time.time() - started + float(run.get("earlier_seconds") or 0),
                        extra={"pretraining": pretrained} if pretrained else None)
    return {"eval": info, "done": pretrained["steps"] if pretrained else len(everything)}


def _pretrain(project: Project, run: dict, cfg: EmbedConfig, train, device: str, reporter) -> dict:
    """The ssl backbone's self-supervised pretraining, on the labeled set and the pool; its steps
    are the run's steps."""
    from .ssl import pretrain
    return pretrain(project, train, project.run_dir(run["id"]) / "ssl-state.pt", device=device,
                    batch_size=cfg.batch_size, epochs=float(cfg.epochs), minutes=float(cfg.minutes), seed=cfg.seed,
                    report=reporter.report,
                    set_total=lambda n: project.store.runs.update(run["id"], total=n),
                    forget_after=lambda step: project.store.runs.truncate_metrics(run["id"], step))


def _phase_progress(reporter, step: int, text: str) -> Callable[[int, int], None]:
    """A progress callback that reports a phase row at the run's last step (cancel included)."""
    started = time.time()

    def progress(done: int, total: int) -> None:
        if reporter.report("phase", step, {"phase": text, "done": done, "total": total, "started": started}):
            raise KeyboardInterrupt("cancelled")
    return progress


def _label_issues(project: Project, run: dict, reporter) -> dict:
    """Rank the human labels by how likely each is wrong; the steps follow the neighbour search."""
    from .devices import resolve
    from .quality import label_issues
    cfg = from_values(LabelIssuesConfig, run["config"], strict=False)
    progress, total = _counted(project, run, reporter)
    out = label_issues(project, device=resolve(cfg.device), progress=progress)
    return {"eval": out, "done": total[0]}


def _duplicates(project: Project, run: dict, reporter) -> dict:
    """Find near-duplicate images; the steps follow the neighbour search."""
    from .devices import resolve
    from .quality import duplicates
    cfg = from_values(DuplicatesConfig, run["config"], strict=False)
    progress, total = _counted(project, run, reporter)
    out = duplicates(project, threshold=cfg.threshold, device=resolve(cfg.device), progress=progress)
    return {"eval": out, "done": total[0]}


def _counted(project: Project, run: dict, reporter) -> tuple[Callable[[int, int], None], list[int]]:
    """A progress callback that also stores the run's total when the search's differs, and the
    total (a one-item list it keeps up to date)."""
    total = [run["total"]]

    def progress(done: int, of: int) -> None:
        if of != total[0]:
            total[0] = of
            project.store.runs.update(run["id"], total=of)
        reporter.progress(done, of)
    return progress, total


def _map(project: Project, run: dict, reporter) -> dict:
    """Lay the embedding out in 2-D for the Map page; the steps follow the neighbour search."""
    from .projection import compute
    meta = compute(project, from_values(MapConfig, run["config"], strict=False).method, progress=reporter.progress)
    return {"eval": meta, "done": meta["rows"]}




def rank_report(group, out: dict) -> dict:
    from .distributed import weights_digest
    return {"rank": group.rank, "device": group.device, "step": out["step"],
            "weights": weights_digest(out["model"]), "ema_weights": weights_digest(out["ema"])}


def write_ranks(run_dir: Path, reports: list[dict]) -> None:
    """runs/RUN/ranks.json: where each rank ran and a hash of the weights it ended with."""
    tmp = run_dir / f".ranks.{os.getpid()}.json"
    tmp.write_text(json.dumps(reports, indent=1))
    os.replace(tmp, run_dir / "ranks.json")




# ------------------------------------------------------------------ summaries
# Each takes a finished run's result (its 'eval') and says in one line what it found.
def _accuracy_summary(r: dict) -> str:
    acc = r.get("accuracy")
    return f"test accuracy {acc:.4f}" if isinstance(acc, float) else "no test accuracy"


def _pseudo_label_summary(s: dict) -> str:
    acc = s.get("accuracy") or {}
    return (f"pseudo-labeled {s['items']} items with {s['teacher_run']} in {s['seconds']} s "
            f"({s['images_per_s']} images/s)"
            + (f", spread over the {s['spread_over']} embedding" if s.get("spread_over") else "")
            + (f"; accuracy against hidden labels {acc['accuracy']:.4f}, above 0.9: "
               f"{acc['accuracy_above_0.9']} on {acc['n_above_0.9']} items" if acc else ""))


def _embed_summary(e: dict) -> str:
    pre = e.get("pretraining")
    pre = f" (pretrained {pre['epochs']} epochs, {pre['steps']:,} steps, in {pre['seconds']} s)" if pre else ""
    return (f"embedded {sum(e['rows'].values()):,} images with {e['backbone']}{pre} in {e['seconds']} s "
            f"({e['images_per_s']} images/s): {e['dims']} dimensions, in embeddings/{e['file']}")


def _label_issues_summary(r: dict) -> str:
    return (f"{len(r['issues'])} of {r['checked']:,} human labels look wrong (their neighbours in the "
            f"{r['over']} embedding say otherwise)")


def _duplicates_summary(r: dict) -> str:
    n = len(r["pairs"])
    return (f"{n:,} pair{'s' * (n != 1)} of near-identical images (cosine similarity at least {r['threshold']} "
            f"in the {r['over']} embedding) among {r['images']:,} images")


def _map_summary(m: dict) -> str:
    return (f"laid out {m['rows']:,} images of the {m['embedding']} embedding in 2-D with {m['method'].upper()} "
            f"in {m['seconds']} s; open the Map page to see it")


# ------------------------------------------------------------------ the table
@dataclass(frozen=True)
class Kind:
    """A job kind. config(values, strict=True): its frozen config from plain values, keys left
    out taking its defaults (strict: an unknown key or a wrong type is a ConfigError; not
    strict: a stored run's config, unknown keys dropped). check(project, values): (the config
    to queue, the run's total), or a StcoreError saying why not. run(project, run, reporter
    [, group]): the job, in the worker. summary(result): a finished run's result in one line.
    resumes: a stopped run goes on from where it stopped (its checkpoint, its rows written)."""
    name: str
    config: Callable[..., Any]
    check: Callable[[Project, dict], tuple[Any, int]]
    run: Callable[..., dict]
    summary: Callable[[dict], str]
    resumes: bool


KINDS = {k.name: k for k in (
    Kind("teacher", _training("teacher"), _check_teacher, _train, _accuracy_summary, resumes=True),
    Kind("student", _training("student"), _check_student, _train, _accuracy_summary, resumes=True),
    Kind("pseudo-label", _plain(PseudoLabelConfig), _check_pseudo_label, _pseudo_label, _pseudo_label_summary,
         resumes=False),
    Kind("evaluate", _plain(EvaluateConfig), _check_evaluate, _evaluate, _accuracy_summary, resumes=False),
    # An embedding goes on from the last rows it wrote (ssl: from its pretraining state).
    Kind("embed", _plain(EmbedConfig), _check_embed, _embed, _embed_summary, resumes=True),
    Kind("label-issues", _plain(LabelIssuesConfig), _check_label_issues, _label_issues, _label_issues_summary,
         resumes=False),
    Kind("duplicates", _plain(DuplicatesConfig), _check_duplicates, _duplicates, _duplicates_summary,
         resumes=False),
    Kind("map", _plain(MapConfig), _check_map, _map, _map_summary, resumes=False),
)}
