"""The dashboard: pure helpers, the launcher, and every page through Streamlit's AppTest.

AppTest runs the real app.py in this process against a private copy of a tiny project
(conftest's small_project / trained_project), so clicks are checked against the store.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from dashboard import util
from stcore import api, launch
from stcore.errors import LaunchError
from stcore import orders

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
PAGES = ["project", "review", "map", "train", "evaluate", "export", "team"]
pytestmark = pytest.mark.needs_fmnist


# ------------------------------------------------------------------ helpers (no streamlit)
def test_resolve_under_roots_accepts_inside_and_refuses_escapes(tmp_path):
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    assert util.resolve_under_roots(str(root / "data"), [root]) == root / "data"
    assert util.resolve_under_roots(str(root / "new" / "p"), [root]) == root / "new" / "p"
    for bad in (str(root / ".." / "secret"), str(root / "data" / ".." / ".." / "secret"), str(root / "link"),
                str(root / "link" / "x"), "/etc", ""):
        with pytest.raises(ValueError):
            util.resolve_under_roots(bad, [root])


def test_allowed_roots_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("STCORE_DATA_ROOTS", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    assert util.allowed_roots() == [tmp_path / "a", tmp_path / "b"]
    monkeypatch.delenv("STCORE_DATA_ROOTS")
    assert Path.home().resolve() in util.allowed_roots()


@pytest.mark.parametrize("name", ["<script>alert(1)</script>", "[x](javascript:alert(1))", "**bold**", "../../x",
                                  ":red[x]"])
def test_md_escape_leaves_no_markup(name):
    out = util.md_escape(name)
    for ch in "<>[]()*:":
        assert ch not in out.replace("\\" + ch, "")
    assert out.replace("\\", "") == name


@pytest.mark.parametrize("name,expected", [("../../x", "x"), ("my project", "my_project"), ("..", "file"),
                                           ("a/b\\c.pt", "a_b_c.pt"), ("<script>", "script")])
def test_safe_filename(name, expected):
    assert util.safe_filename(name) == expected


def test_duration_and_colour():
    assert util.fmt_duration(75) == "1m 15s" and util.fmt_duration(3 * 3600 + 120) == "3h 02m"
    assert [util.conf_color(c) for c in (0.3, 0.7, 0.95, None)] == ["red", "orange", "green", "gray"]


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_upscale_is_nearest_neighbour(shape):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=shape, dtype=np.uint8)
    big = np.asarray(util.upscale(img, 140))
    k = big.shape[0] // shape[1]
    assert k >= 4 and big.shape[0] == shape[1] * k
    src = img[0] if shape[0] == 1 else img.transpose(1, 2, 0)
    assert np.array_equal(big[::k, ::k], src)  # every block is one source pixel, unblurred
    assert np.array_equal(big[k - 1::k, k - 1::k], src)


@pytest.mark.parametrize("shape, size", [((1, 28, 28), (28, 28)), ((3, 32, 32), (32, 32)), ((3, 280, 560), (140, 70))])
def test_a_thumbnail_keeps_a_small_image_whole_and_shrinks_a_large_one(shape, size):
    """The grid's thumbnails: a small image travels at its own size (the browser enlarges it
    without blur), a large one shrinks to 140 px on its longer side."""
    import base64
    import io
    from PIL import Image
    img = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    uri = util.thumb_uri(img, 140)
    assert uri.startswith("data:image/png;base64,")
    pil = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert pil.size == size and pil.mode == ("L" if shape[0] == 1 else "RGB")
    if shape[1] <= 140:
        src = img[0] if shape[0] == 1 else img.transpose(1, 2, 0)
        assert np.array_equal(np.asarray(pil), src)


# ------------------------------------------------------------------ launcher
@pytest.mark.parametrize("addr,local", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                        ("127.0.0.2", True), ("0.0.0.0", False), ("192.168.1.5", False),
                                        ("", False), ("example.com", False)])
def test_is_local(addr, local):
    assert api.is_local(addr) is local


def test_launch_refuses_a_public_address_without_a_password_or_accounts(monkeypatch, tmp_path, small_project):
    monkeypatch.delenv("STCORE_PASSWORD", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LaunchError, match=r"Add accounts \(`stcore users .* add NAME --role admin`\), set STCORE_PASSWORD"):
        launch.launch(str(small_project.path), address="0.0.0.0", headless=True)
    api.add_user(small_project, "ann", "admin", "correct horse")  # people sign in: the accounts are the gate
    started = []
    monkeypatch.setattr(launch.subprocess, "Popen", lambda cmd, **kw: started.append(cmd))
    monkeypatch.setattr(launch, "serve_until_stopped", lambda proc: 0)
    assert launch.launch(str(small_project.path), address="0.0.0.0", headless=True) == 0 and started


@pytest.mark.parametrize("headless, display, expected", [(True, ":0", "true"), (False, ":0", "false"),
                                                         (False, None, "true")])
def test_launch_command_runs_streamlit_on_the_app_without_a_prompt(tmp_path, monkeypatch, headless, display,
                                                                    expected):
    monkeypatch.setattr(launch.sys, "platform", "linux")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if display:
        monkeypatch.setenv("DISPLAY", display)
    else:
        monkeypatch.delenv("DISPLAY", raising=False)
    cmd = launch.command(tmp_path, port=8765, address="127.0.0.1", headless=headless)
    i = cmd.index("-m")
    assert cmd[i:i + 3] == ["-m", "streamlit", "run"] and Path(cmd[i + 3]) == Path(APP)
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.port") + 1] == "8765"
    assert cmd[cmd.index("--server.showEmailPrompt") + 1] == "false"  # never wait at "Email:"
    assert cmd[cmd.index("--server.headless") + 1] == expected  # a browser opens only where there is a display
    assert cmd[-3:] == ["--", "--project", str(tmp_path)]


def test_default_project_lives_in_stcore_home(monkeypatch, tmp_path):
    monkeypatch.setenv("STCORE_HOME", str(tmp_path / "home"))
    assert api.default_project_path() == tmp_path / "home" / "fashion-mnist"


# ------------------------------------------------------------------ AppTest
@pytest.fixture
def app(monkeypatch, tmp_path):
    """app(project) -> an AppTest of the dashboard on that project, already run once."""
    from streamlit import config
    from streamlit.testing.v1 import AppTest
    # As `stcore dashboard` serves it: on loopback (the app asks for a password otherwise).
    config.set_option("server.address", "127.0.0.1")
    monkeypatch.setenv("STCORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STCORE_DATA_ROOTS", str(tmp_path))
    monkeypatch.delenv("STCORE_PASSWORD", raising=False)

    def make(project, page: str | None = None):
        monkeypatch.setenv("STCORE_PROJECT", str(project.path if hasattr(project, "path") else project))
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
        if page:
            at.switch_page(f"views/{page}.py").run()
        return at
    return make


def no_errors(at, page: str) -> None:
    assert not at.exception, f"{page}: {[e.value for e in at.exception]}"
    assert not at.error, f"{page}: {[e.value for e in at.error]}"


# The Review grid is one component (dashboard/grid.py, review_grid.js). AppTest cannot run its
# JavaScript, so these read what the page gave it and send operations as its JavaScript does.
def _grid(at):
    found = [e for e in at.get("bidi_component") if e.proto.component_name == "stcore_review_grid"]
    assert len(found) == 1, f"{len(found)} Review grids on the page"
    return found[0]


def grid_data(at) -> dict:
    """The data the Review grid was drawn with: cards, classes, toolbar, message, ack."""
    return json.loads(_grid(at).proto.json)


def grid_send(at, *ops, instance: str = "tab-1", resend: list[dict] = ()):
    """Send operations from the grid and rerun, as the browser does: every operation not yet
    acknowledged goes again with the new ones (resend), each with the next sequence number."""
    from streamlit.proto.WidgetStates_pb2 import WidgetStates  # noqa: F401 (the type at._tree returns)
    seq = at.__dict__.setdefault("_grid_seq", {}).get(instance, 0)
    numbered = [{**op, "seq": seq + k} for k, op in enumerate(ops, 1)]
    at._grid_seq[instance] = seq + len(ops)
    states = at._tree.get_widget_states()
    w = states.widgets.add()
    w.id = _grid(at).proto.id
    w.json_value = json.dumps({"ops": {"instance": instance, "ops": [*resend, *numbered], "at": time.time()}})
    at._run(states)
    return numbered


def decide_op(ids, action: str, label: int | None = None) -> dict:
    return {"kind": "decide", "ids": [int(i) for i in ids], "action": action, "label": label}


def test_every_page_renders_on_an_empty_project_and_says_what_to_do(app, small_project):
    """The first step is the embedding (with a way to skip it); once there is one, the teacher."""
    at = app(small_project)
    for page in PAGES:
        at.switch_page(f"views/{page}.py").run()
        no_errors(at, page)
        if page in ("review", "evaluate", "export"):
            labels = [b.label for b in at.button]
            assert "Embed now (pixels)" in labels and "Skip: train a teacher" in labels, (page, labels)
    at.switch_page("views/review.py").run()
    next(b for b in at.button if b.label == "Embed now (pixels)").click().run()
    run = api.runs(small_project)[-1]
    assert run["role"] == "embed" and run["config"]["backbone"] == "pixels"
    assert _wait_stopped(small_project, run["id"]) == "finished"
    at.switch_page("views/export.py").run()
    assert "Train a teacher now (default settings)" in [b.label for b in at.button]
    at.switch_page("views/train.py").run()
    no_errors(at, "train")
    assert any("Embedded" in c.value and "pixels" in c.value for c in at.caption)


def test_every_page_renders_on_a_trained_project(app, trained_project):
    at = app(trained_project)
    for page in PAGES:
        at.switch_page(f"views/{page}.py").run()
        no_errors(at, page)
    at.switch_page("views/review.py").run()
    assert len(_shown(at)) == 24 and all(c["can"]["accept"] and c["pending"] for c in grid_data(at)["cards"])


def test_evaluate_shows_the_test_images_of_the_chosen_confusion_cell(app, trained_project):
    """The drill-down reads the predictions the run saved: the count shown is the number of test
    images with that true and predicted class, and as many images (up to 30) are drawn."""
    p = trained_project
    run = api.evaluation(p)["teacher"]["run"]
    preds = api.test_predictions(p, run)
    _, truth = api.test_items(p)
    pairs = [(t, q) for t, q in zip(truth, preds) if t != q]
    t, q = max(set(pairs), key=pairs.count)  # the most common confusion
    n = pairs.count((t, q))
    at = app(p, "evaluate")
    at.selectbox(key="ev_true").set_value(t)
    at.selectbox(key="ev_pred").set_value(q).run()
    no_errors(at, "evaluate")
    assert any(m.value.startswith(f"**{n:,}** test image") for m in at.markdown), [m.value for m in at.markdown]
    assert len(at.image[-1].value) == min(30, n)


def test_evaluate_table_counts_test_images_as_whole_numbers(app, trained_project):
    at = app(trained_project, "evaluate")
    table = at.dataframe[0]
    config = json.loads(table.proto.columns)
    assert config["test images"]["type_config"]["format"] == "%d", config
    assert {c["type_config"]["format"] for k, c in config.items() if k not in ("test images", "_index")} == {"%.3f"}


def test_evaluate_offers_to_evaluate_a_run_that_saved_no_predictions(app, trained_project):
    p = trained_project
    run = api.evaluation(p)["teacher"]["run"]
    (p.run_dir(run) / "test_probs.npy").unlink()
    at = app(p, "evaluate")
    no_errors(at, "evaluate")
    assert "Evaluate it again" in [b.label for b in at.button]
    assert api.test_predictions(p, run) is None


def test_no_project_offers_to_create_the_default_one(app, tmp_path, monkeypatch):
    at = app(tmp_path / "home" / "fashion-mnist")
    no_errors(at, "project")
    assert "Create the default Fashion-MNIST project" in [b.label for b in at.button]


def test_project_page_says_not_yet_pseudo_labeled_instead_of_pending(app, small_project):
    at = app(small_project, "project")
    tile = next(m for m in at.metric if m.label == "Pending review")
    assert tile.value == "—"
    assert any("not yet pseudo-labeled" in c.value for c in at.caption)
    assert any("not yet pseudo-labeled" in c.value for c in at.sidebar.caption)


def test_project_page_counts_have_thousands_separators(app, trained_project):
    at = app(trained_project, "project")
    pending = api.counts(trained_project)["pending"]
    assert next(m for m in at.metric if m.label == "Pending review").value == f"{pending:,}"
    assert any(f"{pending:,} pending" in c.value for c in at.sidebar.caption)
    api.accept_above(trained_project, 0.0)
    at = app(trained_project, "project")
    reviewed = api.counts(trained_project)["accepted"]
    assert reviewed >= 1000 and any(f"{reviewed:,} reviewed" in c.value for c in at.sidebar.caption)


def _pool_row(project, item_id):
    return project.store.engine.db.execute("SELECT p.status, l.class_id AS label, p.pred FROM pool p LEFT JOIN labels l ON l.split='pool' AND l.item_id=p.id WHERE p.id=?", (item_id,)).fetchone()


def _shown(at) -> list[int]:
    return [c["id"] for c in grid_data(at)["cards"]]


def _card(at, item: int) -> dict:
    return next(c for c in grid_data(at)["cards"] if c["id"] == item)


def test_review_accept_correct_reject_and_undo_write_the_store(app, trained_project):
    p = trained_project
    at = app(p, "review")
    a, c, r = _shown(at)[:3]

    grid_send(at, decide_op([a], "accept"))
    assert _pool_row(p, a)["status"] == "accepted" and _pool_row(p, a)["label"] == _pool_row(p, a)["pred"]
    assert grid_data(at)["message"] == {"kind": "success", "text": f"Accepted #{a}"}
    grid_send(at, decide_op([c], "correct", 4))
    assert tuple(_pool_row(p, c))[:2] == ("corrected", 4)
    grid_send(at, decide_op([r], "reject"))
    assert _pool_row(p, r)["status"] == "rejected"
    no_errors(at, "review")
    # the default filter shows pending items only: decided items leave the grid
    assert not set(_shown(at)) & {a, c, r}

    assert grid_data(at)["toolbar"]["undo"] == "rejected 1 item"
    grid_send(at, {"kind": "undo"})
    assert _pool_row(p, r)["status"] == "pending"
    assert _pool_row(p, c)["status"] == "corrected"  # only the last action is undone
    # a new session (a refresh, another tab) sees the same store
    fresh = app(p, "review")
    assert api.counts(p)["accepted"] == 1 and api.counts(p)["corrected"] == 1
    assert r in _shown(fresh)


def test_the_grids_operations_apply_once_and_in_order_however_often_they_come(app, trained_project):
    """The browser sends every operation the server has not acknowledged with each new one, and
    sends them again after a while: each applies once. A malformed one is skipped."""
    p = trained_project
    at = app(p, "review")
    a, b, c = _shown(at)[:3]
    first = grid_send(at, decide_op([a], "accept"))
    assert grid_data(at)["ack"] == {"tab-1": 1}
    grid_send(at, decide_op([a], "reject"), decide_op([b], "accept"), resend=first)  # op 1 came again
    assert [_pool_row(p, i)["status"] for i in (a, b)] == ["rejected", "accepted"]
    assert len(api.history(p)) == 3 and grid_data(at)["ack"] == {"tab-1": 3}
    grid_send(at, {"kind": "decide", "ids": ["1; DROP TABLE pool"], "action": "accept"},
              {"kind": "decide", "ids": [c], "action": "correct", "label": 99},
              {"kind": "decide", "ids": [True], "action": "reject"}, {"kind": "page", "page": 2})
    assert _pool_row(p, c)["status"] == "pending" and _pool_row(p, 1)["status"] == "pending"
    assert grid_data(at)["toolbar"]["page"] == 2
    assert at.query_params["page"] == "2" and grid_data(at)["ack"] == {"tab-1": 7}
    # another tab (its own grid instance) numbers its own operations
    grid_send(at, decide_op([c], "accept"), instance="tab-2")
    assert _pool_row(p, c)["status"] == "accepted" and grid_data(at)["ack"] == {"tab-1": 7, "tab-2": 1}
    no_errors(at, "review")


def test_an_accept_takes_the_class_its_card_showed_or_nothing(app, trained_project):
    """A card's accept carries the class it showed: if a new pseudo-label has replaced it since,
    nothing is accepted and the grid says why."""
    p = trained_project
    at = app(p, "review")
    a, b = (_card(at, i) for i in _shown(at)[:2])
    grid_send(at, {**decide_op([a["id"]], "accept"), "expect": a["pred"]},
              {**decide_op([b["id"]], "accept"), "expect": (b["pred"] + 1) % len(p.classes)})
    assert tuple(_pool_row(p, a["id"]))[:2] == ("accepted", a["pred"])
    assert _pool_row(p, b["id"])["status"] == "pending"
    message = grid_data(at)["message"]
    assert message["kind"] == "error" and f"#{b['id']}'s pseudo-label changed" in message["text"]
    no_errors(at, "review")


def test_a_corrected_card_shows_the_human_label_with_the_teachers_guess_beside_it(app, trained_project):
    p = trained_project
    item = orders.page(p.store.queue, statuses=["pending"], limit=1)[0]
    pred, human = item["pred"], (item["pred"] + 1) % len(p.classes)
    api.review(p, [item["id"]], "correct", human)
    at = app(p, "review")
    at.button_group(key="rv_status").set_value(["corrected"]).run()
    assert _shown(at) == [item["id"]]
    card = _card(at, item["id"])
    assert card["title"] == p.classes[human] and card["badge"]["text"] == "corrected"
    assert card["sub"] == f"teacher: {p.classes[pred]} {item['confidence']:.2f}"
    assert not card["can"]["accept"] and card["can"]["reject"]  # the teacher's class is not one click away


def test_review_sort_options_show_the_store_order(app, trained_project):
    p = trained_project
    at = app(p, "review")
    options = at.selectbox(key="rv_order").options
    assert "smallest margin, classes weighted by expected errors" in options and len(options) >= 6
    for order in ("weighted-margin", "margin", "balanced-margin"):
        at.selectbox(key="rv_order").set_value(order).run()
        no_errors(at, f"review sorted by {order}")
        shown = _shown(at)
        assert shown == [r["id"] for r in orders.page(p.store.queue, statuses=["pending"], order=order, limit=len(shown))], order


def test_review_bulk_page_and_threshold_with_confirmation(app, trained_project):
    p = trained_project
    at = app(p, "review")
    at.selectbox(key="rv_size").set_value(12).run()
    at.button(key="rv_accept_page").click().run()
    assert api.counts(p)["accepted"] == 12
    assert grid_data(at)["message"]["text"] == "Accepted 12 items"

    lo = p.store.engine.db.execute("SELECT confidence FROM pool WHERE status='pending' ORDER BY confidence DESC "
                            "LIMIT 1 OFFSET 20").fetchone()[0]
    at.number_input(key="rv_thr").set_value(round(lo, 2) if round(lo, 2) <= lo else round(lo, 2) - 0.01).run()
    thr = at.number_input(key="rv_thr").value
    expected = p.store.queue.count(statuses=["pending"], conf_min=thr)
    at.button(key="rv_bulk").click().run()
    assert api.counts(p)["accepted"] == 12  # nothing happens before the confirmation
    assert any(f"**{expected:,}**" in w.value for w in at.warning), [w.value for w in at.warning]
    assert at.session_state["rv_bulk_open"]  # the panel holding the confirmation stays open
    at.button(key="rv_bulk_yes").click().run()
    assert api.counts(p)["accepted"] == 12 + expected
    grid_send(at, {"kind": "undo"})
    assert api.counts(p)["accepted"] == 12


def test_review_escapes_hostile_class_names(app, trained_project):
    """Class names reach the grid as data, and its script sets text only, never HTML."""
    p = trained_project
    hostile = ["<script>alert(1)</script>", "../../x", "[x](javascript:alert(1))"] + p.classes[3:]
    for k, name in enumerate(hostile[:3]):
        api.rename_class(p, k, name)
    at = app(p.path, "review")
    no_errors(at, "review")
    texts = [m.value for m in at.markdown]
    assert not any("<script>" in t for t in texts)
    assert not any("](javascript" in t for t in texts)
    assert grid_data(at)["classes"] == hostile
    script = (Path(APP).parent / "review_grid.js").read_text()
    assert not any(sink in script for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"))


def _wait_stopped(p, run_id, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and api.run(p, run_id)["state"] in ("queued", "running"):
        api.runs(p)
        time.sleep(0.5)
    return api.run(p, run_id)["state"]


def test_train_start_a_teacher_then_cancel_it_from_the_page(app, trained_project):
    p = trained_project
    at = app(p, "train")
    before = len(api.runs(p))
    at.number_input(key="tr_t_steps").set_value(5000)  # far more than the test lasts
    at.button(key="tr_start_teacher").click().run()
    runs = api.runs(p)
    run_id = runs[-1]["id"]
    try:
        assert len(runs) == before + 1 and runs[-1]["role"] == "teacher" and runs[-1]["total"] == 5000
        no_errors(at, "train")
        assert any(run_id in m.value for m in at.markdown)
        deadline = time.time() + 90
        while api.run(p, run_id)["state"] != "running" or api.run(p, run_id)["step"] == 0:
            assert time.time() < deadline, api.run(p, run_id)
            time.sleep(0.2)
        at.run()
        # The Runs table and the live panel read the one store: both say running (the table once
        # said "queued 0/100" while the panel said running).
        table = next(d.value for d in at.dataframe if "run" in d.value.columns)
        row = table[table["run"].str.split(" ").str[0] == run_id].iloc[0]
        live = next(m.value for m in at.markdown if m.value.startswith(f"**{run_id}**"))
        assert row["state"] == "running" and " · running · " in live, (row, live)
        assert 0 < int(row["progress"].split("/")[0].replace(",", "")) <= api.run(p, run_id)["step"]
        at.button(key=f"tr_cancel_live_{run_id}").click().run()
        assert api.run(p, run_id)["cancel_requested"] == 1
        assert _wait_stopped(p, run_id) == "cancelled"
    finally:
        api.cancel(p, run_id)
        _wait_stopped(p, run_id)


def test_train_a_teacher_on_two_cpu_processes_from_the_page(app, trained_project):
    p = trained_project
    at = app(p, "train")
    at.number_input(key="tr_t_steps").set_value(5000)
    at.number_input(key="tr_t_device_nproc").set_value(2)
    at.button(key="tr_start_teacher").click().run()
    run = api.runs(p)[-1]
    try:
        assert (run["role"], run["device"], run["config"]["nproc"]) == ("teacher", "cpu", 2)
        no_errors(at, "train")
        batch = run["config"]["batch_size"] // 2
        assert any(f"2 processes (cpu), batch {batch} each" in m.value for m in at.markdown)
        table = next(d.value for d in at.dataframe)
        assert table.loc[table["run"] == run["id"], "processes"].item() == 2
    finally:
        api.cancel(p, run["id"])
        assert _wait_stopped(p, run["id"]) == "cancelled"


def test_train_picks_several_gpus_one_process_each(app, trained_project, monkeypatch):
    import streamlit as st
    gpus = [{"name": "cpu", "label": "cpu (2 threads)", "free": None, "total": None}] + [
        {"name": f"cuda:{i}", "label": f"cuda:{i} GPU ({i + 10}.0 of 80.0 GiB free)", "free": 1, "total": 2}
        for i in range(3)]
    monkeypatch.setattr(api, "devices", lambda: gpus)
    st.cache_data.clear()  # the page keeps the device list for a few seconds
    started = []
    monkeypatch.setattr(api, "start_training", lambda project, values: started.append(values) or "teacher-9")
    at = app(trained_project, "train")
    assert at.selectbox(key="tr_t_device_kind").value == "cuda"  # a GPU by default where there is one
    assert at.multiselect(key="tr_t_device_gpus").value == ["cuda:0"]
    at.multiselect(key="tr_t_device_gpus").set_value(["cuda:2", "cuda:0"])
    at.button(key="tr_start_teacher").click().run()
    assert (started[-1]["device"], started[-1]["nproc"]) == ("cuda:2,cuda:0", 2)
    at.selectbox(key="tr_t_device_kind").set_value("cpu").run()
    assert not [m for m in at.multiselect if m.key == "tr_t_device_gpus"]
    at.button(key="tr_start_teacher").click().run()
    assert (started[-1]["device"], started[-1]["nproc"]) == ("cpu", 1)
    st.cache_data.clear()


def test_train_student_form_shows_the_methods_defaults_and_only_its_options(app, trained_project):
    p = trained_project
    at = app(p, "train")
    assert at.selectbox(key="tr_s_method").value == "labelprop"  # the default student method
    assert (at.number_input(key="tr_s_steps").value, at.number_input(key="tr_s_rounds").value,
            at.number_input(key="tr_s_strength").value) == (1800, 3, 0.3)  # the defaults themselves, not 0
    assert not [s for s in at.slider if s.key == "tr_s_threshold"]  # labelprop uses every label
    at.selectbox(key="tr_s_method").set_value("self-training").run()
    assert (at.number_input(key="tr_s_steps").value, at.number_input(key="tr_s_rounds").value) == (600, 1)
    assert at.slider(key="tr_s_threshold").value == 0.9


def test_train_student_form_starts_the_chosen_method_rounds_and_strength(app, trained_project):
    p = trained_project
    at = app(p, "train")
    at.selectbox(key="tr_s_method").set_value("self-training").run()
    at.number_input(key="tr_s_rounds").set_value(2)
    at.number_input(key="tr_s_strength").set_value(0.5)
    at.number_input(key="tr_s_steps").set_value(40)
    at.session_state["tr_tab"] = "Student"
    at.button(key="tr_start_student").click().run()
    run = api.runs(p)[-1]
    try:
        assert run["role"] == "student" and run["total"] == 40
        assert (run["config"]["method"], run["config"]["rounds"], run["config"]["strength"]) == \
            ("self-training", 2, 0.5)
        no_errors(at, "train")
        assert at.session_state["tr_tab"] == "Student"  # the page stays on the tab the run was started from
    finally:
        api.cancel(p, run["id"])
        _wait_stopped(p, run["id"])


def test_train_shows_each_phase_with_its_own_progress_and_estimate(app, trained_project):
    """While labelprop builds its graph the step does not move; a second bar says what it does."""
    p = trained_project
    run_id = p.store.runs.create("student", "cpu", {"role": "student"}, 1800)
    now = time.time()
    p.store.runs.update(run_id, state="running", pid=os.getpid(), started=now - 20, heartbeat=now)
    p.store.runs.heartbeat(run_id, 0, [("phase", 0, {"phase": "building the nearest-neighbour graph of 60,000 images",
                                                "done": 15_000, "total": 60_000, "started": now - 10})])
    at = app(p, "train")
    no_errors(at, "train")
    bars = [e.proto.text for e in at.get("progress")]
    assert bars[0] == "0 / 1,800 steps (0%)"
    assert bars[1].startswith("building the nearest-neighbour graph of 60,000 images · 15,000 / 60,000 · about ")
    assert not at.get("plotly_chart")  # no empty axes before the first loss points
    assert any("charts appear with the first training steps" in c.value for c in at.caption)
    p.store.runs.heartbeat(run_id, 10, [("train", 10, {"loss": 1.5, "unlabeled_loss": 1.0, "mask_rate": 1.0,
                                                   "lr": 0.03, "samples_per_s": 100.0})])
    at.run()
    bars = [e.proto.text for e in at.get("progress")]
    assert len(bars) == 1 and bars[0].startswith("10 / 1,800 steps (1%)") and len(at.get("plotly_chart")) == 1
    # no empty accuracy axes either: they say when the first evaluation comes (ten per run)
    assert any("the first point comes at step 180" in i.value for i in at.info)
    p.store.runs.heartbeat(run_id, 180, [("eval", 180, {"accuracy": 0.5, "per_class": {}})])
    at.run()
    assert len(at.get("plotly_chart")) == 2
    p.store.runs.update(run_id, state="cancelled", ended=time.time())


def test_runs_table_shows_a_cancelled_runs_last_accuracy_and_the_whole_duration(app, trained_project):
    p = trained_project
    run_id = p.store.runs.create("student", "cpu", {"role": "student"}, 100)
    p.store.runs.update(run_id, state="running", started=1000.0, heartbeat=1060.0)
    p.store.runs.heartbeat(run_id, 50, [("eval", 50, {"accuracy": 0.61, "per_class": {}})])
    p.store.runs.update(run_id, state="cancelled", ended=1060.0)
    p.store.runs.requeue(run_id, "cpu")  # resumed ...
    p.store.runs.update(run_id, state="cancelled", started=2000.0, ended=2030.0)  # ... and cancelled again
    at = app(p, "train")
    no_errors(at, "train")
    table = at.dataframe[0].value
    row = table[table["run"].str.split(" ").str[0] == run_id].iloc[0]
    assert row["accuracy"] == "61.0% (so far)"
    assert row["duration"] == "1m 30s"  # 60 s before the resume and 30 s after it
    assert "Resume" in [b.label for b in at.button if b.key == f"tr_resume_live_{run_id}"]


def test_train_shows_a_failed_run_plainly(app, trained_project):
    p = trained_project
    run_id = p.store.runs.create("student", "cpu", {"role": "student"}, 10)
    p.store.runs.update(run_id, state="failed", error="CUDA out of memory; lower --batch-size", ended=time.time())
    at = app(p, "train")
    assert any("CUDA out of memory" in e.value for e in at.error)
    assert not at.exception


def test_promote_student_makes_it_the_teacher(app, trained_project):
    p = trained_project
    teacher = api.teacher(p)
    run_id = p.store.runs.create("student", "cpu", teacher["config"], 10)
    p.store.runs.update(run_id, state="finished", ended=time.time(), result=teacher["result"])
    at = app(p, "train")
    assert at.selectbox(key="tr_run_pick").value == run_id
    at.button(key="tr_promote").click().run()
    assert api.teacher(p)["id"] == run_id


def test_project_page_refuses_folders_outside_the_roots(app, small_project, tmp_path):
    at = app(small_project, "project")
    at.text_input(key="pr_folder").set_value("/etc/stcore-evil")
    at.button(key="FormSubmitter:create-Create project").click().run()
    assert any("outside the folders" in e.value for e in at.error)
    assert not Path("/etc/stcore-evil").exists()


def test_project_page_creates_and_opens_a_project(app, small_project, tmp_path):
    at = app(small_project, "project")
    new = tmp_path / "made"
    at.text_input(key="pr_folder").set_value(str(new))
    at.number_input(key="pr_limit").set_value(500)
    at.button(key="FormSubmitter:create-Create project").click().run()
    no_errors(at, "project")
    assert (new / "project.db").is_file()
    assert at.session_state["project_path"] == str(new)
    assert any(str(new) in c.value for c in at.caption)


def test_password_gate(app, small_project, monkeypatch):
    monkeypatch.setenv("STCORE_PASSWORD", "s3cret")
    at = app(small_project)
    assert not [b for b in at.button if b.label == "Create project"]  # nothing but the sign-in form
    at.text_input[0].input("wrong")
    at.button[0].click().run()
    assert any("Wrong password" in e.value for e in at.error)
    at.text_input[0].input("s3cret")
    at.button[0].click().run()
    assert "Create project" in [b.label for b in at.button]


def test_train_embed_tab_starts_an_embedding_and_explains_a_bad_backbone(app, small_project):
    p = small_project
    at = app(p, "train")
    assert at.selectbox(key="tr_e_kind").value == "pixels"  # recommended for small gray images
    at.selectbox(key="tr_e_kind").set_value("torchvision:ARCH").run()
    at.text_input(key="tr_e_arch").set_value("resnet9000").run()
    at.button(key="tr_embed").click().run()
    assert any("no model 'resnet9000'" in e.value for e in at.error), [e.value for e in at.error]
    assert api.runs(p) == []
    at.selectbox(key="tr_e_kind").set_value("pixels").run()
    at.button(key="tr_embed").click().run()
    run = api.runs(p)[-1]
    assert run["role"] == "embed" and run["config"]["backbone"] == "pixels"
    assert _wait_stopped(p, run["id"]) == "finished"
    at.run()
    table = at.dataframe[0].value
    assert list(table["backbone"]) == ["pixels"] and list(table["in use"]) == ["yes"]
    assert int(table["dimensions"][0]) == 128


def test_train_embed_tab_pretrains_ssl_shows_its_loss_and_offers_it_to_the_teacher(app, small_project):
    p = small_project
    at = app(p, "train")
    assert not [s for s in at.selectbox if s.key == "tr_t_init"]  # nothing to start from yet
    at.selectbox(key="tr_e_kind").set_value("ssl").run()
    at.number_input(key="tr_e_epochs").set_value(0.5).run()
    at.button(key="tr_embed").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    run = api.runs(p)[-1]
    assert run["role"] == "embed" and run["config"]["backbone"] == "ssl" and run["config"]["epochs"] == 0.5
    assert _wait_stopped(p, run["id"]) == "finished"
    at.run()
    assert any("pretrained for 0.57 epochs (4 steps)" in c.value for c in at.caption), [c.value for c in at.caption]
    assert any("loss points of the self-supervised pretraining" in c.value for c in at.caption)
    assert [b.proto.text for b in at.get("progress")][:1] == ["4 / 4 steps (100%)"]  # pretraining steps, not images
    losses = [c for c in at.get("plotly_chart")]
    assert losses, "no loss chart for the pretraining"
    assert at.selectbox(key="tr_t_init").options == ["scratch", "ssl"]
    assert "ssl" in at.selectbox(key="tr_s_init").options


def test_review_number_keys_are_offered_for_ten_classes_or_fewer(app, trained_project):
    """Keys 1-9 and 0 stand for the first ten classes (the browser test presses one); what a key
    sends is a correction of the marked card."""
    p = trained_project
    at = app(p, "review")
    data = grid_data(at)
    assert data["number_keys"] == "1234567890" and data["classes"] == p.classes
    first = _shown(at)[0]
    grid_send(at, decide_op([first], "correct", 2))  # key 3 on the first card
    assert tuple(_pool_row(p, first))[:2] == ("corrected", 2)
    assert grid_data(at)["message"]["text"] == f"Corrected #{first} as {p.classes[2]}"
    no_errors(at, "review")


def test_train_page_shows_a_label_issues_run_and_where_to_read_it(app, trained_project):
    p = trained_project
    api.start_label_issues(p, detach=False)
    at = app(p, "train")
    found = api.label_issues(p)
    text = f"{len(found['issues']):,} of 100 human labels look wrong (in the pixels embedding); `stcore label-issues"
    assert any(text in c.value for c in at.caption), [c.value for c in at.caption]
    assert [b.proto.text for b in at.get("progress")][:1] == [f"{api.runs(p)[-1]['total']:,} / "
                                                           f"{api.runs(p)[-1]['total']:,} images (100%)"]
    no_errors(at, "train")


# ------------------------------------------------------------------ review v2: map, similar, lists, URL
def test_map_page_draws_every_point_and_a_selection_reaches_the_review_grid(app, trained_project):
    p = trained_project
    at = app(p, "map")
    assert any(b.label == "Compute the map" for b in at.button)
    api.start_embedding(p, "pixels", detach=False)
    api.start_map(p, method="pca", detach=False)
    at = app(p, "map")
    no_errors(at, "map")
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    traces = fig["data"]
    assert {t["type"] for t in traces} == {"scattergl"} and sum(len(t["x"]) for t in traces) == 2000
    assert [t["name"].split(" (")[0] for t in traces] == p.classes  # labeled: their class; pool: the teacher's
    assert fig["layout"]["dragmode"] == "lasso"
    assert sorted(at.segmented_control(key="mp_color").options) == sorted(
        ["predicted class", "status", "confidence", "right or wrong"])
    at.segmented_control(key="mp_color").set_value("status").run()
    by_status = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert [t["name"].split(" (")[0] for t in by_status] == ["pending", "labeled"]  # the few on top
    chosen = by_status[0]["customdata"][:5]  # what a lasso hands over: the points' ids
    api.set_selection(p, chosen)
    at = app(p, "review")
    at.segmented_control(key="rv_view").set_value("map selection").run()
    assert _shown(at) == chosen
    at.button(key="rv_list_accept").click().run()
    assert at.warning[0].value.startswith("5 pool items: accept")
    at.button(key="rv_list_yes").click().run()
    assert [tuple(_pool_row(p, i))[0] for i in chosen] == ["accepted"] * 5
    no_errors(at, "review")


def test_review_similar_on_a_card_shows_its_neighbours_and_decides_them_at_once(app, trained_project):
    p = trained_project
    api.start_embedding(p, "pixels", detach=False)
    at = app(p, "review")
    first = _shown(at)[0]
    assert _card(at, first)["can_similar"]
    grid_send(at, {"kind": "similar", "id": first})
    assert at.segmented_control(key="rv_view").value == "similar"
    want = [n["id"] for n in api.similar(p, first, 23)["neighbours"]]
    shown = _shown(at)
    assert shown == [first] + want
    assert [c["note"].split()[0] for c in grid_data(at)["cards"]] == ["the"] + ["similarity"] * len(want)
    assert at.query_params["view"] == "similar" and at.query_params["similar"] == str(first)
    at.selectbox(key="rv_list_class").set_value(3).run()
    at.button(key="rv_list_correct").click().run()
    at.button(key="rv_list_yes").click().run()
    pool = [i for i in shown if i in set(p.store.items.pool_order()[0])]
    assert {tuple(_pool_row(p, i))[:2] for i in pool} == {("corrected", 3)}
    grid_send(at, {"kind": "undo"})
    assert {tuple(_pool_row(p, i))[0] for i in pool} == {"pending"}  # one action
    no_errors(at, "review")


def test_review_likely_wrong_labels_fix_in_one_click(app, trained_project):
    from benchmarks.label_issues import plant
    p = trained_project
    at = app(p, "review")
    at.segmented_control(key="rv_view").set_value("likely wrong").run()
    assert any(b.label == "Find likely wrong labels" for b in at.button)
    plant(p, 100, 10, seed=0)
    api.start_label_issues(p, detach=False)
    at = app(p, "review")
    at.segmented_control(key="rv_view").set_value("likely wrong").run()
    issues = api.label_issues(p)["issues"]
    fixes = [c for c in grid_data(at)["cards"] if c["fix"]]
    first = issues[0]
    assert fixes[0]["id"] == first["id"] and fixes[0]["fix"]["name"] == first["suggested"]
    grid_send(at, decide_op([first["id"]], "correct", fixes[0]["fix"]["k"]))  # its Fix button
    now = {i: c for i, _, c, _ in p.store.items.human_labels()}
    assert p.classes[now[first["id"]]] == first["suggested"]
    assert first["id"] not in _shown(at)  # fixed: off the list
    assert any("fixed since the check" in c.value for c in at.caption)
    no_errors(at, "review")


def test_review_view_filters_and_page_live_in_the_url(app, trained_project):
    p = trained_project
    at = app(p, "review")
    at.selectbox(key="rv_order").set_value("entropy").run()
    at.pills(key="rv_status").set_value(["pending", "accepted"]).run()
    grid_send(at, {"kind": "page", "page": 2})
    qp = dict(at.query_params)
    assert qp["order"] == "entropy" and qp["status"] == "pending,accepted" and qp["page"] == "2"
    shown = _shown(at)
    from streamlit.testing.v1 import AppTest
    fresh = AppTest.from_file(APP, default_timeout=60)  # a shared link: a new session with that URL
    for k, v in qp.items():
        fresh.query_params[k] = v
    fresh.run()
    fresh.switch_page("views/review.py").run()
    assert fresh.selectbox(key="rv_order").value == "entropy" and grid_data(fresh)["toolbar"]["page"] == 2
    assert _shown(fresh) == shown
    at.pills(key="rv_status").set_value([]).run()  # no status chosen: all, which the URL keeps too
    assert at.query_params["status"] == ""
    again = AppTest.from_file(APP, default_timeout=60)
    for k, v in dict(at.query_params).items():
        again.query_params[k] = v
    again.query_params["classes"] = "1,99"  # a class that does not exist is dropped
    again.run()
    again.switch_page("views/review.py").run()
    assert again.pills(key="rv_status").value == [] and again.multiselect(key="rv_classes").value == [1]


def test_more_classes_than_number_keys_keep_the_keys_for_the_first_ten(app, many_classes_project):
    p = many_classes_project
    at = app(p, "review")
    data = grid_data(at)
    # keys 1-9, 0 give the first ten classes; the grid's L opens its class picker for any
    assert data["number_keys"] == "1234567890" and data["classes"] == p.classes and len(p.classes) > 10
    first = _shown(at)[0]
    grid_send(at, decide_op([first], "correct", 11))  # what the picker sends for the twelfth class
    assert tuple(_pool_row(p, first))[:2] == ("corrected", 11)
    no_errors(at, "review")


def test_review_near_duplicates_show_each_pair_even_when_an_image_is_in_two(app, trained_project, monkeypatch):
    p = trained_project
    a, b, c = p.store.items.pool_order()[0][:3]
    pairs = [{"a": {"id": a, "split": "pool"}, "b": {"id": b, "split": "pool"}, "similarity": 0.999},
             {"a": {"id": a, "split": "pool"}, "b": {"id": 0, "split": "test"}, "similarity": 0.99}]
    monkeypatch.setattr(api, "duplicates", lambda project: {"pairs": pairs, "threshold": 0.98, "over": "pixels",
                                                             "images": 2400, "run": "duplicates-9"})
    at = app(p, "review")
    at.segmented_control(key="rv_view").set_value("near-duplicates").run()
    no_errors(at, "review")
    cards = grid_data(at)["cards"]
    assert [x["slot"] for x in cards] == [f"{a}_1a", f"{b}_1b", f"{a}_2a", "0_2b"]  # an image in two pairs
    test = cards[3]
    assert test["split"] == "test" and test["title"] == "test image" and not any(test["can"].values())  # no buttons
    grid_send(at, decide_op([a], "reject"))
    assert tuple(_pool_row(p, a))[0] == "rejected"
    assert c not in [x["id"] for x in cards]


def test_the_folder_form_asks_for_the_image_folder_and_no_label_count(app, small_project):
    at = app(small_project, "project")
    assert at.number_input(key="pr_limit") and [r for r in at.radio if r.label == "Labels"]
    at.selectbox(key="pr_dataset").set_value("folder").run()
    no_errors(at, "project")
    assert not [r for r in at.radio if r.label == "Labels"] and not [n for n in at.number_input if n.label == "How many"]
    assert at.text_input(key="pr_data_root").label == "Image folder"


def test_train_says_how_long_a_run_will_take_and_offers_a_shorter_one(app, trained_project):
    p = trained_project
    teacher = api.teacher(p)
    # The fixture's teacher trained 30 steps; pretend they took 60 s (2 s a step)
    rows = api.metrics(p, teacher["id"])
    trains = [r for r in rows if r["kind"] == "train"]
    p.store.engine.db.execute("UPDATE metrics SET at = ? + 2.0 * step WHERE run_id = ? AND kind = 'train'",
                       (trains[0]["at"], teacher["id"]))
    p.store.engine.db.commit()
    at = app(p, "train")
    at.number_input(key="tr_t_steps").set_value(400).run()
    at.selectbox(key="tr_t_model").set_value("cnn").run()
    no_errors(at, "train")
    bs = at.number_input(key="tr_t_bs").value
    per_step = 2.0 / teacher["config"]["batch_size"] * bs
    assert any(f"for 400 steps, at the pace {teacher['id']} measured ({per_step:.2f} s a step" in c.value
               for c in at.caption)
    shorter = at.button(key="tr_t_shorter")
    assert shorter.label.startswith(f"Use {int(300 / per_step) // 10 * 10:,} steps instead")
    shorter.click().run()
    assert at.number_input(key="tr_t_steps").value == int(300 / per_step) // 10 * 10


def _worse_student(p, cls: str, by: float) -> str:
    """A finished student whose stored evaluation is the teacher's, but `by` worse at class cls."""
    import copy
    teacher = api.teacher(p)
    result = copy.deepcopy(teacher["result"])
    result["per_class"][cls] = max(0.0, result["per_class"][cls] - by)
    run_id = p.store.runs.create("student", "cpu", teacher["config"], 10)
    p.store.runs.update(run_id, state="finished", ended=time.time(), result=result)
    return run_id


