"""The nearest-neighbour graph past the exact search: `python -m benchmarks.run --only graph`.

Fashion-MNIST's 70,000 images repeated, each copy shifted by up to 2 pixels, to n images (a
million by default), embedded as labelprop does (square-rooted pixels, PCA to 128 dimensions).
A child process then builds the graph with the approximate search (graph.approximate_knn) and
the normalized affinity, so its peak memory is the graph's alone (with the embedding it reads),
and measures recall@10 against the exact search for 1,000 random rows.

`python -m benchmarks.graph --compare N` also times the candidates at N images: faiss's IVF
(the one stcore uses) at two probe counts, faiss's HNSW, hnswlib's HNSW and pynndescent's
NN-descent (each where installed), and writes them to benchmarks/graph_compare_N.json.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

QUERIES = 1_000


def images(n: int, seed: int = 0) -> torch.Tensor:
    """n uint8 Fashion-MNIST images: the 70,000 of the dataset, then copies shifted by -2..2 pixels."""
    from stcore.sources import load
    a = load("fashion-mnist", download=False)
    x = torch.cat([a.train_x, a.test_x])
    g = torch.Generator().manual_seed(seed)
    parts, have = [], 0
    while have < n:
        dy, dx = (torch.randint(-2, 3, (2,), generator=g).tolist() if parts else (0, 0))
        parts.append(torch.roll(x, shifts=(dy, dx), dims=(2, 3))[:n - have])
        have += len(parts[-1])
    return torch.cat(parts)


def exact_neighbours(z: torch.Tensor, rows: np.ndarray, k: int = 10) -> np.ndarray:
    """The exact k nearest neighbours (itself excluded) of some rows of unit rows z, 100 at a time."""
    out = []
    for part in np.array_split(rows, max(1, len(rows) // 100)):
        s = z[torch.from_numpy(part)] @ z.T
        s[torch.arange(len(part)), torch.from_numpy(part)] = -float("inf")
        out.append(s.topk(k, dim=1).indices.numpy())
    return np.concatenate(out)


def recall_at(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / exact.shape[1] for a, b in zip(found, exact)]))


def child(npy: str) -> dict:
    """In its own process: build the approximate graph of the embedding in npy; time, memory, recall."""
    from stcore import graph as G
    torch.set_num_threads(torch.get_num_threads())
    z = torch.from_numpy(np.load(npy).astype(np.float32))
    t0 = time.perf_counter()
    idx, sim = G.knn(z, approximate=True)
    knn_s = time.perf_counter() - t0
    g = G.build(idx, sim)
    build_s = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rows = np.random.default_rng(0).choice(len(z), min(QUERIES, len(z)), replace=False)
    recall = recall_at(idx[torch.from_numpy(rows)].numpy(), exact_neighbours(z, rows))
    return {"n": len(z), "knn_s": round(knn_s, 1), "build_s": round(build_s, 1), "edges": int(g.matrix._nnz()),
            "peak_rss_gb": round(peak / 2 ** 30, 2), "recall_at_10": round(recall, 3)}


def bench_graph(n: int = 1_000_000, *, say=print) -> dict:
    from stcore import graph as G
    t0 = time.perf_counter()
    z = G.embed(images(n))
    say(f"  graph: {n:,} images embedded in {time.perf_counter() - t0:.0f} s")
    with tempfile.TemporaryDirectory() as d:
        npy = Path(d) / "z.npy"
        np.save(npy, z.numpy().astype(np.float16))
        del z
        r = subprocess.run([sys.executable, "-m", "benchmarks.graph", "--child", str(npy)], capture_output=True,
                           text=True, cwd=Path(__file__).resolve().parents[1])
    if r.returncode != 0:
        raise RuntimeError(f"the graph child failed: {r.stderr.strip().splitlines()[-1:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    say(f"  graph: {out['n']:,} nodes in {out['build_s']} s (k-NN {out['knn_s']} s), peak {out['peak_rss_gb']} GB, "
        f"recall@10 {out['recall_at_10']}")
    return out


def compare(n: int) -> list[dict]:
    """Build and query time and recall@10 of each candidate index on the same n embedded images."""
    from stcore import graph as G
    z = G.embed(images(n))
    x = np.ascontiguousarray(z.numpy())
    rows = np.random.default_rng(0).choice(n, QUERIES, replace=False)
    exact = exact_neighbours(z, rows)
    out = []

    def keep(found: np.ndarray) -> np.ndarray:
        return np.array([[j for j in f if j != r][:10] for r, f in zip(rows, found)])
    for probes in (8, 16):
        t = time.perf_counter()
        idx, _ = G.approximate_knn(z, 10, probes=probes)
        out.append({"index": f"faiss IVF, {probes} probes", "seconds": round(time.perf_counter() - t, 1),
                    "recall_at_10": round(recall_at(idx[torch.from_numpy(rows)].numpy(), exact), 3)})
    try:
        import faiss
        t = time.perf_counter()
        index = faiss.IndexHNSWFlat(x.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction, index.hnsw.efSearch = 40, 48
        index.add(x)
        _, found = index.search(x, 11)
        out.append({"index": "faiss HNSW (M 16)", "seconds": round(time.perf_counter() - t, 1),
                    "recall_at_10": round(recall_at(keep(found[rows]), exact), 3)})
    except ImportError:
        pass
    try:
        import hnswlib
        t = time.perf_counter()
        index = hnswlib.Index(space="ip", dim=x.shape[1])
        index.init_index(max_elements=n, ef_construction=40, M=16)
        index.add_items(x)
        index.set_ef(48)
        found, _ = index.knn_query(x, k=11)
        out.append({"index": "hnswlib HNSW (M 16)", "seconds": round(time.perf_counter() - t, 1),
                    "recall_at_10": round(recall_at(keep(found[rows]), exact), 3)})
    except ImportError:
        pass
    try:
        import pynndescent
        t = time.perf_counter()
        # Its numba code compiles on the first call in a process: timed too, as a user meets it.
        found, _ = pynndescent.NNDescent(x, metric="dot", n_neighbors=11, random_state=0, n_jobs=-1,
                                         low_memory=True).neighbor_graph
        out.append({"index": "pynndescent NN-descent (11 neighbours)", "seconds": round(time.perf_counter() - t, 1),
                    "recall_at_10": round(recall_at(keep(found[rows]), exact), 3)})
    except ImportError:
        pass
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child(sys.argv[2])))
    elif sys.argv[1:2] == ["--compare"]:
        from .common import machine, now_iso
        found = {"n": int(sys.argv[2]), "date": now_iso(), "machine": machine("cpu"), "k": 10, "queries": QUERIES,
                 "candidates": compare(int(sys.argv[2]))}
        text = json.dumps(found, indent=1)
        (Path(__file__).resolve().parent / f"graph_compare_{sys.argv[2]}.json").write_text(text + "\n")
        print(text)
    else:
        print(json.dumps(bench_graph(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000), indent=1))
