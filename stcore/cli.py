"""`stcore ...`: every step of the loop from a terminal. --json prints one JSON object."""
from __future__ import annotations

import argparse
import errno
import json
import math
import os
import sqlite3
import sys
import threading
import time

from . import __version__


def _project(path: str):
    from .project import Project
    return Project(path)


def _print(obj, as_json: bool, text: str | None = None) -> None:
    if as_json:
        print(json.dumps(obj, indent=1, default=str))
    else:
        print(text if text is not None else json.dumps(obj, indent=1, default=str))


# ------------------------------------------------------------------ progress in a terminal
def _bar(frac: float, width: int = 28) -> str:
    n = int(round(frac * width))
    return "[" + "#" * n + "." * (width - n) + "]"


def _fmt_s(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def progress_line(run: dict, metrics: list[dict]) -> str:
    total = max(1, run["total"] or 1)
    frac = min(1.0, run["step"] / total)
    parts = [f"{run['id']} {run['state']:<9} {_bar(frac)} {run['step']}/{run['total']} {frac:4.0%}"]
    train = [m for m in metrics if m["kind"] == "train"]
    evals = [m for m in metrics if m["kind"] == "eval"]
    if train:
        parts.append(f"loss {train[-1]['loss']:.3f}")
    if evals:
        parts.append(f"acc {evals[-1]['accuracy']:.3f}")
    from .jobs import current_phase, eta_seconds
    if (eta := eta_seconds(run, metrics)) is not None:
        parts.append(f"ETA {_fmt_s(eta)}")
    if run["state"] == "running" and (phase := current_phase(metrics)):
        parts.append(phase + "...")
    return "  ".join(parts)


def watch(project, run_id: str, *, interval: float = 0.5, stream=sys.stdout, until_done: bool = True) -> dict:
    from .jobs import list_runs
    tty = stream.isatty()
    last = ""
    while True:
        list_runs(project)
        run = project.store.run(run_id)
        line = progress_line(run, project.store.metrics(run_id, after_step=max(0, run["step"] - 200)))
        if line != last:
            stream.write(("\r\033[K" + line) if tty else line + "\n")
            stream.flush()
            last = line
        if run["state"] not in ("queued", "running") or not until_done:
            if tty:
                stream.write("\n")
            if run["error"]:
                stream.write(f"{run['state']}: {run['error']}\n")
            return run
        time.sleep(interval)


def _foreground(project, start) -> dict:
    """Run start() (which executes a job in this process) while a thread draws its progress."""
    box: dict = {}
    done = threading.Event()

    def show():
        from .project import Project
        p = Project(project.path)
        tty, last_step = sys.stderr.isatty(), None
        while not done.wait(0.5):
            run_id = box.get("id") or _latest_active(p)
            if run_id:
                run = p.store.run(run_id)
                if not tty and run["step"] == last_step:
                    continue  # a log file gets one line per step reported, not one per tick
                last_step = run["step"]
                line = progress_line(run, p.store.metrics(run_id, after_step=max(0, run["step"] - 200)))
                sys.stderr.write(("\r\033[K" + line) if tty else line + "\n")
                sys.stderr.flush()
    t = threading.Thread(target=show, daemon=True)
    t.start()
    try:
        run_id = start()
    finally:
        done.set()
        t.join()
        if sys.stderr.isatty():
            sys.stderr.write("\n")
    return project.store.run(run_id)


def _latest_active(project) -> str | None:
    row = project.store.db.execute("SELECT id FROM runs WHERE state='running' AND pid=? ORDER BY seq DESC",
                                   (os.getpid(),)).fetchone()
    return row[0] if row else None


# ------------------------------------------------------------------ commands
def cmd_init(a):
    from .project import Project
    p = Project.create(a.project, dataset=a.dataset, labels_per_class=a.labels_per_class, labeled=a.labeled,
                       seed=a.seed, data_root=a.data_root, image_size=a.image_size, download=not a.no_download,
                       limit=a.limit, progress=(None if a.json else lambda m: print(m, file=sys.stderr)))
    c = p.counts()
    _print({"project": str(p.path), "classes": p.classes, **c, "skipped": len(p.store.skipped())}, a.json,
           f"created {p.path}: {c['labeled']} labeled, {c['pool']} in the pool, {c['test']} test images, "
           f"{len(p.classes)} classes, {len(p.store.skipped())} files skipped")


TRAIN_FLAGS = ("method", "model", "steps", "epochs", "lr", "batch_size", "unlabeled_ratio", "threshold",
               "temperature", "unlabeled_weight", "corrected_weight", "init", "teacher_run", "ema_decay",
               "eval_every", "seed", "weight_decay", "distribution_alignment", "target_model", "balanced",
               "rounds", "label_aug", "strength")


def cmd_train(a):
    from .config import make_config
    from .jobs import start_training
    p = _project(a.project)
    values = {k: getattr(a, k) for k in TRAIN_FLAGS if getattr(a, k) is not None}
    if a.no_unreviewed:
        values["use_unreviewed"] = False
    for k, v in values.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"--{k.replace('_', '-')} must be a finite number, not {v}")
    for k in ("steps", "epochs"):  # the config reads 0 as "the default budget"; a user's 0 is a mistake
        if k in values and values[k] <= 0:
            raise ValueError(f"--{k} must be positive, not {values[k]}")
    cfg = make_config(values, role=a.role, device=a.device)
    from .devices import resolve
    cfg = make_config({**__import__("dataclasses").asdict(cfg), "device": resolve(cfg.device)})
    if a.detach:
        run_id = start_training(p, cfg, detach=True)
        _print({"run": run_id, "state": p.store.run(run_id)["state"]}, a.json, run_id)
        return 0
    run = _foreground(p, lambda: start_training(p, cfg, detach=False))
    return _report_run(p, run, a.json)


