"""Who may reach the dashboard, and where stcore keeps its projects by default. Light: no torch."""
from __future__ import annotations

import ipaddress
import os
from pathlib import Path

LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


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


def secrets_password() -> str | None:
    """A 'password' in Streamlit's secrets.toml (./.streamlit or ~/.streamlit), if any."""
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
    return bool(os.environ.get("STCORE_PASSWORD") or secrets_password())
