"""What each job kind does in the worker (kinds.KINDS names it): train, pseudo-label, evaluate,
embed, find label issues or duplicates, lay out the map. Each takes the project, its run row and
the reporter, and returns {"eval": result, "done": items}; heavy modules are imported when called."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

from .errors import DataError, NotFound, ProjectError
from .fields import from_values
from .jobconfig import (DuplicatesConfig, EmbedConfig, EvaluateConfig, LabelIssuesConfig, MapConfig, PredictConfig,
                        PseudoLabelConfig, RefreshConfig)
from .project import Project


def save_test_probs(run_dir: Path, probs) -> None:
    """The probabilities (N, K) of a run's model on the test set, float16, written whole or not at all."""
    import numpy as np
    tmp = run_dir / f".test_probs.{os.getpid()}.npy"
    np.save(tmp, probs.half().numpy())
    os.replace(tmp, run_dir / "test_probs.npy")


def run_training(project: Project, run: dict, reporter, group=None) -> dict:
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
    if cfg.role == "student" and METHODS[cfg.method].pool_labels == "graph" and cfg.model != "head":
        from .neighbours import of_embedding  # labelprop's graph is cut from the embedding's k-NN lists
        data.knn = of_embedding(project, device=device, progress=_phase_progress(
            reporter, reporter.step, "finding the nearest neighbours of every image in the embedding"))
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


def run_pseudo_label(project: Project, run: dict, reporter) -> dict:
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


def run_refresh(project: Project, run: dict, reporter) -> dict:
    """Continuous mode's job, in one worker: train a head teacher on the embedding with today's
    human labels (its checkpoint in this run's folder), then pseudo-label the pool with it (spread
    over the embedding's graph). It becomes the teacher once it finished (promote_refresh)."""
    from .config import make_config, to_dict
    from .devices import resolve
    from .metrics import agreement
    from .pseudo import pseudo_label
    cfg = from_values(RefreshConfig, run["config"], strict=False)
    learned = project.store.items.count_labels()
    teacher = make_config({"role": "teacher", "model": "head", "device": cfg.device,
                           **({"steps": cfg.steps} if cfg.steps else {})})
    out = run_training(project, {**run, "config": to_dict(teacher)}, reporter)
    if out.get("stopped"):
        return out
    step = out["done"]
    summary = pseudo_label(project, run, device=resolve(cfg.device), progress=lambda done, total: reporter.progress(
                               step, total), phase=lambda text: reporter.report("phase", step, {
                               "phase": text, "done": 0, "total": 0, "started": time.time()}))
    summary["accuracy"] = agreement(project.store.items.pseudo_label_agreement())
    return {"eval": {**(out["eval"] or {}), "labels": learned, "upto": cfg.upto, "pseudo": summary}, "done": step}


def promote_refresh(project: Project, run: dict) -> None:
    """A finished refresh is the project's teacher from now on (continuous mode hands the teacher
    to its refreshes; turning it off gives back the one chosen before)."""
    project.store.set_meta(teacher=run["id"])


def run_evaluate(project: Project, run: dict, reporter) -> dict:
    """Evaluate a finished run's model on the whole test set again: its stored result and its
    test-set probabilities are replaced."""
    from .checkpoints import run_model
    from .data import images
    from .devices import resolve
    from .metrics import confusion, summarize
    from .models import EmbeddingHead
    from .pseudo import as_stored
    from .train import predict_probs
    cfg = from_values(EvaluateConfig, run["config"], strict=False)
    target, device = cfg.run, resolve(cfg.device)
    model = run_model(project, target, device=device)
    if isinstance(model, EmbeddingHead):  # a head reads the embedding, not the images
        from .embed import load
        probs = model.probs(load(project)[1])
    else:
        probs = predict_probs(model, images(project, "test"), device=device, progress=reporter.progress,
                              runtime="auto", precise=True)  # a test set's accuracy: float32 throughout
    probs, (_, labels) = as_stored(probs), project.store.items.test_set()
    result = summarize(confusion(labels, probs.argmax(1).tolist() if len(probs) else [], len(project.classes)),
                       project.classes)
    save_test_probs(project.run_dir(target), probs)
    project.store.runs.update(target, result=result)
    return {"eval": result, "done": len(labels)}


def run_embed(project: Project, run: dict, reporter, group=None) -> dict:
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
    if group is None:
        # the job's log (stderr): stdout is the CLI's, and --json keeps it to one object
        say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
        say(f"runtime: {embed.accelerate(backbone, everything, runtime=cfg.runtime, device=device, say=say)}")
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


def run_label_issues(project: Project, run: dict, reporter) -> dict:
    """Rank the human labels by how likely each is wrong; the steps follow the neighbour search."""
    from .devices import resolve
    from .quality import label_issues
    cfg = from_values(LabelIssuesConfig, run["config"], strict=False)
    progress, total = _counted(project, run, reporter)
    out = label_issues(project, device=resolve(cfg.device), progress=progress)
    return {"eval": out, "done": total[0]}


def run_duplicates(project: Project, run: dict, reporter) -> dict:
    """Find near-duplicate images; the steps follow the neighbour search."""
    from .devices import resolve
    from .quality import duplicates
    cfg = from_values(DuplicatesConfig, run["config"], strict=False)
    progress, total = _counted(project, run, reporter)
    out = duplicates(project, threshold=cfg.threshold, device=resolve(cfg.device), progress=progress)
    return {"eval": out, "done": total[0]}


PREDICTIONS_FILE = "predictions.csv"


def run_predict(project: Project, run: dict, reporter) -> dict:
    """Classify the job's image files with its pinned model (classify.classify); every prediction
    goes to the run folder's predictions.csv, the counts per class and the skipped files (the
    first 100, with why) to the result. A job that could read no image fails, saying why."""
    from collections import Counter
    from .classify import classify, predictions_csv
    cfg = from_values(PredictConfig, run["config"], strict=False)
    progress, total = _counted(project, run, reporter)
    out = classify(project, [p for p in cfg.paths.split("\n") if p.strip()], run_id=cfg.run, device=cfg.device,
                   progress=progress)
    if not out["items"]:
        first = out["skipped"][0] if out["skipped"] else {"path": "", "reason": ""}
        raise DataError(f"no file could be read as an image ({len(out['skipped']):,} skipped; the first, "
                        f"{first['path']}: {first['reason']})")
    folder = project.run_dir(run["id"])
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{PREDICTIONS_FILE}.{os.getpid()}.tmp"
    tmp.write_bytes(predictions_csv(out["items"]).encode("utf-8"))  # the CSV's own line ends, on any system
    os.replace(tmp, folder / PREDICTIONS_FILE)
    result = {"model": out["run"], "items": len(out["items"]), "classes": dict(Counter(it["class"] for it in out["items"])),
              "skipped": len(out["skipped"]), "skipped_files": out["skipped"][:100], "file": PREDICTIONS_FILE}
    return {"eval": result, "done": total[0]}


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


def run_map(project: Project, run: dict, reporter) -> dict:
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
