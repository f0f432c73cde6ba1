"""Accounts and roles (stcore/accounts.py, store/users.py, `stcore users`): hashed passwords, one
answer for a wrong password and an unknown name, slowed repeated failures, sessions by token
hash, and the checks of what a role may do. The store tests run on both engines."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from stcore import accounts
from stcore.errors import AccessError, UsageError

from conftest import make_store


@pytest.fixture
def users(new_engine):
    return make_store(new_engine(), 10).users


def test_a_password_is_stored_hashed_and_signs_in_to_a_session_that_ends(users):
    assert accounts.add(users, "ann", "admin", "correct horse") is None
    made = accounts.add(users, "bob")  # no password: one is generated and returned once
    assert made and len(made) >= 12
    role, stored = users.get("ann")
    assert role == "admin" and stored.startswith("scrypt$") and "correct horse" not in stored
    assert users.get("bob")[1] != users.get("ann")[1]
    token = accounts.sign_in(users, "ann", "correct horse")
    assert accounts.session(users, token) == {"name": "ann", "role": "admin"}
    assert accounts.token_hash(token) in {r[0] for r in users.e.all("SELECT token FROM sessions")}
    assert token not in {r[0] for r in users.e.all("SELECT token FROM sessions")}  # only its hash is kept
    assert accounts.session(users, accounts.sign_in(users, "bob", made))["role"] == "reviewer"
    users.close_session(accounts.token_hash(token))
    assert accounts.session(users, token) is None
    token = accounts.sign_in(users, "ann", "correct horse")
    accounts.remove(users, "bob")
    accounts.remove(users, "ann")  # the last account: allowed, and its sessions end with it
    assert accounts.session(users, token) is None and users.count() == 0


def test_a_wrong_password_and_an_unknown_name_get_the_same_answer_and_are_slowed(users):
    accounts.add(users, "ann", "admin", "correct horse")
    answers = []
    for name in ("ann", "nobody"):
        with pytest.raises(AccessError) as e:
            accounts.sign_in(users, name, "wrong password")
        answers.append(str(e.value))
    assert answers == [accounts.WRONG, accounts.WRONG]
    for name in ("ann", "nobody"):  # the same slowing for both, after FREE_TRIES failures in a row
        for _ in range(accounts.FREE_TRIES - 1):
            with pytest.raises(AccessError, match="wrong name or password"):
                accounts.sign_in(users, name, "wrong password")
        with pytest.raises(AccessError, match="too many failed sign-ins for this name; try again in 1 s"):
            accounts.sign_in(users, name, "correct horse")  # refused before the password is read
        assert 0 < accounts.wait_left(users, name) <= 1
    users.clear_failures("ann")
    assert accounts.session(users, accounts.sign_in(users, "ann", "correct horse"))["name"] == "ann"
    assert users.failures("ann") == (0, 0.0)  # a right password clears the count


def test_bad_accounts_are_refused_with_what_to_do(users):
    accounts.add(users, "ann", "admin", "correct horse")
    for args, message in [(("ann",), "already has a user named 'ann'"), (("a b",), "without spaces"),
                          (("cy", "owner"), "unknown role 'owner'"), (("cy", "reviewer", "short"), "at least 8")]:
        with pytest.raises(UsageError, match=message):
            accounts.add(users, *args)
    accounts.add(users, "bob", "reviewer", "another horse")
    with pytest.raises(UsageError, match="only admin"):
        accounts.remove(users, "ann")
    with pytest.raises(UsageError, match="no user named 'cy'"):
        accounts.remove(users, "cy")
    assert [u["name"] for u in users.list()] == ["ann", "bob"]


def test_a_reviewer_may_decide_but_not_take_an_admin_action():
    reviewer, admin = {"name": "bob", "role": "reviewer"}, {"name": "ann", "role": "admin"}
    for action in accounts.ADMIN_ONLY:
        assert accounts.allowed(admin, action) and accounts.allowed(None, action)  # None: no accounts
        assert not accounts.allowed(reviewer, action)
        with pytest.raises(AccessError, match="bob is a reviewer; only an admin may"):
            accounts.require(reviewer, action)
    assert accounts.allowed(reviewer, "decide")


def test_users_from_the_cli_password_from_stdin_or_generated_once(tmp_path):
    from stcore import api
    p = api.create_project(tmp_path / "p", dataset="fashion-mnist", labeled=0, limit=50, download=False)

    def run(*args, stdin=""):
        return subprocess.run([sys.executable, "-m", "stcore", "users", str(p.path), *args], input=stdin,
                              capture_output=True, text=True)
    out = json.loads(run("add", "ann", "--role", "admin", stdin="correct horse\n").stdout)
    assert out == {"name": "ann", "role": "admin"}  # the given password is not printed back
    made = run("add", "bob")
    assert made.returncode == 0 and "shown this once" in made.stderr
    bob = json.loads(made.stdout)
    assert bob["role"] == "reviewer" and len(bob["password"]) >= 12
    assert api.signed_in(p, api.sign_in(p, "bob", bob["password"]))["name"] == "bob"
    listed = run("list", "--json").stdout
    assert json.loads(listed)["users"][0].keys() == {"name", "role", "created"}
    assert "scrypt" not in listed and bob["password"] not in listed
    bad = run("add", "cy", "--role", "owner")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    gone = run("remove", "ann")
    assert gone.returncode == 2 and "only admin" in gone.stderr and len(gone.stderr.strip().splitlines()) == 1
    assert run("remove", "bob").returncode == 0 and run("remove", "ann").returncode == 0
    assert "no accounts" in run("list").stdout


# ------------------------------------------------------------------ the dashboard
from test_dashboard import app, decide_op, grid_data, grid_send, no_errors  # noqa: E402,F401 (app: a fixture)


def on_review(app, p, name: str, password: str):
    """An AppTest of the Review page, signed in as name."""
    at = sign_in(app(p), name, password)
    at.switch_page("views/review.py").run()
    return at


def team_of_two(p) -> None:
    from stcore import api
    api.add_user(p, "ann", "admin", "correct horse")
    api.add_user(p, "bob", "reviewer", "another horse")


def sign_in(at, name: str, password: str):
    at.text_input[0].set_value(name)
    at.text_input[1].set_value(password)
    at.button[0].click().run()
    return at


def test_the_dashboard_asks_to_sign_in_and_shows_nothing_before(app, trained_project):
    from stcore import api
    p = trained_project
    at = app(p)
    assert not any("Sign in" in t.value for t in at.title)  # no accounts: open as before
    api.add_user(p, "ann", "admin", "correct horse")
    at = app(p)
    assert [t.value for t in at.title] == [f"Sign in to {p.path.name}"]
    assert not any("Project:" in m.value for m in at.sidebar.markdown)  # nothing of the project shown
    sign_in(at, "ann", "wrong horse!")
    assert [e.value for e in at.error] == ["wrong name or password"]
    sign_in(at, "nobody", "wrong horse!")
    assert [e.value for e in at.error] == ["wrong name or password"]  # the same answer
    sign_in(at, "ann", "correct horse")
    assert any("Signed in as **ann** (admin)" in c.value for c in at.sidebar.caption)
    no_errors(at, "project")
    at.sidebar.button(key="sign_out").click().run()
    assert [t.value for t in at.title] == [f"Sign in to {p.path.name}"]


def test_a_reviewer_decides_as_themselves_and_may_not_take_an_admin_action(app, trained_project):
    from stcore import api
    p = trained_project
    team_of_two(p)
    at = on_review(app, p, "bob", "another horse")
    first, second = [c["id"] for c in grid_data(at)["cards"]][:2]
    api.review(p, [second], "reject", reviewer="ann")  # ann's, newer than nothing of bob's yet
    grid_send(at, decide_op([first], "accept"))
    assert api.history(p, first)[0]["reviewer"] == "bob"
    before = api.counts(p)
    # a bulk decision sent by hand, as the grid's messages: refused on the server, nothing written
    grid_send(at, decide_op([c["id"] for c in grid_data(at)["cards"]][2:6], "accept"))
    assert api.counts(p) == before
    assert "only an admin may make bulk decisions" in grid_data(at)["message"]["text"]
    grid_send(at, {"kind": "undo"})  # bob's undo reverts bob's accept, not ann's newer reject
    assert [r["status"] for r in p.store.queue.rows([first, second])] == ["pending", "rejected"]
    at.switch_page("views/train.py").run()
    at.button(key="tr_start_teacher").click().run()
    assert any("only an admin may start or stop runs" in e.value for e in at.error)
    assert [r for r in api.runs(p) if r["state"] in ("queued", "running")] == []


# ------------------------------------------------------------------ leases: no two people on one image
TAKER = """
import sys
from stcore import api
p = api.open_project(sys.argv[1])
who, n, done = sys.argv[2], int(sys.argv[3]), 0
while done < n:
    got = api.suggest(p, min(10, n - done), "random", reviewer=who)["items"]
    assert got, "nothing offered"
    for item in got:
        done += api.review(p, [item["id"]], "correct", int(who[1:]) % 2, reviewer=who)  # two would differ
