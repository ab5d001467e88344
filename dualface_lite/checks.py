"""Input checks shared by every stage: one message for one mistake, wherever it is made.

Each function takes what a user passed, checks it, and returns it as the array the stage
computes with, or raises a ``ValueError`` (``TypeError`` for a wrong kind of object) that
names the argument and says what was expected::

    V = checks.points(vertices, "vertices")            # (N, 3) float64, finite
    F = checks.triangles(triangles, len(V))             # (T, 3) int64, indices in range
    L = checks.landmarks(landmarks, image_hw=(H, W))    # (68, 2) float64 pixels
    img = checks.rgb_image(photo)                        # (H, W, 3) float64 in [0, 1]
"""
from __future__ import annotations

import numpy as np

__all__ = ["DualfaceWarning", "numeric", "points", "point_batches", "triangles", "mesh", "landmarks", "number", "rgb_image", "rgb_pixels",
           "rgb_uint8",
           "colors01", "same_shape", "LANDMARK_MARGIN_PX"]

class DualfaceWarning(UserWarning):
    """The kit's own warnings (e.g. a cached dataset served although the code that makes it
    changed). The test suite turns them into errors."""


#: landmarks may lie this far (px) outside the image's outer pixel edges
#: ``[-0.5, W - 0.5] x [-0.5, H - 0.5]`` (a detector's jaw points can touch the border)
LANDMARK_MARGIN_PX = 0.5


def numeric(x, name: str, dtype=np.float64) -> np.ndarray:
    """``x`` as an array of ``dtype``; an error if it does not hold real numbers."""
    try:
        a = np.asarray(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers, got {type(x).__name__}") from None
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool) \
            or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{name} must be a numeric array (real numbers), got dtype {a.dtype}")
    return a.astype(dtype, copy=False)


def _finite(a: np.ndarray, name: str) -> np.ndarray:
    if not np.all(np.isfinite(a)):
        bad = np.flatnonzero(~np.isfinite(a.reshape(len(a), -1)).all(1)) if a.ndim > 1 else None
        where = "" if bad is None else f" (rows {bad[:10].tolist()}{'...' if len(bad) > 10 else ''})"
        raise ValueError(f"{name} contains NaN or infinite values{where}")
    return a


def points(x, name: str = "points", dim: int = 3, n: int | None = None, min_count: int = 1,
           dtype=np.float64) -> np.ndarray:
    """Finite points (N, dim) as ``dtype``; ``n`` fixes N, ``min_count`` bounds it below."""
    a = numeric(x, name, dtype)
    if a.ndim != 2 or a.shape[1] != dim:
        raise ValueError(f"{name} must have shape (N, {dim}), got {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} must have {n} rows (one per vertex), got {a.shape[0]}")
    if a.shape[0] < min_count:
        if a.shape[0] == 0:
            raise ValueError(f"{name} is empty: need at least {min_count} point(s)")
        raise ValueError(f"{name} needs at least {min_count} points, got {a.shape[0]}")
    return _finite(a, name)


