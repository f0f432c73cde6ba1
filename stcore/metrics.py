"""Accuracy, per-class precision/recall/F1, the confusion matrix and calibration bins, from
predictions. Plain Python (no torch), so reading a run's results stays light."""
from __future__ import annotations

from typing import Iterable, Sequence


def confusion(y_true: Iterable[int], y_pred: Iterable[int], num_classes: int) -> list[list[int]]:
    """(K, K) counts; rows are true classes, columns predicted ones."""
    conf = [[0] * num_classes for _ in range(num_classes)]
    for t, p in zip(y_true, y_pred):
        conf[int(t)][int(p)] += 1
    return conf


def summarize(conf: Sequence[Sequence[int]], classes: list[str]) -> dict:
    """Overall accuracy, per-class accuracy (= recall), precision and F1, keyed by class name.
    Of no items (a project without a test set) the accuracy is None, not 0."""
    k = len(classes)
    tp = [conf[i][i] for i in range(k)]
    support = [sum(conf[i]) for i in range(k)]
    predicted = [sum(conf[i][j] for i in range(k)) for j in range(k)]
    recall = [tp[i] / support[i] if support[i] else 0.0 for i in range(k)]
    precision = [tp[i] / predicted[i] if predicted[i] else 0.0 for i in range(k)]
    f1 = [2 * p * r / (p + r) if p + r else 0.0 for p, r in zip(precision, recall)]
    total = sum(support)
    name = lambda values: {c: round(float(v), 4) for c, v in zip(classes, values)}
    return {"accuracy": round(sum(tp) / total, 4) if total else None,
            "per_class": name(recall), "precision": name(precision), "recall": name(recall), "f1": name(f1),
            "support": {c: int(v) for c, v in zip(classes, support)},
            "confusion": [list(map(int, row)) for row in conf], "n": int(total)}


def accuracy_by_confidence(pairs: Iterable[tuple[float, bool]], bins: int = 10) -> list[dict]:
    """Calibration table from (confidence, right) pairs: for each of `bins` equal confidence bins,
    how many items and what fraction were right (None for an empty bin)."""
    n, right = [0] * bins, [0] * bins
    for conf, ok in pairs:
        b = min(bins - 1, max(0, int(conf * bins)))
        n[b] += 1
        right[b] += bool(ok)
    return [{"lo": round(i / bins, 3), "hi": round((i + 1) / bins, 3), "n": n[i],
             "accuracy": round(right[i] / n[i], 4) if n[i] else None} for i in range(bins)]


def agreement(counts: tuple[int, int, int, int], threshold: float = 0.9) -> dict | None:
    """Pseudo-label accuracy against hidden labels, overall and above threshold, from
    Store.pseudo_label_agreement(): (items, right, confident items, confident and right)."""
    n, right, n_conf, right_conf = counts
    if not n:
        return None
    return {"n": n, "accuracy": round(right / n, 4), f"n_above_{threshold}": n_conf,
            f"accuracy_above_{threshold}": round(right_conf / n_conf, 4) if n_conf else None}
