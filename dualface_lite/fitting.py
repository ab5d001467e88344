"""Fitting the morphable model to 68 landmarks (paper, section III-B-1, eq. (4)).

Given 68 iBUG landmarks ``L_i`` (pixels) of a photo, find the pose and the shape
coefficients of the face whose landmark vertices project onto them. The paper
writes the shape part as eq. (4)::

    S_0 = argmin_alpha  1/(2 sigma_L^2) sum_i || pi_i(Proj S_alpha) - L_i ||^2  +  lambda ||alpha||^2

with ``S_alpha = u_bar + sum_i alpha_i sigma_i u_i`` (:mod:`dualface_lite.model`);
the kit adds the six SFM expression weights ``e`` with a small ridge. ``Proj`` is
the camera (pose unknown too), and ``pi_i`` picks the vertex behind landmark ``i``.
:func:`fit_landmarks` solves it in four pieces:

1. **Camera** (:func:`estimate_camera`): the scaled orthographic camera that maps
   3D landmark vertices onto the 2D landmarks -- a linear affine estimate, the
   nearest scaled rotation by SVD ("gold standard"), then Gauss-Newton.
2. **Jaw contour** (:func:`contour_correspondences`): the 16 jaw landmarks are
   not fixed vertices; a detector puts them on the outline of the face in the
   photo. With the current face and pose each jaw landmark is re-assigned to the
   silhouette vertex in its direction, and it counts only across the jaw line
   (it may slide along it).
3. **Shape** (:func:`solve_shape`): for a fixed orthographic camera the projection
   is linear in ``(alpha, e)``, so eq. (4) is linear least squares, solved in closed
   form by one small linear solve (the normal equations). A few Levenberg-Marquardt
   steps then move pose and shape together (:func:`_gauss_newton`), because the
   camera/shape alternation alone crawls along the pitch <-> depth valley.
4. **Pinhole camera** (default ``projection="perspective"``): a photo is a perspective
   image, and a face close to the camera is visibly distorted (the nose magnified
   against the ears). From the orthographic fit, Levenberg-Marquardt refines pose,
   shape, expression and the focal length together under ``u = c + f P V / d``
   (:func:`_perspective_lm`).

``sigma_L`` is scale-free: it is stated for a face of a reference size in the photo
(``SIGMA_L_REFERENCE`` px per mm) and scaled with the face, and by default it is
estimated from the landmarks themselves (:func:`landmark_sigma`). No photo tells a
face's absolute size (twice as large and twice as far projects the same); the prior
sets it (``face_size``).

Then the vertex colours of the paper: the colour of the pixel each visible
vertex projects to; invisible vertices get exactly 0 (r, g, b).

Conventions are those of :mod:`dualface_lite.camera`: object frame in mm,
pixels ``(u, v)`` with ``v`` down and pixel centres at integers.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from . import checks
from .camera import Camera, face_crop
from .model import IBUG_JAW, IBUG_NOT_JAW, MorphableModel

__all__ = ["Fit", "fit_landmarks", "estimate_camera", "solve_shape", "contour_correspondences",
           "silhouette_along_rays", "RAY_ORIGIN_DEPTH_MM", "sample_colors", "landmark_box", "photo_colors",
           "make_fit", "landmark_sigma", "CONTOUR_METHODS", "PROJECTIONS", "DEFAULT_LAM", "DEFAULT_SIGMA_L",
           "DEFAULT_LAM_EXPR", "DEFAULT_FACE_SIZE", "DEFAULT_FOCAL_DISTANCE", "DEFAULT_FOCAL_SPREAD",
           "SIGMA_L_REFERENCE", "SIGMA_L_MIN", "SIGMA_L_PER_RESIDUAL"]

CONTOUR_METHODS = ("ray", "outline", "candidates", "fixed")
_GN_STEPS = 5        # Levenberg-Marquardt steps per iteration of the fit
_I3 = np.eye(3)
_WEDGE_DEG = 2.0     # half-angle of the rays of the "ray" contour update

# Defaults chosen by benchmarks/tune_fitting.py on a validation mix (seeds 50000+: the kit's
# population, the model's prior, faces further outside its span, 0.92x / 1.08x face sizes,
# landmark noise 0.5-5 px, yaw up to 45 deg; its figures are in benchmarks/README.md).
# lam stays at 0.5 (MAP under alpha ~ N(0, I)); with sigma_l and focal fixed only lam * sigma_l^2
# matters.
DEFAULT_LAM = 0.5
DEFAULT_SIGMA_L = None       # None: estimated from the landmarks (landmark_sigma)
DEFAULT_LAM_EXPR = 0.01      # a small ridge keeps the normal equations positive definite
SIGMA_L_REFERENCE = 0.89     # px per mm: the face size at which sigma_l is stated (the kit's photos)
SIGMA_L_MIN = 0.5            # px at the reference size: the floor of the estimate
SIGMA_L_PER_RESIDUAL = 2.0   # the estimate: this times the rms landmark residual of a first fit
_SIGMA_L_FIRST = 2.5         # px at the reference size: the first iteration when sigma_l is estimated
DEFAULT_FACE_SIZE = 1.04     # prior face size relative to the fitted shape (no photo tells it)
DEFAULT_FOCAL_DISTANCE = 1200.0   # mm: the centre of the focal length's prior (f = scale * distance)
DEFAULT_FOCAL_SPREAD = 1.0        # its spread in log f (a factor e either way)
PROJECTIONS = ("perspective", "orthographic")
_PERSPECTIVE_PASSES = 2      # jaw contour + Levenberg-Marquardt under the pinhole camera
_PERSPECTIVE_STEPS = 8
_MIN_DISTANCE_MM = 150.0     # a pinhole camera closer than this to the face's centre is a wrong focal length
_DEPTH_MM = 1000.0  # an orthographic camera's t[2]: only sets depths (face ~1 m in front)


def _rodrigues(w: np.ndarray) -> np.ndarray:
    """Axis-angle vector (3,) -> rotation (3, 3): ``I + sin(t)/t K + (1 - cos(t))/t^2 K^2``."""
    th = float(np.sqrt(w @ w))
    K = np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])
    if th < 1e-12:
        return _I3 + K
    return _I3 + np.sin(th) / th * K + (1 - np.cos(th)) / th**2 * (K @ K)


def _weighed(a: np.ndarray, Wl) -> np.ndarray:
    """``W_i a_i`` in place for the landmarks ``i`` whose weight is not the identity; ``a`` (68, 2) or
    (68, 2, P); ``Wl`` ``None`` (all identity) or ``(rows, W)`` from :func:`_weight_rows`."""
    if Wl is not None and len(Wl[0]):
        rows, W = Wl
        a[rows] = W @ a[rows] if a.ndim == 3 else (W @ a[rows][:, :, None])[:, :, 0]
    return a


def _weight_rows(Wl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, Wl[rows])``: the landmarks whose (2, 2) weight is not the identity (the identity changes
    nothing, so :func:`_weighed` skips those rows)."""
    rows = np.flatnonzero(~(Wl == np.eye(2)).all(axis=(1, 2)))
    return rows, Wl[rows]


