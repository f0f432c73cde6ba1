"""Dataset sources -> uint8 image tensors (N, C, H, W), class names and where each image came
from: the built-in datasets, and folders of the user's own images.

Built-in datasets are read from a local copy when one exists (--data-root, $STCORE_DATA,
Debian's /usr/share/datasets/...) and only then downloaded through torchvision.
"""
from __future__ import annotations

import gzip
import os
import struct
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .errors import DataError, UsageError
from .labelformats import IMAGE_EXTS  # one list of image suffixes, shared with the label readers
from .project import DATASETS

DEBIAN_DIRS = {"fashion-mnist": "/usr/share/datasets/fashion-mnist", "mnist": "/usr/share/datasets/mnist"}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
TV_FOLDERS = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}


@dataclass
class Arrays:
    """A decoded dataset. train_y is -1 where the label is unknown (folder pools)."""
    classes: list[str]
    train_x: torch.Tensor             # uint8 (N, C, H, W)
    train_y: torch.Tensor             # int64 (N,)
    train_sources: list[str]
    test_x: torch.Tensor
    test_y: torch.Tensor
    test_sources: list[str]
    labeled: list[int] | None = None  # train rows that are labeled by the source itself (folder)
    hidden: bool = True               # train_y of non-labeled rows is a true but hidden label
    skipped: list[tuple[str, str]] = field(default_factory=list)
    flip: bool = True                 # horizontal flips are label-preserving


# ---------------------------------------------------------------- built-in
def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).copy()
    if arr.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {arr.size}")
    return arr.reshape(shape)


def _find_idx(root: Path, name: str, stem: str) -> Path | None:
    for d in (root, root / TV_FOLDERS.get(name, "") / "raw", root / name):
        for suffix in (".gz", ""):
            p = d / (stem + suffix)
            if p.is_file():
                return p
    return None


def _candidate_roots(name: str, data_root: str | None) -> list[Path]:
    roots = []
    if data_root:
        roots.append(Path(data_root).expanduser())
    if os.environ.get("STCORE_DATA"):
        roots.append(Path(os.environ["STCORE_DATA"]).expanduser())
    if name in DEBIAN_DIRS:
        roots.append(Path(DEBIAN_DIRS[name]))
    roots.append(default_cache())
    return roots


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stcore" / "datasets"


def _load_idx_dataset(name: str, data_root: str | None, download: bool) -> Arrays:
    roots = _candidate_roots(name, data_root)
    for root in roots:
        found = {split: [_find_idx(root, name, stem) for stem in stems] for split, stems in IDX_FILES.items()}
        if all(p is not None for ps in found.values() for p in ps):
            tx, ty = (_read_idx(p) for p in found["train"])
            sx, sy = (_read_idx(p) for p in found["test"])
            break
    else:
        if not download:
            raise _not_found(name, roots)
        tx, ty, sx, sy = _torchvision_download(name, roots[-1])
    classes = FASHION_CLASSES if name == "fashion-mnist" else [str(i) for i in range(10)]
    return Arrays(classes=list(classes),
                  train_x=torch.from_numpy(np.ascontiguousarray(tx)).unsqueeze(1),
                  train_y=torch.from_numpy(ty.astype(np.int64)),
                  train_sources=[f"train[{i}]" for i in range(len(ty))],
                  test_x=torch.from_numpy(np.ascontiguousarray(sx)).unsqueeze(1),
                  test_y=torch.from_numpy(sy.astype(np.int64)),
                  test_sources=[f"test[{i}]" for i in range(len(sy))],
                  flip=name == "fashion-mnist")


def _not_found(name: str, roots: list[Path]) -> DataError:
    looked = "; ".join(str(r) for r in roots)
    hint = " or `apt-get install dataset-fashion-mnist`" if name == "fashion-mnist" else ""
    return DataError(f"no local copy of {name} found (looked in: {looked}) and the download failed or "
                     f"was not allowed. Put the dataset files in a folder and pass --data-root DIR "
                     f"(or set STCORE_DATA){hint}, or connect to the network and retry.")


