"""The Review grid's keys and the Map's selection in a real browser (Debian's chromium, 1280 px),
as tests/test_browser.py drives them.

The grid: after a key, no focus frame is drawn over the page (Streamlit's ring on its main
container), yet the keys still act; after an undo (key U or the Undo button) the mark is on the
card given back. The map, past figures.SELECT_LAYER_ABOVE points: a lasso drawn on the layer
selects the points inside it, the selection's captions are whole words on one line, and no
image toolbar covers the line above them.
"""
from __future__ import annotations

import math
import time

from pathlib import Path

import pytest

from dashboard import figures
from stcore import api
from test_browser import CHROMIUM, cut_text, page, serve, settle, shots_dir, status_of, wait_until  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.needs_fmnist,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM}")]

# Streamlit draws its focus ring on the main container as an inset shadow on main::before, shown
# on :focus-visible (after a key, once a click on the page has focused it).
MAIN_FRAME_JS = """() => { const m = document.querySelector('main[data-testid=stMain]');
  return {focused: document.activeElement === m, visible: m.matches(':focus-visible'),
          shadow: getComputedStyle(m, '::before').boxShadow}; }"""


def lasso(pg, cx: float, cy: float, r: float, moves: int = 40) -> None:
    """A hand-drawn loop of radius r around (cx, cy), in page pixels."""
    pg.mouse.move(cx + r, cy)
    pg.mouse.down()
    for k in range(1, moves + 1):
        pg.mouse.move(cx + r * math.cos(2 * math.pi * k / moves), cy + r * math.sin(2 * math.pi * k / moves))
    pg.mouse.up()


def marked(pg) -> int:
    return int(pg.locator(".card.focus").first.get_attribute("data-id"))


def test_grid_keys_draw_no_page_frame_and_undo_marks_the_card_given_back(page, trained_project, tmp_path):
    project, pg = trained_project, page
    with serve(project, tmp_path) as url:
        pg.goto(f"{url}/review")
        pg.locator(".card.focus").first.wait_for()
        settle(pg)
        first = marked(pg)
        pg.get_by_role("heading", name="Review").click()  # a click on the page, as a user's
        pg.keyboard.press("ArrowRight")
        pg.keyboard.press("ArrowRight")  # the third card: not where the mark would go anyway
        item = marked(pg)
        assert item != first
        pg.keyboard.press("a")
        wait_until(lambda: status_of(project, item)[0] == "accepted", 30, "key A to reach the store")
        pg.get_by_text(f"Accepted #{item}").wait_for()
        assert marked(pg) != item
        frame = pg.evaluate(MAIN_FRAME_JS)
        assert frame["focused"] and frame["visible"], frame  # the case the frame was drawn in
        assert frame["shadow"] == "none", frame
        assert not cut_text(pg), cut_text(pg)
        pg.screenshot(path=str(shots_dir(tmp_path) / "review-after-key.png"))

        pg.keyboard.press("u")
        wait_until(lambda: status_of(project, item)[0] == "pending", 30, "key U to reach the store")
        wait_until(lambda: marked(pg) == item, 20, lambda: f"the mark on #{item} after U (it is on #{marked(pg)})")

        # the toolbar's Undo, after a decision from the card's own button
        pg.locator(f".card[data-id='{item}'] button.reject").click()
        wait_until(lambda: status_of(project, item)[0] == "rejected", 30, "the reject to reach the store")
        pg.get_by_text(f"Rejected #{item}").wait_for()
        assert marked(pg) != item
        pg.locator(".bar button", has_text="Undo").click()
        wait_until(lambda: status_of(project, item)[0] == "pending", 30, "the Undo button to reach the store")
        wait_until(lambda: marked(pg) == item, 20, lambda: f"the mark on #{item} after Undo (it is on #{marked(pg)})")
        pg.keyboard.press("x")  # the keys still act on the marked card
        wait_until(lambda: status_of(project, item)[0] == "rejected", 30, "key X on the card given back")


@pytest.fixture
def larger_project(tmp_path):
    """6,000 Fashion-MNIST images (100 labeled) with a two-step teacher's pseudo-labels and a PCA
    map: more points than figures.SELECT_LAYER_ABOVE."""
    n = 6000
    assert n > figures.SELECT_LAYER_ABOVE
    p = api.create_project(tmp_path / "larger", dataset="fashion-mnist", labels_per_class=10, seed=0, limit=n,
                           download=False)
    api.start_training(p, {"role": "teacher", "steps": 2, "eval_every": 2}, detach=False)
    api.start_pseudo_label(p, detach=False)
    api.start_embedding(p, "pixels", detach=False)
    api.start_map(p, method="pca", detach=False)
    return p


def test_a_lasso_on_a_large_map_selects_and_its_panel_reads_whole(page, larger_project, tmp_path):
    project, pg = larger_project, page
    with serve(project, tmp_path) as url:
        pg.goto(f"{url}/map")
        drag = pg.locator(".st-key-mp_chart .nsewdrag")
        drag.last.wait_for()
        settle(pg)
        assert drag.count() == 2  # the map and the empty layer over it
        box = drag.last.bounding_box()
        cx, cy, r = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, min(box["width"], box["height"]) / 4
        t0 = time.perf_counter()
        lasso(pg, cx, cy, r)
        pg.get_by_text(" selected").first.wait_for(timeout=60_000)
        print(f"lasso of 40 moves on 6,000 points: panel after {time.perf_counter() - t0:.1f} s")
        settle(pg)
        n = int(pg.get_by_text(" selected").first.inner_text().split()[0].replace(",", ""))
        assert 0 < n < 6000

        panel = pg.locator(".st-key-mp_selection")
        panel.scroll_into_view_if_needed()
        pg.locator(".mp-thumbs figure").last.hover()  # where an image's toolbar used to show
        captions = pg.locator(".mp-thumbs figcaption").evaluate_all("""els => els.map(e => {
            const r = document.createRange(); r.selectNodeContents(e);
            return {text: e.innerText, lines: new Set([...r.getClientRects()].map(b => Math.round(b.top))).size,
                    fits: e.scrollWidth <= e.clientWidth}; })""")
        assert captions and all(c["lines"] == 1 and c["fits"] for c in captions), captions
        # nothing covers the end of the panel's first line ('... from the labeled set')
        assert pg.evaluate("""() => {
            const p = document.querySelector('.st-key-mp_selection [data-testid=stMarkdownContainer] p');
            const r = document.createRange(); r.selectNodeContents(p);
            const end = [...r.getClientRects()].pop();
            return p.contains(document.elementFromPoint(end.right - 3, (end.top + end.bottom) / 2)); }""")
        assert pg.locator(".st-key-mp_selection [data-testid=stElementToolbar]").count() == 0
        assert not cut_text(pg), cut_text(pg)
        panel.screenshot(path=str(shots_dir(tmp_path) / "map-selection.png"))

        # a double-click clears the selection and its outline; a new lasso selects again
        pg.mouse.dblclick(box["x"] + 20, box["y"] + 20)
        pg.locator(".st-key-mp_selection").wait_for(state="detached", timeout=30_000)
        assert pg.evaluate("() => document.querySelector('.st-key-mp_chart .js-plotly-plot').layout.selections.length") == 0
        lasso(pg, cx, cy, r / 2)
        pg.get_by_text(" selected").first.wait_for(timeout=60_000)
        settle(pg)
        n = int(pg.get_by_text(" selected").first.inner_text().split()[0].replace(",", ""))
        pg.locator(".st-key-mp_review button").first.click()
        pg.get_by_role("heading", name="Review").wait_for()
        assert 0 < len(api.selection(project)) == n
