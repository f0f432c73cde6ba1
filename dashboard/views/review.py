"""Review: a grid of pseudo-labeled pool items; accept, correct or reject each one, or in bulk.

Every decision is one store transaction made in a button callback, before the page is drawn
again, so the grid, a refresh and a second tab all show the store's state.
"""
from __future__ import annotations

import math

import streamlit as st

from dashboard import common, util
from stcore.project import default_reviewer
from stcore.store import DEFAULT_ORDER, STATUSES

ORDER_LABELS = {DEFAULT_ORDER: "most useful first (smallest margin, class by class)",
                "weighted-margin": "smallest margin, classes weighted by expected errors",
                "confidence": "confidence, lowest first", "confidence-desc": "confidence, highest first",
                "margin": "margin, smallest first", "entropy": "entropy, highest first", "random": "random"}
PAGE_SIZES = [12, 24, 48, 96]
COLUMNS = 6
SHORTCUTS = {"accept": "A", "reject": "X", "next": "N", "prev": "P", "undo": "U"}

st.title("Review")
project = common.current_project()
classes = project.classes
counts = project.counts()
if counts["pseudo_labeled"] == 0:
    st.info("Nothing to review yet: the pool has no pseudo-labels. A teacher trained on the labeled images "
            "predicts a class for every pool image; here you then accept, correct or reject those predictions.")
    common.next_step(project, where="review")
    st.stop()

# UI state only: filters and the page number. Defaults are set once, so that the widgets below
# never get both a default and a session value.
for k, v in {"rv_classes": [], "rv_conf": (0.0, 1.0), "rv_status": ["pending"], "rv_order": DEFAULT_ORDER,
             "rv_size": 24, "rv_page": 1, "rv_thr": 0.95}.items():
    st.session_state.setdefault(k, v)


def reset_page() -> None:
    st.session_state["rv_page"] = 1
    st.session_state.pop("rv_confirm", None)


def flash(text: str) -> None:
    st.session_state["rv_flash"] = text


def decide(ids: list[int], action: str, label: int | None = None) -> None:
    """Button callback: write one decision (one transaction) for ids."""
    try:
        n = project.review(ids, action, label)
    except common.USER_ERRORS as e:
        flash("error: " + common.error_text(e))
        return
    verb = {"accept": "Accepted", "reject": "Rejected", "correct": "Corrected", "reset": "Reset"}[action]
    flash(f"{verb} {n} item{'s' * (n != 1)}" + (f" as {classes[label]}" if action == "correct" else ""))


def correct(item_id: int) -> None:
    key = f"rv_cor_{item_id}"
    label = st.session_state.get(key)
    if label is not None:
        decide([item_id], "correct", label)
    st.session_state[key] = None  # the picker is an action, not a setting


def undo() -> None:
    n = project.store.undo()
    flash(f"Undid the last action ({n} item{'s' * (n != 1)})" if n else "Nothing to undo")


def turn(delta: int, n_pages: int) -> None:
    st.session_state["rv_page"] = min(max(1, st.session_state["rv_page"] + delta), n_pages)


# ------------------------------------------------------------------ filters
with st.container(border=True):
    c1, c2, c3, c4, c5 = st.columns([3, 2, 2, 3, 1])
    sel = c1.multiselect("Predicted class", range(len(classes)), format_func=lambda i: classes[i], key="rv_classes",
                         on_change=reset_page, placeholder="all classes")
    cmin, cmax = c2.slider("Confidence", 0.0, 1.0, step=0.01, key="rv_conf", on_change=reset_page)
    statuses = c3.multiselect("Status", STATUSES, key="rv_status", on_change=reset_page, placeholder="any status")
    order = c4.selectbox("Sort by", list(ORDER_LABELS), format_func=ORDER_LABELS.get, key="rv_order",
                         on_change=reset_page)
    size = c5.selectbox("Per page", PAGE_SIZES, key="rv_size", on_change=reset_page)

filters = dict(classes=list(sel) or None, statuses=list(statuses) or None, conf_min=cmin, conf_max=cmax)
total = project.store.count(**filters)
n_pages = max(1, math.ceil(total / size))
st.session_state["rv_page"] = min(max(1, int(st.session_state["rv_page"])), n_pages)
page = st.session_state["rv_page"]
rows = project.store.page(**filters, order=order, offset=(page - 1) * size, limit=size)
pending_here = [r["id"] for r in rows if r["status"] == "pending" and r["pred"] is not None]
focus = pending_here[0] if pending_here else None
last = project.store.last_batch()

# ------------------------------------------------------------------ toolbar (with keyboard shortcuts)
bar = st.columns([2, 2, 1.3, 1.3, 1.2, 2.6], vertical_alignment="bottom")
bar[0].button("Accept next", key="rv_accept_next", shortcut=SHORTCUTS["accept"], icon=":material/check:",
              disabled=focus is None, on_click=decide, args=([focus], "accept"), width="stretch",
              help="Accept the first pending item on this page (marked ▶)")
bar[1].button("Reject next", key="rv_reject_next", shortcut=SHORTCUTS["reject"], icon=":material/close:",
              disabled=focus is None, on_click=decide, args=([focus], "reject"), width="stretch",
              help="Reject the first pending item on this page (marked ▶)")
bar[2].button("Prev", key="rv_prev", shortcut=SHORTCUTS["prev"], icon=":material/chevron_left:",
              disabled=page <= 1, on_click=turn, args=(-1, n_pages), width="stretch")
bar[3].button("Next", key="rv_next", shortcut=SHORTCUTS["next"], icon=":material/chevron_right:",
              disabled=page >= n_pages, on_click=turn, args=(1, n_pages), width="stretch")