def _affine_camera(X: np.ndarray, y: np.ndarray):
    """Linear step of the gold-standard algorithm: the affine camera ``y ~ A X + b``
    (A: 2x3) by least squares on normalised points, then the nearest scaled
    rotation ``s [r1; r2]`` to ``A`` via its SVD ``A = U diag(d) V^T``:
    ``[r1; r2] = U V^T``, ``s = (d1 + d2) / 2``, ``r3 = r1 x r2``."""
    mx, my = X.mean(0), y.mean(0)
    Xc, yc = X - mx, y - my
    kx = np.sqrt(3.0) / max(np.sqrt((Xc**2).sum(1).mean()), 1e-12)   # isotropic normalisation
    ky = np.sqrt(2.0) / max(np.sqrt((yc**2).sum(1).mean()), 1e-12)
    M, *_ = np.linalg.lstsq(Xc * kx, yc * ky, rcond=None)             # (3, 2): y = X M
    A = M.T * (kx / ky)                                               # back to mm -> px
    U, d, Vt = np.linalg.svd(A, full_matrices=False)                  # U (2,2), Vt (2,3)
    R2 = U @ Vt
    s = float(d.mean())
    R = np.vstack([R2, np.cross(R2[0], R2[1])])
    t2 = my / s - R2 @ mx                                             # y = s (R2 X + t2)
    return R, s, t2


def _gauss_newton(X0: np.ndarray, Bp: np.ndarray, y: np.ndarray, R: np.ndarray, s: float, t2: np.ndarray,
                  c: np.ndarray, w: np.ndarray, n_iter: int = 10, tol: float = 1e-10, Wl=None):
    """Levenberg-Marquardt (damped Gauss-Newton) on

        E = sum_i || s (P R X_i(c) + t2) - y_i ||^2 + sum_k w_k c_k^2,   X_i(c) = X0_i + Bp_i c

    over the rotation (update ``R <- exp([w]_x) R``, axis-angle ``w``), the scale
    ``s``, the 2D translation ``t2`` and -- when ``Bp`` has columns -- the shape
    coefficients ``c`` jointly. ``P = [I2 0]``; ``y`` in the y-up frame centred on
    the principal point. With ``Y_i = R X_i`` the Jacobian rows of landmark ``i`` are

        [ -s P [Y_i]_x  |  P Y_i + t2  |  s I2  |  s P R Bp_i ]

    (``d(R X)/dw = -[R X]_x``), and ``diag(sqrt(w))`` for the ridge rows. Each step
    solves ``(J^T J + mu diag(J^T J)) delta = -J^T r``; ``mu`` grows until the
    step lowers ``E``. With no shape columns this is the camera refinement of
    :func:`estimate_camera`. ``Wl``: the landmarks' residual weights ``W_i`` (each residual
    becomes ``W_i r_i``) as ``(rows, W)`` from :func:`_weight_rows`; ``None``: all the identity."""
    L, _, K = Bp.shape
    sw = np.sqrt(w)

    def resid(R, s, t2, c):
        X = X0 + Bp @ c if K else X0
        r = _weighed(s * (X @ R[:2].T + t2) - y, Wl).reshape(-1)
        return np.concatenate([r, sw * c]) if K else r

    r = resid(R, s, t2, c)
    cost = r @ r
    mu = 1e-6
    J = np.zeros((2 * L + K, 6 + K))
    if K:
        J[2 * L:, 6:] = np.diag(sw)
    Jd = J[:2 * L].reshape(L, 2, 6 + K)
    for _ in range(n_iter):
        Y = (X0 + Bp @ c if K else X0) @ R.T
        # -s P [Y]_x: rows (0, -Y_z, Y_y) and (Y_z, 0, -Y_x)
        Jd[:, 0, 0] = Jd[:, 1, 1] = 0.0
        Jd[:, 0, 1], Jd[:, 0, 2] = s * Y[:, 2], -s * Y[:, 1]
        Jd[:, 1, 0], Jd[:, 1, 2] = -s * Y[:, 2], s * Y[:, 0]
        Jd[:, :, 3] = Y[:, :2] + t2
        Jd[:, 0, 4] = Jd[:, 1, 5] = s
        Jd[:, 0, 5] = Jd[:, 1, 4] = 0.0
        if K:
            Jd[:, :, 6:] = s * (R[:2] @ Bp)
        _weighed(Jd, Wl)
        H, g = J.T @ J, J.T @ r
        dH = np.diag(H) + 1e-12
        for _ in range(10):
            Hd = H.copy()
            Hd.flat[::Hd.shape[0] + 1] += mu * dH   # the diagonal
            step = np.linalg.solve(Hd, -g)
            if -(g @ step) <= tol * max(cost, 1e-30):   # predicted gain negligible: converged
                break
            Rn = _rodrigues(step[:3]) @ R
            sn, tn, cn_ = s + step[3], t2 + step[4:6], c + step[6:]
            rn = resid(Rn, sn, tn, cn_)
            cn = rn @ rn
            if sn > 0 and cn <= cost:
                break
            mu *= 10.0
        else:
            break
        if -(g @ step) <= tol * max(cost, 1e-30):
            break
        done = cost - cn <= tol * max(cost, 1e-30)
        R, s, t2, c, r, cost = Rn, sn, tn, cn_, rn, cn
        mu = max(mu / 10.0, 1e-9)
        if done:
            break
    U, _, Vt = np.linalg.svd(R)          # keep R exactly orthonormal
    return U @ Vt, float(s), t2, c


def _refine_camera(X, y, R, s, t2, n_iter: int = 10):
    R, s, t2, _ = _gauss_newton(X, np.zeros((len(X), 3, 0)), y, R, s, t2, np.zeros(0), np.zeros(0), n_iter)
    return R, s, t2


