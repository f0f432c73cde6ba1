"""`stcore users`, `history`, `settings`, `conflicts` and `agreement`: the commands of a team on
one project (accounts, who decided what, how many decide each item, and how much they agree). Part of the CLI (stcore/cli.py), which adds them with team_commands."""
from __future__ import annotations

import sys
import time

from . import api
from .errors import UsageError
from .terminal import show


def cmd_history(a):
    p = api.open_project(a.project)
    if a.limit < 1:
        raise UsageError(f"--limit is how many changes to show, at least 1, not {a.limit}")
    rows = api.history(p, a.item, a.limit, reviewer=a.reviewer, names=True)
    if a.json:
        show({"history": rows}, True)
        return 0
    if not rows:
        print("no decisions yet" + (f" on item {a.item}" if a.item is not None else "")
              + (f" by {a.reviewer}" if a.reviewer else ""))
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["at"]))
        old = r["old_status"] + (f" ({r['old_label']})" if r["old_label"] is not None else "")
        new = r["new_status"] + (f" ({r['new_label']})" if r["new_label"] is not None else "")
        print(f"{when}  #{r['item_id']:<8} {r['reviewer'] or '?':<12} {old} -> {new}"
              + ("  [undone]" if r["undone"] else ""))
    return 0


def cmd_users(a):
    p = api.open_project(a.project)
    if a.action == "list":
        rows = api.users(p)
        if a.json:
            show({"users": rows}, True)
        for u in [] if a.json else rows:
            print(f"{u['name']:<24} {u['role']}")
        if not rows and not a.json:
            print("no accounts: the project is open to whoever reaches the dashboard")
        return 0
    if not a.name:
        raise UsageError(f"`stcore users P {a.action}` needs a NAME")
    if a.action == "remove":
        api.remove_user(p, a.name)
        show({"removed": a.name}, a.json)
        return 0
    # the password from stdin (one line), or generated and printed once
    given = None if sys.stdin is None or sys.stdin.isatty() else sys.stdin.readline().rstrip("\r\n") or None
    out = api.add_user(p, a.name, a.role, given)
    show(out, True)
    if "password" in out and not a.json:
        print("the password is shown this once; it is stored only as a hash", file=sys.stderr)
    return 0


def cmd_settings(a):
    p = api.open_project(a.project)
    if a.overlap is not None:
        api.set_overlap(p, a.overlap)
    show({"overlap": api.overlap(p)}, a.json, f"overlap: {api.overlap(p)} (reviewers who decide each item "
                                               f"before it counts)")
    return 0


def cmd_conflicts(a):
    p = api.open_project(a.project)
    rows = [{"id": r["id"], "pred": p.classes[r["pred"]] if r["pred"] is not None else None, "votes": r["votes"]}
            for r in api.conflicts(p, a.limit)]
    if a.json:
        show({"overlap": api.overlap(p), "conflicts": rows}, True)
        return 0
    if not rows:
        print("no open conflicts" + ("" if api.overlap(p) > 1 else " (overlap is 1: `stcore settings P --overlap 2`)"))
    for r in rows:
        print(f"#{r['id']:<8} " + ", ".join(f"{who}: {what}" for who, what in r["votes"]))
    return 0


def cmd_agreement(a):
    p = api.open_project(a.project)
    out = api.agreement(p)
    if a.json:
        show(out, True)
        return 0

    def pct(x):
        return "-" if x is None else f"{x:.1%}"
    print(f"overlap {out['overlap']}: {out['items']:,} items decided by two or more reviewers, "
          f"{out['open_conflicts']:,} open conflicts")
    print(f"overall: agreement {pct(out['overall']['agreement'])}, Cohen's kappa "
          f"{'-' if out['overall']['kappa'] is None else format(out['overall']['kappa'], '.3f')}")
    for r in out["pairs"]:
        kappa = "-" if r["kappa"] is None else f"{r['kappa']:.3f}"
        print(f"  {r['a']} & {r['b']}: {r['items']:,} items, agreement {pct(r['agreement'])}, kappa {kappa}")
    for r in out["per_class"]:
        print(f"  class {r['class']}: {pct(r['agreement'])} of {r['votes']:,} votes joined")
    for r in out["reviewers_vs_settled"]:
        print(f"  {r['reviewer']} vs the settled labels: {pct(r['agreement'])} of {r['items']:,}")
    return 0


def team_commands(cmd) -> None:
    """Add the team's commands with cmd(name, fn, help) -> an argparse subparser (cli.build_parser's)."""
    s = cmd("users", cmd_users, "accounts: once a project has one, the dashboard asks people to sign in")
    s.add_argument("action", choices=["add", "list", "remove"])
    s.add_argument("name", nargs="?", metavar="NAME")
    s.add_argument("--role", default="reviewer", choices=api.ROLES,
                   help="reviewer (decides, undoes their own) or admin (also classes, runs, bulk actions, users)")
    s = cmd("history", cmd_history, "who decided what, and when: an item's decisions, a reviewer's, or "
                                    "everyone's, newest first")
    s.add_argument("item", nargs="?", type=int, metavar="ID", help="one item's decisions")
    s.add_argument("--reviewer", metavar="NAME", help="one reviewer's decisions")
    s.add_argument("--limit", type=int, default=100, metavar="N", help="at most N changes (default 100)")
    s = cmd("settings", cmd_settings, "the project's team settings: show them, or change one")
    s.add_argument("--overlap", type=int, metavar="K", help=f"each item counts as labeled once K different reviewers "
                   f"have decided it alike (1 to {api.MAX_OVERLAP}; 1, the default: the first decision counts)")
    s = cmd("conflicts", cmd_conflicts, "the items that reviewers decided differently, for an admin to settle "
                                        "(`stcore review P --correct ID=CLASS` settles one)")
    s.add_argument("--limit", type=int, default=1000, metavar="N", help="at most N items (default 1000)")
    cmd("agreement", cmd_agreement, "how much reviewers agree: pairwise agreement and Cohen's kappa, per class, "
                                    "and each reviewer against the settled labels")