def _torchvision_download(name: str, cache: Path):
    import torchvision.datasets as tvd
    cls = {"fashion-mnist": tvd.FashionMNIST, "mnist": tvd.MNIST,
           "cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}[name]
    cache.mkdir(parents=True, exist_ok=True)
    try:
        train = cls(str(cache), train=True, download=True)
        test = cls(str(cache), train=False, download=True)
    except Exception as e:  # network errors come in many types (URLError, OSError, RuntimeError)
        raise DataError(f"could not download {name} into {cache}: {e}. "
                        f"Pass --data-root DIR with a local copy, or set STCORE_DATA.") from e
    if name in ("cifar10", "cifar100"):
        return (train.data, np.array(train.targets), test.data, np.array(test.targets))
    return (train.data.numpy(), train.targets.numpy(), test.data.numpy(), test.targets.numpy())


CIFAR_LAYOUT = {"cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                             "batches.meta", "label_names", "labels"),
                "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_label_names", "fine_labels")}


def _unpickle_arrays(fh):
    """Read a CIFAR batch pickle, allowing only the numpy array and dtype constructors: a file that
    asks for any other class or function (the way a pickle runs code) is refused."""
    import pickle

    allowed = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    class ArraysOnly(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) not in allowed:
                raise pickle.UnpicklingError(f"refused to load {module}.{name}")
            return super().find_class(module, name)

    return ArraysOnly(fh, encoding="latin1").load()


def _read_cifar_batches(folder: Path, name: str):
    """torchvision's layout (python pickles of 32x32 RGB rows): (classes, train x, y, test x, y)."""
    import pickle
    _, train_files, test_files, meta_file, names_key, labels_key = CIFAR_LAYOUT[name]

    def read(files):
        xs, ys = [], []
        for f in files:
            try:
                with open(folder / f, "rb") as fh:
                    d = _unpickle_arrays(fh)
                xs.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                ys += [int(v) for v in d[labels_key]]
            except (OSError, KeyError, ValueError, pickle.UnpicklingError, EOFError) as e:
                raise DataError(f"{folder / f} cannot be read as a {name} batch ({e}); "
                                f"download the dataset again or pass another --data-root") from e
        return torch.from_numpy(np.concatenate(xs)), torch.tensor(ys, dtype=torch.int64)

    with open(folder / meta_file, "rb") as fh:
        classes = [str(c) for c in _unpickle_arrays(fh)[names_key]]
    return classes, *read(train_files), *read(test_files)


def _read_class_folders(root: Path, image_size: int | None):
    """root/train/<class>/* and root/test/<class>/* image folders, every label known (kept hidden
    for the pool): (classes, train x, y, sources, test x, y, sources, skipped)."""
    skipped: list[tuple[str, str]] = []
    lister = _Lister(root, skipped)
    lister.mark(root)
    files = {split: [(p, printable(d.name)) for d in lister.class_dirs(root / split) for p in lister.images(d)]
             for split in ("train", "test")}
    classes = sorted({c for p, c in files["train"]})
    ok, arrays, channels, size = _decode_all([p for ps in files.values() for p, _ in ps], root, skipped, image_size)
    okset = dict(zip(ok, arrays))
    out = []
    for split in ("train", "test"):
        kept = [(p, classes.index(c)) for p, c in files[split] if p in okset and c in classes]
        x = (torch.from_numpy(np.stack([okset[p] for p, _ in kept])) if kept
             else torch.zeros((0, channels, size[1], size[0]), dtype=torch.uint8))
        out += [x, torch.tensor([y for _, y in kept], dtype=torch.int64), [_rel(p, root) for p, _ in kept]]
    return classes, *out, _unique(skipped)


