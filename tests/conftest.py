"""Shared fixtures: small real Fashion-MNIST projects and synthetic stores.

Projects are built once per session and copied per test, so each test gets a private
folder without decoding or training again."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Where the tests read Fashion-MNIST: a folder named by STCORE_DATA that holds its four .gz files
# (stcore looks there too), else Debian's copy.
DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")
FMNIST = next((d for d in (Path(os.environ.get("STCORE_DATA") or DEBIAN_FMNIST), DEBIAN_FMNIST)
               if (d / "train-images-idx3-ubyte.gz").exists()), DEBIAN_FMNIST)


def pytest_collection_modifyitems(config, items):
    if not (FMNIST / "train-images-idx3-ubyte.gz").exists():
        skip = pytest.mark.skip(reason="Fashion-MNIST is not in /usr/share/datasets or $STCORE_DATA "
                                       "(run .ci/setup --test)")
        for item in items:
            if "needs_fmnist" in item.keywords:
                item.add_marker(skip)


def stcore(*args, check: bool = True, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run the CLI as a user would (python -m stcore), capturing output."""
    r = subprocess.run([sys.executable, "-m", "stcore", *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, cwd=REPO, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"stcore {' '.join(map(str, args))} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def cancel_at_step(api, project, run_id: str, step: int, timeout: float = 120) -> dict:
    """Wait until a detached run has reported step, cancel it, wait until it stops; its run row."""
    import time
    deadline = time.time() + timeout
    while api.run(project, run_id)["step"] < step:
        state = api.run(project, run_id)["state"]
        assert time.time() < deadline and state in ("queued", "running"), api.run(project, run_id)
        time.sleep(0.2)
    api.cancel(project, run_id)
    while api.run(project, run_id)["state"] == "running":
        assert time.time() < deadline
        time.sleep(0.2)
    return api.run(project, run_id)


@pytest.fixture(scope="session")
def small_project_template(tmp_path_factory) -> Path:
    """A Fashion-MNIST project with the first 2,000 training images (100 labeled)."""
    from stcore import api
    path = tmp_path_factory.mktemp("tpl") / "small"
    api.create_project(path, dataset="fashion-mnist", labels_per_class=10, seed=0, limit=2000, download=False)
    return path


@pytest.fixture(scope="session")
def trained_project_template(tmp_path_factory, small_project_template) -> Path:
    """The small project with a 30-step teacher and pseudo-labels."""
    from stcore import api
    path = tmp_path_factory.mktemp("tpl") / "trained"
    shutil.copytree(small_project_template, path)
    p = api.open_project(path)
    api.start_training(p, {"role": "teacher", "steps": 30, "eval_every": 15}, detach=False)
    api.start_pseudo_label(p, detach=False)
    return path


@pytest.fixture
def small_project(tmp_path, small_project_template):
    from stcore.project import Project
    dst = tmp_path / "p"
    shutil.copytree(small_project_template, dst)
    return Project(dst)


@pytest.fixture
def trained_project(tmp_path, trained_project_template):
    from stcore.project import Project
    dst = tmp_path / "p"
    shutil.copytree(trained_project_template, dst)
    return Project(dst)


@pytest.fixture
def many_classes_project(tmp_path):
    """A folder project of twelve classes ('class 00' to 'class 11': more than the ten number
    keys), with a two-step teacher and pseudo-labels."""
    from stcore import api
    from test_robustness_data import make_folder
    root = make_folder(tmp_path / "data", classes=[f"class {k:02d}" for k in range(12)], per_class=2, pool=8)
    p = api.create_project(tmp_path / "many", dataset="folder", data_root=root)
    api.start_training(p, {"role": "teacher", "steps": 2, "eval_every": 2}, detach=False)
    api.start_pseudo_label(p, detach=False)
    return p


def make_store(path, n: int, *, classes: int = 10, seed: int = 0):
    """A synthetic store with n pool items, all pseudo-labeled with random confidences. path: a
    SQLite file, or an engine (a PostgreSQL schema)."""
    import random
    from stcore.store import Store
    s = Store(path, create=True)
    ids = list(range(n))
    s.items.add("pool", ids, ids, [f"train[{i}]" for i in ids], [None] * n, [i % classes for i in ids])
    rng = random.Random(seed)
    rows = []
    for i in ids:
        conf = rng.random()
        rows.append((i % classes, conf, conf / 2, 1 - conf, None, "teacher-1", i))
    s.items.write_predictions(rows)
    s.classes.add([str(c) for c in range(classes)])
    return s


def assert_counts_fresh(store) -> None:
    """The counts the store keeps (status, split, pseudo-labeled, agreement) equal a fresh count
    of its tables, and counting again changes none of them."""
    from stcore.store import STATUSES
    kept = (store.items.status_counts(), store.items.split_counts(), store.items.pseudo_label_agreement())
    fresh_status = {s: store.queue.count(statuses=[s]) for s in STATUSES}
    fresh_split = {s: len(store.items.of_split(s)) for s in ("labeled", "pool", "test")}
    fresh_split["pseudo_labeled"] = sum(store.items.class_counts()["pseudo"].values())
    pairs = store.items.hidden_agreement_by_item()
    fresh_agreement = (len(pairs), sum(right for _, right in pairs), sum(c >= 0.9 for c, _ in pairs),
                       sum(c >= 0.9 and right for c, right in pairs))
    assert kept == (fresh_status, fresh_split, fresh_agreement)
    store.items.recount()
    assert (store.items.status_counts(), store.items.split_counts(), store.items.pseudo_label_agreement()) == kept


@pytest.fixture(scope="session")
def pg_url():
    """A throwaway PostgreSQL cluster for the session (benchmarks/pgcluster.py); the tests that need
    it are skipped, with the reason, where PostgreSQL is not installed."""
    from benchmarks.pgcluster import Cluster, why_not
    why = why_not()
    if why:
        pytest.skip(f"PostgreSQL runs skipped: {why}")
    cluster = Cluster()
    url = cluster.start()
    yield url
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_kind(request) -> str:
    return request.param


@pytest.fixture
def new_engine(engine_kind, tmp_path, request):
    """new_engine(name) -> an engine for a new store on this test's engine: a SQLite file in
    tmp_path, or a schema of its own in the session's PostgreSQL cluster."""
    import uuid
    made = []

    def make(name: str = "project.db"):
        if engine_kind == "sqlite":
            return tmp_path / name
        from stcore.store.postgres import PostgresEngine
        e = PostgresEngine(request.getfixturevalue("pg_url"), f"t_{uuid.uuid4().hex[:12]}")
        made.append(e)
        return e
    yield make
    for e in made:
        try:
            e.drop()
        finally:
            e.close()


@pytest.fixture
def store(new_engine):
    return make_store(new_engine(), 1000)


@pytest.fixture
def zero_label_project(tmp_path):
    """A Fashion-MNIST project of 300 pool images and no label at all (`init --labeled 0`)."""
    from stcore import api
    return api.create_project(tmp_path / "zero", dataset="fashion-mnist", labeled=0, seed=0, limit=300,
                              download=False)


@pytest.fixture
def zero_class_project(tmp_path):
    """A folder project of five unlabeled images and no classes yet."""
    from stcore import api
    from test_robustness_data import png
    root = tmp_path / "data"
    for i in range(5):
        png(root / "unlabeled" / f"u{i}.png", color=(30 * i, 10, 10))
    return api.create_project(tmp_path / "noclasses", dataset="folder", data_root=str(root))
