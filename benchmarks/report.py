"""Turn results.json into the console table and the README's markdown table."""
from __future__ import annotations

ACCURACY_ROWS = {  # key -> (label, issue 6's target)
    "teacher": ("Teacher alone (10 labels per class)", ""),
    "student_no_review": ("Student, no review", ">= 82%, <= 10 min"),
    "student_review_default": ("Student after reviewing {n} items (default order)", ">= 86%, beats random order"),
    "student_review_random": ("Student after reviewing {n} items (random order)", ""),
    "supervised_ceiling": ("Fully supervised, all 60,000 labels (ceiling)", ""),
}


def _fmt(v, unit: str = "", digits: int = 2) -> str:
    if v is None:
        return "n/a"
    return f"{v:.{digits}f}{unit}"


def speed_rows(r: dict) -> list[tuple[str, str, str, str]]:
    """(measure, result, target, verdict) for each headline number present in results r."""
    rows = []

    def add(name, value, target, ok, unit="", digits=2, cpu=None):
        """cpu: the same measure in CPU time, shown beside a wall time taken on a busy machine."""
        verdict = "" if value is None or ok is None else ("ok" if ok(value) else "MISSED")
        text = _fmt(value, unit, digits) + (f" ({_fmt(cpu, unit, digits)} CPU)" if cpu is not None else "")
        rows.append((name, text, target, verdict))

    if "train_ratio" in r:
        add("Training throughput, stcore / bare PyTorch", r["train_ratio"], ">= 0.9", lambda v: v >= 0.9)
        t = r.get("details", {}).get("train", {})
        if "reporting_cost" in t:
            add("Training: cost of metric rows + heartbeats", 100 * t["reporting_cost"], "small", None, " %", 1)
    if "pseudo_label_ratio" in r:
        spread = r.get("pseudo_label_ratio_spread")
        add("Pseudo-labeling throughput, stcore / bare PyTorch"
            + (f" (pairs from {spread[0]:.2f} to {spread[1]:.2f})" if spread else ""), r["pseudo_label_ratio"],
            ">= 0.9", lambda v: v >= 0.9)
    if "embed_ratio" in r:
        e = r.get("details", {}).get("embed", {})
        add(f"Embedding throughput (EfficientNet-Lite0 at {e.get('image_size', '?')} px), stcore / bare PyTorch",
            r["embed_ratio"], ">= 0.9", lambda v: v >= 0.9)
        add("  stcore embedding on PyTorch, images/s", r.get("embed_images_per_s"), "", None, "", 1)
    if "embed_runtime_ratio" in r:
        spread = r["embed_runtime_ratio_spread"]
        add(f"Embedding on {r['embed_runtime']} (what `embed` uses), / on PyTorch (pairs from {spread[0]:.2f} to "
            f"{spread[1]:.2f})", r["embed_runtime_ratio"], ">= 2.5", lambda v: v >= 2.5)
        add("  its images/s", r.get("embed_runtime_images_per_s"), "", None, "", 1)
        roof = r.get("details", {}).get("embed", {}).get("roofline")
        if roof:
            peaks = ", ".join(f"{k} {v:,.0f}" for k, v in roof["matmul_gflops_per_s"].items())
            add(f"  GFLOP/s achieved ({roof['gflops_per_image']:.2f} GFLOP an image): PyTorch "
                f"{roof['gflops_per_s']['stcore']:.0f}, runtime {roof['gflops_per_s']['runtime']:.0f}; matrix "
                f"multiply peak: {peaks}", roof["gflops_per_s"]["runtime"], "", None, "", 0)
    for size, label in (("60k", "60,000"), ("1m", "1,000,000")):
        target, limit = ("< 50 ms", 50) if size == "60k" else ("< 1000 ms", 1000)
        if f"page_p95_ms_{size}" in r:
            add(f"Review page p95, {label} items (one class, a confidence range)", r[f"page_p95_ms_{size}"],
                target, lambda v: v < limit, " ms", 1, r.get(f"page_p95_cpu_ms_{size}"))
        if f"default_page_p95_ms_{size}" in r:
            add(f"  default page (all pending, balanced margin), {label} items", r[f"default_page_p95_ms_{size}"],
                target, lambda v: v < limit, " ms", 1, r.get(f"default_page_p95_cpu_ms_{size}"))
    if "bulk_accept_10k_s" in r:
        add("Bulk accept of 10,000 items >= a threshold (60,000-item store)", r["bulk_accept_10k_s"], "< 0.5 s",
            lambda v: v < 0.5, " s", 3, r.get("bulk_accept_10k_cpu_s"))
    if "bulk_accept_10k_s_1m" in r:
        add("Bulk accept of 10,000 items >= a threshold (1,000,000-item store)", r["bulk_accept_10k_s_1m"],
            "< 1 s", lambda v: v < 1, " s", 3, r.get("bulk_accept_10k_cpu_s_1m"))
    for sfx, label in (("", "60,000"), ("_1m", "1,000,000")):
        if f"bulk_accept_10k_random_ids_s{sfx}" in r:
            add(f"  worst case: 10,000 random ids ({label}-item store)", r[f"bulk_accept_10k_random_ids_s{sfx}"],
                "", None, " s", 3)
    for size, label in (("60k", "60,000"), ("1m", "1,000,000")):
        if f"overview_ms_{size}" in r:
            add(f"Overview counts, {label} items", r[f"overview_ms_{size}"], "< 1000 ms", lambda v: v < 1000,
                " ms", 1)
    for size, label in (("60k_pg", "60,000"), ("1m_pg", "1,000,000")):  # the same store on PostgreSQL
        if f"page_p95_ms_{size}" in r:
            add(f"PostgreSQL: review page p95, {label} items (one class, a confidence range)",
                r[f"page_p95_ms_{size}"], "< 50 ms", lambda v: v < 50, " ms", 1)
            add(f"  PostgreSQL: default page p95, {label} items", r[f"default_page_p95_ms_{size}"], "< 50 ms",
                lambda v: v < 50, " ms", 1)
            sfx = "_pg" if size == "60k_pg" else "_1m_pg"
            add(f"  PostgreSQL: bulk accept of 10,000 items >= a threshold, {label} items",
                r[f"bulk_accept_10k_s{sfx}"], "< 0.5 s", lambda v: v < 0.5, " s", 3)
            add(f"  PostgreSQL: stcore status (a fresh process), {label} items", r[f"status_s_{size}"], "< 0.3 s",
                lambda v: v < 0.3, " s", 2)
    if "light_commands" in r:
        lc = r["light_commands"]
        add(f"Light commands (status, runs, review, cancel, export --labels), {lc['items']:,} items: slowest median",
            lc["worst_median_s"], "≤ 0.6 s", lambda v: v <= 0.6, " s", 2)
        add("  their largest peak memory (RSS)", lc["worst_peak_rss_mb"], "≤ 200 MB", lambda v: v <= 200, " MB", 0)
    if "graph_1m_build_s" in r:
        add("k-NN graph of 1,000,000 images (approximate), build", r["graph_1m_build_s"], "≤ 900 s",
            lambda v: v <= 900, " s", 0)
        add("  its peak memory (RSS)", r["graph_1m_peak_rss_gb"], "≤ 8 GB", lambda v: v <= 8, " GB", 1)
        add("  recall@10 against the exact search (1,000 rows)", r["graph_recall_at_10"], "≥ 0.9",
            lambda v: v >= 0.9, "", 3)
    if "ddp_images_per_s_2" in r:
        add("Training on 2 CPU processes (DDP, gloo), images/s", r["ddp_images_per_s_2"], "", None, "", 0)
        add("  on 1 process, images/s", r["ddp_images_per_s_1"], "", None, "", 0)
        add("  2 processes / 1 process", r["ddp_scaling_2_vs_1"], "", None, "", 2)
        add("  stcore / bare PyTorch DDP, 2 processes", r["ddp_ratio_vs_bare_2"], ">= 0.9", lambda v: v >= 0.9)
    for key in [k for k in r if k.startswith("loop_")]:
        lp, size = r[key], key.removeprefix("loop_")
        for step in ("init", "embed", "teacher", "pseudo_label", "student"):
            if f"{step}_s" in lp:
                add(f"Loop at {size} pool images: {step.replace('_', '-')}, wall time (peak RSS "
                    f"{_fmt(lp[f'{step}_peak_rss_gb'], ' GB', 1)})", lp[f"{step}_s"],
                    "≤ 24 GB" if step == "student" else "", (lambda v, g=lp[f"{step}_peak_rss_gb"]: g <= 24)
                    if step == "student" else None, " s", 0)
        add(f"  student (labelprop) test accuracy, {size} pool", lp.get("student_accuracy"), "", None, "", 4)
        add(f"  review page query p95 (default page), {size} pool", lp.get("review_page_p95_ms"), "", None, " ms", 1)
        if lp.get("review_click_p95_s") is not None:
            add(f"  Review page: click to updated card p95, {size} pool", lp["review_click_p95_s"], "≤ 0.3 s",
                lambda v: v <= 0.3, " s", 2)
    lop = r.get("lopsided")
    if lop:
        add(f"Bulk accept of {lop['accepted']:,.0f} {lop['accepted_class']}s, next student: worst per-class drop "
            f"({lop['worst_class']}), points", lop["worst_drop_points"], "≤ 5", lambda v: v <= 5, "", 1)
        add(f"  student test accuracy after it (without it: {100 * lop['accuracy_no_bulk']:.1f} %)",
            100 * lop["accuracy_bulk"], "", None, " %", 1)
    cont = r.get("continuous")
    if cont:
        add(f"Continuous mode, {cont['items']:,} items: 50th decision to refreshed pseudo-labels (median of rounds; "
            f"slowest {_fmt(cont['reflects_s_max'], ' s', 1)})", cont["reflects_s"], "≤ 30 s", lambda v: v <= 30, " s", 1)
        add("  review click p95 while a refresh runs", cont["click_p95_during_refresh_s"], "< 0.3 s",
            lambda v: v < 0.3, " s", 3)
    d = r.get("dashboard")
    if d:
        if "skipped" in d:
            rows.append(("Dashboard", d["skipped"], "", ""))
        else:
            add("Dashboard: `stcore dashboard` to first Review page", d.get("first_review_page_s"), "", None, " s", 1)
            for key, what in (("accept_click", "Accept (key A)"), ("card_accept_click", "a card's accept")):
                if d.get(f"{key}_p95_s") is not None:
                    add(f"Dashboard, {d.get('items', 60_000):,} items: click {what} to updated card (p95, "
                        f"median {_fmt(d[f'{key}_median_s'], ' s', 2)})", d[f"{key}_p95_s"], "≤ 0.3 s",
                        lambda v: v <= 0.3, " s", 2)
                if d.get(f"{key}_wall_p95_s") is not None:
                    add("  the same, from the test driver's click to the decision stored (p95)",
                        d[f"{key}_wall_p95_s"], "", None, " s", 2)
            add("Dashboard: server peak memory (RSS)", d.get("peak_rss_mb"), "", None, " MB", 0)
            if d.get("error"):
                rows.append(("Dashboard error", d["error"], "", ""))
    for think, t in sorted((r.get("team") or {}).items(), reverse=True):
        n = len(t.get("reviewers") or [])
        pace = (f"a {0.5 * float(think):g}-{1.5 * float(think):g} s pause before each click" if float(think)
                else "clicking flat out, no pause")
        shown_twice = (t.get("overlap_count_before") or 0) + (t.get("overlap_count_after") or 0)
        add(f"{n} signed-in reviewers at once, {t.get('items') or 0:,} items, {pace}: click to updated card (p95, "
            f"median {_fmt(t.get('accept_click_p50_s'), ' s', 2)}); cards shown to two: {shown_twice}; a reload "
            f"keeps every session: {'yes' if t.get('reload_keeps_session') else 'no'}",
            t.get("accept_click_p95_s"), "≤ 0.3 s", lambda v: v <= 0.3, " s", 2)
    return rows