def _perspective_lm(X0: np.ndarray, Bp: np.ndarray, y: np.ndarray, R: np.ndarray, t: np.ndarray, f: float,
                    c: np.ndarray, w: np.ndarray, Wl=None, n_iter: int = 8, log_f_prior=None,
                    tol: float = 1e-10):
    """Levenberg-Marquardt on eq. (4) under a pinhole camera:

        E = sum_i || W_i (f P V_i / d_i - y_i) ||^2 + sum_k w_k c_k^2 [+ rho^2 (log f - mu)^2]

    with ``V_i = R X_i(c) + t`` (view frame), ``d_i = -V_i[2]`` its depth,
    ``X_i(c) = X0_i + Bp_i c``, ``P = [I2 0]`` and ``y`` the landmarks in the y-up frame
    centred on the principal point. Unknowns: rotation (axis-angle update
    ``R <- exp([w]_x) R``), translation ``t`` (3), the coefficients ``c`` and, when
    ``log_f_prior = (mu, rho)`` is given (else ``f`` stays fixed), the perspective's
    strength ``a``: ``f -> f e^a`` and the face's mean depth ``d_bar -> d_bar e^a``
    together. That keeps the image scale ``f / d`` and changes only how much nearer
    points are magnified; stepping ``log f`` and ``t_z`` apart instead crawls along the
    narrow valley where ``f / d`` is constant. Jacobian rows of landmark ``i``
    (``q = f / d_i``, ``x, y`` the view coordinates)::

        dy_i/dV_i = q [[1, 0, x/d], [0, 1, y/d]],   dV/dw = -[R X_i]_x,   dV/dt = I,
        dV/dc = R Bp_i,   dy_i/da = y_i - dbar * dy_i/dV_z.

    ``Wl``: the weights ``W_i`` as ``(rows, W)`` (:func:`_weight_rows`), ``None`` for none.
    """
    L, _, K = Bp.shape
    fit_f = log_f_prior is not None
    nf = 1 if fit_f else 0
    P = 6 + nf + K
    sw = np.sqrt(w)

    def resid(R, t, f, c):
        V = (X0 + Bp @ c if K else X0) @ R.T + t
        d = -V[:, 2]
        if np.any(d <= 1e-6):
            return None
        r = f * V[:, :2] / d[:, None] - y
        parts = [_weighed(r, Wl).reshape(-1), sw * c]
        if fit_f:
            parts.append([log_f_prior[1] * (np.log(f) - log_f_prior[0])])
        return np.concatenate(parts)

    r = resid(R, t, f, c)
    cost = r @ r
    mu = 1e-4
    J = np.zeros((len(r), P))
    J[2 * L:2 * L + K, 6 + nf:] = np.diag(sw)
    if fit_f:
        J[-1, 6] = log_f_prior[1]
    Jd = J[:2 * L].reshape(L, 2, P)
    for _ in range(n_iter):
        Y = (X0 + Bp @ c if K else X0) @ R.T
        V = Y + t
        d = -V[:, 2]
        dbar = float(d.mean())
        q = f / d
        G = np.zeros((L, 2, 3))                      # d(projection)/dV
        G[:, 0, 0] = G[:, 1, 1] = q
        G[:, 0, 2], G[:, 1, 2] = q * V[:, 0] / d, q * V[:, 1] / d
        Sk = np.zeros((L, 3, 3))                     # -[Y]_x
        Sk[:, 0, 1], Sk[:, 0, 2] = Y[:, 2], -Y[:, 1]
        Sk[:, 1, 0], Sk[:, 1, 2] = -Y[:, 2], Y[:, 0]
        Sk[:, 2, 0], Sk[:, 2, 1] = Y[:, 1], -Y[:, 0]
        Jd[:, :, 0:3] = G @ Sk
        Jd[:, :, 3:6] = G
        if fit_f:   # f and the distance together (f e^a, d e^a): the perspective's strength alone
            Jd[:, :, 6] = q[:, None] * V[:, :2] - G[:, :, 2] * dbar
        if K:
            Jd[:, :, 6 + nf:] = G @ (R @ Bp)
        _weighed(Jd, Wl)
        H, g = J.T @ J, J.T @ r
        dH = np.diag(H) + 1e-12
        ok = False
        for _ in range(10):
            Hd = H.copy()
            Hd.flat[::Hd.shape[0] + 1] += mu * dH   # the diagonal
            step = np.linalg.solve(Hd, -g)
            if -(g @ step) <= tol * max(cost, 1e-30):
                break
            Rn = _rodrigues(step[:3]) @ R
            tn = t + step[3:6]
            fn = f
            if fit_f:
                fn = f * np.exp(step[6])
                tn[2] -= dbar * np.expm1(step[6])
            cn_ = c + step[6 + nf:]
            rn = resid(Rn, tn, fn, cn_)
            if rn is not None and rn @ rn <= cost:
                ok = True
                break
            mu *= 10.0
        if not ok:
            break
        cn = rn @ rn
        done = cost - cn <= tol * max(cost, 1e-30)
        R, t, f, c, r, cost = Rn, tn, fn, cn_, rn, cn
        mu = max(mu / 10.0, 1e-9)
        if done:
            break
    U, _, Vt = np.linalg.svd(R)
    return U @ Vt, t, float(f), c


def _make_camera(R, s, t2, width, height, depth_ref: float = 0.0, center=None) -> Camera:
    """An orthographic :class:`Camera` (principal point ``center``, default the image centre).
    ``depth_ref`` is ``r3 . X`` of a reference point, placed ``_DEPTH_MM`` in front."""
    t = np.array([t2[0], t2[1], -_DEPTH_MM - depth_ref])
    return Camera(R=R, t=t, focal=s, width=width, height=height, kind="orthographic", center=center)


def estimate_camera(points3d, points2d, width: int, height: int, refine: bool = True, center=None) -> Camera:
    """The scaled orthographic camera that best maps ``points3d`` onto ``points2d``.

    Parameters
    ----------
    points3d : (L, 3) object-frame points in mm (L >= 4, not all on one line;
        with all of them in one plane the depth direction is a guess).
    points2d : (L, 2) their pixel positions ``(u, v)`` (kit convention: ``u`` right,
        ``v`` down, pixel centres at integers; see :mod:`dualface_lite.camera`).
    width, height : image size in px; the camera's principal point is the image
        centre ``((width-1)/2, (height-1)/2)``.
    refine : polish the linear estimate by Gauss-Newton on the reprojection error.
    center : the principal point ``(cx, cy)`` in px (default: the image centre);
        :func:`fit_landmarks` passes the middle of the landmarks when it has no photo.

    Returns
    -------
    A :class:`~dualface_lite.camera.Camera` with ``kind="orthographic"``:
    ``u = cx + s * (R X + t)_x``, ``v = cy - s * (R X + t)_y`` with ``s = camera.focal``
    in px/mm. ``t[2]`` only sets depths: the points' centroid is placed 1000 mm in
    front of the camera.

    Method (the "gold standard" of Hartley & Zisserman for affine cameras):

    1. Flip ``v`` into a y-up frame centred on the principal point,
       ``y = (u - cx, cy - v)``, so the model is ``y = s (P R X + t2)``, ``P = [I2 0]``.
    2. Linear: fit the affine camera ``y ~ A X + b`` (A: 2x3) by least squares,
       then take the nearest scaled rotation to ``A`` by SVD
       (``A = U D V^T -> s = mean(D), [r1; r2] = U V^T, r3 = r1 x r2``).
    3. Refine (``refine=True``): Gauss-Newton / Levenberg-Marquardt over an
       axis-angle rotation update, ``s`` and ``t2``, minimising
       ``sum_i ||s (P R X_i + t2) - y_i||^2``.

    From exact points of a scaled orthographic camera the result is exact.
    """
    X = checks.points(points3d, "points3d", dim=3)
    uv = checks.points(points2d, "points2d", dim=2)
    if len(X) != len(uv):
        raise ValueError(f"points3d and points2d must have the same length, got {len(X)} and {len(uv)}")
    if len(X) < 4:
        raise ValueError(f"points3d needs at least 4 points, got {len(X)}")
    if int(width) <= 0 or int(height) <= 0:
        raise ValueError(f"width and height must be positive, got {width}x{height}")
    Xc = X - X.mean(0)
    if np.linalg.svd(Xc, compute_uv=False)[1] < 1e-9 * max(1.0, np.abs(Xc).max()):
        raise ValueError("points3d are (nearly) collinear: the camera is not determined")
    cx, cy = ((int(width) - 1) / 2.0, (int(height) - 1) / 2.0) if center is None else map(float, center)
    y = np.stack([uv[:, 0] - cx, cy - uv[:, 1]], axis=1)
    if np.ptp(y, axis=0).max() < 1e-9:
        raise ValueError("points2d are all at one pixel: the camera is not determined")
    R, s, t2 = _affine_camera(X, y)
    if refine:
        R, s, t2 = _refine_camera(X, y, R, s, t2)
    return _make_camera(R, s, t2, width, height, depth_ref=float(R[2] @ X.mean(0)), center=(cx, cy))


