"""What every page shares: the current project, cached handles and tables, the password gate,
the device picker, readable errors, and the 'what to do next' panel.

Pages reach stcore through stcore.api only. Nothing important lives in st.session_state:
decisions and runs go to the store at once; the session keeps only UI state (the chosen
project, filters, the page number).
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import sys
import threading
from collections import OrderedDict
from pathlib import Path

import streamlit as st

from stcore import api
from stcore.errors import StcoreError, message

from . import util

# Errors a user can act on: shown as one line, never a traceback.
USER_ERRORS = (StcoreError, OSError)

PAGES = {"project": "views/project.py", "review": "views/review.py", "map": "views/map.py",
         "train": "views/train.py", "evaluate": "views/evaluate.py", "export": "views/export.py",
         "team": "views/team.py"}
NO_TEST_SET = ("No test set, so no test accuracy: this project has no test images. To measure it, put labeled images "
               "in the data folder's test/<class>/ folders and create the project again, then import this project's "
               "labels into it (Export: labels as CSV, then Import). Meanwhile the Project page's label-value curve "
               "estimates accuracy from your labels.")


def show_error(e: BaseException) -> None:
    st.error(message(e), icon=":material/error:")


# ------------------------------------------------------------------ the current project
def launch_project() -> Path:
    """The project given to `streamlit run app.py -- --project PATH`, else $STCORE_PROJECT,
    else the default Fashion-MNIST project in $STCORE_HOME."""
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--project")
    args, _ = ap.parse_known_args(sys.argv[1:])
    path = args.project or os.environ.get("STCORE_PROJECT")
    return Path(path).expanduser().resolve() if path else api.default_project_path()


@st.cache_resource(show_spinner=False)
def _open(path: str) -> api.Project:
    # One handle per project folder, shared by all sessions; the store gives each thread its own
    # SQLite connection.
    return api.open_project(path)


def open_project(path: str | Path) -> api.Project:
    p = _open(str(Path(path).resolve()))
    if not api.is_project(p.path):  # deleted and maybe re-created behind our back
        _open.clear()
        p = _open(str(Path(path).resolve()))
    return p


def allowed_roots() -> list[Path]:
    return util.allowed_roots() + [api.stcore_home().resolve()]


def project_choice() -> Path:
    """The folder this session works on: one opened on the Project page (kept in the URL so a
    refresh keeps it), else the one the server was started with."""
    chosen = st.session_state.get("project_path") or st.query_params.get("project")
    if chosen:
        try:
            real = Path(chosen).resolve()
            if real != launch_project():
                util.resolve_under_roots(str(real), allowed_roots())
            # A sidebar link clears the URL's parameters: the session keeps the project, so every
            # navigation stays on it (keep_project_in_url then writes it back into the URL).
            st.session_state["project_path"] = str(real)
            return real
        except ValueError as e:
            st.session_state.pop("project_path", None)
            show_error(e)
    return launch_project()


def set_project(path: Path) -> None:
    st.session_state["project_path"] = str(path)
    for k in [k for k in st.session_state if k.startswith(("rv_", "ev_", "tr_"))]:
        del st.session_state[k]  # filters and pickers of the old project mean nothing here


def keep_project_in_url(path: Path) -> None:
    if path != launch_project():
        if st.query_params.get("project") != str(path):
            st.query_params["project"] = str(path)
    elif "project" in st.query_params:
        del st.query_params["project"]


def sidebar_counts(project: api.Project, slot=None) -> None:
    """The project's counts in the sidebar. The app draws them into a slot; a page's fragment (the
    Review grid, after a decision) calls this with no slot to draw them again there."""
    slot = slot or st.session_state.get("_sidebar_counts")
    if slot is None:
        return
    st.session_state["_sidebar_counts"] = slot  # a UI handle of this session's page, not data
    c = api.counts(project)
    teacher = api.teacher(project)
    pending = f"{c['pending']:,} pending" if c["pseudo_labeled"] else "not yet pseudo-labeled"
    reviewed = c["accepted"] + c["corrected"] + c["rejected"]
    human = c["labeled"] + c["accepted"] + c["corrected"]  # the labeled set's and the pool's
    slot.caption(f"{human:,} human label{'s' * (human != 1)} · {c['pool']:,} pool · {pending} · {reviewed:,} reviewed "
                 f"({c['rejected']:,} rejected) · teacher: {teacher['id'] if teacher else 'none yet'}")


def current_project(*, required: bool = True) -> api.Project | None:
    """The session's project; with required, a page without one says how to get one and stops."""
    path = project_choice()
    try:
        return open_project(path)
    except USER_ERRORS as e:
        if not required:
            return None
        if path == api.default_project_path():
            st.info("There is no project yet. Create the default Fashion-MNIST project (10 labels per "
                    "class) or another one on the Project page.")
        else:
            show_error(e)
        st.page_link(PAGES["project"], label="Go to the Project page", icon=":material/folder:")
        st.stop()


