"""Label propagation over a nearest-neighbour graph of the images, in plain functions.

The graph is built from the pixels (square-rooted, PCA-whitened, cosine similarity), not from a
network's features, so it is a second view of the data that does not share the network's
mistakes. The labeled images (and every human review) are the seeds; the model's probabilities
are a weak prior on the other nodes; propagation spreads the seeds' labels along the graph
(Zhou et al., "Learning with Local and Global Consistency", 2004). On Fashion-MNIST with 10
labels per class this lifts pseudo-label accuracy from about 70% (the teacher alone) to about
79%, and to 80% once the labels are aligned to the labeled class mix (train.propagated_labels).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .methods import align_distribution

EXACT_MAX = 200_000   # the exact k-NN search is quadratic: above this many nodes, faiss's IVF index
IVF_PROBES = 8        # lists searched per query: recall@10 0.94 at 1M Fashion-MNIST images (benchmarks/graph.py)
MAX_SIDE = 32         # larger images are average-pooled to 32 x 32 pixels first
NEIGHBOURS = 10
DIMS = 128            # PCA components of the pixel embedding
ALPHA = 0.9           # how far labels spread (0: not at all; near 1: far)
ITERATIONS = 20
POWER = 3             # edge weight = similarity ** POWER: near neighbours count much more
PRIOR_WEIGHT = {"teacher": 0.2, "student": 0.5}  # a model's probabilities against a label's 1


@dataclass
class Graph:
    """A symmetric, degree-normalized sparse affinity matrix over n nodes."""
    matrix: torch.Tensor  # sparse (n, n)

    @property
    def size(self) -> int:
        return self.matrix.shape[0]


def embed(images: torch.Tensor, dims: int = DIMS, *, sample: int = 20_000, seed: int = 0,
          chunk: int = 8192) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> unit rows (N, d): the square roots of the pixels (which
    evens out the weight of bright and faint parts) projected on their top d principal
    components (fitted on a random sample of at most `sample` images), whitened. Images larger
    than MAX_SIDE are average-pooled down to it, and converted a chunk at a time, so memory
    stays near the N x d result."""
    return project(images, *fit_projection(images, dims, sample=sample, seed=seed, chunk=chunk), chunk=chunk)


def pixel_rows(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] (N, C, H, W) -> the square roots of their pixels (N, C*h*w), pooled to MAX_SIDE."""
    if max(x.shape[-2:]) > MAX_SIDE:
        x = F.adaptive_avg_pool2d(x, (min(x.shape[-2], MAX_SIDE), min(x.shape[-1], MAX_SIDE)))
    return x.sqrt().flatten(1)


def fit_projection(images: torch.Tensor, dims: int = DIMS, *, sample: int = 20_000, seed: int = 0,
                   chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (P,), whitening projection (P, d)) of the pixel rows of uint8 images (see embed)."""
    n = len(images)
    rows = lambda part: pixel_rows(part.float().div_(255))
    mean = sum(rows(images[i:i + chunk]).sum(0) for i in range(0, n, chunk)) / n
    g = torch.Generator().manual_seed(seed)
    fit_on = rows(images[torch.randperm(n, generator=g)[:sample]]) - mean
    d = max(1, min(dims, fit_on.shape[0] - 1, fit_on.shape[1]))
    with torch.random.fork_rng(devices=[]):  # pca_lowrank draws from the global generator: keep runs repeatable
        torch.manual_seed(seed)
        _, s, v = torch.pca_lowrank(fit_on, q=d, center=False, niter=3)
    return mean, v / s.clamp_min(1e-6)


def project(images: torch.Tensor, mean: torch.Tensor, proj: torch.Tensor, *, chunk: int = 8192) -> torch.Tensor:
    """uint8 images -> unit rows, with a fitted projection (fit_projection)."""
    return torch.cat([F.normalize((pixel_rows(images[i:i + chunk].float().div_(255)) - mean) @ proj, dim=1)
                      for i in range(0, len(images), chunk)])