def _report_run(p, run: dict, as_json: bool) -> int:
    res = run["result"] or {}
    _print({"run": run["id"], "state": run["state"], "error": run["error"],
            "accuracy": res.get("accuracy"), "seconds": round((run["ended"] or time.time()) - (run["started"] or 0), 1)},
           as_json,
           f"{run['id']} {run['state']}" + (f": test accuracy {res['accuracy']:.4f}" if res.get("accuracy") else "")
           + (f"\nerror: {run['error']}" if run["error"] else ""))
    return 0 if run["state"] in ("finished", "cancelled") else 1


def cmd_pseudo_label(a):
    from .jobs import start_pseudo_label
    from .devices import resolve
    p = _project(a.project)
    device = resolve(a.device)
    if a.detach:
        run_id = start_pseudo_label(p, device=device, teacher_run=a.run, batch_size=a.batch_size)
        _print({"run": run_id}, a.json, run_id)
        return 0
    run = _foreground(p, lambda: start_pseudo_label(p, device=device, teacher_run=a.run,
                                                    batch_size=a.batch_size, detach=False))
    if run["state"] != "finished":
        return _report_run(p, run, a.json)
    s = run["result"]
    acc = s.get("accuracy") or {}
    _print(s, a.json, f"pseudo-labeled {s['items']} items with {s['teacher_run']} in {s['seconds']} s "
                      f"({s['images_per_s']} images/s)" +
           (f"; accuracy against hidden labels {acc['accuracy']:.4f}, above 0.9: "
            f"{acc['accuracy_above_0.9']} on {acc['n_above_0.9']} items" if acc else ""))
    return 0


def cmd_review(a):
    p = _project(a.project)
    out = {}
    who = a.reviewer
    # One transaction for everything asked: a bad id or class anywhere changes nothing.
    with p.store.tx():
        if a.accept:
            out["accepted"] = p.review(a.accept, "accept", reviewer=who)
        if a.reject:
            out["rejected"] = p.review(a.reject, "reject", reviewer=who)
        if a.reset:
            out["reset"] = p.review(a.reset, "reset", reviewer=who)
        if a.correct:
            n = 0
            for spec in a.correct:
                if "=" not in spec:
                    raise ValueError(f"--correct takes ID=CLASS, not {spec!r}")
                i, c = spec.split("=", 1)
                if not i.strip().isdigit():
                    raise ValueError(f"--correct takes ID=CLASS with a numeric ID, not {spec!r}")
                n += p.review([int(i)], "correct", c, reviewer=who)
            out["corrected"] = n
        if a.accept_above is not None:
            out["accepted_above"] = p.accept_above(a.accept_above, classes=a.cls, reviewer=who)
        if a.simulate:
            out["simulated"] = p.simulate_review(a.simulate, order=a.order)
        if a.undo:
            out["undone"] = p.store.undo()
        if not out:
            raise ValueError("nothing to do: give --accept, --correct, --reject, --reset, --accept-above, "
                             "--simulate or --undo")
    out["counts"] = p.counts()
    _print(out, a.json)
    return 0


