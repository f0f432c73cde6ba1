"""The dashboard in a real browser: time to the first rendered Review page, time from a click on
Accept to the updated card, and the server's peak memory (RSS of the streamlit process tree).

Started as `stcore dashboard` starts it (stcore.launch.command). Driven with
Playwright and Debian's chromium (Playwright's own browser download is not needed).
"""
from __future__ import annotations

import math
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboard" / "app.py"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Streamlit marks its root element with the script's run state; a rerun is over once it leaves these.
_IDLE_JS = ("() => { const a = document.querySelector('[data-testid=\"stApp\"]');"
            " return !!a && !['running', 'rerunRequested'].includes(a.getAttribute('data-test-script-state'))"
            " && a.getAttribute('data-test-script-state') !== 'initial'; }")


def tree_rss_bytes(root: int) -> int:
    """Resident memory of a process and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    total, todo, page = 0, [root], os.sysconf("SC_PAGE_SIZE")
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * page
        except OSError:
            pass
        todo += children.get(pid, [])
    return total


class PeakRss(threading.Thread):
    def __init__(self, pid: int, every: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak = pid, every, 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.wait(self.every):
            self.peak = max(self.peak, tree_rss_bytes(self.pid))

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak


def stop_server(proc: subprocess.Popen) -> None:
    """Stop a dashboard server started in a session of its own: its whole process group."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"streamlit did not answer {url} within {timeout:.0f} s")


def _count(project: Path, table: str) -> int:
    with sqlite3.connect(f"file:{project / 'project.db'}?mode=ro", uri=True) as db:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def _decisions(project: Path) -> int:
    return _count(project, "history")


# The Review grid is one component in a shadow root; these run in the page.
_GRID = "document.querySelector('[data-testid=stBidiComponentIsolated]')?.shadowRoot"
# The browser's time of each click, taken before anything on the page handles it.
_CLOCK_JS = ("() => { if (!window.__benchClock) { window.__benchClock = true;"
             " document.addEventListener('click', () => { window.__clickAt = performance.now(); }, true); } }")
# Milliseconds from the click to the frame in which the item's card shows the server's answer:
# decided (its status no longer pending, not marked as being saved) or gone from the grid.
_SHOWN_JS = ("(id) => new Promise((resolve) => { const tick = () => { const root = " + _GRID + ";"
             " const card = root && root.querySelector(`.card[data-id=\"${id}\"]`);"
             " if (root && (!card || (card.dataset.status !== 'pending' && !card.classList.contains('saving'))))"
             " resolve(performance.now() - window.__clickAt); else requestAnimationFrame(tick); }; tick(); })")


def _accept_button(page):
    """The toolbar's Accept (key A) and the item it decides: the marked card."""
    item = page.evaluate(f"() => {_GRID}?.querySelector('.card.focus')?.dataset.id")
    button = page.locator(".bar button.primary")
    return (button, int(item)) if item and button.count() else None


def _card_accept_button(page):
    """The accept button of the first card still to decide, and its item."""
    item = page.evaluate(f"() => {_GRID}?.querySelector('.card[data-status=pending]:not(.saving)')?.dataset.id")
    return (page.locator(f".card[data-id='{item}'] button.accept"), int(item)) if item else None


def _time_clicks(page, project: Path, find, clicks: int, timeout_s: float, shown: list[float],
                 wall: list[float]) -> str | None:
    """Click the button find(page) returns, clicks times. shown gets each click's seconds from
    the browser's click event to its card showing the decision, measured in the page; wall gets
    the seconds from this script's click to the store holding the decision and the page idle
    (it includes Playwright's own checks before a click). A note when the button ran out."""
    page.evaluate(_CLOCK_JS)
    for _ in range(clicks):
        found = None
        for _ in range(25):  # the page may still be settling after the last click
            found = find(page)
            if found is not None:
                break
            time.sleep(0.2)
        if found is None:
            return "no Accept button left to click (nothing left to accept?)"
        button, item = found
        n_before = _decisions(project)
        t1 = time.perf_counter()
        button.click()
        shown.append(page.evaluate(_SHOWN_JS, item) / 1000)
        end = time.monotonic() + timeout_s
        while not (_decisions(project) > n_before and page.evaluate(f"() => ({_IDLE_JS})()")):
            if time.monotonic() > end:
                raise TimeoutError(f"the decision was not stored within {timeout_s} s of a click on Accept")
            time.sleep(0.01)
        wall.append(time.perf_counter() - t1)
        _raise_app_exception(page)
    return None