def knn(z: torch.Tensor, k: int = NEIGHBOURS, *, chunk: int | None = None, approximate: bool | None = None,
        progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest neighbours of each row of z (unit rows) by cosine similarity, itself
    excluded: (indices (N, k), similarities (N, k)). Exact up to EXACT_MAX rows (or unless
    approximate): a chunk of rows at a time is compared with all of z; by default chunks hold
    about 64M similarities (256 MB). Above it, approximate (approximate_knn: a row with fewer
    than k neighbours found has its own index, at similarity 0, in the empty slots). progress(rows done, N)."""
    if approximate or (approximate is None and len(z) > EXACT_MAX):
        idx, sim = approximate_knn(z.cpu(), k, progress=progress)
        return idx.to(z.device), sim.to(z.device)
    k = min(k, len(z) - 1)
    chunk = chunk or max(1, 2 ** 26 // len(z))
    idx, sim = [], []
    for start in range(0, len(z), chunk):
        s = z[start:start + chunk] @ z.T
        rows = torch.arange(s.shape[0], device=s.device)
        s[rows, rows + start] = -float("inf")
        v, j = s.topk(k, dim=1)
        idx.append(j)
        sim.append(v)
        if progress:
            progress(min(start + chunk, len(z)), len(z))
    return torch.cat(idx), torch.cat(sim)


def approximate_knn(z: torch.Tensor, k: int = NEIGHBOURS, *, probes: int = IVF_PROBES, seed: int = 0,
                    progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Approximate k nearest neighbours of unit rows z (N, d) on the CPU, as knn returns them:
    faiss's inverted-file index (IndexIVFFlat, inner product, 4 sqrt(N) lists trained on a
    sample, `probes` lists searched per query). Chosen over HNSW (faiss, hnswlib) by
    benchmarks/graph.py: at 1M images it is built and searched in ~110 s on 2 cores."""
    try:
        import faiss
    except ImportError as e:
        raise ImportError(f"a graph of {len(z):,} images needs faiss for its approximate neighbour search ({e}); "
                          f"`pip install faiss-cpu`") from e
    import numpy as np
    faiss.omp_set_num_threads(torch.get_num_threads())
    x = np.ascontiguousarray(z.float().numpy())
    n, d = x.shape
    k = min(k, n - 1)
    lists = max(1, min(int(4 * n ** 0.5), n // 39))  # faiss wants about 39 training rows a list
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, lists, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(seed).choice(n, min(n, 64 * lists), replace=False)
    index.train(x[np.sort(sample)])
    index.add(x)
    index.nprobe = min(probes, lists)
    idx, sim = [], []
    step = 65_536
    for start in range(0, n, step):
        s, i = index.search(x[start:start + step], k + 1)
        own = i == np.arange(start, start + len(i))[:, None]
        # drop itself (or the last neighbour when it was not found): k left per row
        keep = np.where(own.any(1, keepdims=True), ~own, np.arange(k + 1)[None, :] < k)
        idx.append(torch.from_numpy(i[keep].reshape(len(i), k)))
        sim.append(torch.from_numpy(s[keep].reshape(len(i), k)))
        if progress:
            progress(min(start + step, n), n)
    # a list with fewer than k + 1 rows leaves -1 slots: point them at the row itself, weight 0
    idx, sim = torch.cat(idx).long(), torch.cat(sim).float()
    missing = idx < 0
    idx[missing] = torch.arange(n).unsqueeze(1).expand(-1, k)[missing]
    sim[missing] = 0.0
    return idx, sim


def build(idx: torch.Tensor, sim: torch.Tensor, power: int = POWER) -> Graph:
    """The normalized affinity D^-1/2 W D^-1/2 of the symmetrized k-NN graph."""
    n, k = idx.shape
    return from_edges(torch.arange(n).repeat_interleave(k), idx.flatten(), sim.flatten(), n, power)


def from_edges(rows: torch.Tensor, cols: torch.Tensor, sim: torch.Tensor, n: int, power: int = POWER) -> Graph:
    """The normalized affinity of the symmetrized graph of edges rows[e] -> cols[e] at similarity sim[e]."""
    w = sim.float().clamp_min(0) ** power
    W = torch.sparse_coo_tensor(torch.stack([rows, cols]), w, (n, n), check_invariants=False)
    W = (W + W.t()).coalesce()
    i = W.indices()
    deg = torch.zeros(n).index_add_(0, i[0], W.values()).clamp_min(1e-12)
    m = torch.sparse_coo_tensor(i, W.values() / (deg[i[0]] * deg[i[1]]).sqrt(), (n, n), check_invariants=False)
    with warnings.catch_warnings():  # "CSR support is in beta": sparse-dense products are all it is used for
        warnings.simplefilter("ignore", UserWarning)
        return Graph(m.coalesce().to_sparse_csr())


def restricted(idx: torch.Tensor, sim: torch.Tensor, nodes: torch.Tensor, power: int = POWER) -> Graph:
    """The graph over nodes (rows of the k-NN lists idx, sim (N, k), in node order) cut from those
    lists: a node links to those of its row's neighbours that are nodes too (to a neighbour's
    first node), and a row's second node to its first at similarity 1 (a reviewed pool image is
    both a seed and a pool node)."""
    nodes_np = nodes.numpy()
    n, k = len(nodes_np), idx.shape[1]
    first = np.full(len(idx), -1, dtype=np.int64)
    rows_seen, at = np.unique(nodes_np, return_index=True)
    first[rows_seen] = at
    near = first[idx.numpy()[nodes_np]]
    keep = near >= 0
    src = np.repeat(np.arange(n), k).reshape(n, k)[keep]
    dst, s = near[keep], sim.numpy()[nodes_np][keep]
    again = np.flatnonzero(first[nodes_np] != np.arange(n))
    src, dst = np.concatenate([src, again]), np.concatenate([dst, first[nodes_np[again]]])
    s = np.concatenate([s.astype(np.float32), np.ones(len(again), np.float32)])
    return from_edges(torch.from_numpy(src), torch.from_numpy(dst), torch.from_numpy(s), n, power)


def buildable(n: int) -> bool:
    """Whether a graph of n nodes is built: at least 3 (any number above; approximate past EXACT_MAX)."""
    return n >= 3


def pixel_graph(images: torch.Tensor, device: str = "cpu",
                progress: Callable[[int, int], None] | None = None) -> Graph | None:
    """The graph of uint8 images (N, C, H, W), or None when there are fewer than 3."""
    if not buildable(len(images)):
        return None
    return feature_graph(embed(images), device, progress)


def features(z: torch.Tensor) -> torch.Tensor:
    """Unit rows for the cosine k-NN graph from a learned embedding (N, d): centred, normalized."""
    return F.normalize(z - z.mean(0, keepdim=True), dim=1)


def feature_graph(z: torch.Tensor, device: str = "cpu",
                  progress: Callable[[int, int], None] | None = None) -> Graph | None:
    """The graph of unit feature rows z (N, d), or None when there are fewer than 3. On a CUDA
    device an exact neighbour search (the quadratic part) runs there. progress(rows, N)
    follows the neighbour search."""
    if not buildable(len(z)):
        return None
    if str(device).startswith("cuda") and len(z) <= EXACT_MAX:
        idx, sim = knn(z.to(device), progress=progress)
        return build(idx.cpu(), sim.cpu())
    return build(*knn(z, progress=progress))


def propagate(graph: Graph, seeds: torch.Tensor, prior: torch.Tensor, *, alpha: float = ALPHA,
              iterations: int = ITERATIONS) -> torch.Tensor:
    """Class distributions (n, K) after spreading seeds (n, K) along the graph. Seed rows are
    one-hot labels (scaled by the label's weight); other rows hold a prior (the model's
    probabilities, scaled down so that it counts less than a label) or zeros.
    F <- alpha * S F + (1 - alpha) * (seeds + prior), then rows are normalized. seeds + prior
    may also be (n, B, K): B propagations in one pass over the graph (each row normalized per B)."""
    y = seeds + prior
    shape = y.shape
    y = y.reshape(shape[0], -1).contiguous()
    f = y.clone()
    for _ in range(iterations):
        f = torch.addmm(y, graph.matrix, f, beta=1 - alpha, alpha=alpha)
    f = f.clamp_min(0).reshape(shape)
    total = f.sum(-1, keepdim=True)
    uniform = torch.full_like(f, 1.0 / f.shape[-1])
    return torch.where(total > 0, f / total.clamp_min(1e-12), uniform)


def spread_labels(g: Graph, n_seeds: int, labels: torch.Tensor, weights: torch.Tensor, k: int,
                  probs: torch.Tensor | None, prior_weight: float, p_target: torch.Tensor | None) -> torch.Tensor:
    """Labels (n_other, K) of the graph's nodes after the first n_seeds (whose class labels and
    weights seed it): the seeds spread along the graph, with probs (n_other, K) * prior_weight
    as the prior of the other nodes, then, unless p_target is None, aligned to the class mix
    p_target (K,): propagation favours classes whose images crowd together."""
    seeds = torch.zeros(g.size, k)
    seeds[torch.arange(n_seeds), labels.cpu()] = weights.float().cpu()
    prior = torch.zeros(g.size, k)
    if probs is not None:
        prior[n_seeds:] = prior_weight * probs.float().cpu()
    f = propagate(g, seeds, prior)[n_seeds:]
    return f if p_target is None else align_distribution(f, f.mean(0), p_target.float().cpu())


def out_of_fold(g: Graph, n_seeds: int, labels: torch.Tensor, weights: torch.Tensor, k: int,
                probs: torch.Tensor | None, prior_weight: float, p_target: torch.Tensor | None = None,
                *, folds: int = 5, seed: int = 0) -> torch.Tensor:
    """Spread labels (n_seeds, K) of the seeds themselves, each from the others only: each of
    `folds` random parts of the seeds is held out in turn while the rest spread (with probs as
    the other nodes' prior), and, unless p_target is None, aligned as the pool's labels are.
    The folds spread together, in one pass over the graph."""
    order = torch.randperm(n_seeds, generator=torch.Generator().manual_seed(seed))
    labels, weights = labels.cpu(), weights.float().cpu()
    prior = torch.zeros(g.size, 1, k)
    if probs is not None:
        prior[n_seeds:, 0] = prior_weight * probs.float().cpu()
    seeds = torch.zeros(g.size, folds, k)
    for part in range(folds):
        kept = torch.cat([order[j::folds] for j in range(folds) if j != part])
        seeds[kept, part, labels[kept]] = weights[kept]
    f = propagate(g, seeds, prior)
    out_f = torch.zeros(n_seeds, k)
    aligned = p_target is not None and g.size > n_seeds
    for part in range(folds):
        out, fp = order[part::folds], f[:, part]
        out_f[out] = align_distribution(fp[out], fp[n_seeds:].mean(0), p_target.float().cpu()) if aligned else fp[out]
    return out_f


def held_out_temperature(g: Graph, n_seeds: int, labels: torch.Tensor, weights: torch.Tensor, k: int,
                         probs: torch.Tensor | None, prior_weight: float, p_target: torch.Tensor | None = None,
                         *, folds: int = 5, seed: int = 0) -> float:
    """The temperature T that makes spread labels honest confidences: T (p ~ f ** (1/T))
    minimizes the negative log-likelihood of the seeds' own labels, spread out of fold and
    aligned as the pool's are. Propagated rows are flat (their peak is often 0.3 where 90% are
    right), so T is usually well below 1. 1.0 when there are too few seeds to hold some out."""
    if n_seeds < 5 * folds:
        return 1.0
    f = out_of_fold(g, n_seeds, labels, weights, k, probs, prior_weight, p_target, folds=folds, seed=seed)
    f, y = f.clamp_min(1e-6).log(), labels.cpu()
    temps = torch.logspace(-2.5, 0, 60)
    nll = torch.stack([-(f / t).log_softmax(1)[torch.arange(len(y)), y].mean() for t in temps])
    return float(temps[nll.argmin()])

