"""Accounts on a project: who may sign in, with which role, and what each role may do. Policy
only; the SQL is in store/users.py. A project with no account is open to whoever reaches it
(the dashboard's own password and loopback rule still apply).

- Passwords are hashed with scrypt (the standard library's hashlib; memory-hard: N=2**14, r=8,
  16 MiB a hash), each with its own random salt. Sessions are random tokens; the store keeps
  their SHA-256 only, so a copy of the store signs nobody in.
- A wrong password and an unknown name get the same answer, after the same work (an unknown
  name is checked against a dummy hash). After FREE_TRIES failures in a row for a name (known
  or not) each further try waits twice as long as the one before, up to MAX_WAIT seconds.
- Roles: a reviewer decides items, undoes their own actions and sees their own history; an
  admin may also do everything in ADMIN_ONLY. Every check is here, called by the API and the
  dashboard's server side, never left to a hidden button.
"""
from __future__ import annotations

import hashlib
import hmac
import math
import os
import secrets
import time

from .errors import AccessError, UsageError

ROLES = ("admin", "reviewer")
ADMIN_ONLY = {
    "bulk": "make bulk decisions",
    "classes": "edit the classes",
    "runs": "start or stop runs",
    "users": "manage accounts",
    "all_history": "see everyone's history",
    "undo_any": "undo another person's action",
    "settle": "settle a conflict, or change a decision, when several people decide each item",
    "team": "change how many people decide each item",
}
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}
MIN_PASSWORD = 8
FREE_TRIES = 5
MAX_WAIT = 60.0            # seconds between tries at most, however many failures
MAX_IDLE = 12 * 3600.0     # a session unused this long is signed out
WRONG = "wrong name or password"
_dummy: list[str] = []     # the hash an unknown name is checked against (made once)


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    key = hashlib.scrypt(password.encode(), salt=salt, dklen=32, maxmem=64 * 2 ** 20, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${salt.hex()}${key.hex()}"


def verify(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, key = stored.split("$")
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(key) // 2, maxmem=64 * 2 ** 20)
    except (ValueError, TypeError):
        return False
    return kind == "scrypt" and hmac.compare_digest(got.hex(), key)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def clean_user_name(name: str) -> str:
    s = str(name).strip()
    if not s or len(s) > 64 or any(c.isspace() or not c.isprintable() for c in s):
        raise UsageError(f"a user name is 1 to 64 printable characters without spaces, not {name!r}")
    return s


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}; use {' or '.join(ROLES)}")
    return role


def add(users, name: str, role: str = "reviewer", password: str | None = None) -> str | None:
    """A new account; the generated password when none was given (shown once, never stored)."""
    name, role = clean_user_name(name), check_role(role)
    made = None
    if password is None:
        password = made = secrets.token_urlsafe(12)
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"a password needs at least {MIN_PASSWORD} characters; leave it out to have one generated")
    if not users.add(name, role, hash_password(password)):
        raise UsageError(f"the project already has a user named {name!r}")
    return made


def remove(users, name: str) -> None:
    got = users.get(name)
    if got is None:
        raise UsageError(f"the project has no user named {name!r}; `stcore users P list` shows them")
    if got[0] == "admin" and users.count_role("admin") == 1 and users.count() > 1:
        raise UsageError(f"{name!r} is the project's only admin, and others have accounts; make another admin first")
    users.remove(name)


def wait_left(users, name: str, now: float | None = None) -> float:
    """Seconds before a name may try again (0: now)."""
    n, last = users.failures(name)
    if n < FREE_TRIES:
        return 0.0
    wait = min(MAX_WAIT, 2.0 ** (n - FREE_TRIES))
    return max(0.0, last + wait - (time.time() if now is None else now))


def sign_in(users, name: str, password: str) -> str:
    """A new session's token for a right name and password; AccessError otherwise, the same for
    an unknown name as for a wrong password."""
    name = str(name).strip()
    if (left := wait_left(users, name)) > 0:
        raise AccessError(f"too many failed sign-ins for this name; try again in {math.ceil(left)} s")
    got = users.get(name)
    if not _dummy:
        _dummy.append(hash_password(secrets.token_urlsafe(16)))
    ok = verify(str(password), got[1] if got else _dummy[0]) and got is not None
    if not ok:
        users.fail(name)
        raise AccessError(WRONG)
    users.clear_failures(name)
    token = secrets.token_urlsafe(32)
    users.open_session(token_hash(token), name)
    return token


def session(users, token: str | None) -> dict | None:
    """{'name', 'role'} of a live session, or None."""
    if not isinstance(token, str) or not token:
        return None
    got = users.session(token_hash(token), MAX_IDLE)
    return {"name": got[0], "role": got[1]} if got else None


def allowed(user: dict | None, action: str) -> bool:
    """Whether user (None: a project with no accounts, open to all) may take action."""
    return user is None or user["role"] == "admin" or action not in ADMIN_ONLY


def require(user: dict | None, action: str) -> None:
    if not allowed(user, action):
        raise AccessError(f"{user['name']} is a {user['role']}; only an admin may {ADMIN_ONLY[action]}")