def test_evaluate_and_promote_name_a_class_that_lost_more_than_5_points(app, trained_project):
    p = trained_project
    per_class = api.teacher(p)["result"]["per_class"]
    cls = max(per_class, key=per_class.get)  # the teacher's best class: room to fall by 20 points
    assert per_class[cls] >= 0.2
    run_id = _worse_student(p, cls, 0.2)
    at = app(p, "evaluate")
    no_errors(at, "evaluate")
    flagged = [w.value for w in at.warning if "worse than" in w.value]
    assert len(flagged) == 1 and f"**{cls}**" in flagged[0] and "−20.0 points" in flagged[0]
    at.switch_page("views/train.py").run()
    assert at.selectbox(key="tr_run_pick").value == run_id
    assert any(f"**{cls}**" in w.value for w in at.warning)  # before the promote button is pressed
    # a student no worse than 5 points anywhere is not flagged
    _worse_student(p, cls, 0.04)
    at = app(p, "evaluate")
    assert not [w for w in at.warning if "worse than" in w.value]


def test_a_bulk_accept_says_what_it_does_to_the_class_mix_before_it_is_confirmed(app, trained_project):
    p = trained_project
    at = app(p, "review")
    at.number_input(key="rv_thr").set_value(0.0).run()
    at.button(key="rv_bulk").click().run()
    no_errors(at, "review")
    n = api.count_above(p, 0.0)
    impact = api.bulk_accept_impact(p, 0.0)
    text = " ".join(c.value for c in at.caption)
    assert "Human labels per class:" in text and f"of the {n:,} are likely wrong" in text
    assert f"About **{impact['expected_wrong']:,.0f}**" in text
    assert api.counts(p)["accepted"] == 0  # nothing is decided before the confirmation


