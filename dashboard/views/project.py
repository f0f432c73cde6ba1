"""Project: create or open a project; counts, next step, what more labels would buy, the classes (add,
rename, merge, remove, split), skipped files."""
from __future__ import annotations

import streamlit as st

from dashboard import class_edits, common, figures, util
from stcore import api
from stcore.errors import message

st.title("Project")
project = common.current_project(required=False)


def overview(p: api.Project) -> None:
    c, about = api.counts(p), api.info(p)
    st.caption(f"{about['dataset']} · {len(about['classes'])} classes · images "
               f"{'x'.join(str(v) for v in about['input_shape'])} · {about['path']}")
    cols = st.columns(7)
    for col, (label, key) in zip(cols, [("Labeled", "labeled"), ("Pool", "pool"), ("Pseudo-labeled", "pseudo_labeled"),
                                        ("Pending review", "pending"), ("Accepted", "accepted"),
                                        ("Corrected", "corrected"), ("Rejected", "rejected")]):
        # Before the first pseudo-labeling pass nothing waits for review (the caption below says so;
        # a help icon here would cut the label short at 1280 px).
        pending_unknown = key == "pending" and not c["pseudo_labeled"]
        col.metric(label, "—" if pending_unknown else f"{c[key]:,}")
    if not c["pseudo_labeled"]:
        st.caption(f"The {c['pool']:,} pool images are not yet pseudo-labeled.")
    acc = api.pseudo_label_accuracy(p)
    if acc:
        st.caption(f"Pseudo-labels agree with the hidden true labels on {acc['accuracy']:.1%} of the pool"
                   + (f", and on {acc['accuracy_above_0.9']:.1%} of the {acc['n_above_0.9']:,} with "
                      f"confidence ≥ 0.9" if acc["accuracy_above_0.9"] is not None else "") + ".")
    common.next_step(p, where="project")
    label_value_ui(p)
    classes_ui(p)
    skipped = api.skipped_files(p)
    if skipped:
        with st.expander(f"{len(skipped)} image file(s) were skipped when the project was made"):
            st.dataframe(skipped, hide_index=True, width="stretch")


@st.cache_data(show_spinner=False, max_entries=16)
def label_curve(path: str, digest: str, embedding: str) -> dict:
    """api.label_curve, computed again only when the human labels or the embedding change."""
    return api.label_curve(api.open_project(path))


def label_value_ui(p: api.Project) -> None:
    """The learning curve of the human labels and the estimated gain of the next 100."""
    st.subheader("What more labels would buy")
    # a new embedding (or the same backbone embedded again) has new provenance: a new key
    embedding = str(next((e for e in api.embeddings(p) if e["current"]), None))
    curve = label_curve(str(p.path), api.labels_digest(p), embedding)
    if curve["gain"] is None:
        more = (f"Label {curve['needed']} more image(s) for an estimate of what more labels would buy"
                if curve["needed"] else "No estimate yet")
        st.caption(f"{more}: {util.md_escape(curve['reason'])}.")
        return
    st.caption(f"The next 100 labels would add about **{100 * curve['gain']:.1f} points** of accuracy "
               f"(now about {100 * curve['accuracy_now']:.1f}% at {curve['labels']:,} labels).")
    st.plotly_chart(figures.label_value_chart(curve), key="label_value")
    st.caption(util.md_escape(curve["basis"]))