def cmd_evaluate(a):
    p = _project(a.project)
    res = p.evaluate(a.run, recompute=a.recompute)
    if a.json:
        _print(res, True)
    elif not res:
        print("no finished runs yet; train a teacher first")
    else:
        for role, r in res.items():
            print(f"{role} ({r['run']}): accuracy {r['accuracy']:.4f}")
            for c, v in r["per_class"].items():
                print(f"  {c:<14} acc {v:.3f}  precision {r['precision'][c]:.3f}  f1 {r['f1'][c]:.3f}")
    return 0


def cmd_status(a):
    p = _project(a.project)
    s = p.status()
    if a.json:
        _print(s, True)
        return 0
    c = s["counts"]
    print(f"{s['project']} ({s['dataset']}, {len(s['classes'])} classes)")
    print(f"  labeled {c['labeled']}  pool {c['pool']}  pseudo-labeled {c['pseudo_labeled']}  pending {c['pending']}"
          f"  accepted {c['accepted']}  corrected {c['corrected']}  rejected {c['rejected']}  test {c['test']}")
    if s["pseudo_label_accuracy"]:
        print(f"  pseudo-label accuracy (hidden labels): {s['pseudo_label_accuracy']['accuracy']:.4f}")
    print(f"  teacher: {s['teacher'] or 'none yet'}")
    for r in s["runs"]:
        print(f"  {r['id']:<16} {r['state']:<11} {r['device']:<7} {r['step']}/{r['total']}"
              + (f"  {r['error']}" if r["error"] else ""))
    if s["skipped"]:
        print(f"  {len(s['skipped'])} files skipped:")
        for k in s["skipped"][:20]:
            print(f"    {k['path']}: {k['reason']}")
        if len(s["skipped"]) > 20:
            print(f"    ... and {len(s['skipped']) - 20} more (`stcore status --json` lists them all)")
    return 0


def cmd_export(a):
    p = _project(a.project)
    out = {}
    if a.labels:
        out["labels"] = {"path": os.path.abspath(a.labels), "rows": p.export_labels(a.labels)}
    if a.model:
        out["model"] = {"path": os.path.abspath(a.model), "run": p.export_model(a.model, a.run)}
    if not out:
        raise ValueError("nothing to export: give --labels FILE and/or --model FILE")
    _print(out, a.json)
    return 0


def cmd_runs(a):
    from .jobs import list_runs
    p = _project(a.project)
    runs = list_runs(p)
    rows = []
    for r in runs:
        last = p.store.metrics(r["id"], after_step=max(0, r["step"] - 100))
        tr = [m for m in last if m["kind"] == "train"]
        ev = [m for m in last if m["kind"] == "eval"]
        rows.append({"id": r["id"], "role": r["role"], "state": r["state"], "device": r["device"], "pid": r["pid"],
                     "step": r["step"], "total": r["total"], "started": r["started"], "heartbeat": r["heartbeat"],
                     "ended": r["ended"], "error": r["error"],
                     "last_metrics": {"loss": tr[-1]["loss"] if tr else None,
                                      "accuracy": ev[-1]["accuracy"] if ev else (r["result"] or {}).get("accuracy")}})
    if a.json:
        _print(rows, True)
    else:
        for r in rows:
            acc = r["last_metrics"]["accuracy"]
            if isinstance(acc, dict):  # a pseudo-label run: its agreement with the hidden labels
                acc = acc.get("accuracy")
            print(f"{r['id']:<16} {r['state']:<11} {r['device']:<7} {r['step']}/{r['total']}"
                  + (f"  acc {acc:.4f}" if acc is not None else "") + (f"  {r['error']}" if r["error"] else ""))
    return 0


def cmd_watch(a):
    p = _project(a.project)
    try:
        run = watch(p, a.run)
    except KeyboardInterrupt:
        print("\nstopped watching; the run goes on", file=sys.stderr)
        return 0
    return 0 if run["state"] in ("finished", "cancelled") else 1


def cmd_cancel(a):
    from .jobs import cancel
    p = _project(a.project)
    state = cancel(p, a.run)
    if a.wait:
        deadline = time.time() + a.wait
        while state in ("queued", "running") and time.time() < deadline:
            time.sleep(0.3)
            from .jobs import list_runs
            list_runs(p)
            state = p.store.run(a.run)["state"]
    _print({"run": a.run, "state": state}, a.json, f"{a.run}: {state}"
           + (" (stops at its next step)" if state == "running" else ""))
    return 0