def accuracy_rows(r: dict) -> list[tuple[str, str, str, str]]:
    """(setting, accuracy mean ± std, mean wall time, target) per accuracy setting present."""
    acc = r.get("accuracy") or {}
    n = (acc.get("details") or {}).get("review_n", 200)
    rows = []
    for key, (label, target) in ACCURACY_ROWS.items():
        a = acc.get(key)
        if not a:
            continue
        spread = f" ± {100 * a['std']:.1f}" if len(a["per_seed"]) > 1 else ""
        walls = list((a.get("wall_s_per_seed") or {}).values())
        wall = f"{a['wall_s']:.0f} s" + (f" (max {max(walls):.0f} s)" if len(walls) > 1 else "")
        rows.append((label.format(n=n), f"{100 * a['mean']:.1f}%{spread}", wall, target))
    return rows


def machine_line(r: dict) -> str:
    m = r.get("machine", {})
    return (f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, torch {m.get('torch', '?')}, "
            f"device {m.get('device', '?')}; {r.get('date', '?')}" + (" (--quick)" if r.get("quick") else ""))


def ran_line(r: dict) -> str:
    """Which machine ran each part, and when (parts of one file may come from several runs)."""
    groups: dict[tuple, list[str]] = {}
    for part, where in (r.get("ran") or {}).items():
        groups.setdefault((where.get("cpu", "?"), where.get("cores", "?"), where.get("date", "?")), []).append(part)
    return "; ".join(f"{', '.join(parts)} on {cpu} ({cores} cores), {date}"
                     for (cpu, cores, date), parts in sorted(groups.items(), key=lambda kv: str(kv[0][2])))


