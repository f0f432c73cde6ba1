"""`stcore users` and `stcore history`: the commands of a team on one project (accounts, who
decided what). Part of the CLI (stcore/cli.py), which adds them with team_commands."""
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
