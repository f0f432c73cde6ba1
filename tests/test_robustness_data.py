"""Robustness of the folder dataset: messy files are skipped with a reason, odd but valid
images are converted, and layouts that leave nothing to train on are refused clearly."""
from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stcore import api, cli, sources as data
from stcore.sources import load_folder
from stcore.errors import DataError


# ------------------------------------------------------------------ fixtures
def png(path: Path, size=(8, 8), color=(120, 60, 30), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


def make_folder(root: Path, classes=("cat", "dog"), per_class=3, pool=6, test=True) -> Path:
    for c in classes:
        for i in range(per_class):
            png(root / "labeled" / c / f"{c}{i}.png", color=(40 * i, 200 if c == "cat" else 20, 90))
            if test:
                png(root / "test" / c / f"t{i}.png")
    for i in range(pool):
        png(root / "unlabeled" / f"u{i}.png", color=(10 * i, 10, 10))
    return root


def bomb_png(path: Path, side: int = 200_000) -> Path:
    """A valid PNG header claiming side x side pixels, with almost no data: opening it must
    not try to allocate side**2 pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def truncated_jpeg(path: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, quality=95)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    return path


def skipped(arrays) -> dict[str, str]:
    return dict(arrays.skipped)


# ------------------------------------------------------------------ bad files are skipped
BAD_FILES = {
    "zero-byte": (lambda p: (p / "empty.png").write_bytes(b""), "empty.png", "empty file"),
    "truncated-jpeg": (lambda p: truncated_jpeg(p / "cut.jpg"), "cut.jpg", "truncated"),
    "text-named-png": (lambda p: (p / "notes.png").write_text("hello, not an image\n"), "notes.png",
                       "not an image Pillow can read"),
    "decompression-bomb": (lambda p: bomb_png(p / "bomb.png"), "bomb.png", "decompression bomb"),
    "symlink-to-itself": (lambda p: os.symlink("self.png", p / "self.png"), "self.png", "cannot read the file"),
    "not-an-image-type": (lambda p: (p / "readme.txt").write_text("x"), "readme.txt", "not an image file type"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
@pytest.mark.parametrize("where", ["unlabeled", "labeled/cat"])
def test_bad_file_is_skipped_with_reason_and_the_rest_loads(tmp_path, case, where):
    root = make_folder(tmp_path / "ds")
    write, name, reason = BAD_FILES[case]
    write(root / where)
    arrays = load_folder(str(root))
    assert reason in skipped(arrays)[f"{where}/{name}"]
    assert arrays.classes == ["cat", "dog"]
    assert len(arrays.labeled) == 6 and len(arrays.train_sources) == 12
    assert not any(name in s for s in arrays.train_sources)


def test_bomb_is_refused_from_the_header_without_decoding(tmp_path, monkeypatch):
    """Just over the limit (where Pillow only warns) is refused too; the limit is Pillow's."""
    root = make_folder(tmp_path / "ds")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40 * 40)
    png(root / "unlabeled" / "big.png", size=(50, 50))  # 2500 px: over the limit, under twice it
    arrays = load_folder(str(root))
    assert "decompression bomb" in skipped(arrays)["unlabeled/big.png"]


# ------------------------------------------------------------------ odd but valid images are converted
def _cmyk(p):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(p / "cmyk.jpg")  # red in CMYK


def _rgba(p):
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(p / "rgba.png")  # fully transparent -> white


def _la(p):
    Image.new("LA", (8, 8), (0, 255)).save(p / "la.png")


def _palette(p):
    Image.new("RGB", (8, 8), (0, 0, 255)).convert("P").save(p / "pal.png")


def _sixteen(p):
    Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)).save(p / "deep.png")  # 16-bit grayscale


