"""The paper's dense ground truth ``S_hat`` from a photo and its range scan (section IV-A, Fig. 2).

FRGC gives each photo a registered range image and 68 labelled landmarks. The paper turns them
into training targets in three steps:

1. triangulate the range image into a mesh, the target ``S_Tr``
   (:func:`dualface_lite.scans.range_to_mesh`);
2. fit the morphable model to the photo's landmarks: the personalised template ``S_0``
   (eq. (4), :func:`dualface_lite.fitting.fit_landmarks`);
3. register ``S_0`` onto ``S_Tr`` by non-rigid ICP, with the landmarks as anchors: ``S_hat``
   has the model's vertices and triangles but lies on the scan.

This module is step 3, one function for the dataset builder (:mod:`dualface_lite.data`) and for
the chapter that teaches it, so both give the same ``S_hat`` for the same face
(:func:`ground_truth`):

* the 3D landmarks come from the *scan* at the photo's 2D landmarks, as a registered range image
  gives them (:func:`landmarks_on_scan`): the photo camera's ray through each landmark with a
  fixed model vertex (:func:`scan_landmark_ids`: the jaw line is left out, its points slide
  along the outline) is cast onto the scan; rays into a hole or past the scan are dropped;
* a gross outlier is dropped too (a ray grazing the side of the nose or the brow that lands far
  away): farther than ``landmark_max_residual`` mm from ``S_0``'s landmark vertex after a rigid
  fit of the two sets (:func:`lift_landmarks`);
* :func:`dualface_lite.registration.nicp` registers ``S_0`` onto the scan with those landmarks.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import checks
from .camera import Camera
from .model import IBUG_JAW, MorphableModel
from .registration import DEFAULT_LANDMARK_WEIGHTS, DEFAULT_STIFFNESS, NICPResult, nicp

__all__ = ["GroundTruth", "ground_truth", "lift_landmarks", "landmarks_on_scan", "scan_landmark_ids",
           "DEFAULT_LANDMARK_MAX_RESIDUAL", "DEFAULT_REJECT_DISTANCE"]

#: mm: a scan landmark farther than this from S_0's landmark vertex (after a rigid fit) is dropped
DEFAULT_LANDMARK_MAX_RESIDUAL = 15.0
#: mm: NICP rejects a closest-point match farther than this
DEFAULT_REJECT_DISTANCE = 10.0


def scan_landmark_ids(model: MorphableModel) -> np.ndarray:
    """iBUG indices (0-based) of the landmarks NICP uses: those with a fixed SFM vertex
    (``model.ibug_defined``), the jaw line excluded (its points slide along the outline,
    so no vertex belongs to them)."""
    return np.setdiff1d(np.nonzero(model.ibug_defined)[0], IBUG_JAW).astype(np.int64)


def landmarks_on_scan(camera: Camera, landmarks, scan) -> np.ndarray:
    """Where the photo's rays through ``landmarks`` first meet the scan.

    camera : the photo's :class:`~dualface_lite.camera.Camera` (object -> view).
    landmarks : (L, 2) pixels.
    scan : ``trimesh.Trimesh`` or ``(vertices, faces)`` in the object frame.

    Returns (L, 3) float64 points in the object frame, NaN where the ray misses the scan
    (a hole, the mouth gap, past its border). This is what a registered range image gives
    for a labelled pixel: FRGC's 3D landmarks.

    The ray through a pixel (:meth:`Camera.pixel_rays`) meets a triangle exactly when the
    pixel lies inside the triangle's projection (a camera maps triangles to triangles), so
    the candidates are found in the image, and the hit is the ray-plane intersection of the
    nearest candidate (the same points as trimesh's ray caster, without its r-tree).
    """
    V, F = checks.mesh(scan, "scan")
    uv = np.asarray(landmarks, dtype=np.float64)
    if uv.ndim != 2 or uv.shape[1] != 2:
        raise ValueError(f"landmarks must have shape (L, 2), got {uv.shape}")
    out = np.full((len(uv), 3), np.nan)
    if len(uv) == 0:
        return out
    origins, dirs = camera.pixel_rays(uv)
    p = camera.project(V)
    a, b, c = p[F[:, 0]], p[F[:, 1]], p[F[:, 2]]
    lo, hi = np.minimum(np.minimum(a, b), c), np.maximum(np.maximum(a, b), c)
    for i, q in enumerate(uv):
        cand = np.nonzero((lo[:, 0] <= q[0]) & (hi[:, 0] >= q[0]) & (lo[:, 1] <= q[1]) & (hi[:, 1] >= q[1]))[0]
        if cand.size == 0:
            continue
        A, e0, e1 = a[cand], b[cand] - a[cand], c[cand] - a[cand]   # barycentric test in the image
        e2 = q - A
        den = e0[:, 0] * e1[:, 1] - e1[:, 0] * e0[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (e2[:, 0] * e1[:, 1] - e1[:, 0] * e2[:, 1]) / den
            t = (e0[:, 0] * e2[:, 1] - e2[:, 0] * e0[:, 1]) / den
        inside = (den != 0) & (s >= 0) & (t >= 0) & (s + t <= 1)
        if not inside.any():
            continue
        cand = cand[inside]
        o, d = origins[i], dirs[i]
        P0 = V[F[cand, 0]]
        n = np.cross(V[F[cand, 1]] - P0, V[F[cand, 2]] - P0)
        nd = n @ d
        ok = nd != 0
        if not ok.any():
            continue
        lam = np.where(ok, ((P0 - o) * n).sum(1) / np.where(ok, nd, 1.0), np.inf)
        j = int(np.argmin(lam))
        out[i] = o + lam[j] * d
    return out


def lift_landmarks(model: MorphableModel, template, camera: Camera, landmarks, scan,
                   max_residual: float = DEFAULT_LANDMARK_MAX_RESIDUAL) -> np.ndarray:
    """The 3D landmarks of the Fig. 2 step: (L, 3) float64 in the order of
    :func:`scan_landmark_ids`, NaN where dropped.

    template : (N, 3) ``S_0``; landmarks : the photo's (68, 2) pixels; camera : the photo's.
    Each landmark is lifted onto the scan (:func:`landmarks_on_scan`); then ``template``'s
    landmark vertices are rigidly fitted to the hits, and a hit farther than ``max_residual``
    mm from its vertex is dropped (``max_residual = 0`` keeps every hit).
    """
    from .metrics import rigid_align

    S0 = np.asarray(template, dtype=np.float64)
    if S0.shape != (model.n_vertices, 3):
        raise ValueError(f"template must have shape ({model.n_vertices}, 3), got {S0.shape}")
    L = np.asarray(landmarks, dtype=np.float64)
    if L.shape != (68, 2) or not np.all(np.isfinite(L)):
        raise ValueError(f"landmarks must be finite with shape (68, 2) (iBUG-68 pixels), got {L.shape}")
    if not (np.isfinite(max_residual) and max_residual >= 0):
        raise ValueError(f"max_residual must be a non-negative number (mm), got {max_residual!r}")
    ids = scan_landmark_ids(model)
    src = model.ibug68[ids]
    hits = landmarks_on_scan(camera, L[ids], scan)
    use = np.isfinite(hits[:, 0])
    if max_residual > 0 and use.sum() >= 3:
        R, t, _ = rigid_align(S0[src[use]], hits[use])
        resid = np.linalg.norm(S0[src] @ R.T + t - hits, axis=1)
        use &= resid <= max_residual
    hits[~use] = np.nan
    return hits


@dataclass
class GroundTruth:
    """The result of :func:`ground_truth`.

    Attributes
    ----------
    s_hat : (N, 3) float32, the registered template (object frame, mm).
    scan_landmarks : (L, 3) float32 NICP's landmark targets in the order of
        :func:`scan_landmark_ids`, NaN where a landmark was dropped.
    landmark_vertices : (L,) the model vertex of each of those landmarks.
    registration : the :class:`~dualface_lite.registration.NICPResult` (its steps, what
        matched), when asked for with ``record=True``; else None.
    seconds : wall time of the registration.
    """

    s_hat: np.ndarray = field(repr=False)
    scan_landmarks: np.ndarray = field(repr=False)
    landmark_vertices: np.ndarray = field(repr=False)
    registration: NICPResult | None = field(default=None, repr=False)
    seconds: float = 0.0

    @property
    def n_landmarks(self) -> int:
        """How many landmarks NICP used."""
        return int(np.isfinite(self.scan_landmarks[:, 0]).sum())


def ground_truth(model: MorphableModel, template, scan, camera: Camera, landmarks, *,
                 stiffness=DEFAULT_STIFFNESS, landmark_weight: float = DEFAULT_LANDMARK_WEIGHTS,
                 rigid_init: bool = True, reject_distance: float = DEFAULT_REJECT_DISTANCE,
                 landmark_max_residual: float = DEFAULT_LANDMARK_MAX_RESIDUAL, record: bool = False,
                 progress: bool = False) -> GroundTruth:
    """Fig. 2's registration step: ``S_0`` (``template``, (N, 3)) onto the triangulated
    ``scan`` with the photo's landmarks lifted onto it -> ``S_hat``.

    Parameters
    ----------
    camera, landmarks : the photo's camera and its (68, 2) landmark pixels (the range image
        is registered to the photo, as in FRGC).
    stiffness, landmark_weight, rigid_init, reject_distance : NICP's schedule and settings
        (:func:`dualface_lite.registration.nicp`'s ``stiffness``, ``landmark_weights``,
        ``rigid_init``, ``reject_distance``).
    landmark_max_residual : the outlier filter of :func:`lift_landmarks` (mm).
    record : keep NICP's steps (:attr:`GroundTruth.registration`) for teaching.

    Notes
    -----
    The dataset builder calls this with its configuration's settings
    (:meth:`dualface_lite.data.DatasetConfig.ground_truth_kwargs`), so a chapter that does the
    same gets the dataset's own ``S_hat``.
    """
    S0 = np.asarray(template, dtype=np.float32)
    hits = lift_landmarks(model, S0, camera, landmarks, scan, max_residual=landmark_max_residual)
    V, F = checks.mesh(scan, "scan")
    src = model.ibug68[scan_landmark_ids(model)]
    use = np.isfinite(hits[:, 0])
    t0 = time.perf_counter()
    res = nicp((S0, model.triangles), (V, F), src[use], hits[use], stiffness=stiffness,
               landmark_weights=landmark_weight, rigid_init=rigid_init, reject_distance=reject_distance,
               record=record, progress=progress)
    seconds = time.perf_counter() - t0
    s_hat = res.vertices if record else res
    return GroundTruth(s_hat=np.asarray(s_hat, dtype=np.float32), scan_landmarks=hits.astype(np.float32),
                       landmark_vertices=src, registration=res if record else None, seconds=seconds)