# ------------------------------------------------------------------ derived tables
@st.cache_data(show_spinner=False, max_entries=64)
def thumbnails(path: str, project_id: str, split: str, ids: tuple[int, ...], target: int) -> list[bytes]:
    """PNG bytes of items, upscaled without blur. Images never change in a project, so the
    cache (keyed by the project's id as well as its path) can never show a stale one."""
    return [util.png_bytes(im, target) for im in api.images(open_project(path), list(ids), split)]


def thumbs(project: api.Project, split: str, ids: list[int], target: int = 140) -> list[bytes]:
    return thumbnails(str(project.path), api.info(project)["id"], split, tuple(int(i) for i in ids), target)


URI_CACHE_ITEMS = 20_000  # thumbnails kept as data: URIs (a few KB each), shared by every session


@st.cache_resource(show_spinner=False)
def _uri_cache() -> tuple[threading.Lock, OrderedDict]:
    return threading.Lock(), OrderedDict()


def thumbnail_uris(path: str, project_id: str, split: str, ids: tuple[int, ...], target: int) -> list[str]:
    """data: URIs of items at their own size up to target (see util.thumb_uri), each cached on
    its own: a decision changes which items a page shows, and only the new ones are encoded.
    Images never change in a project, so the key (its id as well as its path) never goes stale."""
    lock, cache = _uri_cache()
    keys = [(path, project_id, split, int(i), target) for i in ids]
    with lock:
        missing = [k for k in dict.fromkeys(keys) if k not in cache]
    made = [util.thumb_uri(im, target) for im in api.images(open_project(path), [k[3] for k in missing], split)] \
        if missing else []
    with lock:  # sessions draw at once: each reads and trims the shared cache under the lock
        cache.update(zip(missing, made))
        out = []
        for k in keys:
            cache.move_to_end(k)
            out.append(cache[k])
        while len(cache) > URI_CACHE_ITEMS:
            cache.popitem(last=False)
    return out


def _per_split(rows: list[dict], fetch) -> list:
    """fetch(split, ids) for the rows of each split ('split' in each row, the pool by default),
    back in the rows' order."""
    out: dict[tuple[str, int], object] = {}
    for split in dict.fromkeys(r.get("split", "pool") for r in rows):
        ids = [int(r["id"]) for r in rows if r.get("split", "pool") == split]
        out.update({(split, i): x for i, x in zip(ids, fetch(split, ids))})
    return [out[(r.get("split", "pool"), int(r["id"]))] for r in rows]


def item_thumbs(project: api.Project, rows: list[dict], target: int = 140) -> list[bytes]:
    """PNG thumbnails of review rows of any split, in order."""
    return _per_split(rows, lambda split, ids: thumbs(project, split, ids, target))


def item_uris(project: api.Project, rows: list[dict], target: int = 140) -> list[str]:
    """Thumbnails of review rows of any split as data: URIs, in order."""
    return _per_split(rows, lambda split, ids: thumbnail_uris(str(project.path), api.info(project)["id"], split,
                                                              tuple(ids), target))


def active_job(project: api.Project, role: str) -> dict | None:
    """The latest queued or running run of a role (map, label-issues, duplicates), or None."""
    busy = [r for r in api.active(api.runs(project)) if r["role"] == role]
    return busy[-1] if busy else None


def last_failure(project: api.Project, role: str) -> dict | None:
    """The latest run of a role, when it ended without a result (failed or interrupted)."""
    done = [r for r in api.runs(project) if r["role"] == role]
    return done[-1] if done and done[-1]["state"] in ("failed", "interrupted") else None


