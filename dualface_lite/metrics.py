"""Error measures (paper, section IV-C).

The paper reports the *mean error* in millimetres between a reconstruction and
its ground truth, both with the same vertices in the same order, after the two
are aligned (a reconstruction from a photo has its own pose; only the shape is
judged). The alignment here is the rigid (rotation + translation) least-squares
fit of Kabsch / Umeyama; scale is not fitted, since a wrong size is an error.
"""
from __future__ import annotations

import numpy as np

__all__ = ["rigid_align", "vertex_errors", "mean_vertex_error", "landmark_error"]


def _check_pair(pred, gt, name_a: str = "pred", name_b: str = "gt") -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(pred, dtype=np.float64)
    b = np.asarray(gt, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"{name_a} must have shape (N, 3), got {a.shape}")
    if b.shape != a.shape:
        raise ValueError(f"{name_b} must have the same shape as {name_a} {a.shape}, got {b.shape}")
    if a.shape[0] < 3:
        raise ValueError(f"{name_a} needs at least 3 vertices, got {a.shape[0]}")
    for name, x in ((name_a, a), (name_b, b)):
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name} contains NaN or infinite values")
    return a, b


def rigid_align(source, target, weights=None, scale: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """Rotation ``R``, translation ``t`` (and scale ``c`` if asked) minimising
    ``sum_i w_i ||c R x_i + t - y_i||^2`` (Kabsch/Umeyama, closed form by SVD).

    Returns ``(R, t, c)``; apply as ``c * source @ R.T + t``.
    """
    x, y = _check_pair(source, target, "source", "target")
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != (len(x),) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be (N,) non-negative with a positive sum")
    w = w / w.sum()
    mx, my = w @ x, w @ y
    xc, yc = x - mx, y - my
    cov = (yc * w[:, None]).T @ xc  # sum w y x^T
    U, S, Vt = np.linalg.svd(cov)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt)) or 1.0])
    R = U @ D @ Vt
    c = float(np.trace(np.diag(S) @ D) / (w @ (xc**2).sum(1))) if scale else 1.0
    t = my - c * R @ mx
    return R, t, c


def vertex_errors(pred, gt, align: bool = True) -> np.ndarray:
    """Per-vertex Euclidean error (N,) in mm, after rigidly aligning ``pred`` onto ``gt``."""
    a, b = _check_pair(pred, gt)
    if align:
        R, t, _ = rigid_align(a, b)
        a = a @ R.T + t
    return np.linalg.norm(a - b, axis=1)


def mean_vertex_error(pred, gt, align: bool = True) -> float:
    """The paper's mean error (mm): mean per-vertex distance after rigid alignment."""
    return float(vertex_errors(pred, gt, align).mean())


def landmark_error(pred, gt) -> float:
    """Mean 2D distance (px) between two (68, 2) landmark sets."""
    a = np.asarray(pred, dtype=np.float64)
    b = np.asarray(gt, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 2 or a.shape != b.shape:
        raise ValueError(f"pred and gt must both have shape (L, 2), got {a.shape} and {b.shape}")
    return float(np.linalg.norm(a - b, axis=1).mean())
