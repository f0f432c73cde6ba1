"""Job kinds: one table. Each kind is one entry: its config (a frozen dataclass with its
defaults), its checks before a run is queued, its run in the worker, a one-line summary of a
finished run's result, and whether a stopped run resumes from where it stopped.

A run's role in the store is its kind's name. The API's start functions, the worker, the CLI
and the Train page read this table; nothing else lists the kinds or their defaults. Light at
import (no torch): the checks and the runs import the heavy modules when called.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from .errors import ProjectError, UsageError
from .fields import from_values
from .jobconfig import (MAP_METHODS, DuplicatesConfig, EmbedConfig, EvaluateConfig, LabelIssuesConfig,  # noqa: F401
                        MapConfig, PredictConfig, PseudoLabelConfig, RefreshConfig)
from .project import Project
from .tasks import (promote_refresh, run_duplicates, run_embed, run_evaluate, run_label_issues, run_map,
                    run_predict, run_pseudo_label, run_refresh, run_training)

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
    """The device must exist and be free, the project must have labels and classes to learn, and
    a student's teacher must fit this project."""
    from .config import TrainConfig, default_steps, make_config
    from .devices import resolve_many
    device, nproc = resolve_many(values.get("device", TrainConfig.device), values.get("nproc"))
    values = {"model": default_model(project), **values, "device": device, "nproc": nproc}
    if values.get("role") == "student" and not values.get("teacher_run") and project.teacher_run():
        values["teacher_run"] = project.teacher_run()["id"]  # pinned: a resume or a later promote keeps it
    cfg = make_config(values)
    project.check_trainable()
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
    from .runtime import candidates
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
    candidates(cfg.runtime, "cpu")  # an unknown runtime is refused before the job starts
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


def classes_changed(run: dict, n_classes: int) -> bool:
    """Whether the project's classes changed since run trained (its model no longer fits): an
    edit of the classes marked it stale, or it learned other class ids than the n_classes now."""
    return bool(run.get("stale")) or (run.get("class_ids") is not None and run["class_ids"] != list(range(n_classes)))


def _check_predict(project: Project, values: dict) -> tuple[PredictConfig, int]:
    """Files that hold images, and a finished teacher or student, pinned now (a later run does
    not change what a queued job classifies with); the total is the image files."""
    from .classify import files_of, model_run
    cfg = from_values(PredictConfig, values)
    target = project.store.runs.get(model_run(project, cfg.run or None))
    if target["role"] not in ("teacher", "student") or target["state"] != "finished":
        raise UsageError(f"run {target['id']} is {target['role']} and {target['state']}; only a finished teacher "
                         f"or student has a model to classify with")
    if classes_changed(target, len(project.classes)):
        raise UsageError(f"run {target['id']} learned other classes than the project's now; train a new teacher "
                         f"(and student) to classify with")
    files, _ = files_of([p for p in cfg.paths.split("\n") if p.strip()])
    return replace(cfg, run=target["id"], device=_device(cfg.device)), len(files)


def _check_map(project: Project, values: dict) -> tuple[MapConfig, int]:
    cfg = from_values(MapConfig, values)
    if cfg.method not in MAP_METHODS:
        raise UsageError(f"unknown map method {cfg.method!r}; use one of {', '.join(MAP_METHODS)}")
    c = project.counts()
    return replace(cfg, device=_device(cfg.device)), c["labeled"] + c["pool"]


def learnable(project: Project) -> str | None:
    """Why a head teacher cannot be trained on this project now (no embedding, fewer than two
    classes with human labels), in a sentence that says what to do; None when it can. Light."""
    if not project.store.meta().get("embedding"):
        return (f"continuous mode trains a head on the project's embedding, and there is none yet: embed the "
                f"images first (`stcore embed {project.path}`, or Train → Embed)")
    c = project.store.items.class_counts()
    have = {k for part in ("labeled", "accepted", "corrected") for k, n in c[part].items() if n}
    if len(have) < 2:
        names = ", ".join(project.classes[k] for k in sorted(have))
        return ("continuous mode needs human labels in at least two classes to learn from; "
                + (f"only {names} has some so far: label a few images of another class first" if names else
                   "there are none yet: label a few images of two classes first (Review → to label)"))
    return None


