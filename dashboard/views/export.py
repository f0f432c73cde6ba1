"""Export: the labels (CSV or JSON) and a model checkpoint, as downloads; the images with their
labels for other tools (class folders, Hugging Face, Label Studio), written to a folder; and the
labels of another tool imported (a file uploaded, or a file or folder on this machine)."""
from __future__ import annotations

import heapq
import os
import tempfile
from pathlib import Path

import streamlit as st

from dashboard import common, figures, util
from stcore import api

st.title("Export")
project = common.current_project()
base = util.safe_filename(project.path.name, "project")
counts = api.counts(project)

st.subheader("Labels")
st.caption(f"Every labeled image ({counts['labeled']:,}), your decisions ({counts['accepted']:,} accepted, "
           f"{counts['corrected']:,} corrected, {counts['rejected']:,} rejected) and the pending pseudo-labels "
           f"({counts['pending'] if counts['pseudo_labeled'] else 0:,}), with status and the teacher's confidence "
           f"(empty where a person gave the label).")
if counts["pseudo_labeled"] == 0 and counts["accepted"] + counts["corrected"] == 0:
    st.info("Only the starting labels exist so far; pseudo-label and review the pool to export more.")
c1, c2, _ = st.columns([1, 1, 3])
# Callables: the file is built when the button is clicked, so it always holds the latest decisions.
c1.download_button("Labels as CSV", data=lambda: api.labels_csv(project), file_name=f"{base}-labels.csv", mime="text/csv",
                   icon=":material/table:", key="ex_csv", on_click="ignore")
c2.download_button("Labels as JSON", data=lambda: api.labels_json(project), file_name=f"{base}-labels.json",
                   mime="application/json", icon=":material/data_object:", key="ex_json", on_click="ignore")
st.caption(f"CSV: {api.EXPORT_FORMATS['csv'][1]}. JSON: {api.EXPORT_FORMATS['json'][1]}.")

st.subheader("Images with their labels, for other tools")
FOLDER_FORMATS = [f for f in api.EXPORT_FORMATS if f not in ("csv", "json")]
fmt = st.radio("Format", FOLDER_FORMATS, horizontal=True, key="ex_fmt",
               format_func={"imagefolder": "Class folders", "hf": "Hugging Face", "labelstudio": "Label Studio"}.get)
st.caption(f"Read by {api.EXPORT_FORMATS[fmt][1]}.")
default = project.path.parent / f"{project.path.name}-{fmt}{'.json' if fmt == 'labelstudio' else ''}"
dest = st.text_input("Write to (a new folder)" if api.EXPORT_FORMATS[fmt][0] == "a folder" else
                     "Write the tasks to (a .json file; the images go beside it)", str(default), key=f"ex_dest_{fmt}")
copy = st.checkbox("Copy the original images (default: links to them)", key="ex_copy")
min_conf = None
if fmt != "labelstudio" and st.checkbox("Also the pending pseudo-labels above a confidence", key="ex_pseudo"):
    min_conf = st.slider("Confidence at least", 0.5, 1.0, 0.95, 0.01, key="ex_min_conf")
if st.button("Write", icon=":material/save:", key="ex_write"):
    try:
        out = api.export_dataset(project, util.resolve_under_roots(dest), fmt, copy=copy, min_confidence=min_conf)
        st.success(f"Wrote {out['items']:,} images to {util.md_escape(out['path'])}", icon=":material/check:")
    except common.USER_ERRORS as e:
        common.show_error(e)

st.subheader("Import labels from another tool")
st.caption("A CSV or JSON of image path (or id) and label (ours, or any with those columns), a Label Studio "
           "export (JSON, JSON-MIN, CSV or TSV), FiftyOne's labels.json or its folder, or a folder of class folders. "
           "Rows find their images by path, else id, else the image's pixels, else its file name where only one "
           "image has it; the import is one action in the history (Undo on Review reverts it), and the rows that "
           "found no image are listed in a CSV in the project's imports folder.")
