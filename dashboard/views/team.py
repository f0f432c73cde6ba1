"""Team: who decided how much and when, at what speed; how much reviewers agree when several
decide each item (overlap), the conflicts waiting for an admin, the team's settings and its
accounts. A reviewer sees their own work and history; an admin (or anyone, on a project
without accounts) sees everyone's and manages the rest."""
from __future__ import annotations

import streamlit as st

from dashboard import common, figures, util
from stcore import api
from stcore.errors import UsageError

st.title("Team")
project = common.current_project()
me = common.user()
everyone = api.allowed(me, "all_history")
mine = None if everyone else me["name"]
overlap = api.overlap(project)


def work() -> None:
    stats = api.reviewer_stats(project, mine)
    if not stats:
        st.info("No decision stands yet (an undone one does not count)." + (
            "" if mine else " Each one is stored with the name of who made it: the signed-in person, or "
                            "`--reviewer NAME` on the command line."))
        return
    settles = overlap > 1 and api.may_settle(me)
    cols = st.columns(4 if settles else 3)
    cols[0].metric("Reviewers" if everyone else "You", len(stats) if everyone else me["name"])
    cols[1].metric("Items decided" + ("" if overlap == 1 else " or voted on"), f"{sum(s['items'] for s in stats):,}")
    cols[2].metric("Reviewers per item (overlap)", overlap)
    if settles:
        cols[3].metric("Open conflicts", f"{api.count_conflicts(project):,}")
    st.plotly_chart(figures.activity_chart(api.activity(project, mine)), key="tm_activity")
    st.dataframe([{"reviewer": s["reviewer"], "items": s["items"], "actions": s["actions"],
                   "active minutes": s["active_minutes"], "seconds per action (median)": s["seconds_per_action"],
                   "first": util.when(s["first"]), "last": util.when(s["last"])} for s in stats],
                 hide_index=True, key="tm_stats")
    st.caption(f"Active minutes: the pauses between one person's actions, up to {api.ACTIVE_GAP / 60:.0f} minutes "
               "each (a longer one is a break). A bulk action is one action of many items.")


def agreement(out: dict) -> None:
    st.subheader("Agreement")
    if out["items"] == 0:
        st.info(f"No item has been decided by two reviewers yet (overlap {overlap}). "
                + ("Set how many people decide each item below." if overlap == 1 and api.allowed(me, "team") else ""))
        return
    if everyone:
        a, k = out["overall"]["agreement"], out["overall"]["kappa"]
        c1, c2, c3 = st.columns(3)
        c1.metric("Items decided by two or more", f"{out['items']:,}")
        c2.metric("Pairwise agreement", f"{a:.1%}" if a is not None else "–")
        c3.metric("Cohen's kappa", f"{k:.3f}" if k is not None else "–",
                  help="Agreement beyond chance: 1 is perfect, 0 what chance alone gives. The pairs' kappas, "
                       "weighted by the items each pair shares.")
        left, right = st.columns(2)
        left.plotly_chart(figures.kappa_heatmap(out["reviewers"], out["pairs"]), key="tm_kappa")
        right.plotly_chart(figures.agreement_bars(out["per_class"], "class", count="votes",
                                                  title="Per class: how often a vote was joined"), key="tm_classes")
    vs = [r for r in out["reviewers_vs_settled"] if everyone or r["reviewer"] == mine]
    if vs:
        st.plotly_chart(figures.agreement_bars(vs, "reviewer", count="items",
                                               title="Each reviewer against the labels that counted"),
                        key="tm_settled")
    if everyone and out["open_conflicts"]:
        st.warning(f"{out['open_conflicts']:,} item(s) wait for an admin: the reviewers who decided them disagree.")
        if st.button("Settle them on the Review page", key="tm_conflicts", icon=":material/gavel:"):
            st.session_state.update(rv_view="conflicts", rv_page=1)
            st.switch_page(common.PAGES["review"])


