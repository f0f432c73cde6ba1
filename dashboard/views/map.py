"""Map: the embedding laid out in 2-D (UMAP, or PCA for a very large pool), coloured by class,
status, confidence or right/wrong. A box or lasso selection goes to the Review grid, or is
accepted or corrected as a whole after a confirmation.

The layout is computed once per embedding by a worker (`stcore map`); this page only reads it.
"""
from __future__ import annotations

import html

import streamlit as st

from dashboard import common, figures
from stcore import api
from stcore.errors import message

project = common.current_project()
classes = project.classes
SHOWN = 9  # thumbnails of the selection shown here: one row at 1280 px


def start_map(method: str = "auto") -> None:
    """Button callback (the layout runs on the CPU: it holds no GPU)."""
    try:
        common.check("runs")
        run_id = api.start_map(project, method=method, device="cpu")
    except common.USER_ERRORS as e:
        st.session_state["mp_flash"] = "error: " + message(e)
        return
    st.toast(f"Started {run_id}: laying out the embedding")


@st.fragment(run_every=2)
def wait_for_map(run_id: str) -> None:
    run = api.run(project, run_id)
    if run["state"] in api.ACTIVE_STATES:
        done, total = run["step"], max(run["total"], 1)
        st.progress(min(done / total, 1.0), text=f"{run_id}: finding each image's neighbours, "
                                                 f"{done:,}/{total:,}, then the layout")
    else:
        st.rerun(scope="app")


def review_selection(ids: list[int]) -> None:
    api.set_selection(project, ids)
    st.session_state["rv_view"] = "map selection"
    st.session_state["rv_page"] = 1


def decide_selection(ids: list[int], action: str, label: int | None) -> None:
    """Confirmed bulk decision on the selection's pool items (the labeled set is left as it is)."""
    try:
        common.check("bulk")
        who = common.reviewer()
        n = (api.review(project, api.still_pending(project, ids), "accept", reviewer=who) if action == "accept"
             else api.set_label(project, ids, label, reviewer=who))
    except common.USER_ERRORS as e:
        st.session_state["mp_flash"] = "error: " + message(e)
        return
    verb = api.ACTIONS[action].verb + (f" to {classes[label]}" if api.ACTIONS[action].needs_class else "")
    st.session_state["mp_flash"] = f"{verb}: {n:,} item{'s' * (n != 1)}. Undo on the Review page reverts it."


THUMB = 72  # px: a thumbnail of the selection, and the narrowest its caption may be
THUMBS_CSS = f"""<style>
.mp-thumbs {{ display: flex; flex-wrap: wrap; gap: 0.5rem 0.75rem; margin: 0.25rem 0 0.5rem; }}
/* A card is as wide as its caption: a class name is never broken inside a word. */
.mp-thumbs figure {{ margin: 0; width: max-content; max-width: 100%; min-width: {THUMB}px;
  display: flex; flex-direction: column; align-items: center; gap: 0.15rem; }}
.mp-thumbs img {{ width: {THUMB}px; height: {THUMB}px; object-fit: contain; image-rendering: pixelated; }}
.mp-thumbs figcaption {{ font-size: 0.8rem; line-height: 1.2; text-align: center; opacity: 0.75;
  overflow-wrap: normal; word-break: normal; }}
</style>"""


def thumbs_html(rows: list[dict], uris: list[str]) -> str:
    """The selection's first items as a row of thumbnails, each captioned with its class (the
    label, else the teacher's); the full name and the id show on hover. Drawn as HTML, not as
    st.image, so that no image toolbar sits over the line above it."""
    cards = []
    for r, uri in zip(rows, uris):
        c = r["label"] if r["label"] is not None else r["pred"]
        name = html.escape(classes[c] if c is not None else "not predicted")
        cards.append(f'<figure title="{name} · #{int(r["id"])}"><img src="{uri}" alt="#{int(r["id"])}">'
                     f"<figcaption>{name}</figcaption></figure>")
    return THUMBS_CSS + '<div class="mp-thumbs">' + "".join(cards) + "</div>"


def selection_panel(points: dict, ids: list[int]) -> None:
    """What the box or lasso selected: thumbnails, Review, and accept/correct all after a confirmation."""
    at = {i: k for k, i in enumerate(points["id"])}
    pool = [i for i in ids if points["split"][at[i]] == "pool"]
    pending = [i for i in pool if points["status"][at[i]] == "pending" and points["pred"][at[i]] is not None]
    with st.container(border=True, key="mp_selection"):
        st.markdown(f"**{len(ids):,} selected** · {len(pool):,} from the pool ({len(pending):,} pending), "
                    f"{len(ids) - len(pool):,} from the labeled set")
        rows = api.items(project, ids[:SHOWN])
        st.html(thumbs_html(rows, common.item_uris(project, rows, THUMB)))
        if st.button(f"Review these {len(ids):,} in the grid", key="mp_review", type="primary",
                     icon=":material/fact_check:", on_click=review_selection, args=(ids,)):
            st.switch_page(common.PAGES["review"])
        common.decide_all_ui(classes, pool, pending, key="mp", on_confirm=decide_selection,
                             note="Items of the labeled set are left as they are. ",
                             impact=lambda ids: api.ids_accept_impact(project, ids))

st.title("Map")
try:
    points = api.map_points(project)
except common.USER_ERRORS as e:  # a layout being rewritten, or a broken one: say how to make it again
    common.show_error(e)
    points = None
job = common.active_job(project, "map")
if job:
    wait_for_map(job["id"])
if points is None:
    st.info("The map lays every labeled and pool image out in 2-D, so that neighbours in the embedding sit "
            "together: a cluster of one colour is a class, a stray colour inside it a likely error. It is "
            "computed once per embedding (UMAP; about a minute at 60,000 images on a CPU).")
    if not job:
        st.button("Compute the map", key="mp_compute", type="primary", icon=":material/scatter_plot:",
                  on_click=start_map)
    if (flashed := st.session_state.pop("mp_flash", None)) and flashed.startswith("error: "):
        st.error(flashed.removeprefix("error: "))
    st.stop()
caption = (f"{points['method'].upper()} of the {points['embedding']} embedding · {points['total']:,} images"
           + (f" · showing a random sample of {points['shown']:,}" if points["shown"] < points["total"] else "")
           + " · drag to select (lasso; the box tool is in the chart's toolbar), double-click to clear"
           + (" · no hover labels at this size: a selection shows its images below"
              if points["shown"] > figures.SELECT_LAYER_ABOVE else ""))
if points["stale"]:
    st.warning("The project's embedding or items changed since this map was computed.")
    if not job:
        st.button("Compute the map again", key="mp_recompute", on_click=start_map)
options = [c for c in figures.MAP_COLOR_BY if c != "right or wrong" or any(t is not None for t in points["truth"])]
color_by = st.segmented_control("Colour by", options, key="mp_color", default=options[0], persist_state="session")
fig = figures.embedding_map(points, classes, color_by or options[0])
event = st.plotly_chart(fig, key="mp_chart", on_select="rerun", selection_mode=("lasso", "box", "points"))
st.caption(caption)
flashed = st.session_state.pop("mp_flash", None)
if flashed:
    (st.error if flashed.startswith("error: ") else st.success)(flashed.removeprefix("error: "))
ids = figures.map_selection(points, event.selection if event else None)
if ids:
    selection_panel(points, ids)
else:
    st.session_state.pop("mp_confirm", None)  # a new selection asks again
