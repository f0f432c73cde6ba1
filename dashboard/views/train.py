"""Train: start teachers, students and pseudo-label jobs as detached workers; watch them live.

The live panel is a fragment that re-reads the store once a second, and only while the run it
shows is active; a worker keeps running whatever happens to this page.
"""
from __future__ import annotations

import time
from datetime import datetime

import streamlit as st

from dashboard import common, figures, util
from stcore.config import DEFAULT_ROUNDS, DEFAULT_STRENGTH, METHODS, make_config
from stcore.jobs import cancel, current_phase, eta_seconds, list_runs, resume, start_training
from stcore.models import MODELS
from stcore.store import ACTIVE_STATES
from stcore.train import DEFAULT_STEPS

st.title("Train")
project = common.current_project()
run_list = common.runs(project)
teacher = project.teacher_run()


# ------------------------------------------------------------------ live view
def live(path: str, run_id: str, was_active: bool) -> None:
    p = common.open_project(path)
    list_runs(p)  # a dead worker shows as interrupted rather than stuck
    run = p.store.run(run_id)
    is_active = run["state"] in ACTIVE_STATES
    if was_active and not is_active:
        st.rerun(scope="app")  # the run ended: redraw the history and stop polling
    total = max(1, run["total"] or 1)
    frac = min(1.0, run["step"] / total)
    what = "items" if run["role"] == "pseudo-label" else "steps"
    head = st.columns([3, 1], vertical_alignment="center")
    head[0].markdown(f"**{run['id']}** · {run['role']} · {run['state']} · {run['device']}")
    if is_active and head[1].button("Cancel", key=f"tr_cancel_live_{run_id}", icon=":material/stop:",
                                    width="stretch"):
        st.toast(f"{run_id}: {cancel(p, run_id)}")
    rows = p.store.metrics(run_id)
    eta = eta_seconds(run, rows)
    text = f"{run['step']:,} / {run['total']:,} {what} ({frac:.0%})"
    if eta is not None:
        text += f" · about {util.fmt_duration(eta)} left"
    elif run["state"] == "queued":
        text += " · starting the worker..."
    if run["state"] == "running" and (phase := current_phase(rows)):
        text += f" · {phase}..."
    st.progress(frac, text=text)
    if run["state"] in ("failed", "interrupted") and run["error"]:
        st.error(f"{run['id']} {run['state']}: {run['error']}")
    if run["role"] == "pseudo-label":
        if run["state"] == "finished" and run["result"] and run["result"].get("accuracy"):
            acc = run["result"]["accuracy"]
            st.caption(f"Pseudo-labels agree with the hidden labels on {acc['accuracy']:.1%} of the pool.")
        return
    n_points = sum(1 for r in rows if r["kind"] == "train")
    if not n_points:  # empty axes say nothing: wait for the first loss points
        st.caption("Loss and accuracy charts appear with the first training steps."
                   if is_active else "This run recorded no training steps.")
        return
    c1, c2 = st.columns(2)
    c1.plotly_chart(figures.loss_chart({run_id: rows}), key="tr_loss")
    c2.plotly_chart(figures.accuracy_chart({run_id: rows}), key="tr_acc")
    st.caption(f"{n_points} loss points · {sum(1 for r in rows if r['kind'] == 'eval')} evaluations"
               + (" · updates every second" if is_active else ""))


def shown_run(run_list: list[dict]) -> dict | None:
    """The newest active run, else the newest run of any kind."""
    act = common.active(run_list)
    return act[-1] if act else (run_list[-1] if run_list else None)


st.subheader("Now")
view = shown_run(run_list)
if view is None:
    st.info("No runs yet. Start with a teacher: it learns from the labeled images only. Use the form below, "
            "or this button for the default settings.")
    if st.button("Train a teacher now (default settings)", type="primary", key="tr_quick_teacher"):
        if common.start_teacher(project):
            st.rerun()
else:
    active_now = view["state"] in ACTIVE_STATES
    # run_every only while a run is active: an idle page costs nothing.
    st.fragment(live, run_every=1.0 if active_now else None)(str(project.path), view["id"], active_now)


