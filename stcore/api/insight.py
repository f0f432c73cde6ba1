"""What the embedding shows: similar images, likely label errors, near-duplicates and the map."""
from __future__ import annotations


from ..errors import UsageError
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