def settings() -> None:
    st.subheader("Settings")
    k = st.number_input("Reviewers who decide each item", 1, api.MAX_OVERLAP, overlap, key="tm_overlap",
                        help="1: the first decision counts. K > 1: each person's decision is a vote; the item counts "
                             "once K different reviewers decided it alike, and goes to the conflicts when they do not.")
    if st.button("Save", key="tm_save", disabled=k == overlap):
        try:
            common.check("team")
            api.set_overlap(project, int(k))
        except common.USER_ERRORS as e:
            common.show_error(e)
            return
        st.rerun()


def accounts() -> None:
    """Who may sign in, with which role: add (a password given, or made up and shown once) and remove."""
    st.subheader("Accounts")
    people = api.users(project)
    if people:
        st.dataframe([{"name": u["name"], "role": u["role"], "since": util.when(u["created"])} for u in people],
                     hide_index=True)
    else:
        st.caption("No accounts: whoever reaches this dashboard may do everything. The first account is an admin; "
                   "from then on everyone signs in.")
    with st.form("tm_add", clear_on_submit=True):
        c1, c2, c3 = st.columns([2, 1, 2], vertical_alignment="bottom")
        name = c1.text_input("Name", help="Or the e-mail your company's sign-in vouches for, where one is set up")
        role = c2.selectbox("Role", api.ROLES if people else ("admin",), index=1 if people else 0,
                            help="A reviewer decides items and undoes their own; an admin may also do everything else")
        secret = c3.text_input("Password", type="password", help="Empty: one is made up and shown here once")
        add = st.form_submit_button("Add account", icon=":material/person_add:")
    if add:
        try:
            common.check("users")
            if not people and not secret:  # the page asks for it at once: it could not show a made-up one
                raise UsageError("type a password for the first account: the dashboard asks for it right after")
            made = api.add_user(project, name, role, secret or None)
        except common.USER_ERRORS as e:
            common.show_error(e)
        else:
            st.session_state["tm_made"] = made  # read (and dropped) by the next run, which lists the account
            st.rerun()
    if made := st.session_state.pop("tm_made", None):
        st.success(f"Added {made['name']} ({made['role']})." + (" Their password, shown this once:"
                                                                  if "password" in made else ""))
        if "password" in made:
            st.code(made["password"], language=None)
    if people:
        c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
        gone = c1.selectbox("Remove an account", [u["name"] for u in people], index=None, key="tm_remove_who",
                            placeholder="choose a name")
        if c2.button("Remove", key="tm_remove", disabled=gone is None):
            try:
                common.check("users")
                api.remove_user(project, gone)
            except common.USER_ERRORS as e:
                common.show_error(e)
            else:
                st.rerun()


def history() -> None:
    st.subheader("Your history" if mine else "History")
    rows = api.history(project, limit=200, reviewer=mine, names=True)
    if not rows:
        st.caption("Nothing decided yet.")
        return
    st.dataframe([{"when": util.when(r["at"]), "item": r["item_id"], "reviewer": r["reviewer"],
                   "from": f"{r['old_status']}" + (f" ({r['old_label']})" if r["old_label"] is not None else ""),
                   "to": f"{r['new_status']}" + (f" ({r['new_label']})" if r["new_label"] is not None else ""),
                   "undone": bool(r["undone"])} for r in rows], hide_index=True, key="tm_history")
    where = str(project.path).replace("`", "'")  # inside a code span: shown as it is, no escapes
    st.caption(f"The newest {len(rows):,} change{'s' * (len(rows) != 1)}. `stcore history {where}"
               f"{'' if everyone else ' --reviewer ' + mine} --json` lists them all.")


work()
agreed = api.agreement(project)
if overlap > 1 or agreed["votes"]:
    agreement(agreed)
if api.allowed(me, "team"):
    settings()
if api.allowed(me, "users"):
    accounts()
history()
