"""The nearest neighbours of every image in a project's embedding, found once and kept beside it.

The label-propagation graph of a pseudo-label pass, of a labelprop student and of the label-issue
search is a k-NN graph of the embedding over some of the training images (the labeled set, the
reviews, the pool). Finding the neighbours is most of its cost (at a million images, about a
minute of faiss's IVF search on 2 cores), and they only change when the images are embedded
again. So the k-NN lists of all training rows are computed once per embedding, saved as
P/embeddings/NAME.knn.npz (stamped with the embedding file's size and time), and each graph is
cut from them: a node links to those of its image's neighbours that are nodes too.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from . import embed, graph as graph_mod

Progress = Callable[[int, int], None]


def _stamp(project, name: str) -> str:
    """What the cached lists were found from: the embedding's file and provenance, the search's settings."""
    npy, meta = embed.paths(project, name)
    st = npy.stat()
    parts = (st.st_size, st.st_mtime_ns, hashlib.sha256(meta.read_bytes()).hexdigest(), graph_mod.NEIGHBOURS,
             graph_mod.EXACT_MAX, graph_mod.IVF_PROBES)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:20]


def cache_path(project, name: str, kind: str = "knn") -> Path:
    return embed.side_path(embed.paths(project, name)[0], kind)


def _current(project) -> tuple[str, Path, Path] | None:
    """(name, rows file, provenance file) of the project's embedding, None without one; a
    missing file is a ProjectError saying what to do."""
    name = project.store.meta().get("embedding")
    if not name:
        return None
    npy, meta = embed.paths(project, name)
    if not npy.exists() or not meta.exists():
        embed.load(project)  # says which file is missing and what to do
    return name, npy, meta


def _kept(path: Path, stamp: str) -> dict | None:
    """The arrays kept in path when they were found from what stamp says, else None (a damaged
    file included: it is found again)."""
    try:
        with np.load(path) as f:
            return {k: f[k] for k in f.files} if str(f["stamp"]) == stamp else None
    except (OSError, ValueError, KeyError):
        return None


def _keep(path: Path, stamp: str, **arrays: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, stamp=np.array(stamp), **arrays)
    os.replace(tmp, path)


def of_embedding(project, *, device: str = "cpu",
                 progress: Progress | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(indices (N, k), similarities (N, k)) of the k nearest neighbours of each training row of
    the project's embedding (centred, cosine), or None without an embedding or with under 3 rows.
    Read from the cache when it is the current embedding's; else found (progress(rows, N)) and kept."""
    current = _current(project)
    if current is None:
        return None
    path, stamp = cache_path(project, current[0]), _stamp(project, current[0])
    kept = _kept(path, stamp)
    if kept is not None:
        return torch.from_numpy(kept["idx"].astype(np.int64)), torch.from_numpy(kept["sim"])
    z = embed.load(project)
    train = z[0]
    if not graph_mod.buildable(len(train)):
        return None
    feats = graph_mod.features(train)
    if str(device).startswith("cuda") and len(feats) <= graph_mod.EXACT_MAX:
        idx, sim = (t.cpu() for t in graph_mod.knn(feats.to(device), progress=progress))
    else:
        idx, sim = graph_mod.knn(feats, progress=progress)
    _keep(path, stamp, idx=idx.numpy().astype(np.int32), sim=sim.float().numpy())
    return idx, sim.float()


def graph(project, nodes: Sequence[int], *, device: str = "cpu",
          progress: Progress | None = None) -> graph_mod.Graph | None:
    """The graph over nodes (training rows of the embedding, in node order; a row may come twice)
    cut from the embedding's k-NN lists, or None without an embedding or with under 3 nodes."""
    if not graph_mod.buildable(len(nodes)):
        return None
    lists = of_embedding(project, device=device, progress=progress)
    return None if lists is None else graph_mod.restricted(*lists, torch.as_tensor(list(nodes), dtype=torch.long))


def centred(project) -> tuple[np.ndarray, torch.Tensor, torch.Tensor] | None:
    """(the training rows of the project's embedding, float16 and memory-mapped; their mean (D,);
    the length of each centred row (N,)), or None without an embedding. The mean and lengths are
    found once per embedding (one pass) and kept beside it, so a search reads the rows once."""
    current = _current(project)
    if current is None:
        return None
    name, npy, meta = current
    z = np.load(npy, mmap_mode="r")[:json.loads(meta.read_text())["rows"]["train"]]
    path, stamp = cache_path(project, name, "centre"), _stamp(project, name)
    kept = _kept(path, stamp)
    if kept is not None:
        return z, torch.from_numpy(kept["mean"]), torch.from_numpy(kept["norms"])
    total = torch.zeros(z.shape[1], dtype=torch.float64)
    for part in _chunks(z):
        total += part.sum(0, dtype=torch.float64)
    mean = (total / max(1, len(z))).float()
    norms = torch.cat([(part - mean).norm(dim=1) for part in _chunks(z)]) if len(z) else torch.zeros(0)
    _keep(path, stamp, mean=mean.numpy(), norms=norms.numpy())
    return z, mean, norms


def _chunks(z: np.ndarray, rows: int = 65_536):
    for start in range(0, len(z), rows):
        yield torch.from_numpy(np.asarray(z[start:start + rows], dtype=np.float32))


def nearest(project, row: int, k: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(rows, similarities) of the k training rows nearest to row in the project's embedding,
    most similar first, itself left out (cosine similarity of the centred rows, as the graph
    reads them), or None without an embedding; one pass over the float16 rows."""
    found = centred(project)
    if found is None:
        return None
    z, mean, norms = found
    q = torch.from_numpy(np.asarray(z[row], dtype=np.float32)) - mean
    q = q / q.norm().clamp_min(1e-12)
    offset = float(mean @ q)
    sims = torch.cat([(part @ q - offset) for part in _chunks(z)]) / norms.clamp_min(1e-12)
    sims[row] = -2.0  # not its own neighbour
    top = sims.topk(min(k, len(sims) - 1))
    return top.indices, top.values
