"""Team work in a real browser (the issue on team work): N signed-in reviewers, each in a
browser context of their own (own cookies, own Streamlit session) in one Chromium, on one
dashboard server, at the full pool.

  1. a copy of the project (decisions change it, and the accounts must not reach the shared
     one) gets N reviewer accounts; one server is started as `stcore dashboard` starts it;
  2. every context signs in (Name, Password) and opens the Review page;
  3. the pending cards each page shows: no item may be shown to two reviewers at once, nor be
     shown to one while the store's lease is another's (overlap counts, target 0);
  4. the N reviewers click Accept on a card of theirs at the same time, clicks times each:
     per click, the seconds from the browser's click event to the frame in which the card shows
     the decision (benchmarks/dashboard.py's accept click, measured in the page), and the wall
     time until the store holds the decision under that reviewer's name and the page is idle;
     a click on an item another reviewer decided first (it was on both pages) stores nothing and
     is counted apart (clicks_on_items_another_decided); meanwhile the pages are sampled about
     once a second for overlaps;
  5. overlap again, then every page is reloaded: still signed in (no sign-in form, the sidebar's
     "Signed in as NAME" and the Review grid);
  6. the machine, the item count and the server's peak RSS (its process tree).

The clicks are concurrent: Playwright's async API drives the N pages from one event loop and
asyncio.gather runs one click loop per reviewer, so the server gets N reruns at once as with N
people. (Sync Playwright cannot be used from one thread per context of one browser, and
interleaving the pages round-robin would only ever leave one click in flight: the server would
never see two at once, which is not the case being measured.) The helpers of
benchmarks/dashboard.py that drive a page are sync, so their in-page scripts (_CLOCK_JS,
_SHOWN_JS, _IDLE_JS, _GRID) are imported and run here through the async API; the card found
is the one _card_accept_button finds (the first pending card not being saved).

Screenshots go to $STCORE_SCREENSHOTS when set, else next to the copy of the project.
"""
from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

from .dashboard import (_CLOCK_JS, _GRID, _IDLE_JS, _SHOWN_JS, APP, CHROMIUM, CHROMIUM_ARGS, ROOT, AppException,
                        PeakRss, _count, _wait_http, free_port, stop_server)

# dashboard.py's _GRID takes the page's first Streamlit v2 component; signed in, that is the
# session cookie's (dashboard/common.py's _cookie, in the sidebar, before the grid), so here the
# grid is the component whose shadow root holds the cards, in the same in-page scripts.
_TEAM_GRID = ("[...document.querySelectorAll('[data-testid=stBidiComponentIsolated]')]"
              ".map(e => e.shadowRoot).find(r => r && r.querySelector('.cards'))")
assert _GRID in _SHOWN_JS
_SHOWN_JS = _SHOWN_JS.replace(_GRID, _TEAM_GRID)
_GRID = _TEAM_GRID
# The pending cards the page shows (not those being saved: they are decided already), their ids.
_PENDING_IDS_JS = (f"() => [...({_GRID})?.querySelectorAll('.card[data-status=pending]:not(.saving)') ?? []]"
                   ".map(e => +e.dataset.id)")
_ALL_IDS_JS = f"() => [...({_GRID})?.querySelectorAll('.card') ?? []].map(e => +e.dataset.id)"
# What _card_accept_button asks the page: the first card still to decide.
_FIRST_PENDING_JS = f"() => ({_GRID})?.querySelector('.card[data-status=pending]:not(.saving)')?.dataset.id"
_HAS_GRID_JS = f"() => !!({_GRID})?.querySelector('.card[data-status=pending]')"


def _rank(values: list[float], q: float) -> float:
    """The nearest-rank quantile, as bench_dashboard reports its p95 (and its median for q=0.5)."""
    t = sorted(values)
    return t[len(t) // 2] if q == 0.5 else t[min(len(t) - 1, math.ceil(q * len(t)) - 1)]


def _stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(_rank(values, 0.5), 3), "p95": round(_rank(values, 0.95), 3),
            "max": round(max(values), 3)}


