"""Plotly figures for the dashboard: pure functions, plain data in, a go.Figure out.

No streamlit here and no store access, so each figure can be checked in a unit test
by reading its traces.
"""
from __future__ import annotations

import plotly.graph_objects as go

# One colour per role, used on every chart so teacher and student read the same everywhere.
ROLE_COLORS = {"teacher": "#636EFA", "student": "#EF553B", "pseudo-label": "#00CC96"}
SERIES_COLORS = {"labeled": "#636EFA", "pseudo-labeled": "#FFA15A", "accepted": "#00CC96", "corrected": "#AB63FA"}
# Runs overlaid on one chart: colours far apart (Plotly's qualitative "D3" set).
RUN_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
MIN_BIN_ITEMS = 10  # a calibration bin with fewer items is too noisy to draw as a point
_MARGIN = dict(l=10, r=10, t=40, b=10)


def _layout(fig: go.Figure, title: str, **kw) -> go.Figure:
    fig.update_layout(title=title, margin=_MARGIN, legend=dict(orientation="h", y=-0.2), **kw)
    return fig


def class_distribution(classes: list[str], counts: dict[str, dict[int, int]]) -> go.Figure:
    """Grouped bars per class. counts is Store.class_counts(): {'labeled', 'pseudo', 'accepted',
    'corrected'}, each {class index: items} (accepted and corrected by their decided label)."""
    fig = go.Figure()
    for name, key in (("labeled", "labeled"), ("pseudo-labeled", "pseudo"), ("accepted", "accepted"),
                      ("corrected", "corrected")):
        fig.add_bar(name=name, x=list(classes), y=[int(counts.get(key, {}).get(i, 0)) for i in range(len(classes))],
                    marker_color=SERIES_COLORS[name])
    values = [v for t in fig.data for v in t.y if v]
    # 10 labels next to 6,000 pseudo-labels would be invisible on a linear axis.
    log = bool(values) and max(values) > 20 * min(values)
    fig = _layout(fig, "Items per class", barmode="group", yaxis_title="items (log scale)" if log else "items")
    if log:  # a tick at each power of ten, written out: 10, 100, 1,000, 10,000
        fig.update_yaxes(type="log", dtick=1, tickformat=",d")
    return fig


def metric_lines(series: dict[str, list[dict]], key: str, *, title: str, y_title: str,
                 y_range: list[float] | None = None) -> go.Figure:
    """One line per run: series is {run id: metric rows (dicts with 'step' and key)}.
    Rows without key are skipped, so train and eval rows can be passed together. One run is
    drawn in its role's colour; several runs get colours far apart."""
    fig = go.Figure()
    for n, (run_id, rows) in enumerate(series.items()):
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        color = ROLE_COLORS.get(run_id.rsplit("-", 1)[0]) if len(series) == 1 else RUN_COLORS[n % len(RUN_COLORS)]
        fig.add_scatter(name=run_id, x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                        marker=dict(size=5, color=color), line=dict(color=color))
    fig = _layout(fig, title, xaxis_title="step", yaxis_title=y_title, showlegend=len(series) > 1)
    if y_range:
        fig.update_yaxes(range=y_range)
    return fig


def loss_chart(series: dict[str, list[dict]]) -> go.Figure:
    """Training loss per step of one or more runs (metric rows of kind 'train')."""
    return metric_lines({k: [r for r in v if r.get("kind", "train") == "train"] for k, v in series.items()},
                        "loss", title="Training loss", y_title="loss")


def accuracy_chart(series: dict[str, list[dict]]) -> go.Figure:
    """Test accuracy per step of one or more runs (metric rows of kind 'eval')."""
    return metric_lines({k: [r for r in v if r.get("kind", "eval") == "eval"] for k, v in series.items()},
                        "accuracy", title="Test accuracy", y_title="accuracy", y_range=[0, 1])


