"""`python -m benchmarks.run [--quick] [--only NAMES] [--out PATH] [--table]`

Runs the benchmarks, prints a table and writes results.json (see issue 5):
  train      training throughput, stcore's loop / a bare PyTorch loop, and the cost of reporting
  pseudo     pseudo-labeling throughput over the pool, stcore / bare batched inference
  review     review-query latency at 60,000 and 1,000,000 items; bulk accept; overview counts
  dashboard  streamlit start to first Review page, Accept click to updated page, peak memory
  team       4 signed-in reviewers in 4 browser contexts of one chromium, clicking at once (after a 0.5-1.5 s
             pause each, and flat out): Accept click
             p50/p95, cards shown to two at once (0), decisions stored per name, a reload keeps the session
  graph      the approximate k-NN graph of a million images: build time, peak memory, recall@10
  loop       the whole loop on a million-image pool, step by step: wall time and peak memory of each
  ddp        training throughput on 1 and 2 CPU processes (DDP under torchrun), stcore / a bare DDP loop
  light      status, runs, review, cancel and export --labels as fresh processes: wall time, peak memory
  accuracy   teacher, student without and with 200 simulated reviews, and the supervised ceiling
  lopsided   a bulk accept of one class (every Trouser >= 0.95): per-class accuracy of the next student
             with and without it, the worst drop (target: no class loses more than 5 points)
  cold-start what to label first from zero labels (issue 25): N labels by `suggest --strategy typical`,
             at random, 10 per class; their spread over the graph, a linear classifier; suggest's wall time
  zero-loop  the whole default loop from zero labels (issue 25): embed, N labels (the app's order, random,
             10 per class), teacher, pseudo-label, student; accuracy and wall time of each step
  zero-loop-cifar10  the same on CIFAR-10 (JPEG folders: $STCORE_CIFAR10_DIR or ../shared/data), 100
             labels, the ImageNet backbone's embedding and a head on it for both roles
  continuous continuous mode (issue 25): from the 50th decision to the refreshed pseudo-labels, and the
             Review click's latency (api.review) while the refresh runs
--quick shrinks every part to a few seconds (CI's smoke run).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import report
from .common import machine, now_iso

PARTS = ("train", "pseudo", "embed", "review", "review-pg", "light", "dashboard", "team", "graph", "ddp", "loop", "accuracy", "lopsided", "cold-start", "zero-loop", "zero-loop-cifar10", "continuous")
DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"


def settings(quick: bool) -> dict:
    """Every size and repeat count in one place. The full setting is issue 5's."""
    if quick:
        return {"limit": 600, "teacher_steps": 3,
                # a few hundred milliseconds a pair: enough pairs that the median is not one noisy pair
                "train": {"steps": 8, "repeats": 4, "overrides": {"batch_size": 8, "log_every": 2}},
                "pseudo": {"repeats": 5},
                "embed": {"repeats": 6, "n": 64, "image_size": 32},
                "dashboard": {"clicks": 3}, "team": {"reviewers": 4, "clicks": 3, "think_s": [1.0]}, "graph": {"n": 20_000}, "light": {"repeats": 1},
                "ddp": {"steps": 6, "repeats": 1, "log_every": 2, "overrides": {"batch_size": 8}},
                "loop": {"n": 3_000, "teacher": ["--steps", "3", "--batch-size", "16"],
                         "student": ["--steps", "4", "--batch-size", "16", "--rounds", "1"], "clicks": 0, "repeats": 5},
                "review": {"sizes": {"60k": 5_000, "1m": 20_000}, "repeats": 20, "bulk": 10_000, "bulk_repeats": 1},
                "accuracy": {"seeds": [0], "limit": 600, "budget": ["--steps", "3", "--batch-size", "16"],
                             "review_n": 20, "ceiling": (["--labeled", "599"], ["--steps", "3", "--batch-size", "16"])},
                # a teacher good enough to be sure of some items, so that there is something to accept
                "lopsided": {"seeds": [0], "limit": 600, "teacher": {"steps": 40, "batch_size": 16},
                             "student": {"steps": 4, "batch_size": 16}, "threshold": 0.3},
                "cold-start": {"seeds": [0], "budgets": [10, 30], "per_class_at": 30, "limit": 1000},
                "zero-loop": {"seeds": [0], "budgets": [10], "per_class_at": 10, "limit": 600,
                              "budget": ["--steps", "3", "--batch-size", "16"]},
                "zero-loop-cifar10": {"seeds": [0], "budgets": [10], "per_class_at": 10, "limit": 200,
                                      "budget": ["--steps", "3", "--batch-size", "16"], "model": ["--model", "head"],
                                      "embed": ["--backbone", "efficientnet-lite0", "--image-size", "32"]},
                "continuous": {"limit": 1000, "every": 10, "rounds": 1, "start_labels": 20}}
    return {"limit": None, "teacher_steps": 20,
            "train": {"steps": 60, "repeats": 3, "overrides": {}},
            "pseudo": {"repeats": 3},
            "embed": {"repeats": 3, "n": 1024, "image_size": 128},
            "dashboard": {"clicks": 20}, "team": {"reviewers": 4, "clicks": 20, "think_s": [1.0, 0.0]}, "graph": {"n": 1_000_000}, "light": {"repeats": 5},
            "ddp": {"steps": 60, "repeats": 3, "log_every": 10, "overrides": {}},
            # The CLI's defaults at every step, as a user would run them.
            "loop": {"n": 1_000_000, "teacher": [], "student": [], "clicks": 20, "repeats": 50},
            "review": {"sizes": {"60k": 60_000, "1m": 1_000_000}, "repeats": 200, "bulk": 10_000,
                       "bulk_repeats": 5},
            # CLI defaults for everything the user would not type; the ceiling gets a stated budget.
            "accuracy": {"seeds": [0, 1, 2], "limit": None, "budget": [], "review_n": 200,
                         "ceiling": (["--labels-per-class", "6000"], ["--epochs", "10"])},
            # The user's case: the whole pool, the default teacher; students shortened from 1,800
            # steps to 300 so that three seeds fit in about 15 minutes on two shared cores.
            "lopsided": {"seeds": [0, 1, 2], "limit": None, "teacher": {}, "student": {"steps": 300},
                         "threshold": 0.95},
            # the setting: the whole pool, the pixel embedding, 30 and 100 labels
            "cold-start": {"seeds": [0, 1, 2], "budgets": [30, 100], "per_class_at": 100, "limit": None},
            # the setting: the whole pool, every step with the CLI's defaults
            "zero-loop": {"seeds": [0, 1, 2], "budgets": [30, 100], "per_class_at": 100, "limit": None, "budget": []},
            # the issue's setting: CIFAR-10's 50,000 pool images, 100 labels, the ImageNet backbone
            # (EfficientNet-Lite0 at the CLI's 128 px) and a head on its embedding for both roles
            "zero-loop-cifar10": {"seeds": [0, 1, 2], "budgets": [100], "per_class_at": 100, "limit": None,
                                  "budget": [], "model": ["--model", "head"], "embed": ["--backbone", "efficientnet-lite0"]},
            # the setting: 60,000 pool images, the pixel embedding, a refresh every 50 decisions
            "continuous": {"limit": None, "every": 50, "rounds": 3, "start_labels": 100}}


