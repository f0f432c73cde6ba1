"""Review: a grid of pseudo-labeled pool items; accept, correct or reject each one, or in bulk.

Every decision is one store transaction made in a button callback, before the page is drawn
again, so the grid, a refresh and a second tab all show the store's state. "Accept next" and
"Reject next" carry the page's pending items and decide the first one still pending, so a key
pressed twice before the page is redrawn decides two items, not one twice.
"""
from __future__ import annotations

import math

import streamlit as st

from dashboard import common, util
from stcore import api
from stcore.errors import message

ORDER_LABELS = {api.DEFAULT_ORDER: "most useful first (smallest margin, class by class)",
                "weighted-margin": "smallest margin, classes weighted by expected errors",
                "confidence": "confidence, lowest first", "confidence-desc": "confidence, highest first",
                "margin": "margin, smallest first", "entropy": "entropy, highest first", "random": "random"}
PAGE_SIZES = [12, 24, 48, 96]
COLUMNS = 4  # cards wide enough at 1280 px for the class picker and two-line labels
SHORTCUTS = {"accept": "A", "reject": "X", "next": "N", "prev": "P", "undo": "U"}
NUMBER_KEYS = "1234567890"  # correct the next item to the first ten classes
VERBS = {"accept": "Accepted", "reject": "Rejected", "correct": "Corrected", "reset": "Reset"}
STATUS_STYLE = {"accepted": "blue", "corrected": "violet", "rejected": "gray"}
# UI state only, kept for the session while the user visits other pages.
KEEP = "session"

project = common.current_project()
classes = project.classes


def reset_page() -> None:
    st.session_state["rv_page"] = 1
    st.session_state.pop("rv_confirm", None)


def flash(text: str) -> None:
    st.session_state["rv_flash"] = text


def decide(ids: list[int], action: str, label: int | None = None) -> None:
    """Button callback: write one decision (one transaction) for ids."""
    try:
        n = api.review(project, ids, action, label)
    except common.USER_ERRORS as e:
        flash("error: " + message(e))
        return
    flash(f"{VERBS[action]} {n:,} item{'s' * (n != 1)}" + (f" as {classes[label]}" if action == "correct" else ""))


def decide_next(ids: list[int], action: str, label: int | None = None) -> None:
    """Toolbar callback: decide the first of the page's items that is still pending."""
    try:
        item = api.review_next(project, ids, action, label)
    except common.USER_ERRORS as e:
        flash("error: " + message(e))
        return
    flash(f"{VERBS[action]} #{item}" + (f" as {classes[label]}" if label is not None else "") if item is not None
          else "Every item on this page is decided; go to the next page")


def correct(item_id: int) -> None:
    key = f"rv_cor_{item_id}"
    label = st.session_state.get(key)
    if label is not None:
        decide([item_id], "correct", label)
    st.session_state[key] = None  # the picker is an action, not a setting


def undo() -> None:
    n = api.undo(project)
    flash(f"Undid the last action ({n:,} item{'s' * (n != 1)})" if n else "Nothing to undo")


def turn(delta: int, n_pages: int) -> None:
    st.session_state["rv_page"] = min(max(1, st.session_state["rv_page"] + delta), n_pages)


def filters_ui() -> dict:
    """The filter and sort widgets; returns the store's filter arguments and the order."""
    with st.container(border=True):
        c1, c2 = st.columns([1, 1], vertical_alignment="bottom")
        sel = c1.multiselect("Predicted class", range(len(classes)), format_func=lambda i: classes[i],
                             key="rv_classes", on_change=reset_page, placeholder="all classes", persist_state=KEEP)
        statuses = c2.pills("Status", api.STATUSES, selection_mode="multi", key="rv_status", on_change=reset_page,
                            persist_state=KEEP, help="Show items with these review decisions (none chosen: all)")
        c3, c4, c5 = st.columns([2, 3, 1], vertical_alignment="bottom")
        cmin, cmax = c3.slider("Confidence", 0.0, 1.0, step=0.01, key="rv_conf", on_change=reset_page,
                               persist_state=KEEP)
        order = c4.selectbox("Sort by", list(ORDER_LABELS), format_func=ORDER_LABELS.get, key="rv_order",
                             on_change=reset_page, persist_state=KEEP)
        size = c5.selectbox("Per page", PAGE_SIZES, key="rv_size", on_change=reset_page, persist_state=KEEP)
    return {"classes": list(sel) or None, "statuses": list(statuses) or None, "conf_min": cmin, "conf_max": cmax,
            "order": order, "size": size}