def _load_cifar(name: str, data_root: str | None, download: bool, image_size: int | None = None) -> Arrays:
    """A local copy in torchvision's layout (ROOT/cifar-10-batches-py/), or as image folders
    (ROOT/train/<class>/ and ROOT/test/<class>/), else torchvision's download."""
    roots = _candidate_roots(name, data_root)
    batches = CIFAR_LAYOUT[name][0]
    for root in roots:
        if (root / batches).is_dir():
            classes, tx, ty, sx, sy = _read_cifar_batches(root / batches, name)
            break
        if (root / "train").is_dir() and (root / "test").is_dir():
            classes, tx, ty, tsrc, sx, sy, ssrc, skipped = _read_class_folders(root.resolve(), image_size)
            if len(classes) < 2 or not len(tx):
                raise DataError(f"{root}/train/ has no class folders with readable images; a {name} "
                                f"copy as folders needs train/<class>/ and test/<class>/ image files")
            return Arrays(classes=classes, train_x=tx, train_y=ty, train_sources=tsrc,
                          test_x=sx, test_y=sy, test_sources=ssrc, skipped=skipped)
    else:
        if not download:
            raise _not_found(name, roots)
        _torchvision_download(name, roots[-1])
        classes, tx, ty, sx, sy = _read_cifar_batches(roots[-1] / batches, name)
    return Arrays(classes=classes, train_x=tx, train_y=ty, train_sources=[f"train[{i}]" for i in range(len(ty))],
                  test_x=sx, test_y=sy, test_sources=[f"test[{i}]" for i in range(len(sy))])


# ---------------------------------------------------------------- folders
# Real image folders are messy. Every file that cannot be used is skipped with a reason
# (stored in the project and listed by `stcore status`); only a folder that leaves nothing
# to train on is an error.
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
MAX_IMAGE_SIZE = 1024        # --image-size above this would not fit the small models or the memory
# The decoded cache is held in memory once; refuse to build one larger than this (bytes).
MAX_CACHE_BYTES = int(os.environ.get("STCORE_MAX_CACHE_BYTES", 8 << 30))


def printable(path: str | os.PathLike) -> str:
    """A path as text that SQLite, JSON and a terminal all accept: file-name bytes that are
    not UTF-8 (which Python carries as lone surrogates) are written as \\xNN."""
    s = os.fsdecode(path)
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _rel(p: str | os.PathLike, root: Path) -> str:
    try:
        return printable(Path(p).relative_to(root))
    except ValueError:
        return printable(p)


class _Lister:
    """Lists image files under folders, in a stable order. Symlinked folders are followed,
    but a folder already read (a symlink loop, or a link to a folder read elsewhere) is not
    read again. Hidden names (.DS_Store, .git, ._x.png) are ignored."""

    def __init__(self, root: Path, skipped: list):
        self.root, self.skipped = root, skipped
        self.seen: set[tuple[int, int]] = set()

    def mark(self, d: Path) -> None:
        """Count d as read without listing it (the parents of the class folders)."""
        st = os.stat(d)
        self.seen.add((st.st_dev, st.st_ino))

    def skip(self, p, reason: str) -> None:
        self.skipped.append((_rel(p, self.root) + ("/" if os.path.isdir(p) else ""), reason))

    def images(self, d: Path) -> list[Path]:
        out = []
        for dirpath, dirnames, filenames in os.walk(d, followlinks=True,
                                                    onerror=lambda e: self.skip(e.filename, f"cannot read "
                                                                                f"this folder: {e.strerror}")):
            st = os.stat(dirpath)
            if (st.st_dev, st.st_ino) in self.seen:
                dirnames[:] = []
                self.skip(dirpath, "symlink to a folder that is already read (a loop, or the same folder "
                                   "twice); not read again")
                continue
            self.seen.add((st.st_dev, st.st_ino))
            dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
            for f in sorted(filenames):
                if f.startswith("."):
                    continue
                p = Path(dirpath) / f
                if p.suffix.lower() in IMAGE_EXTS:
                    out.append(p)
                else:
                    self.skip(p, f"not an image file type (use {', '.join(sorted(IMAGE_EXTS))}); ignored")
        return out

    def class_dirs(self, d: Path) -> list[Path]:
        """The class folders of labeled/ or test/; loose files there are listed as skipped."""
        out = []
        for x in sorted(d.iterdir()):
            if x.name.startswith("."):
                continue
            if x.is_dir():
                out.append(x)
            else:
                self.skip(x, f"a file directly in {d.name}/ has no class; move it into {d.name}/<class>/")
        return out