def headline(part: str, res: dict) -> dict:
    """The top-level keys issue 5 names, from one part's details."""
    match part:
        case "train":
            return {"train_ratio": res["ratio_vs_bare"]["median"]}
        case "pseudo":
            return {"pseudo_label_ratio": res["ratio_vs_bare"]["median"],
                    "pseudo_label_ratio_spread": [res["ratio_vs_bare"]["min"], res["ratio_vs_bare"]["max"]]}
        case "embed":
            out = {"embed_ratio": res["ratio_vs_bare"]["median"],
                   "embed_images_per_s": res["images_per_s"]["stcore"]["median"]}
            if "runtime_vs_torch" in res:
                out.update(embed_runtime=res["runtime"], embed_runtime_images_per_s=res["images_per_s"]["runtime"]["median"],
                           embed_runtime_ratio=res["runtime_vs_torch"]["median"],
                           embed_runtime_ratio_spread=[res["runtime_vs_torch"]["min"], res["runtime_vs_torch"]["max"]])
            return out
        case "review" | "review-pg":
            out = {}
            if "skipped" in res:
                return {}
            for size, r in res.items():
                page, bulk = r["queries"]["page_filtered"], r["bulk"]
                sfx = ("" if size == "60k" else f"_{size}") + ("_pg" if part == "review-pg" else "")
                size = size + ("_pg" if part == "review-pg" else "")
                out[f"page_p95_ms_{size}"] = page["p95"]
                out[f"page_p95_cpu_ms_{size}"] = page.get("cpu_p95")
                out[f"default_page_p95_ms_{size}"] = r["queries"]["page_default"]["p95"]
                out[f"default_page_p95_cpu_ms_{size}"] = r["queries"]["page_default"].get("cpu_p95")
                out[f"overview_ms_{size}"] = r["queries"]["overview_counts"]["median"]
                # The review page's bulk action: accept every pending item >= a threshold (10,000 here).
                out["bulk_accept_10k_s" + sfx] = bulk["accept_above_s"]["median"]
                out["bulk_accept_10k_cpu_s" + sfx] = bulk["accept_above_cpu_s"]["median"]
                # The worst case: 10,000 ids scattered at random over the pool, accepted in one call.
                out["bulk_accept_10k_random_ids_s" + sfx] = bulk["accept_s"]["median"]
                out[f"status_s_{size}"] = r["status_s"]["median"]
            return out
        case "dashboard":
            return {"dashboard": res}
        case "team":
            if "skipped" in res:
                return {}
            return {"team": {str(think): {k: r.get(k) for k in (
                "items", "reviewers", "think_s", "accept_click_p50_s", "accept_click_p95_s", "overlap_count_before",
                "overlap_count_after", "clicks_on_items_another_decided", "reload_keeps_session", "decisions_stored",
                "peak_rss_mb", "target", "error")} for think, r in res["by_think_s"].items()}}
        case "light":
            return {"light_commands": {"items": res["items"], "worst_median_s": res["worst_median_s"],
                                       "worst_peak_rss_mb": res["worst_peak_rss_mb"]}}
        case "graph":
            size = "1m" if res["n"] == 1_000_000 else f"{res['n'] // 1000}k"
            return {f"graph_{size}_build_s": res["build_s"], f"graph_{size}_peak_rss_gb": res["peak_rss_gb"],
                    "graph_recall_at_10": res["recall_at_10"]}
        case "ddp":
            return {"ddp_images_per_s_1": res["images_per_s"]["stcore_1"]["median"],
                    "ddp_images_per_s_2": res["images_per_s"]["stcore_2"]["median"],
                    "ddp_scaling_2_vs_1": res["scaling_2_vs_1"]["stcore"]["median"],
                    "ddp_ratio_vs_bare_2": res["ratio_vs_bare"]["2"]["median"]}
        case "loop":
            size = "1m" if res["n"] == 1_000_000 else f"{res['n'] // 1000}k"
            return {f"loop_{size}": {**{f"{k}_s": v["s"] for k, v in res["steps"].items()},
                                     **{f"{k}_peak_rss_gb": v["peak_rss_gb"] for k, v in res["steps"].items()},
                                     "student_accuracy": res["student_accuracy"],
                                     "review_page_p95_ms": res["review_queries"]["page_default"]["p95"],
                                     "review_click_p95_s": (res.get("dashboard") or {}).get("accept_click_p95_s")}}
        case "accuracy":
            return {"accuracy": res}
        case "cold-start":
            acc = res["accuracy"]
            return {"cold_start": {name: acc[name]["spread"]["mean"] for name in acc} | {
                f"suggest_s_{name}": v["mean"] for name, v in res["suggest_s"].items()}}
        case "zero-loop" | "zero-loop-cifar10":
            if "skipped" in res:
                return {}
            return {part.replace("-", "_"): {f"{name}_{who}": v[who]["mean"] for name, v in res.items() if name != "details"
                                  for who in ("teacher", "student")}}
        case "continuous":
            return {"continuous": {"items": res["items"], "reflects_s": res["reflects_s"]["median"],
                                   "reflects_s_max": res["reflects_s"]["max"],
                                   "click_p95_during_refresh_s": (res["click_during_refresh_s"] or {}).get("p95")}}
        case "lopsided":
            return {"lopsided": {"worst_class": res["worst_class"], "worst_drop_points": res["worst_drop_points"],
                                 "accepted_class": res["accepted"]["class"], "accepted": res["accepted"]["mean"],
                                 "accuracy_no_bulk": res["accuracy"]["no_bulk"]["mean"],
                                 "accuracy_bulk": res["accuracy"]["bulk"]["mean"]}}
    return {}


