"""New images classified from the Export page in a real browser at 1280 px: images uploaded
through the file picker, the job followed to its result; then a second job, which the page must
show instead of the earlier ones (a kept choice in the list of jobs hid it)."""
from __future__ import annotations

import pytest

from stcore import api
from test_browser import cut_text, page, serve, settle, shots_dir, wait_until  # noqa: F401 (page: a fixture)
from test_predict import write_test_pngs

pytestmark = [pytest.mark.browser, pytest.mark.needs_fmnist]


def new_job(project, before: set[str]) -> str:
    return wait_until(lambda: next((r["id"] for r in api.runs(project) if r["role"] == "predict"
                                    and r["id"] not in before), None), 60, "a predict job")


def test_uploaded_images_are_classified_and_each_new_job_is_the_one_shown(page, trained_project, tmp_path):
    project, pg = trained_project, page
    folder = write_test_pngs(project, tmp_path / "new", 6)
    files = sorted(str(f) for f in folder.rglob("*.png"))
    earlier = {api.start_predict(project, [folder / "sub"], detach=False) for _ in range(2)}  # jobs the page lists first
    with serve(project, tmp_path) as url:
        pg.goto(f"{url}/export")
        pg.get_by_role("heading", name="Classify new images").wait_for()
        settle(pg)
        pg.locator("[data-testid=stFileUploaderDropzoneInput]").nth(1).set_input_files(files)
        settle(pg)
        pg.wait_for_timeout(1000)
        pg.get_by_role("button", name="Classify", exact=True).click()
        first = new_job(project, earlier)
        pg.get_by_text(f"{first}: classified 6 images").wait_for(timeout=120_000)
        settle(pg)
        assert pg.get_by_text("Predictions, least confident first").count() == 1
        pg.get_by_role("heading", name="Classify new images").scroll_into_view_if_needed()
        assert not cut_text(pg), cut_text(pg)
        pg.screenshot(path=str(shots_dir(tmp_path) / "export-predict.png"), full_page=True)

        done = earlier | {first}
        for _ in range(2):  # the same uploads again: new jobs, each shown once it is there (a list of jobs too)
            pg.get_by_role("button", name="Classify", exact=True).click()
            job = new_job(project, done)
            pg.get_by_text(f"{job}: classified 6 images").wait_for(timeout=120_000)
            settle(pg)
            done.add(job)
