"""The Project page's tools to merge, remove or split classes. Each edit is checked first: the
page says how many items it changes and asks to confirm, and only then makes it (one
transaction, in stcore). Admins only, where the project has accounts."""
from __future__ import annotations

import streamlit as st

from dashboard import common, util
from stcore import api
from stcore.errors import message

KINDS = ("merge", "remove", "split")
PLAN = "cl_plan"  # the edit checked and waiting for its confirmation (not a decision: nothing is changed yet)


def edit_ui(p: api.Project, names: list[str]) -> None:
    kind = st.segmented_control("Edit the class set", KINDS, key="cl_kind", default="merge",
                                help="merge: several classes become one; remove: a class goes, its labels to "
                                     "another class or back to be labeled; split: its labeled images go back "
                                     "to review, with the new classes offered first")
    if kind == "merge":
        c1, c2 = st.columns([2, 1])
        sources = c1.multiselect("Merge these classes", names, key="cl_merge_from", placeholder="two or more")
        into = c2.text_input("into", key="cl_merge_into", placeholder="one of them, or a new name")
        ask = lambda: api.plan_merge(p, sources, into)  # noqa: E731
    elif kind == "remove":
        c1, c2 = st.columns(2)
        cls = c1.selectbox("Remove class", names, key="cl_remove_name")
        to = c2.selectbox("Its labels go to", [api.UNLABELED] + [n for n in names if n != cls], key="cl_remove_to",
                          format_func=lambda n: "nowhere: its images go back to be labeled" if n == api.UNLABELED
                          else n)
        ask = lambda: api.plan_remove(p, cls, to)  # noqa: E731
    else:
        c1, c2 = st.columns([1, 2])
        cls = c1.selectbox("Split class", names, key="cl_split_name")
        parts = c2.text_input("into", key="cl_split_into", placeholder="two or more, comma-separated")
        ask = lambda: api.plan_split(p, cls, [x for x in parts.split(",") if x.strip()] or [parts])  # noqa: E731
    if st.button("Check what it changes", key="cl_check", icon=":material/rule:", disabled=kind is None):
        try:
            common.check("classes")
            st.session_state[PLAN] = ask()
        except common.USER_ERRORS as e:
            st.session_state.pop(PLAN, None)
            st.error(util.md_escape(message(e)), icon=":material/error:")
    confirm_ui(p)


def impact_text(plan: api.Plan) -> str:
    """What a planned edit changes, in one paragraph for the confirmation."""
    i = plan.impact
    parts = [f"{i['relabeled']:,} human label(s) move to the merged class" if i["relabeled"] else "",
             f"{i['unlabeled'] - i['unlabeled_test']:,} labeled image(s) lose their label and go back to be labeled"
             if i["unlabeled"] > i["unlabeled_test"] else "",
             f"{i['unlabeled_test']:,} test image(s) lose their label (no score on them until relabeled)"
             if i["unlabeled_test"] else "",
             f"{i['pseudo_cleared']:,} pseudo-label(s) are dropped until the next teacher"
             if i["pseudo_cleared"] else ""]
    changes = "; ".join(x for x in parts if x) or "no item changes"
    return (f"**{util.md_escape(plan.detail[0].upper() + plan.detail[1:])}**: {changes}. The classes become "
            f"{util.md_escape(', '.join(plan.names))}. Every teacher and student trained so far becomes stale (train "
            f"a new teacher), and the decisions made before this edit can no longer be undone.")


def confirm_ui(p: api.Project) -> None:
    plan = st.session_state.get(PLAN)
    if plan is None:
        return
    st.warning(impact_text(plan), icon=":material/warning:")
    c1, c2, _ = st.columns([2, 1, 3])  # the confirm label whole at 1280 px
    c1.button(f"Confirm: {plan.action} ({plan.impact['items']:,} items)", key="cl_confirm", type="primary",
              on_click=apply, args=(p,))
    c2.button("Cancel", key="cl_cancel", on_click=lambda: st.session_state.pop(PLAN, None))


def apply(p: api.Project) -> None:
    """The confirm button's callback: make the checked edit; its outcome shows once, under the tools."""
    plan = st.session_state.pop(PLAN, None)
    if plan is None:
        return
    try:
        common.check("classes")
        done = api.edit_classes(p, plan, reviewer=common.reviewer())
    except common.USER_ERRORS as e:
        st.session_state["cl_edit_msg"] = ("error", message(e))
        return
    st.session_state["cl_edit_msg"] = ("success", f"{done['detail'][0].upper() + done['detail'][1:]}: "
                                                  f"{done['relabeled'] + done['unlabeled']:,} items changed")


def history_ui(p: api.Project) -> None:
    rows = api.class_history(p)
    if rows:
        with st.expander(f"Edits of the classes ({len(rows)})"):
            st.dataframe([{"when": util.when(r["at"]), "who": r["reviewer"] or "", "what": r["detail"],
                           "items": r["items"]} for r in rows], hide_index=True, width="stretch", key="cl_history")