# ------------------------------------------------------------------ classes, and projects with no labels yet
def _next_step(at) -> str:
    return " ".join(i.value for i in at.info)


def _every_page_says(at, text: str, pages: tuple[str, ...]) -> None:
    """Open every page: none fails, and those of pages say text (in their next step)."""
    for page in PAGES:
        at.switch_page(f"views/{page}.py").run()
        no_errors(at, page)
        assert page not in pages or text in _next_step(at), (page, _next_step(at))


def _start_teacher_says(at, text: str) -> None:
    """Train's Start teacher shows why it cannot start (and starts nothing)."""
    at.switch_page("views/train.py").run()
    at.button(key="tr_start_teacher").click().run()
    assert not at.exception and any(text in e.value for e in at.error), [e.value for e in at.error]


def test_every_page_opens_on_a_project_with_no_labels_and_a_card_is_labeled_from_review(app, zero_label_project):
    p = zero_label_project
    at = app(p)
    _every_page_says(at, "label some images", ("project", "train", "evaluate", "export"))
    # Review: the pool's images, none predicted, each offering a class (and no accept)
    at.switch_page("views/review.py").run()
    cards = grid_data(at)["cards"]
    assert len(cards) == 24 and all(c["can"]["correct"] and not c["can"]["accept"] and c["pred"] is None
                                    for c in cards)
    first = cards[0]["id"]
    assert first == api.review_page(p, statuses=["pending"], order="random", limit=1)[0]["id"]
    grid_send(at, decide_op([first], "correct", 1))
    no_errors(at, "review")
    assert [(r["item_id"], r["class"], r["source"]) for r in api.labels(p, "pool")] == [(first, "Trouser", "reviewed")]
    assert grid_data(at)["message"] == {"kind": "success", "text": f"Labeled #{first} as Trouser"}
    assert first not in _shown(at)
    # Train: Start says why it cannot train yet, instead of failing
    api.undo(p)
    _start_teacher_says(at, "no labels yet")
    assert api.runs(p) == []