upload = st.file_uploader("A labels file", type=["csv", "tsv", "json"], key="im_file")
typed = st.text_input("…or a file or folder of class folders on this machine", key="im_path")
c1, c2 = st.columns(2)
fmt_in = c1.selectbox("Format", ["guess from the file", *api.IMPORT_FORMATS], key="im_fmt")
column = c2.text_input("Label column (where the file has several)", key="im_column",
                       help="The column that holds the class: in a CSV, `label` unless named here; in a Label Studio "
                            "JSON-MIN or CSV export, the name of its Choices control when the tasks have other data")
add_new = st.checkbox("Add the classes it names that the project lacks", value=True, key="im_new")


def import_now() -> dict:
    common.check("bulk")
    if add_new:
        common.check("classes")
    fmt_given = None if fmt_in == "guess from the file" else fmt_in
    if upload is None:
        return api.import_labels(project, util.resolve_under_roots(typed), fmt=fmt_given, new_classes=add_new,
                                 reviewer=common.reviewer(), label_column=column.strip() or None)
    with tempfile.TemporaryDirectory(prefix="stcore-import-") as tmp:  # the upload, under its own name
        source = Path(tmp) / util.safe_filename(upload.name, "labels.csv")
        source.write_bytes(upload.getvalue())
        return api.import_labels(project, source, fmt=fmt_given, new_classes=add_new, reviewer=common.reviewer(),
                                 label_column=column.strip() or None)


if st.button("Import", icon=":material/upload:", key="im_go", disabled=upload is None and not typed.strip()):
    try:
        st.session_state["im_done"] = import_now()
        st.rerun()  # the whole page again: the sidebar's counts include the imported labels
    except common.USER_ERRORS as e:
        common.show_error(e)
if got := st.session_state.pop("im_done", None):
    how = ", ".join(f"{n:,} by {k}" for k, n in got["matched"].items()) or "none"
    st.success(util.md_escape(
        f"{got['rows']:,} row{'s' * (got['rows'] != 1)} ({got['format']}): {sum(got['matched'].values()):,} matched ({how}); "
        f"{got['imported']:,} labels imported, {got['unchanged']:,} already so"
        + (f"; new classes: {', '.join(got['classes_added'])}" if got["classes_added"] else "")),
        icon=":material/check:")
    if got["not_imported"]:
        st.warning(util.md_escape(f"{got['not_imported']:,} row{'s' * (got['not_imported'] != 1)} not imported: "
                                  + "; ".join(f"{n:,} {why}" for why, n in got["reasons"].items())
                                  + f". They are listed in {got['not_imported_file']}."))

st.subheader("Model")
all_runs = api.runs(project)  # read once: the model's list and the predict jobs'
done = [r for r in all_runs if r["role"] in ("teacher", "student") and r["state"] == "finished"]
if not done:
    st.info("No finished model yet: train a teacher (and then a student) first.")
    common.next_step(project, where="export")
    st.stop()
ids = [r["id"] for r in reversed(done)]
students = [i for i in ids if i.startswith("student")]
run_id = st.selectbox("Run", ids, index=ids.index(students[0]) if students else 0, key="ex_run")
run = next(r for r in done if r["id"] == run_id)
acc, _ = api.accuracy_of(project, run)
st.caption(f"{run_id}: {run['config'].get('model')} · test accuracy {acc:.1%}" if acc is not None else run_id)
st.caption("A PyTorch file with the EMA weights, the config, the class names and the input shape; load it with "
           "`torch.load(path, weights_only=True)`.")
st.download_button("Model checkpoint (.pt)", data=lambda: api.model_bytes(project, run_id)[1],
                   file_name=util.safe_filename(f"{base}-{run_id}.pt"), mime="application/octet-stream",
                   icon=":material/download:", key="ex_model", on_click="ignore")


st.subheader("Classify new images")
st.caption(f"Images uploaded, or a folder or file on this machine, each given {run_id}'s class, confidence and margin "
           "(top-1 minus top-2 probability) in a background job: leaving the page does not stop it. The predictions "
           "are a CSV to download; `stcore predict` does the same from a terminal.")
