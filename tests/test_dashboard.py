"""The dashboard: pure helpers, the launcher, and every page through Streamlit's AppTest.

AppTest runs the real app.py in this process against a private copy of a tiny project
(conftest's small_project / trained_project), so clicks are checked against the store.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from dashboard import util
from stcore import launch

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
PAGES = ["project", "review", "train", "evaluate", "export"]
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


# ------------------------------------------------------------------ launcher
@pytest.mark.parametrize("addr,local", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                        ("127.0.0.2", True), ("0.0.0.0", False), ("192.168.1.5", False),
                                        ("", False), ("example.com", False)])
def test_is_local(addr, local):
    assert launch.is_local(addr) is local


def test_launch_refuses_a_public_address_without_a_password(monkeypatch, tmp_path):
    monkeypatch.delenv("STCORE_PASSWORD", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(launch.LaunchError, match="STCORE_PASSWORD"):
        launch.launch(str(tmp_path), address="0.0.0.0", headless=True)


def test_launch_command_runs_streamlit_on_the_app_with_the_project(tmp_path):
    cmd = launch.command(tmp_path, port=8765, address="127.0.0.1", headless=True)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and Path(cmd[4]) == Path(APP)
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.port") + 1] == "8765"
    assert cmd[-3:] == ["--", "--project", str(tmp_path)]


def test_default_project_lives_in_stcore_home(monkeypatch, tmp_path):
    monkeypatch.setenv("STCORE_HOME", str(tmp_path / "home"))
    assert launch.default_project_path() == tmp_path / "home" / "fashion-mnist"


def test_stcore_never_imports_streamlit():
    import subprocess
    import sys
    code = "import stcore.cli, stcore.launch, stcore.project, stcore.jobs, sys; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


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


def test_every_page_renders_on_an_empty_project_and_says_what_to_do(app, small_project):
    at = app(small_project)
    for page in PAGES:
        at.switch_page(f"views/{page}.py").run()
        no_errors(at, page)
        if page in ("review", "evaluate", "export"):
            labels = [b.label for b in at.button]
            assert "Train a teacher now (default settings)" in labels, (page, labels)


def test_every_page_renders_on_a_trained_project(app, trained_project):
    at = app(trained_project)
    for page in PAGES:
        at.switch_page(f"views/{page}.py").run()
        no_errors(at, page)
    at.switch_page("views/review.py").run()
    assert len([b for b in at.button if b.key and b.key.startswith("rv_acc_")]) == 24
    at.switch_page("views/evaluate.py").run()
    assert any("test image" in m.value for m in at.markdown)


def test_no_project_offers_to_create_the_default_one(app, tmp_path, monkeypatch):
    at = app(tmp_path / "home" / "fashion-mnist")
    no_errors(at, "project")
    assert "Create the default Fashion-MNIST project" in [b.label for b in at.button]


def _pool_row(project, item_id):
    return project.store.db.execute("SELECT status, label, pred FROM pool WHERE id=?", (item_id,)).fetchone()


def test_review_accept_correct_reject_and_undo_write_the_store(app, trained_project):
    p = trained_project
    at = app(p, "review")
    ids = [int(b.key.removeprefix("rv_acc_")) for b in at.button if b.key and b.key.startswith("rv_acc_")]
    a, c, r = ids[:3]

    at.button(key=f"rv_acc_{a}").click().run()
    assert _pool_row(p, a)["status"] == "accepted" and _pool_row(p, a)["label"] == _pool_row(p, a)["pred"]
    at.selectbox(key=f"rv_cor_{c}").set_value(4).run()
    assert tuple(_pool_row(p, c))[:2] == ("corrected", 4)
    at.button(key=f"rv_rej_{r}").click().run()
    assert _pool_row(p, r)["status"] == "rejected"
    no_errors(at, "review")
    # the default filter shows pending items only: decided items leave the grid
    shown = {int(b.key.removeprefix("rv_acc_")) for b in at.button if b.key and b.key.startswith("rv_acc_")}
    assert not shown & {a, c, r}

    at.button(key="rv_undo").click().run()
    assert _pool_row(p, r)["status"] == "pending"
    assert _pool_row(p, c)["status"] == "corrected"  # only the last action is undone
    # a new session (a refresh, another tab) sees the same store
    fresh = app(p, "review")
    assert p.counts()["accepted"] == 1 and p.counts()["corrected"] == 1
    assert f"rv_acc_{r}" in [b.key for b in fresh.button]


def test_review_sort_options_show_the_store_order(app, trained_project):
    p = trained_project
    at = app(p, "review")
    options = at.selectbox(key="rv_order").options
    assert "smallest margin, classes weighted by expected errors" in options and len(options) >= 6
    for order in ("weighted-margin", "margin", "balanced-margin"):
        at.selectbox(key="rv_order").set_value(order).run()
        no_errors(at, f"review sorted by {order}")
        shown = [int(b.key.removeprefix("rv_acc_")) for b in at.button if b.key and b.key.startswith("rv_acc_")]
        assert shown == [r["id"] for r in p.store.page(statuses=["pending"], order=order, limit=len(shown))], order


def test_review_keyboard_toolbar_acts_on_the_first_pending_item(app, trained_project):
    p = trained_project
    at = app(p, "review")
    first = int(next(b.key for b in at.button if b.key and b.key.startswith("rv_acc_")).removeprefix("rv_acc_"))
    at.button(key="rv_accept_next").click().run()
    assert _pool_row(p, first)["status"] == "accepted"
    assert any("A** accept next" in c.value for c in at.caption)  # the shortcuts are listed on the page
    at.button(key="rv_next").click().run()
    assert at.number_input(key="rv_page").value == 2


def test_review_bulk_page_and_threshold_with_confirmation(app, trained_project):
    p = trained_project
    at = app(p, "review")
    at.selectbox(key="rv_size").set_value(12).run()
    at.button(key="rv_accept_page").click().run()
    assert p.counts()["accepted"] == 12

    lo = p.store.db.execute("SELECT confidence FROM pool WHERE status='pending' ORDER BY confidence DESC "
                            "LIMIT 1 OFFSET 20").fetchone()[0]
    expected = p.store.count(statuses=["pending"], conf_min=lo)
    at.number_input(key="rv_thr").set_value(round(lo, 2) if round(lo, 2) <= lo else round(lo, 2) - 0.01).run()
    thr = at.number_input(key="rv_thr").value
    expected = p.store.count(statuses=["pending"], conf_min=thr)
    at.button(key="rv_bulk").click().run()
    assert p.counts()["accepted"] == 12  # nothing happens before the confirmation
    assert any(f"**{expected:,}**" in w.value for w in at.warning), [w.value for w in at.warning]
    at.button(key="rv_bulk_yes").click().run()
    assert p.counts()["accepted"] == 12 + expected
    at.button(key="rv_undo").click().run()
    assert p.counts()["accepted"] == 12


def test_review_escapes_hostile_class_names(app, trained_project):
    p = trained_project
    hostile = ["<script>alert(1)</script>", "../../x", "[x](javascript:alert(1))"] + p.classes[3:]
    p.store.set_meta(classes=hostile)
    p.meta = p.store.meta()
    at = app(p.path, "review")
    no_errors(at, "review")
    texts = [m.value for m in at.markdown]
    assert not any("<script>" in t for t in texts)
    assert not any("](javascript" in t for t in texts)


def test_train_start_creates_a_run_and_cancel_stops_it(app, trained_project):
    from stcore.jobs import cancel, list_runs
    p = trained_project
    at = app(p, "train")
    before = len(p.store.runs())
    at.number_input(key="tr_t_steps").set_value(200)
    at.button(key="FormSubmitter:tr_teacher_form-Start teacher").click().run()
    runs = p.store.runs()
    try:
        assert len(runs) == before + 1 and runs[-1]["role"] == "teacher" and runs[-1]["total"] == 200
        no_errors(at, "train")
        assert any(runs[-1]["id"] in m.value for m in at.markdown)
    finally:
        cancel(p, runs[-1]["id"])
        deadline = time.time() + 90
        while time.time() < deadline and list_runs(p)[-1]["state"] in ("queued", "running"):
            time.sleep(0.5)
    assert p.store.run(runs[-1]["id"])["state"] in ("cancelled", "finished")


def test_train_student_form_starts_the_chosen_method_rounds_and_strength(app, trained_project):
    from stcore.jobs import cancel, list_runs
    p = trained_project
    at = app(p, "train")
    assert at.selectbox(key="tr_s_method").value == "labelprop"  # the default student method
    at.selectbox(key="tr_s_method").set_value("pseudo")
    at.number_input(key="tr_s_rounds").set_value(2)
    assert at.number_input(key="tr_s_strength").value == 0.0  # the method's default
    at.number_input(key="tr_s_strength").set_value(0.5)
    at.number_input(key="tr_s_steps").set_value(40)
    at.button(key="FormSubmitter:tr_student_form-Start student").click().run()
    run = p.store.runs()[-1]
    try:
        assert run["role"] == "student" and run["total"] == 40
        assert (run["config"]["method"], run["config"]["rounds"], run["config"]["strength"]) == ("pseudo", 2, 0.5)
        no_errors(at, "train")
    finally:
        cancel(p, run["id"])
        deadline = time.time() + 90
        while time.time() < deadline and list_runs(p)[-1]["state"] in ("queued", "running"):
            time.sleep(0.5)


def test_train_says_what_a_running_run_does_between_steps(app, trained_project):
    """While labelprop builds its graph the step does not move; the progress bar says why."""
    p = trained_project
    run_id = p.store.create_run("student", "cpu", {"role": "student"}, 1800)
    p.store.update_run(run_id, state="running", pid=os.getpid(), started=time.time(), heartbeat=time.time())
    p.store.heartbeat(run_id, 0, [("phase", 0, {"phase": "building the nearest-neighbour graph of 60,000 images"})])
    at = app(p, "train")
    no_errors(at, "train")
    bars = [e.proto.text for e in at.get("progress")]
    assert bars == ["0 / 1,800 steps (0%) · building the nearest-neighbour graph of 60,000 images..."]
    assert not at.get("plotly_chart")  # no empty axes before the first loss points
    assert any("charts appear with the first training steps" in c.value for c in at.caption)
    p.store.heartbeat(run_id, 10, [("train", 10, {"loss": 1.5, "unlabeled_loss": 1.0, "mask_rate": 1.0,
                                                   "lr": 0.03, "samples_per_s": 100.0})])
    at.run()
    assert [e.proto.text for e in at.get("progress")][0].startswith("10 / 1,800 steps (1%)")
    assert "building" not in at.get("progress")[0].proto.text and len(at.get("plotly_chart")) == 2
    p.store.update_run(run_id, state="cancelled", ended=time.time())


def test_train_shows_a_failed_run_plainly(app, trained_project):
    p = trained_project
    run_id = p.store.create_run("student", "cpu", {"role": "student"}, 10)
    p.store.update_run(run_id, state="failed", error="CUDA out of memory; lower --batch-size", ended=time.time())
    at = app(p, "train")
    assert any("CUDA out of memory" in e.value for e in at.error)
    assert not at.exception


def test_promote_student_makes_it_the_teacher(app, trained_project):
    p = trained_project
    teacher = p.teacher_run()
    run_id = p.store.create_run("student", "cpu", teacher["config"], 10)
    p.store.update_run(run_id, state="finished", ended=time.time(), result=teacher["result"])
    at = app(p, "train")
    assert at.selectbox(key="tr_run_pick").value == run_id
    at.button(key="tr_promote").click().run()
    assert p.teacher_run()["id"] == run_id


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
