"""Error measures (paper, section IV-C).

The paper reports the *mean error* in millimetres between a reconstruction and
its ground truth, both with the same vertices in the same order, after the two
are aligned (a reconstruction from a photo has its own pose; only the shape is
judged). The alignment here is the rigid (rotation + translation) least-squares
fit of Kabsch / Umeyama; scale is not fitted, since a wrong size is an error.
"""
from __future__ import annotations

import numpy as np

from . import checks

__all__ = ["rigid_align", "align_batch", "residual_targets", "vertex_errors", "mean_vertex_error",
           "mean_vertex_errors", "ced", "landmark_error", "per_condition", "condition_table"]


def _check_pair(pred, gt, name_a: str = "pred", name_b: str = "gt") -> tuple[np.ndarray, np.ndarray]:
    a = checks.points(pred, name_a, min_count=3)
    checks.same_shape(a, gt, name_a, name_b)
    return a, checks.points(gt, name_b)


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


def _check_batch(pred, gt, name_a: str = "pred", name_b: str = "gt") -> tuple[np.ndarray, np.ndarray]:
    a = checks.point_batches(pred, name_a)
    checks.same_shape(a, gt, name_a, name_b)
    if a.shape[1] < 3:
        raise ValueError(f"{name_a} needs at least 3 vertices per face, got {a.shape[1]}")
    return a, checks.point_batches(gt, name_b)


def align_batch(source, target) -> np.ndarray:
    """Each face of ``source`` (M, N, 3) rigidly aligned onto the same face of
    ``target`` (M, N, 3): :func:`rigid_align` for all M faces at once (one
    batched 3 x 3 SVD). Returns the aligned source (M, N, 3) float64."""
    x, y = _check_batch(source, target, "source", "target")
    mx, my = x.mean(1, keepdims=True), y.mean(1, keepdims=True)
    xc, yc = x - mx, y - my
    cov = np.einsum("mni,mnj->mij", yc, xc)             # sum_n y x^T, per face
    U, _, Vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(U @ Vt))
    d[d == 0] = 1.0
    U[:, :, 2] *= d[:, None]                             # U diag(1, 1, d) V^T: no reflection
    R = U @ Vt
    return np.einsum("mij,mnj->mni", R, xc) + my


def residual_targets(base, target) -> np.ndarray:
    """``DeltaS`` of eq. (2) with the pose removed: ``align(target -> base) - base``, (M, N, 3) float32
    for ``base`` and ``target`` (M, N, 3). What the ResNet's ``T_L`` and the MRF prior learn: a
    reconstruction is judged after rigid alignment, so neither is asked to learn the pose of ``target``."""
    return (align_batch(target, base) - np.asarray(base, dtype=np.float64)).astype(np.float32)


def mean_vertex_errors(pred, gt, align: bool = True) -> np.ndarray:
    """The paper's mean error (mm) of each of M faces: (M,) for ``pred``, ``gt`` (M, N, 3)."""
    a, b = _check_batch(pred, gt)
    if align:
        a = align_batch(a, b)
    return np.linalg.norm(a - b, axis=2).mean(1)


def ced(errors, thresholds=None, *, counts: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The cumulative error distribution of Fig. 6: for each threshold ``x``, the share (or with
    ``counts`` the number) of faces whose error is at most ``x``.

    errors : (M,) per-face errors. thresholds : (T,) increasing; default 200 steps from 0 to the
    largest error. Returns ``(thresholds (T,), values (T,))``.
    """
    e = np.asarray(errors, dtype=np.float64).reshape(-1)
    if e.size == 0 or not np.all(np.isfinite(e)):
        raise ValueError("errors must be a non-empty array of finite values")
    x = np.linspace(0.0, float(e.max()), 200) if thresholds is None else np.asarray(thresholds, np.float64)
    if x.ndim != 1 or (np.diff(x) < 0).any():
        raise ValueError("thresholds must be a 1-D increasing array")
    n = np.searchsorted(np.sort(e), x, side="right").astype(np.float64)
    return x, (n if counts else n / e.size)


def _condition_codes(condition, names) -> np.ndarray:
    c = np.asarray(condition)
    if c.ndim != 1:
        raise ValueError(f"condition must be a 1-D array (one entry per face), got shape {c.shape}")
    if c.dtype.kind in "US":
        unknown = sorted(set(c.tolist()) - set(names))
        if unknown:
            raise ValueError(f"condition has names {unknown} that are not in {tuple(names)}")
        return np.array([list(names).index(x) for x in c.tolist()], dtype=np.int64)
    if c.dtype.kind not in "iu" or (c.size and (c.min() < 0 or c.max() >= len(names))):
        raise ValueError(f"condition must hold codes 0..{len(names) - 1} into {tuple(names)} or their names")
    return c.astype(np.int64)


def per_condition(values, condition, names=None) -> dict:
    """Mean of ``values`` (M,) per condition, and over all faces.

    condition : (M,) codes into ``names`` (the datasets' ``condition`` field) or
        the names themselves; ``names`` defaults to
        :data:`dualface_lite.synth.CONDITIONS` (neutral, expression, illumination:
        the paper's Figs. 7-9).

    Returns ``{name: mean, ..., "all": mean}``; a condition with no face is left out.
    """
    if names is None:
        from .synth import CONDITIONS as names
    v = np.asarray(values, dtype=np.float64)
    codes = _condition_codes(condition, names)
    if v.shape != codes.shape:
        raise ValueError(f"values must have shape {codes.shape} (one per face), got {v.shape}")
    out = {name: float(v[codes == k].mean()) for k, name in enumerate(names) if (codes == k).any()}
    out["all"] = float(v.mean()) if v.size else float("nan")
    return out


def condition_table(rows: dict, condition, names=None, *, label: str = "", unit: str = "mm",
                    digits: int = 2, width: int = 12) -> str:
    """A per-condition table as text: one row per entry of ``rows``
    (label -> per-face values (M,)), one column per condition and one for all
    faces (:func:`per_condition`). For the chapters' and benchmarks' printouts."""
    if names is None:
        from .synth import CONDITIONS as names
    if not rows:
        raise ValueError("rows must hold at least one (label -> values) entry")
    table = {k: per_condition(v, condition, names) for k, v in rows.items()}
    cols = [c for c in (*names, "all") if c in next(iter(table.values()))]
    w0 = max(len(label), *(len(k) for k in table))
    head = f"{label:<{w0}s} " + " ".join(f"{c[:width]:>{width}s}" for c in cols)
    lines = [head + (f"   ({unit})" if unit else ""), "-" * len(head)]
    for k, r in table.items():
        lines.append(f"{k:<{w0}s} " + " ".join(f"{r.get(c, float('nan')):>{width}.{digits}f}" for c in cols))
    return "\n".join(lines)
