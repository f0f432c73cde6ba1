"""Classes that change, in a real browser at 1280 px: on the Project page a split of Bag is
checked (the page says what it changes), confirmed, and listed among the edits; on the Review
page the split view offers the new classes on keys 1 and 2, and key 2 labels a card."""
from __future__ import annotations

import pytest

from stcore import api
from test_browser import cut_text, page, serve, settle, shots_dir, wait_until  # noqa: F401 (page: a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.needs_fmnist]


def test_a_split_on_the_project_page_then_its_images_on_the_review_grid(page, trained_project, tmp_path):
    project, pg = trained_project, page
    bags = [r["item_id"] for r in api.labels(project, "labeled") if r["class"] == "Bag"]
    assert bags
    with serve(project, tmp_path) as url:
        pg.goto(url)
        pg.get_by_text("Merge, remove or split classes").click()
        pg.get_by_role("radio", name="split").click()
        settle(pg)
        pg.get_by_label("Split class").click()
        pg.get_by_role("option", name="Bag").click()
        pg.get_by_role("textbox", name="into").fill("Handbag, Backpack")
        pg.get_by_role("button", name="Check what it changes").click()
        pg.get_by_text("Split Bag into Handbag, Backpack").wait_for()
        settle(pg)
        assert pg.get_by_text(f"{len(bags)} labeled image(s) lose their label").count() == 1
        assert project.classes[8] == "Bag"  # checked, not made
        pg.get_by_role("button", name="Confirm: split").scroll_into_view_if_needed()
        pg.wait_for_timeout(300)
        assert cut_text(pg) == []
        pg.screenshot(path=str(shots_dir(tmp_path) / "classes-split.png"))
        pg.get_by_role("button", name="Confirm: split").click()
        wait_until(lambda: "Handbag" in project.classes, 30, "the split")
        pg.get_by_text("items changed").wait_for()
        settle(pg)
        assert sorted(api.offers(project)) == sorted(bags)
        pg.goto(f"{url}/review?view=split")
        pg.locator(".card.focus").first.wait_for()
        settle(pg)
        assert pg.locator(".card").count() == len(bags)
        keys = pg.locator(".keys button.class")
        assert keys.nth(0).inner_text().endswith("Handbag") and keys.nth(1).inner_text().endswith("Backpack")
        assert cut_text(pg) == []
        pg.screenshot(path=str(shots_dir(tmp_path) / "review-split.png"))
        marked = int(pg.locator(".card.focus").first.get_attribute("data-id"))
        pg.get_by_role("heading", name="Review").click()
        pg.keyboard.press("2")
        backpack = project.classes.index("Backpack")
        wait_until(lambda: [r["class_id"] for r in api.labels(project, "pool") if r["item_id"] == marked]
                   == [backpack], 30, "key 2: Backpack")
        wait_until(lambda: pg.locator(".card").count() == len(bags) - 1, 30, "the card leaves the split view")
