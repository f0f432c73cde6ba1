"""Overlap, conflicts and agreement (stcore/api/team.py, store/votes.py, stcore/agreement.py):
with overlap K an item counts once K reviewers decided it alike; a disagreement waits for an
admin; kappa is checked against a hand computation."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from stcore import api
from stcore.agreement import cohen_kappa
from stcore.errors import AccessError, UsageError
from stcore.project import Project

from conftest import make_store


@pytest.fixture
def project(new_engine, tmp_path):
    """A project of 40 pseudo-labeled pool items (item i predicted i % 10), on both engines."""
    folder = tmp_path / "p"
    folder.mkdir()
    s = make_store(new_engine("p/project.db"), 40)
    if s.engine.name == "postgresql":  # the folder points at the server's schema
        from stcore.store import location
        location._write_pointer(folder, s.engine.url, s.engine.schema)
    s.close()
    return Project(folder)


def page(p, who, limit=6):
    return [r["id"] for r in api.review_page(p, statuses=["pending"], order="id", limit=limit, free_for=who)]


def test_an_item_counts_once_k_reviewers_agree_and_a_disagreement_waits_for_an_admin(project):
    p = project
    api.set_overlap(p, 2)
    assert api.review(p, [0, 1, 2], "accept", reviewer="ann") == 3
    assert api.counts(p)["accepted"] == 0  # one vote of two: nothing counts yet
    assert page(p, "ann") == [3, 4, 5, 6, 7, 8]  # ann is not shown what she voted on; bob is
    assert page(p, "bob")[:3] == [0, 1, 2]
    assert api.review(p, [0], "accept", reviewer="bob") == 1
    assert [r["status"] for r in p.store.queue.rows([0])] == ["accepted"]  # two alike: decided
    assert api.history(p, 0)[0]["reviewer"] == "bob"
    api.review(p, [1], "correct", "5", reviewer="bob")
    api.review(p, [2], "reject", reviewer="bob")
    assert api.counts(p)["pending"] == 39 and api.count_conflicts(p) == 2
    conflicts = api.conflicts(p)
    assert [c["id"] for c in conflicts] == [1, 2]
    assert conflicts[0]["votes"] == [["ann", "1"], ["bob", "5"]] and conflicts[1]["votes"][1] == ["bob", "rejected"]
    assert 1 not in page(p, "cy") and 2 not in page(p, "cy")  # two people decided: nobody else is asked
    with pytest.raises(AccessError, match="an admin settles"):
        api.review(p, [1, 2], "correct", "5", reviewer="cy", may_settle=False)
    assert api.count_conflicts(p) == 2  # refused as a whole
    with pytest.raises(AccessError, match="already decided"):
        api.review(p, [0], "reject", reviewer="cy", may_settle=False)  # changing a decided item is settling too
    assert api.set_label(p, [1], "5", reviewer="ann-admin") == 1  # an admin settles
    assert [(r["status"], r["label"]) for r in p.store.queue.rows([1])] == [("corrected", 5)]
    assert api.count_conflicts(p) == 1


def test_undo_takes_back_a_vote_and_the_decision_it_completed(project):
    p = project
    api.set_overlap(p, 2)
    api.review(p, [3], "accept", reviewer="ann")
    api.review(p, [3], "accept", reviewer="bob")
    api.review(p, [4], "accept", reviewer="ann")
    assert api.last_action(p, "bob")["new_status"] == "voted" and api.last_action(p, "ann")["n"] == 1
    assert api.undo(p, "bob") == 1  # bob's vote on 3, and the acceptance it completed
    assert [r["status"] for r in p.store.queue.rows([3])] == ["pending"]
    assert [v[0] for v in p.store.votes.of([3])[3]] == ["ann"]  # ann's vote stays
    assert api.undo(p, "ann") == 1 and 4 not in p.store.votes.of([4])  # ann's newest: her vote on 4
    assert 3 in page(p, "bob")  # bob is asked again
    api.review(p, [5], "reject", reviewer="ann")
    api.review(p, [5], "reject", reviewer="bob")
    assert [r["status"] for r in p.store.queue.rows([5])] == ["rejected"]
    assert api.review(p, [5], "reset", reviewer="admin") == 1  # back to pending: K people decide it again
    assert 5 not in p.store.votes.of([5]) and 5 in page(p, "ann")


def test_bad_overlap_is_refused():
    with pytest.raises(UsageError, match="from 1 to 10, not 0"):
        api.set_overlap(None, 0)


def test_cohen_kappa_against_a_hand_computation():
    a = [0, 0, 0, 0, 0, 1, 1, 1, 1, None]
    b = [0, 0, 0, 0, 1, 1, 1, 1, 0, None]
    # p_o = 8/10; both say 0 five times, 1 four times, rejected once: p_e = (25 + 16 + 1) / 100
    assert cohen_kappa(a, b) == pytest.approx((0.8 - 0.42) / (1 - 0.42))
    assert cohen_kappa([1, 1], [1, 1]) is None  # one category only: chance cannot be told apart
    assert cohen_kappa([0, 1], [1, 0]) == pytest.approx(-1.0)


def test_agreement_with_planted_disagreements(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    make_store(folder / "project.db", 40).close()
    p = Project(folder)
    api.set_overlap(p, 2)
    ann = [0, 0, 0, 0, 0, 1, 1, 1, 1, None]
    bob = [0, 0, 0, 0, 1, 1, 1, 1, 0, None]
    for item, (x, y) in enumerate(zip(ann, bob)):
        for who, c in (("ann", x), ("bob", y)):
            api.review(p, [item], "reject", reviewer=who) if c is None else \
                api.review(p, [item], "correct", c, reviewer=who)
    assert api.conflicts(p) and [c["id"] for c in api.conflicts(p)] == [4, 8]
    api.review(p, [4], "correct", 0, reviewer="admin")  # settled as ann said
    api.review(p, [8], "correct", 1, reviewer="admin")
    out = api.agreement(p)
    assert out["items"] == 10 and out["votes"] == 20 and out["open_conflicts"] == 0
    pair = out["pairs"][0]
    assert (pair["a"], pair["b"], pair["items"], pair["agreement"]) == ("ann", "bob", 10, 0.8)
    assert pair["kappa"] == round(0.38 / 0.58, 4) == out["overall"]["kappa"]
    # specific agreement: class 0 said 10 times in pairs, 4 pairs alike (8); class 1: 8 and 3 (6); rejected 2 and 1
    assert out["per_class"] == [{"class": "0", "votes": 10, "agreement": 0.8},
                                {"class": "1", "votes": 8, "agreement": 0.75},
                                {"class": "rejected", "votes": 2, "agreement": 1.0}]
    assert out["reviewers_vs_settled"] == [{"reviewer": "ann", "items": 10, "agreement": 1.0},
                                           {"reviewer": "bob", "items": 10, "agreement": 0.8}]
    cli = subprocess.run([sys.executable, "-m", "stcore", "agreement", str(folder), "--json"],
                         capture_output=True, text=True)
    assert cli.returncode == 0 and json.loads(cli.stdout)["pairs"] == out["pairs"]
    text = subprocess.run([sys.executable, "-m", "stcore", "agreement", str(folder)], capture_output=True, text=True)
    assert "ann & bob: 10 items, agreement 80.0%, kappa 0.655" in text.stdout


def test_settings_and_conflicts_from_the_cli(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    make_store(folder / "project.db", 20).close()

    def run(*args):
        return subprocess.run([sys.executable, "-m", "stcore", *args], capture_output=True, text=True)
    assert json.loads(run("settings", str(folder), "--json").stdout) == {"overlap": 1}
    assert "no open conflicts (overlap is 1" in run("conflicts", str(folder)).stdout
    assert json.loads(run("settings", str(folder), "--overlap", "2", "--json").stdout) == {"overlap": 2}
    bad = run("settings", str(folder), "--overlap", "11")
    assert bad.returncode == 2 and "from 1 to 10, not 11" in bad.stderr
    for who, c in (("ann", "3"), ("bob", "4")):
        assert run("review", str(folder), "--correct", f"7={c}", "--reviewer", who).returncode == 0
    listed = json.loads(run("conflicts", str(folder), "--json").stdout)
    assert listed == {"overlap": 2, "conflicts": [{"id": 7, "pred": "7", "votes": [["ann", "3"], ["bob", "4"]]}]}
    assert run("review", str(folder), "--correct", "7=3").returncode == 0  # the CLI is the admin's: it settles
    assert json.loads(run("conflicts", str(folder), "--json").stdout)["conflicts"] == []


# ------------------------------------------------------------------ the dashboard
from test_dashboard import app, decide_op, grid_data, grid_send, no_errors  # noqa: E402,F401 (app: a fixture)
from test_users import on_review, team_of_two  # noqa: E402


def test_votes_conflicts_and_the_team_page_in_the_dashboard(app, trained_project):
    p = trained_project
    team_of_two(p)  # ann admin, bob reviewer
    api.set_overlap(p, 2)
    bob = on_review(app, p, "bob", "another horse")
    assert not [o for o in bob.segmented_control(key="rv_view").options if "conflicts" in o]  # reviewers do not settle
    first = grid_data(bob)["cards"][0]["id"]
    grid_send(bob, decide_op([first], "correct", 1))
    assert "your vote, counted once 2 reviewers agree" in grid_data(bob)["message"]["text"]
    assert first not in {c["id"] for c in grid_data(bob)["cards"]}  # bob is not asked twice
    ann = on_review(app, p, "ann", "correct horse")
    grid_send(ann, {"kind": "page", "page": 1})
    api.review(p, [first], "correct", 2, reviewer="ann", may_settle=False)  # ann's vote differs: a conflict
    ann.run()
    view = ann.segmented_control(key="rv_view")
    assert "conflicts (1)" in view.options
    view.set_value("conflicts").run()
    card = grid_data(ann)["cards"][0]
    assert card["id"] == first and card["note"] == f"votes: bob {p.classes[1]}, ann {p.classes[2]}"
    grid_send(ann, decide_op([first], "correct", 2))  # the admin settles it
    assert [(r["status"], r["label"]) for r in p.store.queue.rows([first])] == [("corrected", 2)]
    ann.switch_page("views/team.py").run()
    no_errors(ann, "team")
    shown = {m.label: m.value for m in ann.metric}
    # one item, two different classes: agreement 0, and kappa 0 (p_o = p_e = 0)
    assert (shown["Pairwise agreement"], shown["Cohen's kappa"], shown["Open conflicts"]) == ("0.0%", "0.000", "0")
    assert ann.number_input(key="tm_overlap").value == 2
    assert set(ann.dataframe[0].value["reviewer"]) == {"ann", "bob"}  # who did how much
    bob.switch_page("views/team.py").run()
    no_errors(bob, "team")
    assert list(bob.dataframe[0].value["reviewer"]) == ["bob"]  # a reviewer sees their own work
    assert set(bob.dataframe[-1].value["reviewer"]) == {"bob"}  # and their own history
    assert not [n for n in bob.number_input if n.key == "tm_overlap"]  # and no settings


def test_lowering_the_overlap_decides_what_enough_people_already_agreed_on(project):
    p = project
    api.set_overlap(p, 3)
    for who in ("ann", "bob"):
        api.review(p, [10], "correct", "4", reviewer=who)
        api.review(p, [11], "accept", reviewer=who)
    api.review(p, [12], "reject", reviewer="ann")
    api.review(p, [12], "accept", reviewer="bob")
    assert api.counts(p)["pending"] == 40  # two votes of three on each
    api.set_overlap(p, 2)
    rows = {r["id"]: (r["status"], r["label"], r["reviewer"]) for r in p.store.queue.rows([10, 11, 12])}
    assert rows == {10: ("corrected", 4, "bob"), 11: ("accepted", 11 % 10, "bob"), 12: ("pending", None, None)}
    assert api.conflicts(p)[0]["id"] == 12
    assert api.undo(p, "bob") == 1  # bob's newest action: his vote on 12
    assert api.undo(p, "bob") == 1  # then his vote on 11, and the decision it now completed
    assert [r["status"] for r in p.store.queue.rows([10, 11])] == ["corrected", "pending"]
    assert [v[0] for v in p.store.votes.of([11])[11]] == ["ann"] and 11 in page(p, "bob", 20)  # bob is asked again


def test_an_admin_manages_accounts_on_the_team_page_and_a_reviewer_cannot(app, small_project):
    p = small_project
    at = app(p, "team")
    no_errors(at, "team")
    assert at.selectbox[0].options == ["admin"]  # the first account is an admin
    at.text_input[0].set_value("ann")
    at.get("form_submit_button")[0].click().run()
    assert any("type a password for the first account" in e.value for e in at.error) and not api.users(p)
    at.text_input[0].set_value("ann")
    at.text_input[1].set_value("correct horse")
    at.get("form_submit_button")[0].click().run()
    assert [u["name"] for u in api.users(p)] == ["ann"] and not at.main.code  # a given password is not shown
    at = on_review(app, p, "ann", "correct horse")  # accounts now: everyone signs in
    at.switch_page("views/team.py").run()
    at.text_input[0].set_value("cy")
    at.get("form_submit_button")[0].click().run()
    made = [c.value for c in at.main.code]
    assert len(made) == 1 and api.signed_in(p, api.sign_in(p, "cy", made[0]))["role"] == "reviewer"
    at.selectbox(key="tm_remove_who").set_value("cy").run()
    at.button(key="tm_remove").click().run()
    assert [u["name"] for u in api.users(p)] == ["ann"]
    api.add_user(p, "bob", "reviewer", "another horse")
    bob = on_review(app, p, "bob", "another horse")
    bob.switch_page("views/team.py").run()
    assert not any(s.value == "Accounts" for s in bob.subheader)  # a reviewer does not manage accounts
