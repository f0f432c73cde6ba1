"""`stcore dashboard` as a user starts it: without --headless, on a machine where Streamlit has
never run (no ~/.streamlit/credentials.toml), from a terminal or not; and stopped with it."""
from __future__ import annotations

import os
import pty
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = pytest.mark.needs_fmnist


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).status == 200
    except OSError:
        return False


def port_free(port: int) -> bool:
    """Whether a new server could listen on port (as Streamlit does, with SO_REUSEADDR, so that
    closed connections waiting out TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait(cond, timeout: float, what: str, proc=None, log=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"stcore dashboard exited {proc.returncode} before {what}: {log() if log else ''}")
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}: {log() if log else ''}")


@pytest.fixture
def first_run_env(tmp_path):
    """A home where Streamlit never ran, and a display, so that the browser-opening path is taken
    (BROWSER=true: the 'browser' is a command that does nothing)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "STCORE_HOME": str(home / ".stcore"), "DISPLAY": ":99",
           "BROWSER": "true", "STCORE_THREADS": "1"}
    env.pop("STCORE_PASSWORD", None)
    return env


def test_dashboard_without_headless_serves_with_stdin_closed_and_sigterm_frees_the_port(trained_project, tmp_path,
                                                                                        first_run_env):
    port = free_port()
    log = tmp_path / "dashboard.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "stcore", "dashboard", str(trained_project.path),
                                 "--port", str(port)], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=first_run_env, cwd=tmp_path)
    try:
        wait(lambda: healthy(port), 90, "/_stcore/health to answer", proc, log.read_text)
        assert "Email" not in log.read_text()
        proc.send_signal(signal.SIGTERM)
        wait(lambda: port_free(port), 15, "the port to be free after SIGTERM", log=log.read_text)
        assert proc.wait(timeout=15) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()


def test_dashboard_in_a_terminal_serves_and_ctrl_c_stops_the_server(trained_project, tmp_path, first_run_env):
    port = free_port()
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "stcore", "dashboard", str(trained_project.path),
                             "--port", str(port)], stdin=slave, stdout=slave, stderr=slave, env=first_run_env,
                            cwd=tmp_path, start_new_session=True)  # its own session: the pty is its terminal
    os.close(slave)
    seen = bytearray()

    def read_tty() -> str:
        import select
        while select.select([master], [], [], 0)[0]:
            try:
                seen.extend(os.read(master, 4096))
            except OSError:
                break
        return seen.decode(errors="replace")
    try:
        wait(lambda: read_tty() is not None and healthy(port), 90, "/_stcore/health to answer", proc, read_tty)
        assert "Email" not in read_tty()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in that terminal sends
        wait(lambda: port_free(port), 15, "the port to be free after Ctrl-C", log=read_tty)
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