def per_class_bars(classes: list[str], results: dict[str, dict]) -> go.Figure:
    """Per-class accuracy, one bar group per class and one bar per role.
    results is api.evaluation(): {role: {'run', 'accuracy', 'per_class': {class: acc}, ...}}."""
    fig = go.Figure()
    for role in ("teacher", "student"):
        if role not in results:
            continue
        res = results[role]
        fig.add_bar(name=f"{role} {res.get('run', '')} ({res['accuracy']:.1%})", x=list(classes),
                    y=[res["per_class"].get(c, 0.0) for c in classes], marker_color=ROLE_COLORS[role])
    fig = _layout(fig, "Per-class accuracy on the test set", barmode="group", yaxis_title="accuracy")
    fig.update_yaxes(range=[0, 1], tickformat=".0%")
    return fig


def metrics_table(classes: list[str], results: dict[str, dict]) -> list[dict]:
    """Rows for a table: class, then precision / recall / F1 (and support) per role."""
    rows = []
    for c in classes:
        row: dict = {"class": c}
        for role in ("teacher", "student"):
            if role in results:
                for m in ("precision", "recall", "f1"):
                    row[f"{role} {m}"] = results[role][m].get(c)
        support = next((results[r].get("support", {}).get(c) for r in results if results[r].get("support")), None)
        if support is not None:
            row["test images"] = support
        rows.append(row)
    return rows


def confusion_heatmap(classes: list[str], matrix: list[list[int]], *, title: str = "Confusion matrix") -> go.Figure:
    """Heatmap of counts, rows = true class, columns = predicted class, with each count written
    in its cell. A transparent marker sits on every cell: Plotly heatmaps do not report
    clicks to Streamlit's selection events, scatter points do."""
    k = len(classes)
    xs = [classes[j] for i in range(k) for j in range(k)]
    ys = [classes[i] for i in range(k) for j in range(k)]
    fig = go.Figure()
    fig.add_heatmap(z=matrix, x=list(classes), y=list(classes), colorscale="Blues", showscale=False,
                    text=[[str(v) for v in row] for row in matrix], texttemplate="%{text}", hoverinfo="skip")
    fig.add_scatter(x=xs, y=ys, mode="markers", showlegend=False, name="cells",
                    customdata=[[i, j] for i in range(k) for j in range(k)],
                    marker=dict(size=28, symbol="square", color="rgba(0,0,0,0)"),
                    hovertemplate="true %{y}<br>predicted %{x}<br>click to see these test images<extra></extra>")
    fig = _layout(fig, title, xaxis_title="predicted class", yaxis_title="true class", height=520,
                  clickmode="event+select", dragmode=False)
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    return fig


def calibration_chart(calibration: dict[str, list[dict]]) -> go.Figure:
    """Accuracy against confidence bin. calibration is api.calibration(): {'reviewed': rows,
    'hidden': rows}, each row {'lo', 'hi', 'n', 'accuracy' or None}. A bin of fewer than
    MIN_BIN_ITEMS items is not drawn; each point says how many items it holds."""
    names = {"reviewed": "your one-by-one reviews (accepted = right)", "hidden": "hidden true labels"}
    fig = go.Figure()
    for key, rows in calibration.items():
        pts = [r for r in rows if r["n"] >= MIN_BIN_ITEMS and r["accuracy"] is not None]
        fig.add_scatter(name=names.get(key, key), x=[(r["lo"] + r["hi"]) / 2 for r in pts],
                        y=[r["accuracy"] for r in pts], mode="lines+markers+text",
                        text=[f"{r['n']:,}" for r in pts], textposition="top center",
                        customdata=[[r["lo"], r["hi"], r["n"]] for r in pts],
                        hovertemplate="confidence %{customdata[0]:.1f}-%{customdata[1]:.1f}: "
                                      "%{customdata[2]:,} items<br>accuracy %{y:.1%}<extra></extra>")
    fig.add_scatter(name="perfect calibration", x=[0, 1], y=[0, 1], mode="lines",
                    line=dict(dash="dot", color="grey"))
    fig = _layout(fig, "Pseudo-label accuracy against confidence (numbers: items per bin)",
                  xaxis_title="confidence", yaxis_title="accuracy")
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1.08], tickformat=".0%")
    return fig