def toolbar_ui(pending_here: list[int], page: int, n_pages: int) -> None:
    """Accept/reject next, page turning and undo, each with its keyboard shortcut."""
    last = api.last_action(project)
    focus = pending_here[0] if pending_here else None
    with st.container(horizontal=True, vertical_alignment="bottom"):
        st.button("Accept next", key="rv_accept_next", shortcut=SHORTCUTS["accept"], icon=":material/check:",
                  disabled=focus is None, on_click=decide_next, args=(pending_here, "accept"),
                  help="Accept the first pending item on this page (marked ▶)")
        st.button("Reject next", key="rv_reject_next", shortcut=SHORTCUTS["reject"], icon=":material/close:",
                  disabled=focus is None, on_click=decide_next, args=(pending_here, "reject"),
                  help="Reject the first pending item on this page (marked ▶)")
        st.button("Previous", key="rv_prev", shortcut=SHORTCUTS["prev"], icon=":material/chevron_left:",
                  disabled=page <= 1, on_click=turn, args=(-1, n_pages))
        st.button("Next", key="rv_next", shortcut=SHORTCUTS["next"], icon=":material/chevron_right:",
                  disabled=page >= n_pages, on_click=turn, args=(1, n_pages))
        st.number_input("Page", min_value=1, max_value=n_pages, step=1, key="rv_page", width=130)
        st.button("Undo", key="rv_undo", shortcut=SHORTCUTS["undo"], icon=":material/undo:", disabled=last is None,
                  on_click=undo, help=(f"Revert the last decision: {last['new_status']} {last['n']:,} "
                                       f"item{'s' * (last['n'] != 1)}" if last else "Nothing to undo yet"))
    if len(classes) <= len(NUMBER_KEYS):
        class_keys_ui(pending_here, focus)
    st.caption((f"Last action: {last['new_status']} {last['n']:,} item{'s' * (last['n'] != 1)} · " if last else "")
               + f"keyboard: **{SHORTCUTS['accept']}** accept next · **{SHORTCUTS['reject']}** reject next · "
               f"**{SHORTCUTS['next']}** next page · **{SHORTCUTS['prev']}** previous page · "
               f"**{SHORTCUTS['undo']}** undo"
               + (" · **1**-**9**, **0** correct next to a class" if len(classes) <= len(NUMBER_KEYS) else ""))


def class_keys_ui(pending_here: list[int], focus: int | None) -> None:
    """A button per class with its number key (1-9, then 0, shown on the button): correct the next
    pending item (▶) to that class."""
    with st.container(horizontal=True, vertical_alignment="center", key="rv_class_keys"):
        st.caption("Correct next to:")
        for k, name in enumerate(classes):
            st.button(name, key=f"rv_key_{k}", shortcut=NUMBER_KEYS[k], type="tertiary",
                      disabled=focus is None, on_click=decide_next, args=(pending_here, "correct", k),
                      help=f"Key {NUMBER_KEYS[k]}: correct the item marked ▶ to {name}")


def ask_confirmation(threshold: float, n: int) -> None:
    st.session_state["rv_confirm"] = (threshold, n)
    st.session_state["rv_bulk_open"] = True  # the confirmation sits in the panel: keep it open


def bulk_ui(f: dict, pending_here: list[int]) -> None:
    """Accept the page, or every pending item of the filter above a threshold, after a confirmation."""
    with st.expander("Bulk actions", key="rv_bulk_open", on_change="rerun"):
        b1, b2, b3 = st.columns([2, 1, 2], vertical_alignment="bottom")
        b1.button(f"Accept the {len(pending_here)} pending item{'s' * (len(pending_here) != 1)} on this page",
                  key="rv_accept_page", disabled=not pending_here, on_click=decide, args=(pending_here, "accept"),
                  icon=":material/done_all:")
        thr = b2.number_input("Threshold", min_value=0.0, max_value=1.0, step=0.01, key="rv_thr", persist_state=KEEP)
        lo, cmax = max(thr, f["conf_min"]), f["conf_max"] if f["conf_max"] < 1 else None
        n_above = api.count_above(project, lo, classes=f["classes"], conf_max=cmax) \
            if (not f["statuses"] or "pending" in f["statuses"]) else 0
        b3.button(f"Accept all pending ≥ {thr:.2f} in this filter…", key="rv_bulk", disabled=n_above == 0,
                  icon=":material/playlist_add_check:", on_click=ask_confirmation, args=(lo, n_above))
        confirm = st.session_state.get("rv_confirm")
        if confirm:
            where = ", ".join(classes[i] for i in f["classes"]) if f["classes"] else "all classes"
            st.warning(f"Accept **{confirm[1]:,}** pending item{'s' * (confirm[1] != 1)} with confidence ≥ "
                       f"{confirm[0]:.2f}" + (f" and ≤ {cmax:.2f}" if cmax else "")
                       + f" ({util.md_escape(where)})? Undo reverts it as one action.")
            k1, k2 = st.columns([1, 1])
            if k1.button(f"Accept {confirm[1]:,}", key="rv_bulk_yes", type="primary"):
                try:
                    n = api.accept_above(project, confirm[0], classes=f["classes"], conf_max=cmax)
                    flash(f"Accepted {n:,} items")
                except common.USER_ERRORS as e:
                    flash("error: " + message(e))
                st.session_state.pop("rv_confirm", None)
                st.rerun()
            if k2.button("Cancel", key="rv_bulk_no"):
                st.session_state.pop("rv_confirm", None)
                st.rerun()