class AppException(RuntimeError):
    """The page shows a Streamlit exception box."""


def _raise_app_exception(page) -> None:
    box = page.locator('[data-testid="stException"]')
    if box.count():
        raise AppException("the page shows an exception: " + " ".join(box.first.inner_text().split())[:300])


def _open_review(page, base: str, timeout_s: float):
    """Go to the Review page (through the navigation, else by URL); returns its Accept button
    and the item it decides."""
    deadline = time.monotonic() + timeout_s
    page.goto(base)
    page.wait_for_function(_IDLE_JS, timeout=timeout_s * 1000)
    link = page.get_by_role("link", name=re.compile("review", re.I))
    if link.count():
        link.first.click()
    else:
        page.goto(base + "/Review")
    while time.monotonic() < deadline:
        page.wait_for_function(_IDLE_JS, timeout=max(1, deadline - time.monotonic()) * 1000)
        _raise_app_exception(page)
        b = _accept_button(page)
        if b is not None:
            return b
        time.sleep(0.2)
    raise TimeoutError("no Accept button appeared on the Review page")


def bench_dashboard(project: Path, *, clicks: int = 20, timeout_s: float = 180, say=print) -> dict:
    if not APP.exists():
        return {"skipped": "dashboard not available: dashboard/app.py does not exist yet"}
    if not Path(CHROMIUM).exists():
        return {"skipped": f"dashboard not measured: {CHROMIUM} is missing (apt-get install chromium)"}
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "dashboard not measured: playwright is not installed"}

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    from stcore.launch import command  # the dashboard as `stcore dashboard` starts it
    cmd = command(project, port=port, address="127.0.0.1", headless=True)
    log = project.parent / "dashboard-bench.log"
    out: dict = {"project": str(project), "items": _count(project, "pool")}
    with sync_playwright() as pw:
        # Launch the browser first: its start-up is not the dashboard's.
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        with open(log, "wb") as logf:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        rss = PeakRss(proc.pid)
        rss.start()
        try:
            _wait_http(f"{base}/_stcore/health", timeout_s, proc)
            out["server_ready_s"] = round(time.perf_counter() - t0, 2)
            _open_review(page, base, timeout_s)
            out["first_review_page_s"] = round(time.perf_counter() - t0, 2)
            say(f"  dashboard: server up in {out['server_ready_s']} s, Review page in "
                f"{out['first_review_page_s']} s")
            before = _decisions(project)
            # The toolbar's Accept (key A) decides the marked card; each card has its own accept.
            for name, find in (("accept_click", _accept_button), ("card_accept_click", _card_accept_button)):
                out[f"{name}_s"], out[f"{name}_wall_s"] = [], []  # filled as we go: kept if a later click fails
                note = _time_clicks(page, project, find, clicks, timeout_s, out[f"{name}_s"], out[f"{name}_wall_s"])
                if note:
                    out["note"] = note
                    break
            out["decisions_written"] = _decisions(project) - before
        except Exception as e:
            out["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            try:
                page.screenshot(path=str(project.parent / "dashboard-bench-error.png"))
            except Exception:
                pass
        finally:
            for name in ("accept_click", "card_accept_click", "accept_click_wall", "card_accept_click_wall"):
                if out.get(f"{name}_s"):
                    t = sorted(out[f"{name}_s"])
                    out[f"{name}_median_s"] = round(t[len(t) // 2], 3)
                    out[f"{name}_p95_s"] = round(t[min(len(t) - 1, math.ceil(0.95 * len(t)) - 1)], 3)
                    out[f"{name}_s"] = [round(x, 3) for x in out[f"{name}_s"]]
            out["peak_rss_mb"] = round(rss.stop() / 2 ** 20, 1)
            stop_server(proc)
            browser.close()
    out["log"] = str(log)
    return out


# ------------------------------------------------------------------ the Map's box and lasso
_SELECTED_JS = ("(old) => [...document.querySelectorAll('.st-key-mp_selection [data-testid=stMarkdownContainer]')]"
                ".map(e => e.innerText).find(t => t.includes(' selected') && t !== old) || null")


def _drag(page, mode: str, moves: int) -> dict:
    """Draw a lasso (a loop of moves mouse moves) or a box (moves moves to its far corner) over
    the middle of the map: the seconds the drag took (each move waits for the browser to take
    it, as a hand's moves wait for the page to keep up) and from the release to the selection
    panel showing the new count."""
    if mode == "box":
        page.locator(".st-key-mp_chart [data-attr='dragmode'][data-val='select']").first.click()
    plot = page.locator(".st-key-mp_chart .nsewdrag").last
    b = plot.bounding_box()
    cx, cy, r = b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, min(b["width"], b["height"]) / 4
    old = page.evaluate(_SELECTED_JS, "") or ""
    start = (cx + r, cy) if mode == "lasso" else (cx - r, cy - r)
    page.mouse.move(*start)
    t0 = time.perf_counter()
    page.mouse.down()
    for k in range(1, moves + 1):
        if mode == "lasso":
            page.mouse.move(cx + r * math.cos(2 * math.pi * k / moves), cy + r * math.sin(2 * math.pi * k / moves))
        else:
            page.mouse.move(cx - r + 2 * r * k / moves, cy - r + 2 * r * k / moves)
    t1 = time.perf_counter()
    page.mouse.up()
    text = page.wait_for_function(_SELECTED_JS, arg=old, timeout=180_000).json_value()
    t2 = time.perf_counter()
    page.wait_for_function(_IDLE_JS, timeout=180_000)
    return {f"{mode}_drag_s": round(t1 - t0, 2), f"{mode}_release_to_panel_s": round(t2 - t1, 2),
            f"{mode}_total_s": round(t2 - t0, 2), f"{mode}_selected": int(text.split()[0].replace(",", ""))}


def bench_map_selection(project: Path, *, moves: int = 40, timeout_s: float = 180, say=print) -> dict:
    """A lasso and a box on the Map page of project (which must have a map), in chromium at
    1280 px: see _drag. The first selection also pays for loading the images (thumbnails)."""
    from playwright.sync_api import sync_playwright
    from stcore.launch import command
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with sqlite3.connect(f"file:{project / 'project.db'}?mode=ro", uri=True) as db:
        points = db.execute("SELECT COUNT(*) FROM items WHERE split IN ('labeled', 'pool')").fetchone()[0]
    out: dict = {"project": str(project), "points": points, "moves": moves}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        with open(project.parent / "map-bench.log", "wb") as logf:
            proc = subprocess.Popen(command(project, port=port, address="127.0.0.1", headless=True), cwd=ROOT,
                                    stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_http(f"{base}/_stcore/health", timeout_s, proc)
            page.goto(f"{base}/map")
            page.locator(".st-key-mp_chart .nsewdrag").last.wait_for(timeout=timeout_s * 1000)
            page.wait_for_function(_IDLE_JS, timeout=timeout_s * 1000)
            page.wait_for_timeout(1000)
            for mode in ("lasso", "box"):
                out.update(_drag(page, mode, moves))
                say(f"  map {mode}: drag {out[f'{mode}_drag_s']} s, release to panel "
                    f"{out[f'{mode}_release_to_panel_s']} s ({out[f'{mode}_selected']:,} selected)")
                _raise_app_exception(page)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
            browser.close()
    return out


if __name__ == "__main__":
    import json
    print(json.dumps(bench_map_selection(Path(sys.argv[1]).resolve()), indent=1))