def follow(project: api.Project, run_id: str, what: str) -> None:
    """A job's progress bar while it runs, re-read from the store every second; when the job
    ends, the whole page runs again, so it shows the job's result or its error without a reload."""
    st.fragment(_follow, run_every=1.0)(str(project.path), run_id, what)


def _follow(path: str, run_id: str, what: str) -> None:
    run = api.run(open_project(path), run_id)
    if run["state"] not in api.ACTIVE_STATES:
        st.rerun(scope="app")
    text = f"{run_id} is {run['state']}: {what}"
    if run["total"]:
        text += f" · {run['step']:,}/{run['total']:,}"
    st.progress(min(run["step"] / max(run["total"], 1), 1.0), text=text)


def follow_default(key: str, default) -> None:
    """Give the widget `key` the value `default`, unless the user chose another: a form's
    default follows the project's state (a new embedding, a new teacher) while the page is open."""
    shown = f"{key}__default"
    if key not in st.session_state or st.session_state[key] == st.session_state.get(shown):
        st.session_state[key] = default
    st.session_state[shown] = default


@st.cache_data(show_spinner=False, max_entries=32)
def _similar(path: str, project_id: str, embedding: str, item_id: int, k: int) -> dict:
    return api.similar(open_project(path), item_id, k)


def similar(project: api.Project, item_id: int, k: int) -> dict:
    """api.similar, kept per embedding: a decision in the Similar list redraws the grid without
    reading the embedding from disk again (the neighbours' labels and statuses are read fresh
    by the page, not from here)."""
    current = next((f"{e['backbone']}@{e.get('created')}" for e in api.embeddings(project) if e["current"]), "")
    return _similar(str(project.path), api.info(project)["id"], current, int(item_id), int(k))


@st.cache_data(show_spinner=False, max_entries=8)
def test_predictions(path: str, project_id: str, run_id: str, ended: float | None) -> list[int] | None:
    """The class a finished run predicted for each test image, as its worker saved them. A
    finished run never changes; its end time is part of the key in case it is evaluated again."""
    return api.test_predictions(open_project(path), run_id)


# ------------------------------------------------------------------ access
def expected_password() -> str | None:
    if os.environ.get("STCORE_PASSWORD"):
        return os.environ["STCORE_PASSWORD"]
    try:
        value = st.secrets.get("password")
    except Exception:  # no secrets.toml at all: Streamlit raises its own not-found error
        value = None
    return str(value) if value else None


def password_gate() -> bool:
    """True when this session may use the app. Off-machine access (any address but loopback;
    Streamlit binds all interfaces when none is given) needs the password."""
    address = st.get_option("server.address") or ""
    expected = expected_password()
    if not expected:  # off this machine, accounts are the gate: sign_in_gate refuses a project with none
        st.session_state["_off_machine"] = None if api.is_local(address) else (address or "all interfaces")
        return True
    if st.session_state.get("auth_ok"):
        return True
    st.title("stcore dashboard")
    with st.form("login"):
        entered = st.text_input("Password", type="password")
        ok = st.form_submit_button("Sign in")
    if ok:
        if hmac.compare_digest(entered.encode(), expected.encode()):
            st.session_state["auth_ok"] = True
            st.rerun()
        st.error("Wrong password.")
    return False


# ------------------------------------------------------------------ accounts
# A signed-in session outlives a reload in a cookie that holds its token (the store keeps only
# the token's hash); the cookie is written by a script of a few lines, there being no Streamlit
# call that sets one, and read back with st.context.cookies.
_cookie = st.components.v2.component(
    "stcore_session_cookie", js="export default function ({ data }) { document.cookie = data.cookie; }")


def _cookie_name(project: api.Project) -> str:
    return "stcore_session_" + hashlib.sha256(str(project.path).encode()).hexdigest()[:12]


def user() -> dict | None:
    """The signed-in person ({'name', 'role'}) on this run's project, or None where it has no accounts."""
    return st.session_state.get("_user")


def reviewer() -> str | None:
    """The name stored with this session's decisions: the signed-in person's, else the default."""
    u = user()
    return u["name"] if u else None


def check(action: str) -> None:
    """AccessError unless this session may take an admin action (api.ADMIN_ONLY): the check each
    handler makes on the server, inside the try that shows its errors, whatever the page showed."""
    api.require(user(), action)


