"""A lopsided mix of human labels: what a large bulk accept of one class costs the other classes.

Per seed, through the API (what the CLI and the dashboard call):

    a Fashion-MNIST project, 10 labels per class; the teacher; pseudo-labels;
    then two students from that same state, with the same seed:
      no_bulk  trained as it is;
      bulk     trained after accepting every pending item predicted as class k with confidence
               >= threshold (api.accept_above(p, threshold, classes=[k])), where k is the class
               with the most such items (Trouser on this data: the class the teacher is surest of).

The measure is each class's test accuracy, bulk against no_bulk (means over seeds): the bulk
accept must not cost any class more than 5 points. `python -m benchmarks.lopsided` runs it alone
(--seeds, --limit, --teacher-steps, --student-steps, --threshold).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

from stcore import api
from stcore.sources import load
from stcore.insights import class_regressions

TARGET_POINTS = 5.0  # the largest per-class drop allowed


def _run(project, values: dict) -> tuple[str, dict, float]:
    """Train a run to its end in this process: (its id, its stored result, wall seconds)."""
    t0 = time.perf_counter()
    run_id = api.start_training(project, values, detach=False)
    row = api.run(project, run_id)
    if row["state"] != "finished":
        raise RuntimeError(f"{run_id} ended {row['state']}: {row['error']}")
    return run_id, row["result"], time.perf_counter() - t0


def surest_class(project, threshold: float) -> int:
    """The class with the most pending pseudo-labels at confidence >= threshold."""
    counts = [api.count_above(project, threshold, classes=[k]) for k in range(len(project.classes))]
    return max(range(len(counts)), key=lambda k: counts[k])


def one_seed(workdir: Path, seed: int, *, limit: int | None, teacher: dict, student: dict, threshold: float,
             say=print) -> dict:
    base = workdir / f"lopsided-seed{seed}"
    t0 = time.perf_counter()
    p = api.create_project(base, dataset="fashion-mnist", labels_per_class=10, seed=seed, limit=limit)
    _, taught, t_teacher = _run(p, {"role": "teacher", "seed": seed, **teacher})
    job = api.start_pseudo_label(p, detach=False)
    if api.run(p, job)["state"] != "finished":
        raise RuntimeError(f"pseudo-labeling ended {api.run(p, job)['state']}: {api.run(p, job)['error']}")
    k = surest_class(p, threshold)
    shutil.copytree(base, workdir / f"lopsided-seed{seed}-bulk")
    q = api.open_project(workdir / f"lopsided-seed{seed}-bulk")
    impact = api.bulk_accept_impact(q, threshold, classes=[k])
    ids = [r["id"] for r in api.review_page(q, classes=[k], statuses=["pending"], conf_min=max(threshold, 1e-9),
                                            order="confidence", limit=impact["n"])] if impact["n"] else []
    truth = load("fashion-mnist").train_y  # a built-in dataset's pool item id is its row
    wrong = sum(int(truth[i]) != k for i in ids)
    accepted = api.accept_above(q, threshold, classes=[k])
    say(f"  seed {seed}: teacher {taught['accuracy']:.4f} ({t_teacher:.0f} s); accepting {accepted} "
        f"{p.classes[k]} at >= {threshold} ({wrong} wrong, {impact['expected_wrong']} expected)")
    out = {"teacher_accuracy": taught["accuracy"], "class": p.classes[k], "accepted": accepted,
           "accepted_wrong": wrong, "expected_wrong": impact["expected_wrong"], "impact_warning": impact["warning"],
           "human_share_after": impact["largest_after"]["share"]}
    for name, proj in (("no_bulk", p), ("bulk", q)):
        values = {"role": "student", "seed": seed, **student}
        _, result, wall = _run(proj, values)
        steps = api.train_config(values)["steps"]
        out[name] = {"accuracy": result["accuracy"], "per_class": result["per_class"],
                     "precision": result["precision"], "wall_s": round(wall, 1),
                     "wall_s_per_step": round(wall / steps, 4), "steps": steps}
        say(f"  seed {seed}: {name} student {result['accuracy']:.4f} in {wall:.0f} s "
            f"({wall / steps:.3f} s/step)")
    # what api.class_regressions would say of the bulk student against the other (two projects here)
    out["regressions"] = class_regressions(out["no_bulk"]["per_class"], out["bulk"]["per_class"])
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    shutil.rmtree(base)
    shutil.rmtree(workdir / f"lopsided-seed{seed}-bulk")
    return out


def _mean(values: list[float]) -> dict:
    return {"mean": round(statistics.mean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "min": round(min(values), 4), "max": round(max(values), 4)}


def bench_lopsided(workdir: Path, *, seeds: list[int], limit: int | None, teacher: dict, student: dict,
                   threshold: float = 0.95, say=print) -> dict:
    """teacher, student: config values besides role and seed ({}: the defaults a user gets)."""
    per_seed = {s: one_seed(workdir, s, limit=limit, teacher=teacher, student=student,
                            threshold=threshold, say=say) for s in seeds}
    runs = list(per_seed.values())
    classes = list(runs[0]["no_bulk"]["per_class"])
    per_class = {c: {name: _mean([r[name]["per_class"][c] for r in runs]) for name in ("no_bulk", "bulk")}
                 for c in classes}
    for c, v in per_class.items():
        v["drop_points"] = round(100 * (v["no_bulk"]["mean"] - v["bulk"]["mean"]), 1)
    worst = max(classes, key=lambda c: per_class[c]["drop_points"])
    bulk_class = runs[0]["class"]
    precision = {name: _mean([r[name]["precision"][bulk_class] for r in runs]) for name in ("no_bulk", "bulk")}
    out = {"worst_class": worst, "worst_drop_points": per_class[worst]["drop_points"],
           "target_points": TARGET_POINTS, "met": per_class[worst]["drop_points"] <= TARGET_POINTS,
           "accuracy": {name: _mean([r[name]["accuracy"] for r in runs]) for name in ("no_bulk", "bulk")},
           "per_class": per_class, "precision_of_the_accepted_class": precision,
           "accepted": {"class": bulk_class, **_mean([r["accepted"] for r in runs]),
                        "wrong": [r["accepted_wrong"] for r in runs],
                        "expected_wrong": [r["expected_wrong"] for r in runs]},
           "wall_s_per_step": {name: _mean([r[name]["wall_s_per_step"] for r in runs]) for name in ("no_bulk", "bulk")},
           "settings": {"seeds": seeds, "limit": limit, "teacher": teacher or "the default teacher config",
                        "student": student or "the default student config", "threshold": threshold,
                        "note": (f"pool shrunk to the first {limit:,} training images (test: {limit // 5:,})"
                                 if limit else "the whole Fashion-MNIST pool and test set")
                        + (f"; students {student.get('steps')} steps instead of the default"
                           if student.get("steps") else "")},
           "per_seed": {str(s): r for s, r in per_seed.items()}}
    say(f"  worst per-class drop: {worst} {out['worst_drop_points']:+.1f} points "
        f"({'met' if out['met'] else 'MISSED'}: <= {TARGET_POINTS}); overall "
        f"{out['accuracy']['no_bulk']['mean']:.4f} -> {out['accuracy']['bulk']['mean']:.4f}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.lopsided", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--limit", type=int, help="keep the first N training images (default: all)")
    ap.add_argument("--teacher-steps", type=int, help="default: the teacher's default budget")
    ap.add_argument("--student-steps", type=int, help="default: the student's default budget")
    ap.add_argument("--threshold", type=float, default=0.95)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/stcore-lopsided"))
    ap.add_argument("--out", type=Path, help="write the result as JSON here")
    a = ap.parse_args(argv)
    a.workdir.mkdir(parents=True, exist_ok=True)
    res = bench_lopsided(a.workdir, seeds=[int(s) for s in a.seeds.split(",")], limit=a.limit,
                         teacher={"steps": a.teacher_steps} if a.teacher_steps else {}, threshold=a.threshold,
                         student={"steps": a.student_steps} if a.student_steps else {}, say=lambda m: print(m, flush=True))
    if a.out:
        a.out.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
