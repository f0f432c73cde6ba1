"""The project's classes: a stable id and a name each. Labels, pseudo-labels and runs name a
class by its id, so a rename changes one row and nothing else."""
from __future__ import annotations

import time
from typing import Sequence

from ..errors import UsageError
from .engine import Engine


def clean_name(name: str) -> str:
    """A class name as stored: trimmed and non-empty."""
    s = str(name).strip()
    if not s:
        raise UsageError(f"a class name must be non-empty text, not {name!r}")
    return s


class Classes:
    def __init__(self, engine: Engine):
        self.e = engine

    def names(self) -> list[str]:
        """The class names, in id order (a model's output k is the class of id k)."""
        return [r[0] for r in self.e.all("SELECT name FROM classes ORDER BY id")]

    def ids(self) -> list[int]:
        return [r[0] for r in self.e.all("SELECT id FROM classes ORDER BY id")]

    def add(self, names: Sequence[str]) -> list[int]:
        """New classes, given the next ids; their ids. A name the project has is refused."""
        names = [clean_name(n) for n in names]
        if len({n.lower() for n in names}) < len(names):
            raise UsageError(f"the class names {', '.join(names)} repeat one; each class needs its own name")
        with self.e.tx():
            have = {n.lower(): n for n in self.names()}
            taken = [have[n.lower()] for n in names if n.lower() in have]
            if taken:
                raise UsageError(f"the project already has a class named {taken[0]!r}")
            first = self.e.one("SELECT COALESCE(MAX(id) + 1, 0) FROM classes")[0]
            ids = list(range(first, first + len(names)))
            self.e.executemany("INSERT INTO classes (id, name, created) VALUES (?, ?, ?)",
                               [(i, n, time.time()) for i, n in zip(ids, names)])
        return ids

    def rename(self, class_id: int, name: str) -> None:
        """Give class class_id a new name; its labels, pseudo-labels and runs keep pointing at it."""
        name = clean_name(name)
        with self.e.tx():
            clash = self.e.one("SELECT name FROM classes WHERE LOWER(name) = LOWER(?) AND id != ?", (name, class_id))
            if clash:
                raise UsageError(f"the project already has a class named {clash[0]!r}; choose another name")
            if self.e.execute("UPDATE classes SET name=? WHERE id=?", (name, int(class_id))).rowcount != 1:
                raise UsageError(f"no class has id {class_id}")