def _check_refresh(project: Project, values: dict) -> tuple[RefreshConfig, int]:
    """An embedding and human labels in two classes; light (no torch), as a click queues it."""
    cfg = from_values(RefreshConfig, values)
    if cfg.steps < 0:
        raise UsageError(f"steps must be positive (0: the default), not {cfg.steps}")
    if why := learnable(project):
        raise ProjectError(why)
    return cfg, cfg.steps or 400  # methods.TEACHER_STEPS, without importing torch; the worker sets the total


# ------------------------------------------------------------------ runs (in the worker)
# Each takes (project, the run's row, the worker's reporter) and, for the kinds that train or
# embed on several processes, rank 0's group; it returns {'eval': the result, 'done': steps or
# items}, or the training loop's output with 'stopped' when cancelled.
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


def _refresh_summary(r: dict) -> str:
    acc = r.get("accuracy")
    return (f"learned from {r['labels']:,} human labels (a head on the embedding"
            + (f", test accuracy {acc:.4f}" if isinstance(acc, float) else "") + ") and pseudo-labeled "
            f"{r['pseudo']['items']:,} pool items in {r['pseudo']['seconds']} s; it is the teacher now")


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


def _predict_summary(r: dict) -> str:
    counts = ", ".join(f"{n:,} {c}" for c, n in sorted(r["classes"].items(), key=lambda kv: -kv[1]))
    return (f"classified {r['items']:,} images with {r['model']}" + (f": {counts}" if counts else "")
            + (f"; {r['skipped']:,} files skipped" if r["skipped"] else ""))


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
    resumes: a stopped run goes on from where it stopped (its checkpoint, its rows written).
    after(project, run): what the worker does once a run finished (None: nothing)."""
    name: str
    config: Callable[..., Any]
    check: Callable[[Project, dict], tuple[Any, int]]
    run: Callable[..., dict]
    summary: Callable[[dict], str]
    resumes: bool
    after: Callable[[Project, dict], None] | None = None


KINDS = {k.name: k for k in (
    Kind("teacher", _training("teacher"), _check_teacher, run_training, _accuracy_summary, resumes=True),
    Kind("student", _training("student"), _check_student, run_training, _accuracy_summary, resumes=True),
    Kind("pseudo-label", _plain(PseudoLabelConfig), _check_pseudo_label, run_pseudo_label, _pseudo_label_summary,
         resumes=False),
    Kind("evaluate", _plain(EvaluateConfig), _check_evaluate, run_evaluate, _accuracy_summary, resumes=False),
    # An embedding goes on from the last rows it wrote (ssl: from its pretraining state).
    Kind("embed", _plain(EmbedConfig), _check_embed, run_embed, _embed_summary, resumes=True),
    Kind("label-issues", _plain(LabelIssuesConfig), _check_label_issues, run_label_issues, _label_issues_summary,
         resumes=False),
    Kind("duplicates", _plain(DuplicatesConfig), _check_duplicates, run_duplicates, _duplicates_summary,
         resumes=False),
    Kind("map", _plain(MapConfig), _check_map, run_map, _map_summary, resumes=False),
    # New images classified with a finished model: the predictions as a CSV in the run's folder.
    Kind("predict", _plain(PredictConfig), _check_predict, run_predict, _predict_summary, resumes=False),
    # Continuous mode: a head teacher and the pool's pseudo-labels in one run, the teacher once it finished.
    Kind("refresh", _plain(RefreshConfig), _check_refresh, run_refresh, _refresh_summary, resumes=False,
         after=promote_refresh),
)}
