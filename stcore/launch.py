"""`stcore dashboard`: run the Streamlit app as a child process, and stop it with us.

stcore never imports streamlit (nor the dashboard package): it finds dashboard/app.py on
disk and runs `python -m streamlit run app.py ... -- --project PATH`.
"""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import api
from .errors import LaunchError

STOP_GRACE_S = 10.0  # seconds the server has to stop after SIGTERM before it is killed


def app_path() -> Path:
    """dashboard/app.py of the installed (editable) dashboard package, found without importing it."""
    spec = importlib.util.find_spec("dashboard")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = Path(loc) / "app.py"
            if p.is_file():
                return p
    p = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
    if p.is_file():
        return p
    raise LaunchError("cannot find dashboard/app.py; reinstall stcore with its dashboard (pip install -e .)")


def has_display() -> bool:
    """Whether a browser window can be opened here (Streamlit's own test, made explicit)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def command(project: Path, *, port: int, address: str, headless: bool) -> list[str]:
    # -P (Python 3.11+): the current folder is not put on sys.path, so a user's click.py or
    # plotly.py there cannot shadow what Streamlit imports.
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    return [sys.executable, *safe_path, "-m", "streamlit", "run", str(app_path()),
            "--server.address", address, "--server.port", str(int(port)),
            "--server.headless", "true" if headless or not has_display() else "false",
            # Streamlit's first-run prompt would wait for an email on stdin before serving.
            "--server.showEmailPrompt", "false",
            "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal",
            # A full garbage collection after every rerun, with torch and numpy loaded, held the
            # server 50-100 ms before it sent a Review decision's result; Python's own collector
            # still runs as objects are made.
            "--runner.postScriptGC", "false",
            "--", "--project", str(project)]


def launch(project: str | None = None, *, port: int = 8501, address: str = "127.0.0.1",
           headless: bool = False) -> int:
    """Start the dashboard on project (default: the Fashion-MNIST project in $STCORE_HOME) and
    wait for it; SIGTERM, SIGINT and SIGHUP stop the server too. A non-local address needs a
    password (STCORE_PASSWORD or Streamlit secrets), or a project with accounts (people sign in)."""
    path = Path(project).expanduser().resolve() if project else api.ensure_default_project()
    opened = api.open_project(path)  # a readable ProjectError now, rather than a broken page later
    if not api.is_local(address) and not api.password_configured() and not api.has_users(opened):
        raise LaunchError(f"refusing to serve the dashboard on {address} without a password: anyone who "
                          f"can reach it could change your labels and start jobs. Add accounts (`stcore users "
                          f"{path} add NAME --role admin`), set STCORE_PASSWORD (or 'password' in "
                          f".streamlit/secrets.toml), or keep the default 127.0.0.1")
    host = f"[{address}]" if ":" in address else address
    print(f"stcore dashboard: http://{host}:{port}  (project {path}; Ctrl-C stops it)", flush=True)
    # Its own session: a Ctrl-C in the terminal reaches us, and we pass it on once.
    proc = subprocess.Popen(command(path, port=port, address=address, headless=headless),
                            stdin=subprocess.DEVNULL, start_new_session=True)
    return serve_until_stopped(proc)


def serve_until_stopped(proc: subprocess.Popen) -> int:
    """Wait for the server; a stop signal to us is passed on to it, and it is killed if it has
    not stopped STOP_GRACE_S later. Returns its exit code (128 + signal for a stop)."""
    stop = {"signal": None, "at": 0.0}

    def forward(signum, _frame):
        stop["signal"], stop["at"] = signum, time.monotonic()
        try:
            proc.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)
        except ProcessLookupError:
            pass
    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        while True:
            try:
                code = proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if stop["signal"] is not None and time.monotonic() - stop["at"] > STOP_GRACE_S:
                    proc.kill()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return 128 + stop["signal"] if stop["signal"] is not None else code
