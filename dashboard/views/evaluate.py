"""Evaluate: teacher against student per class, the confusion matrix with its test images,
pseudo-label accuracy against confidence, and learning curves of finished runs."""
from __future__ import annotations

import streamlit as st

from dashboard import common, figures, util

st.title("Evaluate")
project = common.current_project()
classes = project.classes
run_list = common.runs(project)
try:
    results = project.evaluate()
except common.USER_ERRORS as e:
    common.show_error(e)
    results = {}

if not results:
    st.info("Nothing to evaluate yet: train a teacher, and later a student, to compare them here.")
    common.next_step(project, run_list, where="evaluate")
    st.stop()

cols = st.columns(len(results) + 1)
for col, (role, res) in zip(cols, results.items()):
    delta = None
    if role == "student" and "teacher" in results:
        delta = f"{(res['accuracy'] - results['teacher']['accuracy']) * 100:+.1f} points vs teacher"
    col.metric(f"{role.title()} {res['run']}: test accuracy", f"{res['accuracy']:.1%}", delta)
if "student" not in results:
    cols[-1].info("Train a student to compare it with the teacher.")

st.plotly_chart(figures.per_class_bars(classes, results), key="ev_bars")
with st.expander("Precision, recall and F1 per class", expanded=False):
    st.dataframe(figures.metrics_table(classes, results), hide_index=True, width="stretch",
                 column_config={k: st.column_config.NumberColumn(format="%.3f")
                                for k in figures.metrics_table(classes, results)[0] if k != "class"})

# ------------------------------------------------------------------ confusion
st.subheader("Confusion matrix")
roles = list(results)
role = st.radio("Model", roles, index=len(roles) - 1, horizontal=True, key="ev_role",
                format_func=lambda r: f"{r} {results[r]['run']}")
res = results[role]
chart_key = f"ev_conf_{res['run']}"


def pick_cell() -> None:
    """on_select callback: a clicked cell sets the two pickers (which the user can still change)."""
    event = st.session_state.get(chart_key)
    points = ((event or {}).get("selection") or {}).get("points", [])
    cell = next((p.get("customdata") for p in points if p.get("customdata")), None)
    if cell:
        st.session_state["ev_true"], st.session_state["ev_pred"] = int(cell[0]), int(cell[1])


left, right = st.columns([3, 2])
with left:
    st.plotly_chart(figures.confusion_heatmap(classes, res["confusion"], title=f"{role} {res['run']}"),
                    key=chart_key, on_select=pick_cell, selection_mode="points")
with right:
    st.caption("Click a cell, or pick one here, to see its test images.")
    st.session_state.setdefault("ev_true", 0)
    st.session_state.setdefault("ev_pred", 1 if len(classes) > 1 else 0)
    c1, c2 = st.columns(2)
    t = c1.selectbox("True class", range(len(classes)), format_func=lambda i: classes[i], key="ev_true")
    pr = c2.selectbox("Predicted as", range(len(classes)), format_func=lambda i: classes[i], key="ev_pred")
    run = project.store.run(res["run"])
    try:
        preds = common.test_predictions(str(project.path), project.meta["project_id"], run["id"], run["ended"])
    except common.USER_ERRORS as e:
        common.show_error(e)
        preds = []
    truth = [r[0] for r in project.store.db.execute("SELECT label FROM items WHERE split='test' ORDER BY row")]
    test_ids = [r[0] for r in project.store.db.execute("SELECT id FROM items WHERE split='test' ORDER BY row")]
    cell = [test_ids[k] for k, (y, p) in enumerate(zip(truth, preds)) if y == t and p == pr]
    st.markdown(f"**{len(cell)}** test image{'s' * (len(cell) != 1)} of **{util.md_escape(classes[t])}** predicted "
                f"as **{util.md_escape(classes[pr])}**" + (f" (first 30 shown)" if len(cell) > 30 else ""))
    if cell:
        shown = cell[:30]
        st.image(common.thumbs(project, "test", shown, target=84), caption=[f"#{i}" for i in shown], width="content")

# ------------------------------------------------------------------ calibration and curves
st.subheader("Choosing a threshold")
cal = project.confidence_calibration()
if not any(r["n"] for rows in cal.values() for r in rows):
    st.info("Accuracy against confidence appears once the pool is pseudo-labeled and you have reviewed some items.")
    common.next_step(project, run_list, where="evaluate_cal")
else:
    st.plotly_chart(figures.calibration_chart(cal), key="ev_cal")
    st.caption("Where the line stays near 100%, accepting everything above that confidence is safe. "
               "Your reviews count an accepted item as right and a corrected one as wrong.")

st.subheader("Learning curves")
done = [r for r in run_list if r["role"] in ("teacher", "student") and r["state"] == "finished"]
if not done:
    st.info("Learning curves appear here once a run has finished.")
else:
    ids = [r["id"] for r in done]
    st.session_state.setdefault("ev_curves", ids[-4:])
    st.session_state["ev_curves"] = [i for i in st.session_state["ev_curves"] if i in ids] or ids[-4:]
    chosen = st.multiselect("Runs", ids, key="ev_curves")
    series = {i: project.store.metrics(i) for i in chosen}
    c1, c2 = st.columns(2)
    c1.plotly_chart(figures.accuracy_chart(series), key="ev_curve_acc")
    c2.plotly_chart(figures.loss_chart(series), key="ev_curve_loss")