def test_every_page_opens_on_a_project_with_no_classes_and_says_to_add_them(app, zero_class_project):
    p = zero_class_project
    at = app(p)
    _every_page_says(at, "add the classes", ("project", "review", "train", "evaluate", "export"))
    _start_teacher_says(at, "0 class(es)")


def test_review_grid_adds_a_class_typed_for_a_card_and_labels_it(app, zero_class_project):
    """The grid's + key (New class…): a name the project lacks becomes a class, given to the card;
    a known name in another case is that class; a name no class could have is refused."""
    p = zero_class_project
    at = app(p)
    at.switch_page("views/review.py").run()
    data = grid_data(at)
    assert data["classes"] == [] and all(c["can"]["correct"] for c in data["cards"])
    a, b, c = [card["id"] for card in data["cards"][:3]]
    grid_send(at, {**decide_op([a], "correct"), "new_class": "  Cat "})
    no_errors(at, "review")
    assert p.classes == ["Cat"] and [(r["item_id"], r["class"]) for r in api.labels(p, "pool")] == [(a, "Cat")]
    assert grid_data(at)["message"]["text"] == f"Labeled #{a} as Cat (a new class: 1 in all)"
    grid_send(at, {**decide_op([b], "correct"), "new_class": "cat"}, {**decide_op([c], "correct"), "new_class": "Dog"})
    assert p.classes == ["Cat", "Dog"]
    assert {r["item_id"]: r["class"] for r in api.labels(p, "pool")} == {a: "Cat", b: "Cat", c: "Dog"}
    assert grid_data(at)["classes"] == ["Cat", "Dog"]
    for bad in ("", "   ", "x" * 101, "bell\x07", 7):
        grid_send(at, {**decide_op([data["cards"][3]["id"]], "correct"), "new_class": bad})
    assert p.classes == ["Cat", "Dog"] and len(api.labels(p, "pool")) == 3
    # the next step no longer asks for classes
    at.switch_page("views/review.py").run()
    assert not any("add the classes" in e.value for e in at.info), [e.value for e in at.info]


