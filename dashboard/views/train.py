"""Train: start embeddings, teachers, students and pseudo-label jobs as detached workers; watch them live.

The live panel and the runs table are fragments that re-read the store once a second, and only
while a run is active; a worker keeps running whatever happens to this page.
"""
from __future__ import annotations

import time
from datetime import datetime

import streamlit as st

from dashboard import common, figures, util
from stcore import api

project = common.current_project()
METHODS = api.methods()
STUDENT_DEFAULT = next(iter(METHODS))


def shown_run(run_list: list[dict]) -> dict | None:
    """The newest active run, else the newest run of any kind."""
    act = api.active(run_list)
    return act[-1] if act else (run_list[-1] if run_list else None)


def act(what: str, run_id: str) -> None:
    """Cancel or resume a run (a button callback); the outcome is shown as a toast."""
    try:
        common.check("runs")
        if what == "cancel":
            st.toast(f"{run_id}: {api.cancel(project, run_id)}")
        else:
            api.resume(project, run_id)
            st.toast(f"{run_id} resumed")
    except common.USER_ERRORS as e:
        st.toast(f"{run_id}: {e}", icon=":material/error:")


# ------------------------------------------------------------------ live view
def progress_text(run: dict, rows: list[dict]) -> str:
    ssl = run["role"] == "embed" and (run.get("config") or {}).get("backbone") == "ssl"  # pretraining steps
    what = ("steps" if ssl or run["role"] in ("teacher", "student") else "items"
            if run["role"] in ("pseudo-label", "evaluate") else "images")
    frac = min(1.0, run["step"] / max(1, run["total"] or 1))
    text = f"{run['step']:,} / {run['total']:,} {what} ({frac:.0%})"
    if (eta := api.eta_seconds(run, rows)) is not None:
        text += f" · about {util.fmt_duration(eta)} left"
    elif run["state"] == "queued":
        text += " · starting the worker..."
    return text


def phase_bar(row: dict) -> None:
    """The current phase between steps, with its own progress and estimate."""
    done, total = row.get("done") or 0, row.get("total") or 0
    text = row["phase"] + (f" · {done:,} / {total:,}" if total else "...")
    if (eta := api.phase_eta(row)) is not None:
        text += f" · about {util.fmt_duration(eta)} left"
    st.progress(min(1.0, done / total) if total else 0.0, text=text)