def sign_in_gate(project: api.Project | None) -> bool:
    """True when this session may use the project: it has no accounts, or the session is signed
    in (now, or before a reload). Otherwise draws the sign-in form."""
    st.session_state.pop("_user", None)
    if project is None or not api.has_users(project):
        if off := st.session_state.get("_off_machine"):
            st.error(f"This dashboard is served on {off} without a password, and "
                     f"{'no project is open' if project is None else 'this project has no accounts'}. Add "
                     f"accounts (`stcore users PROJECT add NAME --role admin`), or stop it and set STCORE_PASSWORD "
                     f"(or 'password' in .streamlit/secrets.toml), or serve on 127.0.0.1.")
            return False
        return True
    if oidc_provider() is not False:
        return _oidc_gate(project)
    name = _cookie_name(project)
    token = st.session_state.get(name) or st.context.cookies.get(name)
    if (u := api.signed_in(project, token)) is not None:
        st.session_state.update({"_user": u, name: token})
        with st.sidebar:
            _cookie(key="session_cookie", data={"cookie": f"{name}={token}; path=/; max-age=43200; SameSite=Strict"})
            st.caption(f"Signed in as **{util.md_escape(u['name'])}** ({u['role']})")
            st.button("Sign out", key="sign_out", on_click=_sign_out, args=(project, name, token))
        return True
    if st.session_state.pop("_signed_out", False):
        _cookie(key="session_cookie", data={"cookie": f"{name}=; path=/; max-age=0; SameSite=Strict"})
    st.title(f"Sign in to {project.path.name}")
    with st.form("sign_in"):
        who = st.text_input("Name")
        secret = st.text_input("Password", type="password")
        go = st.form_submit_button("Sign in", type="primary")
    if go:
        try:
            st.session_state[name] = api.sign_in(project, who, secret)
        except USER_ERRORS as e:
            show_error(e)
            return False
        st.rerun()
    st.caption("The project's admin gives you an account: `stcore users PROJECT add NAME`.")
    return False


def release_when_away(project: api.Project, *, on_review: bool) -> None:
    """A reviewer who left the Review page for another page holds its cards no longer."""
    if not on_review and (held := st.session_state.pop("rv_leased", None)):
        api.release(project, held[0])


def oidc_provider() -> str | None | bool:
    """False where no OpenID Connect provider is configured ([auth] in .streamlit/secrets.toml);
    else the provider st.login takes: None for the one given in [auth] itself, or the name of
    the first [auth.NAME] section."""
    try:
        auth = st.secrets.get("auth")
    except Exception:  # no secrets.toml at all
        return False
    if not auth:
        return False
    if "client_id" in auth:
        return None
    return next((k for k, v in auth.items() if hasattr(v, "keys")), None)


def _oidc_gate(project: api.Project) -> bool:
    """Sign-in through the configured OpenID Connect provider (Streamlit's st.login, whose cookie
    keeps it over a reload). The e-mail it vouches for must be an account of the project: its
    role applies."""
    if not st.user.is_logged_in:
        st.title(f"Sign in to {project.path.name}")
        st.button("Sign in with your organisation's account", key="oidc_sign_in", type="primary",
                  on_click=st.login, args=(() if oidc_provider() is None else (oidc_provider(),)))
        st.caption("The project's admin gives your e-mail an account: `stcore users PROJECT add EMAIL`.")
        return False
    try:
        u = api.account_of(project, st.user.get("email") or st.user.get("name"))
    except USER_ERRORS as e:
        show_error(e)
        st.button("Sign out", key="sign_out", on_click=st.logout)
        return False
    st.session_state["_user"] = u
    with st.sidebar:
        st.caption(f"Signed in as **{util.md_escape(u['name'])}** ({u['role']})")
        st.button("Sign out", key="sign_out", on_click=_oidc_sign_out, args=(project, u["name"]))
    return True


def _oidc_sign_out(project: api.Project, name: str) -> None:
    api.release(project, name)
    st.session_state.pop("rv_leased", None)
    st.logout()


def _sign_out(project: api.Project, name: str, token: str) -> None:
    if (u := api.signed_in(project, token)) is not None:
        api.release(project, u["name"])  # the cards held for them go back to the others
    api.sign_out(project, token)
    st.session_state.pop(name, None)
    st.session_state.pop("rv_leased", None)  # signed in again, the page leases its items at once
    st.session_state["_signed_out"] = True


