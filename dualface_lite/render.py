"""A vectorized software rasterizer: depth maps, Gouraud-shaded images and vertex visibility.

The kit renders its synthetic photos and range scans (the stand-in for FRGC, paper
Sec. IV-A and Fig. 2) with this module, and asks it which vertices a camera sees
when it samples colours for the personalized template (eq. (4)). It is plain numpy:
no OpenGL, no per-pixel or per-triangle Python loop.

Conventions (those of :mod:`dualface_lite.camera`)
--------------------------------------------------
* Vertices are in the object frame (mm); ``camera.R``, ``camera.t`` take them to the
  view frame (x right, y up, camera looking along -z).
* The pixel in row ``i``, column ``j`` has its centre at ``(u, v) = (j, i)``; a pixel
  is drawn when its *centre* lies inside a projected triangle.
* Depth is the camera depth ``-z_view`` in mm (positive in front of the camera);
  background pixels hold ``np.inf``.
* Triangles are wound counter-clockwise seen from outside, so the right-hand rule
  ``(b - a) x (c - a)`` points out of the surface. This is the winding of the Surrey
  Face Model (its normals point out of the face: +z at the nose tip) and of
  ``trimesh.creation`` meshes.

How the rasterizer works (all steps on whole arrays)
----------------------------------------------------
1. Project every vertex once: ``(u, v)`` pixels and depth ``w``.
2. For every triangle, the pixel bounding box of its three projected vertices,
   clipped to the image.
3. Expand (triangle, pixel) candidate pairs, one per pixel of each box, with the
   ``np.repeat`` / ``cumsum`` trick; boxes are cut into row bands and grouped into
   chunks of a few thousand candidates, so that memory stays bounded for huge
   triangles or images (and the temporaries stay in the CPU cache).
4. Screen-space barycentrics ``(l0, l1, l2)`` of every candidate pixel centre from
   the 2x2 system ``p - p0 = l1 (p1 - p0) + l2 (p2 - p0)``; candidates with a negative
   coordinate lie outside and are dropped.
5. Depth at the pixel: for an orthographic camera depth is affine in the image, so
   ``w = sum_k l_k w_k``; for a perspective camera it is ``1 / w`` that is affine in
   the image, so ``w = 1 / sum_k (l_k / w_k)`` and the *perspective-correct*
   barycentrics (the weights of the 3D point on the triangle) are
   ``b_k = (l_k / w_k) * w``.
6. Z-buffer: ``np.minimum.at`` writes the smallest depth of all candidates of each
   pixel into a flat depth buffer; the candidate whose depth equals it wins (one of
   them, where two tie exactly on a shared edge) and writes its triangle id and
   barycentrics.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import checks
from .camera import Camera

__all__ = [
    "vertex_normals",
    "view_normals",
    "sh_basis",
    "Lighting",
    "shade",
    "Fragments",
    "rasterize",
    "vertex_visibility",
    "Rendering",
    "render",
    "render_depth",
]

# Candidate (triangle, pixel) pairs handled at once (a chunk holds up to twice as
# many). Bounds the memory of a call whatever the image or triangle size, and keeps
# the temporaries small enough to stay in the CPU cache (faster than one big chunk on
# the SFM face).
_CHUNK = 1 << 13
# A vertex closer than this (mm) to the plane of a perspective camera, or behind it,
# cannot be projected; triangles using one are skipped (there is no near-plane clipping).
_NEAR = 1e-6
# Tolerance on barycentric coordinates for the inside test, so that a pixel centre
# lying exactly on an edge shared by two triangles is never missed by both.
_EPS = 1e-9

#: Default albedo of :func:`render` when no colours are given (light grey).
DEFAULT_ALBEDO = 0.75


# --------------------------------------------------------------------------- checks
def _check_camera(camera) -> Camera:
    if not isinstance(camera, Camera):
        raise TypeError(f"camera must be a dualface_lite.camera.Camera, got {type(camera).__name__}")
    return camera


def _check_mesh(camera, vertices, triangles):
    camera = _check_camera(camera)
    V = checks.points(vertices, "vertices")
    F = checks.triangles(triangles, V.shape[0])
    return camera, V, F


# --------------------------------------------------------------------------- normals
def _vertex_normals(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    a, b, c = V[F[:, 0]], V[F[:, 1]], V[F[:, 2]]
    fn = np.cross(b - a, c - a)  # |fn| = 2 * area: the area weighting comes for free
    idx = F.ravel()
    w = np.repeat(fn, 3, axis=0)  # the face normal once for each of its 3 corners
    n = np.stack([np.bincount(idx, weights=w[:, k], minlength=V.shape[0]) for k in range(3)], axis=1)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, norm, out=np.zeros_like(n), where=norm > 0)


def vertex_normals(vertices, triangles, dtype=np.float32) -> np.ndarray:
    """Unit vertex normals (N, 3) (``dtype``, float32 by default), in the frame of ``vertices``.

    Each triangle ``(a, b, c)`` contributes its face normal
    ``n_f = (b - a) x (c - a)``, whose length is twice the triangle's area, to each
    of its three vertices; the sums are normalized:

        n_i = sum_{f containing i} n_f / || sum_{f containing i} n_f ||

    so large triangles weigh more than slivers (area weighting). With
    counter-clockwise winding seen from outside (the Surrey Face Model's, and
    trimesh's) the normals point out of the surface: on the SFM mean they point
    out of the face, +z at the nose tip. A vertex used by no triangle (or only by
    degenerate ones) gets the zero vector.
    """
    V = checks.points(vertices, "vertices")
    F = checks.triangles(triangles, V.shape[0])
    return _vertex_normals(V, F).astype(dtype, copy=False)


def view_normals(camera, vertices, triangles) -> np.ndarray:
    """Unit vertex normals (N, 3) float64 turned into the **view frame** of ``camera`` (x right, y up,
    z towards the camera), the frame of :class:`Lighting`: ``vertex_normals(vertices, triangles) @ R^T``."""
    return vertex_normals(vertices, triangles, dtype=np.float64) @ np.asarray(_check_camera(camera).R,
                                                                             np.float64).T


# --------------------------------------------------------------------------- lighting
# Constants of the real spherical harmonics Y_lm up to order 2 (Ramamoorthi & Hanrahan 2001).
_Y00 = 0.5 * np.sqrt(1.0 / np.pi)          # 0.282095
_Y1 = np.sqrt(3.0 / (4.0 * np.pi))         # 0.488603
_Y2 = 0.5 * np.sqrt(15.0 / np.pi)          # 1.092548
_Y20 = 0.25 * np.sqrt(5.0 / np.pi)         # 0.315392
_Y22 = 0.25 * np.sqrt(15.0 / np.pi)        # 0.546274
# Clamped-cosine (Lambertian) kernel in SH: A_l for l = 0, 1, 2.
_A = np.array([np.pi, 2.0 * np.pi / 3.0, np.pi / 4.0])
_BAND = np.array([0, 1, 1, 1, 2, 2, 2, 2, 2])


def _sh_basis(n: np.ndarray) -> np.ndarray:
    x, y, z = n[:, 0], n[:, 1], n[:, 2]
    return np.stack([
        np.full_like(x, _Y00),
        _Y1 * y, _Y1 * z, _Y1 * x,
        _Y2 * x * y, _Y2 * y * z, _Y20 * (3.0 * z * z - 1.0), _Y2 * x * z, _Y22 * (x * x - y * y),
    ], axis=1)


def sh_basis(normals) -> np.ndarray:
    """Real spherical-harmonics basis (N, 9) float32 up to order 2 at unit ``normals`` (N, 3).

    Order ``(l, m)`` = (0,0), (1,-1), (1,0), (1,1), (2,-2), (2,-1), (2,0), (2,1), (2,2):

        Y00 = 0.282095
        Y1-1 = 0.488603 y     Y10 = 0.488603 z     Y11 = 0.488603 x
        Y2-2 = 1.092548 xy    Y2-1 = 1.092548 yz   Y20 = 0.315392 (3 z^2 - 1)
        Y21 = 1.092548 xz     Y22 = 0.546274 (x^2 - y^2)

    The constants make the nine functions orthonormal on the unit sphere. The
    normals are used as given (normalize them first).
    """
    return _sh_basis(checks.points(normals, "normals")).astype(np.float32)


@dataclass
class Lighting:
    """Distant lighting as order-2 spherical harmonics: ``sh`` (9, 3), one column per RGB channel.

    The irradiance that reaches a surface with unit normal ``n`` is
    ``E(n) = sh_basis(n) @ sh`` (one value per channel), and a Lambertian surface
    of albedo ``rho`` looks ``rho * E(n)`` (see :func:`shade`). Nine coefficients
    capture a Lambertian surface's response to *any* distant lighting to within a
    few percent (Ramamoorthi & Hanrahan 2001; Basri & Jacobs 2003), which is why
    3DMM fitting models illumination this way.

    Frame: the normals and any light direction are in the **view frame** of the
    camera (x right, y up, z towards the camera), so a light stays where it is in
    the photo when the face turns. :func:`render` rotates the object-frame normals
    into the view frame before shading.
    """

    sh: np.ndarray

    def __post_init__(self):
        sh = np.asarray(self.sh, dtype=np.float64)
        if sh.shape == (9,):
            sh = np.repeat(sh[:, None], 3, axis=1)
        if sh.shape != (9, 3):
            raise ValueError(f"sh must have shape (9, 3) (order-2 SH coefficients per RGB channel), got {sh.shape}")
        if not np.all(np.isfinite(sh)):
            raise ValueError("sh contains NaN or infinite values")
        self.sh = sh.astype(np.float32)

    @classmethod
    def ambient(cls, level: float = 1.0) -> "Lighting":
        """Uniform light of irradiance ``level`` from all directions: ``E(n) = level``.

        Only the constant term is non-zero: ``sh[0] = level / Y00``.
        """
        if not np.isfinite(level) or level < 0:
            raise ValueError(f"level must be a non-negative number, got {level}")
        sh = np.zeros((9, 3))
        sh[0] = level / _Y00
        return cls(sh)

    @classmethod
    def directional(cls, direction=(0.0, 0.0, 1.0), ambient: float = 0.4, strength: float = 0.6,
                    color=(1.0, 1.0, 1.0)) -> "Lighting":
        """Ambient light plus one distant Lambertian light, as SH coefficients.

        ``direction`` (3,) points from the surface *towards* the light, in the view
        frame (x right, y up, z towards the camera): ``(0, 0, 1)`` lights the face
        from the camera, ``(-1, 0, 0)`` from the left of the image. The ideal
        irradiance is

            E(n) = ambient + strength * color * max(0, n . d).

        Its SH expansion is ``E_lm = A_l * strength * color * Y_lm(d)`` (plus
        ``ambient / Y00`` on the constant term) with the clamped-cosine kernel
        ``A_0 = pi, A_1 = 2 pi / 3, A_2 = pi / 4`` (Ramamoorthi & Hanrahan 2001).
        Truncated at order 2 this approximates ``max(0, c)`` (``c = n . d``) by

            0.09375 + 0.5 c + 0.46875 c^2,

        which is within 0.1 of it everywhere (1.0625 facing the light, 0.094 at
        grazing incidence, about -0.04 at its darkest behind).
        """
        d = np.asarray(direction, dtype=np.float64).reshape(-1)
        if d.shape != (3,) or not np.all(np.isfinite(d)):
            raise ValueError(f"direction must be a finite 3-vector, got {direction!r}")
        nd = np.linalg.norm(d)
        if nd == 0:
            raise ValueError("direction must not be the zero vector")
        col = np.asarray(color, dtype=np.float64).reshape(-1)
        if col.shape != (3,) or not np.all(np.isfinite(col)):
            raise ValueError(f"color must be an RGB triple, got {color!r}")
        for name, val in (("ambient", ambient), ("strength", strength)):
            if not np.isfinite(val) or val < 0:
                raise ValueError(f"{name} must be a non-negative number, got {val}")
        ylm = _sh_basis((d / nd)[None])[0]                      # Y_lm(d), (9,)
        sh = (strength * _A[_BAND] * ylm)[:, None] * col[None, :]  # (9, 3)
        sh[0] += ambient / _Y00
        return cls(sh)

    def irradiance(self, normals) -> np.ndarray:
        """Irradiance ``E(n) = sh_basis(n) @ sh`` (N, 3) float32 at unit normals (view frame)."""
        n = checks.points(normals, "normals")
        return (_sh_basis(n) @ self.sh.astype(np.float64)).astype(np.float32)


def _shade(n: np.ndarray, albedo: np.ndarray, lighting: Lighting) -> np.ndarray:
    return np.clip(albedo * (_sh_basis(n) @ lighting.sh.astype(np.float64)), 0.0, 1.0)


def shade(normals, albedo, lighting: Lighting) -> np.ndarray:
    """Lambertian shading under SH lighting: colours (N, 3) float32 in [0, 1].

        colour_i = clip( albedo_i * (sh_basis(n_i) @ lighting.sh), 0, 1 )

    ``normals`` (N, 3) are unit normals in the **same frame as the lighting** (the
    view frame, see :class:`Lighting`); ``albedo`` is (N, 3) (or one (3,) colour)
    in [0, 1], or uint8.
    """
    n = checks.points(normals, "normals")
    if not isinstance(lighting, Lighting):
        raise TypeError(f"lighting must be a Lighting, got {type(lighting).__name__}")
    a = checks.colors01(albedo, n.shape[0], name="albedo")
    return _shade(n, a, lighting).astype(np.float32)


# --------------------------------------------------------------------------- rasterizer
@dataclass
class Fragments:
    """What the rasterizer found at each pixel of an (H, W) image.

    Attributes
    ----------
    triangle : (H, W) int32, index of the visible triangle, -1 on the background
    bary     : (H, W, 3) float32, perspective-correct barycentric weights of the
               visible 3D point on that triangle (0 on the background); for any
               per-vertex attribute ``A`` the pixel's value is
               ``sum_k bary[..., k] * A[triangles[triangle, k]]``
    depth    : (H, W) float32, camera depth in mm (``np.inf`` on the background)
    mask     : (H, W) bool, pixels covered by the mesh
    """

    triangle: np.ndarray
    bary: np.ndarray
    depth: np.ndarray
    mask: np.ndarray


def _project(camera: Camera, V: np.ndarray):
    """Pixels ``(u, v)`` and depth ``w`` of all vertices, and which can be projected."""
    Xv = V @ camera.R.T + camera.t
    w = -Xv[:, 2]
    ok = w > _NEAR if camera.kind == "perspective" else np.ones(len(V), dtype=bool)
    uv = np.full((len(V), 2), np.nan)
    uv[ok] = camera.project_view(Xv[ok])  # the camera's own formula: one convention
    return uv[:, 0], uv[:, 1], w, ok


def _setup(camera: Camera, V: np.ndarray, F: np.ndarray, cull_backfaces: bool):
    """Per-triangle quantities of the triangles that can cover a pixel centre, one
    contiguous array per quantity (rows ``tri`` of ``F``)."""
    W, H = camera.width, camera.height
    u, v, w, ok = _project(camera, V)
    Ft = F.T                                     # (3, T): each corner's vertices, one row
    tu, tv, tw = u.take(Ft), v.take(Ft), w.take(Ft)   # (3, T), rows contiguous
    okt = ok.take(Ft)
    valid = okt[0] & okt[1] & okt[2]
    e1u, e1v = tu[1] - tu[0], tv[1] - tv[0]
    e2u, e2v = tu[2] - tu[0], tv[2] - tv[0]
    # Twice the signed area in pixel coordinates. v points down, so a triangle that
    # is counter-clockwise seen from the camera (it faces the camera) has area < 0.
    area = e1u * e2v - e1v * e2u
    with np.errstate(invalid="ignore"):
        valid &= np.abs(area) > 1e-12
        if cull_backfaces:
            valid &= area < 0
        # pixel-centre bounding box, clipped to the image
        jmin = np.ceil(np.clip(np.minimum(np.minimum(tu[0], tu[1]), tu[2]), -1, W))
        jmax = np.floor(np.clip(np.maximum(np.maximum(tu[0], tu[1]), tu[2]), -1, W))
        imin = np.ceil(np.clip(np.minimum(np.minimum(tv[0], tv[1]), tv[2]), -1, H))
        imax = np.floor(np.clip(np.maximum(np.maximum(tv[0], tv[1]), tv[2]), -1, H))
    np.maximum(jmin, 0, out=jmin)
    np.maximum(imin, 0, out=imin)
    bw = np.minimum(jmax, W - 1) - jmin + 1
    bh = np.minimum(imax, H - 1) - imin + 1
    valid &= (bw > 0) & (bh > 0)
    keep = np.flatnonzero(valid)
    a = area[keep]
    # Cramer's rule on p - p0 = l1 e1 + l2 e2:  l1 = a1 du + b1 dv,  l2 = a2 du + b2 dv
    # with (du, dv) = p - p0. Stored per triangle: u0, v0, a1, b1, a2, b2.
    coef = (tu[0, keep], tv[0, keep], e2v[keep] / a, -e2u[keep] / a, -e1v[keep] / a, e1u[keep] / a)
    tw = tw[:, keep]
    depth = 1.0 / tw if camera.kind == "perspective" else tw
    return dict(tri=keep, coef=coef, depth=depth,
                jmin=jmin[keep].astype(np.int64), imin=imin[keep].astype(np.int64),
                bw=bw[keep].astype(np.int64), bh=bh[keep].astype(np.int64))


def _boxes(T: dict):
    """Cut bounding boxes into row bands of at most ``_CHUNK`` pixels; yield chunks of bands.

    Each chunk is ``(item, plane, bw, counts)`` per band: the index into ``T``; the
    band's barycentric plane, 8 rows ``[j0, i0, l1(j0, i0), a1, b1, l2(j0, i0), a2, b2]``
    at its top-left pixel ``(j0, i0)``; its width; its pixel count. A chunk holds
    at most about ``2 * _CHUNK`` pixels.
    """
    bw, bh = T["bw"], T["bh"]
    rows = np.maximum(1, _CHUNK // bw)          # rows of a band
    nb = -(-bh // rows)                           # bands per box (1 for all but huge boxes)
    u0, v0, a1, b1, a2, b2 = T["coef"]
    if np.all(nb == 1):
        item = np.arange(len(bw))
        jmin, imin, bwb, bhb = T["jmin"], T["imin"], bw, bh
    else:
        item = np.repeat(np.arange(len(bw)), nb)
        band = np.arange(len(item)) - np.repeat(np.cumsum(nb) - nb, nb)
        off = band * rows[item]
        imin = T["imin"][item] + off
        bhb = np.minimum(rows[item], bh[item] - off)
        jmin, bwb = T["jmin"][item], bw[item]
        u0, v0, a1, b1, a2, b2 = (x[item] for x in (u0, v0, a1, b1, a2, b2))
    du, dv = jmin - u0, imin - v0
    plane = np.stack([jmin, imin, a1 * du + b1 * dv, a1, b1, a2 * du + b2 * dv, a2, b2])   # (8, bands)
    counts = bwb * bhb
    ends = np.cumsum(counts)
    starts = ends - counts
    cut = np.searchsorted(starts, np.arange(0, ends[-1], _CHUNK), side="left") if len(ends) else []
    cut = np.unique(np.append(cut, len(item)))
    for lo, hi in zip(cut[:-1], cut[1:]):
        s = slice(lo, hi)
        yield item[s], plane[:, s], bwb[s], counts[s]


def _candidates(camera: Camera, T: dict, item, plane, bw, counts, bary: bool = True):
    """Inside (triangle, pixel) pairs of one chunk: triangle row, flat pixel, depth, bary (3, K)
    (``None`` when ``bary=False``: the depth alone)."""
    K = int(counts.sum())
    c = np.repeat(np.arange(len(item)), counts)                  # band of each candidate
    local = np.arange(K) - np.repeat(np.cumsum(counts) - counts, counts)
    bwc = bw.take(c)
    di = local // bwc                                            # offset in the band: row,
    dj = local - di * bwc                                        # column
    # barycentrics are affine in the image
    l1 = plane[2].take(c) + plane[3].take(c) * dj + plane[4].take(c) * di
    l2 = plane[5].take(c) + plane[6].take(c) * dj + plane[7].take(c) * di
    l0 = 1.0 - l1 - l2
    inside = np.flatnonzero((l0 >= -_EPS) & (l1 >= -_EPS) & (l2 >= -_EPS))
    l0, l1, l2 = l0[inside], l1[inside], l2[inside]
    c = c[inside]
    t = item.take(c)                                             # row into T
    p = ((plane[1].take(c).astype(np.int64) + di[inside]) * camera.width
         + plane[0].take(c).astype(np.int64) + dj[inside])
    z0, z1, z2 = (z.take(t) for z in T["depth"])
    if camera.kind == "perspective":   # T["depth"] holds 1 / w here
        q0, q1, q2 = l0 * z0, l1 * z1, l2 * z2      # l_k / w_k
        d = 1.0 / (q0 + q1 + q2)                     # 1/depth is affine in the image
        b = np.stack([q0 * d, q1 * d, q2 * d]) if bary else None   # perspective-correct weights
    else:
        d = l0 * z0 + l1 * z1 + l2 * z2
        b = np.stack([l0, l1, l2]) if bary else None
    return t, p, d, b


def _rasterize(camera: Camera, V: np.ndarray, F: np.ndarray, attributes: bool = True,
               cull_backfaces: bool = False):
    H, W = camera.height, camera.width
    zbuf = np.full(H * W, np.inf)
    tri = np.full(H * W, -1, dtype=np.int32) if attributes else None
    bary = np.zeros((H * W, 3), dtype=np.float32) if attributes else None
    owner = np.empty(H * W, dtype=np.int64) if attributes else None
    T = _setup(camera, V, F, cull_backfaces)
    if len(T["tri"]):
        for chunk in _boxes(T):
            t, p, d, b = _candidates(camera, T, *chunk, bary=attributes)
            if len(p) == 0:
                continue
            np.minimum.at(zbuf, p, d)          # z-buffer: nearest depth so far per pixel
            if attributes:
                win = np.flatnonzero(d <= zbuf[p])  # candidates as near as the buffer
                pw = p[win]
                # Ties (a pixel centre on an edge shared at equal depth) leave several
                # winners at one pixel: let one of them own it, then copy the owner's
                # triangle and barycentrics, so both always come from the same candidate.
                owner[pw] = win
                k = owner[pw]
                tri[pw] = T["tri"][t[k]]
                bary[pw] = b[:, k].T
    return zbuf.reshape(H, W), tri, bary


def rasterize(camera: Camera, vertices, triangles, *, cull_backfaces: bool = False) -> Fragments:
    """Rasterize a triangle mesh with a z-buffer: which triangle each pixel sees, where, how deep.

    ``vertices`` (N, 3) are in the object frame (mm), ``triangles`` (T, 3) index them.
    A pixel belongs to a triangle when its centre (``(u, v) = (j, i)``) lies inside
    the projected triangle (edges included); of several, the one with the smallest
    depth wins. Barycentrics are perspective-correct for a perspective camera (see
    the module docstring), so they are the weights of the 3D point seen at the pixel.

    Triangles are rendered from both sides unless ``cull_backfaces=True``, which
    drops triangles wound clockwise on screen (facing away for outward
    counter-clockwise winding); a closed surface renders the same either way.
    Degenerate (zero-area) triangles are skipped, as are, for a perspective camera,
    triangles with a vertex on or behind the camera plane (there is no near-plane
    clipping). Triangles partly outside the image are clipped to it.
    """
    camera, V, F = _check_mesh(camera, vertices, triangles)
    zbuf, tri, bary = _rasterize(camera, V, F, True, cull_backfaces)
    H, W = camera.height, camera.width
    mask = np.isfinite(zbuf)
    return Fragments(triangle=tri.reshape(H, W), bary=bary.reshape(H, W, 3),
                     depth=zbuf.astype(np.float32), mask=mask)


def render_depth(camera: Camera, vertices, triangles, *, cull_backfaces: bool = False) -> np.ndarray:
    """Depth map (H, W) float32 in mm, ``np.inf`` on the background.

    The fast path of :func:`rasterize`: the same z-buffer, without recording
    triangles and barycentrics. Used for the synthetic range scans.
    """
    camera, V, F = _check_mesh(camera, vertices, triangles)
    zbuf, _, _ = _rasterize(camera, V, F, False, cull_backfaces)
    return zbuf.astype(np.float32)


# --------------------------------------------------------------------------- visibility
def _visibility(camera: Camera, V: np.ndarray, normals: np.ndarray, depth: np.ndarray, tol_mm: float):
    H, W = depth.shape
    u, v, w, ok = _project(camera, V)
    with np.errstate(invalid="ignore"):
        inside = ok & (u >= -0.5) & (u < W - 0.5) & (v >= -0.5) & (v < H - 0.5)
    facing = np.einsum("ij,ij->i", normals, camera.view_direction(V)) > 0
    cand = np.flatnonzero(inside & facing)
    uc, vc = u[cand], v[cand]
    j0 = np.clip(np.floor(uc).astype(np.int64), 0, W - 1)
    i0 = np.clip(np.floor(vc).astype(np.int64), 0, H - 1)
    j1, i1 = np.minimum(j0 + 1, W - 1), np.minimum(i0 + 1, H - 1)
    # the 4 pixel centres around the projection; visible if the surface drawn at any
    # of them is not nearer than the vertex by more than tol (background counts as far)
    z4 = np.stack([depth[i0, j0], depth[i0, j1], depth[i1, j0], depth[i1, j1]], axis=1)
    seen = np.any(w[cand, None] <= z4 + tol_mm, axis=1)
    vis = np.zeros(len(V), dtype=bool)
    vis[cand[seen]] = True
    return vis


def vertex_visibility(camera: Camera, vertices, triangles, fragments: Fragments | None = None,
                      tol_mm: float = 1.0) -> np.ndarray:
    """Which vertices (N,) bool the camera sees.

    A vertex is visible when all three hold:

    1. it projects inside the image (within the outer pixels' edges);
    2. it faces the camera: ``n . d > 0`` with ``n`` its vertex normal and ``d`` the
       unit vector from it towards the camera (:meth:`Camera.view_direction`);
    3. it is not hidden: its depth is at most ``z + tol_mm`` for the z-buffer depth
       ``z`` of at least one of the 4 pixel centres around its projection. Taking
       the most favourable of the 4 makes the test robust where the depth changes
       fast (near silhouettes, a background pixel counts as infinitely far), while a
       vertex behind another surface is hidden at all four.

    ``fragments`` from :func:`rasterize` with the same camera and mesh can be
    passed to save a rasterization. The z-buffer may hold other objects than the
    mesh (render a scene with occluders, then ask about its first vertices).
    """
    camera, V, F = _check_mesh(camera, vertices, triangles)
    if not (np.isfinite(tol_mm) and tol_mm >= 0):
        raise ValueError(f"tol_mm must be a non-negative number, got {tol_mm}")
    if fragments is None:
        zbuf, _, _ = _rasterize(camera, V, F, False)
    else:
        if not isinstance(fragments, Fragments):
            raise TypeError(f"fragments must be Fragments from rasterize(), got {type(fragments).__name__}")
        zbuf = np.asarray(fragments.depth)
        if zbuf.shape != (camera.height, camera.width):
            raise ValueError(f"fragments is for a {zbuf.shape[1]}x{zbuf.shape[0]} image, "
                             f"the camera's is {camera.width}x{camera.height}")
    return _visibility(camera, V, _vertex_normals(V, F), zbuf, tol_mm)


# --------------------------------------------------------------------------- rendering
@dataclass
class Rendering:
    """A rendered image and what came with it.

    image     : (H, W, 3) uint8 RGB
    depth     : (H, W) float32 camera depth in mm, ``np.inf`` on the background
    mask      : (H, W) bool, pixels covered by the mesh
    visible   : (N,) bool, :func:`vertex_visibility` of each vertex
    fragments : the :class:`Fragments` behind the image
    """

    image: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    visible: np.ndarray
    fragments: Fragments


def _background(background) -> np.ndarray:
    bg = np.asarray(background, dtype=np.float64).reshape(-1)
    if bg.shape != (3,) or not np.all(np.isfinite(bg)) or bg.min() < 0 or bg.max() > 255:
        raise ValueError(f"background must be an RGB triple in [0, 1] or 0..255, got {background!r}")
    return bg / 255.0 if bg.max() > 1 else bg


def render(camera: Camera, vertices, triangles, colors=None, lighting: Lighting | None = None,
           background=(0, 0, 0), *, cull_backfaces: bool = False) -> Rendering:
    """Render a mesh: RGB image, depth map, mask and vertex visibility.

    ``colors`` (N, 3) is a per-vertex albedo, float in [0, 1] or uint8, or one (3,)
    colour for all vertices (default a uniform light grey, 0.75). With ``lighting`` (a :class:`Lighting`, view frame)
    each vertex is shaded first, ``albedo * E(n)`` with ``n`` its normal rotated
    into the view frame (:func:`shade`); with ``lighting=None`` the albedo is drawn
    unlit. The pixel colour interpolates the three vertex colours of its triangle
    with the perspective-correct barycentrics (Gouraud shading):

        I(pixel) = sum_k bary_k * colour[triangles[t, k]]

    ``background`` is an RGB triple, in [0, 1] if no value exceeds 1, else in 0..255.
    ``visible`` is :func:`vertex_visibility` with its default ``tol_mm=1``, computed
    from the same z-buffer.
    """
    camera, V, F = _check_mesh(camera, vertices, triangles)
    albedo = (np.full((V.shape[0], 3), DEFAULT_ALBEDO) if colors is None
              else checks.colors01(colors, V.shape[0]))
    if lighting is not None and not isinstance(lighting, Lighting):
        raise TypeError(f"lighting must be a Lighting or None, got {type(lighting).__name__}")
    bg = _background(background)
    H, W = camera.height, camera.width

    zbuf, tri, bary = _rasterize(camera, V, F, True, cull_backfaces)
    normals = _vertex_normals(V, F)
    col = albedo if lighting is None else _shade(normals @ camera.R.T, albedo, lighting)

    pix = np.flatnonzero(tri >= 0)
    corners = F[tri[pix]]                                   # (P, 3) vertex ids
    b = bary[pix].astype(np.float64)
    rgb = np.einsum("pk,pkc->pc", b, col[corners])          # Gouraud interpolation
    img = np.empty((H * W, 3), dtype=np.uint8)
    img[:] = np.round(bg * 255.0).astype(np.uint8)
    img[pix] = np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)

    depth = zbuf.astype(np.float32)
    mask = tri.reshape(H, W) >= 0
    frags = Fragments(triangle=tri.reshape(H, W), bary=bary.reshape(H, W, 3), depth=depth, mask=mask)
    visible = _visibility(camera, V, normals, zbuf, 1.0)
    return Rendering(image=img.reshape(H, W, 3), depth=depth, mask=mask, visible=visible, fragments=frags)
