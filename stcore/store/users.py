"""The project's accounts: names with a role and a password hash, signed-in sessions (by the
hash of their token, never the token), and failed sign-ins per name. Policy (hashing, checks,
roles) is in stcore/accounts.py; this is the SQL only."""
from __future__ import annotations

import time

from .engine import Engine


class Users:
    def __init__(self, engine: Engine):
        self.e = engine

    def count(self) -> int:
        return self.e.one("SELECT COUNT(*) FROM users")[0]

    def list(self) -> list[dict]:
        """Every account without its hash: name, role, created; by name."""
        return [{"name": r[0], "role": r[1], "created": r[2]}
                for r in self.e.all("SELECT name, role, created FROM users ORDER BY name")]

    def get(self, name: str) -> tuple[str, str] | None:
        """(role, password hash) of an account, or None."""
        row = self.e.one("SELECT role, hash FROM users WHERE name=?", (name,))
        return (row[0], row[1]) if row else None

    def add(self, name: str, role: str, hash_: str) -> bool:
        """A new account; False (nothing written) when the name is taken."""
        with self.e.tx():
            return self.e.execute("INSERT INTO users (name, role, hash, created) VALUES (?, ?, ?, ?) "
                                  "ON CONFLICT (name) DO NOTHING", (name, role, hash_, time.time())).rowcount == 1

    def remove(self, name: str) -> bool:
        """Delete an account and sign it out everywhere; False when there was none."""
        with self.e.tx():
            self.e.execute("DELETE FROM sessions WHERE name=?", (name,))
            return self.e.execute("DELETE FROM users WHERE name=?", (name,)).rowcount == 1

    def count_role(self, role: str) -> int:
        return self.e.one("SELECT COUNT(*) FROM users WHERE role=?", (role,))[0]

    # -- sessions --------------------------------------------------------------------------
    def open_session(self, token_hash: str, name: str) -> None:
        now = time.time()
        with self.e.tx():
            self.e.execute("INSERT INTO sessions (token, name, created, seen) VALUES (?, ?, ?, ?)",
                           (token_hash, name, now, now))

    def session(self, token_hash: str, max_idle: float) -> tuple[str, str] | None:
        """(name, role) of a session seen within max_idle seconds (its time is renewed), or None;
        an older one is deleted."""
        now = time.time()
        with self.e.tx():
            row = self.e.one("SELECT s.name, u.role, s.seen FROM sessions s JOIN users u ON u.name = s.name "
                             "WHERE s.token=?", (token_hash,))
            if row is None:
                return None
            if now - row[2] > max_idle:
                self.e.execute("DELETE FROM sessions WHERE token=?", (token_hash,))
                return None
            self.e.execute("UPDATE sessions SET seen=? WHERE token=?", (now, token_hash))
            return row[0], row[1]

    def close_session(self, token_hash: str) -> None:
        with self.e.tx():
            self.e.execute("DELETE FROM sessions WHERE token=?", (token_hash,))

    # -- failed sign-ins --------------------------------------------------------------------
    def failures(self, name: str) -> tuple[int, float]:
        """(failed sign-ins in a row, time of the last) for a name, whether it exists or not."""
        row = self.e.one("SELECT n, at FROM sign_in_failures WHERE name=?", (name,))
        return (row[0], row[1]) if row else (0, 0.0)

    def fail(self, name: str) -> int:
        with self.e.tx():
            self.e.execute("INSERT INTO sign_in_failures (name, n, at) VALUES (?, 1, ?) ON CONFLICT (name) "
                           "DO UPDATE SET n = sign_in_failures.n + 1, at = excluded.at", (name, time.time()))
            return self.e.one("SELECT n FROM sign_in_failures WHERE name=?", (name,))[0]

    def clear_failures(self, name: str) -> None:
        with self.e.tx():
            self.e.execute("DELETE FROM sign_in_failures WHERE name=?", (name,))