def classes_ui(p: api.Project) -> None:
    """The classes (id, name, human labels) and their distribution, with forms to add and rename."""
    st.subheader("Classes")
    rows = api.classes(p)
    if rows:
        c1, c2 = st.columns([5, 6])  # the table's five columns whole at 1280 px
        c1.dataframe([{"id": r["id"], "class": r["name"], "labels": r["labels"], "test": r["test"],
                       "to review": r["pending"]} for r in rows], hide_index=True,
                     width="stretch", key="cl_table",
                     column_config={"labels": st.column_config.NumberColumn(help="human labels: the labeled set, "
                                                                            "and the accepted and corrected pool items"),
                                    "test": st.column_config.NumberColumn(help="labeled test images"),
                                    "to review": st.column_config.NumberColumn(
                                        help="pool images the teacher predicts as this class, still to review")})
        per_class = api.class_counts(p)
        if any(v for kind in per_class.values() for v in kind.values()):
            with c2:
                st.plotly_chart(figures.class_distribution(p.classes, per_class), key="class_dist")
        else:  # an empty chart would only draw axes
            c2.caption("No image has a label or a pseudo-label yet: the items of each class are charted here "
                       "once they do.")
    else:
        st.info("The project has no classes yet. Add them below, at least two, before labeling images.")
    # Each form commits in its button's callback, before the page is drawn again: the table above
    # shows the change, and a refused name stays in its field with the reason under it.
    a, b = st.columns(2)
    with a.form("cl_add_form", border=True):
        st.text_input("Add classes", key="cl_add_names", placeholder="cat, dog, bird",
                      help="Comma-separated names; each new class gets the next id. Runs trained before then no "
                           "longer fit the project: train a new teacher.")
        st.form_submit_button("Add", key="cl_add", icon=":material/add:", on_click=add_classes, args=(p,))
        form_message("cl_add")
    with b.form("cl_rename_form", border=True):
        c1, c2 = st.columns(2)
        names = {r["id"]: r["name"] for r in rows}
        c1.selectbox("Rename class", list(names), key="cl_rename_id", format_func=lambda k: f"{k}: {names[k]}",
                     placeholder="no classes yet")
        c2.text_input("New name", key="cl_rename_name")
        st.form_submit_button("Rename", key="cl_rename", icon=":material/edit:", disabled=not rows,
                              on_click=rename_class, args=(p,))
        form_message("cl_rename")
    if len(rows) > 1:
        with st.expander("Merge, remove or split classes", expanded=class_edits.PLAN in st.session_state):
            class_edits.edit_ui(p, [r["name"] for r in rows])
            form_message("cl_edit")
    class_edits.history_ui(p)


def add_classes(p: api.Project) -> None:
    text = st.session_state.get("cl_add_names", "")
    names = [n for n in (x.strip() for x in text.split(",")) if n] or [text]  # nothing: the API says why
    try:
        common.check("classes")
        api.add_classes(p, names, reviewer=common.reviewer())
    except common.USER_ERRORS as e:
        st.session_state["cl_add_msg"] = ("error", message(e))
        return
    st.session_state["cl_add_names"] = ""
    st.session_state["cl_add_msg"] = ("success", f"Added {', '.join(names)}")


def rename_class(p: api.Project) -> None:
    cls, name = st.session_state.get("cl_rename_id"), st.session_state.get("cl_rename_name", "")
    try:
        common.check("classes")
        old = p.classes[cls]
        api.rename_class(p, cls, name, reviewer=common.reviewer())
    except common.USER_ERRORS as e:
        st.session_state["cl_rename_msg"] = ("error", message(e))
        return
    st.session_state["cl_rename_name"] = ""
    st.session_state["cl_rename_msg"] = ("success", f"Renamed {old} to {name.strip()}")


def form_message(key: str) -> None:
    """The outcome of a form's last submit (once)."""
    if got := st.session_state.pop(f"{key}_msg", None):
        kind, text = got
        (st.error if kind == "error" else st.success)(util.md_escape(text),
                                                      icon=":material/error:" if kind == "error" else None)


