"""Review: the pool's pseudo-labels in a grid, or another list of items (the map's selection,
the images similar to one, the likely wrong labels, the near-duplicates); accept, correct or
reject each one, or in bulk.

The grid, its toolbar and its keyboard are one component (dashboard/grid.py) inside a fragment:
a decision reruns the fragment alone, and the browser redraws only the cards that changed. Each
decision is one store transaction, made in the component's callback before the grid is drawn
again, so the grid, a refresh and a second tab all show the store's state; the component sends
every action until the server has acknowledged it, so none is lost. The view, filters, sort and
page live in the URL, so a refresh or a shared link shows the same items.
"""
from __future__ import annotations

import math
import time

import streamlit as st

from dashboard import common, grid, util
from stcore import api
from stcore.errors import UsageError, message

ORDER_LABELS = {api.DEFAULT_ORDER: "most useful first (smallest margin, class by class)",
                "weighted-margin": "smallest margin, classes weighted by expected errors",
                "confidence": "confidence, lowest first", "confidence-desc": "confidence, highest first",
                "margin": "margin, smallest first", "entropy": "entropy, highest first", "random": "random"}
PAGE_SIZES = [12, 24, 48, 96]
VIEWS = ("pseudo-labels", "map selection", "similar", "likely wrong", "near-duplicates", "conflicts", "split")
TO_LABEL = "to label"  # the pool before any pseudo-label: its images to label by hand
SUGGEST_PAGES = 3  # the "to label" view chooses this many pages of images at a time
SIMILAR_K = 23  # the image and its neighbours fill a page of 24
# UI state only, kept for the session while the user visits other pages.
KEEP = "session"
# What the URL keeps: session key -> (query parameter, parse, write).
URL = {"rv_view": ("view", str, str), "rv_similar": ("similar", int, str),
       "rv_classes": ("classes", lambda v: [int(c) for c in v.split(",") if c and 0 <= int(c) < len(classes)],
                      lambda v: ",".join(map(str, v))),
       "rv_status": ("status", lambda v: [x for x in v.split(",") if x in api.STATUSES], ",".join),
       "rv_conf": ("conf", lambda v: _range([min(max(float(x), 0.0), 1.0) for x in v.split("-")][:2]),
                   lambda v: f"{v[0]:.2f}-{v[1]:.2f}"),
       "rv_order": ("order", lambda v: v if v in ORDER_LABELS else api.DEFAULT_ORDER, str),
       "rv_size": ("size", lambda v: int(v) if int(v) in PAGE_SIZES else 24, str), "rv_page": ("page", int, str)}


def _range(values: list[float]) -> tuple[float, float]:
    return min(values), max(values)


DEFAULTS = {"rv_view": VIEWS[0], "rv_conf": (0.0, 1.0), "rv_status": ["pending"], "rv_order": api.DEFAULT_ORDER,
            "rv_size": 24, "rv_page": 1, "rv_thr": 0.95}

project = common.current_project()
classes = project.classes


def reset_page() -> None:
    st.session_state["rv_page"] = 1
    st.session_state.pop("rv_confirm", None)
    st.session_state.pop("rv_list_confirm", None)


def flash(text: str) -> None:
    """The message the grid shows after its next draw. Several actions applied at once: an error
    stays over the successes after it."""
    if not str(st.session_state.get("rv_flash", "")).startswith("error: ") or text.startswith("error: "):
        st.session_state["rv_flash"] = text