def cmd_resume(a):
    from .jobs import resume
    p = _project(a.project)
    if a.foreground:
        run = _foreground(p, lambda: resume(p, a.run, detach=False))
        return _report_run(p, run, a.json)
    resume(p, a.run)
    _print({"run": a.run, "state": p.store.run(a.run)["state"]}, a.json, a.run)
    return 0


def cmd_promote(a):
    p = _project(a.project)
    p.promote(a.run)
    _print({"teacher": a.run}, a.json, f"{a.run} is now the teacher")
    return 0


def cmd_devices(a):
    from .devices import available
    devs = available()
    _print(devs, a.json, "\n".join(d["label"] for d in devs))
    return 0


def cmd_dashboard(a):
    from .launch import launch
    return launch(a.project, port=a.port, address=a.address, headless=a.headless)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="stcore", description="Student-teacher semi-supervised image "
                                 "classification: train, pseudo-label, review, distill.")
    ap.add_argument("--version", action="version", version=f"stcore {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name, fn, help, project=True):
        s = sub.add_parser(name, help=help, description=help)
        if project:
            s.add_argument("project", metavar="PROJECT", help="the project folder")
        s.add_argument("--json", action="store_true", help="print one JSON object")
        s.set_defaults(fn=fn)
        return s

    from .data import DATASETS
    s = cmd("init", cmd_init, "create a project from a dataset")
    s.add_argument("--dataset", default="fashion-mnist", choices=DATASETS)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--labels-per-class", type=int, help="labeled images per class (default 10)")
    g.add_argument("--labeled", type=int, help="total labeled images, chosen at random")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--data-root", help="where the dataset is (folder datasets: DIR/labeled, DIR/unlabeled)")
    s.add_argument("--image-size", type=int, help="resize images to this size (folder default: most common)")
    s.add_argument("--no-download", action="store_true", help="never download; fail if no local copy")
    s.add_argument("--limit", type=int, help="keep only the first N training images (quick trials)")

    s = cmd("train", cmd_train, "train a teacher or a student")
    s.add_argument("--role", choices=("teacher", "student"), required=True)
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    s.add_argument("--detach", action="store_true", help="run as a detached job; print the run id and return")
    s.add_argument("--method", help="teacher: supervised; student: labelprop (default), freematch, "
                   "fixmatch, meanteacher, pseudo, soft")
    s.add_argument("--model", help="cnn (default) or resnet18")
    s.add_argument("--steps", type=int)
    s.add_argument("--epochs", type=float)
    s.add_argument("--lr", type=float)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--unlabeled-ratio", type=int, help="unlabeled images per labeled image in a batch")
    s.add_argument("--threshold", type=float, help="confidence needed to use a pseudo-label (default 0.9)")
    s.add_argument("--temperature", type=float, help="soft targets: probabilities sharpened by 1/T "
                   "(default 0: hard targets; soft method: 1)")
    s.add_argument("--distribution-alignment", action=argparse.BooleanOptionalAction, default=None,
                   help="rescale pseudo-label probabilities toward the labeled class mix (default on)")
    s.add_argument("--target-model", choices=("ema", "student"),
                   help="online methods: the EMA of the student (default) or the student labels weak views")
    s.add_argument("--balanced", action=argparse.BooleanOptionalAction, default=None,
                   help="sample the pool class-balanced by its pseudo-labels, most confident first")
    s.add_argument("--rounds", type=int, help="the student re-labels the pool and restarts the lr this "
                   "many times (Noisy Student; default: labelprop 3, others 1)")
    s.add_argument("--label-aug", choices=("weak", "strong"), help="augmentation of labeled images")
    s.add_argument("--strength", type=float, help="student: how hard unlabeled images are augmented, in "
                   "(0, 1]; 0 or unset: the method's default (labelprop 0.3, others 1)")
    s.add_argument("--unlabeled-weight", type=float)
    s.add_argument("--corrected-weight", type=float, help="weight of a human correction (default 2)")
    s.add_argument("--init", choices=("teacher", "scratch"))
    s.add_argument("--teacher-run", help="the teacher to start from (default: the current teacher)")
    s.add_argument("--ema-decay", type=float)
    s.add_argument("--weight-decay", type=float)
    s.add_argument("--eval-every", type=int)
    s.add_argument("--seed", type=int)
    s.add_argument("--no-unreviewed", action="store_true", help="student: ignore unreviewed pseudo-labels")

    s = cmd("pseudo-label", cmd_pseudo_label, "pseudo-label the pool with the current teacher")
    s.add_argument("--run", help="the teacher run to use (default: the current teacher)")
    s.add_argument("--device", default="cpu")
    s.add_argument("--batch-size", type=int, default=1024)
    s.add_argument("--detach", action="store_true")

    s = cmd("review", cmd_review, "record review decisions")
    s.add_argument("--accept", nargs="+", type=int, metavar="ID")
    s.add_argument("--correct", nargs="+", metavar="ID=CLASS")
    s.add_argument("--reject", nargs="+", type=int, metavar="ID")
    s.add_argument("--reset", nargs="+", type=int, metavar="ID")
    s.add_argument("--accept-above", type=float, metavar="T", help="accept every pending item with confidence >= T")
    s.add_argument("--class", dest="cls", nargs="+", metavar="C", help="with --accept-above: only these classes")
    s.add_argument("--simulate", type=int, metavar="N", help="a perfect reviewer decides N items (hidden labels)")
    from .store import DEFAULT_ORDER, ORDERS
    s.add_argument("--order", default=DEFAULT_ORDER, choices=ORDERS,
                   help=f"--simulate order (default {DEFAULT_ORDER}; weighted-margin gives classes with more "
                   "expected errors more turns; baselines: least-confidence, margin, entropy, random)")
    s.add_argument("--undo", action="store_true", help="undo the last decision (one item or one bulk action)")
    s.add_argument("--reviewer", help="name stored with each decision (default: the OS user)")

    s = cmd("evaluate", cmd_evaluate, "accuracy, per-class metrics and confusion of the latest runs")
    s.add_argument("--run")
    s.add_argument("--recompute", action="store_true", help="re-run the model on the test set")

    cmd("status", cmd_status, "counts, pseudo-label accuracy, runs and skipped files")

    s = cmd("export", cmd_export, "export labels (CSV or JSON) and a model")
    s.add_argument("--labels", metavar="FILE", help="labels.csv or labels.json")
    s.add_argument("--model", metavar="FILE", help="the latest student's weights and config (.pt)")
    s.add_argument("--run", help="export this run's model instead")

    cmd("runs", cmd_runs, "list runs and their states")
    s = cmd("watch", cmd_watch, "follow a run; Ctrl-C stops watching, not the run")
    s.add_argument("run", metavar="RUN")
    s = cmd("cancel", cmd_cancel, "stop a run at its next step, with a checkpoint")
    s.add_argument("run", metavar="RUN")
    s.add_argument("--wait", type=float, default=0, metavar="S", help="wait up to S seconds for it to stop")
    s = cmd("resume", cmd_resume, "continue a run from its latest checkpoint, as a detached job")
    s.add_argument("run", metavar="RUN")
    s.add_argument("--foreground", action="store_true")
    s = cmd("promote", cmd_promote, "make a finished student the next teacher")
    s.add_argument("run", metavar="RUN")
    cmd("devices", cmd_devices, "list the devices training can use", project=False)

    s = sub.add_parser("dashboard", help="open the dashboard in a browser")
    s.add_argument("project", nargs="?", metavar="PROJECT",
                   help="project folder (default: a Fashion-MNIST project in ~/.stcore/fashion-mnist)")
    s.add_argument("--port", type=int, default=8501)
    s.add_argument("--address", default="127.0.0.1",
                   help="address to bind; anything but 127.0.0.1/localhost needs STCORE_PASSWORD")
    s.add_argument("--headless", action="store_true", help="do not open a browser")
    s.set_defaults(fn=cmd_dashboard, json=False)
    return ap


def main(argv: list[str] | None = None) -> int:
    from .config import ConfigError
    from .data import DataError
    from .devices import DeviceError
    from .project import ProjectError
    from .store import DeviceBusy, StoreError
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args) or 0
    except (ProjectError, DataError, DeviceError, ConfigError, DeviceBusy, StoreError, ValueError, KeyError,
            OSError, sqlite3.Error) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        if isinstance(e, OSError) and e.strerror:  # a full disk, a read-only or missing folder
            msg = f"{e.strerror}" + (f": {e.filename}" if e.filename else "") + \
                  ("; free some space and retry" if e.errno == errno.ENOSPC else "")
        elif isinstance(e, sqlite3.Error):
            msg = f"the project store failed ({e}); its last change was rolled back" + \
                  ("; free some space and retry" if "full" in str(e) else "")
        if getattr(args, "json", False):
            print(json.dumps({"error": msg, "type": type(e).__name__}))
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
