"""What to label next: rankings of the pool by how much a human label there is worth, in small
functions over numpy arrays. Each returns picks (index, score, reason), best first.

Before any model (`typical`): TypiClust (Hacohen et al., "Active Learning on a Budget", 2022).
With few labels, a label is worth most on a dense, typical image of a part of the data no label
covers yet: k-means cuts the embedding into as many clusters as there will be labels, and the
largest cluster without a label gives its most typical image (the highest inverse mean distance
to its nearest neighbours inside the cluster), until the budget is spent.

Once a teacher exists (`uncertain`): cluster-margin (Citovsky et al., "Batch Active Learning at
Scale", 2021). The candidates are the items the teacher is least sure of (smallest margin); they
are taken in turns over k-means clusters of the embedding, so a batch spreads over the data and
is not all near-copies from one confusable pair.

Measured on 20,000 Fashion-MNIST images with the pixel embedding (accuracy of the labels spread
over the graph on the rest of the pool; benchmarks/cold_start.py has the full setting):
ProbCover (Yehuda et al. 2022; greedy cover by balls of radius delta over the 50 nearest
neighbours) reached 29% to 58% with 30 labels and 56% to 72% with 100 over the radii tried,
against 71% to 73% and 77% to 79% for TypiClust: on pixels, balls pure enough are nearly empty.
After 30 (100) typical labels, with their spread labels standing in for the teacher, 30 (100)
more by cluster-margin gave 75.6% (80.3%), by BADGE 75.0% (80.7%), by the least margin alone
74.7% (80.2%), at random 73.7% (80.0%), 3 seeds: BADGE is no better and 30 to 50 times slower
(its k-means++ runs over K x d gradient embeddings). On the whole pool (results.json's cold-start)
a second batch by typical again beat cluster-margin at both budgets (76.9% against 73.9% at
30 + 30, 82.4% against 81.4% at 100 + 100), with the spread labels, not a trained model, as the
teacher: `auto` follows the issue (uncertain once there are pseudo-labels), which this questions.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

MAX_CLUSTERS = 500        # TypiClust's cap: past it, k-means costs more than the choice gains
NEIGHBOURS = 20           # typicality reads the mean distance to this many neighbours (TypiClust's)
TYPICALITY_SAMPLE = 1000  # a larger cluster's typicality is read on a random sample of its members
DIMS = 128                # wider embeddings are projected to this many: k-means' cost grows with d
KMEANS_ITERATIONS = 10     # Lloyd iterations: the picks barely change past a few
CANDIDATES = 10           # uncertain: the smallest-margin candidates, per item asked for (Citovsky et al.)


class Pick(NamedTuple):
    index: int    # into the arrays given
    score: float  # higher is worth more; comparable within one ranking only
    reason: str


def unit_rows(z: np.ndarray, dims: int = DIMS, *, sample: int = 5000, seed: int = 0) -> np.ndarray:
    """Embedding rows (N, d) centred, projected on their top `dims` principal components when d is
    larger (fitted on a random sample of rows), and scaled to unit length: float32 (N, <= dims)."""
    z = np.asarray(z, dtype=np.float32)
    z = z - z.mean(0, keepdims=True)
    if z.shape[1] > dims:
        fit = z[np.random.default_rng(seed).choice(len(z), min(len(z), sample), replace=False)]
        _, vectors = np.linalg.eigh(fit.T @ fit)  # ascending eigenvalues: the last are the top components
        z = z @ vectors[:, ::-1][:, :dims]
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def kmeans_plus_plus(z: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """k starting centres (k, d) from rows z (n, d): each next one drawn with probability
    proportional to the squared distance to the nearest centre so far (Arthur and Vassilvitskii, 2007)."""
    rng = np.random.default_rng(seed)
    centres = [z[rng.integers(len(z))]]
    d2 = ((z - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        centres.append(z[rng.choice(len(z), p=d2 / d2.sum()) if d2.sum() > 0 else rng.integers(len(z))])
        d2 = np.minimum(d2, ((z - centres[-1]) ** 2).sum(1))
    return np.stack(centres)


def kmeans(z: np.ndarray, k: int, *, seed: int = 0, iterations: int = KMEANS_ITERATIONS) -> np.ndarray:
    """The cluster (0..k-1) of each row of z (N, d): faiss's k-means (Lloyd iterations, fitted on
    at most 256 rows a cluster) from k-means++ centres (drawn from at most 20 rows a cluster:
    a random start splits large groups and merges small ones), then each row's nearest centre."""
    import faiss
    z = np.ascontiguousarray(z, dtype=np.float32)
    k = max(1, min(int(k), len(z)))
    if k == 1:
        return np.zeros(len(z), dtype=np.int64)
    rng = np.random.default_rng(seed)
    sample = z[rng.choice(len(z), 20 * k, replace=False)] if len(z) > 20 * k else z
    km = faiss.Kmeans(z.shape[1], k, niter=iterations, seed=seed, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=256)  # no warning on small data
    km.train(z, init_centroids=np.ascontiguousarray(kmeans_plus_plus(sample, k, seed=seed)))
    return km.index.search(z, 1)[1][:, 0].astype(np.int64)