def decide(ids: list[int], action: str, label: int | None = None) -> None:
    """Write one decision (one transaction) for ids, and say what it did."""
    a = api.ACTIONS[action]
    # a class given to images no model has predicted is a first label, not a correction
    verb = "Labeled" if a.needs_class and all(r["pred"] is None for r in api.items(project, ids)) else a.verb
    try:
        # a class for items of any split: a labeled-set card can be corrected too
        if len(ids) > 1:
            common.check("bulk")
        who, settle = common.reviewer(), api.may_settle(common.user())
        if who and (taken := api.held_by_others(project, ids, who)):  # shown to two pages drawn at once
            item, holder = next(iter(taken.items()))
            raise UsageError(f"#{item} is {holder}'s: their page took it a moment before yours; it is off your page now")
        n = api.set_label(project, ids, label, reviewer=who, may_settle=settle) if a.needs_class else \
            api.review(project, ids, action, reviewer=who, may_settle=settle)
    except common.USER_ERRORS as e:
        flash("error: " + message(e))
        return
    what = f"#{ids[0]}" if len(ids) == 1 else f"{n:,} item{'s' * (n != 1)}"
    k = api.overlap(project)  # several decide each item: a decision that left it pending was a vote
    voted = k > 1 and a.status != "pending" and n and api.items(project, ids[:1])[0]["status"] == "pending"
    flash(f"{verb} {what}" + (f" as {classes[label]}" if a.needs_class else "")
          + (" (no change: it was already so)" if n == 0 else "")
          + (f": your vote, counted once {k} reviewers agree" if voted else ""))


def decide_new_class(ids: list[int], action: str, name: str) -> None:
    """A class typed into the grid's class list: added to the project when it has none of that
    name (in any case), then given to ids."""
    key = " ".join(name.split()).casefold()
    known = {" ".join(n.split()).casefold(): k for k, n in enumerate(project.classes)}
    try:
        if key not in known:
            common.check("classes")
        k = known[key] if key in known else api.add_classes(project, [name], reviewer=common.reviewer())[0]
    except common.USER_ERRORS as e:
        flash("error: " + message(e))
        return
    classes[:] = project.classes  # this run's list, read before the class was added
    decide(ids, action, k)
    done = str(st.session_state.get("rv_flash", ""))
    if key not in known and not done.startswith("error: "):
        st.session_state["rv_flash"] = f"{done} (a new class: {len(classes)} in all)"


def undo() -> None:
    n = api.undo(project, common.reviewer())  # signed in: that person's own last action
    flash(f"Undid the last action ({n:,} item{'s' * (n != 1)})" if n else "Nothing to undo")


def show_similar(item_id: int) -> None:
    """A card's Similar: show the images nearest to this one (the view selector is outside the
    grid, so the whole page is drawn again)."""
    st.session_state.update(rv_view="similar", rv_similar=int(item_id), rv_page=1, rv_whole_page=True)
    st.session_state.pop("rv_list_confirm", None)


def decide_as_shown(ids: list[int], action: str, expect: int) -> None:
    """Accept (an action that takes the teacher's class) items whose prediction is still the
    class their card showed; a newer pseudo-label (a teacher ran since the page was drawn) is
    shown first, not accepted unseen."""
    now = {r["id"]: r["pred"] for r in api.items(project, ids)}
    changed = [i for i in ids if now.get(i) != expect]
    if len(changed) < len(ids):
        decide([i for i in ids if i not in changed], action)
    if changed:
        flash(f"error: not {api.ACTIONS[action].verb.lower()}: #{changed[0]}'s pseudo-label changed since the page "
              "was drawn "
              f"(now {classes[now[changed[0]]] if now.get(changed[0]) is not None else 'none'}); look again")


def on_grid() -> None:
    """The grid's callback: apply, in order, each operation it sent that is not applied yet."""
    st.session_state.pop("rv_flash", None)  # this batch's messages replace any earlier one
    done = st.session_state.setdefault("rv_done", {})
    for op in grid.new_ops(st.session_state.get("rv_grid"), done, len(classes)):
        if op["kind"] == "decide" and op.get("new_class"):
            decide_new_class(op["ids"], op["action"], op["new_class"])
        elif op["kind"] == "decide" and op["expect"] is not None:
            decide_as_shown(op["ids"], op["action"], op["expect"])
        elif op["kind"] == "decide":
            decide(op["ids"], op["action"], op["label"])
        elif op["kind"] == "page":
            st.session_state["rv_page"] = max(1, op["page"])  # page_of keeps it within the pages
        elif op["kind"] == "undo":
            undo()
        else:
            show_similar(op["id"])