def create_ui() -> dict | None:
    """The create form; returns its values when submitted. The dataset is chosen outside the
    form, so the form shows only the fields that dataset reads."""
    dataset = st.selectbox("Dataset", api.DATASETS, index=0, key="pr_dataset")
    folder_data = dataset == "folder"
    with st.form("create"):
        default_dir = api.stcore_home() / "projects" / "my-project"
        folder = st.text_input("New project folder", value=str(default_dir), key="pr_folder",
                               help="An empty or new folder; it will hold the store, the image cache and runs.")
        how, n, data_root, classes = "per class", 10, "", ""
        if folder_data:
            data_root = st.text_input("Image folder", value="", key="pr_data_root",
                                      placeholder="/path/to/images",
                                      help="DIR/labeled/CLASS/*.png (or .jpg) for the labeled images, one folder "
                                           "per class, and DIR/unlabeled/ for the pool; DIR/test/CLASS/ if "
                                           "you have a test set.")
            st.caption("The labels are the images in DIR/labeled/CLASS/: each class folder's images are its "
                       "labeled examples.")
            classes = st.text_input("Classes (optional)", value="", key="pr_classes", placeholder="cat, dog, bird",
                                    help="The class names, for a folder with only DIR/unlabeled/ (or name them in "
                                         "DIR/classes.txt). Empty: the folders of DIR/labeled/, or none yet (add "
                                         "them here later).")
        else:
            c2, c3 = st.columns(2)
            how = c2.radio("Labels", ["per class", "total"], horizontal=True)
            n = c3.number_input("How many", min_value=0, value=10, step=1,
                                help="0: start with no labels, and label the first images on the Review page")
        c4, c5 = st.columns(2)
        seed = c4.number_input("Seed", min_value=0, value=0, step=1)
        limit = c5.number_input("Keep only the first N training images (0 = all; for a quick trial)",
                                min_value=0, value=0, step=500, key="pr_limit")
        if not st.form_submit_button("Create project", type="primary"):
            return None
    return {"folder": folder, "dataset": dataset, "how": how, "n": int(n), "seed": int(seed),
            "data_root": data_root.strip(), "limit": int(limit),
            "classes": [c.strip() for c in classes.split(",") if c.strip()] or None}


def create(v: dict) -> None:
    try:
        roots = common.allowed_roots()
        folder = util.resolve_under_roots(v["folder"], roots)
        data_root = str(util.resolve_under_roots(v["data_root"], roots)) if v["data_root"] else None
        if v["dataset"] == "folder" and not data_root:
            raise ValueError("a 'folder' dataset needs the image folder")
        with st.status(f"Creating {folder}...", expanded=True) as status:
            api.create_project(folder, dataset=v["dataset"], seed=v["seed"], data_root=data_root, limit=v["limit"] or None,
                           classes=v["classes"],
                           labels_per_class=v["n"] if v["how"] == "per class" and v["dataset"] != "folder" else None,
                           labeled=v["n"] if v["how"] == "total" and v["dataset"] != "folder" else None,
                           progress=status.write)
            status.update(label=f"Created {folder}", state="complete")
    except common.USER_ERRORS as e:
        common.show_error(e)
        return
    common.set_project(folder)
    st.rerun()


def open_ui() -> None:
    known = sorted({p.parent for p in api.stcore_home().glob("**/" + api.DB)} | ({project.path} if project else set()))
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    typed = c1.text_input("Project folder", value="", placeholder=str(known[0]) if known else "/path/to/project",
                          key="open_path")
    if c2.button("Open", key="open_btn") and typed:
        try:
            folder = util.resolve_under_roots(typed, common.allowed_roots())
            api.open_project(folder)
        except common.USER_ERRORS as e:
            common.show_error(e)
        else:
            common.set_project(folder)
            st.rerun()
    others = [k for k in known if not project or k != project.path]
    if others:
        st.caption("Projects in " + str(api.stcore_home()))
        for k in others:
            if st.button(str(k), key=f"open_{k}", icon=":material/folder_open:"):
                common.set_project(k)
                st.rerun()


if project is not None:
    overview(project)
else:
    path = common.project_choice()
    if path == api.default_project_path():
        st.info("Welcome. There is no project yet: create the default one (Fashion-MNIST, 10 labeled images per "
                "class, the rest as an unlabeled pool) to start, or create your own below.")
        if st.button("Create the default Fashion-MNIST project", type="primary", key="create_default"):
            try:
                with st.spinner("Decoding Fashion-MNIST once..."):
                    api.ensure_default_project(say=lambda m: None)
            except common.USER_ERRORS as e:
                common.show_error(e)
            else:
                st.rerun()
    else:
        try:
            common.open_project(path)
        except common.USER_ERRORS as e:  # say why it cannot be opened; create and open stay below
            common.show_error(e)

with st.expander("Create a new project", expanded=project is None):
    values = create_ui()
    if values:
        create(values)
with st.expander("Open another project"):
    open_ui()
