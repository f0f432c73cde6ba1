"""What more labels would buy: a learning curve of the human labels, measured out of fold, and
the gain of the next 100 read off a power law fitted to it.

The curve is measured with a cheap learner on the embedding rows of the human labels only (the
pool is never read, so it takes well under a second at 60,000 pool images): each held-out label
takes the class of its most similar training label (cosine similarity of the centred rows, as
the graph reads them). For each of REPEATS random splits of the labels into FOLDS folds, each
fold is held out in turn while random subsets of the other labels, of growing size, train the
learner; a point is the accuracy on the held-out labels, pooled over the folds, against the
size of the training subset (so the last point trains on (FOLDS-1)/FOLDS of the labels). Its
spread is the standard deviation over the repeats. Above MAX_LABELS labels, a random MAX_LABELS
of them are read.

Chosen by benchmarks/label_value.py (Fashion-MNIST, pixel embedding, 3 seeds): of the nearest
neighbour, the nearest class centroid and a ridge classifier, the nearest neighbour's predicted
gain of the next 100 labels came closest to the true gain on the test set (10.0 points predicted
against 13.5 true at 50 labels, 6.7 / 7.6 at 100, 3.1 / 3.5 at 200, 1.5 / 1.2 at 400); the ridge
classifier and the centroids predicted half the true gain at 50 and 100 labels.

The next 100 labels: acc(n) = a - b * n^-c (Hestness et al., "Deep learning scaling is
predictable, empirically", 2017), fitted by least squares (a grid over c, closed form for a and
b, with b >= 0 and a <= 1); the gain is acc(n + 100) - acc(n) at n, the number of human labels.
Numpy only (no torch).
"""
from __future__ import annotations

import numpy as np

MIN_LABELS = 20   # fewer, and five folds of the labels hold too few to measure anything
FOLDS = 5
REPEATS = 3
FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
MAX_LABELS = 3000  # the similarities of this many labels to each other: 36 MB
NEXT = 100        # the gain of this many more labels
POWERS = np.geomspace(0.02, 2.0, 60)  # the exponents c the power law may take


def unreliable(labels: np.ndarray) -> str | None:
    """Why a curve of these labels (class indices (n,)) would be noise, or None when it would not."""
    n, present = len(labels), len(np.unique(labels))
    if n < MIN_LABELS:
        return f"an estimate needs at least {MIN_LABELS} human labels of 2 classes or more; the project has {n}"
    if present < 2:
        return f"an estimate needs labels of at least 2 classes; the {n} human labels are all of one"
    return None


def prepare(z: np.ndarray) -> np.ndarray:
    """Embedding rows (n, d) -> their cosine similarities (n, n), float32: centred, unit rows."""
    x = z.astype(np.float32)
    x -= x.mean(0)
    x /= np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    return x @ x.T


def curve(sim: np.ndarray, y: np.ndarray, *, fractions=FRACTIONS, folds: int = FOLDS,
          repeats: int = REPEATS, seed: int = 0) -> list[dict]:
    """Out-of-fold accuracy against training labels: [{'n_labels', 'accuracy', 'spread'}] by size.
    sim: the labels' similarities (n, n) (prepare); y: class indices (n,). Sizes below 2 labels
    are left out."""
    n = len(y)
    rng = np.random.default_rng(seed)
    correct = np.zeros((repeats, len(fractions)))
    sizes = np.zeros(len(fractions))
    for r in range(repeats):
        order = rng.permutation(n)
        for part in range(folds):
            out = order[part::folds]
            kept = rng.permutation(np.concatenate([order[j::folds] for j in range(folds) if j != part]))
            for i, f in enumerate(fractions):
                take = kept[:max(1, round(f * len(kept)))]
                sizes[i] += len(take) / (folds * repeats)
                correct[r, i] += (y[take][sim[np.ix_(out, take)].argmax(1)] == y[out]).sum()
    acc = correct / n
    return [{"n_labels": round(float(s), 1), "accuracy": round(float(a), 4), "spread": round(float(sd), 4)}
            for s, a, sd in zip(sizes, acc.mean(0), acc.std(0)) if s >= 2]


def fit_power_law(n: np.ndarray, acc: np.ndarray) -> tuple[float, float, float] | None:
    """(a, b, c) of acc = a - b * n^-c fitted by least squares, with b >= 0 and a <= 1; None
    when fewer than 3 points."""
    if len(n) < 3:
        return None
    best = None
    for c in POWERS:
        design = np.stack([np.ones_like(n), -n ** -c], 1)
        (a, b), *_ = np.linalg.lstsq(design, acc, rcond=None)
        if b < 0:  # a falling curve: the flat line is the best rising one
            a, b = acc.mean(), 0.0
        a = min(a, 1.0)
        err = float(((a - b * n ** -c - acc) ** 2).sum())
        if best is None or err < best[0]:
            best = (err, float(a), float(b), float(c))
    return best[1:]


def predict(params: tuple[float, float, float], n: float) -> float:
    a, b, c = params
    return a - b * n ** -c


def value_of_labels(z: np.ndarray, y: np.ndarray, *, seed: int = 0) -> dict:
    """The curve of embedding rows z (n, d) labeled y (class indices (n,)) and the gain
    of the next NEXT labels: {'points', 'labels', 'accuracy_now', 'gain', 'fit' ({'a','b','c'}),
    'extrapolation' (points to n + NEXT)}; or {'reason'} when unreliable(y) says why not."""
    if reason := unreliable(y):
        return {"reason": reason}
    n = len(y)
    if n > MAX_LABELS:
        keep = np.random.default_rng(seed).choice(n, MAX_LABELS, replace=False)
        z, y = z[keep], y[keep]
    points = curve(prepare(z), y, seed=seed)
    params = fit_power_law(np.array([p["n_labels"] for p in points]), np.array([p["accuracy"] for p in points]))
    if params is None:
        return {"reason": f"the {len(y)} human labels give fewer than 3 points of the curve"}
    now, later = predict(params, n), predict(params, n + NEXT)
    ends = np.linspace(points[-1]["n_labels"], n + NEXT, 12)
    return {"points": points, "labels": int(n), "accuracy_now": round(now, 4), "gain": round(later - now, 4),
            "fit": dict(zip("abc", (round(v, 4) for v in params))),
            "extrapolation": [{"n_labels": round(float(m), 1), "accuracy": round(predict(params, m), 4)}
                              for m in ends]}