# ------------------------------------------------------------------ the URL
def state_from_url() -> None:
    """The view, filters, sort and page from the URL (once per session), then the defaults of
    those not set (each run: Streamlit forgets a widget's value when its page is left)."""
    if not st.session_state.get("rv_url_read"):
        st.session_state["rv_url_read"] = True
        for key, (name, parse, _) in URL.items():
            if name in st.query_params:
                try:
                    st.session_state[key] = parse(st.query_params[name])
                except (ValueError, IndexError):
                    pass  # a mangled link: that setting keeps its default
        if st.session_state.get("rv_view") not in VIEWS:
            st.session_state.pop("rv_view", None)
    for k, v in DEFAULTS.items():
        st.session_state.setdefault(k, v)  # set once, so widgets never get both a default and a value


def state_to_url() -> None:
    for key, (name, _, write) in URL.items():
        value = st.session_state.get(key)
        # [] for a setting whose default is not empty (no status chosen: all) is written as empty
        text = None if value is None or value == DEFAULTS.get(key, []) else write(value)
        if text is None:
            if name in st.query_params:
                del st.query_params[name]
        elif st.query_params.get(name) != text:
            st.query_params[name] = text


# ------------------------------------------------------------------ filters and toolbar
def view_ui(predicted: bool) -> str:
    """Which items the grid shows; 'similar' only once a card's Similar was pressed. Before the
    pool is predicted, the first view is its images to label by hand."""
    settles = api.overlap(project) > 1 and api.may_settle(common.user())  # several decide each item: an admin settles
    n_split = len(api.offers(project))  # items whose class was split, to label again
    options = [v for v in VIEWS if (v != "similar" or st.session_state.get("rv_similar") is not None)
               and (v != "conflicts" or settles) and (v != "split" or n_split)]
    if st.session_state.get("rv_view") not in options:
        st.session_state["rv_view"] = VIEWS[0]
    labels = {"similar": f"similar to #{st.session_state.get('rv_similar')}",
              "conflicts": f"conflicts ({api.count_conflicts(project):,})" if settles else "conflicts",
              "split": f"split ({n_split:,})",
              **({} if predicted else {VIEWS[0]: TO_LABEL})}
    return st.segmented_control("Show", options, key="rv_view", format_func=lambda v: labels.get(v, v),
                                on_change=reset_page, persist_state=KEEP, required=True) or VIEWS[0]


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
            common.accept_impact_ui(api.bulk_accept_impact(project, confirm[0], classes=f["classes"], conf_max=cmax))
            k1, k2 = st.columns([1, 1])
            if k1.button(f"Accept {confirm[1]:,}", key="rv_bulk_yes", type="primary"):
                try:
                    common.check("bulk")
                    n = api.accept_above(project, confirm[0], classes=f["classes"], conf_max=cmax,
                                         reviewer=common.reviewer())
                    flash(f"Accepted {n:,} items")
                except common.USER_ERRORS as e:
                    flash("error: " + message(e))
                st.session_state.pop("rv_confirm", None)
                st.rerun()
            if k2.button("Cancel", key="rv_bulk_no"):
                st.session_state.pop("rv_confirm", None)
                st.rerun()


def decide_still(ids: list[int], action: str, label: int | None) -> None:
    """A confirmed bulk action: accept only what is still pending (a card may have been decided
    since the confirmation opened)."""
    decide(api.still_pending(project, ids) if action == "accept" else ids, action, label)


def list_bulk_ui(rows: list[dict]) -> None:
    """Accept, or correct to one class, every pool item of the list (the similar images, the
    map's selection), after a confirmation that says how many."""
    pool = [r["id"] for r in rows if r["split"] == "pool"]
    pending = [r["id"] for r in rows if r["split"] == "pool" and r["status"] == "pending" and r["pred"] is not None]
    with st.expander("Bulk actions", key="rv_bulk_open", on_change="rerun"):
        common.decide_all_ui(classes, pool, pending, key="rv_list", on_confirm=decide_still,
                             note="Items of the labeled set are left as they are. ",
                             impact=lambda ids: api.ids_accept_impact(project, ids))


