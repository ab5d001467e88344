"""Range scans: FRGC ``.abs`` files and range image -> triangle mesh (paper, section IV-A, Fig. 2).

The paper's first data-preparation step: "we triangulate the range images into
3D meshes as the target 3D faces S_Tr". A range image is a grid of 3D points,
one per pixel of the scanner's camera, some of them missing (no return: hair,
eyes, dark or grazing surfaces). Neighbouring pixels are neighbours on the
surface, except across a *depth discontinuity* (the silhouette of the nose seen
from the side, the edge of the face against the background): there two
neighbouring pixels lie far apart in 3D and must not be joined by a triangle.

:func:`range_to_mesh` makes two triangles per grid cell whose four corners are
valid, drops triangles with an edge longer than ``max_edge`` (the
discontinuities), and can crop the face with 2D landmarks. :func:`read_abs` /
:func:`write_abs` read and write the FRGC v2.0 ``.abs`` format.

The FRGC ``.abs`` format (Minolta Vivid 910 range images, 640 x 480), as read and
written by the FRGC tools and common readers: a text file with ::

    480 rows
    640 columns
    pixels (flag X Y Z):
    <flag of every pixel>        # 1 valid, 0 no data
    <X of every pixel>           # mm
    <Y of every pixel>
    <Z of every pixel>

each of the last four a whitespace-separated list of ``rows x columns`` numbers
in row-major order (row 0 first, left to right). The FRGC files put each list
on one line; :func:`read_abs` only counts tokens, so line breaks anywhere are
fine. Invalid pixels have flag 0 and ``X = Y = Z = -999999``. The coordinates are
the scanner's, in millimetres: x to the right, y up, z towards the scanner
(the face is at negative z, about a metre away), the same axes as the kit's
view frame (:mod:`dualface_lite.camera`). ``.abs.gz`` files are read too.
"""
from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np

__all__ = ["range_to_mesh", "read_abs", "write_abs", "depth_to_points", "ABS_INVALID"]

#: The value FRGC ``.abs`` files store in X, Y and Z for pixels without data.
ABS_INVALID = -999999.0


# ---------------------------------------------------------------------------
# FRGC .abs files
# ---------------------------------------------------------------------------

def _open_text(path: Path, mode: str):
    if path.name.endswith(".gz"):
        return gzip.open(path, mode + "t", encoding="ascii")
    return open(path, mode, encoding="ascii")