# ---------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# the model as arrays the solver wants (cached per model)
# ---------------------------------------------------------------------------

_CACHE: dict = {}


def _model_arrays(model: MorphableModel) -> dict:
    """``B`` (N, 3, m + n_e) float64: ``[U diag(sigma) | expressions]`` per vertex, so a
    face is ``mean + B @ c`` with ``c = [alpha; e]``; plus the triangles as int64."""
    # keyed by the model object and its arrays: reassigning model.basis (etc.) rebuilds
    key = (id(model), id(model.mean), id(model.basis), id(model.expressions), model.sigma.tobytes())
    hit = _CACHE.get(key)
    if hit is not None and hit["model"] is model:
        return hit
    N = model.n_vertices
    B = model.linear_basis().reshape(N, 3, -1)
    arr = dict(model=model, mean=model.mean.astype(np.float64), B=B, Bflat=B.reshape(3 * N, -1),
               F=np.asarray(model.triangles, dtype=np.int64))
    _CACHE.clear()  # one model at a time is the common case; keep memory bounded
    _CACHE[key] = arr
    return arr


# ---------------------------------------------------------------------------
# shape: eq. (4) in closed form
# ---------------------------------------------------------------------------

def solve_shape(camera: Camera, mean_pts, basis_pts, landmarks, lam: float, sigma_l: float,
                lam_expr: float = DEFAULT_LAM_EXPR, n_components: int | None = None,
                n_expr: int | None = None, weights=None) -> np.ndarray:
    """Eq. (4) for a fixed camera, in closed form.

    Parameters
    ----------
    camera : an orthographic :class:`Camera` (the current pose).
    mean_pts : (L, 3) mean-face position of each landmark's vertex.
    basis_pts : (L, 3, K) how each of them moves per coefficient:
        ``X_i(c) = mean_pts[i] + basis_pts[i] @ c``; the first ``n_components``
        columns are ``sigma_j u_j`` (identity), the last ``n_expr`` are expression
        blendshapes.
    landmarks : (L, 2) pixels.
    lam, sigma_l, lam_expr : the weights below.
    weights : optional (L, 2, 2) matrices ``W_i`` applied to each landmark's
        residual (y-up frame): the identity counts the full 2D distance; the
        projector ``n n^T`` on the outline's normal ``n`` counts only the distance
        across the outline (the jaw landmarks, see :func:`fit_landmarks`).

    Returns ``c = [alpha; e]`` (K,).

    The projection is linear in ``c``: in the y-up frame centred on the principal
    point, ``y_i = s (P R X_i + t2)`` with ``P = [I2 0]``, so the stacked
    projections are ``A c + p0`` with ``A_i = s P R basis_pts[i]`` (2 x K) and
    ``p0_i = s (P R mean_pts[i] + t2)``. With ``b = y - p0`` the objective

        E(c) = 1/(2 sigma_l^2) ||A c - b||^2 + lam ||alpha||^2 + lam_expr ||e||^2

    (eq. (4), plus a small ridge ``lam_expr`` on the expression weights so that a
    neutral face does not borrow expressions to explain landmark noise) is
    quadratic; setting its gradient to zero gives the normal equations

        (A^T A + 2 sigma_l^2 D) c = A^T b,    D = diag(lam, ..., lam, lam_expr, ..., lam_expr)

    -- one K x K solve (K = 63 + 6). Multiplying E by a constant does not move
    its minimum, so only ``lam * sigma_l^2`` (and ``lam_expr * sigma_l^2``)
    matter.
    """
    X0 = np.asarray(mean_pts, dtype=np.float64)
    Bp = np.asarray(basis_pts, dtype=np.float64)
    K = Bp.shape[2]
    n_expr = 0 if n_expr is None else int(n_expr)
    n_id = K - n_expr if n_components is None else int(n_components)
    s, P = camera.focal, camera.R[:2]
    A = s * np.einsum("ab,lbk->lak", P, Bp).reshape(-1, K)           # (2L, K)
    p0 = s * (X0 @ P.T + camera.t[:2])
    y = np.stack([landmarks[:, 0] - camera.center[0], camera.center[1] - landmarks[:, 1]], axis=1)
    b = (y - p0).reshape(-1)
    if weights is not None:
        Wl = np.asarray(weights, dtype=np.float64)
        A = np.einsum("lab,lbk->lak", Wl, A.reshape(-1, 2, K)).reshape(-1, K)
        b = np.einsum("lab,lb->la", Wl, b.reshape(-1, 2)).reshape(-1)
    d = np.concatenate([np.full(n_id, lam), np.full(K - n_id, lam_expr)])
    H = A.T @ A + np.diag(2.0 * sigma_l**2 * d)
    return np.linalg.solve(H, A.T @ b)


# ---------------------------------------------------------------------------
# jaw contour
# ---------------------------------------------------------------------------

def _outline(p: np.ndarray, n_bins: int = 360) -> np.ndarray:
    """Vertices on the outline of a projected point set (N, 2): around the centroid,
    the farthest point in each of ``n_bins`` angular sectors."""
    c = p.mean(0)
    d = p - c
    ang = np.arctan2(d[:, 1], d[:, 0])
    b = np.minimum(((ang + np.pi) * (n_bins / (2 * np.pi))).astype(np.int64), n_bins - 1)
    r2 = (d**2).sum(1)
    order = np.lexsort((r2, b))                      # by sector, then by distance
    last = np.r_[b[order][1:] != b[order][:-1], True]
    return order[last]


#: how far behind the middle of the nose (mm, object frame) the rays of
#: :func:`silhouette_along_rays` start: a point inside the head
RAY_ORIGIN_DEPTH_MM = 45.0


