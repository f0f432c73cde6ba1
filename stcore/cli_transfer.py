"""`stcore import` and `stcore export`: labels from and to other tools (CSV, JSON, Label Studio,
class folders, Hugging Face), and a model. Part of the CLI (stcore/cli.py), which adds them with
transfer_commands."""
from __future__ import annotations

import os

from . import api
from .errors import UsageError
from .terminal import show


def cmd_import(a):
    p = api.open_project(a.project)
    out = api.import_labels(p, a.source, fmt=a.format, new_classes=not a.no_new_classes, reviewer=a.reviewer,
                            label_column=a.label_column)
    if a.json:
        show(out, True)
        return 0
    how = ", ".join(f"{n:,} by {k}" for k, n in out["matched"].items()) or "none"
    print(f"{out['rows']:,} row{'s' * (out['rows'] != 1)} ({out['format']}): {sum(out['matched'].values()):,} matched ({how}); "
          f"{out['imported']:,} labels imported ({', '.join(f'{n:,} {s}' for s, n in out['by_split'].items())}), "
          f"{out['unchanged']:,} already so")
    if out["classes_added"]:
        print(f"new classes: {', '.join(out['classes_added'])}")
    if out["not_imported"]:
        print(f"{out['not_imported']:,} row{'s' * (out['not_imported'] != 1)} not imported:")
        for reason, n in out["reasons"].items():
            print(f"  {n:>7,}  {reason}")
        print(f"they are listed in {out['not_imported_file']}")
    return 0


def cmd_export(a):
    p = api.open_project(a.project)
    out = {}
    if a.format:
        fmt, dest = a.format
        out["dataset"] = api.export_dataset(p, dest, fmt, copy=a.copy, min_confidence=a.min_confidence,
                                            images=a.images, image_url=a.image_url)
    if a.labels:
        out["labels"] = {"path": os.path.abspath(a.labels), "rows": api.export_labels(p, a.labels)}
    if a.model:
        out["model"] = {"path": os.path.abspath(a.model), "run": api.export_model(p, a.model, a.run)}
    if not out:
        raise UsageError("nothing to export: give --format FMT DEST, --labels FILE and/or --model FILE")
    show(out, True)
    return 0


def transfer_commands(cmd) -> None:
    """Add import and export with cmd(name, fn, help) -> an argparse subparser (cli.build_parser's)."""
    s = cmd("import", cmd_import, "import labels from a CSV, a JSON export, Label Studio, FiftyOne or class folders, as "
                                  "human labels (matched by path, id, the image's pixels or its file name)")
    s.add_argument("source", metavar="FILE_OR_DIR", help="labels.csv (path,label or id,label), labels.json, "
                   "a Label Studio export (JSON, JSON-MIN, CSV or TSV), FiftyOne's folder (labels.json and data/), "
                   "or DIR/<class>/<image>")
    s.add_argument("--format", choices=api.IMPORT_FORMATS, help="default: from the suffix, the content, or a folder")
    s.add_argument("--label-column", metavar="NAME", help="the column that holds the class: in a CSV (default "
                   "`label`), or a Label Studio JSON-MIN, CSV or TSV export whose tasks have data columns besides the "
                   "image (the name of its Choices control)")
    s.add_argument("--no-new-classes", action="store_true", help="refuse the import if it names a class the "
                                                                 "project does not have (default: add it)")
    s.add_argument("--reviewer", metavar="NAME", help="who imports, in the history (default: this user)")
    s = cmd("export", cmd_export, "export labels and images for other tools, and a model")
    s.add_argument("--format", nargs=2, metavar=("FMT", "DEST"), help="write DEST, a file or a new folder, as FMT: "
                   + "; ".join(f"{k}: {where}, for {what}" for k, (where, what) in api.EXPORT_FORMATS.items()))
    s.add_argument("--copy", action="store_true", help="copy the original images (default: link them)")
    s.add_argument("--min-confidence", type=float, metavar="X", help="imagefolder and hf: also the pending "
                   "pseudo-labels at least X confident (default: human labels only)")
    s.add_argument("--images", metavar="DIR", help="labelstudio: where the images go (default: DEST's "
                                                   "<stem>-images/ beside it)")
    s.add_argument("--image-url", metavar="PREFIX", help="labelstudio: the images' URL before their path in "
                   "--images (default: Label Studio's /data/local-files/?d= URL, relative to DEST's folder)")
    s.add_argument("--labels", metavar="FILE", help="labels.csv or labels.json")
    s.add_argument("--model", metavar="FILE", help="the latest finished student's (else teacher's) weights and "
                   "config (.pt), or its model as ONNX (.onnx: images in [0, 1] to class probabilities)")
    s.add_argument("--run", help="export this run's model instead")
