"""`stcore classes`: list the classes with their counts, and edit the list (add, rename, merge,
remove, split). Part of the CLI (stcore/cli.py), which adds it with class_commands."""
from __future__ import annotations

import time

from . import api
from .errors import UsageError
from .terminal import show


def _rename(values: list[str]) -> tuple[str, str]:
    """--rename OLD=NEW, or --rename OLD NEW."""
    if len(values) == 1 and "=" in values[0]:
        old, new = values[0].split("=", 1)
        return old, new
    if len(values) == 2:
        return values[0], values[1]
    raise UsageError("--rename takes OLD=NEW (or OLD NEW)")


def _plan(a, p) -> api.Plan | None:
    """The merge, removal or split the arguments ask for, planned; None for none."""
    asked = [f for f in ("merge", "remove", "split") if getattr(a, f)]
    if len(asked) > 1:
        raise UsageError(f"one edit at a time: --{asked[0]} or --{asked[1]}")
    if a.merge:
        if not a.into or len(a.into) != 1:
            raise UsageError("--merge A B ... needs --into C (one class, which may be new)")
        return api.plan_merge(p, a.merge, a.into[0])
    if a.remove:
        if a.to is None:
            raise UsageError(f"--remove {a.remove} needs --to OTHER (a class for its items) or --to {api.UNLABELED}")
        return api.plan_remove(p, a.remove, a.to)
    if a.split:
        if not a.into:
            raise UsageError(f"--split {a.split} needs --into A B ...")
        return api.plan_split(p, a.split, a.into)
    if a.into or a.to:
        raise UsageError("--into goes with --merge or --split, --to with --remove")
    return None


def cmd_classes(a):
    p = api.open_project(a.project)
    if a.history:
        rows = api.class_history(p)
        show({"edits": rows}, a.json, "\n".join(
            f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(r['at']))}  {r['reviewer'] or '?':<12} {r['detail']}"
            + (f"  ({r['items']:,} items)" if r["items"] else "") for r in rows) or "no edits of the classes yet")
        return 0
    out = {}
    if a.add:
        api.add_classes(p, a.add)
    if a.rename:
        api.rename_class(p, *_rename(a.rename))
    if plan := _plan(a, p):
        out["edit"] = {"action": plan.action, "detail": plan.detail,
                       **{k: v for k, v in plan.impact.items() if k != "classes_before"}, "applied": not a.dry_run}
        if not a.dry_run:
            out["edit"].update(api.edit_classes(p, plan))
    rows = api.classes(p)
    text = "\n".join(f"{r['id']:>4}  {r['name']:<24} {r['labels']:>7,} labels  {r['test']:>6,} test  "
                     f"{r['pending']:>7,} pending predicted" for r in rows) or "no classes yet; add them with --add NAME ..."
    if "edit" in out:
        e = out["edit"]
        text = (f"{'(a dry run: nothing changed) ' if a.dry_run else ''}{e['detail']}: {e['relabeled']:,} labels to another class, "
                f"{e['unlabeled']:,} items unlabeled, {e['pseudo_cleared']:,} pseudo-labels dropped"
                + ("" if a.dry_run else "; the runs trained before are stale: train a new teacher") + "\n" + text)
    show({"classes": rows, **out}, a.json, text)
    return 0


def class_commands(cmd) -> None:
    """Add `classes` with cmd(name, fn, help) -> an argparse subparser (cli.build_parser's)."""
    s = cmd("classes", cmd_classes, "list the classes and their counts; add, rename, merge, remove or split them")
    s.add_argument("--add", nargs="+", metavar="NAME", help="new classes")
    s.add_argument("--rename", nargs="+", metavar="OLD=NEW",
                   help="give a class (name or id) a new name; its labels, pseudo-labels and runs keep it")
    s.add_argument("--merge", nargs="+", metavar="CLASS", help="merge these classes --into one (which may be new); "
                                                                "their human labels keep their decisions under it")
    s.add_argument("--remove", metavar="CLASS", help=f"remove a class; --to OTHER gives its labels to OTHER, "
                                                     f"--to {api.UNLABELED} sends its items back to be labeled")
    s.add_argument("--split", metavar="CLASS", help="split a class --into two or more: its labeled items go back to "
                                                    "review with those classes offered first")
    s.add_argument("--into", nargs="+", metavar="CLASS", help="the class of a merge, the classes of a split")
    s.add_argument("--to", metavar="CLASS", help=f"where a removed class's labels go: a class, or {api.UNLABELED}")
    s.add_argument("--dry-run", action="store_true", help="say what the edit would change, and change nothing")
    s.add_argument("--history", action="store_true", help="the edits of the class list: who, when, what")