# ------------------------------------------------------------------ the lists other than the pool
def list_view(view: str) -> list[dict] | None:
    """The rows of a list view (with a 'note' per card, and a 'fix' class for likely wrong
    labels), or None after saying why there is nothing to show yet."""
    if view == "map selection":
        ids = api.selection(project)
        if not ids:
            st.info("Nothing is selected on the map yet: draw a lasso or a box around points on the Map page, "
                    "then choose 'Review these in the grid'.")
            st.page_link(common.PAGES["map"], label="Open the map", icon=":material/scatter_plot:")
            return None
        return api.items(project, ids)
    if view == "similar":
        return similar_rows(int(st.session_state["rv_similar"]))
    if view == "likely wrong":
        return likely_wrong_rows()
    if view == "conflicts":
        return conflict_rows()
    if view == "split":
        return split_rows()
    return duplicate_rows()


def split_rows() -> list[dict]:
    """The items whose class was split, each with the classes the split offers first (the
    number keys give those first)."""
    offered = api.offers(project)
    rows = api.items(project, sorted(offered))
    for r in rows:
        r["offer"] = offered[r["id"]]
        r["note"] = "split: " + " or ".join(classes[k] for k in r["offer"]) + "?"
    return rows


def conflict_rows() -> list[dict] | None:
    """The items reviewers decided differently (overlap), each card saying who voted what."""
    rows = api.conflicts(project)
    if not rows:
        st.success(f"No open conflicts: every item that {api.overlap(project)} reviewers decided, they decided alike.")
        return None
    st.caption("Each card says who voted what. Accept, correct or reject one to settle it: that decision counts.")
    return rows


def similar_rows(item_id: int) -> list[dict] | None:
    try:
        found = common.similar(project, item_id, SIMILAR_K)
    except common.USER_ERRORS as e:
        common.show_error(e)
        return None
    sims = {n["id"]: n["similarity"] for n in found["neighbours"]}
    rows = api.items(project, [item_id, *sims])
    for r in rows:
        r["note"] = "the image searched from" if r["id"] == item_id else f"similarity {sims[r['id']]:.3f}"
    st.caption(f"The {len(sims)} images nearest to #{item_id} in the {found['over']} embedding, most similar first.")
    return rows


def job_or_button(role: str, what: str, start) -> None:
    """A list made by a job: its progress while it runs (the page shows the list, or the job's
    error, as soon as it ends), else a button that starts it."""
    if r := common.active_job(project, role):
        common.follow(project, r["id"], f"finding {what}")
        return
    if failed := common.last_failure(project, role):
        st.error(f"{failed['id']} {failed['state']}: {failed['error'] or 'no reason was recorded'}")
    if st.button(f"Find {what}", key=f"rv_start_{role}", type="primary", icon=":material/search:"):
        try:
            common.check("runs")
            start(project, device=common.best_device())
        except common.USER_ERRORS as e:
            common.show_error(e)
            return
        st.rerun(scope="app")


def likely_wrong_rows() -> list[dict] | None:
    found = api.label_issues(project)
    if found is None or found["stale"]:
        st.info("Likely wrong labels: each human label (the labeled set, accepted and corrected items) is checked "
                "against what its neighbours in the embedding say, from the other labels only."
                + (" The labels changed since the last check." if found else ""))
        job_or_button("label-issues", "likely wrong labels", api.start_label_issues)
        if found is None:
            return None
    issues = {i["id"]: i for i in found["issues"]}
    def now(r: dict) -> str | None:  # the item's class today (None: no longer labeled or predicted)
        c = r["label"] if r["label"] is not None else r["pred"]
        return classes[c] if c is not None else None
    rows = [r for r in api.items(project, list(issues))
            if r["status"] in ("labeled", "accepted", "corrected") and now(r) != issues[r["id"]]["suggested"]]
    for r in rows:
        i = issues[r["id"]]
        r["note"] = f"given {i['given']}, neighbours say {i['suggested']} (score {i['score']:.2f})"
        r["fix"] = classes.index(i["suggested"])
    st.caption(f"{len(rows):,} of {found['checked']:,} human labels look wrong, most likely first "
               f"({len(issues) - len(rows):,} fixed since the check).")
    return rows


