"""A new user's walk, in a real browser at 1280 px: the project opened from a link stays the
project on every page; a list that a job makes appears when the job ends, without a reload;
a form's default follows the project (a new embedding) while the page stays open."""
from __future__ import annotations

import shutil

import pytest

from stcore import api
from stcore.project import Project
from test_browser import CHROMIUM, cut_text, page, serve, settle, shots_dir, wait_until  # noqa: F401 (page: a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.needs_fmnist, pytest.mark.slow]


def sidebar_link(pg, name: str):
    return pg.locator("[data-testid=stSidebarNav] a").filter(has_text=name).first


def on_project(pg, project: Project) -> bool:
    """The page says, in its sidebar, that it works on project, and its URL names it."""
    side = pg.locator("[data-testid=stSidebar]")
    return str(project.path) in side.inner_text() and "project=" in pg.url


def model_shown(pg, key: str) -> str:
    """The value a selectbox shows (its combobox input's)."""
    return pg.locator(f".st-key-{key}").get_by_role("combobox").input_value()


def test_a_linked_project_stays_a_job_list_appears_and_the_model_default_follows(trained_project, page, tmp_path):
    other = Project(shutil.copytree(trained_project.path, tmp_path / "other"))
    pg, shots = page, shots_dir(tmp_path)
    with serve(trained_project, tmp_path) as url:
        # ---- 1. a link to another project, then every page through the sidebar
        pg.goto(f"{url}/?project={other.path}")
        pg.get_by_role("heading", name="Project").wait_for()
        settle(pg)
        assert on_project(pg, other)
        assert pg.locator("[data-testid=stSidebar]").get_by_text(f"Project: {other.path.name}").is_visible()
        for name in ("Review", "Map", "Train", "Evaluate", "Export", "Project", "Review"):
            sidebar_link(pg, name).click()
            pg.get_by_role("heading", name=name).first.wait_for()
            settle(pg)
            assert on_project(pg, other), (name, pg.url)

        # a decision made now lands in the linked project, not the server's
        pg.locator(".card").first.wait_for()
        first = int(pg.locator(".card").first.get_attribute("data-id"))
        pg.locator(f".card[data-id='{first}'] button.accept").first.click()
        wait_until(lambda: api.counts(other)["accepted"] == 1, 20, "the accept to reach the linked project")
        assert api.counts(trained_project)["accepted"] == 0
        # the sidebar's counts follow the decision (the grid redraws alone; the sidebar is outside it)
        pg.locator("[data-testid=stSidebar]").get_by_text(" 1 reviewed (0 rejected)").wait_for(timeout=15_000)

        # ---- 2. 'likely wrong': the list shows when its job ends, with no reload
        pg.get_by_role("radio", name="likely wrong").or_(pg.get_by_role("button", name="likely wrong")).first.click()
        pg.get_by_role("button", name="Find likely wrong labels").click()
        run = wait_until(lambda: next(iter(other.store.runs.list("label-issues")), None), 30, "a label-issues run")
        wait_until(lambda: api.run(other, run["id"])["state"] == "finished", 180, "label-issues to finish")
        pg.get_by_text("human labels look wrong").first.wait_for(timeout=15_000)
        settle(pg)
        assert pg.get_by_text(f"{run['id']} is queued").count() == 0
        pg.screenshot(path=str(shots / "likely-wrong-after-job.png"), full_page=True)

        # ---- 3. the teacher form's model follows a new pretrained embedding
        sidebar_link(pg, "Train").click()
        pg.get_by_role("tab", name="Teacher").wait_for()
        settle(pg)
        pg.get_by_role("tab", name="Teacher").click()
        settle(pg)
        assert model_shown(pg, "tr_t_model") == "cnn"
        pg.get_by_role("tab", name="Embed").click()
        settle(pg)
        pg.locator(".st-key-tr_e_kind").get_by_role("combobox").click()
        pg.get_by_role("option", name="efficientnet-lite0").click()
        settle(pg)
        pg.locator(".st-key-tr_e_size input").fill("32")
        pg.locator(".st-key-tr_e_size input").press("Tab")
        settle(pg)
        pg.get_by_role("button", name="Embed", exact=True).click()
        run = wait_until(lambda: next(iter(other.store.runs.list("embed")), None), 30, "an embed run")
        wait_until(lambda: api.run(other, run["id"])["state"] == "finished", 300, "the embedding to finish")
        pg.get_by_text("with efficientnet-lite0").first.wait_for(timeout=15_000)  # the live panel's summary
        settle(pg)
        pg.get_by_role("tab", name="Teacher").click()
        settle(pg)
        assert model_shown(pg, "tr_t_model") == "head"
        assert on_project(pg, other)
        assert not cut_text(pg), cut_text(pg)
        pg.screenshot(path=str(shots / "train-after-embed.png"), full_page=True)
