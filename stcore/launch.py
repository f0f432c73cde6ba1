"""`stcore dashboard`: run the Streamlit app as a subprocess.

stcore never imports streamlit (nor the dashboard package): it finds dashboard/app.py on
disk and runs `python -m streamlit run app.py ... -- --project PATH`.
"""
from __future__ import annotations

import importlib.util
import ipaddress
import os
import subprocess
import sys
from pathlib import Path

LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


class LaunchError(ValueError):
    """The dashboard cannot start as asked; the message says what to do.
    (A ValueError, so `stcore` prints it as a one-line error like its other usage errors.)"""


def stcore_home() -> Path:
    return Path(os.environ.get("STCORE_HOME") or Path.home() / ".stcore").expanduser()


def default_project_path() -> Path:
    return stcore_home() / "fashion-mnist"


def is_local(address: str) -> bool:
    """True for addresses only this machine can reach (loopback)."""
    a = (address or "").strip().strip("[]")
    if a in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(a).is_loopback
    except ValueError:
        return False


def _secrets_password() -> str | None:
    """A 'password' in Streamlit's secrets.toml (~/.streamlit or ./.streamlit), if any."""
    import tomllib
    for p in (Path.cwd() / ".streamlit" / "secrets.toml", Path.home() / ".streamlit" / "secrets.toml"):
        try:
            with open(p, "rb") as f:
                value = tomllib.load(f).get("password")
        except (OSError, tomllib.TOMLDecodeError):
            continue
        if value:
            return str(value)
    return None


def password_configured() -> bool:
    return bool(os.environ.get("STCORE_PASSWORD") or _secrets_password())


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


def ensure_default_project(say=print) -> Path:
    """The default Fashion-MNIST project with 10 labels per class, created on first use."""
    from .project import DB, Project
    path = default_project_path()
    if not (path / DB).is_file():
        say(f"creating the default project in {path} (Fashion-MNIST, 10 labels per class)")
        Project.create(path, dataset="fashion-mnist", labels_per_class=10, progress=lambda m: say(f"  {m}"))
    return path


def command(project: Path, *, port: int, address: str, headless: bool) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(app_path()),
            "--server.address", address, "--server.port", str(int(port)),
            "--server.headless", "true" if headless else "false",
            "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal",
            "--", "--project", str(project)]


def launch(project: str | None = None, *, port: int = 8501, address: str = "127.0.0.1",
           headless: bool = False) -> int:
    """Start the dashboard on project (default: the Fashion-MNIST project in $STCORE_HOME) and
    wait for it. A non-local address needs a password (STCORE_PASSWORD or Streamlit secrets)."""
    from .project import Project
    if not is_local(address) and not password_configured():
        raise LaunchError(f"refusing to serve the dashboard on {address} without a password: anyone who "
                          f"can reach it could change your labels and start jobs. Set STCORE_PASSWORD "
                          f"(or 'password' in .streamlit/secrets.toml), or keep the default 127.0.0.1")
    path = Path(project).expanduser().resolve() if project else ensure_default_project()
    Project(path)  # a readable ProjectError now, rather than a broken page later
    cmd = command(path, port=port, address=address, headless=headless)
    host = f"[{address}]" if ":" in address else address
    print(f"stcore dashboard: http://{host}:{port}  (project {path}; Ctrl-C stops it)", flush=True)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 130
