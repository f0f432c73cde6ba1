"""`stcore ...`: every step of the loop from a terminal. Each command parses its arguments,
calls stcore.api and prints; --json prints one JSON object."""
from __future__ import annotations

import argparse
import errno
import json
import math
import os
import shlex
import sys
import time

from . import __version__, api
from .errors import StcoreError, UsageError, message
from .cli_classes import class_commands
from .cli_predict import predict_commands
from .cli_team import team_commands
from .cli_transfer import transfer_commands
from .terminal import foreground, report_run, show, watch


# ------------------------------------------------------------------ commands
def _names(text: str | None) -> list[str] | None:
    """--classes a,b,c -> ['a', 'b', 'c']."""
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def cmd_init(a):
    p = api.create_project(a.project, dataset=a.dataset, labels_per_class=a.labels_per_class, labeled=a.labeled,
                           seed=a.seed, data_root=a.data_root, image_size=a.image_size,
                           download=not a.no_download, limit=a.limit, database=a.database,
                           classes=_names(a.classes), progress=None if a.json else lambda m: print(m, file=sys.stderr))
    c, n_skipped = api.counts(p), len(api.skipped_files(p))
    show({"project": str(p.path), "classes": p.classes, **c, "skipped": n_skipped}, a.json,
           f"created {p.path}: {c['labeled']} labeled, {c['pool']} in the pool, {c['test']} test images, "
           f"{len(p.classes)} classes, {n_skipped} files skipped")


TRAIN_FLAGS = ("method", "model", "steps", "epochs", "lr", "batch_size", "unlabeled_ratio", "threshold",
               "adaptive_threshold", "temperature", "unlabeled_weight", "corrected_weight", "init", "teacher_run",
               "ema_decay", "eval_every", "seed", "weight_decay", "distribution_alignment", "target_model",
               "balanced", "rounds", "label_aug", "strength", "nproc", "nnodes")


def train_values(a) -> dict:
    """The config fields a user gave on the command line."""
    values = {k: getattr(a, k) for k in TRAIN_FLAGS if getattr(a, k) is not None}
    if a.no_unreviewed:
        values["use_unreviewed"] = False
    for k, v in values.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise UsageError(f"--{k.replace('_', '-')} must be a finite number, not {v}")
    return {**values, "role": a.role, "device": a.device}


def cmd_train(a):
    p = api.open_project(a.project)
    values = train_values(a)
    if note := api.method_aliases().get(values.get("method", "")):
        print(f"note: {note}", file=sys.stderr)
    if (a.nnodes or 1) > 1:
        run_id = api.start_training(p, values)
        return _print_nodes(p, run_id, a.rdzv_endpoint, a.json)
    if a.detach:
        run_id = api.start_training(p, values, detach=True)
        show({"run": run_id, "state": api.run(p, run_id)["state"]}, a.json, run_id)
        return 0
    return report_run(foreground(p, lambda: api.start_training(p, values, detach=False)), a.json)


def _job(a, p, start, more=lambda result: []) -> int:
    """Start a job detached (print its id) or here with a progress line; on success print its
    kind's summary, and the lines more(result) adds."""
    if a.detach:
        run_id = start(True)
        show({"run": run_id}, a.json, run_id)
        return 0
    run = foreground(p, lambda: start(False))
    if run["state"] != "finished":
        return report_run(run, a.json)
    show(run["result"], a.json, "\n".join([api.summary(run), *more(run["result"])]))
    return 0


def cmd_embed(a):
    p = api.open_project(a.project)
    start = lambda detach: api.start_embedding(p, a.backbone, device=a.device, weights=a.weights,
                                               image_size=a.image_size, batch_size=a.batch_size, epochs=a.epochs,
                                               minutes=a.minutes, seed=a.seed, nproc=a.nproc, runtime=a.runtime,
                                               detach=detach)
    return _job(a, p, start)