def duplicate_rows() -> list[dict] | None:
    found = api.duplicates(project)
    if found is None:
        st.info("Near-duplicates: pairs of near-identical images among the labeled set, the pool and the test "
                "set (a test image that is also a training image inflates the test accuracy).")
        job_or_button("duplicates", "near-duplicates", api.start_duplicates)
        return None
    pairs = [p for p in found["pairs"] if p["a"]["id"] is not None and p["b"]["id"] is not None]
    known = {r["id"]: r for r in api.items(project, [x[s]["id"] for x in pairs for s in "ab"
                                                     if x[s]["split"] != "test"])}
    rows = []
    for k, pair in enumerate(pairs, 1):
        for side in "ab":
            item = pair[side]
            r = dict(known[item["id"]]) if item["split"] != "test" else {
                "id": item["id"], "split": "test", "status": "test", "pred": None, "label": None, "confidence": None}
            rows.append({**r, "slot": f"{item['id']}_{k}{side}",
                         "note": f"pair {k} · similarity {pair['similarity']:.3f} · {item['split']}"})
    st.caption(f"{len(pairs):,} pairs with cosine similarity at least {found['threshold']} in the {found['over']} "
               f"embedding, side by side; reject the pool copy of a test image.")
    return rows


# ------------------------------------------------------------------ the grid
def grid_ui(rows: list[dict], page: int, n_pages: int, total: int) -> None:
    searchable = bool(api.embeddings(project))
    cards = [grid.card(r, classes, uri, searchable=searchable) for r, uri in zip(rows, common.item_uris(project, rows))]
    last = api.last_action(project)
    flashed = st.session_state.pop("rv_flash", None)
    grid.draw(key="rv_grid", project_id=api.info(project)["id"], cards=cards, classes=classes, page=page,
              n_pages=n_pages, total=total, done=st.session_state.setdefault("rv_done", {}), on_ops=on_grid,
              first=[k for r in rows for k in r.get("offer", ())],
              undo=f"{last['new_status']} {last['n']:,} item{'s' * (last['n'] != 1)}" if last else None,
              message={"kind": "error" if flashed.startswith("error: ") else "success",
                       "text": flashed.removeprefix("error: ")} if flashed else None)


def suggested_rows(size: int) -> list[dict] | None:
    """The app's choice of what to label next (api.suggest: the most typical image of each
    cluster of the embedding not yet labeled), a batch of a few pages at a time: cards stay
    where they are once labeled, and the next batch is chosen when this one is all decided.
    None without an embedding (the view then shows a random sample)."""
    if not api.embeddings(project):
        return None
    key = f"rv_suggested:{api.info(project)['id']}"
    ids = st.session_state.get(key)
    rows = api.items(project, ids) if ids else []
    if not any(r["status"] == "pending" for r in rows):
        try:
            got = api.suggest(project, count=SUGGEST_PAGES * size, strategy="typical", reviewer=common.reviewer())
        except UsageError:
            return None
        st.session_state[key] = [i["id"] for i in got["items"]]
        st.session_state[key + ":why"] = {i["id"]: i["reason"] for i in got["items"]}
        st.session_state["rv_page"] = 1
        rows = api.items(project, st.session_state[key])
    reasons = st.session_state.get(key + ":why", {})
    return [{**r, "note": reasons.get(r["id"])} for r in rows]


def continuous_ui() -> None:
    """Continuous mode: a toggle (retrain every N decisions, in a job), and its refreshes' state."""
    now = api.continuous_status(project)
    c1, c2 = st.columns([3, 1], vertical_alignment="center")
    on = c1.toggle("Learn while I label: retrain the teacher every N decisions", value=now["every"] is not None,
                   help="A head on the embedding is trained on your labels and pseudo-labels the pool again, in "
                        "the background; it then becomes the teacher, and the grid shows its labels. Turning this "
                        "off gives back the teacher you had before.")
    st.session_state["rv_every"] = now["chosen"]  # the project's setting, whoever made it (another tab, the CLI)
    c2.number_input("N (decisions)", min_value=1, step=10, key="rv_every", on_change=set_every,
                    help="Fewer: the order follows your labels sooner, at more CPU time in the background (each "
                         "retrain takes seconds to a minute).")
    if error := st.session_state.pop("rv_every_error", None):
        common.show_error(error)
    if on != (now["every"] is not None):
        try:
            common.check("runs")
            api.set_continuous(project, int(st.session_state["rv_every"]) if on else None)
        except common.USER_ERRORS as e:
            common.show_error(e)
            return
        st.rerun(scope="app")
    if on:
        st.fragment(continuous_state, run_every=2.0)()