def silhouette_along_rays(model: MorphableModel, vertices, camera: Camera, through,
                          wedge_deg: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """The face's silhouette in given image directions: one vertex per ray.

    From ``c``, the image of a point inside the head (``RAY_ORIGIN_DEPTH_MM`` behind the
    middle of the nose, between iBUG 28 and 31), cast a ray through each of the points
    ``through`` (R, 2) px; the vertex of the ray is the one whose projection lies farthest
    out along it among the vertices within ``wedge_deg`` of it: the outline of the face
    in that direction. This places the synthetic jaw landmarks
    (:func:`dualface_lite.synth.jaw_outline`) and re-assigns the fit's jaw landmarks
    (:func:`contour_correspondences`, ``method="ray"``).

    vertices : (N, 3) face in the object frame; camera : its :class:`Camera`.

    Returns ``(index (R,) int64, found (R,) bool)``; where no vertex lies in a ray's
    wedge, ``found`` is False and the index is meaningless.
    """
    V = np.asarray(vertices, dtype=np.float64)
    q = np.asarray(through, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != 2:
        raise ValueError(f"through must have shape (R, 2) (pixels), got {q.shape}")
    p = camera.project(V)
    lm3 = V[model.ibug68]
    centre3 = 0.5 * (lm3[27] + lm3[30]) - np.array([0.0, 0.0, RAY_ORIGIN_DEPTH_MM])
    c = camera.project(centre3[None])[0]
    dirs = q - c
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True) + 1e-12
    rel = (p - c).T                                        # (2, N)
    along = dirs @ rel                                     # (R, N) distance along each ray
    r = np.sqrt(rel[0]**2 + rel[1]**2) + 1e-9
    inside = along > r * np.cos(np.deg2rad(wedge_deg))    # within the wedge around the ray
    best = np.where(inside, along, -np.inf).argmax(axis=1).astype(np.int64)
    return best, inside.any(axis=1)


def contour_correspondences(model: MorphableModel, vertices, camera: Camera, landmarks,
                            method: str = "ray", wedge_deg: float = 2.0) -> np.ndarray:
    """Vertex (16,) behind each jaw landmark (iBUG 1-8, 10-17) under ``camera``.

    A detector puts the jaw landmarks on the outline of the face it sees, and the
    outline moves over the surface as the head turns: at 30 deg of yaw the far
    cheek's outline is centimetres away from the frontal jaw vertices. So the
    fit re-chooses these correspondences at every iteration, with its current
    face ``vertices`` (N, 3) and pose:

    ``"ray"`` (default): :func:`silhouette_along_rays` through the jaw
        landmarks: the face's silhouette in each landmark's direction, seen
        from a point inside the head (the nearest vertex where a ray's wedge
        holds none). The synthetic jaw points are placed the same way.
    ``"outline"``: the outline of the projected vertices (around their centroid,
        the farthest vertex in each 1 deg sector); each jaw landmark takes the
        outline vertex nearest to it in the image.
    ``"candidates"``: as eos does, the nearest (in the image) of the 17 contour
        candidates of that side (``model.contour_right`` / ``contour_left``).
    ``"fixed"``:
        the frontal defaults ``model.ibug68`` (no update).

    Everything is vectorized: one (N, 16) array of projections onto the rays.
    ``benchmarks/tune_fitting.py`` compares the four.
    """
    L = np.asarray(landmarks, dtype=np.float64)[IBUG_JAW]
    if method == "fixed":
        return model.ibug68[IBUG_JAW].astype(np.int64)
    V = np.asarray(vertices)
    if method == "candidates":
        out = np.empty(16, dtype=np.int64)
        for side, cand in ((slice(0, 8), model.contour_right), (slice(8, 16), model.contour_left)):
            q = camera.project(V[cand])
            d2 = ((L[side, None, :] - q[None]) ** 2).sum(-1)
            out[side] = cand[d2.argmin(1)]
        return out
    if method == "ray":
        best, found = silhouette_along_rays(model, V, camera, L, wedge_deg=wedge_deg)
        if not found.all():                                    # no vertex in a wedge: nearest vertex
            p = camera.project(V)
            best[~found] = (((L[~found, None, :] - p[None]) ** 2).sum(-1)).argmin(1)
        return best
    if method == "outline":
        p = camera.project(V)
        o = _outline(p)
        d2 = ((L[:, None, :] - p[o][None]) ** 2).sum(-1)
        return o[d2.argmin(1)].astype(np.int64)
    raise ValueError(f"method must be one of {CONTOUR_METHODS}, got {method!r}")


def _jaw_weights(y: np.ndarray, mode: str) -> np.ndarray:
    """(68, 2, 2) residual weights ``W_i``: the identity (full 2D distance), except
    on the 16 jaw landmarks with ``mode="slide"``: ``n n^T`` with ``n`` the unit
    normal of the landmarks' own jaw polyline (iBUG 1..17, y-up frame), so only
    the distance *across* the jaw line counts and a landmark may slide along it.
    A detector's jaw points are well placed across the outline but loosely along
    it; sliding keeps that uncertainty out of the shape."""
    Wl = np.tile(np.eye(2), (68, 1, 1))
    if mode == "slide":
        line = y[:17]
        tang = np.empty_like(line)
        tang[1:-1] = line[2:] - line[:-2]
        tang[0], tang[-1] = line[1] - line[0], line[-1] - line[-2]
        tang /= np.linalg.norm(tang, axis=1, keepdims=True) + 1e-12
        n = np.stack([-tang[:, 1], tang[:, 0]], axis=1)[IBUG_JAW]
        Wl[IBUG_JAW] = n[:, :, None] * n[:, None, :]
    return Wl


# ---------------------------------------------------------------------------
# colours
# ---------------------------------------------------------------------------

def sample_colors(image, uv, visible) -> np.ndarray:
    """Bilinear colour (N, 3) float32 in [0, 1] of ``image`` at ``uv`` (N, 2) px
    where ``visible``; exactly 0 elsewhere (the paper: "for those vertices
    invisible in the image, we set their r, g, b values as 0")."""
    img = checks.rgb_pixels(image)
    uv = np.asarray(uv, dtype=np.float64)
    vis = np.asarray(visible, dtype=bool).reshape(-1)
    if uv.ndim != 2 or uv.shape[1] != 2 or vis.shape[0] != uv.shape[0]:
        raise ValueError(f"uv must be (N, 2) and visible (N,), got {uv.shape} and {vis.shape}")
    return _sample(img, uv, vis)


def _sample(img: np.ndarray, uv: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``img`` (:func:`dualface_lite.checks.rgb_pixels`: uint8, or float64 in [0, 1])."""
    H, W = img.shape[:2]
    out = np.zeros((len(uv), 3), dtype=np.float32)
    idx = np.flatnonzero(vis & np.isfinite(uv).all(1))
    u = np.clip(uv[idx, 0], 0, W - 1)
    v = np.clip(uv[idx, 1], 0, H - 1)
    j0 = np.minimum(np.floor(u).astype(np.int64), W - 2)
    i0 = np.minimum(np.floor(v).astype(np.int64), H - 2)
    fu, fv = (u - j0)[:, None], (v - i0)[:, None]
    if img.dtype == np.uint8:   # only the pixels read are converted, to rgb_image's values
        def px(i, j):
            return img[i, j].astype(np.float64) / 255.0
    else:
        def px(i, j):
            return img[i, j]
    c = ((1 - fv) * ((1 - fu) * px(i0, j0) + fu * px(i0, j0 + 1)) +
         fv * ((1 - fu) * px(i0 + 1, j0) + fu * px(i0 + 1, j0 + 1)))
    out[idx] = c
    return out


def landmark_sigma(residuals, weights, scale: float) -> float:
    """``sigma_L`` of eq. (4) estimated from a first fit's landmark residuals (the default
    of :func:`fit_landmarks`), in px of the photo.

    ``residuals`` (68, 2) px (y-up frame), ``weights`` (68, 2, 2) the per-landmark
    ``W_i`` (:func:`fit_landmarks`: the jaw landmarks count only across the jaw line),
    ``scale`` the face's size in the photo (px per mm). The root-mean-square residual per
    counted coordinate (``136 - 16`` of them), times ``SIGMA_L_PER_RESIDUAL``: the
    residual of a first fit is smaller than the landmarks' noise plus what the model
    cannot express, because the fit has absorbed part of it. Never below
    ``SIGMA_L_MIN`` px at the reference size (``SIGMA_L_REFERENCE`` px/mm), scaled to the
    photo's size like everything else.
    """
    res = checks.landmarks(residuals, "residuals", flat_ok=True)
    W = np.asarray(weights, dtype=np.float64)
    if W.shape != (68, 2, 2) or not np.all(np.isfinite(W)):
        raise ValueError(f"weights must be (68, 2, 2) finite matrices, got shape {W.shape}")
    scale = checks.number(scale, "scale", positive=True)
    r = W @ res[:, :, None]
    rms = float(np.sqrt((r**2).sum() / (2 * 68 - len(IBUG_JAW))))
    return max(SIGMA_L_MIN * scale / SIGMA_L_REFERENCE, SIGMA_L_PER_RESIDUAL * rms)


# ---------------------------------------------------------------------------
# the fit
# ---------------------------------------------------------------------------

@dataclass
class Fit:
    """The result of :func:`fit_landmarks`: the personalised template of the paper.

    Attributes
    ----------
    vertices : (N, 3) float32, ``S_0`` in the model's object frame (mm).
    colors : (N, 3) float32 in [0, 1], the photo's colour at each visible vertex
        (bilinear), exactly 0 at invisible ones (all 0 without an image).
    visible : (N,) bool, vertices the fitted camera sees (all False without an image).
    camera : the fitted :class:`Camera` (its ``R``, ``t`` are the pose): a pinhole camera
        (``focal`` in px) by default, or an orthographic one (``focal`` = scale in px/mm);
        width/height = the image's, or :func:`landmark_box`.
    alpha : (m,) float32 identity coefficients (in standard deviations; zeros
        beyond ``n_components``), ``expr`` : (6,) float32 blendshape weights, so
        ``vertices == scale * model.shape(alpha, expr)``.
    landmark_vertices : (68,) int, the vertex behind each landmark (jaw ones
        from the contour update).
    landmarks_fit : (68, 2) float32, where those vertices project (px).
    landmark_error : mean distance (px) between the given and the fitted landmarks.
    n_iter : iterations run; ``seconds`` : wall time of the fit.
    scale : the ``face_size`` applied (1 for the baselines).
    sigma_l : the ``sigma_L`` used, in px at the reference size ``SIGMA_L_REFERENCE``
        (NaN for the baselines).
    """

    vertices: np.ndarray
    colors: np.ndarray
    visible: np.ndarray
    camera: Camera
    alpha: np.ndarray
    expr: np.ndarray
    landmark_vertices: np.ndarray
    landmark_error: float
    landmarks_fit: np.ndarray
    n_iter: int = 0
    seconds: float = 0.0
    scale: float = 1.0
    sigma_l: float = float("nan")

    @property
    def angles(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) of the fitted pose in degrees."""
        return self.camera.angles


def landmark_box(landmarks) -> tuple[int, int]:
    """Width, height (px) of the image a fit assumes when it has no photo: one that holds
    the landmarks (68, 2) with a margin of half the face's size (pixel coordinates
    unchanged: the box starts at 0)."""
    L = np.asarray(landmarks, dtype=np.float64)
    ext = float(max(np.ptp(L[:, 0]), np.ptp(L[:, 1]), 1.0))
    w = int(np.ceil(max(L[:, 0].max(), 0) + 0.5 * ext)) + 1
    h = int(np.ceil(max(L[:, 1].max(), 0) + 0.5 * ext)) + 1
    return max(w, 2), max(h, 2)


def photo_colors(camera: Camera, vertices, triangles, image) -> tuple[np.ndarray, np.ndarray]:
    """The paper's vertex colours (III-B-1): ``(visible (N,) bool, colors (N, 3) float32)``.

    Visibility by z-buffer (:func:`dualface_lite.render.vertex_visibility`) under
    ``camera``, then the photo's colour (bilinear) at each visible vertex's pixel and
    exactly 0 at the others; without an image (``None``) nothing is visible and every
    colour is 0."""
    V = np.asarray(vertices, dtype=np.float32)
    if image is None:
        return np.zeros(len(V), dtype=bool), np.zeros((len(V), 3), dtype=np.float32)
    from .render import vertex_visibility

    img = checks.rgb_pixels(image)
    visible = vertex_visibility(camera, V, triangles)
    return visible, _sample(img, camera.project(V), visible)


def make_fit(model: MorphableModel, vertices, camera: Camera, landmark_vertices, landmarks, image=None,
             alpha=None, expr=None, n_iter: int = 0, seconds: float = 0.0) -> Fit:
    """The :class:`Fit` record of a face posed onto landmarks: sets the orthographic
    camera's depth (``t[2]``: the face about 1 m in front; it changes no pixel), the
    colours (:func:`photo_colors`) and the landmark error. Used by :func:`fit_landmarks`
    and by the baselines (:mod:`dualface_lite.baselines`), so every method's ``Fit``
    means the same."""
    V = np.asarray(vertices, dtype=np.float64)
    L = np.asarray(landmarks, dtype=np.float64)
    lv = np.asarray(landmark_vertices, dtype=np.int64)
    if camera.kind == "orthographic":
        camera.t[2] = -_DEPTH_MM - float(camera.R[2] @ V.mean(0))
    visible, colors = photo_colors(camera, V, model.triangles, image)
    proj = camera.project(V[lv])
    alpha = np.zeros(model.n_components) if alpha is None else alpha
    expr = np.zeros(model.n_expressions) if expr is None else expr
    return Fit(vertices=V.astype(np.float32), colors=colors, visible=visible, camera=camera,
               alpha=np.asarray(alpha, dtype=np.float32), expr=np.asarray(expr, dtype=np.float32),
               landmark_vertices=lv, landmark_error=float(np.linalg.norm(proj - L, axis=1).mean()),
               landmarks_fit=proj.astype(np.float32), n_iter=int(n_iter), seconds=float(seconds))


def fit_landmarks(model: MorphableModel, landmarks, image=None, *, lam: float = DEFAULT_LAM,
                  sigma_l: float | None = DEFAULT_SIGMA_L, n_iter: int = 3, fit_expressions: bool = True,
                  n_components: int | None = None, lam_expr: float = DEFAULT_LAM_EXPR,
                  contour: str = "ray", jaw: str = "slide", joint: bool = True,
                  projection: str = "perspective", focal: float | None = None,
                  focal_distance: float = DEFAULT_FOCAL_DISTANCE, focal_spread: float = DEFAULT_FOCAL_SPREAD,
                  face_size: float = DEFAULT_FACE_SIZE) -> Fit:
    """Fit the morphable model to 68 landmarks: pose, shape (eq. (4)), colours.

    This is the paper's personalised template ``S_0`` (section III-B-1).

    Parameters
    ----------
    model : the :class:`~dualface_lite.model.MorphableModel` (``df.load_model()``).
    landmarks : (68, 2) iBUG-68 landmark pixels ``(u, v)`` (0-based iBUG order).
    image : optional photo: uint8, or float in [0, 1]; (H, W) grayscale and
        (H, W, 4) RGBA are converted to RGB. It gives the vertex colours and the
        camera's image size, and every landmark must then lie inside it: within
        ``checks.LANDMARK_MARGIN_PX`` = 0.5 px beyond its outer pixel edges, i.e.
        ``u`` in ``[-1, W]`` and ``v`` in ``[-1, H]`` (a detector's jaw points may
        touch the border; farther out means the landmarks belong to another image).
    lam : ``lambda`` of eq. (4), the weight of ``||alpha||^2``.
    sigma_l : ``sigma_L`` of eq. (4), the landmark noise in px, stated for a face imaged at
        the reference size ``SIGMA_L_REFERENCE`` = 0.89 px per mm (the kit's photos: a face
        about 130 px wide). The fit measures the face's size in the photo (the scale of a first camera
        estimate, px per mm of the mean face) and uses ``sigma_l * scale / 0.89``, so the
        same face photographed at 130, 500 or 2000 px gives the same ``S_0``.
        ``None`` (default): estimated from the landmarks (:func:`landmark_sigma`: the
        residual of a first fit, never below 0.5 px at the reference size), which follows
        the detector's noise (0.5 to 5 px in the validation) and what the model cannot
        express. With ``sigma_l`` and ``focal`` given, only ``lam * sigma_l^2`` matters
        (scaling eq. (4) does not move its minimum; the focal length's prior is weighed
        against the landmarks, so it breaks this when the focal length is estimated);
        the kit keeps ``lam = 0.5``, the MAP estimate under the model's own prior
        ``alpha ~ N(0, I)`` with Gaussian landmark noise.
    n_iter : iterations of jaw contour -> shape -> pose (3 suffice; see the benchmark).
    fit_expressions : also solve for the 6 expression weights (else ``expr = 0``).
    n_components : use only the first ``n_components`` PCA components (default: all m).
    lam_expr : ridge on the expression weights ``e``, in the units of ``lam``
        (default 0.01: expressions move freely; the ridge only keeps the normal
        equations positive definite).
    contour : how the jaw landmarks find their vertices (:func:`contour_correspondences`):
        ``"ray"`` (default), ``"outline"``, ``"candidates"`` (eos) or ``"fixed"``.
    jaw : ``"slide"`` (default): a jaw landmark counts only across the jaw line
        (point-to-line distance, see :func:`_jaw_weights`); ``"point"``: the full
        2D distance, as for the other landmarks.
    joint : polish pose and shape together by Levenberg-Marquardt after each
        closed-form shape step (default); ``False`` alternates only (closed-form
        shape, then :func:`estimate_camera`), which is the textbook scheme but
        converges slowly.
    projection : ``"perspective"`` (default): after the orthographic start, refine pose,
        shape and expression under a pinhole camera (step 3 below); ``"orthographic"``: stop at
        the scaled orthographic fit (the textbook model; fine for faces far away).
    focal : the pinhole camera's focal length in px, when known (e.g. from the photo's
        EXIF data); ``None`` (default): estimated, with a log-normal prior centred on
        ``scale * focal_distance`` (the face ``focal_distance`` mm away; ``scale`` as for
        ``sigma_l``) of spread ``focal_spread`` (in ``log f``: 1.0 means a factor e).
        From landmarks alone the focal length is determined only for faces close to the
        camera, and only as well as the face's depth is known: for the mean face at
        40-50 cm it comes within about 6 %; for an unknown face the shape absorbs part
        of the perspective (0.8 to 1.6x at 40 cm); at 1-2 m the prior decides. The
        shape suffers little either way (chapter 2 compares known and estimated ``f``).
    face_size : the size of the face relative to the shape the landmarks give. The same
        landmarks fit a face twice as large twice as far away, so no photo tells a face's
        absolute size; the prior does, and the fit without this factor is biased small
        (shrinkage towards the mean). The default 1.04 was chosen by validation
        (``benchmarks/tune_fitting.py``). ``vertices = face_size * model.shape(alpha,
        expr)``, and the camera is scaled with the face, so no pixel moves.
    The principal point is the photo's centre, or without a photo the middle of the
    landmarks.

    Returns
    -------
    :class:`Fit` (vertices, colours, visibility, pose, coefficients, landmark fit).

    Algorithm
    ---------
    1. Start from the mean face; the camera from the landmarks off the jaw line
       (``model.IBUG_NOT_JAW``: their vertices are fixed) by :func:`estimate_camera`.
    2. Repeat ``n_iter`` times:

       a. jaw contour: :func:`contour_correspondences` for the current face and pose;
       b. shape, eq. (4) in closed form for the current camera (:func:`solve_shape`):
          ``(A^T A + 2 sigma_l^2 D) c = A^T b``, ``c = [alpha; e]``;
       c. pose: pose and shape together by a few Levenberg-Marquardt steps on the
          same objective (:func:`_gauss_newton`), starting from (a, b).

       Why (c) is joint: with 2D landmarks, a little more pitch and a little
       less face depth project almost alike, so the camera-then-shape
       alternation zig-zags along that valley. On exact orthographic landmarks
       of in-model faces, many alternations still leave millimetres of error
       where a few joint steps reach a tenth of a millimetre. With ``sigma_l=None``
       the first iteration uses 2.5 px and the next ones :func:`landmark_sigma`.
    3. Perspective (``projection="perspective"``): the pinhole camera that matches the
       orthographic one (``f / d = s``, the face ``d = f / s`` away), then twice: jaw
       contour for that camera, and Levenberg-Marquardt on eq. (4) with the pinhole
       projection over rotation, translation, ``log f`` (when estimated) and the
       coefficients together (:func:`_perspective_lm`).
    4. ``face_size``: the face and the camera scaled together (no pixel moves).
    5. Colours, as the paper: visibility by z-buffer
       (:func:`dualface_lite.render.vertex_visibility` with the fitted camera), then
       the photo's colour (bilinear) at each visible vertex and exactly 0 at the
       others. Without an image, ``visible`` is all False and ``colors`` all 0.

    Everything is vectorized numpy (no loop over vertices): a fit takes a few
    milliseconds, plus one rasterization for the colours.
    """
    t0 = time.perf_counter()
    if not isinstance(model, MorphableModel):
        raise TypeError(f"model must be a MorphableModel (df.load_model()), got {type(model).__name__}")
    img = None if image is None else checks.rgb_pixels(image)
    L = checks.landmarks(landmarks, image_hw=None if img is None else img.shape[:2])
    lam = checks.number(lam, "lam")
    if sigma_l is not None:
        sigma_l = checks.number(sigma_l, "sigma_l", positive=True)
    lam_expr = checks.number(lam_expr, "lam_expr")
    face_size = checks.number(face_size, "face_size", positive=True)
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
    if focal is not None:
        focal = checks.number(focal, "focal", positive=True)
    focal_distance = checks.number(focal_distance, "focal_distance", positive=True)
    focal_spread = checks.number(focal_spread, "focal_spread", positive=True)
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
        raise ValueError(f"n_iter must be a positive integer, got {n_iter!r}")
    m = model.n_components
    k = m if n_components is None else n_components
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= m:
        raise ValueError(f"n_components must be an integer in [0, {m}], got {n_components!r}")
    k = int(k)
    if contour not in CONTOUR_METHODS:
        raise ValueError(f"contour must be one of {CONTOUR_METHODS}, got {contour!r}")
    if jaw not in ("slide", "point"):
        raise ValueError(f"jaw must be 'slide' or 'point', got {jaw!r}")
    if img is not None:
        H, W = img.shape[:2]
        centre = np.array([(W - 1) / 2.0, (H - 1) / 2.0])
    else:   # no photo: the principal point is the middle of the landmarks (moves and scales with them)
        W, H = landmark_box(L)
        centre = np.asarray(face_crop(L).center)

    arr = _model_arrays(model)
    mean, Bflat, B = arr["mean"], arr["Bflat"], arr["B"]
    n_e = model.n_expressions if fit_expressions else 0
    cols = np.r_[np.arange(k), m + np.arange(n_e)].astype(np.int64)
    full = np.zeros(B.shape[2])            # c padded to all m + 6 columns

    def face(c):                           # vertices (N, 3): mean + [U diag(sigma) | B_expr] c
        full[cols] = c
        return (mean.reshape(-1) + Bflat @ full).reshape(-1, 3)

    y = np.stack([L[:, 0] - centre[0], centre[1] - L[:, 1]], axis=1)   # y-up, centred
    Wl = _jaw_weights(y, jaw)
    Wj = _weight_rows(Wl)
    lm_vert = model.ibug68.astype(np.int64).copy()
    inner = IBUG_NOT_JAW

    V, c = mean, np.zeros(len(cols))
    cam = estimate_camera(V[lm_vert[inner]], L[inner], W, H, refine=True, center=centre)
    s0 = cam.focal                         # the face's size in the photo (px per mm of the mean face)
    # sigma_l is stated for a face at the reference size; when it is to be estimated, the first
    # iteration uses _SIGMA_L_FIRST
    sig = (_SIGMA_L_FIRST if sigma_l is None else sigma_l) * s0 / SIGMA_L_REFERENCE
    w = 2.0 * sig**2 * np.r_[np.full(k, lam), np.full(n_e, lam_expr)]       # ridge of eq. (4)
    for it in range(int(n_iter)):
        if it == 1 and sigma_l is None:   # sigma_L from the landmarks: how well the first fit explains them
            sig = landmark_sigma(y - cam.focal * (V[lm_vert] @ cam.R[:2].T + cam.t[:2]), Wl, s0)
            w = 2.0 * sig**2 * np.r_[np.full(k, lam), np.full(n_e, lam_expr)]
        lm_vert[IBUG_JAW] = contour_correspondences(model, V, cam, L, method=contour, wedge_deg=_WEDGE_DEG)
        Bl = B[lm_vert][:, :, cols]
        if len(cols):   # (b) eq. (4) in closed form for the current camera
            c = solve_shape(cam, mean[lm_vert], Bl, L, lam, sig, lam_expr, n_components=k, n_expr=n_e,
                            weights=Wl)
        if joint:       # (c) pose and shape together
            R, s, t2, c = _gauss_newton(mean[lm_vert], Bl, y, cam.R, cam.focal, cam.t[:2], c, w,
                                        n_iter=_GN_STEPS, Wl=Wj)
            V = face(c)
            cam = _make_camera(R, s, t2, W, H, center=centre)
        else:           # (c') textbook alternation: camera for the new shape
            V = face(c)
            cam = estimate_camera(V[lm_vert], L, W, H, center=centre)
    if projection == "perspective":   # 3. the pinhole camera, started from the orthographic fit
        f = focal if focal is not None else s0 * focal_distance
        d = f / cam.focal
        if d < _MIN_DISTANCE_MM:
            raise ValueError(f"focal={f:g} px puts the face {d:.0f} mm from the camera (the face is "
                             f"{cam.focal:.3g} px per mm in the photo): the focal length in px is about "
                             f"the image width / (2 tan(fov / 2)), e.g. {s0 * 400:.0f} px for a face 40 cm away")
        t = np.array([cam.t[0], cam.t[1], -d - float(cam.R[2] @ V[lm_vert].mean(0))])
        prior = None if focal is not None else (np.log(s0 * focal_distance), sig / focal_spread)
        cam = Camera(R=cam.R, t=t, focal=f, width=W, height=H, kind="perspective", center=centre)
        for _ in range(_PERSPECTIVE_PASSES):
            lm_vert[IBUG_JAW] = contour_correspondences(model, V, cam, L, method=contour, wedge_deg=_WEDGE_DEG)
            R, t, f, c = _perspective_lm(mean[lm_vert], B[lm_vert][:, :, cols], y, cam.R, cam.t, cam.focal, c,
                                         w, Wl=Wj, n_iter=_PERSPECTIVE_STEPS, log_f_prior=prior)
            V = face(c)
            cam = replace(cam, R=R, t=t, focal=f)
    lm_vert[IBUG_JAW] = contour_correspondences(model, V, cam, L, method=contour, wedge_deg=_WEDGE_DEG)
    alpha = np.zeros(m)
    alpha[:k] = c[:k]
    expr = np.zeros(model.n_expressions)
    expr[:n_e] = c[k:]
    # 4. the face's size: the same landmarks fit a face g times as large seen g times as far (or with
    # 1/g the scale); the photo cannot tell, the prior does. Scale the face and the camera together.
    g = face_size
    cam = (cam.with_pose(t=g * cam.t) if cam.kind == "perspective"
           else replace(cam, t=np.r_[g * cam.t[:2], cam.t[2]], focal=cam.focal / g))
    fit = make_fit(model, g * V, cam, lm_vert, L, img, alpha, expr, n_iter=int(n_iter))
    fit.scale, fit.sigma_l = float(g), float(sig * SIGMA_L_REFERENCE / s0)
    fit.seconds = time.perf_counter() - t0
    return fit
