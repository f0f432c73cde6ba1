"""Accuracy, per-class precision/recall/F1 and the confusion matrix, from predictions."""
from __future__ import annotations

import torch


def confusion(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) int64 counts; rows are true classes, columns predicted ones."""
    idx = y_true.long() * num_classes + y_pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def summarize(conf: torch.Tensor, classes: list[str]) -> dict:
    """Overall accuracy, per-class accuracy (= recall), precision and F1, keyed by class name."""
    conf = conf.double()
    tp = conf.diag()
    support, predicted = conf.sum(1), conf.sum(0)
    recall = torch.where(support > 0, tp / support.clamp_min(1), torch.zeros_like(tp))
    precision = torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.zeros_like(tp))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-12),
                     torch.zeros_like(tp))
    total = conf.sum().item()
    name = lambda t: {c: round(float(v), 4) for c, v in zip(classes, t)}
    return {"accuracy": round(tp.sum().item() / total, 4) if total else 0.0,
            "per_class": name(recall), "precision": name(precision), "recall": name(recall), "f1": name(f1),
            "support": {c: int(v) for c, v in zip(classes, support)},
            "confusion": conf.long().tolist(), "n": int(total)}


def accuracy_by_confidence(confidence: torch.Tensor, correct: torch.Tensor, bins: int = 10) -> list[dict]:
    """Calibration table: for each confidence bin, how many items and what fraction were right."""
    edges = torch.linspace(0, 1, bins + 1)
    out = []
    for i in range(bins):
        lo, hi = edges[i].item(), edges[i + 1].item()
        m = (confidence >= lo) & ((confidence < hi) if i < bins - 1 else (confidence <= hi))
        n = int(m.sum())
        out.append({"lo": round(lo, 3), "hi": round(hi, 3), "n": n,
                    "accuracy": round(correct[m].float().mean().item(), 4) if n else None})
    return out