def card(r: dict, png: bytes, focus: int | None) -> None:
    """One item: its image, its label (the human's once decided, with the teacher's guess), the
    accept and reject buttons and the class picker."""
    i, status = r["id"], r["status"]
    st.image(png, width="content")
    guess = classes[r["pred"]] if r["pred"] is not None else "not predicted"
    conf = r["confidence"]
    badge = f" :{util.conf_color(conf)}-badge[{conf:.2f}]" if conf is not None else ""
    if status == "corrected":
        st.markdown(f"**{util.md_escape(classes[r['label']])}** :{STATUS_STYLE['corrected']}-badge[corrected]")
        st.caption(f"teacher: {util.md_escape(guess)} {conf:.2f}" if conf is not None else "teacher: none")
    else:
        st.markdown(f"**{util.md_escape(guess)}**{badge}")
        st.caption(f":{STATUS_STYLE[status]}[{status}] · #{i}" if status != "pending"
                   else f"#{i}" + (" · ▶ next" if i == focus else ""))
    a, x = st.columns(2)
    a.button("", key=f"rv_acc_{i}", icon=":material/check:", help="Accept the teacher's class", width="stretch",
             on_click=decide, args=([i], "accept"), disabled=r["pred"] is None or status in ("accepted", "corrected"),
             type="primary" if i == focus else "secondary")
    x.button("", key=f"rv_rej_{i}", icon=":material/close:", help="Reject: not a usable image", width="stretch",
             on_click=decide, args=([i], "reject"), disabled=status == "rejected")
    st.selectbox("Correct to", range(len(classes)), index=None, format_func=lambda k: classes[k],
                 key=f"rv_cor_{i}", on_change=correct, args=(i,), placeholder="Correct to…",
                 label_visibility="collapsed")


def grid(rows: list[dict], focus: int | None) -> None:
    images = common.thumbs(project, "pool", [r["id"] for r in rows])
    for start in range(0, len(rows), COLUMNS):
        for col, r, png in zip(st.columns(COLUMNS), rows[start:start + COLUMNS], images[start:start + COLUMNS]):
            with col.container(border=True):
                card(r, png, focus)


st.title("Review")
counts = api.counts(project)
if counts["pseudo_labeled"] == 0:
    st.info("Nothing to review yet: the pool has no pseudo-labels. A teacher trained on the labeled images "
            "predicts a class for every pool image; here you then accept, correct or reject those predictions.")
    common.next_step(project, where="review")
    st.stop()
for k, v in {"rv_conf": (0.0, 1.0), "rv_status": ["pending"], "rv_order": api.DEFAULT_ORDER, "rv_size": 24,
             "rv_page": 1, "rv_thr": 0.95}.items():
    st.session_state.setdefault(k, v)  # defaults set once, so widgets never get both a default and a value
f = filters_ui()
query = {k: f[k] for k in ("classes", "statuses", "conf_min", "conf_max")}
total = api.review_count(project, **query)
n_pages = max(1, math.ceil(total / f["size"]))
st.session_state["rv_page"] = min(max(1, int(st.session_state["rv_page"])), n_pages)
page = st.session_state["rv_page"]
rows = api.review_page(project, **query, order=f["order"], offset=(page - 1) * f["size"], limit=f["size"])
pending_here = [r["id"] for r in rows if r["status"] == "pending" and r["pred"] is not None]
toolbar_ui(pending_here, page, n_pages)
st.caption(f"{total:,} item{'s' * (total != 1)} match · page {page:,} of {n_pages:,}")
# A fixed slot for the message, so that the panels below keep their place (and their state).
flashed = st.session_state.pop("rv_flash", None)
with st.container(key="rv_message"):
    if flashed:
        (st.error if flashed.startswith("error: ") else st.success)(flashed.removeprefix("error: "))
bulk_ui(f, pending_here)
if rows:
    grid(rows, pending_here[0] if pending_here else None)
else:
    st.info("No items match these filters. Widen the confidence range, choose more statuses or classes"
            + (", or go back a page." if page > 1 else "."))
    if counts["pending"] == 0:
        common.next_step(project, where="review")