def markdown(r: dict) -> str:
    """The README's results section, from results r."""
    out = [f"Latest run: {machine_line(r)}. Reproduce with `python -m benchmarks.run` "
           f"(`python -m benchmarks.run --table` prints this table)."]
    if r.get("ran"):
        out += ["", f"Where each part ran: {ran_line(r)}."]
    out += [""]
    rows = speed_rows(r)
    if rows:
        out += ["| Measure | Result | Target | Met |", "| --- | --- | --- | --- |"]
        out += [f"| {m} | {v} | {t} | {ok} |" for m, v, t, ok in rows]
        out += ["", "Wall times were taken on the machine as it was; where a CPU time is given beside one, "
                "it is what the same work costs on an idle core.", ""]
    rows = accuracy_rows(r)
    if rows:
        seeds = (r.get("accuracy", {}).get("details") or {}).get("seeds", [])
        out += [f"Fashion-MNIST test accuracy, mean ± std over seeds {', '.join(map(str, seeds))}; wall time "
                f"per run, mean and slowest seed (teacher + pseudo-labels + review + student):", "",
                "| Setting | Test accuracy | Wall time | Target |", "| --- | --- | --- | --- |"]
        out += [f"| {a} | {b} | {c} | {t} |" for a, b, c, t in rows]
        note = (r.get("accuracy", {}).get("supervised_ceiling") or {}).get("note")
        if note:
            out += ["", f"Ceiling: {note}."]
    rows = cold_start_rows(r)
    if rows:
        cs = r["details"]["cold-start"]
        times = ", ".join(f"{k.split('_')[0]} {v['mean']:.2f} s" for k, v in cs["suggest_s"].items()
                          if k.endswith(f"_{max(cs['budgets'])}"))
        out += ["", f"What to label first, from zero labels: Fashion-MNIST, {cs['pool']:,} pool images, pixel "
                f"embedding, mean ± std over seeds {', '.join(map(str, cs['seeds']))}; accuracy of the labels "
                f"spread over the graph on the rest of the pool, and of a linear classifier on the embedding on "
                f"the test set. Choosing {max(cs['budgets'])}: {times}.", "",
                "| Labels chosen by | Labels | Spread (pool) | Linear (test) |", "| --- | --- | --- | --- |"]
        out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    for part in ZERO_LOOP_PARTS:
        rows = zero_loop_rows(r, part)
        if not rows:
            continue
        z = r["details"][part]["details"]
        how = ("every step with the CLI's defaults" if z.get("model_flags", "CLI defaults") == "CLI defaults" else
               f"the {z.get('embedding')} embedding and `{' '.join(z['model_flags'])}` for both roles")
        out += ["", f"The whole loop from zero labels: {ZERO_LOOP_PARTS[part]}, {how}, mean ± std over seeds "
                f"{', '.join(map(str, z['seeds']))}; test accuracy of the teacher and of the student, and the "
                f"loop's wall time, mean and slowest seed ({z['wall_s']}). {zero_loop_steps(r, part)}", "",
                "| Labels chosen by | Labels | Teacher | Student | Wall time | Target |",
                "| --- | --- | --- | --- | --- | --- |"]
        out += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(out)


