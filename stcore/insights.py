"""What a decision would do, before it is made: the class mix of the human labels after a bulk
accept and the errors it likely brings in; and which classes a run got worse at. Plain Python
on plain data (counts, confidences, per-class accuracies), so the API reads the store and calls
these, and tests need no project.
"""
from __future__ import annotations

CALIBRATION_BINS = 20      # confidence bins of 0.05 for the reviewed items' accuracy
MIN_REVIEWED_PER_BIN = 30  # a bin's reviewed accuracy is used from this many items on; else the confidence
LOPSIDED_FACTOR = 3.0      # warn when the largest class's share of the human labels would triple...
LOPSIDED_SHARE = 0.5       # ...or pass one half


def expected_wrong(confidences: list[float], reviewed: list[dict]) -> tuple[float, int]:
    """(expected number of wrong labels among items with these confidences, how many of them were
    estimated from reviewed items). reviewed: the accuracy of the items people reviewed one at a
    time, by equal confidence bins (metrics.accuracy_by_confidence: {'n', 'accuracy'} per bin). An
    item's chance to be wrong is 1 - its bin's accuracy where the bin holds MIN_REVIEWED_PER_BIN
    reviewed items, else 1 - its confidence."""
    wrong, calibrated = 0.0, 0
    for c in confidences:
        b = reviewed[min(len(reviewed) - 1, max(0, int(c * len(reviewed))))] if reviewed else {"n": 0}
        if b["n"] >= MIN_REVIEWED_PER_BIN:
            wrong, calibrated = wrong + 1 - b["accuracy"], calibrated + 1
        else:
            wrong += 1 - c
    return wrong, calibrated


def largest(counts: dict[str, int]) -> dict:
    """{'class', 'count', 'share'} of the class with the most labels in counts (name -> count)."""
    total = sum(counts.values())
    name = max(counts, key=lambda c: counts[c])
    return {"class": name, "count": counts[name], "share": round(counts[name] / total, 4) if total else 0.0}


def accept_impact(classes: list[str], human: dict[int, int], items: list[tuple[int, float]],
                  reviewed: list[dict]) -> dict:
    """What accepting items (predicted class index, confidence) would do to the human labels
    (human: class index -> count now; reviewed: as for expected_wrong). Returns {'n', 'accepted' (name -> count), 'before' and
    'after' (name -> human labels), 'largest_before', 'largest_after' ({'class', 'count', 'share'}),
    'expected_wrong', 'estimate' ('reviewed', 'confidence' or 'reviewed and confidence': where the
    chance of an error came from), 'calibrated_items', 'warning' (text, or None)}."""
    accepted = {c: 0 for c in classes}
    for pred, _ in items:
        accepted[classes[pred]] += 1
    before = {c: int(human.get(k, 0)) for k, c in enumerate(classes)}
    after = {c: before[c] + accepted[c] for c in classes}
    wrong, calibrated = expected_wrong([conf for _, conf in items], reviewed)
    estimate = ("reviewed" if calibrated == len(items) and items else
                "confidence" if calibrated == 0 else "reviewed and confidence")
    big = largest(after)
    share_before = before[big["class"]] / max(1, sum(before.values()))
    warning = None
    if items and (big["share"] > LOPSIDED_SHARE or big["share"] > LOPSIDED_FACTOR * share_before):
        warning = (f"{big['class']} would be {big['share']:.0%} of the human labels ({share_before:.0%} now). "
                   f"Training keeps a class near its expected share, but compare the next student's "
                   f"per-class accuracy with the teacher's before promoting it.")
    return {"n": len(items), "accepted": accepted, "before": before, "after": after,
            "largest_before": largest(before), "largest_after": big,
            "expected_wrong": round(wrong, 1), "estimate": estimate, "calibrated_items": calibrated,
            "warning": warning}


def class_regressions(before: dict[str, float], after: dict[str, float], *, points: float = 5.0) -> list[dict]:
    """The classes whose accuracy (name -> fraction) fell by more than `points` percentage points
    from before to after, worst first: [{'name', 'before', 'after' (fractions), 'drop' (points)}]."""
    out = [{"name": c, "before": before[c], "after": after[c], "drop": round(100 * (before[c] - after[c]), 1)}
           for c in after if c in before and 100 * (before[c] - after[c]) > points]
    return sorted(out, key=lambda r: r["after"] - r["before"])