def cmd_pseudo_label(a):
    p = api.open_project(a.project)
    start = lambda detach: api.start_pseudo_label(p, device=a.device, teacher_run=a.run,
                                                  batch_size=a.batch_size, detach=detach)
    return _job(a, p, start)


def cmd_review(a):
    p = api.open_project(a.project)
    out, who = {}, a.reviewer
    with api.all_or_nothing(p):
        for action in api.ACTIONS.values():
            if specs := getattr(a, action.name):
                # an action with a class: one decision per ID=CLASS
                out[action.verb.lower()] = sum(
                    api.review(p, [i], action.name, c, reviewer=who)
                    for i, c in (_id_class(x, action.name) for x in specs)
                ) if action.needs_class else api.review(p, specs, action.name, reviewer=who)
        if a.accept_above is not None:
            out["accepted_above"] = api.accept_above(p, a.accept_above, classes=a.cls, reviewer=who)
        if a.simulate:
            out["simulated"] = api.simulate_review(p, a.simulate, order=a.order)
        if a.undo:
            out["undone"] = api.undo(p, who)  # with --reviewer: that person's last action only
        if a.continuous is not None:  # after every N decisions, a refresh: a head teacher and the pseudo-labels
            out["continuous"] = api.set_continuous(p, None if a.continuous == "off" else _count(a.continuous))
        if not out:
            raise UsageError(f"nothing to do: give {', '.join('--' + n for n in api.ACTIONS)}, --accept-above, "
                             "--simulate, --undo or --continuous")
    out["counts"] = api.counts(p)
    show(out, True)
    return 0


def cmd_suggest(a):
    p = api.open_project(a.project)
    out = api.suggest(p, a.count, a.strategy, reviewer=a.reviewer)
    show(out, a.json, "\n".join(f"{i['id']:>8}  {i['score']:>8.4f}  {i['reason']}" for i in out["items"])
         or "nothing left to label: every pool item has a label or was rejected")
    return 0


def _id_class(spec: str, option: str) -> tuple[int, str]:
    item, sep, cls = spec.partition("=")
    if not sep or not item.strip().isdigit():
        raise UsageError(f"--{option} takes ID=CLASS with a numeric ID, not {spec!r}")
    return int(item), cls


def cmd_label_issues(a):
    p = api.open_project(a.project)
    if a.detach:
        show({"run": (run_id := api.start_label_issues(p, device=a.device))}, a.json, run_id)
        return 0
    run = foreground(p, lambda: api.start_label_issues(p, device=a.device, detach=False))
    if run["state"] != "finished":
        return report_run(run, a.json)
    r = run["result"]
    r = {**r, "issues": r["issues"][:a.top] if a.top else r["issues"]}
    lines = [api.summary(run) + ", most likely first:"]
    lines += [f"  {i['id']:>8}  {i['given']} -> {i['suggested']}  score {i['score']:.3f}  ({i['source']})"
              for i in r["issues"]]
    show(r, a.json, "\n".join(lines))
    return 0


def cmd_similar(a):
    r = api.similar(api.open_project(a.project), a.id, a.k)
    lines = [f"the {len(r['neighbours'])} images nearest to {r['id']} in the {r['over']} embedding:"]
    lines += [f"  {n['id']:>8}  similarity {n['similarity']:.3f}  {n['label'] or '(not pseudo-labeled)'}  ({n['status']})"
              for n in r["neighbours"]]
    show(r, a.json, "\n".join(lines))
    return 0


def cmd_duplicates(a):
    p = api.open_project(a.project)
    start = lambda detach: api.start_duplicates(p, threshold=a.threshold, device=a.device, detach=detach)

    def pairs(r):
        lines = [f"  {x['a']['split']} {x['a']['id']} ~ {x['b']['split']} {x['b']['id']}  {x['similarity']:.4f}"
                 for x in r["pairs"][:a.top]]
        more = len(r["pairs"]) - a.top
        return lines + ([f"  ... and {more:,} more (--top N or --json)"] if more > 0 else [])
    return _job(a, p, start, pairs)