def _why(e: BaseException, path: Path) -> str:
    """A skipped file's reason, saying what is wrong and what to do."""
    from PIL import Image, UnidentifiedImageError
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return (f"too large to decode safely (over Pillow's limit of {Image.MAX_IMAGE_PIXELS} pixels, "
                f"a guard against decompression bombs); shrink the image or remove it")
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes); copy it again or remove it"
    except OSError as se:
        return f"cannot read the file: {se.strerror}"
    if isinstance(e, UnidentifiedImageError):
        return ("not an image Pillow can read (cannot identify its format: damaged, or another format under "
                "an image name); fix or remove it")
    if isinstance(e, OSError) and "truncated" in str(e):
        return "the image is truncated (damaged or partly copied); copy it again or remove it"
    if isinstance(e, OSError) and e.strerror:
        return f"cannot read the file: {e.strerror}"
    return f"cannot decode it ({type(e).__name__}: {e}); fix or remove it"[:300]


def _probe(path: Path) -> tuple[str, tuple[int, int]]:
    """(mode, (width, height)) from the header alone; raises for a file that is not a usable image."""
    from PIL import Image
    with warnings.catch_warnings():
        # Over the decompression-bomb limit (but under twice it) Pillow only warns: treat it as an error.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        # Image.open reads the header only, and checks the pixel count against the limit.
        with Image.open(path) as img:
            return img.mode, img.size


def _decode(path: Path, channels: int, size: tuple[int, int]) -> np.ndarray:
    """Decode one file to uint8 (C, H, W) at size (width, height). The first frame of an animation."""
    from PIL import Image
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            img.seek(0)
            img.draft(None, size)  # JPEG only: decode at a reduced scale when the image is much larger
            img.load()
            return _to_array(img, channels, size)


def decode_like(path: str | os.PathLike, shape: Sequence[int]) -> np.ndarray:
    """One image file as a project of input shape (C, H, W) caches its images: uint8 (C, H, W),
    decoded as a folder project decodes its files, so that a file made from a cached row (a
    PNG of it) gives that row back exactly."""
    c, h, w = (int(v) for v in shape)
    return _decode(Path(path), c, (w, h))


