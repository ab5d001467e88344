"""Baselines for the landmark fit: Lm2Vertex (paper, section IV-C, refs. [11], [47]).

The paper compares its dual networks with *Lm2Vertex* (Liu et al., ECCV 2016 /
arXiv:1509.06161), "a classical technique [that] trains a linear regressor from
2D facial landmarks to model parameters of 3DMM and generates 3D faces by
applying the parameters to 3DMM" (Sec. IV-C, Figs. 4-5 and 7-10, Table III).
The paper also says why it stays coarse: "it is trained on the data from a
facial statistical model, which makes it work fine on recovering rough facial
geometry but fail in generating subtle facial details".

:class:`Lm2Vertex` rebuilds it in that spirit:

1. **Training data from the model itself.** Random faces from the 3DMM prior
   (``alpha ~ N(0, I)``, eq. for ``S_alpha`` in Sec. III-B-1), random expression
   blendshapes, random poses (yaw +-30, pitch +-10, roll +-6 degrees), photographed
   by a perspective camera like the synthetic subjects' (:mod:`dualface_lite.synth`);
   the jaw landmarks sit on the face's outline (:func:`dualface_lite.synth.jaw_outline`),
   and detector-like noise (0.7 px) is added. No image is rendered: only the
   68 landmark positions are needed, so a few thousand samples take seconds.
2. **Normalised landmarks.** Each landmark set is brought to a canonical frame
   by a 2D similarity: translated to its centroid, scaled to unit RMS radius, and
   rotated in the image plane onto a reference shape (orthogonal Procrustes; the
   reference is the mean face seen frontally). Position, size and roll of the face
   in the photo therefore do not reach the regressor; yaw and pitch do (they change
   the landmarks' shape, not only their placement), and the regressor learns to
   discount them from the training poses.
3. **Linear (ridge) regression** from the 136 normalised coordinates to the
   63 identity coefficients ``alpha`` and the 6 expression weights ``e``:
   ``[alpha; e] = W^T (x - x_bar) + y_bar`` with
   ``W = (C + lambda I)^-1 X_c^T Y_c / M``, ``C = X_c^T X_c / M``, and ``lambda``
   = ``ridge`` times the mean of ``diag(C)`` (so ``ridge`` does not depend on the units).
4. **The face and its pose.** The prediction is ``S = u_bar + U diag(sigma) alpha + B e``
   (the weights are used as regressed: not clipped to the prior's range, and the
   expression weights may come out slightly negative). Its pose is the scaled
   orthographic camera that maps the face's landmark vertices onto the input
   landmarks (:func:`pose_from_landmarks`: :func:`dualface_lite.fitting.estimate_camera`
   from the fixed landmark vertices, then with the jaw landmarks moved to the predicted
   face's outline by :func:`dualface_lite.fitting.contour_correspondences`).

Liu et al. cascade several regression stages; the paper describes the method as
one linear regressor, and that is what is built here. Defaults: ``ridge = 0.01`` and
4000 training samples (on held-out subjects, 2000-8000 samples and ``ridge`` from
1e-4 to 1e-2 gave mean errors within 0.15 mm of each other; ``ridge = 0.1`` was
0.4 mm worse).

:func:`mean_face` is the weakest baseline: the mean face ``u_bar``, posed the same way.
Both return a :class:`dualface_lite.fitting.Fit`, the type the landmark fit of
eq. (4) returns, so either can be swapped in for it in any later stage.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import checks
from .model import IBUG_JAW, IBUG_NOT_JAW, MorphableModel

__all__ = ["Lm2Vertex", "mean_face", "pose_from_landmarks", "normalise_landmarks", "prior_landmark_samples"]

_FORMAT = "dualface_lite.Lm2Vertex/1"


# ---------------------------------------------------------------------------
# input checks and normalisation
# ---------------------------------------------------------------------------

def _similarity_normalise(lm: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
    """(M, 68, 2) -> (M, 68, 2): centroid at 0, unit RMS radius, and (if a
    ``reference`` (68, 2) is given) rotated in the plane onto it."""
    x = lm - lm.mean(axis=1, keepdims=True)
    rms = np.sqrt((x**2).sum(-1).mean(-1))
    if np.any(rms < 1e-9):
        raise ValueError("landmarks are all at one point: cannot normalise them")
    x = x / rms[:, None, None]
    if reference is not None:
        # optimal rotation (orthogonal Procrustes in 2D): angle of sum_i x_i^* r_i
        dot = (x * reference).sum((1, 2))
        cross = (x[..., 0] * reference[None, :, 1] - x[..., 1] * reference[None, :, 0]).sum(1)
        th = np.arctan2(cross, dot)
        c, s = np.cos(th)[:, None], np.sin(th)[:, None]
        x = np.stack([c * x[..., 0] - s * x[..., 1], s * x[..., 0] + c * x[..., 1]], axis=-1)
    return x


def _reference_shape(model: MorphableModel) -> np.ndarray:
    """The mean face's 68 landmarks seen frontally, in pixel orientation (v down), normalised."""
    p = model.mean[model.ibug68, :2].astype(np.float64) * np.array([1.0, -1.0])
    return _similarity_normalise(p[None], None)[0]


