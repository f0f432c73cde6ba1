"""Likely label errors among the human labels (the labeled set, accepted and corrected items),
and the images most similar to one.

Each human label gets the class its neighbours say, from the other labels only: the labels are
split in five folds, and each fold is read off the label propagation of the other four over a
nearest-neighbour graph of the embedding (the human labels and the pending pool, so the pool
carries the shape of the classes). A label whose out-of-fold class differs from it is a likely
error; the score is cleanlab's self-confidence, turned round: 1 minus the given class's
out-of-fold share (0 to 1, the likely errors first). On the labels a reviewer gives in the Review
page's order, hard items where a right label also disagrees with its neighbours, it ranked more
planted errors in its top 60 than the normalized margin (the strongest other class's share minus
the given class's): 18.4 against 17.1 of 20 over 7 seeds, at least 17 against 14
(benchmarks/label_issues.py --where app); reading the teacher's own probabilities as well ranked
fewer (16.7): the teacher is least sure exactly there.
"""
from __future__ import annotations

from typing import Callable

import torch

from .errors import ProjectError

MIN_LABELS = 25   # five folds of at least five labels


def label_issues(project, *, device: str = "cpu", progress: Callable[[int, int], None] | None = None) -> dict:
    """{'issues': [{'id', 'given', 'suggested', 'score', 'source'}, ...] most likely first,
    'checked': how many labels were read, 'over': the embedding (or 'pixels'), 'labels': the
    fingerprint of the labels read}."""
    from . import graph as graph_mod, neighbours
    from .data import images
    human = project.store.items.human_labels()
    if len(human) < MIN_LABELS:
        raise ProjectError(f"finding label errors needs at least {MIN_LABELS} human labels, the project has "
                           f"{len(human)}; label or review more items first")
    embedding = project.store.meta().get("embedding")
    over = embedding or "pixels"
    rows = [row for _, row, _, _ in human]
    pool = [row for row, _ in project.store.items.unreviewed_set(pseudo_labeled_only=False)]
    nodes = rows + pool
    if embedding:  # cut from the embedding's k-NN lists, found once (neighbours.py)
        g = neighbours.graph(project, nodes, device=device, progress=progress)
    else:
        g = graph_mod.feature_graph(graph_mod.features(graph_mod.embed(images(project, "train"))[nodes]), device,
                                    progress)
    names = project.classes  # one read: each is a query of the store
    k = len(names)
    given = torch.tensor([label for _, _, label, _ in human], dtype=torch.long)
    f = graph_mod.out_of_fold(g, len(rows), given, torch.ones(len(rows)), k, None, 0.0)
    own = f[torch.arange(len(rows)), given]
    other = f.scatter(1, given[:, None], -1.0).max(1)
    issues = [{"id": int(item), "given": names[int(c)], "suggested": names[int(s)],
               "score": round(float(1 - p), 4), "source": source}
              for (item, _, c, source), p, o, s in zip(human, own, other.values, other.indices) if o > p]
    issues.sort(key=lambda i: -i["score"])
    return {"issues": issues, "checked": len(rows), "over": over, "labels": project.store.items.human_labels_digest()}


def similar(project, item_id: int, k: int = 12) -> dict:
    """The k labeled or pool images nearest to item_id in the project's embedding (cosine
    similarity of the centred rows, as the graph reads them), most similar first."""
    from . import neighbours
    found = project.store.items.train_items(ids=[item_id])
    if not found:
        raise ProjectError(f"no labeled or pool item has the id {item_id}; ids are in `stcore export` and on "
                           f"each Review card")
    top = neighbours.nearest(project, found[0][1], k)
    if top is None:
        raise ProjectError(f"similar images are read off the embedding, and the project has none; run "
                           f"`stcore embed {project.path}` first")
    rows, sims = top[0].tolist(), top[1].tolist()
    items = {r[1]: r for r in project.store.items.train_items(rows=rows)}
    classes = project.classes
    return {"id": item_id, "over": project.store.meta().get("embedding"), "neighbours": [
        {"id": items[r][0], "similarity": round(float(s), 4),
         "label": classes[items[r][3]] if items[r][3] is not None else None, "status": items[r][4]}
        for r, s in zip(rows, sims) if r in items]}


def duplicates(project, *, threshold: float = 0.98, device: str = "cpu",
               progress: Callable[[int, int], None] | None = None) -> dict:
    """Pairs of near-identical images among every split (labeled, pool and test: a test image
    that is also a training image inflates the test accuracy), by the cosine similarity of
    their embedding rows (the pixels when the project has no embedding); most similar first."""
    from . import embed, graph as graph_mod
    from .data import images
    z = embed.load(project)
    if z is None:
        train, test = images(project, "train"), images(project, "test")
        both = graph_mod.embed(torch.cat([train, test]) if len(test) else train)
        z = both[:len(train)], both[len(train):]
    over = project.store.meta().get("embedding") or "pixels"
    n_train = len(z[0])
    feats = graph_mod.features(torch.cat(z))
    if str(device).startswith("cuda"):
        feats = feats.to(device)
    idx, sim = graph_mod.knn(feats, k=5, progress=progress)
    idx, sim = idx.cpu(), sim.cpu()
    a, nb = (sim >= threshold).nonzero(as_tuple=True)
    b = idx[a, nb]
    keep = a < b  # each pair once
    a, b, s = a[keep].tolist(), b[keep].tolist(), sim[a[keep], nb[keep]].tolist()
    train_ids = {row: (item, split) for item, row, split, *_ in
                 project.store.items.train_items(rows=[r for r in a + b if r < n_train])}
    test_ids, _ = project.store.items.test_set()

    def item(r: int) -> dict:
        item_id, split = train_ids.get(r, (None, None)) if r < n_train else (test_ids[r - n_train], "test")
        return {"id": item_id, "split": split}
    pairs = [{"a": item(i), "b": item(j), "similarity": round(v, 4)} for i, j, v in zip(a, b, s)]
    pairs.sort(key=lambda p: -p["similarity"])
    return {"pairs": pairs, "threshold": threshold, "over": over, "images": len(feats)}