print("done")
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def team_project(request, tmp_path):
    from stcore import api
    db = {"database": request.getfixturevalue("pg_url")} if request.param == "postgresql" else {}
    return api.create_project(tmp_path / "team", dataset="fashion-mnist", labeled=0, limit=1000, seed=0,
                              download=False, **db)


@pytest.mark.needs_fmnist
def test_eight_reviewers_taking_items_through_suggest_never_decide_one_twice(team_project):
    from stcore import api
    p = team_project
    procs = [subprocess.Popen([sys.executable, "-c", TAKER, str(p.path), f"r{k}", "100"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in range(8)]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0 and out.strip() == "done", err
    history = api.history(p, limit=10_000)
    assert len(history) == 800 and len({h["item_id"] for h in history}) == 800  # each item decided once
    assert sorted(sum(h["reviewer"] == f"r{k}" for h in history) for k in range(8)) == [100] * 8
    last = {f"r{k}": next(h["item_id"] for h in history if h["reviewer"] == f"r{k}") for k in range(8)}
    assert api.undo(p, "r3") == 1  # each reviewer's undo reverts their own last decision only
    assert [r["status"] for r in p.store.queue.rows([last["r3"], last["r4"]])] == ["pending", "corrected"]


def test_a_lease_hides_an_item_from_others_until_it_ends(team_project, monkeypatch):
    from stcore import api
    p = team_project
    first = [r["id"] for r in api.review_page(p, statuses=["pending"], order="id", limit=5, free_for="ann")]
    assert api.lease(p, first, "ann") == first
    assert api.lease(p, first[:2], "bob") == []  # held by ann
    bobs = [r["id"] for r in api.review_page(p, statuses=["pending"], order="id", limit=5, free_for="bob")]
    assert not set(bobs) & set(first) and len(bobs) == 5
    assert [r["id"] for r in api.review_page(p, statuses=["pending"], order="id", limit=5, free_for="ann")] == first
    assert not {i["id"] for i in api.suggest(p, 20, "random", reviewer="bob")["items"]} & set(first)
    api.lease(p, first[:1], "ann", only=True)  # ann moved on: the other four are free again
    assert api.lease(p, first[1:3], "bob") == first[1:3]
    import time as time_mod
    later = time_mod.time() + api.LEASE_SECONDS + 1  # ten minutes on, ann's last lease has ended
    monkeypatch.setattr(time_mod, "time", lambda: later)
    assert api.lease(p, first[:1], "cy") == first[:1]
    assert api.release(p, "bob") >= 2


def test_two_reviewers_on_the_review_page_are_shown_different_cards(app, trained_project):
    from stcore import api
    p = trained_project
    team_of_two(p)
    ann, bob = on_review(app, p, "ann", "correct horse"), on_review(app, p, "bob", "another horse")
    ann_cards = {c["id"] for c in grid_data(ann)["cards"]}
    bob_cards = {c["id"] for c in grid_data(bob)["cards"]}
    assert len(ann_cards) == len(bob_cards) == 24 and not ann_cards & bob_cards
    assert set(p.store.leases.holders(list(ann_cards)).values()) == {"ann"}
    first = sorted(ann_cards)[0]
    grid_send(ann, decide_op([first], "accept"))  # decided: it leaves the pending page; ann gets the next one
    assert api.history(p, first)[0]["reviewer"] == "ann"
    assert not {c["id"] for c in grid_data(ann)["cards"]} & bob_cards
    bob.switch_page("views/train.py").run()  # bob goes to another page: his cards are free for ann again
    assert p.store.leases.holders(list(bob_cards)) == {}
    bob.switch_page("views/review.py").run()
    assert set(p.store.leases.holders([c["id"] for c in grid_data(bob)["cards"]]).values()) == {"bob"}
    bob.sidebar.button(key="sign_out").click().run()  # bob signs out: the same
    assert p.store.leases.holders(list(bob_cards)) == {}


def test_a_decided_card_says_who_decided_it(app, trained_project):
    p = trained_project
    team_of_two(p)
    at = on_review(app, p, "bob", "another horse")
    first = grid_data(at)["cards"][0]["id"]
    grid_send(at, decide_op([first], "reject"))
    at.pills(key="rv_status").set_value(["rejected"]).run()
    card = next(c for c in grid_data(at)["cards"] if c["id"] == first)
    assert card["who"]["text"].startswith("rejected by bob · ") and "stcore history" in card["who"]["title"]


def test_off_this_machine_without_a_password_only_a_project_with_accounts_opens(app, trained_project):
    from streamlit import config
    p = trained_project
    at = app(p)
    config.set_option("server.address", "0.0.0.0")  # served to the network, no STCORE_PASSWORD
    try:
        at = app(p)
        assert any("without a password, and this project has no accounts" in e.value for e in at.error)
        assert not any("Project:" in m.value for m in at.sidebar.markdown)
        team_of_two(p)
        at = app(p)
        assert [t.value for t in at.title] == [f"Sign in to {p.path.name}"]
        sign_in(at, "bob", "another horse")
        assert any("Signed in as **bob** (reviewer)" in c.value for c in at.sidebar.caption)
    finally:
        config.set_option("server.address", "127.0.0.1")


def test_an_openid_connect_provider_signs_people_in_with_their_account_role(app, trained_project):
    from stcore import api
    p = trained_project
    api.add_user(p, "Bob@Example.com", "reviewer", "another horse")
    at = app(p)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
                          "client_id": "stcore", "client_secret": "s",
                          "server_metadata_url": "https://id.example.com/.well-known/openid-configuration"}
    at.user = {"is_logged_in": False}
    at.run()
    assert [t.value for t in at.title] == [f"Sign in to {p.path.name}"]
    assert at.button(key="oidc_sign_in").label == "Sign in with your organisation's account"
    assert not at.text_input  # no password form: the provider signs people in
    at.user = {"is_logged_in": True, "email": "carol@example.com", "name": "Carol"}
    at.run()
    assert any("carol@example.com has no account on this project" in e.value for e in at.error), (at.error, at.title, at.exception)
    assert not any("Project:" in m.value for m in at.sidebar.markdown)
    at.user = {"is_logged_in": True, "email": "bob@example.com", "name": "Bob"}
    at.run()
    assert any("Signed in as **Bob@Example\\.com** (reviewer)" in c.value for c in at.sidebar.caption)
    at.switch_page("views/train.py").run()
    at.button(key="tr_start_teacher").click().run()  # the account's role applies
    assert any("only an admin may start or stop runs" in e.value for e in at.error)


def test_a_card_another_page_took_at_the_same_moment_is_not_shown_nor_decided(app, trained_project, monkeypatch):
    """Two pages drawn at once: bob's page reads its items, ann's lease takes the first before
    bob's does. Bob's page is read again without it, and a decision sent for it is refused."""
    from stcore import api
    p = trained_project
    team_of_two(p)
    read = api.review_page
    taken = []

    def racing(*args, **kw):
        rows = read(*args, **kw)
        if not taken and kw.get("free_for") == "bob":
            taken.append(rows[0]["id"])
            api.lease(p, taken, "ann")  # ann's page, between bob's read and bob's lease
        return rows
    monkeypatch.setattr(api, "review_page", racing)
    bob = on_review(app, p, "bob", "another horse")
    shown = [c["id"] for c in grid_data(bob)["cards"]]
    assert taken and taken[0] not in shown and len(shown) == 24
    assert set(p.store.leases.holders(shown).values()) == {"bob"}
    grid_send(bob, decide_op(taken, "accept"))  # as a page drawn before the retry would send it
    assert "is ann's: their page took it a moment before yours" in grid_data(bob)["message"]["text"]
    assert api.history(p, taken[0]) == []