def normalise_landmarks(model: MorphableModel, landmarks) -> np.ndarray:
    """Lm2Vertex's canonical frame: (68, 2) or (M, 68, 2) pixel landmarks ->
    the same shape, translated to their centroid, scaled to unit RMS radius and
    rotated in the image plane onto the frontal mean face (orthogonal Procrustes).
    The result does not change when the landmarks are translated, scaled or
    rotated in the image."""
    a = np.asarray(landmarks, dtype=np.float64)
    single = a.ndim == 2
    a = checks.landmarks(a[None] if single else a, "landmarks", batch=True)
    out = _similarity_normalise(a, _reference_shape(model))
    return out[0] if single else out


# ---------------------------------------------------------------------------
# training data drawn from the statistical model
# ---------------------------------------------------------------------------

def prior_landmark_samples(model: MorphableModel, n_samples: int, seed: int = 0, *, image_size: int = 224,
                           max_yaw: float = 30.0, max_pitch: float = 10.0, max_roll: float = 6.0,
                           landmark_noise: float = 0.7, expression_fraction: float = 0.5,
                           chunk: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Landmark sets of random faces from the model's own prior (Lm2Vertex's training data).

    Each sample: ``alpha ~ N(0, I)``; with probability ``expression_fraction`` the
    expression of the synthetic "expression" photos (:func:`dualface_lite.synth.draw_expression`),
    else neutral; the camera of the synthetic photos (:func:`dualface_lite.synth.draw_camera`,
    yaw, pitch, roll uniform in +-``max_*`` degrees); jaw landmarks on the outline
    (:func:`dualface_lite.synth.jaw_outline`); Gaussian noise of ``landmark_noise`` px.

    Returns ``(landmarks (M, 68, 2) float32 px, alpha (M, m) float32, expr (M, 6) float32)``.
    """
    from .synth import draw_camera, draw_expression, jaw_outline

    n_samples = int(n_samples)
    if n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples}")
    rng = np.random.default_rng([int(seed), 47])
    m, k_e = model.n_components, model.n_expressions
    alpha = rng.standard_normal((n_samples, m))
    expr = np.zeros((n_samples, k_e))
    cams = []
    for i in range(n_samples):           # one sample's draws after the other, as synth.make_subject
        if rng.random() < expression_fraction:
            expr[i] = draw_expression(rng, k_e)
        cams.append(draw_camera(rng, image_size, max_yaw, max_pitch, max_roll))
    noise = landmark_noise * rng.standard_normal((n_samples, 68, 2))

    mean = model.mean.reshape(-1).astype(np.float32)
    basis = model.linear_basis(np.float32)                           # (3N, m + 6)
    coef = np.concatenate([alpha, expr], axis=1).astype(np.float32)
    out = np.empty((n_samples, 68, 2))
    for c0 in range(0, n_samples, chunk):
        c1 = min(c0 + chunk, n_samples)
        V = (mean + coef[c0:c1] @ basis.T).reshape(c1 - c0, -1, 3)
        for j in range(c1 - c0):
            cam = cams[c0 + j]
            lv = model.ibug68.copy()
            lv[IBUG_JAW] = jaw_outline(model, V[j], cam)
            out[c0 + j] = cam.project(V[j][lv])
    out += noise
    return out.astype(np.float32), alpha.astype(np.float32), expr.astype(np.float32)


# ---------------------------------------------------------------------------
# the regressor
# ---------------------------------------------------------------------------

class Lm2Vertex:
    """Linear regressor from 68 2D landmarks to 3DMM parameters (paper Sec. IV-C, refs. [11], [47]).

    >>> reg = Lm2Vertex(model).train(n_samples=4000)      # samples of the model's own prior
    >>> fit = reg.predict(subject.landmarks, image=subject.image)
    >>> fit.vertices, fit.alpha, fit.expr, fit.camera

    Parameters
    ----------
    model : the :class:`~dualface_lite.model.MorphableModel` whose parameters are predicted.
    ridge : Tikhonov weight, relative to the mean variance of the normalised
        landmark coordinates (see the module docstring, step 3).
    seed : default seed of :meth:`train`.
    """

    def __init__(self, model: MorphableModel, ridge: float = 1e-2, seed: int = 0):
        if not isinstance(model, MorphableModel):
            raise TypeError(f"model must be a MorphableModel (dualface_lite.load_model()), got {type(model).__name__}")
        if not (np.isfinite(ridge) and ridge >= 0):
            raise ValueError(f"ridge must be a non-negative number, got {ridge!r}")
        self.model = model
        self.ridge = float(ridge)
        self.seed = int(seed)
        self.reference = _reference_shape(model)
        self.W = None        # (136, m + 6)
        self.x_mean = None   # (136,)
        self.y_mean = None   # (m + 6,)
        self.n_train = 0

    # -- training -------------------------------------------------------------
    @property
    def trained(self) -> bool:
        return self.W is not None

    def _features(self, lm: np.ndarray) -> np.ndarray:
        return _similarity_normalise(lm, self.reference).reshape(len(lm), -1)

    def train(self, n_samples: int = 4000, seed: int | None = None, **sample_options) -> "Lm2Vertex":
        """Train on ``n_samples`` landmark sets of random faces from the model's prior
        (:func:`prior_landmark_samples`; ``sample_options`` go there). Returns ``self``."""
        lm, alpha, expr = prior_landmark_samples(self.model, n_samples, self.seed if seed is None else seed,
                                                 **sample_options)
        return self.train_on(lm, alpha, expr)

    def train_on(self, landmarks, alpha, expr) -> "Lm2Vertex":
        """Train on given data: ``landmarks`` (M, 68, 2) px, ``alpha`` (M, m), ``expr`` (M, 6).
        Returns ``self``."""
        lm = checks.landmarks(landmarks, "landmarks", batch=True)
        M, m, k = len(lm), self.model.n_components, self.model.n_expressions
        A = np.asarray(alpha, dtype=np.float64)
        E = np.asarray(expr, dtype=np.float64)
        if A.shape != (M, m):
            raise ValueError(f"alpha must have shape ({M}, {m}) (one row per landmark set), got {A.shape}")
        if E.shape != (M, k):
            raise ValueError(f"expr must have shape ({M}, {k}) (one row per landmark set), got {E.shape}")
        for name, x in (("alpha", A), ("expr", E)):
            if not np.all(np.isfinite(x)):
                raise ValueError(f"{name} contains NaN or infinite values")
        if M < 2:
            raise ValueError(f"landmarks must hold at least 2 landmark sets to train on, got {M}")
        X = self._features(lm)
        Y = np.concatenate([A, E], axis=1)
        xm, ym = X.mean(0), Y.mean(0)
        Xc, Yc = X - xm, Y - ym
        C = Xc.T @ Xc / M
        lam = self.ridge * float(np.mean(np.diag(C)))
        self.W = np.linalg.solve(C + lam * np.eye(C.shape[0]), Xc.T @ Yc / M)
        self.x_mean, self.y_mean, self.n_train = xm, ym, M
        return self

    # -- prediction -----------------------------------------------------------
    def _require_trained(self):
        if not self.trained:
            raise RuntimeError("this Lm2Vertex is not trained: call .train(), .train_on(...) or Lm2Vertex.load(path)")

    def predict_params(self, landmarks) -> tuple[np.ndarray, np.ndarray]:
        """``(alpha (m,), expr (6,))`` for (68, 2) landmarks, or ``(M, m), (M, 6)`` for (M, 68, 2)."""
        self._require_trained()
        a = np.asarray(landmarks, dtype=np.float64)
        single = a.ndim == 2
        lm = checks.landmarks(a[None] if single else a, "landmarks", batch=True)
        Y = (self._features(lm) - self.x_mean) @ self.W + self.y_mean
        m = self.model.n_components
        alpha, expr = Y[:, :m].astype(np.float32), Y[:, m:].astype(np.float32)
        return (alpha[0], expr[0]) if single else (alpha, expr)

    def predict(self, landmarks, image=None):
        """Lm2Vertex's reconstruction from 68 landmarks: a :class:`dualface_lite.fitting.Fit`.

        Parameters
        ----------
        landmarks : (68, 2) pixel positions, iBUG order (kit convention: u right, v down).
        image : optional photo (uint8 or float in [0, 1]; grayscale/RGBA converted);
            gives the image size, the visible vertices and their colours, as in
            :func:`dualface_lite.fitting.fit_landmarks` (without it: a box around the
            landmarks, no vertex visible, colours 0). The regression itself never
            looks at the image -- the paper's point about Lm2Vertex (Sec. IV-C).

        Notes
        -----
        The face is ``S = u_bar + U diag(sigma) alpha + B e`` with the regressed
        ``alpha, e``; its pose: see :func:`pose_from_landmarks`.
        """
        t0 = time.perf_counter()
        lm = checks.landmarks(landmarks, "landmarks")
        self._require_trained()
        alpha, expr = self.predict_params(lm)
        return _fit_for_face(self.model, self.model.shape(alpha, expr), lm, image, alpha, expr, t0)

    # -- persistence ------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the trained regressor to ``path`` (``.npz``, plain arrays, no pickle)."""
        self._require_trained()
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        np.savez(path, format=np.array(_FORMAT), W=self.W, x_mean=self.x_mean, y_mean=self.y_mean,
                 ridge=np.array(self.ridge), seed=np.array(self.seed), n_train=np.array(self.n_train),
                 n_vertices=np.array(self.model.n_vertices), n_components=np.array(self.model.n_components),
                 n_expressions=np.array(self.model.n_expressions))
        return path

    @classmethod
    def load(cls, path, model: MorphableModel | None = None) -> "Lm2Vertex":
        """Read a regressor written by :meth:`save` (``allow_pickle=False``). ``model``
        defaults to :func:`dualface_lite.load_model`; it must have the saved sizes."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no Lm2Vertex file at {path}")
        if model is None:
            from .model import load_model

            model = load_model()
        with np.load(path, allow_pickle=False) as z:
            if "format" not in z.files or str(z["format"]) != _FORMAT:
                raise ValueError(f"{path} is not an Lm2Vertex file written by Lm2Vertex.save")
            sizes = (int(z["n_vertices"]), int(z["n_components"]), int(z["n_expressions"]))
            if sizes != (model.n_vertices, model.n_components, model.n_expressions):
                raise ValueError(f"{path} was trained for a model with (vertices, components, expressions) = "
                                 f"{sizes}, this model has {(model.n_vertices, model.n_components, model.n_expressions)}")
            reg = cls(model, ridge=float(z["ridge"]), seed=int(z["seed"]))
            reg.W, reg.x_mean, reg.y_mean = z["W"].copy(), z["x_mean"].copy(), z["y_mean"].copy()
            reg.n_train = int(z["n_train"])
        return reg

    def __repr__(self) -> str:
        state = f"trained on {self.n_train} samples" if self.trained else "untrained"
        return f"Lm2Vertex(ridge={self.ridge:g}, {state})"


# ---------------------------------------------------------------------------
# pose, colours and the Fit record (shared with the mean-face baseline)
# ---------------------------------------------------------------------------

def pose_from_landmarks(model: MorphableModel, vertices, landmarks, width: int, height: int,
                        n_iter: int = 2):
    """Pose of a *given* face (no shape fitting): ``(camera, landmark_vertices (68,))``.

    The scaled orthographic camera of :func:`dualface_lite.fitting.estimate_camera`
    from the landmarks with fixed vertices (``model.IBUG_NOT_JAW``: all but the jaw line), then ``n_iter`` times:
    jaw landmarks moved to the face's outline under the current pose
    (:func:`dualface_lite.fitting.contour_correspondences`) and the camera
    re-estimated from all 68.
    """
    from . import fitting

    V = np.asarray(vertices, dtype=np.float64)
    L = np.asarray(landmarks, dtype=np.float64)
    lv = model.ibug68.astype(np.int64).copy()
    cam = fitting.estimate_camera(V[lv[IBUG_NOT_JAW]], L[IBUG_NOT_JAW], width, height)
    for _ in range(int(n_iter)):
        lv[IBUG_JAW] = fitting.contour_correspondences(model, V, cam, L)
        cam = fitting.estimate_camera(V[lv], L, width, height)
    lv[IBUG_JAW] = fitting.contour_correspondences(model, V, cam, L)
    return cam, lv


def _fit_for_face(model: MorphableModel, vertices, L: np.ndarray, image, alpha, expr, t0: float):
    from . import fitting

    img = None if image is None else checks.rgb_image(image)
    width, height = fitting.landmark_box(L) if img is None else img.shape[1::-1]
    cam, lv = pose_from_landmarks(model, vertices, L, width, height)
    return fitting.make_fit(model, vertices, cam, lv, L, img, alpha, expr, seconds=time.perf_counter() - t0)


def mean_face(model: MorphableModel, landmarks, image=None):
    """The weakest baseline: the model's mean face ``u_bar``, posed onto the landmarks
    (:func:`pose_from_landmarks`). A :class:`dualface_lite.fitting.Fit` with
    ``alpha = 0``, ``expr = 0``."""
    t0 = time.perf_counter()
    if not isinstance(model, MorphableModel):
        raise TypeError(f"model must be a MorphableModel (dualface_lite.load_model()), got {type(model).__name__}")
    L = checks.landmarks(landmarks, "landmarks")
    return _fit_for_face(model, model.mean, L, image, np.zeros(model.n_components),
                         np.zeros(model.n_expressions), t0)