def test_project_page_adds_and_renames_classes_and_explains_a_refused_name(app, zero_class_project):
    p = zero_class_project
    at = app(p)
    assert "no classes yet" in _next_step(at)
    at.text_input(key="cl_add_names").set_value("cat, dog,")
    at.button(key="cl_add").click().run()
    no_errors(at, "project")
    assert [(c["id"], c["name"], c["labels"]) for c in api.classes(p)] == [(0, "cat", 0), (1, "dog", 0)]
    table = next(d.value for d in at.dataframe if "class" in d.value.columns)
    assert list(table["class"]) == ["cat", "dog"] and list(table["id"]) == [0, 1]
    assert not at.get("plotly_chart") and any("charted here once" in c.value for c in at.caption)  # no empty chart
    assert at.text_input(key="cl_add_names").value == ""  # added: the field is cleared
    # a name the project has (in any case) and an empty one: refused, said why, nothing lost
    at.text_input(key="cl_add_names").set_value("bird, Dog")
    at.button(key="cl_add").click().run()
    assert not at.exception and [c["name"] for c in api.classes(p)] == ["cat", "dog"]
    assert any("already has a class named" in e.value for e in at.error), [e.value for e in at.error]
    assert at.text_input(key="cl_add_names").value == "bird, Dog"
    at.text_input(key="cl_add_names").set_value("  ")
    at.button(key="cl_add").click().run()
    assert any("non\\-empty" in e.value for e in at.error), [e.value for e in at.error]
    # rename: the label stays on the class (by id)
    api.set_label(p, [0], "dog")
    at.selectbox(key="cl_rename_id").set_value(1)
    at.text_input(key="cl_rename_name").set_value("puppy")
    at.button(key="cl_rename").click().run()
    no_errors(at, "project")
    assert [c["name"] for c in api.classes(p)] == ["cat", "puppy"] and api.labels(p)[0]["class"] == "puppy"
    table = next(d.value for d in at.dataframe if "class" in d.value.columns)
    assert list(table["class"]) == ["cat", "puppy"] and list(table["labels"]) == [0, 1]
    assert len(at.get("plotly_chart")) == 1  # the first label: the chart is drawn
    at.selectbox(key="cl_rename_id").set_value(0)
    at.text_input(key="cl_rename_name").set_value("Puppy")
    at.button(key="cl_rename").click().run()
    assert any("already has a class named" in e.value for e in at.error)
    assert at.text_input(key="cl_rename_name").value == "Puppy" and p.classes == ["cat", "puppy"]
    # two classes, no labels but one: the next step is to label more, on Review
    assert "label" in _next_step(at).lower()


