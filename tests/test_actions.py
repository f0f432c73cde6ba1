"""The one table of review actions (stcore/actions.py): every face reads it, nothing else lists
the actions, and an entry added to it is offered by the API, the CLI and the grid."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import make_store
from dashboard import figures, grid
from stcore import actions, api
from stcore.actions import ACTIONS, LABELED, REVIEW_STATUSES, Action
from stcore.cli import main
from stcore.errors import UsageError
from stcore.store import STATUSES

REPO = Path(__file__).resolve().parents[1]
SCRIPT = (REPO / "dashboard" / "review_grid.js").read_text()
# A new action, as a contributor would add it: one entry (it sets an existing status).
DISMISS = Action("dismiss", "rejected", "Dismissed", "Dismiss", "dismiss: not worth a label", key="d", symbol="–",
                 offered_for=("pending", "accepted"))


@pytest.fixture
def project(tmp_path):
    make_store(tmp_path / "project.db", 40).close()
    return api.open_project(tmp_path)


@pytest.fixture
def with_dismiss(monkeypatch):
    monkeypatch.setitem(ACTIONS, DISMISS.name, DISMISS)  # api.ACTIONS is the same table
    return DISMISS


def test_the_table_is_consistent():
    assert api.ACTIONS is ACTIONS and STATUSES == api.STATUSES == tuple(REVIEW_STATUSES)
    for a in ACTIONS.values():
        assert a.status in REVIEW_STATUSES, a
        assert set(a.offered_for) <= {*STATUSES, LABELED.name}, a
        assert a.verb and a.label and a.help and a.color == REVIEW_STATUSES[a.status].color
    keys = [a.key for a in ACTIONS.values() if a.key]
    assert len(keys) == len(set(keys)) and all(len(k) == 1 and k.islower() for k in keys)
    assert len([a for a in grid.actions().values() if a.needs_class]) == 1  # the class keys and the list serve one
    for s in [*REVIEW_STATUSES.values(), LABELED]:
        assert re.fullmatch(r"#[0-9A-F]{6}", s.color), s


def test_the_grid_script_lists_no_action_and_its_own_keys_leave_the_actions_keys_free():
    for name in ACTIONS:
        assert f'"{name}"' not in SCRIPT and f"'{name}'" not in SCRIPT, name
    own = set(re.findall(r'lower === "(\w)"', SCRIPT))  # F fix, S similar, N and P pages, U undo, J and K
    assert {"f", "s", "n", "p", "u"} <= own
    for a in grid.actions().values():
        assert a.key not in own and a.key not in grid.NUMBER_KEYS, a
    css = (REPO / "dashboard" / "review_grid.css").read_text()
    assert not any(re.search(rf"\.{name}\b", css) for name in ACTIONS)


def test_the_figures_and_the_grid_colour_a_status_as_the_table_does():
    assert figures.STATUS_COLORS == {**{n: s.color for n, s in REVIEW_STATUSES.items()}, "labeled": LABELED.color}
    assert list(figures.STATUS_COLORS)[-1] == "labeled"  # drawn last, on top
    row = {"id": 3, "status": "rejected", "pred": 1, "confidence": 0.5, "label": None}
    assert grid.card(row, ["a", "b"], "", searchable=False)["sub_status"]["tint"] == REVIEW_STATUSES["rejected"].color


@pytest.mark.parametrize("name", list(ACTIONS))
def test_every_action_works_through_the_api_and_undoes(project, name):
    a = ACTIONS[name]
    if a.status == "pending":
        api.review(project, [5], "reject")  # something to reset
    n = api.review(project, [5], name, 2 if a.needs_class else None, reviewer="ann")
    row = api.items(project, [5])[0]
    assert n == 1 and row["status"] == a.status
    if a.needs_class:
        assert row["label"] == 2
    if a.undoable:
        api.undo(project, "ann")
        assert api.items(project, [5])[0]["status"] == ("rejected" if a.status == "pending" else "pending")


@pytest.mark.parametrize("name", list(ACTIONS))
def test_every_action_is_one_option_of_stcore_review(project, name, capsys):
    a = ACTIONS[name]
    if a.status == "pending":
        api.review(project, [7, 8], "reject")
    specs = ["7=3", "8=4"] if a.needs_class else ["7", "8"]
    assert main(["review", str(project.path), f"--{name}", *specs]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[a.verb.lower()] == 2 and [r["status"] for r in api.items(project, [7, 8])] == [a.status] * 2


def test_the_api_refuses_an_action_not_in_the_table(project):
    with pytest.raises(UsageError, match="unknown review action 'dismiss'; use accept, reject, correct, reset"):
        api.review(project, [1], "dismiss")


def test_one_entry_in_the_table_is_enough_for_a_new_action(project, with_dismiss, capsys):
    assert api.review(project, [1], "dismiss") == 1 and api.items(project, [1])[0]["status"] == "rejected"
    assert main(["review", str(project.path), "--dismiss", "2", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["dismissed"] == 2
    # the grid offers it on the cards its entry names, checks it in an operation, and sends it to the script
    pending = {"id": 4, "status": "pending", "pred": 1, "confidence": 0.5, "label": None}
    assert grid.card(pending, ["a", "b"], "", searchable=False)["can"]["dismiss"]
    done = {}
    ops = list(grid.new_ops({"ops": {"instance": "t", "ops": [{"seq": 1, "kind": "decide", "ids": [4],
                                                                "action": "dismiss", "label": None}]}}, done, 2))
    assert ops == [{"kind": "decide", "ids": [4], "action": "dismiss", "label": None, "new_class": None,
                    "expect": None}]
    assert "dismiss" in [a["name"] for a in actions.table()]


@pytest.mark.parametrize("action", ["approve", ["accept"], None, 3])
def test_the_grid_skips_an_operation_with_an_action_not_in_the_table(action):
    op = {"seq": 1, "kind": "decide", "ids": [4], "action": action, "label": None}
    assert list(grid.new_ops({"ops": {"instance": "t", "ops": [op]}}, {}, 2)) == []