MAP_COLOR_BY = ("predicted class", "status", "confidence", "right or wrong")
# In drawing order: the many pending points first, the few human labels last, on top.
STATUS_COLORS = {"pending": "#BAB0AC", "rejected": "#7F7F7F", "accepted": "#00CC96", "corrected": "#AB63FA",
                 "labeled": "#636EFA"}
# RUN_COLORS (D3's first eight), D3's last two, then Plotly's "Dark24": 26 colours, none pale enough
# to vanish on white; classes past 26 reuse them.
CLASS_COLORS = RUN_COLORS + ["#bcbd22", "#17becf", "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A",
                             "#B68100", "#750D86", "#EB663B", "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D"]


def _map_groups(points: dict, color_by: str, classes: list[str]) -> list[tuple[str, list[int], str]]:
    """(legend name, point indices, colour) of each category the map's points are coloured by."""
    n = len(points["id"])
    if color_by == "status":
        keys = points["status"]
        names = [s for s in STATUS_COLORS if s in set(keys)]
        return [(s, [i for i in range(n) if keys[i] == s], STATUS_COLORS[s]) for s in names]
    if color_by == "right or wrong":
        def verdict(i: int) -> str:
            truth = points["truth"][i]
            guess = points["label"][i] if points["label"][i] is not None else points["pred"][i]
            if truth is None or guess is None:
                return "unknown"
            return "right" if guess == truth else "wrong"
        keys = [verdict(i) for i in range(n)]
        colors = {"right": "#2CA02C", "wrong": "#D62728", "unknown": "#BAB0AC"}
        return [(v, [i for i in range(n) if keys[i] == v], colors[v]) for v in colors if v in set(keys)]
    cls = [lab if lab is not None else pred for lab, pred in zip(points["label"], points["pred"])]
    # the points with no class first, so the labeled ones among them stay visible on top
    groups = [("not predicted", [i for i in range(n) if cls[i] is None], "#BAB0AC")]
    groups += [(name, [i for i in range(n) if cls[i] == k], CLASS_COLORS[k % len(CLASS_COLORS)])
               for k, name in enumerate(classes)]
    return [g for g in groups if g[1]]


def embedding_map(points: dict, classes: list[str], color_by: str = "predicted class") -> go.Figure:
    """The 2-D map of an embedding as WebGL scatters (one trace per category, or one coloured by
    confidence); each point carries its item id as customdata, for hover and selection."""
    fig = go.Figure()

    def hover(i: int) -> str:
        c = points["label"][i] if points["label"][i] is not None else points["pred"][i]
        conf = points["confidence"][i]
        return (f"#{points['id'][i]} · {classes[c] if c is not None else 'not predicted'}"
                + (f" · {conf:.2f}" if conf is not None else "") + f" · {points['status'][i]}")

    def add(name: str, idx: list[int], **marker) -> None:
        fig.add_trace(go.Scattergl(
            x=[points["x"][i] for i in idx], y=[points["y"][i] for i in idx], mode="markers", name=name,
            customdata=[points["id"][i] for i in idx], text=[hover(i) for i in idx],
            hovertemplate="%{text}<extra></extra>", marker=dict(size=4, opacity=0.75, **marker)))
    if color_by == "confidence":
        idx = list(range(len(points["id"])))
        add("confidence", idx, color=[c if c is not None else 1.0 for c in points["confidence"]],
            colorscale="RdYlGn", cmin=0, cmax=1, colorbar=dict(title="confidence", thickness=12))
    else:
        for name, idx, color in _map_groups(points, color_by, classes):
            add(f"{name} ({len(idx):,})", idx, color=color)
    fig.update_layout(dragmode="lasso", height=620, xaxis=dict(visible=False), yaxis=dict(visible=False),
                      legend=dict(orientation="h", y=-0.02, itemsizing="constant"), margin=dict(l=10, r=10, t=10, b=10))
    return fig
