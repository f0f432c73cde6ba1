"""A team in a real browser at 1280 px: with overlap 2, an admin signs in, reads the Team page
(activity, speed, the kappa of each pair, agreement per class and per reviewer, nothing cut
short), goes from there to the conflicts and settles one with a key on the Review grid."""
from __future__ import annotations

import pytest

from stcore import api
from test_browser import CHROMIUM, cut_text, page, serve, settle, shots_dir, wait_until  # noqa: F401 (page: a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.needs_fmnist]


def votes_of_three(project) -> list[int]:
    """ann (admin), bob and cy (reviewers) vote on 12 pending items, two each, alike on eight;
    returns the four items they decided differently, oldest first."""
    api.add_user(project, "ann", "admin", "correct horse")
    api.add_user(project, "bob", "reviewer", "another horse")
    api.add_user(project, "cy", "reviewer", "third horse!")
    api.set_overlap(project, 2)
    rows = api.review_page(project, statuses=["pending"], order="id", limit=12)
    pairs = [("bob", "cy"), ("ann", "bob"), ("ann", "cy")]
    differ = []
    for k, r in enumerate(rows):
        first, second = pairs[k % 3]
        api.review(project, [r["id"]], "accept", reviewer=first)
        if k % 3 == 0:  # bob and cy disagree on every third item
            api.review(project, [r["id"]], "correct", (r["pred"] + 1) % len(project.classes), reviewer=second)
            differ.append(r["id"])
        else:
            api.review(project, [r["id"]], "accept", reviewer=second)
    return differ


def test_the_team_page_and_settling_a_conflict_in_a_real_browser(page, trained_project, tmp_path):
    project, pg = trained_project, page
    differ = votes_of_three(project)
    assert api.count_conflicts(project) == 4
    with serve(project, tmp_path) as url:
        pg.goto(f"{url}/team")
        pg.get_by_role("textbox", name="Name").fill("ann")
        pg.get_by_role("textbox", name="Password").fill("correct horse")
        pg.get_by_role("button", name="Sign in").click()
        pg.get_by_text("Signed in as").wait_for()  # on the page asked for: the Team page
        pg.get_by_text("Cohen's kappa, pair by pair").wait_for()
        pg.get_by_text("Per class: how often a vote was joined").wait_for()
        settle(pg)
        assert pg.locator(".js-plotly-plot").count() == 4  # activity, kappa, per class, per reviewer
        assert pg.get_by_text("4 item(s) wait for an admin").count() == 1
        assert cut_text(pg) == []
        pg.screenshot(path=str(shots_dir(tmp_path) / "team.png"))
        pg.locator(".js-plotly-plot").nth(3).scroll_into_view_if_needed()  # the agreement charts
        pg.wait_for_timeout(500)
        pg.screenshot(path=str(shots_dir(tmp_path) / "team-agreement.png"))
        pg.get_by_role("button", name="Settle them on the Review page").click()
        pg.locator(".card.focus").first.wait_for()
        settle(pg)
        assert {int(pg.locator(".card").nth(k).get_attribute("data-id")) for k in range(4)} == set(differ)
        assert pg.get_by_text("votes: bob").count() >= 1
        pg.screenshot(path=str(shots_dir(tmp_path) / "review-conflicts.png"))
        marked = int(pg.locator(".card.focus").first.get_attribute("data-id"))
        pg.get_by_role("heading", name="Review").click()
        pg.keyboard.press("a")  # the admin accepts the teacher's class: settled
        wait_until(lambda: project.store.queue.rows([marked])[0]["status"] == "accepted", 30, "the settlement")
        assert api.history(project, marked)[0]["reviewer"] == "ann"
        wait_until(lambda: api.count_conflicts(project) == 3, 10, "one conflict fewer")