def point_batches(x, name: str = "points", n: int | None = None, dtype=np.float64,
                  allow_single: bool = False) -> np.ndarray:
    """Finite batches of faces (M, N, 3) as ``dtype`` (one face (N, 3) becomes M = 1 when
    ``allow_single``); ``n`` fixes N."""
    a = numeric(x, name, dtype)
    if allow_single and a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{name} must have shape (M, N, 3) (M faces, N vertices), got {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {a.shape}")
    if n is not None and a.shape[1] != n:
        raise ValueError(f"{name} has {a.shape[1]} vertices, expected {n}")
    return _finite(a, name)


def same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """An error unless ``b`` has the shape of ``a``."""
    if np.shape(b) != np.shape(a):
        raise ValueError(f"{name_b} must have the same shape as {name_a} {np.shape(a)}, got {np.shape(b)}")


def triangles(t, n_vertices: int, name: str = "triangles") -> np.ndarray:
    """Triangles (T, 3) int64 whose indices lie in ``0..n_vertices - 1`` (integral floats are accepted)."""
    F = np.asarray(t)
    if F.ndim != 2 or F.shape[1] != 3:
        raise ValueError(f"{name} must have shape (T, 3), got {F.shape}")
    if F.shape[0] == 0:
        raise ValueError(f"{name} is empty: the mesh has no triangles")
    if not np.issubdtype(F.dtype, np.integer):
        if np.issubdtype(F.dtype, np.floating) and np.all(np.isfinite(F)) and np.all(F == np.round(F)):
            F = F.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer vertex indices, got dtype {F.dtype}")
    lo, hi = int(F.min()), int(F.max())
    if lo < 0 or hi >= n_vertices:
        raise ValueError(f"{name} has vertex indices out of range: found [{lo}, {hi}], "
                         f"expected [0, {n_vertices - 1}] for {n_vertices} vertices")
    return F.astype(np.int64, copy=False)


def mesh(m, name: str = "mesh") -> tuple[np.ndarray, np.ndarray]:
    """A ``trimesh.Trimesh`` or a ``(vertices, faces)`` pair -> float64 (V, 3), int64 (F, 3)."""
    if hasattr(m, "vertices") and hasattr(m, "faces"):
        V, F = m.vertices, m.faces
    elif isinstance(m, (tuple, list)) and len(m) == 2:
        V, F = m
    else:
        raise ValueError(f"{name} must be a trimesh.Trimesh or a (vertices, faces) pair, got {type(m).__name__}")
    if np.asarray(V).size == 0:
        raise ValueError(f"{name} is empty: it has no vertices")
    V = points(V, f"{name} vertices")
    if np.asarray(F).size == 0:
        raise ValueError(f"{name} has no faces: a triangle mesh is needed")
    return V, triangles(F, len(V), f"{name} faces")


def landmarks(x, name: str = "landmarks", n: int = 68, batch: bool = False, image_hw=None,
              flat_ok: bool = False) -> np.ndarray:
    """iBUG landmark pixels ``(u, v)``: (n, 2), or (M, n, 2) with ``batch``; float64, finite; a set
    must span an area (not all on one point or one line) unless ``flat_ok`` (e.g. residuals).

    With ``image_hw = (H, W)`` every landmark must lie inside the image, within
    ``LANDMARK_MARGIN_PX`` beyond its outer pixel edges."""
    want = f"(M, {n}, 2)" if batch else f"({n}, 2)"
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must have shape {want} (iBUG-{n} pixel positions), got something that is "
                         "not an array of numbers") from None
    if (batch and (a.ndim != 3 or a.shape[1:] != (n, 2))) or (not batch and a.shape != (n, 2)):
        raise ValueError(f"{name} must have shape {want} (iBUG-{n} pixel positions), got {a.shape}")
    if batch and a.shape[0] == 0:
        raise ValueError(f"{name} is empty: need at least one landmark set")
    if not np.all(np.isfinite(a)):
        bad = np.flatnonzero(~np.isfinite(a.reshape(-1, n, 2)).all(2).all(0))
        raise ValueError(f"{name} contains NaN or infinite values (landmarks {bad.tolist()})")
    sets = a.reshape(-1, n, 2)
    sv = np.linalg.svd(sets - sets.mean(1, keepdims=True), compute_uv=False)        # (M, 2)
    flat = sv[:, 1] <= 1e-3 * np.maximum(sv[:, 0], 1e-12)
    if flat.any() and not flat_ok:
        which = "" if not batch else f" (sets {np.flatnonzero(flat)[:10].tolist()})"
        what = "all at one point" if np.any(sv[flat, 0] < 1e-9) else "on one line"
        raise ValueError(f"{name} are {what}{which}: the landmarks of a face span an area")
    if image_hw is not None:
        H, W = image_hw
        m = LANDMARK_MARGIN_PX
        P = a.reshape(-1, 2)
        out = ((P[:, 0] < -0.5 - m) | (P[:, 0] > W - 0.5 + m) | (P[:, 1] < -0.5 - m) | (P[:, 1] > H - 0.5 + m))
        if out.any():
            idx = np.unique(np.flatnonzero(out) % n)
            raise ValueError(f"{name} {idx.tolist()} lie outside the {W} x {H} image "
                             f"(allowed: u in [{-0.5 - m}, {W - 0.5 + m}], v in [{-0.5 - m}, {H - 0.5 + m}])")
    return a


