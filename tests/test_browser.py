"""The dashboard in a real browser: `streamlit run` driven by Playwright with Debian's chromium,
at 1280 px, the narrowest width we support.

Open every page, then accept an item on Review as soon as the grid appears, accept five cards
faster than the server answers, correct another, press A twice and 3, confirm a bulk action
while a message is shown, start a short student run on Train,
watch its chart gain points, reload and find the decisions and the chart still there, check
that no label is cut short, and save a screenshot of each page (into $STCORE_SCREENSHOTS if
set, else the test's tmp dir).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from stcore import api

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("STCORE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.browser, pytest.mark.needs_fmnist,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM}")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout: float, what: str, interval: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what() if callable(what) else what}")


@contextmanager
def serve(project, tmp_path):
    """The dashboard on project, as `stcore dashboard` starts it; yields its URL."""
    port = free_port()
    env = {**os.environ, "STCORE_HOME": str(tmp_path / "home"), "STCORE_DATA_ROOTS": str(tmp_path),
           "STCORE_THREADS": "1"}
    env.pop("STCORE_PASSWORD", None)
    log = open(tmp_path / "streamlit.log", "wb")
    from stcore.launch import command
    proc = subprocess.Popen(command(project.path, port=port, address="127.0.0.1", headless=True),
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)

    def healthy():
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).status == 200
        except OSError:
            assert proc.poll() is None, (tmp_path / "streamlit.log").read_text()
            return False
    try:
        wait_until(healthy, 60, "streamlit to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        for r in api.runs(project):
            if r["state"] in ("queued", "running"):
                api.cancel(project, r["id"])
        wait_until(lambda: all(r["state"] not in ("queued", "running") for r in api.runs(project)),
                   90, "the test's runs to stop")
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.fixture
def server(trained_project, tmp_path):
    with serve(trained_project, tmp_path) as url:
        yield url, trained_project


@pytest.fixture
def page(tmp_path):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 1000})
        pg.set_default_timeout(60_000)  # the test machine may be busy
        yield pg
        browser.close()


def shots_dir(tmp_path: Path) -> Path:
    d = Path(os.environ.get("STCORE_SCREENSHOTS") or tmp_path / "shots")
    d.mkdir(parents=True, exist_ok=True)
    return d


def settle(pg) -> None:
    """Wait until Streamlit has finished the current script run."""
    pg.wait_for_timeout(500)
    # The status widget (running man, 'Stop') is shown only while a script run is in progress.
    pg.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
    pg.wait_for_timeout(300)


# Text the page cuts short: a visible element holding text whose content is wider than its box
# (and is clipped, or ends in an ellipsis), or a row of pills or tags that overflows its column.
# The Review grid draws in a shadow root of its own: its elements are checked too.
CUT_TEXT_JS = """() => {
  const all = [];
  const walk = (root) => root.querySelectorAll('*').forEach(e => { all.push(e); if (e.shadowRoot) walk(e.shadowRoot); });
  walk(document.querySelector('[data-testid=stMain]'));
  return all.filter(e => {
    // skip hidden elements, screen-reader-only labels (1 px wide) and material icons (their names are ligatures)
    if (!e.getClientRects().length || e.clientWidth <= 2 || e.scrollWidth <= e.clientWidth + 1 || e.closest('[data-testid=stIconMaterial]')) return false;
    const st = getComputedStyle(e);
    const clips = st.textOverflow === 'ellipsis' || ['hidden', 'clip'].includes(st.overflowX);
    const text = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    return clips && (text || e.matches('[data-testid=stButtonGroup] *, [role=combobox]'));
  }).map(e => (e.innerText || e.value || e.className).slice(0, 60)); }"""


def cut_text(pg) -> list[str]:
    return pg.evaluate(CUT_TEXT_JS)


def status_of(project, item):
    return project.store.engine.db.execute("SELECT p.status, l.class_id AS label FROM pool p LEFT JOIN labels l ON l.split='pool' "
                                         "AND l.item_id=p.id WHERE p.id=?", (item,)).fetchone()


def card(pg, item: int, what: str = ""):
    """A card of the Review grid (it draws in a shadow root, which Playwright's CSS reaches)."""
    return pg.locator(f".card[data-id='{item}'] {what}".strip()).first


def review_in_the_browser(pg, url, project, shots):
    # Every page first, then Review: a click as soon as the grid appears must count.
    # Through the sidebar, as a user goes: a page left before its run ended must not break the next
    # one (a half-imported pandas once did, on Evaluate after Train).
    for name in ("map", "train", "evaluate", "export"):
        pg.get_by_role("link", name=name.title()).click()
        pg.get_by_role("heading", name=name.title()).wait_for()
        if name == "evaluate":
            settle(pg)
            assert pg.locator("[data-testid=stException]").count() == 0, pg.locator("[data-testid=stException]").first.inner_text()
    pg.get_by_role("link", name="Review").click()
    first = api.review_page(project, statuses=["pending"], limit=8)  # the page's default order
    a, c = first[0]["id"], first[1]["id"]
    accept = pg.locator(".bar button.primary")  # the toolbar's Accept (key A): the marked card, the first
    card(pg, a).wait_for()
    accept.click()
    wait_until(lambda: status_of(project, a)[0] == "accepted", 20, "the accept to reach the store")
    card(pg, a).wait_for(state="detached")  # decided: it left the pending view
    # Five cards accepted faster than the server answers: every click reaches the store.
    burst = [r["id"] for r in first[2:7]]
    for item in burst:
        card(pg, item, "button.accept").click()
    wait_until(lambda: all(status_of(project, i)[0] == "accepted" for i in burst), 30,
               lambda: f"all five quick accepts to reach the store ({[status_of(project, i)[0] for i in burst]})")
    coat = project.classes.index("Coat")
    card(pg, c, "select.correct").select_option(label="Coat")
    wait_until(lambda: tuple(status_of(project, c)) == ("corrected", coat), 20, "the correction to reach the store")
    pg.get_by_text(f"Corrected #{c} as Coat").wait_for()
    settle(pg)
    # With a message on screen, the bulk action's confirmation still shows (its panel stays open).
    pg.get_by_text("Bulk actions").click()
    settle(pg)
    pg.locator(".st-key-rv_thr input").fill("0.10")  # the small test teacher is seldom sure
    pg.locator(".st-key-rv_thr input").press("Tab")
    settle(pg)
    # Two presses of A, the second before the first's answer is drawn: two items accepted.
    before = api.counts(project)["accepted"]
    pg.get_by_role("heading", name="Review").click()  # keys act when no text field has the focus
    marked = int(pg.locator(".card.focus").first.get_attribute("data-id"))
    pg.keyboard.press("a")
    pg.wait_for_timeout(50)
    pg.keyboard.press("a")
    wait_until(lambda: api.counts(project)["accepted"] == before + 2, 30,
               lambda: f"both key presses to reach the store ({api.counts(project)['accepted'] - before} did)")
    assert status_of(project, marked)[0] == "accepted"
    pg.get_by_text("Accepted #").first.wait_for()
    # A number key corrects the marked card to its class: 3, the third.
    settle(pg)
    marked = int(pg.locator(".card.focus").first.get_attribute("data-id"))
    pg.keyboard.press("3")
    wait_until(lambda: tuple(status_of(project, marked)) == ("corrected", 2), 30, "key 3 to correct the marked card")
    pg.get_by_text(f"Corrected #{marked} as {project.classes[2]}").wait_for()
    settle(pg)
    pg.locator(".st-key-rv_bulk button").first.click()
    pg.get_by_text("Undo reverts it as one action").wait_for(timeout=20_000)
    pg.locator(".st-key-rv_bulk_no button").first.click()
    settle(pg)
    assert not cut_text(pg), cut_text(pg)
    pg.screenshot(path=str(shots / "review.png"), full_page=True)
    for width in (1600, 1920):  # and wider: labels still whole
        pg.set_viewport_size({"width": width, "height": 1000})
        settle(pg)
        assert not cut_text(pg), (width, cut_text(pg))
    pg.set_viewport_size({"width": 1280, "height": 1000})
    return a, c


def test_review_train_reload_in_a_real_browser(server, page, tmp_path):
    url, project = server
    shots = shots_dir(tmp_path)
    pg = page

    pg.goto(url)
    pg.get_by_role("heading", name="Project").wait_for()
    settle(pg)
    assert not cut_text(pg), cut_text(pg)
    pg.screenshot(path=str(shots / "project.png"), full_page=True)
    a, c = review_in_the_browser(pg, url, project, shots)

    # ---- train: a short student, started from the page
    pg.goto(f"{url}/train")
    pg.get_by_role("tab", name="Student").wait_for()
    settle(pg)
    pg.get_by_role("tab", name="Student").click()
    settle(pg)
    pg.locator(".st-key-tr_s_steps input").fill("150")  # long enough for the chart to be seen growing
    pg.locator(".st-key-tr_s_bs input").fill("16")
    pg.locator(".st-key-tr_s_bs input").press("Tab")
    settle(pg)
    pg.get_by_role("button", name="Start student").click()
    run = wait_until(lambda: next((r for r in project.store.runs.list("student")), None), 90, "a student run")
    assert run["total"] == 150

    # The live view first shows the teacher (the newest run), then the student; the student's
    # chart caption appears with its first training steps (labelprop builds its graph first).
    pg.get_by_text(f"{run['id']} · student").first.wait_for(timeout=60_000)
    assert pg.get_by_role("tab", name="Student").get_attribute("aria-selected") == "true"

    def loss_points() -> int:
        caption = pg.get_by_text("loss points")
        return int(caption.first.inner_text().split()[0]) if caption.count() else 0
    n0 = wait_until(loss_points, 180, "the student's first loss points", 1.0)
    n1 = wait_until(lambda: loss_points() > n0 and loss_points(), 240, "the live chart to gain points", 1.0)
    assert pg.locator(".st-key-tr_loss .scatterlayer .point").count() >= n1 > n0
    assert not cut_text(pg), cut_text(pg)
    pg.screenshot(path=str(shots / "train.png"), full_page=True)

    # ---- reload: decisions and the chart are still there
    pg.reload()
    pg.get_by_text("loss points").first.wait_for(timeout=60_000)
    assert loss_points() >= n1
    assert pg.get_by_text(run["id"]).first.is_visible()
    pg.goto(f"{url}/review")
    settle(pg)
    pg.get_by_text("Status").first.wait_for()
    pg.locator(".card").first.wait_for()
    assert pg.locator(f".card[data-id='{a}']").count() == 0  # decided items left the pending view
    assert pg.locator(f".card[data-id='{c}']").count() == 0
    assert api.counts(project)["accepted"] == 8 and api.counts(project)["corrected"] == 2  # the picker and key 3

    # ---- the other pages
    for name in ("evaluate", "export"):
        pg.goto(f"{url}/{name}")
        pg.get_by_role("heading", name=name.title()).wait_for()
        settle(pg)
        assert pg.locator("[data-testid=stException]").count() == 0
        assert not cut_text(pg), (name, cut_text(pg))
        pg.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def test_map_similar_and_likely_wrong_labels_in_a_real_browser(server, page, tmp_path):
    """A lasso on the map reaches the Review grid; Similar on a card shows its neighbours; the
    likely-wrong list fixes a label in one click; the view survives a reload (it is in the URL)."""
    from benchmarks.label_issues import plant
    url, project = server
    shots = shots_dir(tmp_path)
    pg = page
    api.start_embedding(project, "pixels", detach=False)
    api.start_map(project, method="pca", detach=False)
    plant(project, 100, 10, seed=0)
    api.start_label_issues(project, detach=False)

    # ---- the map: a lasso around the middle of the plot
    pg.goto(f"{url}/map")
    plot = pg.locator(".st-key-mp_chart .nsewdrag").first
    plot.wait_for()
    settle(pg)
    box = plot.bounding_box()
    cx, cy, r = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, min(box["width"], box["height"]) / 3
    pg.mouse.move(cx - r, cy - r)
    pg.mouse.down()
    for x, y in ((cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r), (cx - r, cy - r + 2)):
        pg.mouse.move(x, y, steps=8)
    pg.mouse.up()
    pg.get_by_text(" selected").first.wait_for(timeout=30_000)
    settle(pg)
    assert not cut_text(pg), cut_text(pg)
    pg.screenshot(path=str(shots / "map.png"), full_page=True)
    n = int(pg.get_by_text(" selected").first.inner_text().split()[0].replace(",", ""))
    assert 0 < n < api.counts(project)["labeled"] + api.counts(project)["pool"]
    pg.locator(".st-key-mp_review button").first.click()
    pg.get_by_role("heading", name="Review").wait_for()
    settle(pg)
    chosen = set(api.selection(project))
    assert len(chosen) == n
    pg.locator(".card").first.wait_for()
    cards = pg.locator(".card").evaluate_all("cards => cards.map(c => +c.dataset.id)")
    assert cards and set(cards) <= chosen
    assert "view=map+selection" in pg.url or "view=map%20selection" in pg.url

    # ---- Similar on the first card
    first = cards[0]
    card(pg, first, "button.similar").click()
    pg.get_by_text("the image searched from").first.wait_for(timeout=30_000)
    settle(pg)
    assert pg.get_by_text("similarity 0.").count() >= 10
    assert f"similar={first}" in pg.url

    # ---- likely wrong labels: one click fixes the first
    pg.get_by_role("radio", name="likely wrong").or_(pg.get_by_role("button", name="likely wrong")).first.click()
    issue = api.label_issues(project)["issues"][0]
    fix = card(pg, issue["id"], "button.fix")
    fix.wait_for(timeout=30_000)
    settle(pg)
    assert not cut_text(pg), cut_text(pg)
    pg.screenshot(path=str(shots / "review-likely-wrong.png"), full_page=True)
    fix.click()
    wait_until(lambda: project.classes[{i: c for i, _, c, _ in project.store.items.human_labels()}[issue["id"]]]
               == issue["suggested"], 20, "the fix to reach the store")
    pg.reload()
    pg.get_by_text("fixed since the check").first.wait_for(timeout=30_000)  # the view came back from the URL


def test_a_decision_not_yet_acknowledged_is_sent_again_after_a_reload(server, page):
    """The grid keeps the decisions the server has not acknowledged in the tab's sessionStorage:
    a reload sends them again (a decision applied twice changes nothing)."""
    url, project = server
    pg = page
    pg.goto(f"{url}/review")
    pg.locator(".card").first.wait_for()
    item = api.review_page(project, statuses=["pending"], limit=30)[-1]["id"]  # not on the first page
    unacked = {"project": project.meta["project_id"],  # as an earlier grid of this tab kept it
               "ops": [{"kind": "decide", "ids": [item], "action": "reject", "label": None, "expect": None,
                        "seq": 7, "at": int(time.time() * 1000), "instance": "an-earlier-grid"}]}
    pg.evaluate("([k, v]) => sessionStorage.setItem(k, v)", ["stcore-review-unacked", json.dumps(unacked)])
    pg.reload()
    wait_until(lambda: status_of(project, item)[0] == "rejected", 30, "the kept decision to reach the store")
    pg.get_by_text(f"Rejected #{item}").wait_for()
    wait_until(lambda: pg.evaluate("() => sessionStorage.getItem('stcore-review-unacked')") is None, 10,
               "the acknowledged decision to leave sessionStorage")
    assert len(api.history(project)) == 1


def test_past_ten_classes_key_l_opens_a_class_picker(page, many_classes_project, tmp_path):
    project, pg = many_classes_project, page
    with serve(project, tmp_path) as url:
        pg.goto(f"{url}/review")
        pg.locator(".card.focus").first.wait_for()
        assert pg.locator(".keys button.class").count() == 10  # number keys for the first ten of twelve
        assert "1-9, 0 correct to one of the first 10 classes" in pg.locator(".legend").inner_text().lower()
        marked = int(pg.locator(".card.focus").first.get_attribute("data-id"))
        pg.get_by_role("heading", name="Review").click()
        pg.keyboard.press("l")
        find = pg.locator(".picker input.find")
        find.wait_for()
        find.fill("class 11")
        find.press("Enter")
        wait_until(lambda: tuple(status_of(project, marked)) == ("corrected", 11), 30, "the picked class")
        pg.get_by_text(f"Corrected #{marked} as class 11").wait_for()
        assert not cut_text(pg), cut_text(pg)


def test_a_project_with_no_labels_is_labeled_from_review_in_a_real_browser(page, zero_label_project, tmp_path):
    """Before any label or pseudo-label, Review shows a random sample of the pool: a number key
    labels the marked card (twice quickly: two cards), the card's class list another."""
    project, pg = zero_label_project, page
    shots = shots_dir(tmp_path)
    with serve(project, tmp_path) as url:
        pg.goto(url)
        pg.get_by_role("heading", name="Classes").wait_for()
        settle(pg)
        pg.locator("[data-testid=stDataFrame]").first.wait_for()  # the classes table
        pg.wait_for_timeout(1000)  # its grid is drawn after the page's run
        assert pg.get_by_text("label some images").count() and not cut_text(pg), cut_text(pg)
        pg.screenshot(path=str(shots / "project-no-labels.png"), full_page=True)
        pg.goto(f"{url}/review")
        pg.locator(".card.focus").first.wait_for()
        settle(pg)
        sample = [r["id"] for r in api.review_page(project, statuses=["pending"], order="random", limit=4)]
        assert int(pg.locator(".card").first.get_attribute("data-id")) == sample[0]
        assert pg.locator(".card button.accept").first.is_disabled()  # nothing predicted to accept
        pg.get_by_role("heading", name="Review").click()  # keys act when no text field has the focus
        assert int(pg.locator(".card.focus").first.get_attribute("data-id")) == sample[0]
        pg.keyboard.press("2")
        pg.wait_for_timeout(50)
        pg.keyboard.press("2")

        def labels():
            return {r["item_id"]: (r["class"], r["source"]) for r in api.labels(project, "pool")}
        wait_until(lambda: len(labels()) == 2, 30, lambda: f"both key presses to reach the store ({labels()})")
        assert labels() == {sample[0]: ("Trouser", "reviewed"), sample[1]: ("Trouser", "reviewed")}
        card(pg, sample[2], "select.correct").select_option(label="Bag")
        wait_until(lambda: labels().get(sample[2]) == ("Bag", "reviewed"), 20, "the class list's label")
        pg.get_by_text(f"Labeled #{sample[2]} as Bag").wait_for()
        settle(pg)
        assert pg.locator(f".card[data-id='{sample[0]}']").count() == 0  # labeled: it left the list
        assert not cut_text(pg), cut_text(pg)
        pg.screenshot(path=str(shots / "review-no-labels.png"), full_page=True)


def test_a_folder_with_no_labels_goes_to_a_trained_teacher_in_a_real_browser(page, tmp_path):
    """A folder of unlabeled Fashion-MNIST images and classes.txt: number keys label the marked
    cards, + gives one a class the project lacked, and Start teacher on Train trains on them."""
    from PIL import Image

    from stcore.sources import _read_idx
    from conftest import FMNIST
    images = _read_idx(FMNIST / "train-images-idx3-ubyte.gz")[:400]
    truth = _read_idx(FMNIST / "train-labels-idx1-ubyte.gz")[:400]
    root = tmp_path / "photos"
    names = {1: "Trouser", 8: "Bag", 7: "Sneaker"}
    kept = [i for i in range(400) if truth[i] in names][:60]
    for i in kept:
        (root / "unlabeled").mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(root / "unlabeled" / f"img{i:03d}.png")
    (root / "classes.txt").write_text("Trouser\nBag\n")
    project = api.create_project(tmp_path / "proj", dataset="folder", data_root=str(root))
    assert project.classes == ["Trouser", "Bag"] and api.counts(project)["labeled"] == 0
    source = dict(project.store.engine.all("SELECT id, source FROM items WHERE split = 'pool'"))

    def true_class(item: int) -> str:
        return names[int(truth[int(source[item].split("img")[1][:3])])]

    def labels():
        return {r["item_id"]: r["class"] for r in api.labels(project, "pool")}
    pg, shots = page, shots_dir(tmp_path)
    with serve(project, tmp_path) as url:
        pg.goto(f"{url}/review")
        pg.locator(".card.focus").first.wait_for()
        settle(pg)
        pg.get_by_role("heading", name="Review").click()  # keys act when no text field has the focus
        given: dict[int, str] = {}
        while len(given) < 12:
            marked = int(pg.locator(".card.focus").first.get_attribute("data-id"))
            cls = true_class(marked)
            if cls == "Sneaker":
                if "Sneaker" in project.classes:
                    pg.keyboard.press("3")
                else:  # + opens the class list for a new name; Enter adds it and labels the card
                    pg.keyboard.press("+")
                    find = pg.locator(".picker input.find")
                    find.wait_for()
                    find.fill("Sneaker")
                    pg.locator(".picker button.new").wait_for()
                    find.press("Enter")
                    wait_until(lambda: "Sneaker" in project.classes, 20, "the new class")
                    pg.get_by_text(f"Labeled #{marked} as Sneaker (a new class: 3 in all)").wait_for()
                    pg.locator(".keys button.class").nth(2).wait_for()  # key 3 is drawn for it
                    pg.get_by_role("heading", name="Review").click()
            else:
                pg.keyboard.press("1" if cls == "Trouser" else "2")
            given[marked] = cls
            wait_until(lambda: labels().get(marked) == cls, 20, lambda: f"#{marked} labeled {cls} ({labels()})")
            wait_until(lambda: pg.locator(f".card.focus[data-id='{marked}']").count() == 0, 10, "the mark to move on")
        assert labels() == given and project.classes == ["Trouser", "Bag", "Sneaker"]  # + ran, once
        settle(pg)
        assert not cut_text(pg), cut_text(pg)
        pg.screenshot(path=str(shots / "review-folder-zero-labels.png"), full_page=True)

        # ---- Train: a short teacher on those labels, from the page
        pg.goto(f"{url}/train")
        pg.get_by_role("tab", name="Teacher").wait_for()
        settle(pg)
        pg.get_by_role("tab", name="Teacher").click()
        settle(pg)
        pg.locator(".st-key-tr_t_steps input").fill("30")
        pg.locator(".st-key-tr_t_steps input").press("Tab")
        settle(pg)
        pg.get_by_role("button", name="Start teacher").click()
        run = wait_until(lambda: next(iter(project.store.runs.list("teacher")), None), 90, "a teacher run")
        wait_until(lambda: api.run(project, run["id"])["state"] in ("finished", "failed"), 240, "the teacher to end")
        assert api.run(project, run["id"])["state"] == "finished", api.run(project, run["id"])
        assert api.teacher(project)["id"] == run["id"] and len(api.run(project, run["id"])["class_ids"]) == len(
            project.classes)
        pg.get_by_text(f"{run['id']}").first.wait_for(timeout=30_000)
        pg.get_by_text("No test set, so no test accuracy").wait_for()  # not a flat line at 0
        settle(pg)
        assert not cut_text(pg), cut_text(pg)
        pg.screenshot(path=str(shots / "train-folder-teacher.png"), full_page=True)

        # ---- Evaluate: no test accuracy of 0% and no confusion matrix of nothing, but the loss curve
        pg.goto(f"{url}/evaluate")
        pg.get_by_text("No test set, so no test accuracy").wait_for()
        pg.get_by_role("heading", name="Learning curves").wait_for()
        settle(pg)
        assert pg.get_by_text("Confusion matrix").count() == 0 and pg.get_by_text("test accuracy0").count() == 0
        assert pg.locator("[data-testid=stPlotlyChart]").count() == 1 and not cut_text(pg), cut_text(pg)
        pg.screenshot(path=str(shots / "evaluate-folder-teacher.png"), full_page=True)


def test_signing_in_survives_a_reload_and_signing_out_does_not(page, trained_project, tmp_path):
    """A project with accounts: the sign-in form, a wrong password, then the right one; a reload
    keeps the session (a cookie with its token), a decision is stored with the person's name,
    and after Sign out a reload asks again."""
    project, pg = trained_project, page
    api.add_user(project, "ann", "reviewer", "correct horse")
    with serve(project, tmp_path) as url:
        pg.goto(f"{url}/review")
        pg.get_by_text(f"Sign in to {project.path.name}").wait_for()
        assert pg.locator(".card").count() == 0
        pg.get_by_role("textbox", name="Name").fill("ann")
        pg.get_by_role("textbox", name="Password").fill("wrong horse")
        pg.get_by_role("button", name="Sign in").click()
        pg.get_by_text("wrong name or password").wait_for()
        pg.get_by_role("textbox", name="Password").fill("correct horse")
        pg.get_by_role("button", name="Sign in").click()
        pg.get_by_text("Signed in as").wait_for()
        settle(pg)
        pg.reload()
        pg.get_by_text("Signed in as").wait_for()
        pg.locator(".card.focus").first.wait_for()
        marked = int(pg.locator(".card.focus").first.get_attribute("data-id"))
        pg.get_by_role("heading", name="Review").click()
        pg.keyboard.press("a")
        wait_until(lambda: api.history(project, marked), 30, "the decision")
        assert api.history(project, marked)[0]["reviewer"] == "ann"
        pg.screenshot(path=str(shots_dir(tmp_path) / "signed-in.png"))
        stored = project.store.users.get("ann")[1]
        assert "correct horse" not in pg.content() and stored not in pg.content()  # nothing secret in the page
        pg.get_by_role("button", name="Sign out").click()
        pg.get_by_text(f"Sign in to {project.path.name}").wait_for()
        settle(pg)
        pg.reload()
        pg.get_by_text(f"Sign in to {project.path.name}").wait_for()
        assert pg.get_by_text("Signed in as").count() == 0
    log = (tmp_path / "streamlit.log").read_text()
    assert "correct horse" not in log and "wrong horse" not in log and "scrypt$" not in log
    for fmt in ("csv", "json"):  # nor in an export of the labels
        out = tmp_path / f"labels.{fmt}"
        api.export_labels(project, out)
        assert "scrypt" not in out.read_text() and "correct horse" not in out.read_text()


def test_two_dashboards_on_one_postgresql_project_see_each_others_decisions(page, trained_project, tmp_path, pg_url):
    """Two `stcore dashboard` servers (two ports, as on two machines) on one project whose store
    is on PostgreSQL: a card accepted on one is accepted on the other at its next redraw."""
    from stcore.project import Project
    api.migrate_store(trained_project.path, pg_url)
    project, pg = Project(trained_project.path), page
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:
        two_servers(project, pg, tmp_path)
    finally:  # the schema is named by the project's id, which every copy of the test project shares
        project.store.engine.drop()


def two_servers(project, pg, tmp_path) -> None:
    with serve(project, tmp_path / "a") as url_a, serve(project, tmp_path / "b") as url_b:
        pg.goto(f"{url_a}/review")
        pg.locator(".card.focus").first.wait_for()
        marked = int(pg.locator(".card.focus").first.get_attribute("data-id"))
        other = pg.context.browser.new_page(viewport={"width": 1280, "height": 1000})
        other.goto(f"{url_b}/review?status=accepted")
        other.get_by_text("0 items").wait_for()
        pg.get_by_role("heading", name="Review").click()
        pg.keyboard.press("a")
        wait_until(lambda: project.store.queue.rows([marked])[0]["status"] == "accepted", 30, "the decision")
        other.reload()
        other.locator(f'.card[data-id="{marked}"]').wait_for()
        assert other.get_by_text("1 item", exact=True).count() == 1
