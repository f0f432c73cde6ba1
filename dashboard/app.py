"""The stcore dashboard: `stcore dashboard [PROJECT]`, or
`streamlit run dashboard/app.py -- --project PATH`.

One page per step of the loop, all on the session's project (see common.current_project).
"""
from __future__ import annotations

# pandas is imported here, whole, before any page runs. Streamlit and Plotly import it lazily, and
# a page run that a navigation cut short could leave it half-imported for the next page, which
# then failed ("partially initialized module 'pandas'": 4 of 6 walks from Train to Evaluate on a
# fresh server).
import pandas  # noqa: F401
import streamlit as st

from dashboard import common, util

st.set_page_config(page_title="stcore", page_icon=":material/school:", layout="wide")

if not common.password_gate():
    st.stop()

pages = [
    st.Page(common.PAGES["project"], title="Project", icon=":material/folder:", default=True),
    st.Page(common.PAGES["review"], title="Review", icon=":material/fact_check:"),
    st.Page(common.PAGES["map"], title="Map", icon=":material/scatter_plot:"),
    st.Page(common.PAGES["train"], title="Train", icon=":material/monitoring:"),
    st.Page(common.PAGES["evaluate"], title="Evaluate", icon=":material/insights:"),
    st.Page(common.PAGES["export"], title="Export", icon=":material/download:"),
    st.Page(common.PAGES["team"], title="Team", icon=":material/group:"),
]
page = st.navigation(pages)

path = common.project_choice()
common.keep_project_in_url(path)
with st.sidebar:
    project = common.current_project(required=False)
if not common.sign_in_gate(project):  # a project with accounts shows nothing before sign-in
    st.stop()
if project is not None:
    common.release_when_away(project, on_review=page.title == "Review")
    with st.sidebar:
        # Always in view: which project every page of this tab reads and writes.
        st.markdown(f"**Project: {util.md_escape(project.path.name)}**")
        st.code(str(project.path), language=None, wrap_lines=True)
        common.sidebar_counts(project, st.empty())
    st.set_page_config(page_title=f"{project.path.name} · stcore")
page.run()
