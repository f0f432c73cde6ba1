"""`python -m benchmarks.label_value [--seeds 0 1 2] [--start 50 100 200 400]`

Is the Project page's "what more labels would buy" honest (issue 25, part 5)? Fashion-MNIST
with the pixel embedding (graph.embed of the 60,000 training images): n random training images
are the human labels; stcore.labelvalue predicts the gain of the next 100 from them alone. The
truth: the same learner (nearest labeled neighbour) trained on those n, then on n + 100 random labels (the n and 100 more),
scored on the 10,000 test images. Prints the predicted and true gains (points) and the seconds
value_of_labels took.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from stcore import graph, labelvalue
from stcore.sources import _load_idx_dataset


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--start", type=int, nargs="+", default=[50, 100, 200, 400])
    args = ap.parse_args()
    a = _load_idx_dataset("fashion-mnist", None, False)
    z = graph.embed(torch.cat([a.train_x, a.test_x])).numpy()
    zt, zs = z[:len(a.train_y)], z[len(a.train_y):]
    y_train, y_test = a.train_y.numpy(), a.test_y.numpy()
    rows = []
    for n in args.start:
        for seed in args.seeds:
            pick = np.random.default_rng(seed).permutation(len(zt))[:n + labelvalue.NEXT]
            t = time.perf_counter()
            got = labelvalue.value_of_labels(zt[pick[:n]], y_train[pick[:n]], seed=seed)
            seconds = time.perf_counter() - t

            def test_acc(m: int) -> float:
                sim = labelvalue.prepare(np.concatenate([zt[pick[:m]], zs]))[m:, :m]  # test rows against labels
                return float((y_train[pick[:m]][sim.argmax(1)] == y_test).mean())
            true_now, true_next = test_acc(n), test_acc(n + labelvalue.NEXT)
            rows.append({"n": n, "seed": seed, "predicted_now": got["accuracy_now"], "true_now": round(true_now, 4),
                         "predicted_gain": got["gain"], "true_gain": round(true_next - true_now, 4),
                         "seconds": round(seconds, 3)})
            print(json.dumps(rows[-1]), flush=True)
    for n in args.start:
        r = [x for x in rows if x["n"] == n]
        print(f"n={n}: predicted gain {100 * np.mean([x['predicted_gain'] for x in r]):.1f} points, true "
              f"{100 * np.mean([x['true_gain'] for x in r]):.1f}; accuracy now predicted "
              f"{100 * np.mean([x['predicted_now'] for x in r]):.1f}%, true {100 * np.mean([x['true_now'] for x in r]):.1f}%")


if __name__ == "__main__":
    main()