# ------------------------------------------------------------------ start a job
def steps_ui(role: str, key: str) -> dict:
    c1, c2 = st.columns(2)
    rounds = DEFAULT_ROUNDS[METHODS["student"][0]]
    budget = (f"{DEFAULT_STEPS[role]:,}" if role == "teacher" else f"{DEFAULT_STEPS[role]:,} per round, so "
              f"{DEFAULT_STEPS[role] * rounds:,} for {METHODS['student'][0]}'s {rounds} rounds")
    steps = c1.number_input("Steps", min_value=0, value=0, step=50, key=f"{key}_steps",
                            help=f"Optimizer steps, shared by the rounds. 0: from epochs if set, else the "
                                 f"default budget ({budget}).")
    epochs = c2.number_input("Epochs", min_value=0.0, value=0.0, step=1.0, key=f"{key}_epochs",
                             help="Passes over the labeled set (teacher) or the pool (student); used when "
                                  "steps is 0.")
    return {"steps": int(steps), "epochs": float(epochs)}


def common_ui(key: str) -> dict:
    c1, c2, c3 = st.columns(3)
    model = c1.selectbox("Model", MODELS, key=f"{key}_model")
    lr = c2.number_input("Learning rate", min_value=1e-5, max_value=10.0, value=0.03, step=0.01, format="%.4f",
                         key=f"{key}_lr")
    batch = c3.number_input("Batch size", min_value=1, max_value=4096, value=64, step=16, key=f"{key}_bs")
    return {"model": model, "lr": float(lr), "batch_size": int(batch)}


def start(values: dict) -> None:
    try:
        run_id = start_training(project, make_config(values))
    except common.USER_ERRORS as e:
        common.show_error(e)
        return
    st.toast(f"Started {run_id}")
    time.sleep(0.2)  # let the worker take the run, so the live panel starts on 'running'
    st.rerun()


st.subheader("Start")
t_teacher, t_student, t_pseudo = st.tabs(["Teacher", "Student", "Pseudo-label"])
with t_teacher:
    with st.form("tr_teacher_form"):
        st.caption("The teacher learns from the labeled images only (supervised, with weak augmentation).")
        v = {"role": "teacher", **steps_ui("teacher", "tr_t"), **common_ui("tr_t")}
        v["device"] = common.device_picker("tr_t_device")
        if st.form_submit_button("Start teacher", type="primary", icon=":material/play_arrow:"):
            start(v)
with t_student:
    if teacher is None:
        st.info("A student learns from the teacher's pseudo-labels and starts from its weights: train a teacher "
                "first (or choose init 'scratch').")
    with st.form("tr_student_form"):
        st.caption("The student learns from the labels, your reviews (corrections weigh double) and, if you "
                   "like, the unreviewed pseudo-labels above the threshold.")
        c1, c2 = st.columns(2)
        method = c1.selectbox("Method", METHODS["student"], key="tr_s_method",
                              help="labelprop: your labels spread over a nearest-neighbour graph of the pool, "
                                   "re-made from the student's own predictions each round; freematch and "
                                   "fixmatch: consistency on strongly augmented views; pseudo: the teacher's "
                                   "hard labels; soft: the teacher's probabilities")
        init = c2.selectbox("Start from", ["teacher", "scratch"], key="tr_s_init")
        v = {"role": "student", "method": method, "init": init, **steps_ui("student", "tr_s"), **common_ui("tr_s")}
        c3, c4, c5 = st.columns(3)
        v["threshold"] = float(c3.slider("Confidence threshold", 0.0, 1.0, 0.9, 0.01, key="tr_s_thr",
                                         help="fixmatch, pseudo and soft learn only pseudo-labels at least "
                                              "this confident; labelprop and meanteacher use every item; "
                                              "freematch adapts its own"))
        v["rounds"] = int(c4.number_input("Rounds", min_value=0, max_value=20, value=0, step=1, key="tr_s_rounds",
                                          help="The student re-labels the pool this many times (Noisy Student), "
                                               "sharing the steps. 0: the method's default (labelprop 3, others 1)."))
        strength_defaults = ", ".join(f"{m} {s:g}" for m, s in DEFAULT_STRENGTH.items())
        v["strength"] = float(c4.number_input(
            "Augmentation strength", min_value=0.0, max_value=1.0, value=0.0, step=0.1, key="tr_s_strength",
            help="How hard the unlabeled images are augmented (rotation, shear, shifts, contrast, cutout). "
                 f"0: the method's default ({strength_defaults}, others 1)."))
        v["use_unreviewed"] = c5.checkbox("Also learn from unreviewed pseudo-labels", value=True, key="tr_s_unrev")
        v["device"] = common.device_picker("tr_s_device")
        if st.form_submit_button("Start student", type="primary", icon=":material/play_arrow:"):
            start(v)