# ------------------------------------------------------------------ widgets and actions
@st.cache_data(ttl=10, show_spinner=False)
def devices() -> list[dict]:
    return api.devices()


def device_picker(key: str, label: str = "Device") -> str:
    """A selectbox of the devices really there (cpu, each cuda:N with its free memory, mps), for a job in one process."""
    devs = devices()
    names = [d["name"] for d in devs]
    labels = {d["name"]: d["label"] for d in devs}
    default = next((i for i, n in enumerate(names) if n.startswith("cuda")), 0)
    return st.selectbox(label, names, index=default, format_func=labels.get, key=key)


def parallel_device_picker(key: str) -> dict:
    """Where a run trains or embeds: {"device", "nproc"}. One device, or several processes under torchrun
    (DDP): a number of processes on the CPU, or several GPUs picked by name, one process each."""
    devs = devices()
    labels = {d["name"]: d["label"] for d in devs}
    gpus = [d["name"] for d in devs if d["name"].startswith("cuda")]
    kinds = ["cpu"] + (["cuda"] if gpus else []) + (["mps"] if "mps" in labels else [])
    names = {"cpu": "CPU", "cuda": "CUDA GPUs" if len(gpus) > 1 else labels.get("cuda:0", "CUDA"),
             "mps": labels.get("mps", "mps")}
    c1, c2 = st.columns(2)
    kind = c1.selectbox("Device", kinds, index=kinds.index("cuda") if gpus else 0, format_func=names.get,
                        key=f"{key}_kind")
    if kind == "cpu":
        n = int(c2.number_input("Processes", min_value=1, max_value=max(1, os.cpu_count() or 1), value=1, step=1,
                                key=f"{key}_nproc",
                                help="More than 1: the processes (torchrun, gloo; DDP for training) split each "
                                     "batch among them and share the CPU's cores."))
        return {"device": "cpu", "nproc": n}
    if kind == "cuda" and len(gpus) > 1:
        picked = c2.multiselect("GPUs", gpus, default=gpus[:1], format_func=labels.get, key=f"{key}_gpus",
                                help="Several: one process per GPU (torchrun, NCCL; DDP for training), each "
                                     "batch split among them.")
        picked = picked or gpus[:1]
        return {"device": ",".join(picked), "nproc": len(picked)}
    return {"device": gpus[0] if kind == "cuda" else kind, "nproc": 1}


def best_device() -> str:
    return api.resolve_device("auto")


def start_teacher(project: api.Project, device: str | None = None) -> str | None:
    """Start a teacher with default settings (the empty-state button); the run id, or None."""
    try:
        check("runs")
        run_id = api.start_training(project, {"role": "teacher", "device": device or best_device()})
    except USER_ERRORS as e:
        show_error(e)
        return None
    st.toast(f"Started {run_id}")
    return run_id


def start_embed(project: api.Project, backbone: str | None = None, device: str | None = None, **options) -> str | None:
    backbone = backbone or api.recommended_backbone(project)
    try:
        check("runs")
        run_id = api.start_embedding(project, backbone, device=device or best_device(), **options)
    except USER_ERRORS as e:
        show_error(e)
        return None
    st.toast(f"Started {run_id}: embedding the images with {backbone}")
    return run_id


def start_pseudo(project: api.Project, device: str | None = None) -> str | None:
    try:
        check("runs")
        run_id = api.start_pseudo_label(project, device=device or best_device())
    except USER_ERRORS as e:
        show_error(e)
        return None
    st.toast(f"Started {run_id}: pseudo-labeling the pool")
    return run_id