def set_every() -> None:
    """N changed on the page: stored in the project, in use from now on if the mode is on."""
    try:
        common.check("runs")
        api.set_continuous_every(project, int(st.session_state["rv_every"]))
    except common.USER_ERRORS as e:
        st.session_state["rv_every_error"] = e


def continuous_state() -> None:
    now = api.continuous_status(project)
    if now["running"]:
        r = now["running"]
        st.caption(f"Retraining now ({r['id']}, {r['state']}): a head on your labels, then the pool's pseudo-labels. "
                   "Keep labeling; the next page shows them.")
    if last := now["last"]:
        st.caption(f"Last refresh {last['id']}: {util.fmt_duration(last['ago'])} ago, learned from {last['labels']:,} labels in "
                   f"{last['seconds']} s. Next after {now['every']} decisions ({now['decisions']} so far).")
    elif not now["running"]:
        st.caption(f"The first refresh starts after {now['every']} decisions ({now['decisions']} so far).")
    if now["failed"]:
        st.warning(f"The last refresh {now['failed']['id']} {now['failed']['state']}: {util.md_escape(now['failed']['error'])}. "
                   f"The next one starts after {now['every']} more decisions; your labels are all kept.")
    if now["problem"]:
        st.warning(f"No refresh could start: {util.md_escape(now['problem'])}")


def labeled_so_far(slot=None) -> None:
    """How many human labels each class has, in the page's slot for it (the next step above says
    when a teacher can start). A decision draws it again from the grid's fragment, with no slot;
    a decision that changes the next step (the first label, the second class) reruns the page."""
    in_fragment, slot = slot is None, slot or st.session_state.get("_rv_labeled")
    if slot is None:
        return
    st.session_state["_rv_labeled"] = slot  # a UI handle of this session's page, not data
    have = api.classes(project)
    total = sum(c["labels"] for c in have)
    stage, before = (len(have) >= 2, total > 0), st.session_state.get("_rv_stage")
    st.session_state["_rv_stage"] = stage
    if in_fragment and before is not None and before != stage:
        st.rerun(scope="app")
    unlabeled = [c["name"] for c in have if not c["labels"]]
    slot.caption("Labeled so far: " + (" · ".join(f"{c['name']} {c['labels']:,}" for c in have) or "no class yet")
                 + (f" — {total:,} in all; a teacher can start now (Next step above)"
                    + (f", though it learns nothing of {', '.join(unlabeled[:3])}{'…' * (len(unlabeled) > 3)} "
                       "until it has a label" if unlabeled else "") if all(stage) else ""))


def page_of(view: str, f: dict | None) -> tuple[list[dict], list[dict] | None, int, int] | None:
    """(this page's rows, the whole list for a list view, the number of pages, the number of
    items), or None when a list view has nothing to show yet."""
    size = f["size"] if f else int(st.session_state["rv_size"])
    listed = suggested_rows(size) if view == TO_LABEL else None
    if listed is not None:
        total = len(listed)
    elif view in ("pseudo-labels", TO_LABEL):
        query = {k: f[k] for k in ("classes", "statuses", "conf_min", "conf_max")}
        total, listed = api.review_count(project, **query), None
    else:
        listed = list_view(view)
        if listed is None:
            return None
        total = len(listed)
    n_pages = max(1, math.ceil(total / size))
    st.session_state["rv_page"] = min(max(1, int(st.session_state["rv_page"])), n_pages)
    offset = (st.session_state["rv_page"] - 1) * size
    who = common.reviewer()  # signed in: nobody else is shown the pending items of this page meanwhile
    for _ in range(HOLD_TRIES):  # another reviewer's page drawn at the same moment may take some first
        rows = (api.review_page(project, **query, order=f["order"], offset=offset, limit=size, free_for=who)
                if listed is None else listed[offset:offset + size])
        if not who or not hold(who, {r["id"] for r in rows if r["status"] == "pending"}) or listed is not None:
            break
    return rows, listed, n_pages, total