@contextlib.contextmanager
def postgres():
    """A PostgreSQL URL to measure on: $STCORE_DATABASE_URL, else a throwaway cluster, else None."""
    from .pgcluster import Cluster, why_not
    if os.environ.get("STCORE_DATABASE_URL"):
        yield os.environ["STCORE_DATABASE_URL"]
    elif why_not():
        yield None
    else:
        cluster = Cluster()
        try:
            yield cluster.start()
        finally:
            cluster.stop()


def run(parts: list[str], *, quick: bool, workdir: Path, pairs: int | None = None, say=print,
        save=lambda results: None) -> dict:
    """Run parts in order; save(results) after each, so a long run interrupted late keeps
    what it measured. pairs overrides the repeats of the alternated comparisons."""
    from .speed import bench_embed, bench_pseudo, bench_train, make_project
    s = settings(quick)
    if pairs:
        s["train"]["repeats"] = s["pseudo"]["repeats"] = s["embed"]["repeats"] = pairs
    results: dict = {"date": now_iso(), "quick": quick, "machine": machine("cpu"), "details": {}, "seconds": {}}
    shared: dict = {}

    def project():
        if "p" not in shared:
            say("setting up the shared Fashion-MNIST project")
            shared["p"], shared["teacher"] = make_project(workdir / "fmnist", limit=s["limit"],
                                                          teacher_steps=s["teacher_steps"], say=say)
        return shared["p"], shared["teacher"]

    for part in parts:
        say(f"[{part}]")
        t0 = time.perf_counter()
        try:
            match part:
                case "train":
                    res = bench_train(project()[0], say=say, **s["train"])
                case "pseudo":
                    res = bench_pseudo(*project(), say=say, **s["pseudo"])
                case "embed":
                    res = bench_embed(project()[0], say=say, **s["embed"])
                case "review":
                    from .review import bench_review
                    res = bench_review(workdir, say=say, **s["review"])
                case "review-pg":
                    from .review import bench_review
                    with postgres() as url:
                        res = bench_review(workdir, say=say, database=url, **s["review"]) if url else \
                            {"skipped": "no PostgreSQL here (set STCORE_DATABASE_URL or install postgresql)"}
                case "graph":
                    from .graph import bench_graph
                    res = bench_graph(say=say, **s["graph"])
                case "ddp":
                    from .ddp import bench_ddp
                    res = bench_ddp(project()[0], say=say, **s["ddp"])
                case "loop":
                    from .loop import bench_loop
                    res = bench_loop(workdir, say=say, **s["loop"])
                case "light":
                    from .light import bench_light
                    res = bench_light(project()[0], workdir, say=say, **s["light"])
                case "dashboard":
                    from .dashboard import bench_dashboard
                    res = bench_dashboard(project()[0].path, say=say, **s["dashboard"])
                    if "skipped" in res:
                        say(f"  {res['skipped']}")
                case "team":
                    from .team import bench_team
                    t = dict(s["team"])
                    # a person's pause before each click, and none (every reviewer clicking flat out)
                    res = {"by_think_s": {think: bench_team(project()[0].path, say=say, think_s=think, **t)
                                          for think in t.pop("think_s")}}
                    if any("skipped" in r for r in res["by_think_s"].values()):
                        res = next(r for r in res["by_think_s"].values() if "skipped" in r)
                        say(f"  {res['skipped']}")
                case "accuracy":
                    from .accuracy import bench_accuracy
                    a = s["accuracy"]
                    res = bench_accuracy(workdir, seeds=a["seeds"], limit=a["limit"], budget=a["budget"],
                                         review_n=a["review_n"], ceiling_args=a["ceiling"], say=say)
                case "lopsided":
                    from .lopsided import bench_lopsided
                    res = bench_lopsided(workdir, say=say, **s["lopsided"])
                case "cold-start":
                    from .cold_start import bench_cold_start
                    res = bench_cold_start(workdir, say=say, **s["cold-start"])
                case "zero-loop":
                    from .zero_loop import bench_zero_loop
                    res = bench_zero_loop(workdir, say=say, **s["zero-loop"])
                case "zero-loop-cifar10":
                    from .zero_loop import bench_zero_loop, cifar10_folders
                    root = cifar10_folders(workdir)
                    res = bench_zero_loop(workdir, say=say, dataset="cifar10", data_root=root,
                                          **s["zero-loop-cifar10"]) if root else \
                        {"skipped": "no CIFAR-10 folders here (set STCORE_CIFAR10_DIR)"}
                case "continuous":
                    from .continuous import bench_continuous
                    res = bench_continuous(workdir, say=say, **s["continuous"])
        except Exception as e:  # one broken part must not lose the others' numbers
            import traceback
            traceback.print_exc()
            res = {"error": f"{type(e).__name__}: {e}"}
            say(f"  {part} failed: {res['error']}")
        results["seconds"][part] = round(time.perf_counter() - t0, 1)
        results["details"][part] = res
        m = results["machine"]
        results.setdefault("ran", {})[part] = {"date": now_iso(), "cpu": m["cpu"], "cores": m["cores"],
                                              "load_average_at_start": m["load_average_at_start"]}
        if "error" not in res or part == "dashboard":
            results.update(headline(part, res))
        save(results)
    return results