pictures = st.file_uploader("Images", type=[e[1:] for e in api.IMAGE_EXTS], accept_multiple_files=True, key="pr_files")
where = st.text_input("…or a folder (read recursively) or file on this machine", key="pr_path")
if st.button("Classify", icon=":material/label:", key="pr_go", disabled=not pictures and not where.strip()):
    try:
        common.check("runs")
        paths = [util.resolve_under_roots(where)] if where.strip() else []  # both given: refused, saying so
        api.start_predict(project, paths, uploads=[(f.name, f.getvalue()) for f in pictures or []], run_id=run_id,
                          device=common.best_device())
        st.rerun()
    except common.USER_ERRORS as e:
        common.show_error(e)


@st.cache_data(show_spinner=False, max_entries=4)
def least_confident(path: str, project_id: str, job_id: str, ended: float | None, n: int = 1000) -> dict:
    """A finished job's predictions, read once: their count, the n least confident (paths
    relative to the folder they share) and that folder. A finished job never changes."""
    rows = api.predictions(api.open_project(path), job_id)
    paths = [r["path"] for r in rows]
    root = os.path.commonpath(paths) if len(paths) > 1 and all(os.path.isabs(x) for x in paths) else ""
    root = os.path.dirname(root) if root in paths else root
    shown = [{**r, "path": os.path.relpath(r["path"], root) if root else r["path"]}
             for r in heapq.nsmallest(n, rows, key=lambda r: r["confidence"])]
    return {"count": len(rows), "rows": rows, "shown": shown, "root": root}


def prediction_view(job: dict) -> None:
    """A predict job: its progress with Cancel while it runs, else what it found or why it stopped."""
    if job["state"] in api.ACTIVE_STATES:
        c1, c2 = st.columns([5, 1], vertical_alignment="center")
        with c1:
            common.follow(project, job["id"], f"classifying {job['total']:,} images with {job['config']['run']}")
        if c2.button("Cancel", key=f"pr_cancel_{job['id']}", icon=":material/stop:"):
            try:
                common.check("runs")
                api.cancel(project, job["id"])
            except common.USER_ERRORS as e:
                common.show_error(e)
        return
    if job["state"] == "cancelled":
        st.info(f"{job['id']} was cancelled; classify the images again for their predictions.")
        return
    if job["state"] != "finished":
        st.error(util.md_escape(f"{job['id']} {job['state']}: {job['error'] or 'it stopped before the end'}. "
                                "Classify the images again."), icon=":material/error:")
        return
    try:
        got = least_confident(str(project.path), api.info(project)["id"], job["id"], job["ended"])
    except common.USER_ERRORS as e:
        common.show_error(e)
        return
    st.success(util.md_escape(f"{job['id']}: {api.summary(job)}"), icon=":material/check:")
    if job["result"]["skipped"]:
        st.warning(util.md_escape("Skipped: " + "; ".join(f"{s['path']} ({s['reason']})"
                                                         for s in job["result"]["skipped_files"][:5])
                                  + (" …" if job["result"]["skipped"] > 5 else "")))
    st.plotly_chart(figures.predicted_classes(project.classes, got["rows"]), key="pr_chart")
    more = f"the {len(got['shown']):,} least confident of {got['count']:,}" if got["count"] > len(got["shown"]) else \
        "least confident first"
    st.caption(util.md_escape(f"Predictions, {more}" + (f" (paths under {got['root']})" if got["root"] else "") + ":"))
    st.dataframe(got["shown"], hide_index=True, width="stretch",
                 column_config={"confidence": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0,
                                                                              format="%.3f"),
                                "margin": st.column_config.NumberColumn(format="%.3f")})
    st.download_button("Predictions as CSV", data=lambda: api.predictions_bytes(project, job["id"]),
                       file_name=util.safe_filename(f"{base}-{job['id']}.csv"), mime="text/csv",
                       icon=":material/table:", key="pr_csv", on_click="ignore")


jobs = [r for r in reversed(all_runs) if r["role"] == "predict"]
if jobs:
    # keyed by the newest job: a new one is a new box, showing it (a kept choice would hide it)
    shown_job = st.selectbox("Predictions of", [j["id"] for j in jobs], key=f"pr_job_{jobs[0]['id']}",
                             format_func=lambda i: next(f"{i} ({j['config']['run']})" for j in jobs
                                                        if j["id"] == i)) if len(jobs) > 1 else jobs[0]["id"]
    prediction_view(next(j for j in jobs if j["id"] == shown_job))