def image_files(paths: Sequence[str | os.PathLike]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The files of paths, each folder walked for IMAGE_EXTS as a folder dataset is (hidden names
    ignored, a folder read once), and (path, reason) of the files left out. A file named itself is
    kept whatever its suffix: decoding it says whether it is an image."""
    skipped: list[tuple[str, str]] = []
    lister, out = _Lister(Path(), skipped), []
    for p in map(Path, paths):
        out += lister.images(p) if p.is_dir() else [p]
    return out, skipped


def decode_files(files: Sequence[Path], shape: Sequence[int]) -> tuple[list[Path], np.ndarray, list[tuple[str, str]]]:
    """files decoded as decode_like does: (the files read, uint8 (N, C, H, W), (path, reason) of
    each one that could not be)."""
    ok, arrays, skipped = [], [], []
    for f in files:
        try:
            arrays.append(decode_like(f, shape))
            ok.append(f)
        except Exception as e:  # PIL raises many types for bad files; each one is a skip, never fatal
            skipped.append((printable(f), _why(e, Path(f))))
    return ok, np.stack(arrays) if arrays else np.zeros((0, *shape), np.uint8), skipped


def _to_array(img, channels: int, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # 16-bit and float images: scale to 8 bits (by 255 when the values already fit).
        a = np.nan_to_num(np.asarray(img, dtype=np.float64))
        hi = a.max() if a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(a / hi * 255.0, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        # Composite transparent images on white, as a viewer shows them.
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    img = img.convert("L" if channels == 1 else "RGB")  # CMYK, YCbCr, palette, 1-bit: all convert
    if img.size != size:
        img = img.resize(size, Image.BILINEAR, reducing_gap=3.0)
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


def _decode_all(paths: list[Path], root: Path, skipped: list, image_size: int | None):
    """Read every header, choose the channels and size, then decode file by file.
    Returns (ok paths, arrays, channels, (width, height))."""
    probed = []
    for p in paths:
        try:
            probed.append((p, *_probe(p)))
        except Exception as e:  # PIL raises many types for bad files; each one is a skip, never fatal
            skipped.append((_rel(p, root), _why(e, p)))
    if not probed:
        return [], [], 1, (image_size or 32, image_size or 32)
    channels = 1 if all(mode in GRAY_MODES for _, mode, _ in probed) else 3
    size = (image_size, image_size) if image_size else Counter(s for _, _, s in probed).most_common(1)[0][0]
    need = len(probed) * channels * size[0] * size[1]
    if need > MAX_CACHE_BYTES:
        raise DataError(f"{root}: {len(probed)} images of {size[0]}x{size[1]} pixels would take "
                        f"{need / 2**30:.1f} GiB decoded (the limit is {MAX_CACHE_BYTES / 2**30:.1f} GiB); "
                        f"pass a smaller --image-size, e.g. 64")
    ok, arrays = [], []
    for p, _, _ in probed:
        try:
            arrays.append(_decode(p, channels, size))
            ok.append(p)
        except Exception as e:  # truncated data shows up only when decoding
            skipped.append((_rel(p, root), _why(e, p)))
    return ok, arrays, channels, size


def folder_classes(root: Path, given: Sequence[str] | None) -> list[str] | None:
    """The class names a folder dataset declares: given (--classes), else DIR/classes.txt (one
    a line), else None (the labeled/<class>/ folders name them)."""
    if given is None and (root / "classes.txt").is_file():
        try:
            given = [line for line in (root / "classes.txt").read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read {root / 'classes.txt'} ({e}); it should hold one class name a line") from e
    if given is None:
        return None
    names = [str(n).strip() for n in given if str(n).strip()]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"the class names repeat {', '.join(repeated)}; give each class once")
    return names


def load_folder(data_root: str | None, image_size: int | None = None,
                classes: Sequence[str] | None = None) -> Arrays:
    """DIR/unlabeled/** (the pool) and, optionally, DIR/labeled/<class>/* and DIR/test/<class>/*.
    The classes: classes (--classes), else DIR/classes.txt, else the labeled class folders, else
    the test set's; a project may start with no labeled images, and with no classes yet."""
    layout = "DIR/unlabeled/ (the pool) and, if some images are labeled, DIR/labeled/<class>/"
    if not data_root:
        raise DataError(f"the folder dataset needs --data-root DIR, with {layout}")
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass --data-root DIR with {layout}")
    root = root.resolve()
    if not (root / "unlabeled").is_dir():
        raise DataError(f"{root / 'unlabeled'} is missing; a folder dataset needs {layout}")
    declared = folder_classes(root, classes)
    skipped: list[tuple[str, str]] = []
    lister = _Lister(root, skipped)
    for d in (root, root / "labeled", root / "test"):
        if d.is_dir():
            lister.mark(d)  # a link back to one of these is a loop
    class_dirs = lister.class_dirs(root / "labeled") if (root / "labeled").is_dir() else []
    labeled_files = [(p, printable(d.name)) for d in class_dirs for p in lister.images(d)]
    pool_files = lister.images(root / "unlabeled")
    test_files = []
    if (root / "test").is_dir():
        test_files = [(p, printable(d.name)) for d in lister.class_dirs(root / "test") for p in lister.images(d)]
    all_paths = [p for p, _ in labeled_files] + pool_files + [p for p, _ in test_files]
    ok, arrays, channels, size = _decode_all(all_paths, root, skipped, image_size)
    okset = dict(zip(ok, arrays))

    # A class is a declared name, or else a labeled folder with at least one readable image.
    readable = {c for p, c in labeled_files if p in okset}
    classes = declared if declared is not None else [printable(d.name) for d in class_dirs
                                                     if printable(d.name) in readable]
    if declared is None and not class_dirs:  # no labeled images: the test set's classes, if it has any
        classes = list(dict.fromkeys(c for p, c in test_files if p in okset))
    undeclared = sorted(readable - set(classes))
    if undeclared:
        raise DataError(f"labeled/{undeclared[0]}/ is not one of the classes given ({', '.join(classes)}); "
                        f"add it to --classes or classes.txt, or move its images to unlabeled/")
    for d in class_dirs:
        if printable(d.name) not in readable:
            skipped.append((_rel(d, root) + "/", "class folder with no readable images; it is not used as a class"))
    if declared is None and class_dirs and len(classes) < 2:
        raise DataError(f"{root / 'labeled'} has {len(classes)} class folder(s) with readable images"
                        f"{' (' + ', '.join(classes) + ')' if classes else ''}; classification needs at "
                        f"least two, as DIR/labeled/<class>/ image files")
    lab = [(p, classes.index(c)) for p, c in labeled_files if p in okset]
    pool = [p for p in pool_files if p in okset]
    for name in sorted({c for _, c in test_files} - set(classes)):
        skipped.append((f"test/{name}/", f"test class {name!r} is not a labeled class ({', '.join(classes)}); "
                                         f"its images are not used"))
    test = [(p, classes.index(c)) for p, c in test_files if p in okset and c in classes]
    if not pool:
        raise DataError(f"{root / 'unlabeled'} has no readable images; put the unlabeled pool there "
                        f"(see `stcore status` after init, or the skipped files above)")
    empty = torch.zeros((0, channels, size[1], size[0]), dtype=torch.uint8)
    stack = lambda ps: torch.from_numpy(np.stack([okset[p] for p in ps])) if ps else empty
    train_paths = [p for p, _ in lab] + pool
    return Arrays(classes=classes,
                  train_x=stack(train_paths),
                  train_y=torch.tensor([y for _, y in lab] + [-1] * len(pool), dtype=torch.int64),
                  train_sources=[_rel(p, root) for p in train_paths],
                  test_x=stack([p for p, _ in test]),
                  test_y=torch.tensor([y for _, y in test], dtype=torch.int64),
                  test_sources=[_rel(p, root) for p, _ in test],
                  labeled=list(range(len(lab))), hidden=False, skipped=_unique(skipped))


def _unique(skipped: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """One entry per path (the first reason), in a stable order."""
    seen: dict[str, str] = {}
    for path, reason in skipped:
        seen.setdefault(path, reason)
    return sorted(seen.items())


def load(name: str, *, data_root: str | None = None, image_size: int | None = None,
         download: bool = True, classes: Sequence[str] | None = None) -> Arrays:
    """Decode a dataset by name. Raises DataError with what to do when it cannot."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    if image_size is not None and not 1 <= image_size <= MAX_IMAGE_SIZE:
        raise DataError(f"--image-size must be between 1 and {MAX_IMAGE_SIZE} pixels, not {image_size}")
    if name == "folder":
        return load_folder(data_root, image_size, classes)
    if classes is not None:
        raise UsageError(f"--classes names the classes of a folder dataset; {name} has its own")
    if name in ("cifar10", "cifar100"):
        arrays = _load_cifar(name, data_root, download, image_size)
    else:
        arrays = _load_idx_dataset(name, data_root, download)
    if image_size and image_size != arrays.train_x.shape[-1]:
        resize = lambda x: torch.nn.functional.interpolate(x.float(), size=(image_size, image_size),
                                                           mode="bilinear", antialias=True).round().clamp(0, 255).byte()
        arrays.train_x, arrays.test_x = resize(arrays.train_x), resize(arrays.test_x)
    return arrays
