"""What the embedding shows: similar images, likely label errors, near-duplicates and the map."""
from __future__ import annotations


from ..errors import ProjectError, UsageError
from ..project import Project


def similar(project: Project, item_id: int, k: int = 12) -> dict:
    """{'id', 'over', 'neighbours': [{'id', 'similarity', 'label', 'status'}, ...]}: the k images
    nearest to a labeled or pool item in the project's embedding, most similar first. A lookup
    of a few tens of milliseconds at 60,000 images, so it runs here, not in a worker."""
    from ..quality import similar as nearest
    if k < 1:
        raise UsageError(f"--k must be at least 1, not {k}")
    return nearest(project, int(item_id), k)


def label_issues(project: Project) -> dict | None:
    """The latest finished label-issues ranking ({'issues', 'checked', 'over'}) with its run id
    and whether the human labels changed since ('stale'), or None."""
    done = [r for r in project.store.runs.list("label-issues") if r["state"] == "finished" and r["result"]]
    if not done:
        return None
    result = done[-1]["result"]
    return {**result, "run": done[-1]["id"], "stale": project.store.items.human_labels_digest() != result["labels"]}


MAP_POINTS = 100_000  # the Map page draws at most this many points (a fixed random sample above)


def map_points(project: Project, *, limit: int = MAP_POINTS, seed: int = 0) -> dict | None:
    """The map's points as columns ('id', 'x', 'y', 'split', 'pred', 'confidence', 'status',
    'label': the human or decided class, 'truth': the hidden class where known), with
    'method', 'embedding', 'stale' (the embedding changed since), 'total' and 'shown' (a fixed
    random sample of limit points above limit); None when the project has no map yet."""
    import numpy as np
    from ..projection import load
    found = load(project)
    if found is None:
        return None
    xy, meta = found
    items = project.store.items.map_items()
    if len(items) != len(xy):
        return {**meta, "stale": True, "total": len(items), "shown": 0, **{k: [] for k in MAP_COLUMNS}}
    keep = np.arange(len(items))
    if len(items) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(items), limit, replace=False))
    cols = {name: [items[i][k] for i in keep] for k, name in enumerate(("id", "row", "split", "pred", "confidence",
                                                                      "status", "label", "truth"))}
    rows = np.asarray(cols.pop("row"), dtype=np.int64)
    return {**meta, "total": len(items), "shown": len(keep), "x": xy[rows, 0].tolist(), "y": xy[rows, 1].tolist(),
            **cols}


MAP_COLUMNS = ("id", "x", "y", "split", "pred", "confidence", "status", "label", "truth")


def duplicates(project: Project) -> dict | None:
    """The latest finished duplicates search ({'pairs', 'threshold', 'over', 'images'}) with its
    run id, or None."""
    done = [r for r in project.store.runs.list("duplicates") if r["state"] == "finished" and r["result"]]
    return {**done[-1]["result"], "run": done[-1]["id"]} if done else None


def labels_digest(project: Project) -> str:
    """A fingerprint of the human labels (which items, which classes): a cache key for what is
    computed from them."""
    return project.store.items.human_labels_digest()


def label_curve(project: Project, *, seed: int = 0) -> dict:
    """What more labels would buy (labelvalue.py): {'points': [{'n_labels', 'accuracy', 'spread'}]
    (accuracy out of fold against labels trained on), 'extrapolation' (the fitted curve to 100
    labels on), 'labels', 'accuracy_now', 'gain' (of the next 100, a fraction), 'fit', 'over'
    (the embedding, or 'pixels'), 'basis' (a sentence: what the estimate rests on)}. When the
    labels are too few for an estimate, 'gain' is None, with 'reason' and 'needed' (labels
    still to label; 0 when a second class is what is missing). Milliseconds for a few hundred
    labels at any pool size: only the human labels' embedding rows are read."""
    import numpy as np
    from .. import labelvalue as lv
    human = project.store.items.human_labels()
    y = np.array([label for _, _, label, _ in human], dtype=np.int64)
    if reason := lv.unreliable(y):
        return {"gain": None, "reason": reason, "labels": len(y), "needed": max(0, lv.MIN_LABELS - len(y))}
    z, over = _label_rows(project, [row for _, row, _, _ in human])
    got = lv.value_of_labels(z, y, seed=seed)
    if "reason" in got:
        return {"gain": None, "reason": got["reason"], "labels": len(y), "needed": 0}
    pool = sum(1 for *_, kind in human if kind != "labeled")
    basis = (f"Out of fold on the {len(y):,} human labels ({lv.FOLDS} folds, {lv.REPEATS} random splits, random "
             f"subsets of each training part): each held-out label takes the class of its most similar training "
             f"label in the {over} embedding. The gain of the next {lv.NEXT} comes from a power law "
             f"(accuracy = a − b·n^−c) fitted to these points, for labels picked as these were. It measures that "
             f"simple learner, not the teacher, which usually scores higher.")
    if pool:
        basis += (f" {pool:,} of the labels are reviewed pool items, which the model found easier than most: "
                  f"the accuracy reads high.")
    if len(y) < 100:
        basis += " With fewer than 100 labels the curve is noisy: read the gain as rough."
    return {**got, "over": over, "basis": basis, "labels_digest": labels_digest(project)}


def _label_rows(project: Project, rows: list[int]):
    """(embedding rows (n, d) of the image rows, float32; the embedding's name): the project's
    embedding, memory-mapped so only these rows are read; else the pixels of these images."""
    import numpy as np
    name = project.store.meta().get("embedding")
    if name:
        from ..embed import paths
        npy, _ = paths(project, name)
        if not npy.exists():
            raise ProjectError(f"the embedding {name} is missing from {npy.parent}; run `stcore embed "
                               f"{project.path} --backbone {name}` again")
        return np.asarray(np.load(npy, mmap_mode="r")[rows], dtype=np.float32), name
    import torch.nn.functional as F
    from ..data import images
    from ..graph import MAX_SIDE
    # the square roots of the pixels, as graph.embed reads them (its PCA, fitted on a few hundred
    # images, took seconds and changes little for a nearest neighbour)
    x = images(project, "train")[rows].float().div_(255)
    if max(x.shape[-2:]) > MAX_SIDE:
        x = F.adaptive_avg_pool2d(x, (min(x.shape[-2], MAX_SIDE), min(x.shape[-1], MAX_SIDE)))
    return x.sqrt_().flatten(1).numpy(), "pixels"