def cmd_map(a):
    p = api.open_project(a.project)
    start = lambda detach: api.start_map(p, method=a.method, device=a.device, detach=detach)
    return _job(a, p, start)


def cmd_evaluate(a):
    p = api.open_project(a.project)
    if a.recompute:
        runs = [a.run] if a.run else [r["run"] for r in api.evaluation(p).values()]
        for run_id in runs:
            foreground(p, lambda: api.start_evaluation(p, run_id, device=a.device, detach=False))
    res = api.evaluation(p, a.run)
    if a.json:
        show(res, True)
    elif not res:
        print("no finished runs yet; train a teacher first")
    for role, r in ({} if a.json else res).items():
        if r["accuracy"] is None:
            print(f"{role} ({r['run']}): no test accuracy, the project has no test images")
            continue
        print(f"{role} ({r['run']}): accuracy {r['accuracy']:.4f}")
        for c, v in r["per_class"].items():
            print(f"  {c:<14} acc {v:.3f}  precision {r['precision'][c]:.3f}  f1 {r['f1'][c]:.3f}")
    return 0


def cmd_migrate(a):
    out = api.migrate_store(a.project, a.to)
    show(out, a.json, f"moved the store of {a.project} from {out['from']} to {out['to']}: "
                        + ", ".join(f"{n:,} {t}" for t, n in out["rows"].items() if n)
                        + f"; the old store is kept ({out['kept']})")


def cmd_status(a):
    s = api.status(api.open_project(a.project))
    if a.json:
        show(s, True)
        return 0
    c = s["counts"]
    print(f"{s['project']} ({s['dataset']}, {len(s['classes'])} classes)")
    print(f"  labeled {c['labeled']:,}  pool {c['pool']:,}  pseudo-labeled {c['pseudo_labeled']:,}  "
          f"pending {c['pending']:,}  accepted {c['accepted']:,}  corrected {c['corrected']:,}  "
          f"rejected {c['rejected']:,}  test {c['test']:,}")
    if s["pseudo_label_accuracy"]:
        print(f"  pseudo-label accuracy (hidden labels): {s['pseudo_label_accuracy']['accuracy']:.4f}")
    print(f"  embedding: {s['embedding'] or 'none (the graph and pseudo-labels use the pixels)'}")
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


def cmd_runs(a):
    p = api.open_project(a.project)
    rows = []
    for r in api.runs(p):
        last = api.metrics(p, r["id"], after_step=max(0, r["step"] - 100))
        tr = [m for m in last if m["kind"] == "train"]
        acc, final = api.accuracy_of(p, r)
        rows.append({**{k: r[k] for k in ("id", "role", "state", "device", "pid", "step", "total", "started",
                                          "heartbeat", "ended", "error", "stale")}, "world_size": api.world_size(r),
                     "batch_per_process": api.batch_per_process(r), "placement": api.placement(r),
                     "seconds": round(api.duration(r) or 0.0, 1),
                     "last_metrics": {"loss": tr[-1]["loss"] if tr else None, "accuracy": acc, "final": final}})
    if a.json:
        show(rows, True)
        return 0
    for r in rows:
        acc = r["last_metrics"]["accuracy"]
        print(f"{r['id']:<16} {r['state']:<11} {r['placement']:<7} {r['step']}/{r['total']}"
              + (f"  acc {acc:.4f}" if acc is not None else "") + (f"  {r['error']}" if r["error"] else ""))
    return 0


def cmd_watch(a):
    p = api.open_project(a.project)
    try:
        run = watch(p, a.run)
    except KeyboardInterrupt:
        print("\nstopped watching; the run goes on", file=sys.stderr)
        return 0
    return 0 if run["state"] in ("finished", "cancelled") else 1


