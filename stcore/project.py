"""Open or create a project folder: the one API that the CLI and the dashboard call.

PROJECT/
  project.db      the store (SQLite, WAL)
  images/         train.pt and test.pt: uint8 tensors decoded once, memory-mapped on load
  runs/RUN_ID/    latest.pt, best.pt, log.txt
"""
from __future__ import annotations

import csv
import getpass
import io
import json
import os
import shutil
import time
import uuid
from functools import cached_property
from pathlib import Path
from typing import Callable

import torch

from . import data as data_mod
from .config import TrainConfig
from .store import DEFAULT_ORDER, STATUSES, Store, StoreError

DB = "project.db"


class ProjectError(RuntimeError):
    """A project that cannot be created, opened or used as asked; the message says what to do."""


def default_reviewer() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class Project:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser().resolve()
        if not self.path.exists():
            raise ProjectError(f"{self.path} does not exist; create a project with "
                               f"`stcore init {path}`")
        if not (self.path / DB).is_file():
            raise ProjectError(f"{self.path} is not a stcore project (it has no {DB}); create one with "
                               f"`stcore init {path}`, or pick the folder that holds {DB}")
        try:
            self.store = Store(self.path / DB)
        except StoreError as e:
            raise ProjectError(str(e)) from e
        self.meta = self.store.meta()

    # ------------------------------------------------------------------ create
    @classmethod
    def create(cls, path: str | os.PathLike, *, dataset: str = "fashion-mnist",
               labels_per_class: int | None = None, labeled: int | None = None, seed: int = 0,
               data_root: str | None = None, image_size: int | None = None, download: bool = True,
               limit: int | None = None, progress: Callable[[str], None] | None = None) -> "Project":
        """Decode the dataset once, choose the labeled split and write the store.
        limit keeps only the first N training and N/5 test images (for quick trials and tests)."""
        path = Path(path).expanduser().resolve()
        if (path / DB).exists():
            raise ProjectError(f"{path} is already a project; open it instead, or choose a new folder")
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ProjectError(f"{path} exists and is not empty; choose a new or empty folder for the project")
        if dataset == "folder" and (labels_per_class is not None or labeled is not None):
            raise ProjectError("--labels-per-class and --labeled choose the labeled images of a built-in "
                               "dataset; a folder dataset's labeled images are those in "
                               "DATA_ROOT/labeled/<class>/: leave both out")
        if labels_per_class is None and labeled is None and dataset != "folder":
            labels_per_class = 10
        say = progress or (lambda msg: None)
        say(f"reading {dataset}")
        arrays = data_mod.load(dataset, data_root=data_root, image_size=image_size, download=download)
        if limit:
            arrays.train_x, arrays.train_y = arrays.train_x[:limit], arrays.train_y[:limit]
            arrays.train_sources = arrays.train_sources[:limit]
            n_test = max(1, limit // 5)
            arrays.test_x, arrays.test_y = arrays.test_x[:n_test], arrays.test_y[:n_test]
            arrays.test_sources = arrays.test_sources[:n_test]
            if arrays.labeled is not None:
                arrays.labeled = [i for i in arrays.labeled if i < limit]
        if arrays.labeled is not None:  # a folder dataset says itself which images are labeled
            lab = arrays.labeled
        else:
            lab = data_mod.choose_labeled(arrays.train_y, per_class=labels_per_class, total=labeled,
                                          seed=seed, num_classes=len(arrays.classes))
        created_dir = not path.exists()
        try:
            (path / "images").mkdir(parents=True, exist_ok=True)
            (path / "runs").mkdir(exist_ok=True)
            say("writing the image cache")
            torch.save(arrays.train_x.contiguous(), path / "images" / "train.pt")
            torch.save(arrays.test_x.contiguous(), path / "images" / "test.pt")
            store = Store(path / (DB + ".tmp"), create=True)
            labset = set(lab)
            pool = [i for i in range(len(arrays.train_y)) if i not in labset]
            y = arrays.train_y.tolist()
            store.add_items("labeled", lab, lab, [arrays.train_sources[i] for i in lab], [y[i] for i in lab])
            store.add_items("pool", pool, pool, [arrays.train_sources[i] for i in pool], [None] * len(pool),
                            [y[i] if arrays.hidden and y[i] >= 0 else None for i in pool], seed=seed)
            ty = arrays.test_y.tolist()
            store.add_items("test", list(range(len(ty))), list(range(len(ty))), arrays.test_sources, ty)
            store.set_skipped(arrays.skipped)
            _, c, h, w = arrays.train_x.shape
            store.set_meta(project_id=uuid.uuid4().hex, dataset=dataset,
                           data_root=str(Path(data_root).expanduser().resolve()) if data_root else None,
                           seed=seed, labels_per_class=labels_per_class, labeled=len(lab),
                           classes=arrays.classes, input_shape=[c, h, w], flip=arrays.flip,
                           hidden_labels=arrays.hidden, created=time.time(), teacher=None)
            store.close()
            # The store appears under its real name only once it is complete.
            os.replace(path / (DB + ".tmp"), path / DB)
            for suffix in ("-wal", "-shm"):
                (path / (DB + ".tmp" + suffix)).unlink(missing_ok=True)
        except BaseException:
            if created_dir:
                shutil.rmtree(path, ignore_errors=True)
            raise
        return cls(path)

    # ------------------------------------------------------------------ basics
    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]

    def class_index(self, name_or_index: str | int) -> int:
        """A class given by name or index -> index; ValueError naming the choices."""
        s = str(name_or_index).strip()
        if s in self.classes:
            return self.classes.index(s)
        if s.lstrip("-").isdigit() and 0 <= int(s) < len(self.classes):
            return int(s)
        lower = [c.lower() for c in self.classes]
        if s.lower() in lower:
            return lower.index(s.lower())
        raise ValueError(f"unknown class {s!r}; use a name ({', '.join(self.classes)}) "
                         f"or an index 0-{len(self.classes) - 1}")

    @cached_property
    def train_images(self) -> torch.Tensor:
        return self._images("train")

    @cached_property
    def test_images(self) -> torch.Tensor:
        return self._images("test")

    def _images(self, split: str) -> torch.Tensor:
        p = self.path / "images" / f"{split}.pt"
        if not p.exists():
            raise ProjectError(f"the image cache {p} is missing; re-create the project "
                               f"(`stcore init`) from its dataset")
        return torch.load(p, mmap=True, weights_only=True)

    def image(self, item_id: int, split: str = "pool") -> torch.Tensor:
        """uint8 (C, H, W) of one item."""
        row = self.store.item_rows(split, [item_id]).get(int(item_id))
        if row is None:
            raise KeyError(f"no {split} item {item_id}")
        return (self.test_images if split == "test" else self.train_images)[row]

    def images_for(self, ids: list[int], split: str = "pool") -> torch.Tensor:
        rows = self.store.item_rows(split, ids)
        src = self.test_images if split == "test" else self.train_images
        return src[[rows[int(i)] for i in ids]] if ids else src[:0]

    def run_dir(self, run_id: str) -> Path:
        return self.path / "runs" / run_id

    # ------------------------------------------------------------------ review
    def review(self, ids, action: str, label: str | int | None = None, *, reviewer: str | None = None) -> int:
        """action: accept | correct | reject | reset. Returns the number of items changed."""
        status = {"accept": "accepted", "correct": "corrected", "reject": "rejected", "reset": "pending"}.get(action)
        if status is None:
            raise ValueError(f"unknown review action {action!r}; use accept, correct, reject or reset")
        lab = self.class_index(label) if status == "corrected" else None
        return self.store.decide(ids, status, lab, reviewer=reviewer or default_reviewer())

    def accept_above(self, threshold: float, *, classes=None, reviewer: str | None = None) -> int:
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be within [0, 1], not {threshold}")
        cls = [self.class_index(c) for c in classes] if classes else None
        return self.store.accept_above(threshold, classes=cls, reviewer=reviewer or default_reviewer())

    def simulate_review(self, n: int, *, order: str = DEFAULT_ORDER, reviewer: str = "simulated") -> dict:
        """A perfect reviewer: takes the first n pending pseudo-labeled items in the given order
        and accepts each one whose prediction equals hidden_label, correcting the others."""
        if not self.meta.get("hidden_labels"):
            raise ProjectError("this project has no hidden labels, so a reviewer cannot be simulated")
        rows = self.store.page(statuses=["pending"], order=order, limit=n,
                               conf_min=None, conf_max=None)
        rows = [r for r in rows if r["pred"] is not None]
        if not rows:
            raise ProjectError("no pending pseudo-labels to review; run pseudo-label first")
        truth = {r["id"]: r["hidden_label"] for r in self.store.db.execute(
            f"SELECT id, hidden_label FROM items WHERE split='pool' AND id IN "
            f"({','.join(str(int(r['id'])) for r in rows)})")}
        right = [r["id"] for r in rows if truth[r["id"]] == r["pred"]]
        wrong = [r for r in rows if truth[r["id"]] != r["pred"]]
        self.store.decide(right, "accepted", reviewer=reviewer)
        by_class: dict[int, list[int]] = {}
        for r in wrong:
            by_class.setdefault(truth[r["id"]], []).append(r["id"])
        for c, ids in by_class.items():
            self.store.decide(ids, "corrected", c, reviewer=reviewer)
        return {"reviewed": len(rows), "accepted": len(right), "corrected": len(wrong), "order": order}

    # ------------------------------------------------------------------ runs
    def teacher_run(self) -> dict | None:
        """The current teacher: the run chosen with promote(), else the latest finished teacher."""
        chosen = self.store.meta().get("teacher")
        if chosen:
            try:
                run = self.store.run(chosen)
                if run["state"] == "finished":
                    return run
            except KeyError:
                pass
        done = [r for r in self.store.runs("teacher") if r["state"] == "finished"]
        return done[-1] if done else None

    def promote(self, run_id: str) -> None:
        """Make a finished run (usually a student) the teacher for pseudo-labels and the next student."""
        run = self.store.run(run_id)
        if run["role"] not in ("teacher", "student") or run["state"] != "finished":
            raise ProjectError(f"run {run_id} is {run['role']} and {run['state']}; only a finished "
                               f"teacher or student can become the teacher")
        self.store.set_meta(teacher=run_id)
        self.meta = self.store.meta()

    def load_model(self, run_id: str, which: str = "latest", device: str = "cpu") -> torch.nn.Module:
        """The EMA model of a run's checkpoint, checked against this project."""
        ck = self.load_checkpoint(run_id, which)
        return self.model_from(ck, f"run {run_id}").to(device).eval()

    def model_from(self, ck: dict, where: object) -> torch.nn.Module:
        """Build the checkpoint's model for this project and load its EMA weights; ProjectError
        when they do not fit (a checkpoint without metadata, made for other classes or channels)."""
        from .models import build
        c, h, _ = self.meta["input_shape"]
        model = build(ck["config"].get("model", "cnn"), c, len(self.classes), h)
        try:
            model.load_state_dict(ck["ema"])
        except (RuntimeError, KeyError, TypeError, AttributeError) as e:
            raise ProjectError(f"{where}: the weights do not fit this project's {ck['config'].get('model')} "
                               f"({len(self.classes)} classes, input {self.meta['input_shape']}): "
                               f"{str(e).strip().splitlines()[0][:200]}") from e
        return model

    def load_checkpoint(self, run_id: str, which: str = "latest") -> dict:
        from .train import load_checkpoint
        p = self.run_dir(run_id) / f"{which}.pt"
        if not p.exists():
            raise ProjectError(f"run {run_id} has no {which} checkpoint ({p})")
        try:
            ck = load_checkpoint(p)
        except Exception as e:  # torch raises several types for a damaged or foreign file
            raise ProjectError(f"cannot load {p}: {type(e).__name__}: {e}") from e
        self.check_checkpoint(ck, p)
        return ck

    def check_checkpoint(self, ck: dict, where: object) -> None:
        """Refuse a checkpoint from another project, or for another class count or input shape."""
        if not isinstance(ck, dict) or "ema" not in ck or "config" not in ck:
            raise ProjectError(f"{where} is not a stcore checkpoint")
        if ck.get("project_id") not in (None, self.meta["project_id"]):
            raise ProjectError(f"{where} belongs to another project; it cannot be used here")
        if ck.get("classes") is not None and list(ck["classes"]) != self.classes:
            raise ProjectError(f"{where} was trained for {len(ck['classes'])} classes "
                               f"({', '.join(ck['classes'][:5])}...), this project has {len(self.classes)}")
        if ck.get("input_shape") is not None and list(ck["input_shape"]) != list(self.meta["input_shape"]):
            raise ProjectError(f"{where} expects input {ck['input_shape']}, this project's images are "
                               f"{self.meta['input_shape']}")

    def checkpoint_extra(self) -> dict:
        return {"project_id": self.meta["project_id"], "classes": self.classes,
                "input_shape": self.meta["input_shape"]}

    def training_data(self, cfg: TrainConfig):
        """Assemble the tensors one run trains on, from the store's current decisions."""
        from .train import OFFLINE, TrainData
        db = self.store.db
        lab = db.execute("SELECT row, label FROM items WHERE split='labeled' ORDER BY row").fetchall()
        reviewed = db.execute("SELECT p.id, i.row, p.label, p.status FROM pool p JOIN items i "
                              "ON i.split='pool' AND i.id=p.id WHERE p.status IN ('accepted','corrected') "
                              "ORDER BY i.row").fetchall()
        rows = [r[0] for r in lab] + [r[1] for r in reviewed]
        y = [r[1] for r in lab] + [r[2] for r in reviewed]
        w = [1.0] * len(lab) + [cfg.corrected_weight if r[3] == "corrected" else 1.0 for r in reviewed]
        images = self.train_images
        x_unl, p_unl = images[:0], None
        if cfg.role == "student" and cfg.use_unreviewed:
            method = cfg.resolved_method
            q = ("SELECT i.row, p.probs FROM pool p JOIN items i ON i.split='pool' AND i.id=p.id "
                 "WHERE p.status='pending'")
            params: tuple = ()
            if method in OFFLINE:  # the loop keeps those above the threshold (re-labeled each round)
                q += " AND p.pred IS NOT NULL"
            unl = db.execute(q + " ORDER BY i.row", params).fetchall()
            if method in OFFLINE and not unl:
                raise ProjectError("no unreviewed pseudo-labels; run pseudo-label first")
            x_unl = images[[r[0] for r in unl]] if unl else images[:0]
            if unl and all(r[1] is not None for r in unl):
                import numpy as np
                k = len(self.classes)
                p_unl = torch.from_numpy(np.frombuffer(b"".join(r[1] for r in unl), dtype=np.float16)
                                         .reshape(-1, k).astype(np.float32))
        return TrainData(x_lab=images[rows], y_lab=torch.tensor(y), w_lab=torch.tensor(w),
                         x_unl=x_unl, p_unl=p_unl, x_test=self.test_images,
                         class_prior=torch.bincount(torch.tensor([r[1] for r in lab], dtype=torch.long),
                                                    minlength=len(self.classes)),
                         y_test=torch.tensor([r[0] for r in db.execute(
                             "SELECT label FROM items WHERE split='test' ORDER BY row")], dtype=torch.long),
                         classes=self.classes, flip=bool(self.meta.get("flip", True)))

    # ------------------------------------------------------------------ pseudo-labels
    def pseudo_label(self, run_id: str | None = None, *, device: str = "cpu", batch_size: int = 1024,
                     progress: Callable[[int, int], None] | None = None, job_id: str | None = None) -> dict:
        """Label the whole pool with a teacher (the current one by default); store pred,
        confidence, margin, entropy and probabilities. Returns a summary."""
        from .pseudo import predict, prediction_stats
        teacher = self.store.run(run_id) if run_id else self.teacher_run()
        if teacher is None:
            raise ProjectError("there is no finished teacher yet; train one first "
                               "(stcore train PROJECT --role teacher)")
        model = self.load_model(teacher["id"], device=device)
        ids = [r[0] for r in self.store.db.execute("SELECT id FROM items WHERE split='pool' ORDER BY row")]
        rows = [r[0] for r in self.store.db.execute("SELECT row FROM items WHERE split='pool' ORDER BY row")]
        images = self.train_images[rows] if rows != list(range(len(rows))) else self.train_images[:len(rows)]
        t0 = time.perf_counter()
        pending: list[tuple] = []
        for start, probs in predict(model, images, device=device, batch_size=batch_size, progress=progress):
            pred, conf, margin, ent = prediction_stats(probs)
            p16 = probs.half().numpy()
            pending += [(int(a), float(b), float(c), float(d), p16[k].tobytes(), teacher["id"], ids[start + k])
                        for k, (a, b, c, d) in enumerate(zip(pred.tolist(), conf.tolist(), margin.tolist(),
                                                             ent.tolist()))]
        # One transaction that rebuilds the pool's indexes once: about a second for 60,000 items.
        # Readers keep their snapshot meanwhile (WAL); inference is over, so no heartbeat waits long.
        self.store.write_predictions(pending, reindex=True)
        seconds = time.perf_counter() - t0
        return {"teacher_run": teacher["id"], "items": len(ids), "seconds": round(seconds, 2),
                "images_per_s": round(len(ids) / seconds, 1) if seconds else None,
                "accuracy": self.pseudo_label_accuracy()}

    def pseudo_label_accuracy(self) -> dict | None:
        """Accuracy of the stored pseudo-labels against hidden labels, overall and above 0.9."""
        r = self.store.db.execute(
            "SELECT COUNT(*), SUM(p.pred = i.hidden_label), SUM(p.confidence >= 0.9), "
            "SUM(p.confidence >= 0.9 AND p.pred = i.hidden_label) FROM pool p JOIN items i "
            "ON i.split='pool' AND i.id=p.id WHERE p.pred IS NOT NULL AND i.hidden_label IS NOT NULL").fetchone()
        if not r[0]:
            return None
        return {"n": r[0], "accuracy": round(r[1] / r[0], 4), "n_above_0.9": r[2] or 0,
                "accuracy_above_0.9": round((r[3] or 0) / r[2], 4) if r[2] else None}

    def confidence_calibration(self, bins: int = 10) -> dict:
        """Accuracy by confidence bin: of reviewed items (accepted = right, corrected = wrong)
        and, where known, against hidden labels."""
        from .metrics import accuracy_by_confidence
        rev = self.store.db.execute("SELECT confidence, status FROM pool WHERE status IN ('accepted','corrected') "
                                    "AND confidence IS NOT NULL").fetchall()
        out = {"reviewed": accuracy_by_confidence(torch.tensor([r[0] for r in rev], dtype=torch.float),
                                                  torch.tensor([r[1] == "accepted" for r in rev]), bins)}
        hid = self.store.db.execute("SELECT p.confidence, p.pred = i.hidden_label FROM pool p JOIN items i "
                                    "ON i.split='pool' AND i.id=p.id WHERE p.pred IS NOT NULL "
                                    "AND i.hidden_label IS NOT NULL").fetchall()
        if hid:
            out["hidden"] = accuracy_by_confidence(torch.tensor([r[0] for r in hid], dtype=torch.float),
                                                   torch.tensor([bool(r[1]) for r in hid]), bins)
        return out

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, run_id: str | None = None, *, recompute: bool = False, device: str = "cpu") -> dict:
        """{'teacher': {...}, 'student': {...}} for the latest finished run of each role,
        or {run's role: {...}} for one run. Uses the result stored by the worker unless recompute."""
        from .train import evaluate as eval_model
        if run_id:
            runs = [self.store.run(run_id)]
        else:
            runs = []
            for role in ("teacher", "student"):
                done = [r for r in self.store.runs(role) if r["state"] == "finished"]
                if done:
                    runs.append(done[-1])
        out = {}
        for run in runs:
            res = run["result"]
            if recompute or not res:
                model = self.load_model(run["id"], device=device)
                y = torch.tensor([r[0] for r in self.store.db.execute(
                    "SELECT label FROM items WHERE split='test' ORDER BY row")], dtype=torch.long)
                res = eval_model(model, self.test_images, y, self.classes, device=device)
            out[run["role"]] = {"run": run["id"], **res}
        return out

    # ------------------------------------------------------------------ status
    def counts(self) -> dict:
        db = self.store.db
        n_lab = db.execute("SELECT COUNT(*) FROM items WHERE split='labeled'").fetchone()[0]
        n_test = db.execute("SELECT COUNT(*) FROM items WHERE split='test'").fetchone()[0]
        st = self.store.status_counts()
        n_pool = sum(st.values())
        pseudo = db.execute("SELECT COUNT(*) FROM pool WHERE pred IS NOT NULL").fetchone()[0]
        return {"labeled": n_lab, "pool": n_pool, "test": n_test, "pseudo_labeled": pseudo, **st}

    def status(self) -> dict:
        from .jobs import list_runs
        runs = list_runs(self)
        return {"project": str(self.path), "dataset": self.meta["dataset"], "classes": self.classes,
                "counts": self.counts(), "pseudo_label_accuracy": self.pseudo_label_accuracy(),
                "teacher": (self.teacher_run() or {}).get("id"),
                "runs": [{k: r[k] for k in ("id", "role", "state", "device", "step", "total", "error")}
                         for r in runs],
                "skipped": self.store.skipped()}

    # ------------------------------------------------------------------ export
    def label_rows(self) -> list[dict]:
        """Every labeled or accepted/corrected item, and every pseudo-label, for export."""
        db = self.store.db
        out = [{"id": r[0], "source": r[1], "label": self.classes[r[2]], "status": "labeled",
                "confidence": None, "teacher_run": None}
               for r in db.execute("SELECT id, source, label FROM items WHERE split='labeled' ORDER BY id")]
        for r in db.execute("SELECT p.id, i.source, p.pred, p.label, p.status, p.confidence, p.teacher_run "
                            "FROM pool p JOIN items i ON i.split='pool' AND i.id=p.id ORDER BY p.id"):
            lab = r[3] if r[4] in ("accepted", "corrected") else (r[2] if r[4] == "pending" else None)
            if lab is None and r[4] == "pending":
                continue  # not pseudo-labeled yet
            out.append({"id": r[0], "source": r[1], "label": self.classes[lab] if lab is not None else "",
                        "status": r[4], "confidence": round(r[5], 6) if r[5] is not None else None,
                        "teacher_run": r[6]})
        return out

    def labels_csv(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["id", "source", "label", "status", "confidence", "teacher_run"])
        w.writeheader()
        for row in self.label_rows():
            w.writerow({k: _csv_safe(v) for k, v in row.items()})
        return buf.getvalue()

    def labels_json(self) -> str:
        return json.dumps({"classes": self.classes, "items": self.label_rows()}, indent=1)

    def export_labels(self, dest: str | os.PathLike) -> int:
        dest = Path(dest)
        text = self.labels_json() if dest.suffix.lower() == ".json" else self.labels_csv()
        _atomic_write(dest, text.encode("utf-8"))
        return len(self.label_rows())

    def model_bytes(self, run_id: str | None = None) -> tuple[str, bytes]:
        """(run id, bytes of a weights_only-loadable dict: EMA weights, config, classes, input shape)."""
        if run_id is None:
            done = [r for r in self.store.runs("student") if r["state"] == "finished"] or \
                   [r for r in self.store.runs("teacher") if r["state"] == "finished"]
            if not done:
                raise ProjectError("there is no finished run to export; train a teacher or a student first")
            run_id = done[-1]["id"]
        ck = self.load_checkpoint(run_id)
        self.model_from(ck, f"run {run_id}")  # never export weights under metadata they do not match
        out = {"model": ck["ema"], "config": ck["config"], "run": run_id, **self.checkpoint_extra()}
        buf = io.BytesIO()
        torch.save(out, buf)
        return run_id, buf.getvalue()

    def export_model(self, dest: str | os.PathLike, run_id: str | None = None) -> str:
        run_id, blob = self.model_bytes(run_id)
        _atomic_write(Path(dest), blob)
        return run_id


def _csv_safe(v):
    """Keep spreadsheet apps from running a cell as a formula (CSV injection)."""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v


def _atomic_write(dest: Path, blob: bytes) -> None:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except OSError as e:
        raise ProjectError(f"could not write {dest}: {e.strerror or e}; free some space or choose "
                           f"another path") from e
    finally:
        tmp.unlink(missing_ok=True)


__all__ = ["Project", "ProjectError", "STATUSES"]
