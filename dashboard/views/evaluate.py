"""Evaluate: teacher against student per class, the confusion matrix with its test images,
pseudo-label accuracy against confidence, and learning curves of finished runs.

Everything here is read from what the runs' workers stored (their results and test-set
predictions); a run without stored predictions gets a button that evaluates it in a worker."""
from __future__ import annotations

import streamlit as st

from dashboard import common, figures, util
from stcore import api

project = common.current_project()
classes = project.classes


def metric_tiles(results: dict) -> None:
    cols = st.columns(len(results) + 1)
    for col, (role, res) in zip(cols, results.items()):
        delta = None
        if role == "student" and "teacher" in results:
            delta = f"{(res['accuracy'] - results['teacher']['accuracy']) * 100:+.1f} points vs teacher"
        col.metric(f"{role.title()} {res['run']}: test accuracy", f"{res['accuracy']:.1%}", delta)
    if "student" not in results:
        cols[-1].info("Train a student to compare it with the teacher.")
    elif "teacher" in results:
        common.regressions_ui(project, results["student"]["run"], results["teacher"]["run"])


def pick_cell(chart_key: str) -> None:
    """on_select callback: a clicked cell sets the two pickers (which the user can still change)."""
    event = st.session_state.get(chart_key)
    points = ((event or {}).get("selection") or {}).get("points", [])
    cell = next((p.get("customdata") for p in points if p.get("customdata")), None)
    if cell:
        st.session_state["ev_true"], st.session_state["ev_pred"] = int(cell[0]), int(cell[1])


def cell_images(run: dict) -> None:
    """The test images of one cell of the confusion matrix."""
    st.caption("Click a cell, or pick one here, to see its test images.")
    st.session_state.setdefault("ev_true", 0)
    st.session_state.setdefault("ev_pred", 1 if len(classes) > 1 else 0)
    c1, c2 = st.columns(2)
    t = c1.selectbox("True class", range(len(classes)), format_func=lambda i: classes[i], key="ev_true")
    pr = c2.selectbox("Predicted as", range(len(classes)), format_func=lambda i: classes[i], key="ev_pred")
    preds = common.test_predictions(str(project.path), api.info(project)["id"], run["id"], run["ended"])
    if preds is None:
        st.info(f"{run['id']} saved no test-set predictions (runs made by an older stcore). Evaluate it again "
                f"to see the images of each cell.")
        if st.button("Evaluate it again", key="ev_recompute", icon=":material/refresh:"):
            try:
                common.check("runs")
                api.start_evaluation(project, run["id"], device=common.best_device())
            except common.USER_ERRORS as e:
                common.show_error(e)
            else:
                st.switch_page(common.PAGES["train"])
        return
    test_ids, truth = api.test_items(project)
    cell = [test_ids[k] for k, (y, p) in enumerate(zip(truth, preds)) if y == t and p == pr]
    st.markdown(f"**{len(cell):,}** test image{'s' * (len(cell) != 1)} of **{util.md_escape(classes[t])}** "
                f"predicted as **{util.md_escape(classes[pr])}**" + (" (first 30 shown)" if len(cell) > 30 else ""))
    if cell:
        shown = cell[:30]
        st.image(common.thumbs(project, "test", shown, target=84), caption=[f"#{i}" for i in shown], width="content")


def confusion_section(results: dict) -> None:
    st.subheader("Confusion matrix")
    roles = list(results)
    role = st.radio("Model", roles, index=len(roles) - 1, horizontal=True, key="ev_role",
                    format_func=lambda r: f"{r} {results[r]['run']}")
    res = results[role]
    chart_key = f"ev_conf_{res['run']}"
    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(figures.confusion_heatmap(classes, res["confusion"], title=f"{role} {res['run']}"),
                        key=chart_key, on_select=lambda: pick_cell(chart_key), selection_mode="points")
    with right:
        cell_images(api.run(project, res["run"]))


def calibration_section(run_list: list[dict]) -> None:
    st.subheader("Choosing a threshold")
    cal = api.calibration(project)
    if not any(r["n"] >= figures.MIN_BIN_ITEMS for rows in cal.values() for r in rows):
        st.info("Accuracy against confidence appears once the pool is pseudo-labeled and enough items are known: "
                "reviewed one by one, or with hidden labels.")
        common.next_step(project, run_list, where="evaluate_cal")
        return
    st.plotly_chart(figures.calibration_chart(cal), key="ev_cal")
    st.caption("Where the line stays near 100%, accepting everything above that confidence is safe. Only items "
               "you decided one at a time count (accepted = right, corrected = wrong): bulk accepts would count "
               f"the teacher as right by construction. Bins with fewer than {figures.MIN_BIN_ITEMS} items are not "
               f"drawn; the numbers are the items in each bin.")


def curves_section(run_list: list[dict]) -> None:
    st.subheader("Learning curves")
    done = [r for r in run_list if r["role"] in ("teacher", "student") and r["state"] == "finished"]
    if not done:
        st.info("Learning curves appear here once a run has finished.")
        return
    ids = [r["id"] for r in done]
    st.session_state.setdefault("ev_curves", ids[-4:])
    st.session_state["ev_curves"] = [i for i in st.session_state["ev_curves"] if i in ids] or ids[-4:]
    chosen = st.multiselect("Runs", ids, key="ev_curves")
    series = {i: api.metrics(project, i) for i in chosen}
    if not any(m["kind"] == "eval" and m.get("n") != 0 for rows in series.values() for m in rows):  # no test set
        st.plotly_chart(figures.loss_chart(series), key="ev_curve_loss")
        return
    c1, c2 = st.columns(2)
    c1.plotly_chart(figures.accuracy_chart(series), key="ev_curve_acc")
    c2.plotly_chart(figures.loss_chart(series), key="ev_curve_loss")


st.title("Evaluate")
run_list = api.runs(project)
try:
    results = api.evaluation(project)
except common.USER_ERRORS as e:
    common.show_error(e)
    results = {}
if not results:
    st.info("Nothing to evaluate yet: train a teacher, and later a student, to compare them here.")
    common.next_step(project, run_list, where="evaluate")
    st.stop()
if not api.counts(project)["test"]:  # per-class accuracy and the confusion matrix of nothing would draw as 0
    st.info(common.NO_TEST_SET)
    st.page_link(common.PAGES["project"], label="Estimated accuracy from your labels, on Project",
                 icon=":material/folder:")
    calibration_section(run_list)
    curves_section(run_list)
    st.stop()
metric_tiles(results)
st.plotly_chart(figures.per_class_bars(classes, results), key="ev_bars")
with st.expander("Precision, recall and F1 per class", expanded=False):
    table = figures.metrics_table(classes, results)
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={k: st.column_config.NumberColumn(format="%d" if k == "test images" else "%.3f")
                                for k in table[0] if k != "class"})
confusion_section(results)
calibration_section(run_list)
curves_section(run_list)