def cmd_cancel(a):
    p = api.open_project(a.project)
    state, deadline = api.cancel(p, a.run), time.time() + a.wait
    while state in api.ACTIVE_STATES and time.time() < deadline:
        time.sleep(0.3)
        state = next(r["state"] for r in api.runs(p) if r["id"] == a.run)
    show({"run": a.run, "state": state}, a.json, f"{a.run}: {state}"
           + (" (stops at its next step)" if state == "running" else ""))
    return 0


def _print_nodes(p, run_id: str, endpoint: str | None, as_json: bool) -> int:
    lines = api.node_commands(p, run_id, endpoint)
    text = "\n".join([f"run {run_id} is queued; on each machine, with the project folder at {p.path}, run:"]
                     + [f"  node {k}: {shlex.join(c)}" for k, c in enumerate(lines)])
    show({"run": run_id, "nodes": [shlex.join(c) for c in lines]}, as_json, text)
    return 0


def cmd_nodes(a):
    return _print_nodes(api.open_project(a.project), a.run, a.rdzv_endpoint, a.json)


def cmd_resume(a):
    p = api.open_project(a.project)
    if int(api.run(p, a.run)["config"].get("nnodes") or 1) > 1:
        api.resume(p, a.run)
        return _print_nodes(p, a.run, a.rdzv_endpoint, a.json)
    if a.foreground:
        return report_run(foreground(p, lambda: api.resume(p, a.run, detach=False)), a.json)
    api.resume(p, a.run)
    show({"run": a.run, "state": api.run(p, a.run)["state"]}, a.json, a.run)
    return 0


def cmd_promote(a):
    worse = api.promote(api.open_project(a.project), a.run)
    text = "\n".join([f"{a.run} is now the teacher"] + [
        f"  note: {r['name']} {100 * r['before']:.1f}% -> {100 * r['after']:.1f}% ({r['drop']:.1f} points lower "
        f"than the teacher it replaces)" for r in worse])
    show({"teacher": a.run, "regressions": worse}, a.json, text)
    return 0


def cmd_devices(a):
    devs = api.devices()
    show(devs, a.json, "\n".join(d["label"] for d in devs))
    return 0


def cmd_dashboard(a):
    from .launch import launch
    return launch(a.project, port=a.port, address=a.address, headless=a.headless)


# ------------------------------------------------------------------ the parser
def _train_args(s) -> None:
    s.add_argument("--role", choices=("teacher", "student"), required=True)
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    s.add_argument("--detach", action="store_true", help="run as a detached job; print the run id and return")
    s.add_argument("--method", help="teacher: supervised; student: labelprop (default), consistency, "
                   "self-training (older names: freematch, fixmatch, meanteacher, pseudo, soft)")
    s.add_argument("--model", help="cnn, resnet18 or head (a linear classifier on the embedding; the default "
                                    "when the embedding is a pretrained network's, else cnn)")
    s.add_argument("--steps", type=int, help="optimizer steps, shared by the rounds (default: teacher 400, "
                   "student 600 per round)")
    s.add_argument("--epochs", type=float, help="instead of --steps: passes over the labels (teacher) or pool")
    for flag, t, text in (("--lr", float, "peak learning rate (default 0.03)"),
                          ("--batch-size", int, "labeled images per step (default 64)"),
                          ("--unlabeled-ratio", int, "unlabeled images per labeled image in a batch (default 3)"),
                          ("--threshold", float, "confidence a pseudo-label needs (default 0.9)"),
                          ("--temperature", float, "soft targets: probabilities sharpened by 1/T (0: hard)"),
                          ("--rounds", int, "the student re-labels the pool and restarts the lr this many times "
                                            "(default: labelprop 3, others 1)"),
                          ("--strength", float, "student: how hard unlabeled images are augmented, in (0, 1] "
                                                "(default: labelprop 0.3, others 1)"),
                          ("--unlabeled-weight", float, "weight of the unlabeled loss (default 1)"),
                          ("--corrected-weight", float, "weight of a human correction (default 2)"),
                          ("--ema-decay", float, None), ("--weight-decay", float, None),
                          ("--eval-every", int, "steps between evaluations (default: ten per run)"),
                          ("--seed", int, None)):
        s.add_argument(flag, type=t, help=text)
    for flag, text in (("--adaptive-threshold", "consistency: FreeMatch's per-class thresholds (default on)"),
                       ("--distribution-alignment", "rescale pseudo-labels toward the labeled class mix (default on)"),
                       ("--balanced", "sample the pool class-balanced by its pseudo-labels")):
        s.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
    s.add_argument("--target-model", choices=("ema", "student"), help="consistency: who labels the weak views")
    s.add_argument("--label-aug", choices=("weak", "strong"), help="augmentation of labeled images")
    s.add_argument("--init", choices=("teacher", "scratch", "ssl"),
                   help="student: start from the teacher (default) or from scratch; either role: from the "
                        "project's self-supervised encoder (stcore embed --backbone ssl)")
    s.add_argument("--teacher-run", help="the teacher to start from (default: the current teacher)")
    s.add_argument("--no-unreviewed", action="store_true", help="student: ignore unreviewed pseudo-labels")
    s.add_argument("--nproc", type=int, help="processes on this machine (DDP under torchrun; default 1): on the "
                                             "CPU, or one GPU each (--device cuda:0,cuda:1, or cuda with --nproc)")
    s.add_argument("--nnodes", type=int, help="machines (default 1): the run is queued, and each machine runs "
                                              "the torchrun line printed for it")
    s.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                   help="with --nnodes: where the machines meet (default: this machine, port 29400)")


