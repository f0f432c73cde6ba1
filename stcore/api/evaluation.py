"""Evaluation: a run's test results, calibration, regressions per class, and promoting a run."""
from __future__ import annotations


from ..errors import ProjectError, UsageError
from ..metrics import accuracy_by_confidence, confusion, summarize
from ..project import Project
from .runs import run


def promote(project: Project, run_id: str) -> list[dict]:
    """Make a finished run the teacher. Returns the classes it is more than 5 points worse at than
    the teacher it replaces (class_regressions; [] if none or nothing to compare): it promotes anyway."""
    previous = (project.teacher_run() or {}).get("id")
    if run(project, run_id)["classes_changed"]:
        raise UsageError(f"run {run_id} was trained before the project's classes changed, so its model no "
                         f"longer fits them; train a new teacher or student and promote that")
    project.promote(run_id)
    try:
        return class_regressions(project, run_id, against=previous)
    except ProjectError:  # a run without a stored evaluation: nothing to compare
        return []


def accuracy_of(project: Project, run_row: dict) -> tuple[float | None, bool]:
    """(a run's test accuracy, whether it is final): its final result, else (cancelled, failed,
    running) its last evaluation along the way, else None. A pseudo-label job's is its agreement
    with the hidden labels."""
    result = run_row.get("result") or {}
    acc = None if result.get("n") == 0 else result.get("accuracy")  # no test set (older runs stored 0)
    if acc is not None:
        return (acc.get("accuracy") if isinstance(acc, dict) else acc), True
    evals = [m for m in project.store.runs.metrics(run_row["id"], "eval") if m.get("n") != 0]
    return (evals[-1]["accuracy"] if evals else None), False


def evaluation(project: Project, run_id: str | None = None) -> dict:
    """{'teacher': {...}, 'student': {...}} for the latest finished run of each role, or {role: {...}}
    for one run: accuracy, per-class accuracy, precision, recall, F1, support and the confusion
    matrix, as the run's worker stored them."""
    chosen = [project.store.runs.get(run_id)] if run_id else [
        done[-1] for role in ("teacher", "student")
        if (done := [r for r in project.store.runs.list(role) if r["state"] == "finished"])]
    out = {}
    for r in chosen:
        if not r["result"]:
            raise ProjectError(f"run {r['id']} has no stored evaluation; `stcore evaluate "
                               f"{project.path} --run {r['id']} --recompute` computes it")
        out[r["role"]] = {"run": r["id"], **r["result"]}
        if r["result"].get("n") == 0:  # no test set: no accuracy (runs before this rule stored 0)
            out[r["role"]]["accuracy"] = None
    return out


def test_predictions(project: Project, run_id: str) -> list[int] | None:
    """The predicted class of every test item (in the order of test_items), as the run saved them
    with its final checkpoint; None for a run that saved none (start_evaluation makes them)."""
    import numpy as np
    p = project.run_dir(run_id) / "test_probs.npy"
    if not p.exists():
        return None
    probs = np.load(p)
    return probs.argmax(1).tolist() if len(probs) else []


def test_items(project: Project) -> tuple[list[int], list[int]]:
    """(ids, labels) of the test set."""
    return project.store.items.test_set()


def summary_of(project: Project, predictions: list[int]) -> dict:
    """Accuracy and per-class metrics of predictions of the test set."""
    _, labels = project.store.items.test_set()
    return summarize(confusion(labels, predictions, len(project.classes)), project.classes)


def calibration(project: Project, bins: int = 10) -> dict:
    """Pseudo-label accuracy by confidence bin: of items a person decided one at a time
    (accepted = right, corrected = wrong; bulk accepts would count the teacher as right by
    construction) and, where known, against hidden labels."""
    out = {"reviewed": accuracy_by_confidence(project.store.decisions.single_decisions(), bins)}
    hidden = project.store.items.hidden_agreement_by_item()
    if hidden:
        out["hidden"] = accuracy_by_confidence(hidden, bins)
    return out


def class_regressions(project: Project, run_id: str, *, against: str | None = None, points: float = 5.0) -> list[dict]:
    """The classes whose test accuracy in run_id is more than `points` percentage points below
    that of `against` (default: the project's teacher), worst first: [{'name', 'before', 'after'
    (accuracies, fractions), 'drop' (percentage points)}]. [] when there is nothing to compare
    against (no teacher, or run_id is the teacher). Both runs need a stored evaluation (ProjectError)."""
    from ..insights import class_regressions as regressions
    against = against or (project.teacher_run() or {}).get("id")
    if not against or against == run_id:
        return []
    (after,), (before,) = evaluation(project, run_id).values(), evaluation(project, against).values()
    return regressions(before["per_class"], after["per_class"], points=points)
