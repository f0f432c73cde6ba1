"""Accounts on a project (stcore/accounts.py): add, list, remove; sign in and out; what a role may do."""
from __future__ import annotations

from .. import accounts
from ..accounts import ADMIN_ONLY, ROLES  # noqa: F401 (the faces read them here)
from ..errors import AccessError
from ..project import Project


def has_users(project: Project) -> bool:
    """Whether the project asks people to sign in."""
    return project.store.users.count() > 0


def users(project: Project) -> list[dict]:
    """Every account: name, role, created (never a hash)."""
    return project.store.users.list()


def add_user(project: Project, name: str, role: str = "reviewer", password: str | None = None) -> dict:
    """{'name', 'role', 'password'}: the password only when it was generated (shown once, not stored)."""
    made = accounts.add(project.store.users, name, role, password)
    return {"name": accounts.clean_user_name(name), "role": role, **({"password": made} if made else {})}


def remove_user(project: Project, name: str) -> None:
    """Delete an account and end its sessions (refused for the only admin while others have accounts)."""
    accounts.remove(project.store.users, name)


def sign_in(project: Project, name: str, password: str) -> str:
    """A session token for a right name and password (AccessError otherwise, slowed after repeated failures)."""
    return accounts.sign_in(project.store.users, name, password)


def signed_in(project: Project, token: str | None) -> dict | None:
    """{'name', 'role'} of the session with this token, or None (none, ended, or idle too long)."""
    return accounts.session(project.store.users, token)


def account_of(project: Project, identity: str | None) -> dict:
    """{'name', 'role'} of the account named identity (the e-mail an OpenID Connect provider
    vouched for; the same name in another case will do), or AccessError saying how to get one."""
    if identity:
        for u in project.store.users.list():
            if u["name"] == identity or u["name"].casefold() == identity.casefold():
                return {"name": u["name"], "role": u["role"]}
    raise AccessError(
        f"{identity or 'this sign-in'} has no account on this project; an admin adds one with "
        f"`stcore users {project.path} add {identity or 'NAME'}` (the generated password is not needed)")


def sign_out(project: Project, token: str | None) -> None:
    if token:
        project.store.users.close_session(accounts.token_hash(token))


def allowed(user: dict | None, action: str) -> bool:
    """Whether user ({'name', 'role'}, or None on a project without accounts) may take an action of ADMIN_ONLY."""
    return accounts.allowed(user, action)


def require(user: dict | None, action: str) -> None:
    """AccessError unless user may take action."""
    accounts.require(user, action)