def _init_args(s) -> None:
    s.add_argument("--dataset", default="fashion-mnist", choices=api.DATASETS)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--labels-per-class", type=int, help="labeled images per class (default 10)")
    g.add_argument("--labeled", type=int, help="total labeled images, chosen at random (0: start with none)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--data-root", help="where the dataset is (folder datasets: DIR/unlabeled, and "
                                       "DIR/labeled/<class>/ if some images are labeled)")
    s.add_argument("--classes", metavar="A,B,C", help="folder datasets: the class names (default: "
                                                      "DIR/classes.txt, else the labeled/<class> folders)")
    s.add_argument("--image-size", type=int, help="resize images to this size (folder default: most common)")
    s.add_argument("--no-download", action="store_true", help="never download; fail if no local copy")
    s.add_argument("--limit", type=int, help="keep only the first N training images (quick trials)")
    s.add_argument("--database", metavar="URL",
                   help="where the store goes: sqlite (a file in the project folder, the default) or "
                        "postgresql://USER@HOST[:PORT]/DBNAME for a team; default $STCORE_DATABASE_URL if set")


def _count(text: str) -> int:
    if not text.isdigit():
        raise UsageError(f"--continuous takes a number of decisions or off, not {text!r}")
    return int(text)


def _review_args(s) -> None:
    for action in api.ACTIONS.values():  # one option per review action: --accept ID ..., --correct ID=CLASS ...
        s.add_argument(f"--{action.name}", nargs="+", type=str if action.needs_class else int,
                       metavar="ID=CLASS" if action.needs_class else "ID", help=action.help.replace("%", "%%") + ("; --undo reverts it" if action.undoable else ""))
    s.add_argument("--accept-above", type=float, metavar="T", help="accept every pending item with confidence >= T")
    s.add_argument("--class", dest="cls", nargs="+", metavar="C", help="with --accept-above: only these classes")
    s.add_argument("--simulate", type=int, metavar="N", help="a perfect reviewer decides N items (hidden labels); "
                   "with no teacher yet, labels the first N of `stcore suggest` (--order random: N at random)")
    s.add_argument("--order", default=api.DEFAULT_ORDER, choices=[*api.ORDERS, *api.ORDER_ALIASES, "typical", "uncertain"],
                   help=f"--simulate order (default {api.DEFAULT_ORDER}; weighted-margin gives classes with more "
                   "expected errors more turns; baselines: confidence (= least-confidence), margin, entropy, random)")
    s.add_argument("--undo", action="store_true", help="undo the last decision (one item or one bulk action)")
    s.add_argument("--reviewer", help="name stored with each decision (default: the OS user)")
    s.add_argument("--continuous", metavar="N|off", help="continuous mode: after every N decisions (e.g. "
                   f"{api.CONTINUOUS_EVERY}) retrain the teacher as a head on the embedding and pseudo-label the "
                   "pool again, in the background; it becomes the teacher. off: stop, the teacher chosen before is back")


