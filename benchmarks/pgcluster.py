"""A throwaway PostgreSQL cluster for the tests and the benchmarks: initdb and pg_ctl in a
temporary folder, on a Unix socket only, with no system service. As root (CI) the cluster runs
as the `postgres` user that Debian's package creates, since initdb refuses root."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path


def bindir() -> Path | None:
    """The folder of initdb and pg_ctl (Debian keeps them out of PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def why_not() -> str | None:
    """Why no cluster can be started here, or None."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed"
    if bindir() is None:
        return "PostgreSQL is not installed (Debian: apt-get install postgresql)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser"
    if os.geteuid() == 0:
        try:
            import pwd
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run the cluster as"
    return None


class Cluster:
    def __init__(self, base: Path | None = None):
        # Not under pytest's folder: it is private to root, and the cluster runs as postgres.
        import tempfile
        base = base or Path(tempfile.mkdtemp(prefix="stcore-pg-"))
        self.base, self.bin = base, bindir()
        self.data, self.sock = base / "data", base / "sock"
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        out = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=120)
        if out.returncode:
            raise RuntimeError(f"{' '.join(args)} failed: {out.stdout}{out.stderr}")

    def start(self) -> str:
        """Start the cluster; returns its URL (user postgres, trust authentication, the socket)."""
        self.sock.mkdir(parents=True)
        if self.as_user:
            import pwd
            pw = pwd.getpwnam("postgres")
            for d in (self.base, self.sock):
                os.chown(d, pw.pw_uid, pw.pw_gid)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync", "--locale=C")
        opts = f"-k {self.sock} -c listen_addresses='' -c fsync=off -c synchronous_commit=off " \
               f"-c full_page_writes=off -c max_connections=100"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.base / "log"),
                  "-w", "-t", "60", "start")
        return f"postgresql://postgres@/postgres?host={self.sock}"

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.base, ignore_errors=True)