def next_step(project: api.Project, run_list: list[dict] | None = None, *, where: str = "") -> None:
    """Say what to do next in the loop, with the button or link that does it."""
    run_list = api.runs(project) if run_list is None else run_list
    counts = api.counts(project)
    busy = api.active(run_list)
    teacher = api.teacher(project)
    students = [r for r in run_list if r["role"] == "student" and r["state"] == "finished"]
    reviewed = counts["accepted"] + counts["corrected"] + counts["rejected"]
    box = st.container(border=True)
    box.markdown("**Next step**")
    if busy:
        r = busy[0]
        with box:
            follow(project, r["id"], f"{r['role']} on {r['device']}")
        if where != "train":
            box.page_link(PAGES["train"], label="Watch it on Train", icon=":material/monitoring:")
    elif len(project.classes) < 2:
        have = len(project.classes)
        box.info(f"First, add the classes: the project has {have} (a classifier needs at least two)."
                 + {"project": " Add them in the Classes section below.",
                    "review": " Add them as you label: mark a card below and press + (New class…) to give it "
                              "a class the project does not have yet."}.get(where, ""))
        if where not in ("project", "review"):
            box.page_link(PAGES["project"], label="Add classes on Project", icon=":material/folder:")
    elif not counts["labeled"] + counts["accepted"] + counts["corrected"]:
        box.info("First, label some images: the project has no labels yet, and a teacher learns from them. "
                 + ("Below" if where == "review" else "On the Review page")
                 + f", give a few of the {counts['pool']:,} pool images their class (a few per class is enough "
                   "to start), then train a teacher.")
        if where != "review":
            box.page_link(PAGES["review"], label="Label images on Review", icon=":material/fact_check:")
    elif teacher is not None and api.run(project, teacher["id"])["classes_changed"]:
        box.info(f"The classes changed since teacher {teacher['id']} trained: its model no longer fits the "
                 f"project's {len(project.classes)} classes. Train a new teacher.")
        if box.button("Train a teacher now (default settings)", key=f"ns_teacher{where}", type="primary"):
            if start_teacher(project):
                st.switch_page(PAGES["train"])
    elif teacher is None and not api.embeddings(project) and not run_list:
        best = api.recommended_backbone(project)
        n = counts["labeled"] + counts["pool"] + counts["test"]
        box.info(f"First, embed the {n:,} images with **{best}**: the nearest-neighbour graph and the "
                 f"pseudo-labels read the embedding. "
                 + ("It takes seconds." if best == "pixels" else
                    f"On a CPU this takes about {util.fmt_duration(n / 120)} (about 120 images/s), once."))
        cols = box.columns(2)
        if cols[0].button(f"Embed now ({best})", key=f"ns_embed{where}", type="primary"):
            if start_embed(project, best):
                st.switch_page(PAGES["train"])
        if cols[1].button("Skip: train a teacher", key=f"ns_skip_embed{where}"):
            if start_teacher(project):
                st.switch_page(PAGES["train"])
    elif teacher is None:
        labels = counts["labeled"] + counts["accepted"] + counts["corrected"]
        box.info(f"Train a teacher on the {labels:,} labeled image{'s' * (labels != 1)}: a minute or two on a CPU."
                 + (" More labels make it better: a few per class is a start, a few dozen per class is good."
                    if labels < 10 * len(project.classes) else ""))
        if box.button("Train a teacher now (default settings)", key=f"ns_teacher{where}", type="primary"):
            if start_teacher(project):
                st.switch_page(PAGES["train"])
    elif counts["pseudo_labeled"] == 0:
        box.info(f"Teacher {teacher['id']} is ready. Pseudo-label the {counts['pending']:,} unlabeled pool images.")
        if box.button("Pseudo-label now", key=f"ns_pseudo{where}", type="primary"):
            if start_pseudo(project):
                st.switch_page(PAGES["train"])
    elif reviewed < 50 and counts["pending"]:
        box.info(f"{counts['pending']:,} pseudo-labels wait for review; check at least a few dozen, "
                 f"most useful first.")
        box.page_link(PAGES["review"], label="Review pseudo-labels", icon=":material/fact_check:")
    elif not students or students[-1]["seq"] < teacher["seq"]:
        box.info(f"{reviewed:,} items reviewed. Train a student on the labels, your reviews and the "
                 f"confident pseudo-labels.")
        box.page_link(PAGES["train"], label="Train a student", icon=":material/school:")
    else:
        with box:
            lost = regressions_ui(project, students[-1]["id"], teacher["id"])
        box.success(f"Student {students[-1]['id']} is trained. Compare it with the teacher, then make it "
                    f"the next teacher and go round again." if not lost else
                    f"Student {students[-1]['id']} is trained, but it lost ground on some classes (above): "
                    f"compare it with the teacher before making it the next teacher.")
        box.page_link(PAGES["evaluate"], label="Evaluate", icon=":material/insights:")


