"""The map: a 2-D projection of the project's embedding (its labeled set and pool), for the
Map page to draw and select from.

UMAP (umap-learn) lays the points out from the same cosine k-NN graph the label propagation
reads (found here, exactly, with progress), where the pool fits the exact neighbour search;
above that, or when asked, the first two principal components. A map is computed once per
embedding, in a worker, and kept as P/map/layout.npy (float16, one row per training image,
in the image cache's order) with layout.json (the embedding it was made from, the method, rows,
seconds). Reading a map needs numpy only.
"""
from __future__ import annotations

import json
import time
import warnings
from typing import Callable

import numpy as np

from .errors import ConfigError, ProjectError

METHODS = ("auto", "umap", "pca")
UMAP_MAX = 200_000     # graph.EXACT_MAX: UMAP reads the exact k-NN; PCA above it (UMAP's layout alone
                       # would take over ten minutes at a million points on 2 cores)
NEIGHBOURS = 15        # UMAP's default, the point itself included
Progress = Callable[[int, int], None]


def choose(method: str, n: int) -> str:
    """The method a map of n points uses: 'auto' is UMAP up to UMAP_MAX points, else PCA."""
    if method not in METHODS:
        raise ConfigError(f"unknown map method {method!r}; use one of {', '.join(METHODS)}")
    if method == "auto":
        return "umap" if n <= UMAP_MAX else "pca"
    if method == "umap" and n > UMAP_MAX:
        raise ConfigError(f"UMAP maps at most {UMAP_MAX:,} points here (its neighbours are found exactly), "
                          f"the project has {n:,}; use --method pca")
    return method


def pca(feats) -> np.ndarray:
    """The first two principal components of feature rows (N, d), a tensor."""
    import torch
    x = feats - feats.mean(0, keepdim=True)
    _, _, v = torch.pca_lowrank(x, q=2, center=False, niter=4)
    return (x @ v[:, :2]).numpy()


def umap_layout(feats, seed: int = 0, progress: Progress | None = None) -> np.ndarray:
    """UMAP of unit feature rows (N, d), a tensor, from their exact cosine k-NN (progress follows
    that search; the layout itself reports nothing until it ends)."""
    import torch
    from . import graph
    try:
        import umap
    except ImportError as e:  # a broken install: say which package
        raise ProjectError(f"the UMAP map needs umap-learn ({e}); `pip install umap-learn`, or use --method pca")
    n = len(feats)
    idx, sim = graph.knn(feats, k=min(NEIGHBOURS - 1, n - 1), progress=progress)
    # UMAP reads each point as its own first neighbour, at distance 0.
    knn_idx = torch.cat([torch.arange(n)[:, None], idx], 1).numpy().astype(np.int32)
    knn_dist = torch.cat([torch.zeros(n, 1), (1 - sim).clamp_min(0)], 1).numpy().astype(np.float32)
    with warnings.catch_warnings():  # it warns that a seed makes it single-threaded, and that no index is kept
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(n_components=2, n_neighbors=knn_idx.shape[1], metric="cosine", random_state=seed,
                            precomputed_knn=(knn_idx, knn_dist, None))
        return reducer.fit_transform(feats.numpy())


def compute(project, method: str = "auto", *, seed: int = 0, progress: Progress | None = None) -> dict:
    """Project the current embedding (the pixels when there is none) to 2-D and save it; returns
    layout.json's content."""
    from . import embed, graph
    from .data import images
    z = embed.load(project)
    over = project.store.meta().get("embedding") if z is not None else "pixels"
    train = z[0] if z is not None else graph.embed(images(project, "train"))
    used = choose(method, len(train))
    if len(train) <= NEIGHBOURS:  # too few points for a neighbour layout
        used = "pca"
    started = time.time()
    feats = graph.features(train)
    xy = umap_layout(feats, seed, progress) if used == "umap" else pca(feats)
    if used == "pca" and progress:
        progress(len(feats), len(feats))
    meta = {"embedding": over, "method": used, "rows": len(xy), "seed": seed,
            "seconds": round(time.time() - started, 1), "created": time.time()}
    d = project.path / "map"
    d.mkdir(exist_ok=True)
    tmp = d / "layout.npy.tmp"
    with open(tmp, "wb") as fh:
        np.save(fh, xy.astype(np.float16))
    meta_tmp = d / "layout.json.tmp"
    meta_tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(d / "layout.npy")
    meta_tmp.replace(d / "layout.json")
    return meta


def load(project) -> tuple[np.ndarray, dict] | None:
    """(coordinates (N, 2) float32 in image-row order, layout.json with 'stale') of the
    project's map, or None."""
    d = project.path / "map"
    if not (d / "layout.npy").exists() or not (d / "layout.json").exists():
        return None
    meta = json.loads((d / "layout.json").read_text())
    xy = np.load(d / "layout.npy").astype(np.float32)
    if len(xy) != meta["rows"]:
        raise ProjectError(f"the map {d / 'layout.npy'} has {len(xy)} rows, not {meta['rows']}; compute it again "
                           f"with `stcore map {project.path}`")
    current = project.store.meta().get("embedding") or "pixels"
    return xy, {**meta, "stale": meta["embedding"] != current}