def _db(project: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{project / 'project.db'}?mode=ro", uri=True, timeout=30)


def _decided_by(project: Path | sqlite3.Connection, reviewer: str) -> int:
    """Decisions in the history under reviewer's name (project: its folder, or an open connection)."""
    db = _db(project) if isinstance(project, Path) else project
    try:
        return db.execute("SELECT COUNT(*) FROM history WHERE reviewer = ?", (reviewer,)).fetchone()[0]
    finally:
        if db is not project:
            db.close()


def _holders(project: Path) -> dict[int, str]:
    """The live leases: item -> reviewer."""
    with contextlib.closing(_db(project)) as db:
        return dict(db.execute("SELECT item_id, reviewer FROM leases WHERE until > ?", (time.time(),)).fetchall())


def overlap(shown: dict[str, list[int]], holders: dict[int, str] | None = None) -> dict:
    """shared: items shown as pending to two reviewers or more; not_theirs: items shown to one
    reviewer while the store's lease on them is another's; unleased: shown but held by nobody."""
    seen: dict[int, set[str]] = {}
    for who, ids in shown.items():
        for i in ids:
            seen.setdefault(i, set()).add(who)
    out = {"shared": sorted(i for i, w in seen.items() if len(w) > 1),
           "shown": {who: len(ids) for who, ids in shown.items()}}
    if holders is not None:
        out["not_theirs"] = sorted(i for who, ids in shown.items() for i in ids if holders.get(i, who) != who)
        out["unleased"] = sorted(i for ids in shown.values() for i in ids if i not in holders)
    out["count"] = len(set(out["shared"]) | set(out.get("not_theirs", [])))  # items that break the rule
    return out


async def _app_exception(page) -> None:
    box = page.locator('[data-testid="stException"]')
    if await box.count():
        raise AppException("the page shows an exception: " + " ".join((await box.first.inner_text()).split())[:300])


async def _idle(page, timeout_s: float) -> None:
    await page.wait_for_function(_IDLE_JS, timeout=timeout_s * 1000)


async def _sign_in_and_review(page, base: str, project_name: str, name: str, password: str, timeout_s: float) -> float:
    """Open the Review page, sign in on its form, wait for the grid: the seconds it took."""
    t0 = time.perf_counter()
    await page.goto(f"{base}/review")
    await page.get_by_text(f"Sign in to {project_name}").wait_for(timeout=timeout_s * 1000)
    await page.get_by_role("textbox", name="Name").fill(name)
    await page.get_by_role("textbox", name="Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_text("Signed in as").wait_for(timeout=timeout_s * 1000)
    await page.wait_for_function(_HAS_GRID_JS, timeout=timeout_s * 1000)
    await _idle(page, timeout_s)
    await _app_exception(page)
    return time.perf_counter() - t0


async def _shown(pages: dict) -> dict[str, list[int]]:
    ids = await asyncio.gather(*(p.evaluate(_PENDING_IDS_JS) for p in pages.values()))
    return {who: [int(i) for i in x] for who, x in zip(pages, ids)}


async def _click_loop(page, project: Path, name: str, clicks: int, timeout_s: float, rec: dict,
                      think_s: float = 0.0) -> None:
    """bench_dashboard's card Accept clicks (see _time_clicks) for one reviewer, the wall time
    ending when the store holds one more decision under this reviewer's name (polled every 20 ms
    on one read-only connection, so that four pollers cost the server's two cores little).
    think_s: the pause before each click, drawn from 0.5 to 1.5 times it (a person looks at the
    card first); 0 clicks again as soon as the last click is done (every reviewer at once, flat out)."""
    db = _db(project)
    try:
        await _clicks(page, db, name, clicks, timeout_s, rec, think_s)
    finally:
        db.close()


async def _clicks(page, db: sqlite3.Connection, name: str, clicks: int, timeout_s: float, rec: dict,
                  think_s: float) -> None:
    import random
    rng = random.Random(name)  # the same pauses for a reviewer in every run
    await page.evaluate(_CLOCK_JS)
    for _ in range(clicks):
        if think_s:
            await asyncio.sleep(think_s * rng.uniform(0.5, 1.5))
        item = None
        for _ in range(25):  # the page may still be settling after the last click
            item = await page.evaluate(_FIRST_PENDING_JS)
            if item:
                break
            await asyncio.sleep(0.2)
        if not item:
            rec["note"] = "no Accept button left to click"
            return
        item = int(item)
        n_before = _decided_by(db, name)
        t1 = time.perf_counter()
        await page.locator(f".card[data-id='{item}'] button.accept").click()
        rec["shown_s"].append(await page.evaluate(_SHOWN_JS, item) / 1000)
        end = time.monotonic() + timeout_s
        while not (_decided_by(db, name) > n_before and await page.evaluate(f"() => ({_IDLE_JS})()")):
            # Someone else decided this item first (it was on both pages): the click stores
            # nothing ("no change: it was already so"); counted as a conflict, not as a decision.
            other = db.execute("SELECT reviewer FROM history WHERE item_id = ? AND reviewer <> ? LIMIT 1",
                               (item, name)).fetchone()
            if other and time.perf_counter() - t1 > 1 and await page.evaluate(f"() => ({_IDLE_JS})()"):
                rec["conflicts"].append({"item": item, "decided_by": other[0]})
                break
            if time.monotonic() > end:
                raise TimeoutError(f"{name}: the decision was not stored within {timeout_s} s of a click on Accept")
            await asyncio.sleep(0.02)
        else:
            rec["items"].append(item)
            rec["wall_s"].append(time.perf_counter() - t1)
        await _app_exception(page)


async def _watch(pages: dict, project: Path, halt: asyncio.Event, every: float, log: list) -> None:
    """Sample every page's pending cards and the leases about once every `every` seconds."""
    while not halt.is_set():
        try:
            shown = await _shown(pages)
            o = overlap(shown, _holders(project))
            log.append({"t": round(time.perf_counter(), 2), "shared": o["shared"], "not_theirs": o["not_theirs"]})
        except Exception as e:  # a page in the middle of a redraw: the next sample will do
            log.append({"t": round(time.perf_counter(), 2), "error": type(e).__name__})
        try:
            await asyncio.wait_for(halt.wait(), every)
        except asyncio.TimeoutError:
            pass


async def _reload_check(page, name: str, project_name: str, timeout_s: float) -> dict:
    t0 = time.perf_counter()
    await page.reload()
    await page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=stSidebar] *')]"
        ".some(e => e.textContent.includes('Signed in as'))"
        " || [...document.querySelectorAll('h1')].some(e => e.textContent.startsWith('Sign in to'))",
        timeout=timeout_s * 1000)
    form = await page.get_by_text(f"Sign in to {project_name}").count() > 0
    res = {"sign_in_form": form}
    if not form:
        caption = page.locator("[data-testid=stSidebar]").get_by_text("Signed in as")
        res["signed_in_as"] = " ".join((await caption.first.inner_text()).split())
        await page.wait_for_function(_HAS_GRID_JS, timeout=timeout_s * 1000)
        await _idle(page, timeout_s)
    res["grid_cards"] = len(await page.evaluate(_ALL_IDS_JS))
    res["signed_in"] = (not form and name in res.get("signed_in_as", "") and res["grid_cards"] > 0)
    res["s"] = round(time.perf_counter() - t0, 2)
    return res