def live(run_id: str, was_active: bool) -> None:
    run = next((r for r in api.runs(project) if r["id"] == run_id), None) or api.run(project, run_id)
    is_active = run["state"] in api.ACTIVE_STATES
    if was_active and not is_active:
        st.rerun(scope="app")  # the run ended: redraw the page and stop polling
    head = st.columns([4, 1], vertical_alignment="center")
    head[0].markdown(f"**{run['id']}** · {run['role']} · {run['state']} · {api.placement(run)}"
                     + (f" · {util.fmt_duration(api.duration(run))}" if run["started"] else ""))
    if is_active:
        head[1].button("Cancel", key=f"tr_cancel_live_{run_id}", icon=":material/stop:", width="stretch",
                       on_click=act, args=("cancel", run_id))
    elif api.resumable(run):
        head[1].button("Resume", key=f"tr_resume_live_{run_id}", icon=":material/replay:", width="stretch",
                       on_click=act, args=("resume", run_id), type="primary")
    rows = api.metrics(project, run_id)
    st.progress(min(1.0, run["step"] / max(1, run["total"] or 1)), text=progress_text(run, rows))
    if run["state"] == "running" and (row := api.current_phase(rows)):
        phase_bar(row)
    if run["state"] in ("failed", "interrupted") and run["error"]:
        st.error(f"{run['id']} {run['state']}: {run['error']}")
    if run["role"] == "pseudo-label":
        if run["state"] == "finished" and run["result"] and run["result"].get("accuracy"):
            spread = run["result"].get("spread_over")
            st.caption(f"Pseudo-labels agree with the hidden labels on {run['result']['accuracy']['accuracy']:.1%} "
                       f"of the pool" + (f" (the teacher's labels spread over the {spread} embedding)." if spread
                                          else "."))
        return
    if run["role"] == "embed":
        embed_view(run, rows, is_active)
        return
    if run["role"] == "map":
        if run["state"] == "finished" and (r := run["result"]):
            st.caption(f"Laid out {r['rows']:,} images of the {r['embedding']} embedding with {r['method'].upper()} "
                       f"in {r['seconds']} s.")
            st.page_link(common.PAGES["map"], label="Open the map", icon=":material/scatter_plot:")
        return
    if run["role"] == "predict":
        if run["state"] == "finished" and run["result"]:
            st.caption(util.md_escape(api.summary(run)))
        st.page_link(common.PAGES["export"], label="The predictions, on Export", icon=":material/download:")
        return
    if run["role"] in ("label-issues", "duplicates"):
        if run["state"] == "finished" and (r := run["result"]):
            found = (f"{len(r['issues']):,} of {r['checked']:,} human labels look wrong" if "issues" in r
                     else f"{len(r['pairs']):,} pairs of near-identical images among {r['images']:,}")
            st.caption(f"{found} (in the {r['over']} embedding); `stcore {run['role']} {project.path}` lists them.")
        return
    n_points = sum(1 for r in rows if r["kind"] == "train")
    if not n_points:  # empty axes say nothing: wait for the first loss points
        st.caption("Loss and accuracy charts appear with the first training steps."
                   if is_active else "This run recorded no training steps.")
        return
    c1, c2 = st.columns(2)
    c1.plotly_chart(figures.loss_chart({run_id: rows}), key="tr_loss")
    if not api.counts(project)["test"]:  # an accuracy of nothing would draw as a flat 0
        c2.info(common.NO_TEST_SET)
    elif any(r["kind"] == "eval" for r in rows):
        c2.plotly_chart(figures.accuracy_chart({run_id: rows}), key="tr_acc")
    else:  # empty axes say nothing: say when the first point comes
        c2.info(first_evaluation(run, rows))
    evals = sum(1 for r in rows if r["kind"] == "eval")
    st.caption(f"{n_points} loss points"
               + (f" · {evals} evaluations on a fixed, class-balanced sample of the test set (the last one on all "
                  "of it)" if evals else "") + (" · updates every second" if is_active else ""))