def merge(old: dict, new: dict) -> dict:
    """Results of a partial run (--only) laid over an earlier results file of the same kind."""
    if old.get("quick") != new.get("quick"):
        return new
    out = {**old, **{k: v for k, v in new.items() if k not in ("details", "seconds")}}
    out["details"] = {**old.get("details", {}), **new["details"]}
    out["seconds"] = {**old.get("seconds", {}), **new["seconds"]}
    out["ran"] = {**old.get("ran", {}), **new.get("ran", {})}  # each part keeps its own machine and date
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny settings: a smoke run of every part")
    ap.add_argument("--only", help=f"comma-separated parts to run: {','.join(PARTS)} (default: all)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results file (default {DEFAULT_OUT})")
    ap.add_argument("--table", action="store_true", help="print the README's markdown table from --out and exit")
    ap.add_argument("--pairs", type=int, help="repeats of each alternated speed comparison (default 3; quick 2)")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice, usually the core count)")
    ap.add_argument("--workdir", type=Path, help="where to build projects (default: a temporary folder, removed)")
    a = ap.parse_args(argv)

    if a.table:
        if not a.out.exists():
            print(f"error: {a.out} does not exist; run `python -m benchmarks.run` first", file=sys.stderr)
            return 2
        print(report.markdown(json.loads(a.out.read_text())))
        return 0
    parts = [p.strip() for p in a.only.split(",")] if a.only else list(PARTS)
    unknown = set(parts) - set(PARTS)
    if unknown:
        print(f"error: unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}",
              file=sys.stderr)
        return 2

    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    earlier = json.loads(a.out.read_text()) if a.only and a.out.exists() else None

    def save(results: dict) -> None:
        out = merge(earlier, results) if earlier else results
        a.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = a.out.with_name(a.out.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(out, indent=1))
        os.replace(tmp, a.out)  # never a half-written results file

    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="stcore-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        results = run(parts, quick=a.quick, workdir=workdir, pairs=a.pairs, say=lambda m: print(m, flush=True),
                      save=save)
    finally:
        if a.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if earlier:
        results = merge(earlier, results)
    print()
    print(report.console(results))
    print(f"\nwrote {a.out}")
    failed = [p for p in parts if "error" in results["details"].get(p, {})]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
