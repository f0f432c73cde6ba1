import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from stcore import api, data, sources
from stcore.errors import DataError, UsageError
from stcore.project import Project


def test_split_is_deterministic_and_balanced():
    labels = torch.arange(1000) % 10
    a = data.choose_labeled(labels, per_class=7, seed=3)
    assert a == data.choose_labeled(labels, per_class=7, seed=3)
    assert a != data.choose_labeled(labels, per_class=7, seed=4)
    assert len(a) == 70 and torch.bincount(labels[a], minlength=10).tolist() == [7] * 10
    b = data.choose_labeled(labels, total=25, seed=3)
    assert len(b) == 25 and b == sorted(b) == data.choose_labeled(labels, total=25, seed=3)


def test_split_refuses_more_labels_than_a_class_has():
    with pytest.raises(UsageError, match="more than class 1 has"):
        data.choose_labeled(torch.tensor([0, 0, 0, 1]), per_class=2, seed=0)


def _write_idx(path, arr):
    header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_idx_from_data_root_first(tmp_path, monkeypatch):
    monkeypatch.delenv("STCORE_DATA", raising=False)
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("t10k", 20)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    arr = sources.load("fashion-mnist", data_root=str(tmp_path), download=False)
    assert arr.train_x.shape == (60, 1, 28, 28) and arr.train_x.dtype == torch.uint8
    assert arr.test_y.tolist() == [i % 10 for i in range(20)]
    assert arr.classes[0] == "T-shirt/top"


def test_missing_dataset_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("STCORE_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataError) as e:
        sources.load("mnist", data_root=str(tmp_path / "nowhere"), download=False)
    msg = str(e.value)
    assert str(tmp_path / "nowhere") in msg and str(tmp_path / "env") in msg and "--data-root" in msg


def _img(path, color, size=(16, 16), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_folder_dataset_reads_png_and_jpeg_and_skips_a_corrupt_file(tmp_path):
    root = tmp_path / "ds"
    for i in range(3):
        _img(root / "labeled" / "cat" / f"c{i}.png", (200, 10, 10))
        _img(root / "labeled" / "dog" / f"d{i}.jpg", (10, 10, 200))
        _img(root / "unlabeled" / "batch1" / f"u{i}.jpeg", (100, 100, 100))
    _img(root / "unlabeled" / "odd.png", (1, 2, 3), size=(40, 20))  # another size: resized
    (root / "unlabeled" / "broken.png").write_bytes(b"not an image at all")
    _img(root / "test" / "cat" / "t.png", (200, 10, 10))
    p = api.create_project(tmp_path / "proj", dataset="folder", data_root=str(root))
    c = p.counts()
    assert (c["labeled"], c["pool"], c["test"]) == (6, 4, 1)
    assert p.classes == ["cat", "dog"]
    assert p.meta["input_shape"] == [3, 16, 16]
    skipped = p.store.items.skipped()
    assert [s["path"] for s in skipped] == ["unlabeled/broken.png"]
    assert "cannot identify" in skipped[0]["reason"].lower() or "error" in skipped[0]["reason"].lower()
    assert api.status(p)["skipped"] == skipped
    # Decoded once: images are read from the cache, which holds the right pixels.
    first = data.images_for(p, [0], split="labeled")[0]
    assert first.shape == (3, 16, 16) and first[0, 0, 0] == 200 and first[2, 0, 0] == 10
    assert data.images_for(p, [0], split="test")[0][2, 5, 5] == 10
    assert api.images(p, [0], split="test")[0][2, 5, 5] == 10  # the numpy face of the same cache


def test_reopening_does_not_decode_again(small_project, monkeypatch):
    def fail(*a, **k):
        raise AssertionError("decoded again")
    monkeypatch.setattr(data, "load", fail)
    again = Project(small_project.path)
    assert data.images(again, "train").shape[0] == 2000