def decide_all_ui(classes: list[str], pool: list[int], pending: list[int], *, key: str, on_confirm,
                  note: str = "", impact=None) -> None:
    """Buttons that accept every pending item of a list, or correct all its pool items to one
    class, each after a confirmation that says how many (and, with impact(ids) -> an accept's
    impact, what an accept does to the human labels); on_confirm(ids, action, label) decides.
    Widget keys and the confirmation's state start with key."""
    state = f"{key}_confirm"
    with st.container(horizontal=True, vertical_alignment="bottom"):
        st.button(f"Accept all {len(pending):,} pending", key=f"{key}_accept", disabled=not pending,
                  icon=":material/done_all:", on_click=st.session_state.__setitem__,
                  args=(state, ("accept", pending, None)))
        target = st.selectbox("Correct all to", range(len(classes)), index=None, format_func=lambda k: classes[k],
                              key=f"{key}_class", placeholder="a class…", width=220)
        st.button(f"Correct all {len(pool):,} pool items…", key=f"{key}_correct", disabled=not pool or target is None,
                  icon=":material/edit:", on_click=st.session_state.__setitem__, args=(state, ("correct", pool, target)))
    confirm = st.session_state.get(state)
    if confirm and confirm[1] != (pending if confirm[0] == "accept" else pool):
        st.session_state.pop(state, None)  # asked about other items (a new selection): ask again
        confirm = None
    if confirm:
        action, ids, label = confirm
        what = "accept their teacher's classes" if action == "accept" else f"correct them to {classes[label]}"
        st.warning(f"{len(ids):,} pool item{'s' * (len(ids) != 1)}: {util.md_escape(what)}? {note}"
                   f"Undo on the Review page reverts it as one action.")
        if action == "accept" and impact is not None:
            accept_impact_ui(impact(ids))
        k1, k2 = st.columns([1, 1])

        def yes() -> None:
            st.session_state.pop(state, None)
            on_confirm(ids, action, label)
        k1.button(f"Yes, {len(ids):,} items", key=f"{key}_yes", type="primary", on_click=yes)
        k2.button("Cancel", key=f"{key}_no", on_click=st.session_state.pop, args=(state, None))



def accept_impact_ui(impact: dict) -> None:
    """Under a bulk accept's confirmation: how it changes the class mix of the human labels, and
    how many of the accepted items are likely wrong (api.bulk_accept_impact)."""
    if not impact["n"]:
        return
    moved = sorted(((n, c) for c, n in impact["accepted"].items() if n), reverse=True)
    mix = ", ".join(f"{util.md_escape(c)} {impact['before'][c]:,} → {impact['after'][c]:,}" for _, c in moved[:4])
    big = impact["largest_after"]
    basis = {"reviewed": "the accuracy of the items you reviewed one by one at these confidences",
             "confidence": "the teacher's confidence (too few items reviewed one by one to calibrate it)",
             "reviewed and confidence": "the accuracy of your one-by-one reviews where there are enough, "
                                        "else the teacher's confidence"}[impact["estimate"]]
    st.caption(f"Human labels per class: {mix}" + (", …" if len(moved) > 4 else "")
               + f". Largest class afterwards: {util.md_escape(big['class'])}, {big['share']:.0%} of the human labels. "
               f"About **{impact['expected_wrong']:,.0f}** of the {impact['n']:,} are likely wrong, from {basis}.")
    if impact["warning"]:
        st.warning(impact["warning"], icon=":material/balance:")


def regressions_ui(project: api.Project, run_id: str, against: str) -> list[dict]:
    """A warning naming each class that run_id is more than 5 points worse at than against."""
    try:
        lost = api.class_regressions(project, run_id, against=against)
    except USER_ERRORS:
        return []  # a run without a stored evaluation: nothing to compare
    if lost:
        named = "; ".join(f"**{util.md_escape(r['name'])}** {r['before']:.1%} → {r['after']:.1%} "
                          f"(−{r['drop']:.1f} points)" for r in lost)
        st.warning(f"{run_id} is worse than {against} at {len(lost)} class{'es' * (len(lost) != 1)}: {named}. "
                   f"Look at their confusion-matrix cells before making it the teacher.",
                   icon=":material/trending_down:")
    return lost
