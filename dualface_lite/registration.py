"""Registration: optimal-step non-rigid ICP (Amberg, Romdhani & Vetter, CVPR 2007).

The module is ``dualface_lite.registration`` (as trimesh's); its main function is
:func:`nicp`, also ``dualface_lite.nicp``.

The paper builds its dense ground truth ``S_hat`` (section IV-A, Fig. 2) by
registering the personalized template ``S0`` onto each triangulated range scan
with this algorithm: the registered template keeps the model's vertices, order
and triangles, but lies on the scan.

The unknowns are one affine transform per source vertex, ``X_i`` (4 x 3), so a
vertex ``v_i`` moves to ``[v_i^T 1] X_i``. Stacked, ``X`` is (4N x 3) and the
cost is (Amberg's eq. 12)::

    E(X) = || W (D X - U) ||^2  +  alpha^2 || (M kron G) X ||^2  +  beta^2 || D_L X - U_L ||^2
           data term               stiffness term                   landmark term

* ``D`` (N x 4N) holds ``[v_i^T 1]`` in row i, so ``D X`` are the moved vertices;
  ``U`` (N x 3) their current closest points on the target and ``W`` = diag(w_i)
  with ``w_i`` = 1 for a reliable match and 0 for a rejected one.
* ``M`` (edges x N) is the node-arc incidence matrix of the source's edges
  (+1 / -1 at the two ends of each edge) and ``G = diag(1, 1, 1, gamma)``: the
  stiffness term sums ``|| G (X_i - X_j) ||^2`` over the edges, i.e. neighbouring
  transforms must agree; ``gamma`` weighs translations against the linear part.
* ``D_L`` picks the landmark vertices and ``U_L`` are their targets.

For a decreasing schedule of stiffness ``alpha`` (rigid-ish first, then more and
more local freedom) the algorithm alternates, until the vertices stop moving:

1. find the closest point on the target for every moved source vertex and
   reject the match (``w_i = 0``) when it is too far, when the two normals
   disagree, or when it lies on the target's border (a hole or the edge of the
   scan: the surface there is missing, not ending);
2. solve the linear least squares problem above for ``X`` exactly ("optimal step").

Step 2 is the sparse normal equations ``K X = B`` with
``K = alpha^2 (M^T M kron G^2) + sum_i c_i v~_i v~_i^T`` (4 x 4 blocks on the
diagonal, ``c_i = w_i^2 + beta^2 * [i is a landmark]``), see :func:`nicp` for how
it is solved quickly. Coordinates are centred on the source and divided by the
diagonal of its bounding box inside the function (as trimesh and menpo3d do), so
``alpha``, ``beta`` and ``gamma`` do not depend on the units; distances that the
caller gives (``eps``, ``reject_distance``) are in the meshes' units (mm in the kit).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla
from scipy.spatial import cKDTree

from . import checks
from .render import vertex_normals  # area-weighted unit normals

__all__ = ["nicp", "NICPResult", "NICPStep", "closest_points_on_triangles", "surface_distance",
           "DEFAULT_STIFFNESS", "DEFAULT_LANDMARK_WEIGHTS"]

#: Default stiffness schedule ``alpha`` (unitless: coordinates are normalized by the
#: source's bounding-box diagonal). From nearly rigid to local.
DEFAULT_STIFFNESS = (20.0, 3.0, 0.7, 0.3)
#: Default landmark weight ``beta``, the same in every step (a number is used for
#: all steps; a sequence gives one value per step).
DEFAULT_LANDMARK_WEIGHTS = 5.0


@dataclass
class NICPStep:
    """What one stiffness step did (``nicp(..., record=True)``).

    Attributes
    ----------
    stiffness, landmark_weight : the step's stiffness ``alpha`` and landmark weight ``beta``
        (Amberg's eq. 12; not the PCA coefficients ``alpha`` of the morphable model).
    iterations : closest-point / solve rounds it took.
    vertices : (N, 3) float32 registered source vertices at the end of the step.
    matched_fraction : fraction of source vertices with an accepted match in its last round.
    mean_distance : mean distance (mesh units) from the matched vertices to their
        closest points in its last round (before that round's solve).
    """

    stiffness: float
    landmark_weight: float
    iterations: int
    vertices: np.ndarray = field(repr=False)
    matched_fraction: float
    mean_distance: float


@dataclass
class NICPResult:
    """The result of ``nicp(..., record=True)``.

    Attributes
    ----------
    vertices : (N, 3) float32 registered source vertices (the same array
        ``nicp(...)`` returns without ``record``).
    steps : one :class:`NICPStep` per stiffness value, in order.
    initial : (N, 3) float32 source vertices before registration.
    matched : (N,) bool mask, the source vertices with an accepted match in the last round.
    flipped_target_normals : True if the target's winding was the opposite of
        the source's, so its normals were flipped for the normal test.
    n_factorizations, n_solves, seconds : work done (for teaching and benchmarks).
    """

    vertices: np.ndarray = field(repr=False)
    steps: list
    initial: np.ndarray = field(repr=False)
    matched: np.ndarray = field(repr=False)
    flipped_target_normals: bool = False
    n_factorizations: int = 0
    n_solves: int = 0
    seconds: float = 0.0

    def __array__(self, dtype=None, copy=None):
        return self.vertices if dtype is None else self.vertices.astype(dtype)


# ---------------------------------------------------------------------------
# input checking
# ---------------------------------------------------------------------------

def _schedule(values, name: str, n: int | None = None) -> np.ndarray:
    a = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a number or a non-empty 1-D sequence of numbers")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"{name} must be finite and non-negative, got {a.tolist()}")
    if n is not None:
        if a.size == 1:
            a = np.full(n, a[0])
        elif a.size != n:
            raise ValueError(f"{name} has {a.size} values but stiffness has {n}: give one per step or a single number")
    return a


def _landmarks(source_landmarks, target_landmarks, n_vertices: int):
    if source_landmarks is None and target_landmarks is None:
        return None, None
    if source_landmarks is None or target_landmarks is None:
        raise ValueError("give both source_landmarks (vertex indices) and target_landmarks (points), or neither")
    idx = np.asarray(source_landmarks)
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        raise ValueError(f"source_landmarks must be a 1-D array of vertex indices, got {idx.dtype} {idx.shape}")
    pts = np.asarray(target_landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"target_landmarks must have shape (L, 3), got {pts.shape}")
    if pts.shape[0] != idx.shape[0]:
        raise ValueError(f"landmark count mismatch: {idx.shape[0]} source_landmarks but "
                         f"{pts.shape[0]} target_landmarks")
    if idx.size and (idx.min() < 0 or idx.max() >= n_vertices):
        raise ValueError(f"source_landmarks must index source vertices 0..{n_vertices - 1}, "
                         f"got values in {idx.min()}..{idx.max()}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("target_landmarks contain NaN or infinite values")
    if idx.size == 0:
        return None, None
    return idx.astype(np.int64), pts


# ---------------------------------------------------------------------------
# geometry helpers (vectorized)
# ---------------------------------------------------------------------------

def _unique_edges(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges (E, 2) (sorted pairs) and how many faces use each."""
    e = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])
    lo, hi = e.min(1), e.max(1)
    n = int(hi.max()) + 1
    keys, counts = np.unique(lo * n + hi, return_counts=True)
    return np.stack([keys // n, keys % n], axis=1), counts


def closest_points_on_triangles(points, a, b, c):
    """Closest point on each triangle ``(a_k, b_k, c_k)`` to ``points[k]`` (all (K, 3)).

    Returns ``(closest (K, 3), barycentric (K, 3))``. The region test of Ericson,
    *Real-Time Collision Detection* (2005), 5.1.5, vectorized: a point whose
    closest point is on an edge or a corner gets exact zeros in the other
    barycentric coordinates (used to detect matches on the border of a scan).
    Degenerate (zero-area) triangles give their first corner.
    """
    p = np.asarray(points, dtype=np.float64)
    a, b, c = (np.asarray(x, dtype=np.float64) for x in (a, b, c))
    ab, ac = b - a, c - a
    ap, bp, cp = p - a, p - b, p - c
    d1, d2 = np.einsum("ij,ij->i", ab, ap), np.einsum("ij,ij->i", ac, ap)
    d3, d4 = np.einsum("ij,ij->i", ab, bp), np.einsum("ij,ij->i", ac, bp)
    d5, d6 = np.einsum("ij,ij->i", ab, cp), np.einsum("ij,ij->i", ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    # the seven Voronoi regions of the triangle, tested in Ericson's order (first match wins)
    regions = [(d1 <= 0) & (d2 <= 0),                              # corner a
               (d3 >= 0) & (d4 <= d3),                             # corner b
               (vc <= 0) & (d1 >= 0) & (d3 <= 0),                  # edge ab
               (d6 >= 0) & (d5 <= d6),                             # corner c
               (vb <= 0) & (d2 >= 0) & (d6 <= 0),                  # edge ac
               (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)]        # edge bc
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ab = d1 / (d1 - d3)
        t_ac = d2 / (d2 - d6)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        den = va + vb + vc
        v_in, w_in = vb / den, vc / den
    zero, one = np.zeros_like(d1), np.ones_like(d1)
    v = np.select(regions, [zero, one, t_ab, zero, zero, 1 - t_bc], v_in)
    w = np.select(regions, [zero, zero, zero, one, t_ac, t_bc], w_in)
    u = np.select(regions, [one, zero, 1 - t_ab, zero, 1 - t_ac, zero], 1 - v_in - w_in)
    bary = np.stack([u, v, w], axis=1)
    bad = ~np.isfinite(bary).all(1)
    bary[bad] = (1.0, 0.0, 0.0)
    q = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:3] * c
    return q, bary


class _Target:
    """The target surface, prepared once: k-d tree on its vertices, the faces
    around each vertex, vertex normals and the border (edges used by one face)."""

    def __init__(self, V: np.ndarray, F: np.ndarray):
        self.V, self.F = V, F
        self.tree = cKDTree(V)
        self.normals = vertex_normals(V, F, dtype=np.float64)
        edges, counts = _unique_edges(F)
        border = edges[counts == 1]
        n = V.shape[0]
        self.border_keys = np.sort(border[:, 0] * n + border[:, 1])
        self.border_vertex = np.zeros(n, dtype=bool)
        self.border_vertex[border.ravel()] = True
        # faces around each vertex, padded with -1: (n, max valence)
        fv = F.ravel()
        order = np.argsort(fv, kind="stable")
        counts_v = np.bincount(fv, minlength=n)
        start = np.concatenate([[0], np.cumsum(counts_v)[:-1]])
        width = int(counts_v.max())
        rank = np.arange(fv.size) - np.repeat(start, counts_v)
        vf = -np.ones((n, width), dtype=np.int64)
        vf[fv[order], rank] = order // 3
        # pad with the vertex's first face (a repeated candidate changes nothing); a vertex
        # used by no face (never the nearest one of a cleaned mesh) gets face 0
        first = np.where(vf[:, 0] >= 0, vf[:, 0], 0)
        self.vertex_faces = np.where(vf >= 0, vf, first[:, None])

    def _on_border(self, faces: np.ndarray, bary: np.ndarray) -> np.ndarray:
        zero = bary <= 1e-12
        nz = zero.sum(1)
        tri = self.F[faces]
        out = np.zeros(faces.shape[0], dtype=bool)
        corner = nz == 2                                   # at a vertex: is it a border vertex?
        out[corner] = self.border_vertex[tri[corner, bary[corner].argmax(1)]]
        edge = nz == 1                                     # on an edge: is it a border edge?
        if edge.any():
            k = zero[edge].argmax(1)                       # the vertex opposite the edge
            t = tri[edge]
            i = t[np.arange(len(k)), (k + 1) % 3]
            j = t[np.arange(len(k)), (k + 2) % 3]
            keys = np.minimum(i, j) * self.V.shape[0] + np.maximum(i, j)
            pos = np.searchsorted(self.border_keys, keys)
            pos = np.minimum(pos, max(len(self.border_keys) - 1, 0))
            out[edge] = (self.border_keys[pos] == keys) if len(self.border_keys) else False
        return out

    def closest(self, Y: np.ndarray):
        """Closest points on the surface to ``Y`` (N, 3): the exact closest point
        on the faces around the nearest target vertex. Returns
        ``(points, distances, normals, on_border)``."""
        _, j = self.tree.query(Y)
        faces = self.vertex_faces[j]                       # (N, width), padded with a real face
        N, width = faces.shape
        tri = self.V[self.F[faces.ravel()]]                # (N * width, 3, 3)
        Yr = np.repeat(Y, width, axis=0)
        q, bary = closest_points_on_triangles(Yr, tri[:, 0], tri[:, 1], tri[:, 2])
        d = q - Yr
        d2 = np.einsum("ij,ij->i", d, d).reshape(N, width)
        pick = np.arange(N) * width + d2.argmin(1)
        q, bary, faces = q[pick], bary[pick], faces.ravel()[pick]
        nrm = np.einsum("ij,ijk->ik", bary, self.normals[self.F[faces]])
        nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
        return q, np.sqrt(d2.ravel()[pick]), nrm, self._on_border(faces, bary)


def surface_distance(points, vertices, faces) -> np.ndarray:
    """Distance (N,) from each of ``points`` (N, 3) to the triangle mesh
    (``vertices`` (V, 3), ``faces`` (F, 3)), with the closest-point query NICP
    itself uses (the exact closest point on the faces around the nearest mesh
    vertex). A mesh without faces gives ``inf`` everywhere."""
    P = np.asarray(points, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {P.shape}")
    V = np.asarray(vertices, dtype=np.float64)
    F = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(F) == 0:
        return np.full(len(P), np.inf)
    return _Target(V, F).closest(P)[1]


# ---------------------------------------------------------------------------
# the linear system
# ---------------------------------------------------------------------------

def _fill_reducing_order(edges: np.ndarray, n: int) -> np.ndarray:
    """A minimum-degree ordering of the source's vertices (SuperLU's MMD on the
    graph Laplacian), so that the 4 x 4-block system factorizes with little fill."""
    L = sp.coo_matrix((np.ones(2 * len(edges)), (edges.ravel(), edges[:, ::-1].ravel())), shape=(n, n))
    A = (L + sp.eye(n) * 4.0).tocsc()
    lu = sla.splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options=dict(SymmetricMode=True))
    return np.argsort(lu.perm_c)


class _Pattern:
    """The sparsity pattern of ``K`` for one source topology (N vertices, its
    edges, in fill-reducing order) and ``gamma``: where the stiffness entries
    ``alpha^2 (L kron G^2)`` and the 4 x 4 diagonal blocks land in a CSC matrix.
    Values are scattered into it with one ``bincount`` per round."""

    def __init__(self, n: int, edges: np.ndarray, gamma: float):
        self.n = n
        i, j = edges[:, 0], edges[:, 1]
        deg = np.bincount(edges.ravel(), minlength=n).astype(np.float64)
        g2 = np.array([1.0, 1.0, 1.0, gamma**2])
        four = np.arange(4)
        # stiffness entries: diagonal (deg_i g2_a) and off-diagonal (-g2_a) for both edge directions
        r_s = np.concatenate([(4 * np.arange(n)[:, None] + four).ravel(),
                              (4 * i[:, None] + four).ravel(), (4 * j[:, None] + four).ravel()])
        c_s = np.concatenate([(4 * np.arange(n)[:, None] + four).ravel(),
                              (4 * j[:, None] + four).ravel(), (4 * i[:, None] + four).ravel()])
        self.v_s = np.concatenate([(deg[:, None] * g2).ravel(), np.tile(-g2, len(i)), np.tile(-g2, len(i))])
        # the 4 x 4 diagonal blocks, row-major within each block
        base = 4 * np.arange(n)[:, None, None]
        r_b = np.broadcast_to(base + four[None, :, None], (n, 4, 4)).ravel()
        c_b = np.broadcast_to(base + four[None, None, :], (n, 4, 4)).ravel()
        rows, cols = np.concatenate([r_s, r_b]), np.concatenate([c_s, c_b])
        key = cols * (4 * n) + rows                         # column-major: CSC order
        uniq, self.inv = np.unique(key, return_inverse=True)
        self.indices = (uniq % (4 * n)).astype(np.int32)
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(uniq // (4 * n), minlength=4 * n))]).astype(np.int32)
        self.nnz = uniq.size


class _System:
    """``K(alpha, c) = alpha^2 (L kron G^2) + blockdiag(c_i v~_i v~_i^T + reg I)`` and
    ``B`` for the source's vertices ``v~_i = [v_i, 1]`` (normalized, fill-reducing order)."""

    def __init__(self, pattern: _Pattern, Vh: np.ndarray):
        self.p, self.n, self.Vh = pattern, Vh.shape[0], Vh
        self.outer = (Vh[:, :, None] * Vh[:, None, :]).reshape(self.n, 16)
        self.eye = np.eye(4).ravel()[None, :]

    def matrix(self, alpha: float, c: np.ndarray, reg: float) -> sp.csc_matrix:
        p = self.p
        vals = np.concatenate([alpha**2 * p.v_s, (c[:, None] * self.outer + reg * self.eye).ravel()])
        data = np.bincount(p.inv, weights=vals, minlength=p.nnz)
        return sp.csc_matrix((data, p.indices, p.indptr), shape=(4 * self.n, 4 * self.n))

    def rhs(self, r: np.ndarray) -> np.ndarray:
        """``B`` (4N, 3) from per-vertex targets ``r_i`` (already weighted): ``B_i = v~_i r_i^T``."""
        return (self.Vh[:, :, None] * r[:, None, :]).reshape(4 * self.n, 3)


_TOPOLOGY_CACHE: dict = {}


def _topology(F: np.ndarray, n: int, gamma: float):
    """Fill-reducing vertex order and the pattern of ``K`` for a source topology.

    Depends only on the faces (the same for every template of one model), so it
    is kept in a small cache keyed by a hash of them."""
    import hashlib

    key = (hashlib.blake2b(np.ascontiguousarray(F).tobytes(), digest_size=16).hexdigest(), n, float(gamma))
    hit = _TOPOLOGY_CACHE.get(key)
    if hit is None:
        edges, _ = _unique_edges(F)
        order = _fill_reducing_order(edges, n)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        Es = np.sort(rank[edges], axis=1)
        hit = (order, rank, _Pattern(n, Es, gamma))
        if len(_TOPOLOGY_CACHE) >= 4:
            _TOPOLOGY_CACHE.pop(next(iter(_TOPOLOGY_CACHE)))
        _TOPOLOGY_CACHE[key] = hit
    return hit


def _factor(K: sp.csc_matrix):
    # the matrix is already in a fill-reducing order: keep it, pivot on the diagonal (K is SPD)
    return sla.splu(K, permc_spec="NATURAL", diag_pivot_thresh=0.0,
                    options=dict(SymmetricMode=True, Equil=False))


def _pcg(K, B, X, precond, tol: float, maxiter: int) -> tuple[np.ndarray, bool, int]:
    """Preconditioned conjugate gradients on the three columns at once, from ``X``."""
    def dot(A, C):
        return np.einsum("ij,ij->j", A, C)

    R = B - K @ X
    tol2 = tol**2 * np.maximum(dot(B, B), 1e-300)
    if np.all(dot(R, R) <= tol2):
        return X, True, 0
    Z = precond(R)
    P = Z.copy()
    rz = dot(R, Z)
    for k in range(1, maxiter + 1):
        KP = K @ P
        pkp = dot(P, KP)
        a = np.divide(rz, pkp, out=np.zeros_like(rz), where=pkp > 0)
        X = X + a * P
        R = R - a * KP
        if np.all(dot(R, R) <= tol2):
            return X, True, k
        Z = precond(R)
        rz_new = dot(R, Z)
        P = Z + np.divide(rz_new, rz, out=np.zeros_like(rz), where=rz > 0) * P
        rz = rz_new
    return X, False, maxiter


# ---------------------------------------------------------------------------
# the algorithm
# ---------------------------------------------------------------------------

def nicp(source_mesh, target_mesh, source_landmarks=None, target_landmarks=None, *,
         stiffness=DEFAULT_STIFFNESS, landmark_weights=DEFAULT_LANDMARK_WEIGHTS, gamma: float = 1.0,
         max_iter_per_step: int = 5, eps: float = 0.1, reject_distance: float | None = 10.0,
         reject_normal_deg: float | None = 60.0, reject_boundary: bool = True, rigid_init: bool = True,
         record: bool = False, progress: bool = False):
    """Register ``source_mesh`` non-rigidly onto ``target_mesh`` (Amberg et al. 2007).

    The paper's dense ground truth ``S_hat`` (section IV-A, Fig. 2): ``source_mesh``
    is the personalized template ``S0``, ``target_mesh`` the triangulated range
    scan; the result has the template's vertices (same count and order) moved onto
    the scan. See the module docstring for the cost function.

    Parameters
    ----------
    source_mesh, target_mesh : ``trimesh.Trimesh`` (or a ``(vertices, faces)``
        pair), in the same frame and units (mm in the kit).
    source_landmarks : (L,) vertex indices into the source, or None.
    target_landmarks : (L, 3) points the landmark vertices should move to, or None.
    stiffness : the decreasing schedule of ``alpha`` (one stiffness step each).
    landmark_weights : ``beta`` for each step (or one number for all).
    gamma : weight of the translations against the linear part in the stiffness term.
    max_iter_per_step : at most this many closest-point / solve rounds per step.
    eps : a step ends when the vertices moved less than ``eps`` (mesh units, mean
        over vertices) in a round.
    reject_distance : a match farther than this (mesh units) is rejected; None: never.
    reject_normal_deg : a match whose target normal is more than this many degrees
        from the source vertex's normal is rejected; None: never. The target's
        winding may be either way: if most initial matches disagree by more than
        90 degrees, the target's normals are flipped first.
    reject_boundary : reject matches on the target's border (edges used by one
        face: the outline of the scan and its holes), as Amberg et al. do.
    rigid_init : with 3 or more landmarks, first move the source rigidly
        (rotation + translation, least squares on the landmarks, Kabsch) onto
        the target landmarks, the initialisation Amberg et al. assume. NICP is a
        local method: its stiff first steps correct the remaining global error
        only slowly, one closest-point round at a time.
    record : return an :class:`NICPResult` (vertices after each step, counts,
        timings) instead of the bare array.
    progress : show a tqdm bar over the stiffness steps.

    Returns
    -------
    (N, 3) float32 registered source vertices, or an :class:`NICPResult` if ``record``.

    Notes
    -----
    *Closest points* are exact points on the target's triangles (not just its
    vertices): among the faces around the nearest target vertex (k-d tree), the
    closest point on each (vectorized). Snapping to vertices would pull the
    template towards a grid of scan points (about half the scan spacing of
    tangential noise, plus the full depth noise) and could not tell whether a
    match lies on the scan's border.

    *Solver.* ``K`` (4N x 4N, N = 3448 for the SFM: 13,792 unknowns for each of
    x, y, z) is symmetric positive definite and keeps its sparsity pattern; its
    values change with ``alpha`` and with the match weights. The vertices are put
    once in a minimum-degree order (of the mesh graph, expanded to 4 x 4 blocks),
    so that a sparse LU with diagonal pivots (SuperLU in symmetric mode; for a
    symmetric positive definite matrix that is a Cholesky factorization, up to a
    diagonal scaling) has little fill (``benchmarks/bench_nicp.py`` times it).
    At the first round of a stiffness step ``K`` is factorized and solved
    directly; in the following rounds only a few weights change, so the step's
    factor is used as the preconditioner of a conjugate-gradient solve (three
    right-hand sides at once) started from the previous ``X``, which converges in a
    handful of back-substitutions; if it does not, ``K`` is factorized again.
    A tiny ridge ``1e-8 ||X - X_prev||^2`` keeps ``K`` invertible even if every
    match were rejected. The vertex order and the pattern of ``K`` depend only on
    the source's faces and are cached (every template of one model shares them).

    *Defaults* were chosen on the kit's synthetic scans (``benchmarks/bench_nicp.py``,
    template = the landmark fit ``S0``): four stiffness steps ``(20, 3, 0.7, 0.3)``
    with at most 5 rounds each, and a landmark weight that stays at 5 in every
    step. Point-to-surface matching cannot tell where along the surface a vertex
    belongs; the landmarks are what fixes that sliding, so fading them out (as
    many schedules do) made the correspondence error worse (from a rigidly aligned
    mean face, over the scanned vertices: 4.5 -> 2.8 mm fading against 4.5 -> 2.1 mm
    constant, with 1.5 mm of noise on each coordinate of the 3D landmarks).
    ``gamma = 1`` as Amberg et al. recommend: a smaller ``gamma`` (cheaper local
    translations) fits small bumps better but lets the landmarks' correction
    spread less far, which cost more on the scans than it gained.
    """
    import time

    t_start = time.perf_counter()
    V0, F0 = checks.mesh(source_mesh, "source_mesh")
    TV, TF = checks.mesh(target_mesh, "target_mesh")
    lm_idx, lm_pts = _landmarks(source_landmarks, target_landmarks, V0.shape[0])
    alphas = _schedule(stiffness, "stiffness")
    if np.any(alphas <= 0):
        raise ValueError(f"stiffness values must be positive, got {alphas.tolist()}")
    betas = _schedule(landmark_weights, "landmark_weights", n=alphas.size)
    if not (np.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be a positive number, got {gamma}")
    if int(max_iter_per_step) < 1:
        raise ValueError(f"max_iter_per_step must be at least 1, got {max_iter_per_step}")
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a non-negative number, got {eps}")
    if reject_distance is not None and not reject_distance > 0:
        raise ValueError(f"reject_distance must be positive (or None), got {reject_distance}")
    if reject_normal_deg is not None and not (0 < reject_normal_deg <= 180):
        raise ValueError(f"reject_normal_deg must be in (0, 180] (or None), got {reject_normal_deg}")

    V_init = V0
    if rigid_init and lm_idx is not None and len(np.unique(lm_idx)) >= 3:
        from .metrics import rigid_align

        R, t, _ = rigid_align(V0[lm_idx], lm_pts)
        V0 = V0 @ R.T + t

    # normalize: centre on the source, divide by its bounding-box diagonal
    centre = V0.mean(0)
    scale = float(np.linalg.norm(V0.max(0) - V0.min(0)))
    if scale <= 0:
        raise ValueError("source_mesh is degenerate: all its vertices coincide")
    n = V0.shape[0]

    # source in a fill-reducing vertex order (relabelled; undone at the end)
    order, rank, pattern = _topology(F0, n, gamma)
    Vs = (V0[order] - centre) / scale
    Fs = rank[F0]
    Vh = np.hstack([Vs, np.ones((n, 1))])
    target = _Target((TV - centre) / scale, TF)
    if lm_idx is not None:
        lm_s = rank[lm_idx]
        lm_mult = np.bincount(lm_s, minlength=n).astype(np.float64)
        lm_sum = np.zeros((n, 3))
        np.add.at(lm_sum, lm_s, (lm_pts - centre) / scale)
    else:
        lm_mult, lm_sum = np.zeros(n), np.zeros((n, 3))

    system = _System(pattern, Vh)
    reg = 1e-8
    X = np.tile(np.vstack([np.eye(3), np.zeros((1, 3))]), (n, 1))  # identity transforms
    Y = Vs.copy()
    d_max = np.inf if reject_distance is None else reject_distance / scale
    cos_min = -np.inf if reject_normal_deg is None else np.cos(np.deg2rad(reject_normal_deg))
    tol_move = eps / scale

    def to_output(Yn):
        out = np.empty_like(Yn)
        out[order] = Yn * scale + centre
        return out.astype(np.float32)

    flip = None
    steps, n_fact, n_solve = [], 0, 0
    w = np.zeros(n, dtype=bool)
    it = zip(alphas, betas)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=alphas.size, desc="nicp", unit="step")
    for alpha, beta in it:
        lu = None
        for k in range(int(max_iter_per_step)):
            q, dist, tn, border = target.closest(Y)
            sn = vertex_normals(Y, Fs, dtype=np.float64)
            cos = (sn * tn).sum(1)
            if flip is None:  # the target's winding, decided once from the first matches
                near = dist <= d_max
                flip = bool(near.any() and np.median(cos[near]) < 0)
            if flip:
                cos = -cos
            w = (dist <= d_max) & (cos >= cos_min)
            if reject_boundary:
                w &= ~border
            if not w.any() and lm_idx is None:
                raise ValueError("no source vertex has an acceptable match on the target: are the meshes in the "
                                 "same frame and units, and is reject_distance large enough?")
            c = w.astype(np.float64) + beta**2 * lm_mult
            K = system.matrix(alpha, c, reg)
            B = system.rhs(w[:, None] * q + beta**2 * lm_sum) + reg * X
            if lu is not None:
                X_new, ok, _ = _pcg(K, B, X, lu.solve, tol=1e-5, maxiter=8)
            else:
                ok = False
            if not ok:
                lu = _factor(K)
                n_fact += 1
                X_new = lu.solve(B)
            n_solve += 1
            X = X_new
            Y_new = np.einsum("ij,ijk->ik", Vh, X.reshape(n, 4, 3))
            moved = float(np.sqrt(np.einsum("ij,ij->i", Y_new - Y, Y_new - Y)).mean())
            Y = Y_new
            if moved < tol_move:
                break
        if record:
            md = float(dist[w].mean() * scale) if w.any() else float("nan")
            steps.append(NICPStep(stiffness=float(alpha), landmark_weight=float(beta), iterations=k + 1,
                                  vertices=to_output(Y), matched_fraction=float(w.mean()), mean_distance=md))

    out = to_output(Y)
    if not record:
        return out
    matched = np.empty(n, dtype=bool)
    matched[order] = w
    return NICPResult(vertices=out, steps=steps, initial=V_init.astype(np.float32), matched=matched,
                      flipped_target_normals=bool(flip), n_factorizations=n_fact, n_solves=n_solve,
                      seconds=time.perf_counter() - t_start)
