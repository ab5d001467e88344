"""The PCA 3D morphable model (paper, section III-B-1).

A face with ``N`` vertices is a vector ``S`` of length ``3N`` (x1, y1, z1, x2, ...).
The morphable model writes every face as the mean plus a weighted sum of
principal directions::

    S_alpha = u_bar + sum_i alpha_i * sigma_i * u_i      (+ sum_j e_j * b_j)

``u_i`` are orthonormal (``U^T U = I``), ``sigma_i`` their standard deviations,
so ``alpha ~ N(0, I)`` for the faces the model was built from. The Surrey Face
Model (SFM) adds six expression blendshapes ``b_j`` (anger, disgust, fear,
happiness, sadness, surprise) with weights ``e_j`` (0 = neutral, 1 = the full
expression).

The .bin files are cereal archives written by eos, so they are read once with
eos-py and then cached as a plain ``.npz`` keyed by the files' checksums.
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import fetch, paths

__all__ = ["MorphableModel", "load_model", "IBUG_CONTOUR_RIGHT", "IBUG_CONTOUR_LEFT", "IBUG_CHIN", "IBUG_JAW",
           "IBUG_NOT_JAW"]

# iBUG-68 landmark numbers are 1-based in the literature; the kit stores them 0-based.
IBUG_CONTOUR_RIGHT = np.arange(0, 8)    # iBUG 1..8: subject's right jaw line (viewer's left), ear -> chin
IBUG_CHIN = 8                           # iBUG 9
IBUG_CONTOUR_LEFT = np.arange(9, 17)    # iBUG 10..17: chin -> subject's left ear
#: the 16 jaw-line landmarks (0-based iBUG 1-8, 10-17): a detector puts them on the face's outline,
#: so they are not tied to fixed vertices (the chin, iBUG 9, is)
IBUG_JAW = np.concatenate([IBUG_CONTOUR_RIGHT, IBUG_CONTOUR_LEFT])
#: the other 52 landmarks (brows, nose, eyes, mouth and the chin)
IBUG_NOT_JAW = np.setdiff1d(np.arange(68), IBUG_JAW)
_CACHE_VERSION = 2


@dataclass
class MorphableModel:
    """The Surrey Face Model as plain arrays (millimetres, float32).

    Attributes
    ----------
    mean : (N, 3) mean face ``u_bar``.
    basis : (3N, m) orthonormal PCA basis ``U`` (columns ``u_i``).
    sigma : (m,) standard deviation of each component.
    expressions : (3N, 6) expression blendshapes (offsets from the neutral face).
    expression_names : names of the six blendshapes.
    triangles : (T, 3) vertex indices, wound counter-clockwise seen from outside.
    ibug68 : (68,) vertex index of each iBUG landmark (0-based). The jaw line
        (iBUG 1-8, 10-17) has no fixed vertex: it is wherever the outline of
        the face is in the photo. ``ibug68`` holds a frontal default there; the
        candidates are ``contour_right`` / ``contour_left``. iBUG 61 and 65
        (inner mouth corners) are not in the SFM mapping: the kit uses the
        vertices nearest to them (``ibug_defined`` is False there).
    ibug_defined : (68,) True where the SFM mapping defines the landmark.
    contour_right, contour_left : (17,) candidate vertices for the jaw line,
        top (ear) to bottom (chin), from ``sfm_model_contours.json``.
    symmetry : (N,) index of each vertex's mirror image (x -> -x).
    texcoords : (N, 2) texture coordinates.
    """

    mean: np.ndarray
    basis: np.ndarray
    sigma: np.ndarray
    expressions: np.ndarray
    expression_names: tuple
    triangles: np.ndarray
    ibug68: np.ndarray
    ibug_defined: np.ndarray
    contour_right: np.ndarray
    contour_left: np.ndarray
    symmetry: np.ndarray
    texcoords: np.ndarray

    @property
    def n_vertices(self) -> int:
        return self.mean.shape[0]

    @property
    def n_components(self) -> int:
        return self.basis.shape[1]

    @property
    def n_expressions(self) -> int:
        return self.expressions.shape[1]

    def _check(self, x, n: int, name: str) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.shape[0] > n:
            raise ValueError(f"{name} has {x.shape[0]} entries, the model has only {n}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name} contains NaN or infinite values")
        return np.pad(x, (0, n - x.shape[0]))

    def shape(self, alpha=None, expr=None) -> np.ndarray:
        """Vertices (N, 3) of ``u_bar + U diag(sigma) alpha + B e``.

        ``alpha`` (up to m values, in standard deviations; missing trailing
        values are 0) and ``expr`` (up to 6 blendshape weights). ``shape()``
        is the mean face.
        """
        s = self.mean.reshape(-1).astype(np.float64)
        if alpha is not None:
            a = self._check(alpha, self.n_components, "alpha")
            s = s + self.basis @ (a * self.sigma)
        if expr is not None:
            e = self._check(expr, self.n_expressions, "expr")
            s = s + self.expressions @ e
        return s.reshape(-1, 3).astype(np.float32)

    def linear_basis(self, dtype=np.float64) -> np.ndarray:
        """The model's linear part ``[U diag(sigma) | B]`` (3N, m + n_e): a face is
        ``mean.reshape(-1) + linear_basis() @ np.r_[alpha, expr]`` (:meth:`shape`), with
        ``alpha`` in standard deviations and ``expr`` the blendshape weights."""
        return np.concatenate([self.basis.astype(np.float64) * self.sigma.astype(np.float64),
                               self.expressions.astype(np.float64)], axis=1).astype(dtype, copy=False)

    def project_to_model(self, vertices, n_components: int | None = None) -> np.ndarray:
        """``alpha`` of the closest model face (least squares, no expression):
        ``alpha = diag(1/sigma) U^T (S - u_bar)``."""
        v = np.asarray(vertices, dtype=np.float64)
        if v.shape != self.mean.shape:
            raise ValueError(f"vertices must have shape {self.mean.shape}, got {v.shape}")
        k = n_components or self.n_components
        return (self.basis[:, :k].T @ (v.reshape(-1) - self.mean.reshape(-1))) / self.sigma[:k]

    def landmarks_3d(self, vertices=None) -> np.ndarray:
        """(68, 3) positions of the landmark vertices ``ibug68`` of a face (default: the mean)."""
        v = self.mean if vertices is None else np.asarray(vertices)
        if v.shape != self.mean.shape:
            raise ValueError(f"vertices must have shape {self.mean.shape}, got {v.shape}")
        return v[self.ibug68]

    def to_trimesh(self, vertices=None, colors=None):
        """A ``trimesh.Trimesh`` of a face (default: the mean), optionally with vertex colours."""
        import trimesh

        v = self.mean if vertices is None else np.asarray(vertices)
        kw = {}
        if colors is not None:
            c = np.asarray(colors)
            kw["vertex_colors"] = (np.clip(c, 0, 1) * 255).astype(np.uint8) if c.dtype.kind == "f" else c
        return trimesh.Trimesh(v, self.triangles, process=False, **kw)


# ---------------------------------------------------------------------------
# reading the eos files
# ---------------------------------------------------------------------------

def _read_ibug_mapping(path: Path) -> dict[int, int]:
    """``ibug_to_sfm.txt`` (TOML) -> {ibug number (1-based): SFM vertex}."""
    mapping = {}
    in_block = False
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("["):
            in_block = line == "[landmark_mappings]"
            continue
        m = re.fullmatch(r"(\d+)\s*=\s*(\d+)", line)
        if in_block and m:
            mapping[int(m.group(1))] = int(m.group(2))
    return mapping


def _frontal_contour(mean: np.ndarray, candidates: np.ndarray, top_y: float, n: int = 8) -> np.ndarray:
    """A default vertex for each of ``n`` jaw landmarks: candidates evenly spaced
    along the frontal outline (arc length in x, y), from the candidate at height
    ``top_y`` (the outer eye corners: iBUG 1 and 17 sit about there) towards the chin."""
    start = int(np.abs(mean[candidates, 1] - top_y).argmin())
    c = candidates[start:]
    p = mean[c, :2]
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
    targets = np.linspace(0.0, s[-1], n + 1)[:-1]
    return c[np.abs(s[None, :] - targets[:, None]).argmin(axis=1)]


def _mirror_index(mean: np.ndarray) -> np.ndarray:
    from scipy.spatial import cKDTree

    mirrored = mean * np.array([-1.0, 1.0, 1.0])
    return cKDTree(mean).query(mirrored)[1].astype(np.int64)


def _build_arrays(folder: Path) -> dict[str, np.ndarray]:
    import eos  # eos-py: reads the cereal archives

    shape_model = eos.morphablemodel.load_model(str(folder / "sfm_shape_3448.bin")).get_shape_model()
    mm = eos.morphablemodel.load_model(str(folder / "sfm_shape_3448.bin"))
    mean = np.asarray(shape_model.get_mean(), dtype=np.float32).reshape(-1, 3)
    basis = np.asarray(shape_model.get_orthonormal_pca_basis(), dtype=np.float32)
    sigma = np.sqrt(np.asarray(shape_model.get_eigenvalues(), dtype=np.float64)).astype(np.float32)
    triangles = np.asarray(shape_model.get_triangle_list(), dtype=np.int32)
    texcoords = np.asarray(mm.get_texture_coordinates(), dtype=np.float32)
    blendshapes = eos.morphablemodel.load_blendshapes(str(folder / "expression_blendshapes_3448.bin"))
    expressions = np.stack([np.asarray(b.deformation, dtype=np.float32) for b in blendshapes], axis=1)
    names = np.array([b.name for b in blendshapes])

    contours = json.loads((folder / "sfm_model_contours.json").read_text())["model_contour"]
    right = np.asarray(contours["right_contour"], dtype=np.int64)
    left = np.asarray(contours["left_contour"], dtype=np.int64)

    mapping = _read_ibug_mapping(folder / "ibug_to_sfm.txt")
    ibug = np.full(68, -1, dtype=np.int64)
    defined = np.zeros(68, dtype=bool)
    for k, v in mapping.items():
        ibug[k - 1], defined[k - 1] = v, True
    top_y = float(mean[[ibug[36], ibug[45]], 1].mean())
    ibug[IBUG_CONTOUR_RIGHT] = _frontal_contour(mean, right, top_y)
    ibug[IBUG_CONTOUR_LEFT] = _frontal_contour(mean, left, top_y)[::-1]  # chin -> ear
    # inner mouth corners (iBUG 61, 65): the vertex nearest to a point between the
    # outer corner and the inner lip points next to it
    for inner, outer, upper, lower in ((60, 48, 61, 67), (64, 54, 63, 65)):
        if ibug[inner] < 0:
            target = 0.5 * mean[ibug[outer]] + 0.25 * (mean[ibug[upper]] + mean[ibug[lower]])
            ibug[inner] = int(np.linalg.norm(mean - target, axis=1).argmin())

    symmetry = _mirror_index(mean)
    ref = np.loadtxt(folder / "sfm_reference_symmetry.txt", usecols=0, dtype=np.int64) - 1
    symmetry[: len(ref)] = ref  # the file's own pairs where it has them (reference vertices)

    return dict(mean=mean, basis=basis, sigma=sigma, expressions=expressions, expression_names=names,
                triangles=triangles, ibug68=ibug, ibug_defined=defined, contour_right=right,
                contour_left=left, symmetry=symmetry, texcoords=texcoords)


def load_model(path: str | Path | None = None, cache: bool = True) -> MorphableModel:
    """Load the Surrey Face Model (3448 vertices, 63 components, 6 expressions).

    ``path`` is a folder with the SFM files; by default the kit's own copy
    (``data/sfm``, filled by ``python data_scripts/fetch_sfm.py``), or a copy made
    from ``$DUALFACE_SFM_DIR``. The first call reads the eos files with eos-py
    and writes a ``.npz`` cache keyed by their checksums; later calls read the cache.
    """
    if path is None:
        folder = paths.sfm_dir()
        if fetch.missing_or_bad(folder):
            # copy from DUALFACE_SFM_DIR if set; never download implicitly
            folder = fetch.fetch_sfm(folder, download=False, progress=False)
    else:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise fetch.ModelFilesError(f"path {str(folder)!r} is not a folder holding the SFM files")
        bad = fetch.missing_or_bad(folder)
        if bad:
            raise fetch.ModelFilesError(f"{folder} lacks (or has altered copies of) {bad}")
    key = fetch.sha256(folder / "sfm_shape_3448.bin")[:12] + fetch.sha256(
        folder / "expression_blendshapes_3448.bin")[:12]
    cache_file = paths.cache_dir("model") / f"sfm_3448_{key}_v{_CACHE_VERSION}.npz"
    if cache and cache_file.is_file():
        with np.load(cache_file, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    else:
        arrays = _build_arrays(folder)
        if cache:   # whole or not at all, also when two processes fill an empty cache at once
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            paths.write_atomic(cache_file, buffer.getvalue())
    arrays["expression_names"] = tuple(str(x) for x in arrays["expression_names"])
    return MorphableModel(**arrays)