def read_abs(path) -> tuple[np.ndarray, np.ndarray]:
    """Read an FRGC ``.abs`` (or ``.abs.gz``) range file.

    Returns ``(points, valid)``: ``points`` (H, W, 3) float32 in mm, NaN where
    there is no data; ``valid`` (H, W) bool, the file's flags. See the module
    docstring for the format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no .abs file at {str(path)!r}")
    with _open_text(path, "r") as f:
        header = [f.readline() for _ in range(3)]
        body = f.read()
    m_rows = re.match(r"\s*(\d+)\s+rows\s*$", header[0])
    m_cols = re.match(r"\s*(\d+)\s+columns\s*$", header[1])
    if not m_rows or not m_cols or not header[2].strip().lower().startswith("pixels (flag x y z)"):
        raise ValueError(f"{path} is not an FRGC .abs file: expected the header lines 'R rows', 'C columns', "
                         f"'pixels (flag X Y Z):', got {[h.strip()[:40] for h in header]}")
    H, W = int(m_rows.group(1)), int(m_cols.group(1))
    if H <= 0 or W <= 0:
        raise ValueError(f"{path}: the header gives an empty image ({H} rows, {W} columns)")
    values = np.array(body.split(), dtype=np.float64) if body.strip() else np.zeros(0)
    n = H * W
    if values.size != 4 * n:
        raise ValueError(f"{path}: expected 4 x {H} x {W} = {4 * n} numbers (flag, X, Y, Z) after the header, "
                         f"found {values.size}")
    flag, X, Y, Z = values.reshape(4, H, W)
    valid = flag != 0
    points = np.stack([X, Y, Z], axis=-1)
    bad = valid & ~np.all(np.isfinite(points) & (points > ABS_INVALID / 2), axis=-1)
    valid &= ~bad  # a flagged pixel with the invalid marker (or garbage) is not data
    points[~valid] = np.nan
    return points.astype(np.float32), valid


def write_abs(path, points, valid=None) -> Path:
    """Write an FRGC ``.abs`` range file (``.abs.gz`` if the name ends in ``.gz``).

    ``points`` (H, W, 3) in mm; ``valid`` (H, W) bool (default: the pixels whose
    three coordinates are finite). Invalid pixels are written with flag 0 and
    ``-999999`` coordinates, valid ones with ``%.6f``, each list on one line as
    the FRGC files do. Returns the path.
    """
    P = np.asarray(points, dtype=np.float64)
    if P.ndim != 3 or P.shape[2] != 3 or P.shape[0] == 0 or P.shape[1] == 0:
        raise ValueError(f"points must have shape (H, W, 3) with H, W > 0, got {P.shape}")
    finite = np.all(np.isfinite(P), axis=-1)
    if valid is None:
        valid = finite
    else:
        valid = np.asarray(valid)
        if valid.shape != P.shape[:2]:
            raise ValueError(f"valid must have shape {P.shape[:2]}, got {valid.shape}")
        valid = valid.astype(bool)
        if np.any(valid & ~finite):
            raise ValueError("points has NaN or infinite coordinates at pixels marked valid")
    H, W = P.shape[:2]
    P = np.where(valid[..., None], P, ABS_INVALID)
    path = Path(path)
    with _open_text(path, "w") as f:
        f.write(f"{H} rows\n{W} columns\npixels (flag X Y Z):\n")
        f.write(" ".join(np.where(valid.ravel(), "1", "0")) + "\n")
        for k in range(3):
            f.write(" ".join(f"{x:.6f}" for x in P[..., k].ravel()) + "\n")
    return path


# ---------------------------------------------------------------------------
# range image -> mesh
# ---------------------------------------------------------------------------

def depth_to_points(depth, camera, frame: str = "object") -> np.ndarray:
    """Back-project a depth image (H, W) in mm through ``camera`` to points (H, W, 3).

    The inverse of :meth:`Camera.depth` / :meth:`Camera.project` for pixel
    centres ``(u, v) = (j, i)``; non-finite or non-positive depths give NaN.
    ``frame`` is ``"object"`` (``X = R^T (X_view - t)``, like the kit's synthetic
    scans) or ``"view"``.
    """
    from .camera import Camera

    if not isinstance(camera, Camera):
        raise ValueError(f"camera must be a dualface_lite.camera.Camera, got {type(camera).__name__}")
    D = np.asarray(depth, dtype=np.float64)
    if D.ndim != 2 or D.size == 0:
        raise ValueError(f"depth must have shape (H, W), got {D.shape}")
    if D.shape != (camera.height, camera.width):
        raise ValueError(f"depth is {D.shape[0]} x {D.shape[1]} but the camera's image is "
                         f"{camera.height} x {camera.width}")
    H, W = D.shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    d = np.where(np.isfinite(D) & (D > 0), D, np.nan)
    return camera.unproject(np.stack([u, v], axis=-1), d, frame=frame)


def _crop_mask(shape, landmarks2d, margin: float, crop: str) -> np.ndarray:
    L = np.asarray(landmarks2d, dtype=np.float64)
    if L.ndim != 2 or L.shape[1] != 2 or L.shape[0] < 3:
        raise ValueError(f"landmarks2d must have shape (L, 2) with L >= 3 (pixel u, v), got {L.shape}")
    if not np.all(np.isfinite(L)):
        raise ValueError("landmarks2d contains NaN or infinite values")
    if not (np.isfinite(margin) and margin >= 0):
        raise ValueError(f"crop_margin must be a non-negative number, got {margin}")
    H, W = shape
    v, u = np.mgrid[0:H, 0:W]
    if crop == "box":
        lo, hi = L.min(0), L.max(0)
        grow = margin * (hi - lo)
        lo, hi = lo - grow, hi + grow
        return (u >= lo[0]) & (u <= hi[0]) & (v >= lo[1]) & (v <= hi[1])
    if crop == "hull":
        from scipy.spatial import ConvexHull, Delaunay

        hull = L[ConvexHull(L).vertices]
        c = hull.mean(0)
        grown = c + (hull - c) * (1.0 + margin)
        inside = Delaunay(grown).find_simplex(np.stack([u.ravel(), v.ravel()], 1).astype(np.float64)) >= 0
        return inside.reshape(H, W)
    raise ValueError(f"crop must be 'box' or 'hull', got {crop!r}")


def range_to_mesh(image, valid=None, *, camera=None, max_edge: float | None = None, landmarks2d=None,
                  crop_margin: float = 0.15, crop: str = "box", frame: str = "object"):
    """Triangulate a range image into a ``trimesh.Trimesh`` (paper, Fig. 2: the target ``S_Tr``).

    Parameters
    ----------
    image : (H, W, 3) points in mm (e.g. from :func:`read_abs`), or (H, W) depths
        in mm, which need ``camera`` to be back-projected (:func:`depth_to_points`;
        ``frame`` picks the object or the view frame).
    valid : (H, W) bool, the pixels with data; default: those with finite values
        (and, for depths, positive ones). Pixels that are not finite are never valid.
    camera : the :class:`~dualface_lite.camera.Camera` of a depth image.
    max_edge : triangles with an edge longer than this (mm) are dropped: they
        would bridge a depth discontinuity. Default (None): 4 x the median
        distance between valid neighbouring pixels, i.e. a few grid spacings.
    landmarks2d : optional (L, 2) pixel positions ``(u, v)`` of landmarks on the
        range image (e.g. the 68 iBUG points); only pixels around them are kept.
    crop_margin : how far the crop reaches beyond the landmarks, as a fraction
        of their extent (``"box"``: each side of the bounding box grows by this
        fraction of its width / height; ``"hull"``: the convex hull is scaled by
        ``1 + crop_margin`` about its centre).
    crop : ``"box"`` or ``"hull"``.

    Returns
    -------
    ``trimesh.Trimesh`` (not processed: vertices stay in pixel order, row-major,
    one per used valid pixel), with ``mesh.metadata["pixels"]`` = (V, 2) int
    ``(row, column)`` of each vertex. Each grid cell with four valid corners
    ``a = (i, j)``, ``b = (i, j+1)``, ``c = (i+1, j)``, ``d = (i+1, j+1)`` gives the
    triangles ``(a, c, b)`` and ``(b, c, d)``: counter-clockwise as the scanner sees
    them, so for scanner-frame points (x right, y up, z towards the scanner, as in
    FRGC and the kit's view frame) and for depth images the normals point
    towards the scanner, out of the face.
    """
    import trimesh

    A = np.asarray(image)
    if A.dtype.kind not in "iuf":
        raise ValueError(f"image must hold numbers, got dtype {A.dtype}")
    if A.ndim == 2:
        if camera is None:
            raise ValueError("a depth image (H, W) needs camera= to be back-projected; "
                             "or pass points (H, W, 3)")
        P = depth_to_points(A, camera, frame=frame)
    elif A.ndim == 3 and A.shape[2] == 3:
        P = A.astype(np.float64)
    else:
        raise ValueError(f"image must be points (H, W, 3) or depths (H, W), got shape {A.shape}")
    H, W = P.shape[:2]
    if H < 2 or W < 2:
        raise ValueError(f"image must be at least 2 x 2 pixels, got {H} x {W}")
    ok = np.all(np.isfinite(P), axis=-1)
    if valid is not None:
        valid = np.asarray(valid)
        if valid.shape != (H, W):
            raise ValueError(f"valid must have shape {(H, W)}, got {valid.shape}")
        ok &= valid.astype(bool)
    if landmarks2d is not None:
        ok &= _crop_mask((H, W), landmarks2d, float(crop_margin), crop)
    if max_edge is not None and not (np.isfinite(max_edge) and max_edge > 0):
        raise ValueError(f"max_edge must be a positive number (mm) or None, got {max_edge}")

    index = -np.ones((H, W), dtype=np.int64)
    rows, cols = np.nonzero(ok)
    index[rows, cols] = np.arange(rows.size)
    verts = P[rows, cols]
    a, b, c, d = index[:-1, :-1], index[:-1, 1:], index[1:, :-1], index[1:, 1:]
    cell = (a >= 0) & (b >= 0) & (c >= 0) & (d >= 0)
    faces = np.concatenate([np.stack([a[cell], c[cell], b[cell]], 1),
                            np.stack([b[cell], c[cell], d[cell]], 1)])
    if faces.shape[0] == 0:
        raise ValueError("no grid cell has four valid corners: nothing to triangulate "
                         "(check valid, the crop and the landmarks' pixel coordinates)")
    e = np.stack([np.linalg.norm(verts[faces[:, k]] - verts[faces[:, (k + 1) % 3]], axis=1) for k in range(3)], 1)
    if max_edge is None:
        # grid spacing: the shortest edge of each triangle (the diagonal is sqrt(2) longer)
        max_edge = 4.0 * float(np.median(e.min(1)))
    faces = faces[e.max(1) < max_edge]
    if faces.shape[0] == 0:
        raise ValueError(f"every triangle has an edge longer than max_edge = {max_edge:g} mm")
    used = np.zeros(rows.size, dtype=bool)
    used[faces.ravel()] = True
    remap = -np.ones(rows.size, dtype=np.int64)
    remap[used] = np.arange(int(used.sum()))
    mesh = trimesh.Trimesh(verts[used], remap[faces], process=False)
    mesh.metadata["pixels"] = np.stack([rows[used], cols[used]], 1)
    return mesh