def number(x, name: str, positive: bool = False, minimum: float | None = None) -> float:
    """A finite real number: ``> 0`` with ``positive``, else ``>= minimum`` (default 0)."""
    if isinstance(x, bool):
        raise ValueError(f"{name} must be a number, got {x!r}")
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {x!r}") from None
    lo = 0.0 if minimum is None else float(minimum)
    if not np.isfinite(v) or (v <= 0 if positive else v < lo):
        what = "positive" if positive else ("non-negative" if lo == 0 else f">= {lo:g}")
        raise ValueError(f"{name} must be {what} and finite, got {x!r}")
    return v


def rgb_image(image, name: str = "image") -> np.ndarray:
    """Any common image layout -> float64 RGB (H, W, 3) in [0, 1].

    Accepts uint8 (0..255), other integers in 0..255, or floats in [0, 1]; grayscale
    (H, W) or (H, W, 1) is repeated to RGB, RGBA (H, W, 4) loses its alpha channel.
    """
    img = rgb_pixels(image, name)
    return img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else img


def rgb_uint8(image, name: str = "image") -> np.ndarray:
    """:func:`rgb_pixels` as a contiguous (H, W, 3) uint8 array, for libraries that want 8-bit photos (dlib,
    OpenCV, Pillow): a uint8 photo as it is (no copy when contiguous), any other layout ``round(255 x)``
    of :func:`rgb_image`'s values."""
    img = rgb_pixels(image, name)
    if img.dtype != np.uint8:
        img = np.round(img * 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def rgb_pixels(image, name: str = "image") -> np.ndarray:
    """:func:`rgb_image`, but a uint8 photo stays uint8 (H, W, 3) (0..255), not converted: for a
    function that reads a few of its pixels (``x.astype(np.float64) / 255.0`` of those gives
    exactly :func:`rgb_image`'s values). Any other layout is converted as :func:`rgb_image` does."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name} must be an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array, got shape "
                         f"{np.asarray(image).shape}")
    if img.shape[0] < 2 or img.shape[1] < 2:
        raise ValueError(f"{name} must be at least 2 x 2 pixels, got {img.shape[1]} x {img.shape[0]}")
    if img.dtype == np.uint8:
        return img
    if img.dtype == bool or not np.issubdtype(img.dtype, np.number):
        raise ValueError(f"{name} must be uint8 (0..255) or float in [0, 1], got dtype {img.dtype}")
    f = img.astype(np.float64)
    if not np.all(np.isfinite(f)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if np.issubdtype(img.dtype, np.integer):
        if f.min() < 0 or f.max() > 255:
            raise ValueError(f"{name}: integer images must hold 0..255, got {f.min():g}..{f.max():g}")
        return f / 255.0
    if f.min() < 0 or f.max() > 1:
        raise ValueError(f"{name}: float images must be in [0, 1], got {f.min():g}..{f.max():g} "
                         "(divide by 255, or pass uint8)")
    return f


def colors01(c, n: int, name: str = "colors") -> np.ndarray:
    """Per-vertex RGB (n, 3) float64 in [0, 1] from floats in [0, 1] or integers 0..255
    (uint8 and the like); a single (3,) colour is broadcast to all n vertices."""
    C = np.asarray(c)
    if C.shape == (3,):
        C = np.broadcast_to(C, (n, 3))
    if C.shape != (n, 3):
        raise ValueError(f"{name} must have shape ({n}, 3) (one RGB per vertex) or (3,), got {C.shape}")
    if C.dtype == bool or not np.issubdtype(C.dtype, np.number):
        raise ValueError(f"{name} must be float in [0, 1] or uint8 (0..255), got dtype {C.dtype}")
    if np.issubdtype(C.dtype, np.integer):
        if C.min() < 0 or C.max() > 255:
            raise ValueError(f"integer {name} must lie in 0..255, got [{C.min()}, {C.max()}]")
        return C.astype(np.float64) / 255.0
    C = _finite(C.astype(np.float64), name)
    if C.min() < -1e-6 or C.max() > 1 + 1e-6:
        raise ValueError(f"{name} must lie in [0, 1] (floats) or be uint8, got values in "
                         f"[{C.min():.3g}, {C.max():.3g}] (pass uint8 for 0..255 values)")
    return np.clip(C, 0.0, 1.0)