def typicality(z: np.ndarray, neighbours: int = NEIGHBOURS) -> np.ndarray:
    """1 / (mean Euclidean distance to the nearest `neighbours` other rows) of each row of z (n, d),
    by faiss's exact search."""
    import faiss
    n = len(z)
    if n < 2:
        return np.ones(n)
    z = np.ascontiguousarray(z, dtype=np.float32)
    index = faiss.IndexFlatL2(z.shape[1])
    index.add(z)
    d2, _ = index.search(z, min(neighbours, n - 1) + 1)
    near = np.sqrt(np.maximum(d2[:, 1:], 0))  # the first is the row itself (or an exact copy: also 0)
    return 1 / (near.mean(1) + 1e-8)


def typical(z: np.ndarray, labeled: np.ndarray, count: int, *, seed: int = 0) -> list[Pick]:
    """TypiClust: count picks among the rows of z (N, d) that are not labeled (labeled: bool (N,),
    True where an item already has a human label). k-means into min(labeled + count, MAX_CLUSTERS)
    clusters; each pick is the most typical unlabeled row of the cluster with the fewest labels
    (the largest of those), so clusters are covered largest first. score: the typicality."""
    labeled = np.asarray(labeled, dtype=bool)
    count = min(int(count), int((~labeled).sum()))
    if count <= 0:
        return []
    rng = np.random.default_rng(seed)
    z = unit_rows(z)
    cluster = kmeans(z, min(int(labeled.sum()) + count, MAX_CLUSTERS), seed=seed)
    total = np.bincount(cluster)
    size = total.copy()  # 0 once a cluster has nothing left to pick
    labels = np.bincount(cluster[labeled], minlength=len(size))
    queue: dict[int, list[tuple[float, int]]] = {}  # a cluster's unlabeled rows, most typical last
    picks: list[Pick] = []
    while len(picks) < count:
        open_ = np.flatnonzero(size > 0)
        c = int(open_[np.lexsort((-size[open_], labels[open_]))[0]])
        if c not in queue:
            members = np.flatnonzero(cluster == c)
            if len(members) > TYPICALITY_SAMPLE:
                members = np.sort(rng.choice(members, TYPICALITY_SAMPLE, replace=False))
            t = typicality(z[members])
            queue[c] = sorted((float(s), int(i)) for s, i in zip(t, members) if not labeled[i])
        if not queue[c]:  # every member (of the sample) is labeled or taken: close the cluster
            size[c] = 0
            continue
        score, i = queue[c].pop()
        have = "no label yet" if labels[c] == 0 else f"{labels[c]} labeled"
        picks.append(Pick(i, score, f"most typical of cluster {c} ({int(total[c]):,} images, {have})"))
        labels[c] += 1
    return picks


def uncertain(z: np.ndarray, margin: np.ndarray, count: int, *, seed: int = 0,
              candidates: int = CANDIDATES) -> list[Pick]:
    """Cluster-margin: count picks among the rows of z (N, d), whose teacher margins (top-1 minus
    top-2 probability; NaN where an item has no pseudo-label, read as 0: nothing is known) are
    margin (N,). The candidates are the count * candidates smallest margins; k-means cuts z into
    min(count, MAX_CLUSTERS) clusters, and the clusters give their least-margin candidate in turns
    (the cluster of the least margin first). score: 1 - margin."""
    unknown = np.isnan(np.asarray(margin, dtype=np.float64))
    margin = np.where(unknown, 0.0, margin)
    count = min(int(count), len(margin))
    if count <= 0:
        return []
    cluster = kmeans(unit_rows(z), min(max(count, 2), MAX_CLUSTERS), seed=seed)
    pool = np.argsort(margin, kind="stable")[:count * candidates]
    by_cluster: dict[int, list[int]] = {}
    for i in pool:  # in margin order, so each list starts with its cluster's least margin
        by_cluster.setdefault(int(cluster[i]), []).append(int(i))
    turns = sorted(by_cluster.values(), key=lambda rows: margin[rows[0]])
    picks: list[Pick] = []
    for depth in range(max(map(len, turns))):
        for rows in turns:
            if depth < len(rows) and len(picks) < count:
                i = rows[depth]
                why = "not pseudo-labeled yet" if unknown[i] else f"teacher unsure: margin {margin[i]:.2f}"
                picks.append(Pick(i, round(1 - float(margin[i]), 4), f"{why}, cluster {cluster[i]}"))
    return picks


def random_order(n: int, count: int, *, seed: int = 0) -> list[Pick]:
    """count of n rows at random, as a person picking by hand would: the baseline."""
    rows = np.random.default_rng(seed).permutation(n)[:max(0, int(count))]
    return [Pick(int(i), 0.0, "random pick (the baseline)") for i in rows]