def _run_commands(cmd) -> None:
    embed = api.job_defaults("embed")
    s = cmd("embed", cmd_embed, "embed every image with a backbone; the graph and the pseudo-labels then read it")
    s.add_argument("--backbone", metavar="NAME",
                   help="pixels, ssl (self-supervised on the project's images), efficientnet-lite0 (ImageNet, "
                        "offline), torchvision:ARCH (with --weights FILE offline) or file:PATH (a model exported "
                        "by stcore); default: efficientnet-lite0 for colour images, pixels for gray ones")
    s.add_argument("--weights", metavar="FILE", help="torchvision:ARCH: a state dict of that architecture")
    s.add_argument("--image-size", type=int, metavar="N", help="pretrained backbones: resize images to N px (default 128)")
    s.add_argument("--epochs", type=float, help="ssl: pretraining passes over the images (default 100) ...")
    s.add_argument("--minutes", type=float, help="... or minutes, whichever ends first (default 10)")
    s.add_argument("--seed", type=int, help=f"ssl: the pretraining's random seed (default {embed['seed']})")
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, several GPUs (cuda:0,cuda:1), mps or auto")
    s.add_argument("--nproc", type=int, help="pretrained backbones: share the batches among N processes (torchrun): "
                                             "on the CPU, or one GPU each")
    s.add_argument("--batch-size", type=int, help=f"images per batch (default {embed['batch_size']})")
    s.add_argument("--runtime", choices=("auto", "openvino", "onnxruntime", "torch"),
                   help="what runs a network's forward passes on one CPU process (default auto: OpenVINO where "
                        "installed, else ONNX Runtime, else PyTorch; a runtime that refuses the network falls back)")
    s.add_argument("--detach", action="store_true")
    s = cmd("pseudo-label", cmd_pseudo_label, "pseudo-label the pool with the current teacher")
    s.add_argument("--run", help="the teacher run to use (default: the current teacher)")
    s.add_argument("--device", default="cpu")
    s.add_argument("--batch-size", type=int,
                   help=f"images per batch (default {api.job_defaults('pseudo-label')['batch_size']})")
    s.add_argument("--detach", action="store_true")
    s = cmd("similar", cmd_similar, "the images nearest to one in the embedding")
    s.add_argument("id", type=int, help="a labeled or pool item's id")
    s.add_argument("--k", type=int, default=12, help="how many (default 12)")
    s = cmd("duplicates", cmd_duplicates, "pairs of near-identical images, the test set included")
    s.add_argument("--threshold", type=float, help=f"cosine similarity of a pair (default "
                                                    f"{api.job_defaults('duplicates')['threshold']})")
    s.add_argument("--top", type=int, default=20, metavar="N", help="pairs to print (default 20; --json: all)")
    s.add_argument("--device", default="cpu")
    s.add_argument("--detach", action="store_true")
    s = cmd("map", cmd_map, "lay the embedding out in 2-D for the dashboard's Map page")
    s.add_argument("--method", choices=api.MAP_METHODS,
                   help="umap, pca, or auto (default: UMAP up to 200,000 images, else PCA)")
    s.add_argument("--device", default="cpu")
    s.add_argument("--detach", action="store_true")
    s = cmd("label-issues", cmd_label_issues, "rank the human labels by how likely each is wrong")
    s.add_argument("--top", type=int, metavar="N", help="print the N most likely errors (default: all)")
    s.add_argument("--device", default="cpu")
    s.add_argument("--detach", action="store_true")
    s = cmd("evaluate", cmd_evaluate, "accuracy, per-class metrics and confusion of the latest runs")
    s.add_argument("--run")
    s.add_argument("--recompute", action="store_true", help="evaluate the model on the test set again (a job)")
    s.add_argument("--device", default="cpu")
    cmd("runs", cmd_runs, "list runs and their states")
    for name, fn, text in (("watch", cmd_watch, "follow a run; Ctrl-C stops watching, not the run"),
                           ("cancel", cmd_cancel, "stop a run at its next step, with a checkpoint"),
                           ("resume", cmd_resume, "continue a run from its latest checkpoint, as a detached job"),
                           ("promote", cmd_promote, "make a finished student the next teacher")):
        s = cmd(name, fn, text)
        s.add_argument("run", metavar="RUN")
        if name == "cancel":
            s.add_argument("--wait", type=float, default=0, metavar="S", help="wait up to S seconds for it to stop")
        if name == "resume":
            s.add_argument("--foreground", action="store_true")
            s.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="a run on several machines: where they meet")
    s = cmd("nodes", cmd_nodes, "the torchrun line each machine of a run on several machines runs")
    s.add_argument("run", metavar="RUN")
    s.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="where the machines meet (default: this "
                                                                "machine, port 29400)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="stcore", description="Student-teacher semi-supervised image "
                                 "classification: train, pseudo-label, review, distill.")
    ap.add_argument("--version", action="version", version=f"stcore {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name, fn, text, project=True):
        s = sub.add_parser(name, help=text, description=text)
        if project:
            s.add_argument("project", metavar="PROJECT", help="the project folder")
        s.add_argument("--json", action="store_true", help="print one JSON object")
        s.set_defaults(fn=fn)
        return s

    _init_args(cmd("init", cmd_init, "create a project from a dataset"))
    _train_args(cmd("train", cmd_train, "train a teacher or a student"))
    _review_args(cmd("review", cmd_review, "record review decisions"))
    _run_commands(cmd)
    s = cmd("suggest", cmd_suggest, "what to label next: pool items without a label, the most useful first")
    s.add_argument("--count", type=int, default=api.SUGGEST_COUNT, metavar="N", help=f"how many (default {api.SUGGEST_COUNT})")
    s.add_argument("--strategy", default="auto", choices=api.STRATEGIES,
                   help="typical (no teacher needed), uncertain (the teacher's doubts, spread over the embedding), "
                        "random, or auto: uncertain once there are pseudo-labels, else typical")
    s.add_argument("--reviewer", metavar="NAME", help="lease the items to NAME for 10 minutes: nobody else is "
                                                      "offered them meanwhile, here or on the Review page")
    cmd("status", cmd_status, "counts, pseudo-label accuracy, runs and skipped files")
    team_commands(cmd)
    class_commands(cmd)
    s = cmd("migrate", cmd_migrate, "move the project's store to PostgreSQL, or back to SQLite")
    s.add_argument("--to", required=True, metavar="sqlite|URL",
                   help="sqlite (a file in the project folder) or postgresql://USER@HOST[:PORT]/DBNAME")
    transfer_commands(cmd)
    predict_commands(cmd)
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
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args) or 0
    except BrokenPipeError:  # `stcore status P | head`: the reader left; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (StcoreError, OSError) as e:
        msg = message(e)
        if isinstance(e, OSError) and e.strerror:  # a full disk, a read-only or missing folder
            msg = f"{e.strerror}" + (f": {e.filename}" if e.filename else "") + \
                  ("; free some space and retry" if e.errno == errno.ENOSPC else "")
        if getattr(args, "json", False):
            print(json.dumps({"error": msg, "type": type(e).__name__}))
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
