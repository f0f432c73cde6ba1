"""Dataset sources -> uint8 image tensors (N, C, H, W) + class names + stable item ids.

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

import numpy as np
import torch

BUILTIN = ("fashion-mnist", "mnist", "cifar10", "cifar100")
DATASETS = (*BUILTIN, "folder")
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
DEBIAN_DIRS = {"fashion-mnist": "/usr/share/datasets/fashion-mnist", "mnist": "/usr/share/datasets/mnist"}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
TV_FOLDERS = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}


class DataError(RuntimeError):
    """The dataset cannot be found or read; the message says where we looked and what to do."""


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


def _load_cifar(name: str, data_root: str | None, download: bool) -> Arrays:
    import torchvision.datasets as tvd
    cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    roots = _candidate_roots(name, data_root)
    for root in roots:
        try:
            train, test = cls(str(root), train=True), cls(str(root), train=False)
            break
        except RuntimeError:  # torchvision: "Dataset not found or corrupted"
            continue
    else:
        if not download:
            raise _not_found(name, roots)
        _torchvision_download(name, roots[-1])
        train, test = cls(str(roots[-1]), train=True), cls(str(roots[-1]), train=False)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).contiguous()
    return Arrays(classes=list(train.classes),
                  train_x=to_t(train.data), train_y=torch.tensor(train.targets, dtype=torch.int64),
                  train_sources=[f"train[{i}]" for i in range(len(train.targets))],
                  test_x=to_t(test.data), test_y=torch.tensor(test.targets, dtype=torch.int64),
                  test_sources=[f"test[{i}]" for i in range(len(test.targets))])


# ---------------------------------------------------------------- folders
def _list_images(d: Path) -> list[Path]:
    """Image files under d, recursively, in a stable order; follows no symlinked folders
    (os.walk's default), so symlink loops cannot trap it."""
    out = []
    for dirpath, dirnames, filenames in os.walk(d):
        dirnames.sort()
        for f in sorted(filenames):
            p = Path(dirpath) / f
            if p.suffix.lower() in IMAGE_EXTS:
                out.append(p)
    return out


GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def _open_image(path: Path):
    from PIL import Image
    with warnings.catch_warnings():
        # A DecompressionBombWarning (over the limit but under twice it) is treated as an error too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = Image.open(path)
        img.seek(0)  # first frame of animated GIF/WebP/TIFF
        img.load()
    return img


def _to_array(img, channels: int, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(img, dtype=np.float64)
        hi = a.max() if a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(a / hi * 255.0, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite transparent images on white, as a viewer shows them.
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != size:
        img = img.resize(size, Image.BILINEAR)
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


def _decode_all(paths: list[Path], root: Path, skipped: list, image_size: int | None):
    """Open every file once; returns (ok paths, images, channels, size)."""
    opened = []
    for p in paths:
        try:
            img = _open_image(p)
        except Exception as e:  # PIL raises many types for bad files; each one is a skip, never fatal
            skipped.append((_rel(p, root), f"{type(e).__name__}: {e}"[:300]))
            continue
        opened.append((p, img))
    if not opened:
        return [], [], 1, (image_size or 32, image_size or 32)
    channels = 1 if all(img.mode in GRAY_MODES for _, img in opened) else 3
    size = (image_size, image_size) if image_size else Counter(img.size for _, img in opened).most_common(1)[0][0]
    ok, arrays = [], []
    for p, img in opened:
        try:
            arrays.append(_to_array(img, channels, size))
            ok.append(p)
        except Exception as e:
            skipped.append((_rel(p, root), f"{type(e).__name__}: {e}"[:300]))
        finally:
            img.close()
    return ok, arrays, channels, size


def _rel(p: Path, root: Path) -> str:
    try:
        return os.fsdecode(p.relative_to(root))
    except ValueError:
        return os.fsdecode(p)


def load_folder(data_root: str | None, image_size: int | None = None) -> Arrays:
    if not data_root:
        raise DataError("the folder dataset needs --data-root DIR, with DIR/labeled/<class>/ and DIR/unlabeled/")
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass --data-root DIR with DIR/labeled/<class>/ and DIR/unlabeled/")
    for sub in ("labeled", "unlabeled"):
        if not (root / sub).is_dir():
            raise DataError(f"{root / sub} is missing; a folder dataset needs DIR/labeled/<class>/ "
                            f"(the labeled images) and DIR/unlabeled/ (the pool)")
    skipped: list[tuple[str, str]] = []
    class_dirs = sorted(d for d in (root / "labeled").iterdir() if d.is_dir())
    labeled_files, classes = [], []
    for d in class_dirs:
        files = _list_images(d)
        if not files:
            skipped.append((_rel(d, root) + "/", "empty class folder: no images; it is not used as a class"))
            continue
        classes.append(d.name)
        labeled_files += [(p, len(classes) - 1) for p in files]
    if len(classes) < 2:
        raise DataError(f"{root / 'labeled'} has {len(classes)} class folder(s) with images; "
                        f"classification needs at least two, as DIR/labeled/<class>/image files")
    pool_files = _list_images(root / "unlabeled")
    test_files = []
    if (root / "test").is_dir():
        for d in sorted(x for x in (root / "test").iterdir() if x.is_dir()):
            if d.name not in classes:
                skipped.append((_rel(d, root) + "/", f"test class {d.name!r} is not a labeled class "
                                                     f"({', '.join(classes)}); its images are not used"))
                continue
            test_files += [(p, classes.index(d.name)) for p in _list_images(d)]
    all_paths = [p for p, _ in labeled_files] + pool_files + [p for p, _ in test_files]
    ok, arrays, channels, size = _decode_all(all_paths, root, skipped, image_size)
    okset = {p: a for p, a in zip(ok, arrays)}
    lab = [(p, y) for p, y in labeled_files if p in okset]
    pool = [p for p in pool_files if p in okset]
    test = [(p, y) for p, y in test_files if p in okset]
    if not pool:
        raise DataError(f"{root / 'unlabeled'} has no readable images; put the unlabeled pool there")
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
                  labeled=list(range(len(lab))), hidden=False, skipped=skipped)


def load(name: str, *, data_root: str | None = None, image_size: int | None = None,
         download: bool = True) -> Arrays:
    """Decode a dataset by name. Raises DataError with what to do when it cannot."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    if name == "folder":
        return load_folder(data_root, image_size)
    if name in ("cifar10", "cifar100"):
        arrays = _load_cifar(name, data_root, download)
    else:
        arrays = _load_idx_dataset(name, data_root, download)
    if image_size and image_size != arrays.train_x.shape[-1]:
        resize = lambda x: torch.nn.functional.interpolate(x.float(), size=(image_size, image_size),
                                                           mode="bilinear", antialias=True).round().clamp(0, 255).byte()
        arrays.train_x, arrays.test_x = resize(arrays.train_x), resize(arrays.test_x)
    return arrays


# ---------------------------------------------------------------- splits
def choose_labeled(labels: torch.Tensor, *, per_class: int | None = None, total: int | None = None,
                   seed: int = 0, num_classes: int | None = None) -> list[int]:
    """Deterministic labeled subset of the training split: per_class items of each class,
    or total items overall. Returns sorted row indices."""
    if (per_class is None) == (total is None):
        raise ValueError("give exactly one of labels per class or a total number of labels")
    g = torch.Generator().manual_seed(seed)
    if total is not None:
        if not 0 < total < len(labels):
            raise ValueError(f"--labeled {total} must be between 1 and {len(labels) - 1} "
                             f"(the training split has {len(labels)} images)")
        return sorted(torch.randperm(len(labels), generator=g)[:total].tolist())
    if per_class <= 0:
        raise ValueError(f"--labels-per-class must be positive, got {per_class}")
    num_classes = num_classes or int(labels.max()) + 1
    chosen = []
    for c in range(num_classes):
        idx = (labels == c).nonzero().flatten()
        if len(idx) < per_class:
            raise ValueError(f"--labels-per-class {per_class} is more than class {c} has ({len(idx)} images); "
                             f"choose at most {len(idx)}")
        chosen += idx[torch.randperm(len(idx), generator=g)[:per_class]].tolist()
    return sorted(chosen)