with t_pseudo:
    if teacher is None:
        st.info("Pseudo-labeling needs a finished teacher; train one first.")
    else:
        st.caption(f"Label all {project.counts()['pool']:,} pool images with the current teacher, "
                   f"**{teacher['id']}**. Earlier pseudo-labels are replaced; your decisions are kept.")
        dev = common.device_picker("tr_p_device")
        if st.button("Pseudo-label now", type="primary", key="tr_pseudo", icon=":material/label:"):
            if common.start_pseudo(project, dev):
                time.sleep(0.2)
                st.rerun()


# ------------------------------------------------------------------ history
st.subheader("Runs")
if not run_list:
    st.caption("Runs you start appear here, with their state, device, duration and final accuracy.")
    st.stop()


def final_accuracy(r: dict) -> float | None:
    res = r["result"] or {}
    acc = res.get("accuracy")
    return acc.get("accuracy") if isinstance(acc, dict) else acc


table = [{"run": r["id"], "role": r["role"], "state": r["state"], "device": r["device"],
          "progress": f"{r['step']:,}/{r['total']:,}",
          "started": datetime.fromtimestamp(r["started"]).strftime("%Y-%m-%d %H:%M") if r["started"] else "",
          "duration": util.fmt_duration(util.run_duration(r)), "final accuracy": final_accuracy(r),
          "teacher": "✓" if teacher and r["id"] == teacher["id"] else "", "error": r["error"] or ""}
         for r in reversed(run_list)]
st.dataframe(table, hide_index=True, width="stretch",
             column_config={"final accuracy": st.column_config.NumberColumn(format="percent")})

for r in [r for r in reversed(run_list) if r["state"] == "failed" and r["error"]][:3]:
    st.error(f"{r['id']} failed: {r['error']}")

ids = [r["id"] for r in reversed(run_list)]
by_id = {r["id"]: r for r in run_list}
c1, c2, c3, c4 = st.columns([2, 1, 1, 2], vertical_alignment="bottom")
chosen = by_id[c1.selectbox("Run", ids, key="tr_run_pick")]
if c2.button("Cancel", key="tr_cancel", disabled=chosen["state"] not in ACTIVE_STATES, width="stretch",
             icon=":material/stop:"):
    st.toast(f"{chosen['id']}: {cancel(project, chosen['id'])}")
    time.sleep(0.5)
    st.rerun()
resumable = chosen["state"] in ("interrupted", "cancelled", "failed") and chosen["role"] != "pseudo-label"
if c3.button("Resume", key="tr_resume", disabled=not resumable, width="stretch", icon=":material/replay:"):
    try:
        resume(project, chosen["id"])
    except common.USER_ERRORS as e:
        common.show_error(e)
    else:
        time.sleep(0.2)
        st.rerun()
promotable = chosen["role"] in ("teacher", "student") and chosen["state"] == "finished" and \
    not (teacher and teacher["id"] == chosen["id"])
label = "Make this student the next teacher" if chosen["role"] == "student" else "Make this the teacher"
if c4.button(label, key="tr_promote", disabled=not promotable, width="stretch", icon=":material/upgrade:"):
    try:
        project.promote(chosen["id"])
    except common.USER_ERRORS as e:
        common.show_error(e)
    else:
        st.toast(f"{chosen['id']} is now the teacher; pseudo-label again with it.")
        st.rerun()