ZERO_LOOP_PARTS = {"zero-loop": "Fashion-MNIST", "zero-loop-cifar10": "CIFAR-10"}


ZERO_LOOP_ROWS = {"typical": "the app's order (`review --simulate`)", "random": "at random (`--order random`)",
                  "per_class": "{k} of each class, at random (needs the labels first)"}


def zero_loop_rows(r: dict, part: str = "zero-loop") -> list[tuple[str, ...]]:
    """(labels chosen by, N, teacher, student, wall time, target) per arm of a zero-loop part."""
    z = (r.get("details") or {}).get(part) or {}
    pct = lambda a: f"{100 * a['mean']:.1f}% ± {100 * a['std']:.1f}"
    rows = []
    for n in (z.get("details") or {}).get("budgets", []):
        for prefix, label in ZERO_LOOP_ROWS.items():
            a = z.get(f"{prefix}_{n}")
            if not a:
                continue
            target = ""
            if prefix == "typical":
                rnd, per = z.get(f"random_{n}"), z.get(f"per_class_{n}")
                gain = 100 * (a["student"]["mean"] - rnd["student"]["mean"]) if rnd else None
                target = f"beats random by ≥ 4 points: {gain:+.1f}" if gain is not None else ""
                if per:
                    target += f"; ≥ 10 per class: {100 * (a['student']['mean'] - per['student']['mean']):+.1f}"
            st = a["student"]
            rows.append((label.format(k=n // 10), str(n), pct(a["teacher"]), pct(st),
                         f"{st['wall_s']:.0f} s (max {max(st['wall_s_per_seed'].values()):.0f} s)", target))
    return rows


def zero_loop_steps(r: dict, part: str) -> str:
    """The mean wall time of each step of a zero-loop part, over seeds and arms."""
    per_seed = r["details"][part]["details"]["per_seed"]
    steps: dict[str, list[float]] = {}
    for d in per_seed.values():
        steps.setdefault("embed", []).append(d["embed_s"])
        for arm in (v for v in d.values() if isinstance(v, dict)):
            for k in ("label", "teacher", "pseudo_label", "student"):
                steps.setdefault(k.replace("_", "-"), []).append(arm[f"{k}_s"])
    return "Steps, mean wall time: " + ", ".join(f"{k} {sum(v) / len(v):.0f} s" for k, v in steps.items()) + "."


COLD_START_ROWS = {  # name prefix -> how the labels were chosen
    "typical": "`suggest --strategy typical` (TypiClust)",  # the first N
    "random": "at random",
    "per_class": "as many of each class, at random (needs the labels first)",
    "then_uncertain": "+ as many by `--strategy uncertain` (cluster-margin)",
    "then_margin": "+ as many by least margin alone",
    "then_typical": "+ as many by `--strategy typical` again",
    "then_random": "+ as many at random",
}


def cold_start_rows(r: dict) -> list[tuple[str, str, str, str]]:
    """(labels chosen by, N, spread on the pool, linear on test) per setting of the cold-start part."""
    cs = (r.get("details") or {}).get("cold-start") or {}
    pct = lambda a: f"{100 * a['mean']:.1f}% ± {100 * a['std']:.1f}"
    rows = []
    for n in cs.get("budgets", []):
        for prefix, label in COLD_START_ROWS.items():
            a = cs["accuracy"].get(f"{prefix}_{n}")
            if a:
                rows.append((label, f"{n}" if not prefix.startswith("then") else f"{n} + {n}", pct(a["spread"]),
                             pct(a["linear_test"])))
    return rows


def console(r: dict) -> str:
    lines = [f"machine: {machine_line(r)}"]
    rows = speed_rows(r)
    if rows:
        w = max(len(m) for m, *_ in rows)
        lines += [f"{m:<{w}}  {v:>12}  {t:<10} {ok}" for m, v, t, ok in rows]
    acc = accuracy_rows(r)
    if acc:
        w = max(len(a) for a, *_ in acc)
        lines += ["", "accuracy:"] + [f"{a:<{w}}  {b:>14}  {c:>7}  {t}" for a, b, c, t in acc]
    cold = cold_start_rows(r)
    if cold:
        w = max(len(a) for a, *_ in cold)
        lines += ["", "cold start (spread on the pool, linear on test):"] + [
            f"{a:<{w}}  {b:>9}  {c:>14}  {d:>14}" for a, b, c, d in cold]
    for part, name in ZERO_LOOP_PARTS.items():
        zero = zero_loop_rows(r, part)
        if zero:
            lines += ["", f"whole loop from zero labels, {name} (teacher, student, wall time):"] + [
                f"{a:<52}  {b:>4}  {c:>14}  {d:>14}  {e}  {t}" for a, b, c, d, e, t in zero]
    return "\n".join(lines)