def test_runs_trained_before_a_class_was_added_are_marked_and_not_resumed(app, trained_project):
    p = trained_project
    teacher = api.teacher(p)["id"]
    p.store.runs.update(teacher, state="interrupted")
    at = app(p, "train")
    table = next(d.value for d in at.dataframe if "run" in d.value.columns)
    assert "classes" not in table.columns
    at.selectbox(key="tr_run_pick").set_value(teacher).run()
    assert not at.button(key="tr_resume").disabled
    api.add_classes(p, ["Scarf"])
    for page in PAGES:  # every page still opens on the runs that no longer fit
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
    p.store.runs.update(teacher, state="finished")  # the teacher again: the next step says it no longer fits
    at.switch_page("views/project.py").run()
    assert f"classes changed since teacher {teacher} trained" in _next_step(at)
    p.store.runs.update(teacher, state="interrupted")
    at.switch_page("views/train.py").run()
    table = next(d.value for d in at.dataframe if "run" in d.value.columns)
    assert set(table["classes"]) == {"changed"} and list(table.columns).index("classes") == 3  # beside the state
    at.selectbox(key="tr_run_pick").set_value(teacher).run()
    assert at.button(key="tr_resume").disabled
    assert not [b for b in at.button if b.key == f"tr_resume_live_{teacher}"]


