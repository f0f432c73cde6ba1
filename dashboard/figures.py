"""Plotly figures for the dashboard: pure functions, plain data in, a go.Figure out.

No streamlit here and no store access, so each figure can be checked in a unit test
by reading its traces.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import plotly.graph_objects as go

from stcore import api

# One colour per role, used on every chart so teacher and student read the same everywhere.
ROLE_COLORS = {"teacher": "#636EFA", "student": "#EF553B", "pseudo-label": "#00CC96"}
SERIES_COLORS = {"labeled": api.STATUS_COLORS["labeled"], "pseudo-labeled": "#FFA15A",
                 "accepted": api.STATUS_COLORS["accepted"], "corrected": api.STATUS_COLORS["corrected"]}
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
    # Plotly's default writes small values with SI prefixes: a loss of 0.000005 read "5µ".
    fig.update_yaxes(exponentformat="none")
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


CONFIDENCE_BANDS = (("confidence at least 0.9", 0.9, "#2CA02C"), ("0.6 to 0.9", 0.6, "#FFA15A"),
                    ("below 0.6", 0.0, "#D62728"))


def predicted_classes(classes: list[str], items: list[dict]) -> go.Figure:
    """Stacked bars: how many new images a predict job gave each class, by its confidence
    (CONFIDENCE_BANDS). items: api.predictions()."""
    last = len(CONFIDENCE_BANDS) - 1  # NaN, from a model gone wrong, is no band's: the lowest
    counts = Counter((it["class"], next((k for k, (_, lo, _) in enumerate(CONFIDENCE_BANDS) if it["confidence"] >= lo),
                                        last)) for it in items)
    fig = go.Figure()
    for k, (name, _, color) in enumerate(CONFIDENCE_BANDS):
        fig.add_bar(name=name, x=list(classes), y=[counts.get((c, k), 0) for c in classes], marker_color=color)
    fig = _layout(fig, "New images per predicted class", barmode="stack", yaxis_title="images")
    fig.update_layout(legend_traceorder="normal")  # most confident first, as the bands read
    if max(Counter(it["class"] for it in items).values(), default=0) <= 10:
        fig.update_yaxes(dtick=1)  # a few images: whole numbers on the axis, not 2.5 images
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
# stcore's one table of review statuses, in drawing order: pending (the many points) first, the
# labeled set last, on top.
STATUS_COLORS = api.STATUS_COLORS
# "right or wrong": the human or decided label (else the teacher's class) against the hidden true
# class. The labeled set has no hidden class to check: its class is its label, a category of its own.
VERDICT_COLORS = {"right": "#2CA02C", "wrong": "#D62728", "unknown": "#BAB0AC", "labeled": STATUS_COLORS["labeled"]}
# RUN_COLORS (D3's first eight), D3's last two, then Plotly's "Dark24": 26 colours, none pale enough
# to vanish on white; classes past 26 reuse them.
CLASS_COLORS = RUN_COLORS + ["#bcbd22", "#17becf", "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A",
                             "#B68100", "#750D86", "#EB663B", "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D"]
# Above this many points the box and lasso are taken by an empty layer over the map (see _select_layer).
SELECT_LAYER_ABOVE = 5_000


def _map_classes(points: dict) -> np.ndarray:
    """Each point's class: its human or decided label, else the teacher's; -1 for neither."""
    return np.array([lab if lab is not None else (pred if pred is not None else -1)
                     for lab, pred in zip(points["label"], points["pred"])], dtype=np.int64)


def map_verdicts(points: dict) -> np.ndarray:
    """'right', 'wrong', 'unknown' (no hidden class, or no class to check) or 'labeled' (the
    labeled set) for each point of the map."""
    cls = _map_classes(points)
    truth = np.array([-1 if t is None else t for t in points["truth"]], dtype=np.int64)
    out = np.where(cls == truth, "right", "wrong").astype(object)
    out[(truth < 0) | (cls < 0)] = "unknown"
    out[np.asarray(points["split"], dtype=object) == "labeled"] = "labeled"
    return out


def _map_groups(points: dict, color_by: str, classes: list[str]) -> list[tuple[str, np.ndarray, str]]:
    """(legend name, point indices, colour) of each category the map's points are coloured by,
    in drawing order: the last is drawn on top."""
    if color_by == "status":
        keys = np.asarray(points["status"], dtype=object)
        groups = [(s, np.flatnonzero(keys == s), c) for s, c in STATUS_COLORS.items()]
    elif color_by == "right or wrong":
        keys = map_verdicts(points)
        groups = [(v, np.flatnonzero(keys == v), VERDICT_COLORS[v]) for v in ("unknown", "right", "wrong", "labeled")]
    else:
        cls = _map_classes(points)
        # the points with no class first, so the labeled ones among them stay visible on top
        groups = [("not predicted", np.flatnonzero(cls < 0), "#BAB0AC")]
        groups += [(name, np.flatnonzero(cls == k), CLASS_COLORS[k % len(CLASS_COLORS)])
                   for k, name in enumerate(classes)]
    return [g for g in groups if len(g[1])]


def _coords(values: list[float]) -> np.ndarray:
    """Map coordinates rounded to a ten-thousandth of their span: far finer than a pixel, and
    a third of the bytes of a full float in the page and in each selection event."""
    v = np.asarray(values, dtype=np.float64)
    span = float(np.ptp(v)) if len(v) else 0.0
    return np.round(v, max(0, 4 - int(np.floor(np.log10(span))))) if span > 0 else v


def _stepped(colors: list[str]) -> list[list]:
    """A colorscale that paints the integer codes 0..k-1 each in its colour (k colours, with
    cmin -0.5 and cmax k - 0.5: each code falls in the middle of its band)."""
    k = len(colors)
    return [[edge, c] for i, c in enumerate(colors) for edge in (i / k, (i + 1) / k)]


def embedding_map(points: dict, classes: list[str], color_by: str = "predicted class") -> go.Figure:
    """The 2-D map of an embedding (api.map_points) as WebGL scatters: one trace per category,
    the last drawn on top, or one coloured by confidence. Each point carries its item id as
    customdata, for hover and selection.

    In "right or wrong", right and wrong are one trace in a fixed random order: drawn as a trace
    each, the one on top would cover the other wherever points overlap, and a cluster 20% wrong
    would look all wrong (or all right). Mixed, what shows at each spot is a fair draw.

    Up to SELECT_LAYER_ABOVE points each point has a hover label and the browser selects the
    points; above, an empty layer takes the box and lasso, and map_selection finds the points
    inside (see _select_layer)."""
    n = len(points["id"])
    layer = n > SELECT_LAYER_ABOVE
    x, y, ids = _coords(points["x"]), _coords(points["y"]), np.asarray(points["id"], dtype=np.int64)
    if layer:  # typed arrays: 4 bytes a value in the page, and Plotly checks no value one by one
        x, y = x.astype(np.float32), y.astype(np.float32)
        ids = ids.astype(np.int32) if n and ids.max() < 2 ** 31 else ids.astype(np.float64)

    def column(values: np.ndarray):
        return values if layer else values.tolist()
    fig = go.Figure()

    def hover(i: int) -> str:
        c = points["label"][i] if points["label"][i] is not None else points["pred"][i]
        conf = points["confidence"][i]
        return (f"#{points['id'][i]} · {classes[c] if c is not None else 'not predicted'}"
                + (f" · {conf:.2f}" if conf is not None else "") + f" · {points['status'][i]}")

    def add(name: str, idx: np.ndarray, *, showlegend: bool = True, **marker) -> None:
        pointer = (dict(hoverinfo="skip") if layer else  # the layer over the map takes the mouse
                   dict(text=[hover(i) for i in idx], hovertemplate="%{text}<extra></extra>"))
        fig.add_trace(go.Scattergl(x=column(x[idx]), y=column(y[idx]), mode="markers", name=name,
                                   showlegend=showlegend, customdata=column(ids[idx]),
                                   marker=dict(size=4, opacity=0.75, **marker), **pointer))

    def legend_entry(name: str, color: str) -> None:  # a legend line for points drawn in another trace
        fig.add_trace(go.Scattergl(x=[None], y=[None], mode="markers", name=name, hoverinfo="skip",
                                   marker=dict(size=4, color=color)))
    legend_clicks = not layer  # with the layer, a hidden trace's points would still be selected
    if color_by == "confidence":
        conf = np.array([c if c is not None else 1.0 for c in points["confidence"]], dtype=np.float32)
        add("confidence", np.arange(n), color=column(conf), colorscale="RdYlGn", cmin=0, cmax=1,
            colorbar=dict(title="confidence", thickness=12))
    elif color_by == "right or wrong":
        groups = _map_groups(points, color_by, classes)
        mixed = [g for g in groups if g[0] != "labeled"]
        if mixed:
            code = np.zeros(n, dtype=np.int64)
            for k, (_, idx, _) in enumerate(mixed):
                code[idx] = k
            order = np.random.default_rng(0).permutation(np.concatenate([idx for _, idx, _ in mixed]))
            add("right or wrong", order, showlegend=False, color=column(code[order].astype(np.int8)), cmin=-0.5,
                cmax=len(mixed) - 0.5, colorscale=_stepped([c for _, _, c in mixed]))
            for name, idx, color in mixed:
                legend_entry(f"{name} ({len(idx):,})", color)
        for name, idx, color in groups:
            if name == "labeled":  # few, and no verdict: on top, as on the other colourings
                add(f"labeled set ({len(idx):,})", idx, color=color)
        legend_clicks = False  # hiding a legend line would hide nothing: its points are in the mixed trace
    else:
        for name, idx, color in _map_groups(points, color_by, classes):
            add(f"{name} ({len(idx):,})", idx, color=color)
    fig.update_layout(dragmode="lasso", height=620, xaxis=dict(visible=False), yaxis=dict(visible=False),
                      legend=dict(orientation="h", y=-0.02, itemsizing="constant",
                                  **({} if legend_clicks else dict(itemclick=False, itemdoubleclick=False))),
                      margin=dict(l=10, r=10, t=10, b=10))
    if layer:
        _select_layer(fig)
    return fig


SELECT_LAYER = "selection layer"


def _select_layer(fig: go.Figure) -> None:
    """An empty plot over the map (axes x2, y2, matching the map's) that takes the box and lasso.

    Plotly tests every point of the plot dragged on at each mouse move and redraws them all:
    in a browser drawing WebGL without a GPU, 60,000 points cost about 0.3 s a move, so a lasso
    took 20 s or more. Over an empty plot the drag costs nothing; the selection event then
    holds the shape alone, and map_selection finds the points inside it. The axes match, so a
    zoom or pan moves the map with the layer."""
    # One point at nowhere: a trace with no points is hidden, and a double-click then left the
    # box or lasso drawn (Plotly clears those of the traces it searches). SVG, not WebGL: a
    # selection on a WebGL trace redraws every WebGL trace, the map's points with it.
    fig.add_trace(go.Scatter(x=[None], y=[None], xaxis="x2", yaxis="y2", name=SELECT_LAYER, showlegend=False,
                             hoverinfo="skip", mode="markers"))
    fig.update_layout(xaxis2=dict(matches="x", visible=False), yaxis2=dict(matches="y", visible=False))


def _inside(x: np.ndarray, y: np.ndarray, px: list[float], py: list[float]) -> np.ndarray:
    """Which points (x, y) lie inside the polygon (px, py) (even-odd rule), as Plotly's lasso tests them."""
    inside = np.zeros(len(x), dtype=bool)
    px, py = np.asarray(px, dtype=np.float64), np.asarray(py, dtype=np.float64)
    if len(px) < 3:
        return inside
    for x1, y1, x2, y2 in zip(px, py, np.roll(px, -1), np.roll(py, -1)):
        if y1 == y2:
            continue  # a horizontal edge crosses no horizontal ray
        crosses = (y1 > y) != (y2 > y)
        inside ^= crosses & (x < x1 + (y - y1) * (x2 - x1) / (y2 - y1))
    return inside


def map_selection(points: dict, selection: dict | None) -> list[int]:
    """The item ids a selection event on embedding_map holds, each once: the points Plotly
    reports (a click, or a box or lasso without the layer), then, in map order, the points
    inside each box and lasso drawn on the selection layer.

    selection is the event's selection: {'points': [{'customdata': id, ...}], 'box': [{'xref',
    'x': [x0, x1], 'y': [y0, y1]}], 'lasso': [{'xref', 'x': [...], 'y': [...]}]}."""
    selection = selection or {}
    picked = [p.get("customdata") for p in selection.get("points") or []]
    ids = [int(c[0] if isinstance(c, list) else c) for c in picked if c is not None]
    shapes = [(s, "box") for s in selection.get("box") or []] + [(s, "lasso") for s in selection.get("lasso") or []]
    shapes = [(s, kind) for s, kind in shapes if s.get("xref") == "x2"]  # Plotly tested the points of the others
    if shapes:
        x, y = _coords(points["x"]), _coords(points["y"])
        hit = np.zeros(len(x), dtype=bool)
        for s, kind in shapes:
            if kind == "box" and len(s.get("x", [])) == 2 and len(s.get("y", [])) == 2:
                (x0, x1), (y0, y1) = sorted(s["x"]), sorted(s["y"])
                hit |= (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
            elif kind == "lasso":
                hit |= _inside(x, y, s.get("x", []), s.get("y", []))
        ids += np.asarray(points["id"], dtype=np.int64)[hit].tolist()
    known = set(points["id"])  # an event from a map drawn before the points changed may name others
    return [i for i in dict.fromkeys(ids) if i in known]


def label_value_chart(curve: dict) -> go.Figure:
    """What more labels would buy: curve is api.label_curve's result with a gain. The measured
    accuracy (%) against labels trained on, a band of ± its spread, and the fitted curve dotted
    on to the next 100 labels."""
    pts, ext = curve["points"], curve["extrapolation"]
    x = [p["n_labels"] for p in pts]
    acc = [100 * p["accuracy"] for p in pts]
    lo = [100 * (p["accuracy"] - p["spread"]) for p in pts]
    hi = [100 * (p["accuracy"] + p["spread"]) for p in pts]
    color = ROLE_COLORS["teacher"]
    fig = go.Figure()
    fig.add_scatter(x=x + x[::-1], y=hi + lo[::-1], fill="toself", fillcolor="rgba(99,110,250,0.18)",
                    line=dict(width=0), hoverinfo="skip", name="± spread over splits")
    fig.add_scatter(x=x, y=acc, mode="lines+markers", name="measured (out of fold)", line=dict(color=color),
                    marker=dict(size=6, color=color))
    fig.add_scatter(x=[e["n_labels"] for e in ext], y=[100 * e["accuracy"] for e in ext], mode="lines",
                    name=f"fitted, to {curve['labels'] + 100:,} labels", line=dict(color=color, dash="dot"))
    end = ext[-1]
    fig.add_annotation(x=end["n_labels"], y=100 * end["accuracy"], text=f"+{100 * curve['gain']:.1f} pts",
                       showarrow=True, arrowhead=0, ax=-40, ay=-30)
    fig = _layout(fig, "Estimated accuracy against human labels", xaxis_title="human labels trained on",
                  yaxis_title="accuracy (%)")
    fig.update_xaxes(rangemode="tozero")
    return fig


def activity_chart(actions: list[dict]) -> go.Figure:
    """Items decided (or voted on) per reviewer over time, stacked bars: per hour when the actions
    span less than three days, else per day. actions: api.activity() rows."""
    import datetime as dt
    span = (actions[-1]["at"] - actions[0]["at"]) if actions else 0
    hourly = span < 3 * 86400
    fmt = "%Y-%m-%d %H:00" if hourly else "%Y-%m-%d"
    counts: dict[str, dict[str, int]] = {}
    for a in actions:
        when = dt.datetime.fromtimestamp(a["at"]).strftime(fmt)
        counts.setdefault(a["reviewer"], {})
        counts[a["reviewer"]][when] = counts[a["reviewer"]].get(when, 0) + a["n"]
    fig = go.Figure()
    for k, (who, per) in enumerate(sorted(counts.items())):
        fig.add_bar(x=list(per), y=list(per.values()), name=who, marker_color=RUN_COLORS[k % len(RUN_COLORS)],
                    hovertemplate=f"{who}<br>%{{x}}<br>%{{y}} items<extra></extra>")
    fig = _layout(fig, f"Items decided per {'hour' if hourly else 'day'}, by reviewer", barmode="stack",
                  yaxis_title="items", height=340)
    fig.update_xaxes(type="category")
    return fig


def kappa_heatmap(reviewers: list[str], pairs: list[dict]) -> go.Figure:
    """Cohen's kappa of each pair of reviewers (api.agreement()'s pairs), with the items they
    shared; an empty cell: no item in common."""
    k = {(p["a"], p["b"]): p for p in pairs}
    z, text = [], []
    for a in reviewers:
        zr, tr = [], []
        for b in reviewers:
            p = k.get((a, b)) or k.get((b, a))
            zr.append(1.0 if a == b else (p["kappa"] if p and p["kappa"] is not None else None))
            tr.append("" if a == b else (f"{p['kappa']:.2f}<br>{p['items']} items" if p and p["kappa"] is not None
                                         else (f"–<br>{p['items']} items" if p else "")))
        z.append(zr)
        text.append(tr)
    fig = go.Figure(go.Heatmap(z=z, x=reviewers, y=reviewers, zmin=-1, zmax=1, colorscale="RdBu", text=text,
                               texttemplate="%{text}", hovertemplate="%{y} & %{x}: kappa %{z:.3f}<extra></extra>",
                               colorbar=dict(title="kappa")))
    fig = _layout(fig, "Cohen's kappa, pair by pair", height=120 + 60 * len(reviewers))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    return fig


def agreement_bars(rows: list[dict], label: str, *, title: str, count: str) -> go.Figure:
    """Horizontal bars of rows' 'agreement' (0-1), one per row[label], with row[count] in the hover."""
    fig = go.Figure(go.Bar(x=[r["agreement"] for r in rows], y=[str(r[label]) for r in rows], orientation="h",
                           marker_color="#636EFA", text=[f"{r['agreement']:.0%}" for r in rows],
                           # a short bar's number goes after it (a bar of 0 has no inside to hold it)
                           textposition=["inside" if r["agreement"] >= 0.2 else "outside" for r in rows],
                           customdata=[r[count] for r in rows],
                           hovertemplate=f"%{{y}}: %{{x:.1%}} of %{{customdata}} {count}<extra></extra>"))
    fig = _layout(fig, title, height=120 + 28 * len(rows), xaxis=dict(range=[0, 1.02], tickformat=".0%"))
    fig.update_yaxes(autorange="reversed", type="category")
    return fig
