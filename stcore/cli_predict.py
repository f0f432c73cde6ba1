"""`stcore predict`: new image files classified with a run's model. Part of the CLI
(stcore/cli.py), which adds it with predict_commands."""
from __future__ import annotations

import sys

from . import api
from .terminal import show


def cmd_predict(a):
    p = api.open_project(a.project)
    out = api.predict_files(p, a.paths, run_id=a.run, device=a.device)
    for s in out["skipped"]:
        print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)
    if a.csv:
        out["csv"] = api.write_predictions(out, a.csv)
    if a.json:
        show(out, True)
    elif a.csv:
        print(f"{len(out['items']):,} predictions of run {out['run']} in {out['csv']}, "
              f"{len(out['skipped']):,} files skipped")
    else:
        width = max((len(it["class"]) for it in out["items"]), default=0)
        for it in out["items"]:
            print(f"{it['class']:<{width}}  {it['confidence']:.4f}  {it['margin']:.4f}  {it['path']}")
    if not out["items"]:
        print("error: no file could be read as an image", file=sys.stderr)
        return 1
    return 0


def predict_commands(cmd) -> None:
    """Add predict with cmd(name, fn, help) -> an argparse subparser (cli.build_parser's)."""
    s = cmd("predict", cmd_predict, "classify new image files with a run's model: each file's class, confidence "
                                    "(top-1 probability) and margin (top-1 minus top-2)")
    s.add_argument("paths", nargs="+", metavar="DIR_OR_FILE", help="image files, or folders (read recursively "
                                                                   "for image files)")
    s.add_argument("--run", help="this run's model (default: the latest finished student, else teacher)")
    s.add_argument("--csv", metavar="FILE", help="write the predictions as CSV (path, class, confidence, margin)")
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
