"""The benchmark harness: helpers on tiny inputs, and a --quick smoke run (not timed tests)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import report
from benchmarks.common import alternate, paired_ratio, quantile
from benchmarks.run import headline, merge
from conftest import FMNIST

REPO = Path(__file__).resolve().parents[1]
ACCURACY_SETTINGS = ("teacher", "student_no_review", "student_review_default", "student_review_random",
                     "supervised_ceiling")


def bench(*args, timeout: float = 240) -> subprocess.CompletedProcess:
    # One torch thread: the smoke run is tiny, and extra threads only contend on a busy CI machine.
    return subprocess.run([sys.executable, "-m", "benchmarks.run", "--threads", "1", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.mark.parametrize("q, expected", [(0.0, 1.0), (0.5, 2.5), (1.0, 4.0), (0.95, 3.85)])
def test_quantile_interpolates(q, expected):
    assert quantile([4.0, 1.0, 3.0, 2.0], q) == pytest.approx(expected)


def test_alternate_interleaves_sides_and_ratio_pairs_them():
    calls = []
    runs = alternate({"a": lambda: calls.append("a") or 2.0, "b": lambda: calls.append("b") or 4.0}, 3)
    assert calls == ["a", "b", "b", "a", "a", "b"]  # the order rotates; no side always goes first
    r = paired_ratio(runs["a"], runs["b"])
    assert r["median"] == 0.5 and r["n"] == 3


def test_merge_keeps_earlier_parts_of_the_same_kind():
    old = {"quick": False, "train_ratio": 0.95, "details": {"train": {"x": 1}}, "seconds": {"train": 9}}
    new = {"quick": False, "pseudo_label_ratio": 0.97, "details": {"pseudo": {"y": 2}}, "seconds": {"pseudo": 3}}
    m = merge(old, new)
    assert m["train_ratio"] == 0.95 and m["pseudo_label_ratio"] == 0.97
    assert set(m["details"]) == {"train", "pseudo"}
    ran = merge({**old, "ran": {"train": {"cpu": "A"}}}, {**new, "ran": {"pseudo": {"cpu": "B"}}})["ran"]
    assert ran == {"train": {"cpu": "A"}, "pseudo": {"cpu": "B"}}  # each part keeps where it ran
    assert merge({**old, "quick": True}, new) == new  # a quick run never mixes with a full one


def test_markdown_table_flags_a_missed_target():
    r = {"machine": {"cpu": "X", "cores": 2, "torch": "2", "device": "cpu"}, "date": "today",
         **headline("train", {"ratio_vs_bare": {"median": 0.8}}), "page_p95_ms_60k": 12.0,
         "default_page_p95_ms_1m": 1500.0}
    rows = {m: ok for m, _, _, ok in report.speed_rows(r)}
    assert rows["Training throughput, stcore / bare PyTorch"] == "MISSED"
    assert rows["Review page p95, 60,000 items (one class, a confidence range)"] == "ok"
    assert rows["  default page (all pending, balanced margin), 1,000,000 items"] == "MISSED"
    assert "| Review page p95, 60,000 items (one class, a confidence range) | 12.0 ms | < 50 ms | ok |" \
        in report.markdown(r)


@pytest.mark.skipif(not (FMNIST / "train-images-idx3-ubyte.gz").exists(), reason="needs Fashion-MNIST")
def test_quick_run_writes_every_key(tmp_path):
    out = tmp_path / "results.json"
    r = bench("--quick", "--only", "train,pseudo,embed,review,light,ddp,accuracy,lopsided", "--out", out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    for key in ("train_ratio", "pseudo_label_ratio", "embed_ratio", "page_p95_ms_60k", "page_p95_ms_1m", "bulk_accept_10k_s",
                "default_page_p95_ms_60k", "default_page_p95_ms_1m", "ddp_images_per_s_1", "ddp_images_per_s_2",
                "ddp_scaling_2_vs_1", "ddp_ratio_vs_bare_2", "accuracy", "machine", "date"):
        assert key in res, key
    assert res["train_ratio"] > 0 and res["pseudo_label_ratio"] > 0 and res["page_p95_ms_1m"] > 0
    assert res["embed_ratio"] > 0 and res["details"]["embed"]["images"] == 64
    assert res["ddp_images_per_s_2"] > 0 and res["ddp_ratio_vs_bare_2"] > 0
    light = res["details"]["light"]["commands"]
    assert set(light) == {"status", "runs", "review", "undo", "cancel", "export_csv", "export_json"}
    assert all(c["median_s"] > 0 and c["peak_rss_mb"] > 0 for c in light.values())
    assert set(res["ran"]) == {"train", "pseudo", "embed", "review", "light", "ddp", "accuracy", "lopsided"}
    assert {"cpu", "cores", "torch", "device"} <= set(res["machine"])
    for setting in ACCURACY_SETTINGS:
        a = res["accuracy"][setting]
        assert {"mean", "std", "wall_s", "per_seed"} <= set(a), setting
        assert 0 <= a["mean"] <= 1
    lop = res["details"]["lopsided"]
    assert set(lop["per_class"]) == set(lop["per_seed"]["0"]["bulk"]["per_class"])
    assert res["lopsided"]["worst_drop_points"] == max(v["drop_points"] for v in lop["per_class"].values())
    assert lop["wall_s_per_step"]["bulk"]["mean"] > 0
    # Every query's plan is recorded, so a slow one can be explained.
    assert res["details"]["review"]["60k"]["plans"]["page_filtered"]
    assert "wrote" in r.stdout and "Training throughput" in r.stdout and "worst per-class drop" in r.stdout

    table = bench("--table", "--out", out)
    assert table.returncode == 0 and "| Measure | Result | Target | Met |" in table.stdout
    assert "| Setting | Test accuracy | Wall time | Target |" in table.stdout


@pytest.mark.skipif(not (FMNIST / "train-images-idx3-ubyte.gz").exists(), reason="needs Fashion-MNIST")
def test_quick_cold_start_writes_its_accuracies_and_table(tmp_path):
    out = tmp_path / "results.json"
    r = bench("--quick", "--only", "cold-start", "--out", out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    cs = res["details"]["cold-start"]
    for name in ("typical_10", "random_10", "typical_30", "random_30", "per_class_30", "then_uncertain_30"):
        assert 0 < cs["accuracy"][name]["spread"]["mean"] <= 1 and res["cold_start"][name] > 0, name
    assert cs["suggest_s"]["typical_30"]["mean"] > 0 and cs["pool"] == 1000
    table = bench("--table", "--out", out).stdout
    assert "| Labels chosen by | Labels | Spread (pool) | Linear (test) |" in table and "TypiClust" in table


@pytest.mark.skipif(not (FMNIST / "train-images-idx3-ubyte.gz").exists(), reason="needs Fashion-MNIST")
def test_quick_zero_loop_runs_each_choice_through_teacher_and_student(tmp_path):
    out = tmp_path / "results.json"
    r = bench("--quick", "--only", "zero-loop", "--out", out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    z = res["details"]["zero-loop"]
    for name in ("typical_10", "random_10", "per_class_10"):
        assert 0 < z[name]["student"]["mean"] <= 1 and z[name]["teacher"]["wall_s"] > 0, name
        assert res["zero_loop"][f"{name}_student"] == z[name]["student"]["mean"]
    seed0 = z["details"]["per_seed"]["0"]
    assert seed0["embed_s"] > 0 and all(seed0[n]["student_s"] > 0 for n in ("typical_10", "random_10", "per_class_10"))
    table = bench("--table", "--out", out).stdout
    assert "| Labels chosen by | Labels | Teacher | Student | Wall time | Target |" in table
    assert "beats random by ≥ 4 points" in table and "Steps, mean wall time: embed" in table


def test_unknown_part_is_refused(tmp_path):
    r = bench("--only", "nonsense", "--out", tmp_path / "r.json")
    assert r.returncode == 2 and "unknown part" in r.stderr


@pytest.mark.browser
@pytest.mark.skipif(not (REPO / "dashboard" / "app.py").exists(), reason="no dashboard yet")
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium")
@pytest.mark.skipif(not (FMNIST / "train-images-idx3-ubyte.gz").exists(), reason="needs Fashion-MNIST")
def test_quick_dashboard_run_clicks_accept(tmp_path):
    out = tmp_path / "results.json"
    r = bench("--quick", "--only", "dashboard", "--out", out, timeout=300)
    d = json.loads(out.read_text())["dashboard"]
    assert "error" not in d, d["error"]
    assert d["first_review_page_s"] > 0 and d["accept_click_median_s"] > 0 and d["peak_rss_mb"] > 0
    # each click waits for its own decision in the store: every one was recorded, none twice
    assert d["decisions_written"] == len(d["accept_click_s"]) + len(d["card_accept_click_s"]) == 6, d
    assert all(0 < s <= w for s, w in zip(d["accept_click_s"], d["accept_click_wall_s"])), d
    assert r.returncode == 0