bar[4].number_input("Page", min_value=1, max_value=n_pages, step=1, key="rv_page")
bar[5].button(f"Undo: {last['new_status']} {last['n']} item{'s' * (last['n'] != 1)}" if last else "Undo",
              key="rv_undo", shortcut=SHORTCUTS["undo"], icon=":material/undo:", disabled=last is None,
              on_click=undo, width="stretch", help="Revert the last decision: one item or one bulk action")
st.caption(f"{total:,} item{'s' * (total != 1)} match · page {page} of {n_pages} · keyboard: "
           f"**{SHORTCUTS['accept']}** accept next · **{SHORTCUTS['reject']}** reject next · "
           f"**{SHORTCUTS['next']}** next page · **{SHORTCUTS['prev']}** previous page · "
           f"**{SHORTCUTS['undo']}** undo")

message = st.session_state.pop("rv_flash", None)
if message:
    (st.error if message.startswith("error: ") else st.success)(message.removeprefix("error: "))

# ------------------------------------------------------------------ bulk actions
with st.expander("Bulk actions", expanded=bool(st.session_state.get("rv_confirm"))):
    b1, b2, b3 = st.columns([2, 1, 2], vertical_alignment="bottom")
    b1.button(f"Accept the {len(pending_here)} pending item{'s' * (len(pending_here) != 1)} on this page",
              key="rv_accept_page", disabled=not pending_here, on_click=decide, args=(pending_here, "accept"),
              icon=":material/done_all:")
    thr = b2.number_input("Threshold", min_value=0.0, max_value=1.0, step=0.01, key="rv_thr")
    # A tiny positive bound rather than 0: the store treats 0 as "no bound", and only items
    # with a prediction (hence a confidence) can be accepted.
    lo = max(thr, cmin, 1e-9)
    n_above = project.store.count(classes=filters["classes"], statuses=["pending"], conf_min=lo,
                                  conf_max=cmax) if ("pending" in statuses or not statuses) else 0
    if b3.button(f"Accept all pending ≥ {thr:.2f} in this filter…", key="rv_bulk", disabled=n_above == 0,
                 icon=":material/playlist_add_check:"):
        st.session_state["rv_confirm"] = (lo, n_above)
    confirm = st.session_state.get("rv_confirm")
    if confirm:
        where = ", ".join(classes[i] for i in sel) if sel else "all classes"
        st.warning(f"Accept **{confirm[1]:,}** pending item{'s' * (confirm[1] != 1)} with confidence ≥ "
                   f"{confirm[0]:.2f}" + (f" and ≤ {cmax:.2f}" if cmax < 1 else "")
                   + f" ({util.md_escape(where)})? Undo reverts it as one action.")
        k1, k2, _ = st.columns([1, 1, 4])
        if k1.button(f"Accept {confirm[1]:,}", key="rv_bulk_yes", type="primary"):
            try:
                n = project.store.accept_above(confirm[0], classes=filters["classes"],
                                               conf_max=cmax if cmax < 1 else None,
                                               reviewer=default_reviewer())
                flash(f"Accepted {n:,} items")
            except common.USER_ERRORS as e:
                flash("error: " + common.error_text(e))
            st.session_state.pop("rv_confirm", None)
            st.rerun()
        if k2.button("Cancel", key="rv_bulk_no"):
            st.session_state.pop("rv_confirm", None)
            st.rerun()

# ------------------------------------------------------------------ the grid
if not rows:
    st.info("No items match these filters. Widen the confidence range, choose more statuses or classes"
            + (", or go back a page." if page > 1 else "."))
    if counts["pending"] == 0:
        common.next_step(project, where="review")
    st.stop()

images = common.thumbs(project, "pool", [r["id"] for r in rows])
STATUS_STYLE = {"accepted": "blue", "corrected": "violet", "rejected": "gray"}
for start in range(0, len(rows), COLUMNS):
    cols = st.columns(COLUMNS)
    for col, r, png in zip(cols, rows[start:start + COLUMNS], images[start:start + COLUMNS]):
        with col.container(border=True):
            i = r["id"]
            st.image(png, width="content")
            pred = classes[r["pred"]] if r["pred"] is not None else "not predicted"
            conf = r["confidence"]
            st.markdown(f"**{util.md_escape(pred)}** :{util.conf_color(conf)}-badge[{conf:.2f}]"
                        if conf is not None else f"**{util.md_escape(pred)}**")
            if r["status"] == "corrected":
                st.caption(f":{STATUS_STYLE['corrected']}[corrected → {util.md_escape(classes[r['label']])}]")
            elif r["status"] != "pending":
                st.caption(f":{STATUS_STYLE[r['status']]}[{r['status']}]")
            else:
                st.caption(f"#{i}" + (" · ▶ next" if i == focus else ""))
            a, x = st.columns(2)
            a.button("", key=f"rv_acc_{i}", icon=":material/check:", help="Accept", width="stretch",
                     on_click=decide, args=([i], "accept"), disabled=r["pred"] is None or r["status"] == "accepted",
                     type="primary" if i == focus else "secondary")
            x.button("", key=f"rv_rej_{i}", icon=":material/close:", help="Reject", width="stretch",
                     on_click=decide, args=([i], "reject"), disabled=r["status"] == "rejected")
            st.selectbox("Correct to", range(len(classes)), index=None, format_func=lambda k: classes[k],
                         key=f"rv_cor_{i}", on_change=correct, args=(i,), placeholder="correct to…",
                         label_visibility="collapsed")
