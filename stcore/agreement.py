"""How much reviewers agree, from their votes on the items that several of them decided (overlap):
pairwise agreement and Cohen's kappa, per-class (specific) agreement, and each reviewer's
agreement with the settled labels. Pure: plain values in, plain data out.

A vote's category is a class id, or None for "rejected" (its own category).

- Cohen's kappa of two reviewers, over the items both decided: (p_o - p_e) / (1 - p_e), where
  p_o is the share of those items they gave the same category and p_e = sum over categories of
  the product of each one's share of that category. Undefined (None) when p_e = 1: both gave
  one and the same category to every item, and agreement by chance cannot be told from any other.
- Specific agreement of a category c (Fleiss 1975; Cicchetti and Feinstein 1990): over every
  pair of votes on one item, 2 * (pairs where both said c) / (votes in pairs that said c). It
  says how often a reviewer who chose c was joined in it.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from itertools import combinations
from typing import Hashable, Iterable

Category = Hashable  # a class id, or None for rejected


def cohen_kappa(a: list[Category], b: list[Category]) -> float | None:
    """Cohen's kappa of two aligned lists of categories (None when undefined, see above)."""
    if len(a) != len(b) or not a:
        raise ValueError("kappa needs two lists of the same, non-zero length")
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    p_e = sum(ca[k] * cb.get(k, 0) for k in ca) / (n * n)
    if p_e >= 1 - 1e-12:
        return None
    return (p_o - p_e) / (1 - p_e)


def agreement(votes: Iterable[tuple[int, str, Category]], settled: dict[int, Category],
              name=lambda c: c) -> dict:
    """votes: (item, reviewer, category); settled: item -> its final category (the label a
    person made count: unanimous votes or an admin's settlement); name: a category's name.

    {'items' (with votes from two or more reviewers), 'votes', 'reviewers',
     'pairs': [{'a', 'b', 'items', 'agreement', 'kappa'}], 'overall': {'agreement', 'kappa'}
     (the pairs' values weighted by their items), 'per_class': [{'class', 'votes', 'agreement'}],
     'reviewers_vs_settled': [{'reviewer', 'items', 'agreement'}]}."""
    by_item: dict[int, dict[str, Category]] = defaultdict(dict)
    for item, reviewer, cat in votes:
        by_item[item][reviewer] = cat
    shared = {i: v for i, v in by_item.items() if len(v) >= 2}
    reviewers = sorted({r for v in by_item.values() for r in v})
    pairs = []
    for a, b in combinations(reviewers, 2):
        common = [v for v in shared.values() if a in v and b in v]
        if not common:
            continue
        x, y = [v[a] for v in common], [v[b] for v in common]
        k = cohen_kappa(x, y)
        pairs.append({"a": a, "b": b, "items": len(common),
                      "agreement": round(sum(p == q for p, q in zip(x, y)) / len(common), 4),
                      "kappa": None if k is None else round(k, 4)})
    weight = sum(p["items"] for p in pairs)
    with_kappa = [p for p in pairs if p["kappa"] is not None]
    kw = sum(p["items"] for p in with_kappa)
    overall = {"agreement": round(sum(p["agreement"] * p["items"] for p in pairs) / weight, 4) if weight else None,
               "kappa": round(sum(p["kappa"] * p["items"] for p in with_kappa) / kw, 4) if kw else None}
    both: Counter = Counter()
    said: Counter = Counter()
    for v in shared.values():
        for p, q in combinations(list(v.values()), 2):
            said[p] += 1
            said[q] += 1
            if p == q:
                both[p] += 2
    per_class = [{"class": name(c), "votes": said[c], "agreement": round(both[c] / said[c], 4)}
                 for c in sorted(said, key=lambda c: (c is None, c))]
    vs_settled = []
    for r in reviewers:
        mine = [(v[r], settled[i]) for i, v in by_item.items() if r in v and i in settled]
        if mine:
            vs_settled.append({"reviewer": r, "items": len(mine),
                               "agreement": round(sum(p == q for p, q in mine) / len(mine), 4)})
    return {"items": len(shared), "votes": sum(len(v) for v in by_item.values()), "reviewers": reviewers,
            "pairs": pairs, "overall": overall, "per_class": per_class, "reviewers_vs_settled": vs_settled}
