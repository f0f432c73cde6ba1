"""What to label first, measured (issue 25): a Fashion-MNIST project with no label at all and the
pixel embedding; N labels chosen by `stcore suggest --strategy typical`, at random, or (at one
budget) 10 per class at random, which a user cannot do without labels. Each choice is read as
the accuracy of its labels spread over the project's graph (stcore.graph, no model) on the rest
of the pool, and of a linear classifier on the embedding on the test set. Then, from the
typical labels, N more are chosen by `--strategy uncertain` (the spread labels' margins as the
teacher's), by the plain least margin, by `--strategy typical` again (the first labels now
covering their clusters), and at random, and the spread is read again.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from stcore import acquisition, api, embed, graph
from stcore.methods import align_distribution


def spread(g: graph.Graph, chosen: np.ndarray, y: np.ndarray, k: int) -> tuple[torch.Tensor, dict]:
    """The chosen nodes' true labels spread over the graph: (class distributions (n, K), accuracy on
    the other nodes, plain and aligned to the chosen labels' class mix as a run aligns them)."""
    seeds = torch.zeros(g.size, k)
    seeds[torch.from_numpy(chosen), torch.from_numpy(y[chosen])] = 1.0
    f = graph.propagate(g, seeds, torch.zeros_like(seeds))
    rest = np.ones(g.size, bool)
    rest[chosen] = False
    truth = torch.from_numpy(y[rest])
    mix = torch.bincount(torch.from_numpy(y[chosen]), minlength=k).float() / len(chosen)
    aligned = align_distribution(f[rest], f[rest].mean(0), mix)
    return f, {"spread": float((f[rest].argmax(1) == truth).float().mean()),
               "spread_aligned": float((aligned.argmax(1) == truth).float().mean())}


def linear(z_train: torch.Tensor, y_train: np.ndarray, z_test: torch.Tensor, y_test: np.ndarray, k: int,
           steps: int = 300) -> float:
    """Test accuracy of a logistic regression on the embedding, fitted on the chosen labels: a second
    reader of the same labels, not the project's teacher (on whitened pixels it is a weak one:
    weight decay 0.1 was the best of 0.001, 0.01, 0.1 on 100 random labels)."""
    torch.manual_seed(0)
    mean, std = z_train.mean(0), z_train.std(0).clamp_min(1e-6)
    model = torch.nn.Linear(z_train.shape[1], k)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=0.1)
    yt = torch.from_numpy(y_train)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model((z_train - mean) / std), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((model((z_test - mean) / std).argmax(1).numpy() == y_test).mean())


def per_class(y: np.ndarray, n: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(y == c), n // k, replace=False) for c in range(k)])


def stats(values: list[float]) -> dict:
    return {"mean": round(statistics.mean(values), 4), "std": round(statistics.pstdev(values), 4),
            "min": round(min(values), 4), "max": round(max(values), 4), "n": len(values)}


def bench_cold_start(workdir: Path, *, seeds: list[int], budgets: list[int], per_class_at: int,
                     limit: int | None, say=print) -> dict:
    t0 = time.perf_counter()
    p = api.create_project(workdir / "cold-start", dataset="fashion-mnist", labeled=0, seed=0, limit=limit,
                           download=False)
    times = {"init_s": time.perf_counter() - t0}
    t0 = time.perf_counter()
    api.start_embedding(p, "pixels", detach=False)
    times["embed_s"] = time.perf_counter() - t0
    z_train, z_test = embed.load(p)
    ids, rows = p.store.items.pool_order()
    node = {i: j for j, i in enumerate(ids)}  # item id -> graph node
    truth = p.store.items.hidden_labels(ids)
    y = np.array([truth[i] for i in ids])
    test_ids, test_y = p.store.items.test_set()
    test_y, k = np.array(test_y), len(p.classes)
    z_pool = z_train[rows]
    t0 = time.perf_counter()
    g = graph.feature_graph(graph.features(z_pool))
    times["graph_s"] = time.perf_counter() - t0
    say(f"  {len(ids):,} pool images; embed {times['embed_s']:.1f} s, graph {times['graph_s']:.1f} s")

    results: dict[str, dict[str, list[float]]] = {}
    suggest_s: dict[str, list[float]] = {}

    def record(name: str, chosen: np.ndarray) -> torch.Tensor:
        f, acc = spread(g, chosen, y, k)
        acc["linear_test"] = linear(z_pool[chosen], y[chosen], z_test, test_y, k)
        for key, v in acc.items():
            results.setdefault(name, {}).setdefault(key, []).append(v)
        say(f"  {name}: spread {100 * acc['spread']:.1f}%  aligned {100 * acc['spread_aligned']:.1f}%  "
            f"linear {100 * acc['linear_test']:.1f}%")
        return f

    def suggested(n: int, strategy: str, seed: int) -> np.ndarray:
        out = api.suggest(p, n, strategy, seed=seed)
        suggest_s.setdefault(f"{strategy}_{n}", []).append(out["seconds"])
        return np.array([node[i["id"]] for i in out["items"]])

    for seed in seeds:
        for n in budgets:
            say(f" seed {seed}, {n} labels")
            f = record(f"typical_{n}", first := suggested(n, "typical", seed))
            record(f"random_{n}", suggested(n, "random", seed))
            if n == per_class_at:
                record(f"per_class_{n}", per_class(y, n, k, seed))
            # the next n, with the spread labels as the teacher's: what `--strategy uncertain` reads
            top = f.topk(2, dim=1).values
            margin = (top[:, 0] - top[:, 1]).numpy()
            rest = np.setdiff1d(np.arange(len(y)), first)
            t = time.perf_counter()
            picks = acquisition.uncertain(z_pool[rest].numpy(), margin[rest], n, seed=seed)
            suggest_s.setdefault(f"uncertain_{n}", []).append(time.perf_counter() - t)
            record(f"then_uncertain_{n}", np.concatenate([first, rest[[q.index for q in picks]]]))
            record(f"then_margin_{n}", np.concatenate([first, rest[np.argsort(margin[rest])[:n]]]))
            labeled = np.zeros(len(y), bool)
            labeled[first] = True
            record(f"then_typical_{n}", np.concatenate([first, [q.index for q in acquisition.typical(
                z_pool.numpy(), labeled, n, seed=seed)]]))
            record(f"then_random_{n}", np.concatenate([first, np.random.default_rng(seed).choice(rest, n, replace=False)]))
    return {"pool": len(ids), "classes": k, "test": len(test_ids), "seeds": seeds, "budgets": budgets, "embedding": "pixels",
            "accuracy": {name: {key: stats(v) for key, v in acc.items()} for name, acc in results.items()},
            "suggest_s": {name: stats(v) for name, v in suggest_s.items()},
            **{key: round(v, 1) for key, v in times.items()}}
