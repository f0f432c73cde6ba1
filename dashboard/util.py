"""Small pure helpers for the pages: paths a browser user may touch, text escaping,
file names, durations, colours and thumbnails. No streamlit here, so each is unit-tested."""
from __future__ import annotations

import base64
import io
import os
import re
import time
from pathlib import Path

import numpy as np
from PIL import Image

from stcore.errors import UsageError


# ------------------------------------------------------------------ paths typed into the browser
def allowed_roots() -> list[Path]:
    """Folders under which the dashboard may open or create projects and read image folders:
    $STCORE_DATA_ROOTS (os.pathsep-separated), else the user's home and the current directory.
    Anyone who can reach the page can type a path, so this is the fence."""
    env = os.environ.get("STCORE_DATA_ROOTS")
    raw = [p for p in env.split(os.pathsep) if p.strip()] if env else [str(Path.home()), os.getcwd()]
    return [Path(p).expanduser().resolve() for p in raw]


def resolve_under_roots(path: str, roots: list[Path] | None = None) -> Path:
    """The real path of a typed path (~, .. and symlinks resolved) if it lies under an allowed
    root; ValueError naming the roots otherwise."""
    if not path or not str(path).strip():
        raise UsageError("type a folder path")
    roots = allowed_roots() if roots is None else roots
    real = Path(str(path).strip()).expanduser().resolve()
    for root in roots:
        if real == root or root in real.parents:
            return real
    raise UsageError(f"{real} is outside the folders this dashboard may use "
                     f"({', '.join(str(r) for r in roots)}); set STCORE_DATA_ROOTS to allow another folder")


# ------------------------------------------------------------------ text
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$=])")


def md_escape(text: object) -> str:
    """Text that Streamlit markdown shows literally: a class named '<script>' or '[x](javascript:)'
    stays text, never HTML, a link or formatting."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def safe_filename(name: object, default: str = "file") -> str:
    """A download file name with no path separators, dots in front or odd characters."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._-")
    return s[:80] or default


# ------------------------------------------------------------------ numbers
def when(t: float | None) -> str:
    """A time for a table: 2026-12-07 09:41 (local), or empty."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else ""


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(max(0, seconds))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


def run_duration(run: dict, now: float | None = None) -> float | None:
    if not run.get("started"):
        return None
    end = run.get("ended") or (now if now is not None else time.time())
    return max(0.0, end - run["started"])


def conf_color(confidence: float | None) -> str:
    """Badge colour for a confidence: red below 0.6, orange below 0.9, green from 0.9."""
    if confidence is None:
        return "gray"
    return "green" if confidence >= 0.9 else "orange" if confidence >= 0.6 else "red"


# ------------------------------------------------------------------ images
def to_pil(image: np.ndarray) -> Image.Image:
    """uint8 (C, H, W), one or three channels -> a PIL image."""
    arr = np.asarray(image)
    return Image.fromarray(arr[0] if arr.shape[0] == 1 else np.ascontiguousarray(arr.transpose(1, 2, 0)),
                           mode="L" if arr.shape[0] == 1 else "RGB")


def upscale(image: np.ndarray, target: int = 140) -> Image.Image:
    """uint8 (C, H, W) -> a PIL image enlarged by a whole factor with nearest-neighbour,
    so each source pixel stays a sharp square (small images are not blurred)."""
    pil = to_pil(image)
    w, h = pil.size
    k = max(1, round(target / max(h, w)))
    return pil.resize((w * k, h * k), Image.Resampling.NEAREST) if k > 1 else pil


def png_bytes(image: np.ndarray, target: int = 140) -> bytes:
    buf = io.BytesIO()
    upscale(image, target).save(buf, format="PNG")
    return buf.getvalue()


def thumb_uri(image: np.ndarray, target: int = 140) -> str:
    """A data: URI of a PNG of image, uint8 (C, H, W), no larger than target on its longer
    side. A small image keeps its own pixels (the browser enlarges it without blur), so the
    page carries about a kilobyte an image instead of an upscaled copy."""
    pil = to_pil(image)
    w, h = pil.size
    if max(h, w) > target:
        k = target / max(h, w)
        pil = pil.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