def first_evaluation(run: dict, rows: list[dict]) -> str:
    """When the accuracy chart gets its first point: the step of the first evaluation, and how
    long until then at the run's pace so far."""
    every = (run.get("config") or {}).get("eval_every") or max(1, (run["total"] or 10) // 10)
    text = f"Test accuracy is measured every {every:,} steps: the first point comes at step {every:,}"
    train = [r for r in rows if r["kind"] == "train"]
    if run["state"] in api.ACTIVE_STATES and len(train) >= 2 and train[-1]["step"] > train[0]["step"]:
        pace = (train[-1]["at"] - train[0]["at"]) / (train[-1]["step"] - train[0]["step"])
        text += f", in about {util.fmt_duration(max(0.0, every - run['step']) * pace)}"
    return text + "."


def embed_view(run: dict, rows: list[dict], is_active: bool) -> None:
    """An embed run: what it wrote, and the loss of a backbone that pretrains (ssl)."""
    if run["state"] == "finished" and (e := run["result"]):
        pre = e.get("pretraining")
        st.caption(f"Embedded {sum(e['rows'].values()):,} images with {e['backbone']}"
                   + (f", pretrained for {pre['epochs']} epochs ({pre['steps']:,} steps)" if pre else "")
                   + f": {e['dims']:,} dimensions. The graph and the pseudo-labels read it.")
    n_points = sum(1 for r in rows if r["kind"] == "train")
    if n_points:
        st.plotly_chart(figures.loss_chart({run["id"]: rows}), key="tr_loss")
        st.caption(f"{n_points} loss points of the self-supervised pretraining (SimCLR's NT-Xent: lower means "
                   f"each image's two views are told apart from the rest of the batch more surely)"
                   + (" · updates every second" if is_active else ""))


# ------------------------------------------------------------------ the runs table
def runs_table(run_list: list[dict], teacher: dict | None) -> list[dict]:
    """One row a run, newest first, narrow enough for 1280 px: the teacher is marked on its id,
    accuracy is text (a run without one shows nothing, not 'None'), and the error, the one long
    column, comes last but one, before the device."""
    rows = []
    several = any(api.world_size(r) > 1 for r in run_list)
    stale = any(r["classes_changed"] for r in run_list)
    for r in reversed(run_list):
        acc, final = api.accuracy_of(project, r)
        rows.append({"run": r["id"] + (" ✓ teacher" if teacher and r["id"] == teacher["id"] else ""),
                     "role": r["role"], "state": r["state"],
                     **({"classes": "changed" if r["classes_changed"] else ""} if stale else {}),
                     "accuracy": "" if acc is None else f"{acc:.1%}" + ("" if final else " (so far)"),
                     "progress": f"{r['step']:,} / {r['total']:,}",
                     "started": datetime.fromtimestamp(r["started"]).strftime("%m-%d %H:%M") if r["started"] else "",
                     "duration": util.fmt_duration(api.duration(r)), "error": r["error"] or "",
                     "device": r["device"], **({"processes": api.world_size(r)} if several else {})})
    return rows


RUN_COLUMNS = {"run": st.column_config.TextColumn(width=150), "role": st.column_config.TextColumn(width=90),
               "state": st.column_config.TextColumn(width=80),
               "classes": st.column_config.TextColumn(width=75, help="changed: the project's classes changed since "
                                                      "the run trained, so its model no longer fits"),
               "accuracy": st.column_config.TextColumn(width=100, help="final test accuracy, or the last "
                                                       "evaluation so far; a pseudo-label job's agreement with "
                                                       "the hidden labels"),
               "progress": st.column_config.TextColumn(width=115), "started": st.column_config.TextColumn(width=95),
               "duration": st.column_config.TextColumn(width=80), "error": st.column_config.TextColumn(width=160),
               "device": st.column_config.TextColumn(width=65)}


def history(was_active: bool) -> None:
    run_list = api.runs(project)
    if was_active and not api.active(run_list):
        st.rerun(scope="app")
    if not run_list:
        st.caption("Runs you start appear here, with their state, device, duration and accuracy.")
        return
    teacher = api.teacher(project)
    st.dataframe(runs_table(run_list, teacher), hide_index=True, width="stretch", column_config=RUN_COLUMNS)
    for r in [r for r in reversed(run_list) if r["state"] == "failed" and r["error"]][:3]:
        st.error(f"{r['id']} failed: {r['error']}")
    by_id = {r["id"]: r for r in run_list}
    c1, c2, c3, c4 = st.columns([2, 1, 1, 2], vertical_alignment="bottom")
    chosen = by_id[c1.selectbox("Run", list(reversed(list(by_id))), key="tr_run_pick")]
    c2.button("Cancel", key="tr_cancel", disabled=chosen["state"] not in api.ACTIVE_STATES, width="stretch",
              icon=":material/stop:", on_click=act, args=("cancel", chosen["id"]))
    c3.button("Resume", key="tr_resume", width="stretch", icon=":material/replay:", on_click=act,
              args=("resume", chosen["id"]),
              disabled=not api.resumable(chosen),
              help=f"{chosen.get('stale') or 'the project classes changed since it trained'}: train a new run"
              if chosen["classes_changed"] else None)
    promotable = chosen["role"] in ("teacher", "student") and chosen["state"] == "finished" and \
        not (teacher and teacher["id"] == chosen["id"])
    label = "Make this student the next teacher" if chosen["role"] == "student" else "Make this the teacher"
    if promotable and teacher:  # say, before the click, which classes it would make worse
        common.regressions_ui(project, chosen["id"], teacher["id"])
    if c4.button(label, key="tr_promote", disabled=not promotable, width="stretch", icon=":material/upgrade:"):
        try:
            common.check("runs")
            lost = api.promote(project, chosen["id"])
        except common.USER_ERRORS as e:
            common.show_error(e)
        else:
            st.toast(f"{chosen['id']} is now the teacher; pseudo-label again with it."
                     + (f" It is worse at {', '.join(r['name'] for r in lost)}." if lost else ""))
            st.rerun()


# ------------------------------------------------------------------ start a job
SHORT_RUN = 300.0  # seconds: past this, a shorter run is offered


def estimate_ui(values: dict, key: str) -> None:
    """How long the run will take, from the measured pace of the last run like it, and a shorter
    run when it would be long."""
    try:
        est = api.estimate_training(project, values)
    except common.USER_ERRORS:
        return  # the form's values are not valid yet: Start says why
    if est is None:
        st.caption(f"No {values['role']} with model {values.get('model')} has run on {values.get('device')} here "
                   f"yet, so there is no measured pace to estimate the time from.")
        return
    text = (f"About **{util.fmt_duration(est['seconds'])}** for {est['steps']:,} steps, at the pace "
            f"{est['from_run']} measured ({est['per_step']:.2f} s a step")
    st.caption(text + (f", plus {util.fmt_duration(est['phases'])} between steps)." if est["phases"] >= 1 else ")."))
    if est["seconds"] > SHORT_RUN and est["per_step"] > 0:
        steps = max(10, int((SHORT_RUN - est["phases"]) / est["per_step"]) // 10 * 10)
        if steps <= est["steps"] * 2 // 3:  # only a run worth the name shorter
            st.button(f"Use {steps:,} steps instead (about {util.fmt_duration(steps * est['per_step'] + est['phases'])})",
                      key=f"{key}_shorter", icon=":material/timer:",
                      on_click=lambda: st.session_state.update({f"{key}_steps": steps, f"{key}_epochs": None}))


def start(values: dict) -> None:
    try:
        common.check("runs")
        run_id = api.start_training(project, values)
    except common.USER_ERRORS as e:
        common.show_error(e)
        return
    st.toast(f"Started {run_id}")
    time.sleep(0.2)  # let the worker take the run, so the live panel starts on 'running'
    st.rerun()


def budget_ui(key: str, defaults: dict) -> dict:
    c1, c2 = st.columns(2)
    st.session_state.setdefault(f"{key}_steps", defaults["steps"])
    steps = c1.number_input("Steps", min_value=1, step=50, key=f"{key}_steps",
                            help=f"Optimizer steps, shared by the rounds (default {defaults['steps']:,}).")
    epochs = c2.number_input("Epochs (instead of steps)", min_value=0.1, value=None, step=1.0, key=f"{key}_epochs",
                             placeholder="use steps",
                             help="Passes over the labeled set (teacher) or the pool (student); when set, the "
                                  "steps follow from it.")
    return {"epochs": float(epochs)} if epochs else {"steps": int(steps)}


def model_ui(key: str, defaults: dict) -> dict:
    c1, c2, c3 = st.columns(3)
    models = [m for m in api.models() if m != "head" or api.embeddings(project)]
    best = api.default_model(project)
    common.follow_default(f"{key}_model", best if best in models else models[0])
    if st.session_state[f"{key}_model"] not in models:
        st.session_state[f"{key}_model"] = models[0]
    model = c1.selectbox("Model", models, key=f"{key}_model",
                         help="cnn: a small CNN on the images; resnet18: a larger one; head: a linear classifier "
                              "on the project's embedding (trains in seconds; the best teacher and student on a "
                              "CPU with a pretrained backbone)")
    st.session_state.setdefault(f"{key}_lr", defaults["lr"])
    st.session_state.setdefault(f"{key}_bs", defaults["batch_size"])
    lr = c2.number_input("Learning rate", min_value=1e-5, max_value=10.0, step=0.01, format="%.4f", key=f"{key}_lr")
    batch = c3.number_input("Batch size", min_value=1, max_value=4096, step=16, key=f"{key}_bs")
    return {"model": model, "lr": float(lr), "batch_size": int(batch)}


def method_defaults() -> None:
    """on_change of the method: its own defaults replace the budget and options shown."""
    d = api.train_config({"role": "student", "method": st.session_state["tr_s_method"]})
    for k in ("steps", "rounds", "strength", "threshold", "adaptive_threshold"):
        st.session_state[f"tr_s_{k}"] = d[k]


def student_options(d: dict, options: tuple[str, ...]) -> dict:
    """The options the chosen method reads, and only those."""
    v, cols = {}, st.columns(3)
    for k in ("rounds", "strength", "threshold", "adaptive_threshold"):
        st.session_state.setdefault(f"tr_s_{k}", d[k])
    if "rounds" in options:
        v["rounds"] = int(cols[0].number_input(
            "Rounds", min_value=1, max_value=20, step=1, key="tr_s_rounds",
            help="The student re-labels the pool this many times (Noisy Student), sharing the steps."))
    if "strength" in options:
        v["strength"] = float(cols[1].number_input(
            "Augmentation strength", min_value=0.05, max_value=1.0, step=0.05, key="tr_s_strength",
            help="How hard the unlabeled images are augmented (rotation, shear, shifts, contrast, cutout)."))
    if "adaptive_threshold" in options:
        v["adaptive_threshold"] = cols[2].checkbox("Adaptive thresholds (FreeMatch)", key="tr_s_adaptive_threshold")
    if "threshold" in options and not v.get("adaptive_threshold"):
        v["threshold"] = float(cols[2].slider("Confidence threshold", 0.0, 1.0, step=0.01, key="tr_s_threshold",
                                              help="Pseudo-labels below this confidence are not learned."))
    return v


def teacher_tab() -> None:
    st.caption("The teacher learns from the labeled images only (supervised, with weak augmentation), "
               "and from the items you accepted or corrected.")
    d = api.train_config({"role": "teacher"})
    v = {"role": "teacher", **budget_ui("tr_t", d), **model_ui("tr_t", d)}
    if api.has_ssl_encoder(project):
        v["init"] = st.selectbox("Start from", ["scratch", "ssl"], key="tr_t_init",
                                 help="ssl: the encoder pretrained on this project's images (Embed tab)")
    v.update(common.parallel_device_picker("tr_t_device"))
    estimate_ui(v, "tr_t")
    if st.button("Start teacher", type="primary", icon=":material/play_arrow:", key="tr_start_teacher"):
        start(v)


def student_tab(teacher: dict | None) -> None:
    if teacher is None:
        st.info("A student learns from the teacher's pseudo-labels and starts from its weights: train a teacher "
                "first (or choose to start from scratch).")
    c1, c2 = st.columns(2)
    method = c1.selectbox("Method", list(METHODS), key="tr_s_method", on_change=method_defaults,
                          help="; ".join(f"{n}: {m['description']}" for n, m in METHODS.items()))
    starts = ["teacher", "scratch"] + ["ssl"] * api.has_ssl_encoder(project)
    init = c2.selectbox("Start from", starts, key="tr_s_init",
                        help="ssl: the encoder pretrained on this project's images (Embed tab)")
    st.caption(METHODS[method]["description"].capitalize() + ".")
    d = api.train_config({"role": "student", "method": method})
    v = {"role": "student", "method": method, "init": init, **budget_ui("tr_s", d), **model_ui("tr_s", d),
         **student_options(d, METHODS[method]["options"])}
    v["use_unreviewed"] = st.checkbox("Also learn from unreviewed pseudo-labels", value=True, key="tr_s_unrev")
    v.update(common.parallel_device_picker("tr_s_device"))
    estimate_ui(v, "tr_s")
    if st.button("Start student", type="primary", icon=":material/play_arrow:", key="tr_start_student"):
        start(v)


BACKBONE_HELP = {
    "pixels": "square-rooted, PCA-whitened pixels: seconds; as good as ImageNet features on small gray images",
    "ssl": "self-supervised (SimCLR) on this project's images for a budget of epochs or minutes; a GPU trains "
           "it properly, two CPU cores only for a few epochs",
    "efficientnet-lite0": "ImageNet EfficientNet-Lite0 (offline): for colour photos; ~120 images/s on 2 CPU cores",
    "torchvision:ARCH": "a torchvision classifier without its head; a weights file (state dict) when offline",
    "file:PATH": "a model exported by stcore (Export page or `stcore export --model`)",
}


def embed_tab() -> None:
    st.caption("Embed every image once. The nearest-neighbour graph and the pseudo-labels then read the "
               "embedding; without one, they use the pixels as before.")
    best = api.recommended_backbone(project)
    c1, c2, c3 = st.columns([2, 1, 1])
    common.follow_default("tr_e_kind", best)
    kind = c1.selectbox("Backbone", list(BACKBONE_HELP), key="tr_e_kind",
                        format_func=lambda k: k + (" (recommended here)" if k == best else ""))
    c1.caption(BACKBONE_HELP[kind])
    backbone, options = kind, {}
    if kind == "torchvision:ARCH":
        backbone = "torchvision:" + c2.text_input("Architecture", "resnet18", key="tr_e_arch")
        options["weights"] = c3.text_input("Weights file", "", key="tr_e_weights",
                                           placeholder="/path/to/state_dict.pt") or None
    elif kind == "file:PATH":
        backbone = "file:" + c2.text_input("Model file", "", key="tr_e_file", placeholder="/path/to/model.pt")
    if kind == "ssl":
        options["epochs"] = float(c2.number_input("Epochs", 0.1, 1000.0, 100.0, step=10.0, key="tr_e_epochs",
                                                  help="Passes over the labeled set and the pool"))
        options["minutes"] = float(c3.number_input("Minutes", 0.5, 1440.0, 10.0, step=5.0, key="tr_e_minutes",
                                                   help="Pretraining stops at the epochs or the minutes, "
                                                        "whichever come first"))
    elif kind not in ("pixels", "file:PATH"):
        options["image_size"] = int(c3.number_input("Image size (px)", 32, 512, 128, step=32, key="tr_e_size"))
    if kind in ("pixels", "ssl"):  # one process: a PCA in seconds, or a pretraining on one device
        dev = common.device_picker("tr_e_device")
    else:  # a pretrained network: its batches can be shared among processes or GPUs
        where = common.parallel_device_picker("tr_e_device")
        dev, options["nproc"] = where["device"], where["nproc"]
    if st.button("Embed", type="primary", key="tr_embed", icon=":material/scatter_plot:"):
        if common.start_embed(project, backbone, dev, **options):
            time.sleep(0.2)
            st.rerun()
    if done := api.embeddings(project):
        st.dataframe([{"backbone": e["backbone"], "in use": "yes" if e["current"] else "",
                       "dimensions": e["dims"], "image size": e["image_size"] or "",
                       "images": sum(e["rows"].values()), "seconds": e["seconds"], "device": e["device"],
                       "created": e["created"][:16].replace("T", " "),
                       "weights SHA-256": (e["weights_sha256"] or "")[:12]} for e in done],
                     hide_index=True, width="stretch",
                     column_config={"images": st.column_config.NumberColumn(format="%d")})


def pseudo_tab(teacher: dict | None) -> None:
    if teacher is None:
        st.info("Pseudo-labeling needs a finished teacher; train one first.")
        return
    st.caption(f"Label all {api.counts(project)['pool']:,} pool images with the current teacher, "
               f"**{teacher['id']}**. Earlier pseudo-labels are replaced; your decisions are kept.")
    dev = common.device_picker("tr_p_device")
    if st.button("Pseudo-label now", type="primary", key="tr_pseudo", icon=":material/label:"):
        if common.start_pseudo(project, dev):
            time.sleep(0.2)
            st.rerun()


# ------------------------------------------------------------------ the page
st.title("Train")
run_list = api.runs(project)
teacher = api.teacher(project)
active_now = bool(api.active(run_list))
# run_every only while a run is active: an idle page costs nothing.
every = 1.0 if active_now else None
st.subheader("Now")
view = shown_run(run_list)
if not active_now:  # the same next step as the Project page's: embed, teacher, pseudo-label, review, student
    common.next_step(project, run_list, where="train")
if view is not None:
    st.fragment(live, run_every=every)(view["id"], view["state"] in api.ACTIVE_STATES)

st.subheader("Start")
tabs = st.tabs(["Embed", "Teacher", "Student", "Pseudo-label"], key="tr_tab", on_change="rerun",
               default="Teacher" if api.embeddings(project) else "Embed")
with tabs[0]:
    embed_tab()
with tabs[1]:
    teacher_tab()
with tabs[2]:
    student_tab(teacher)
with tabs[3]:
    pseudo_tab(teacher)

st.subheader("Runs")
st.fragment(history, run_every=every)(active_now)