async def _run(copy: Path, names: dict[str, str], out: dict, *, clicks: int, timeout_s: float, shots: Path,
               say, think_s: float) -> None:
    from playwright.async_api import async_playwright
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    from stcore.launch import command  # the dashboard as `stcore dashboard` starts it
    log = copy.parent / "team-bench.log"
    env = {k: v for k, v in os.environ.items() if k != "STCORE_PASSWORD"}  # the accounts' form, not the password gate
    async with async_playwright() as pw:
        # Launch the browser first: its start-up is not the dashboard's.
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        contexts = [await browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in names]
        pages = {who: await c.new_page() for who, c in zip(names, contexts)}
        for p in pages.values():
            p.set_default_timeout(timeout_s * 1000)
        with open(log, "wb") as logf:
            t0 = time.perf_counter()
            proc = subprocess.Popen(command(copy, port=port, address="127.0.0.1", headless=True), cwd=ROOT, env=env,
                                    stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        rss = PeakRss(proc.pid)
        rss.start()
        out["log"] = str(log)
        try:
            await asyncio.to_thread(_wait_http, f"{base}/_stcore/health", timeout_s, proc)
            out["server_ready_s"] = round(time.perf_counter() - t0, 2)
            # All at once, as a team starting its morning: this is also when two pages are most
            # likely to draw the same free items.
            took = await asyncio.gather(*(_sign_in_and_review(p, base, copy.name, who, names[who], timeout_s)
                                          for who, p in pages.items()))
            out["sign_in_to_grid_s"] = {who: round(t, 2) for who, t in zip(pages, took)}
            say(f"  team: server up in {out['server_ready_s']} s; {len(pages)} reviewers signed in, grid in "
                f"{max(took):.1f} s at most")
            for who, p in pages.items():
                await p.screenshot(path=str(shots / f"team-{who}-signed-in.png"))
            out["overlap_before"] = overlap(await _shown(pages), _holders(copy))
            say(f"  overlap before the clicks: {out['overlap_before']['count']} "
                f"(cards shown: {out['overlap_before']['shown']})")

            recs = {who: {"shown_s": [], "wall_s": [], "items": [], "conflicts": []} for who in pages}
            out["clicks"] = recs  # filled as we go: kept if a later click fails
            before = {who: _decided_by(copy, who) for who in pages}
            halt, samples = asyncio.Event(), []
            watcher = asyncio.create_task(_watch(pages, copy, halt, 1.0, samples))
            t1 = time.perf_counter()
            try:
                await asyncio.gather(*(_click_loop(p, copy, who, clicks, timeout_s, recs[who], think_s)
                                       for who, p in pages.items()))
            finally:
                out["click_phase_s"] = round(time.perf_counter() - t1, 2)
                halt.set()
                await watcher
                out["overlap_during"] = {
                    "samples": len(samples), "samples_with_overlap": sum(1 for s in samples
                                                                        if s.get("shared") or s.get("not_theirs")),
                    "shared_items": sorted({i for s in samples for i in s.get("shared", [])}),
                    "not_theirs_items": sorted({i for s in samples for i in s.get("not_theirs", [])}),
                    "errors": sum(1 for s in samples if "error" in s)}
            out["decisions_stored"] = {who: _decided_by(copy, who) - before[who] for who in pages}
            with contextlib.closing(_db(copy)) as db:
                stored = {who: sorted(r[0] for r in db.execute("SELECT item_id FROM history WHERE reviewer = ?",
                                                               (who,))) for who in pages}
                twice = db.execute("SELECT COUNT(*) FROM (SELECT item_id FROM history GROUP BY item_id "
                                   "HAVING COUNT(*) > 1)").fetchone()[0]
            out["stored_as_clicked"] = {who: stored[who] == sorted(recs[who]["items"]) for who in pages}
            out["items_decided_twice"] = twice
            out["clicks_on_items_another_decided"] = {who: len(recs[who]["conflicts"]) for who in pages}
            out["overlap_after"] = overlap(await _shown(pages), _holders(copy))
            say(f"  overlap after the clicks: {out['overlap_after']['count']}; during: "
                f"{out['overlap_during']['samples_with_overlap']} of {out['overlap_during']['samples']} samples")
            for who, p in pages.items():
                await p.screenshot(path=str(shots / f"team-{who}-after-clicks.png"))

            out["reload"] = dict(zip(pages, await asyncio.gather(*(_reload_check(p, who, copy.name, timeout_s)
                                                                   for who, p in pages.items()))))
            out["reload_keeps_session"] = all(r["signed_in"] for r in out["reload"].values())
            out["overlap_after_reload"] = overlap(await _shown(pages), _holders(copy))
            for who, p in pages.items():
                await p.screenshot(path=str(shots / f"team-{who}-reloaded.png"))
            say(f"  reload keeps every session: {out['reload_keeps_session']}; overlap after the reload: "
                f"{out['overlap_after_reload']['count']}")
        except Exception as e:
            out["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            for who, p in pages.items():
                try:
                    await p.screenshot(path=str(shots / f"team-{who}-error.png"))
                except Exception:
                    pass
        finally:
            out["peak_rss_mb"] = round(rss.stop() / 2 ** 20, 1)
            stop_server(proc)
            await browser.close()


def bench_team(project_path: Path, *, reviewers: int = 4, clicks: int = 20, timeout_s: float = 180,
               think_s: float = 0.0, say=print) -> dict:
    """The steps above on a copy of the project at project_path; think_s: see _click_loop."""
    if not APP.exists():
        return {"skipped": "dashboard not available: dashboard/app.py does not exist yet"}
    if not Path(CHROMIUM).exists():
        return {"skipped": f"team work not measured: {CHROMIUM} is missing (apt-get install chromium)"}
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return {"skipped": "team work not measured: playwright is not installed"}
    from stcore import api
    from .common import machine

    project_path = Path(project_path).resolve()
    work = Path(tempfile.mkdtemp(prefix="team-", dir=project_path.parent))
    copy = Path(shutil.copytree(project_path, work / project_path.name))
    shots = Path(os.environ.get("STCORE_SCREENSHOTS") or work / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    project = api.open_project(copy)
    names = {f"reviewer{k + 1}": secrets.token_urlsafe(12) for k in range(reviewers)}
    for who, pw in names.items():
        api.add_user(project, who, "reviewer", pw)
    m = machine("cpu")
    out: dict = {"project": str(copy), "items": _count(copy, "pool"), "reviewers": list(names),
                 "clicks_per_reviewer": clicks,
                 "machine": {"cpu": m["cpu"], "cores": m["cores"]},
                 "load_average_at_start": [round(x, 2) for x in os.getloadavg()], "shots": str(shots),
                 "mode": "concurrent: async Playwright, asyncio.gather of one click loop per reviewer",
                 "think_s": think_s}
    asyncio.run(_run(copy, names, out, clicks=clicks, timeout_s=timeout_s, shots=shots, say=say, think_s=think_s))
    out["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]

    recs = out.get("clicks") or {}
    if recs:
        every = [x for r in recs.values() for x in r["shown_s"]]
        every_wall = [x for r in recs.values() for x in r["wall_s"]]
        out["accept_click_s"] = {"all": _stats(every), **{who: _stats(r["shown_s"]) for who, r in recs.items()}}
        out["accept_click_wall_s"] = {"all": _stats(every_wall),
                                      **{who: _stats(r["wall_s"]) for who, r in recs.items()}}
        if every:
            out["accept_click_p50_s"], out["accept_click_p95_s"] = out["accept_click_s"]["all"]["p50"], \
                out["accept_click_s"]["all"]["p95"]
        for r in recs.values():
            r["shown_s"] = [round(x, 3) for x in r["shown_s"]]
            r["wall_s"] = [round(x, 3) for x in r["wall_s"]]
    out["overlap_count_before"] = (out.get("overlap_before") or {}).get("count")
    out["overlap_count_after"] = (out.get("overlap_after") or {}).get("count")
    p95 = out.get("accept_click_p95_s")
    out["target"] = {"click_p95_s_max": 0.3, "met": bool(
        p95 is not None and p95 <= 0.3 and out["overlap_count_before"] == 0 and out["overlap_count_after"] == 0
        and not out.get("overlap_during", {}).get("samples_with_overlap") and out.get("reload_keeps_session")
        and not any((out.get("clicks_on_items_another_decided") or {}).values()) and not out.get("error"))}
    shutil.rmtree(copy, ignore_errors=True)  # the log and the screenshots stay in work
    return out


if __name__ == "__main__":
    import json
    import sys
    print(json.dumps(bench_team(Path(sys.argv[1]), clicks=int(sys.argv[2]) if len(sys.argv) > 2 else 3), indent=1))
