"""The Review grid as one Streamlit component (review_grid.js and .css): the toolbar, the class
keys and the cards, drawn in the browser, sending each action back as a numbered operation.

The browser keeps every operation the server has not acknowledged and sends them all each time
(see review_grid.js), so this side applies each one exactly once, in order: `new_ops` returns
those past the last sequence number applied for that grid, and the data sent back (`ack`)
tells the grid where that is. The card builders here are pure, so tests read them without a
browser.
"""
from __future__ import annotations

import time
import unicodedata

from pathlib import Path
from typing import Iterator

import streamlit as st

from dashboard import util
from stcore import api

_HERE = Path(__file__).resolve().parent
_component = st.components.v2.component(
    "stcore_review_grid", js=(_HERE / "review_grid.js").read_text(), css=(_HERE / "review_grid.css").read_text())

NUMBER_KEYS = "1234567890"  # give the marked card one of the first ten classes


def actions() -> dict:
    """The review actions the grid offers, by name: those of stcore's one table with a key. The
    script gets them with the data and draws its buttons and keys from them."""
    return {name: a for name, a in api.ACTIONS.items() if a.key}


def card(row: dict, classes: list[str], thumb: str, *, searchable: bool) -> dict:
    """What one card shows and allows, from a review row (a pool, labeled or test item).

    The human's label once decided, with the teacher's guess beside it; otherwise the teacher's
    class and its confidence as a coloured badge."""
    i, status, split = int(row["id"]), row["status"], row.get("split", "pool")
    out = {"id": i, "slot": str(row.get("slot", i)), "split": split, "status": status, "img": thumb,
           "pred": row.get("pred"),
           "note": row.get("note"), "fix": None, "badge": None, "sub_status": None, "pending": False,
           "can": {name: False for name in actions()}, "can_similar": False}
    if split == "test":
        return {**out, "title": "test image", "sub": f"#{i}"}
    guess = classes[row["pred"]] if row["pred"] is not None else "not predicted"
    conf = row["confidence"]
    tint = api.STATUS_COLORS[status]  # a status's colour, as on the map
    if status in ("corrected", "labeled"):
        out.update(title=classes[row["label"]],
                   badge={"text": "labeled set" if status == "labeled" else "corrected", "tint": tint},
                   sub=f"#{i}" if status == "labeled" else f"teacher: {guess}" + (f" {conf:.2f}" if conf is not None else ""))
    else:
        out.update(title=guess, sub=f"#{i}",
                   badge={"text": f"{conf:.2f}", "color": util.conf_color(conf)} if conf is not None else None,
                   sub_status={"text": status, "tint": tint} if status != "pending" else None)
    if row.get("fix") is not None:
        out["fix"] = {"k": int(row["fix"]), "name": classes[row["fix"]]}
    if status in ("accepted", "corrected", "rejected") and row.get("reviewer"):
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["decided_at"])) if row.get("decided_at") else ""
        out["who"] = {"text": f"{status} by {row['reviewer']}" + (f" · {when[11:]}" if when else ""),
                      "title": f"{status} by {row['reviewer']}" + (f" on {when}" if when else "")
                               + ". `stcore history P ID` lists every change of the item."}
    # pending: left to decide (the mark moves on to such a card), predicted or not
    out.update(pending=status == "pending", can_similar=searchable,
               can={name: status in a.offered_for and (row["pred"] is not None or not a.needs_prediction)
                    for name, a in actions().items()})
    return out


MAX_OPS = 1000  # operations in one message; the browser sends a handful
MAX_CLASS_NAME = 100  # characters of a class typed into the grid
MAX_IDS = 10_000  # items in one decision; the grid's cards decide one at a time


def new_ops(state: dict | None, done: dict[str, int], n_classes: int) -> Iterator[dict]:
    """The grid's operations not yet applied, oldest first, each checked (the browser is not
    trusted): decide {ids, action, label, expect}, page {page}, undo, similar {id}. An operation
    counts as applied in done ({grid instance: last sequence number}) once the caller has taken
    the next one or finished the loop: one that raised is sent again by the browser. A malformed
    operation is skipped."""
    box = (state or {}).get("ops") or {}
    instance = str(box.get("instance", ""))[:64]
    ops = box.get("ops")
    if not instance or not isinstance(ops, list):
        return
    last = done.get(instance, 0)
    for op in sorted((o for o in ops[:MAX_OPS] if isinstance(o, dict) and _is_int(o.get("seq"))),
                     key=lambda o: o["seq"]):
        if op["seq"] <= last:
            continue
        if checked := _check(op, n_classes):
            yield checked
        last = done[instance] = op["seq"]


def _is_int(v) -> bool:
    return type(v) is int  # JSON true and false arrive as bool, which Python counts as int


def _check(op: dict, n_classes: int) -> dict | None:
    kind = op.get("kind")
    if kind == "decide":
        ids, label, expect = op.get("ids"), op.get("label"), op.get("expect")
        if (not isinstance(ids, list) or not 0 < len(ids) <= MAX_IDS or not all(_is_int(i) for i in ids)
                or not isinstance(op.get("action"), str) or op["action"] not in actions()):
            return None
        action = actions()[op["action"]]
        new_class = _class_name(op.get("new_class")) if action.needs_class else None
        if action.needs_class and not new_class and not (_is_int(label) and 0 <= label < n_classes):
            return None
        return {"kind": kind, "ids": ids, "action": action.name, "new_class": new_class,
                "label": label if action.needs_class and not new_class else None,
                # accept: the class the card showed, so that a newer prediction is not accepted unseen
                "expect": expect if action.needs_prediction and _is_int(expect) else None}
    if kind == "page" and _is_int(op.get("page")):
        return {"kind": kind, "page": op["page"]}
    if kind == "similar" and _is_int(op.get("id")):
        return {"kind": kind, "id": op["id"]}
    if kind == "undo":
        return {"kind": kind}
    return None


def _class_name(v) -> str | None:
    """A class name typed into the grid (a new class), or None where v is not one."""
    if not isinstance(v, str):
        return None
    v = " ".join(v.split())
    return v if 0 < len(v) <= MAX_CLASS_NAME and not any(unicodedata.category(ch) == "Cc" for ch in v) else None


def draw(*, key: str, project_id: str, cards: list[dict], classes: list[str], page: int, n_pages: int, total: int,
         undo: str | None, message: dict | None, done: dict[str, int], on_ops, first: list[int] = ()) -> None:
    """Draw the grid; on_ops() runs (as a callback, before the next run) when it sends operations.
    first: class ids the number keys give first (a split's parts), then the others by id."""
    first = list(dict.fromkeys(k for k in first if 0 <= k < len(classes)))
    _component(key=key, on_ops_change=on_ops, data={
        "project": project_id, "cards": cards, "classes": classes,
        "actions": [a for a in api.review_actions() if a["name"] in actions()],
        "number_keys": NUMBER_KEYS if classes else None,  # the first ten classes; L finds any
        "key_order": first + [k for k in range(len(classes)) if k not in first] if first else None,
        "toolbar": {"page": page, "n_pages": n_pages, "total": total, "undo": undo},
        "message": message, "ack": done})