def test_project_page_creates_a_project_with_no_labels_or_a_folder_with_named_classes(app, small_project, tmp_path):
    from test_robustness_data import png
    at = app(small_project, "project")
    at.text_input(key="pr_folder").set_value(str(tmp_path / "zero"))
    at.number_input(key="pr_limit").set_value(200)
    next(n for n in at.number_input if n.label == "How many").set_value(0)
    at.button(key="FormSubmitter:create-Create project").click().run()
    no_errors(at, "project")
    made = api.open_project(tmp_path / "zero")
    assert api.counts(made)["labeled"] == 0 and "label some images" in _next_step(at)
    for i in range(3):
        png(tmp_path / "data" / "unlabeled" / f"u{i}.png", color=(60 * i, 10, 10))
    at.selectbox(key="pr_dataset").set_value("folder").run()
    at.text_input(key="pr_folder").set_value(str(tmp_path / "named"))
    at.text_input(key="pr_data_root").set_value(str(tmp_path / "data"))
    at.text_input(key="pr_classes").set_value("ant, bee")
    at.button(key="FormSubmitter:create-Create project").click().run()
    no_errors(at, "project")
    assert [c["name"] for c in api.classes(api.open_project(tmp_path / "named"))] == ["ant", "bee"]


def test_project_page_charts_what_more_labels_would_buy(app, small_project):
    at = app(small_project, "project")
    no_errors(at, "project")
    assert "What more labels would buy" in [h.value for h in at.subheader]
    assert [c for c in at.get("plotly_chart") if '"Estimated accuracy against human labels"' in c.proto.spec]
    assert any("The next 100 labels would add about" in m.value for m in at.caption)
    assert any("Out of fold on the 100 human labels" in c.value for c in at.caption)


def test_project_page_says_how_many_more_labels_an_estimate_needs(app, zero_label_project):
    at = app(zero_label_project, "project")
    no_errors(at, "project")
    assert any("Label 20 more image(s) for an estimate" in c.value for c in at.caption)
    assert not [c for c in at.get("plotly_chart") if "Estimated accuracy against human labels" in c.proto.spec]


def test_to_label_shows_the_apps_choice_once_the_images_are_embedded(app, zero_label_project):
    p = zero_label_project
    api.start_embedding(p, "pixels", detach=False)
    at = app(p, "review")
    no_errors(at, "review")
    want = api.suggest(p, count=72, strategy="typical")["items"]
    cards = grid_data(at)["cards"]
    assert [c["id"] for c in cards] == [i["id"] for i in want[:24]]
    assert cards[0]["note"] == want[0]["reason"] and "typical" in cards[0]["note"]
    assert any("Labeled so far: T-shirt/top 0" in c.value for c in at.caption)
    first = cards[0]["id"]
    grid_send(at, decide_op([first], "correct", 1))
    no_errors(at, "review")
    assert _card(at, first)["status"] == "corrected"  # the batch stays in place while it is labeled
    assert any("Trouser 1" in c.value for c in at.caption)