def _gif(p):
    frames = [Image.new("RGB", (8, 8), c).convert("P") for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    frames[0].save(p / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)


def _one_bit(p):
    Image.new("1", (8, 8), 1).save(p / "bw.png")


def _tiff(p):
    Image.new("RGB", (8, 8), (1, 2, 3)).save(p / "x.tiff")


def _webp_bmp(p):
    Image.new("RGB", (8, 8), (1, 2, 3)).save(p / "x.webp")
    Image.new("RGB", (8, 8), (1, 2, 3)).save(p / "x.bmp")


ODD = {"cmyk": (_cmyk, "cmyk.jpg", (255, 0, 0)), "rgba": (_rgba, "rgba.png", (255, 255, 255)),
       "la": (_la, "la.png", (0, 0, 0)), "palette": (_palette, "pal.png", (0, 0, 255)),
       "16-bit": (_sixteen, "deep.png", (255, 255, 255)), "animated-gif": (_gif, "anim.gif", (255, 0, 0)),
       "1-bit": (_one_bit, "bw.png", (255, 255, 255)), "tiff": (_tiff, "x.tiff", (1, 2, 3)),
       "webp-bmp": (_webp_bmp, "x.bmp", (1, 2, 3))}


@pytest.mark.parametrize("case", sorted(ODD))
def test_odd_modes_are_converted_not_skipped(tmp_path, case):
    root = make_folder(tmp_path / "ds")
    write, name, rgb = ODD[case]
    write(root / "unlabeled")
    arrays = load_folder(str(root))
    assert arrays.skipped == []
    row = arrays.train_sources.index(f"unlabeled/{name}")
    pixel = arrays.train_x[row, :, 4, 4].tolist()
    assert arrays.train_x.dtype.is_floating_point is False and arrays.train_x.shape[1:] == (3, 8, 8)
    # JPEG (CMYK) is lossy: allow a little error.
    assert np.allclose(pixel, rgb, atol=12), (case, pixel)


def test_grayscale_folder_stays_one_channel(tmp_path):
    root = tmp_path / "ds"
    for c in ("a", "b"):
        png(root / "labeled" / c / "x.png", mode="L", color=10)
    png(root / "unlabeled" / "u.png", mode="L", color=20)
    _sixteen(root / "unlabeled")
    assert load_folder(str(root)).train_x.shape[1] == 1


def test_wildly_different_sizes_take_the_most_common(tmp_path):
    root = make_folder(tmp_path / "ds")
    for i, size in enumerate([(1, 1), (3000, 20), (20, 3000), (640, 480)]):
        png(root / "unlabeled" / f"s{i}.png", size=size)
    Image.new("RGB", (4000, 3000), (0, 255, 0)).save(root / "unlabeled" / "photo.jpg")  # decoded in draft mode
    arrays = load_folder(str(root))
    assert arrays.skipped == []
    assert tuple(arrays.train_x.shape[1:]) == (3, 8, 8) and tuple(arrays.test_x.shape[1:]) == (3, 8, 8)
    green = arrays.train_x[arrays.train_sources.index("unlabeled/photo.jpg"), :, 4, 4].tolist()
    assert np.allclose(green, (0, 255, 0), atol=8)
    assert tuple(load_folder(str(root), image_size=16).train_x.shape[1:]) == (3, 16, 16)


def test_huge_decoded_cache_is_refused_with_a_size_hint(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "ds")
    monkeypatch.setattr(data, "MAX_CACHE_BYTES", 1000)
    with pytest.raises(DataError, match="--image-size"):
        load_folder(str(root))


@pytest.mark.parametrize("size", [0, -3, 100_000])
def test_bad_image_size_is_refused(tmp_path, size):
    with pytest.raises(DataError, match="--image-size must be between"):
        data.load("folder", data_root=str(make_folder(tmp_path / "ds")), image_size=size)


# ------------------------------------------------------------------ layouts
def test_empty_class_folder_is_listed_and_not_a_class(tmp_path):
    root = make_folder(tmp_path / "ds", classes=("cat", "dog", "emu"))
    for f in (root / "labeled" / "emu").iterdir():
        f.unlink()
    (root / "labeled" / "fox").mkdir()
    (root / "labeled" / "fox" / "broken.png").write_bytes(b"")  # only unreadable files: no class either
    arrays = load_folder(str(root))
    assert arrays.classes == ["cat", "dog"]
    assert "no readable images" in skipped(arrays)["labeled/emu/"]
    assert "no readable images" in skipped(arrays)["labeled/fox/"]
    assert "test/emu/" in skipped(arrays)  # its test images have no class now


def test_single_class_is_refused(tmp_path):
    root = make_folder(tmp_path / "ds", classes=("cat",))
    with pytest.raises(DataError, match=r"labeled has 1 class folder.*\(cat\).*at least two"):
        load_folder(str(root))


def test_missing_pool_folder_is_named(tmp_path):
    root = make_folder(tmp_path / "ds")
    import shutil
    shutil.rmtree(root / "unlabeled")
    with pytest.raises(DataError, match="unlabeled is missing; a folder dataset needs DIR/unlabeled/"):
        load_folder(str(root))


def test_no_labeled_folder_starts_with_no_labels_and_the_test_sets_classes(tmp_path):
    root = make_folder(tmp_path / "ds")
    import shutil
    shutil.rmtree(root / "labeled")
    arrays = load_folder(str(root))
    assert arrays.labeled == [] and sorted(arrays.classes) == ["cat", "dog"] and len(arrays.test_y) == 6


def test_pool_of_only_bad_files_is_refused(tmp_path):
    root = make_folder(tmp_path / "ds", pool=0)
    (root / "unlabeled").mkdir()
    (root / "unlabeled" / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match="unlabeled has no readable images"):
        load_folder(str(root))


def test_loose_files_in_labeled_are_listed(tmp_path):
    root = make_folder(tmp_path / "ds")
    png(root / "labeled" / "stray.png")
    assert "has no class" in skipped(load_folder(str(root)))["labeled/stray.png"]


def test_duplicate_names_in_different_folders_are_distinct_items(tmp_path):
    root = make_folder(tmp_path / "ds")
    for d in ("labeled/cat", "labeled/dog", "unlabeled", "unlabeled/sub", "test/cat"):
        png(root / d / "same.png", color=(len(d), 0, 0))
    arrays = load_folder(str(root))
    srcs = arrays.train_sources
    assert {"labeled/cat/same.png", "labeled/dog/same.png", "unlabeled/same.png",
            "unlabeled/sub/same.png"} <= set(srcs)
    assert len(srcs) == len(set(srcs))
    assert arrays.train_x[srcs.index("unlabeled/sub/same.png"), 0, 0, 0] == len("unlabeled/sub")


def test_test_classes_that_do_not_match_are_listed(tmp_path):
    root = make_folder(tmp_path / "ds")
    png(root / "test" / "bird" / "b.png")
    arrays = load_folder(str(root))
    assert "not a labeled class" in skipped(arrays)["test/bird/"]
    assert len(arrays.test_sources) == 6 and set(arrays.test_y.tolist()) == {0, 1}


def test_symlink_loops_end_and_read_each_folder_once(tmp_path):
    root = make_folder(tmp_path / "ds")
    os.symlink("..", root / "unlabeled" / "up")                # pool -> the dataset root
    os.symlink("../..", root / "labeled" / "cat" / "root")    # class -> the dataset root
    os.symlink(".", root / "labeled" / "cat" / "here")        # class -> itself
    os.symlink(".", root / "labeled" / "selfclass")           # a "class" that is labeled/ itself
    os.symlink("../unlabeled", root / "labeled" / "dog" / "pool")  # read once, as the pool
    arrays = load_folder(str(root))
    assert arrays.classes == ["cat", "dog"]
    assert len(arrays.labeled) == 6
    assert len(arrays.train_sources) == 12
    assert len(set(arrays.train_sources)) == len(arrays.train_sources)
    reasons = skipped(arrays)
    for link in ("unlabeled/up/", "labeled/cat/root/", "labeled/cat/here/", "labeled/selfclass/"):
        assert "already read" in reasons[link], (link, reasons)


# ------------------------------------------------------------------ names
@pytest.mark.skipif(os.name != "posix", reason="needs a file system that takes arbitrary bytes in names")
def test_non_utf8_and_unicode_names_load_store_and_print(tmp_path, capsys):
    root = make_folder(tmp_path / "ds")
    blob = (root / "unlabeled" / "u0.png").read_bytes()
    bad = os.fsencode(root / "unlabeled") + b"/caf\xe9-\xff.png"  # Latin-1 bytes: not UTF-8
    with open(bad, "wb") as f:
        f.write(blob)
    png(root / "unlabeled" / "猫 çà ñ 🐈.png")
    png(root / "labeled" / "gâteau" / "g.png")
    (root / "unlabeled" / "zero\udcff.png".encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")) \
        .write_bytes(b"")  # an unreadable file with a non-UTF-8 name is listed too
    arrays = load_folder(str(root))
    assert "unlabeled/caf\\xe9-\\xff.png" in arrays.train_sources
    assert "unlabeled/猫 çà ñ 🐈.png" in arrays.train_sources
    assert "gâteau" in arrays.classes
    assert "unlabeled/zero\\xff.png" in skipped(arrays)
    # Through a project and the CLI: stored, printed and exported without an encoding error.
    p = api.create_project(tmp_path / "proj", dataset="folder", data_root=str(root))
    assert cli.main(["status", str(p.path)]) == 0
    out = capsys.readouterr().out
    assert "zero\\xff.png" in out and "1 files skipped" in out
    assert cli.main(["export", str(p.path), "--labels", str(tmp_path / "l.csv")]) == 0
    assert "labeled/gâteau/g.png,gâteau" in (tmp_path / "l.csv").read_text("utf-8")
    assert "unlabeled/caf\\xe9-\\xff.png" in [r["source"] for r in p.store.items.of_split("pool")]


# ------------------------------------------------------------------ through the CLI
def test_init_and_status_list_skipped_files(tmp_path, capsys):
    root = make_folder(tmp_path / "ds")
    (root / "unlabeled" / "empty.png").write_bytes(b"")
    truncated_jpeg(root / "labeled" / "dog" / "cut.jpg")
    (root / "unlabeled" / "fake.png").write_text("text")
    proj = tmp_path / "proj"
    assert cli.main(["init", str(proj), "--dataset", "folder", "--data-root", str(root), "--json"]) == 0
    init = json.loads(capsys.readouterr().out)
    assert init["skipped"] == 3 and init["labeled"] == 6 and init["pool"] == 6
    assert cli.main(["status", str(proj), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    paths = {s["path"]: s["reason"] for s in status["skipped"]}
    assert set(paths) == {"unlabeled/empty.png", "labeled/dog/cut.jpg", "unlabeled/fake.png"}
    assert cli.main(["status", str(proj)]) == 0
    text = capsys.readouterr().out
    assert "3 files skipped" in text and "labeled/dog/cut.jpg: the image is truncated" in text


@pytest.mark.parametrize("flag", [["--labels-per-class", "5"], ["--labeled", "20"]])
def test_a_labeled_split_flag_on_a_folder_dataset_is_refused(tmp_path, capsys, flag):
    """A folder dataset says itself which images are labeled; a flag that would be ignored is an error."""
    root = make_folder(tmp_path / "ds")
    proj = tmp_path / "proj"
    assert cli.main(["init", str(proj), "--dataset", "folder", "--data-root", str(root), *flag]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "DATA_ROOT/labeled/<class>/" in err and "Traceback" not in err
    assert not proj.exists()


def test_init_on_a_bad_folder_is_one_line_and_creates_nothing(tmp_path, capsys):
    root = make_folder(tmp_path / "ds", classes=("cat",))
    proj = tmp_path / "proj"
    assert cli.main(["init", str(proj), "--dataset", "folder", "--data-root", str(root)]) == 2
    err = capsys.readouterr().err
    errors = [l for l in err.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1 and "at least two" in errors[0] and "Traceback" not in err
    assert not proj.exists()


def test_hidden_names_are_ignored_silently(tmp_path):
    root = make_folder(tmp_path / "ds")
    (root / "unlabeled" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "unlabeled" / "._u0.png").write_bytes(b"\0\5\x16\7AppleDouble")
    png(root / "unlabeled" / ".thumbnails" / "t.png")
    arrays = load_folder(str(root))
    assert arrays.skipped == [] and len(arrays.train_sources) == 12


def test_a_project_without_a_test_set_reports_no_accuracy_rather_than_zero(tmp_path, capsys):
    """A folder with no test/ folder: the teacher's result has accuracy None and its run no
    evaluation rows (an accuracy of nothing drew as a flat 0 and a 0% tile), and `stcore
    evaluate` says there is no test set."""
    p = api.create_project(tmp_path / "p", dataset="folder", data_root=str(make_folder(tmp_path / "d", test=False)))
    assert api.counts(p)["test"] == 0
    api.start_training(p, {"role": "teacher", "steps": 4, "eval_every": 2}, detach=False)
    run = api.runs(p)[-1]
    assert run["state"] == "finished" and run["result"]["accuracy"] is None
    assert [m["kind"] for m in api.metrics(p, run["id"]) if m["kind"] == "eval"] == []
    assert any(m["kind"] == "train" for m in api.metrics(p, run["id"]))
    assert api.accuracy_of(p, run)[0] is None
    assert cli.main(["evaluate", str(p.path)]) == 0
    assert capsys.readouterr().out.strip() == f"teacher ({run['id']}): no test accuracy, the project has no test images"
