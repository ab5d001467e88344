"""eos-py as the peer of the landmark fit (``eos.fitting.fit_shape_and_pose``).

eos (Huber et al., VISAPP 2016) fits the same Surrey Face Model to 68 iBUG
landmarks: an alternation of a scaled orthographic camera, the jaw contour
correspondences, the shape coefficients (linear, ridge ``lambda_identity``) and
the expression blendshapes (``lambda_expressions``), 5 iterations by default.
This module wraps it so that its result reads like the kit's
(:class:`dualface_lite.camera.Camera`, vertices in the SFM object frame).

eos's camera convention. ``get_modelview()`` holds the rotation ``R`` and a
translation ``(tx, ty, 0) / s``; ``get_projection()`` an orthographic frustum
``[0, W/s] x [0, H/s]``; eos projects with the viewport ``(0, H, W, -H)``
(``glm::project``), i.e. with ``y`` flipped: ``u = s (R X)_x + tx``,
``v = H - s (R X)_y - ty``. (eos flipped the input landmarks the same way,
``y -> H - v``, before estimating the camera, so the round trip is consistent.)
:func:`eos_camera` turns that into the kit's orthographic camera
(``u = cx + s (R X + t)_x``, ``v = cy - s (R X + t)_y``).

Files: the model, the blendshapes, ``ibug_to_sfm.txt``, ``sfm_model_contours.json`` and
eos's ``sfm_3448_edge_topology.json`` (for the jaw contour fit) all come with the kit's copy of
the SFM (``dualface_lite.fetch.SFM_FILES``, :func:`dualface_lite.paths.sfm_dir`). :class:`EosPeer`
can also be pointed at another edge topology file; where none is found (a hand-made SFM folder),
eos fits without the contour (the overload of ``fit_shape_and_pose`` without edge topology), and
the benchmark says so.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from dualface_lite.camera import Camera

EDGE_TOPOLOGY = "sfm_3448_edge_topology.json"


def _find_edge_topology(folder: Path) -> Path | None:
    for d in (folder, os.environ.get("DUALFACE_SFM_DIR")):
        if d and (Path(d) / EDGE_TOPOLOGY).is_file():
            return Path(d) / EDGE_TOPOLOGY
    return None


def eos_camera(rendering_params, width: int, height: int) -> Camera:
    """eos ``RenderingParameters`` (orthographic) -> the kit's orthographic :class:`Camera`."""
    mv = np.asarray(rendering_params.get_modelview(), dtype=np.float64)
    pr = np.asarray(rendering_params.get_projection(), dtype=np.float64)
    s = pr[0, 0] * width / 2.0          # projection x: 2 / (W / s)
    U, _, Vt = np.linalg.svd(mv[:3, :3])  # float32 -> exactly orthonormal
    R = U @ Vt
    tx, ty = mv[0, 3] * s, mv[1, 3] * s  # modelview holds (tx, ty) / s
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    # u = s (RX)_x + tx = cx + s ((RX)_x + (tx - cx) / s)
    # v = H - s (RX)_y - ty = cy - s ((RX)_y + (ty + cy - H) / s)
    t = np.array([(tx - cx) / s, (ty + cy - height) / s, -1000.0])
    return Camera(R=R, t=t, focal=float(s), width=width, height=height, kind="orthographic")


class EosPeer:
    """``eos.fitting.fit_shape_and_pose`` on the kit's SFM copy, with eos's defaults
    (5 iterations, ``lambda_identity = 30``, ``lambda_expressions = 30``) unless given."""

    def __init__(self, sfm_folder=None, edge_topology=None, num_iterations: int = 5,
                 lambda_identity: float = 30.0, lambda_expressions: float = 30.0):
        import eos

        from dualface_lite import paths

        self.eos = eos
        folder = Path(sfm_folder) if sfm_folder is not None else paths.sfm_dir()
        self.folder = folder
        mm = eos.morphablemodel.load_model(str(folder / "sfm_shape_3448.bin"))
        blendshapes = eos.morphablemodel.load_blendshapes(str(folder / "expression_blendshapes_3448.bin"))
        self.model = eos.morphablemodel.MorphableModel(
            mm.get_shape_model(), blendshapes, color_model=eos.morphablemodel.PcaModel(),
            vertex_definitions=None, texture_coordinates=mm.get_texture_coordinates())
        self.mapper = eos.core.LandmarkMapper(str(folder / "ibug_to_sfm.txt"))
        et = Path(edge_topology) if edge_topology is not None else _find_edge_topology(folder)
        self.edge_topology_file = et
        if et is not None:
            self.edge_topology = eos.morphablemodel.load_edge_topology(str(et))
            self.contour_landmarks = eos.fitting.ContourLandmarks.load(str(folder / "ibug_to_sfm.txt"))
            self.model_contour = eos.fitting.ModelContour.load(str(folder / "sfm_model_contours.json"))
        self.options = dict(num_iterations=int(num_iterations), lambda_identity=float(lambda_identity),
                            lambda_expressions=float(lambda_expressions))

    @property
    def uses_contour(self) -> bool:
        return self.edge_topology_file is not None

    def fit(self, landmarks, width: int, height: int) -> dict:
        """Fit 68 iBUG landmarks (pixels, kit convention). Returns a dict with
        ``vertices`` (N, 3) float32 (SFM object frame, mm), ``camera`` (kit
        :class:`Camera`), ``alpha`` (63,), ``expr`` (6,), ``rendering_params`` and
        ``seconds`` (the eos call and building its landmark list)."""
        eos = self.eos
        L = np.asarray(landmarks, dtype=np.float32)
        t0 = time.perf_counter()
        lms = [eos.core.Landmark(str(i + 1), L[i].reshape(2, 1)) for i in range(68)]
        if self.uses_contour:
            mesh, rp, alpha, expr = eos.fitting.fit_shape_and_pose(
                self.model, lms, self.mapper, int(width), int(height), self.edge_topology,
                self.contour_landmarks, self.model_contour, **self.options)
        else:
            mesh, rp, alpha, expr = eos.fitting.fit_shape_and_pose(
                self.model, lms, self.mapper, int(width), int(height), **self.options)
        seconds = time.perf_counter() - t0
        return dict(vertices=np.asarray(mesh.vertices, dtype=np.float32), camera=eos_camera(rp, width, height),
                    alpha=np.asarray(alpha, dtype=np.float32), expr=np.asarray(expr, dtype=np.float32),
                    rendering_params=rp, seconds=seconds)

    def affine_matrix(self, rendering_params, width: int, height: int) -> np.ndarray:
        """eos's own 3x4 model -> screen matrix (for checking :func:`eos_camera`)."""
        return np.asarray(self.eos.fitting.get_3x4_affine_camera_matrix(rendering_params, width, height),
                          dtype=np.float64)