HOLD_TRIES = 5


def hold(who: str, ids: set[int]) -> set[int]:
    """Lease this page's pending items to who; returns those someone else took first (the page
    is read again without them). A decision only takes items off the page, so a redraw writes
    nothing unless the page shows new items or the leases are a minute old."""
    last = st.session_state.get("rv_leased")
    if last is None or last[0] != who or not ids <= last[1] or time.time() - last[2] > 60:
        got = set(api.lease(project, sorted(ids), who, only=True))
        st.session_state["rv_leased"] = (who, got, time.time())
        return ids - got
    return set()


@st.fragment
def body(view: str, f: dict | None) -> None:
    """Everything a decision changes: a decision reruns this alone."""
    if st.session_state.pop("rv_whole_page", False):
        st.rerun(scope="app")  # the view changed (Similar on a card): the selector above must follow
    got = page_of(view, f)
    state_to_url()
    if got is None:
        return
    rows, listed, n_pages, total = got
    pending_here = [r["id"] for r in rows if r["status"] == "pending" and r["pred"] is not None]
    bulk = api.allowed(common.user(), "bulk")  # a reviewer decides one at a time: no bulk tools to redraw
    if bulk and view == "pseudo-labels":
        bulk_ui(f, pending_here)
    elif bulk and view in ("similar", "map selection"):
        list_bulk_ui(listed)
    labeled_so_far()  # the labels per class (outside this fragment), or the whole page when its next step moved
    grid_ui(rows, st.session_state["rv_page"], n_pages, total)  # also with no rows: its Undo stays at hand
    common.sidebar_counts(project)  # a decision changed them; the sidebar is outside this fragment
    if rows:
        return
    if view == TO_LABEL:
        st.info("Every pool image has been labeled or rejected.")
    elif view == "pseudo-labels":
        st.info("No items match these filters. Widen the confidence range, choose more statuses or classes"
                + (", or go back a page." if st.session_state["rv_page"] > 1 else "."))
        if api.counts(project)["pending"] == 0:
            common.next_step(project, where="review")
    else:
        st.info("Nothing left in this list.")


st.title("Review")
counts = api.counts(project)
predicted = counts["pseudo_labeled"] > 0
embedded = bool(api.embeddings(project))
if not predicted:
    if counts["labeled"] + counts["accepted"] + counts["corrected"]:
        st.info("Nothing to review yet: the pool has no pseudo-labels. A teacher trained on the labeled images "
                "predicts a class for every pool image; here you then accept, correct or reject those predictions.")
    common.next_step(project, where="review")
    if not counts["pool"]:
        st.stop()
    st.caption("Until a teacher has predicted the pool, label its images by hand: choose a card's class, or mark "
               "a card and press the class's number key (L opens the class list, + gives it a new class). "
               + ("The cards are the app's choice: the most typical image of each group of similar images that "
                  "has no label yet." if embedded else
                  "The cards are a random sample; embed the images (Train page) and the app chooses them instead."))
    labeled_so_far(st.empty())
else:
    st.session_state.pop("_rv_labeled", None)  # pseudo-labels now: nothing counts labels on this page
if embedded:
    continuous_ui()
state_from_url()
view = view_ui(predicted)
if view == "pseudo-labels" and not predicted:
    # A random sample of the pool (the first ids of a folder are often one class).
    body(TO_LABEL, {"classes": None, "statuses": ["pending"], "conf_min": None, "conf_max": None,
                    "order": "random", "size": int(st.session_state["rv_size"])})
else:
    body(view, filters_ui() if view == "pseudo-labels" else None)
