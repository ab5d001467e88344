"""Cameras: how a face in its object frame lands on the pixels of a photo.

One convention is used everywhere in the kit.

Object frame
    The Surrey Face Model's own frame, in millimetres: x towards the subject's
    left (the viewer's right in a frontal photo), y up, z out of the face
    (the nose tip has the largest z).

View frame
    ``X_view = R @ X_object + t``. The axes are those of OpenGL: x right, y up,
    and the camera looks along -z, so a point in front of a perspective camera
    has ``z_view < 0``. Its *depth* is ``-z_view`` (mm, positive in front).

Pixels
    ``u`` grows to the right and ``v`` downwards; the centre of the pixel in
    row ``i`` and column ``j`` is ``(u, v) = (j, i)``. Landmarks, the
    rasterizer and colour sampling all use this.

Two projections (``Camera.kind``):

* ``"perspective"``: ``u = cx + f * x / (-z)``, ``v = cy - f * y / (-z)``
  with the focal length ``f`` in pixels.
* ``"orthographic"`` (scaled orthographic, the weak-perspective camera of
  landmark fitting): ``u = cx + s * x``, ``v = cy - s * y`` with ``s`` in
  pixels per millimetre; ``t[2]`` only sets depths.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from . import checks

__all__ = ["Camera", "rotation_matrix", "euler_angles", "perspective_camera", "orthographic_camera",
           "FaceCrop", "face_crop", "CROP_SCALE"]

#: the face crop's side, in units of the larger side of the landmarks' bounding box (:func:`face_crop`)
CROP_SCALE = 1.4

_EYE3 = np.eye(3)
_ORTHO_TOL = 1e-5 + 1e-5 * _EYE3   # np.allclose(R R^T, I, atol=1e-5): atol + rtol |I| per entry


def _pixels(uv) -> np.ndarray:
    """Pixel coordinates (..., 2) as float64, or a ValueError."""
    uv = np.asarray(uv, dtype=np.float64)
    if uv.ndim < 1 or uv.shape[-1] != 2:
        raise ValueError(f"uv must have shape (..., 2) (pixel u, v), got {uv.shape}")
    return uv


def rotation_matrix(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotation (3, 3) from angles in degrees: ``R = Rz(roll) @ Rx(pitch) @ Ry(yaw)``.

    Positive yaw (about +y) turns the nose towards the viewer's right, positive
    pitch (about +x) tips the nose down, positive roll (about +z) turns the face
    counter-clockwise in the image.
    """
    a, b, c = np.deg2rad([yaw, pitch, roll])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ rx @ ry


def euler_angles(R: np.ndarray) -> tuple[float, float, float]:
    """Inverse of :func:`rotation_matrix`: (yaw, pitch, roll) in degrees."""
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3):
        raise ValueError(f"R must have shape (3, 3), got {R.shape}")
    # R = Rz Rx Ry: R[2,1] = sin(pitch)
    pitch = np.arcsin(np.clip(R[2, 1], -1.0, 1.0))
    yaw = np.arctan2(-R[2, 0], R[2, 2])
    roll = np.arctan2(-R[0, 1], R[1, 1])
    return tuple(float(x) for x in np.rad2deg([yaw, pitch, roll]))


@dataclass
class Camera:
    """A posed camera: rotation ``R`` and translation ``t`` (object -> view, mm),
    a projection ``kind`` with its ``focal`` (px for perspective, px/mm for
    orthographic), a principal point ``center`` (px) and an image size."""

    R: np.ndarray
    t: np.ndarray
    focal: float
    width: int
    height: int
    kind: str = "perspective"
    center: np.ndarray = field(default=None)

    def __post_init__(self):
        self.R = np.asarray(self.R, dtype=np.float64)
        self.t = np.asarray(self.t, dtype=np.float64).reshape(-1)
        if self.R.shape != (3, 3):
            raise ValueError(f"R must have shape (3, 3), got {self.R.shape}")
        # orthonormal within np.allclose(R R^T, I, atol=1e-5)'s tolerance, det +1 (written out: cameras
        # are made in every step of a fit, and the library calls cost more than the fit's own arithmetic)
        R = self.R
        if not (np.abs(R @ R.T - _EYE3) <= _ORTHO_TOL).all() or (
                R[0, 0] * (R[1, 1] * R[2, 2] - R[1, 2] * R[2, 1]) - R[0, 1] * (R[1, 0] * R[2, 2] - R[1, 2] * R[2, 0])
                + R[0, 2] * (R[1, 0] * R[2, 1] - R[1, 1] * R[2, 0])) < 0:
            raise ValueError("R must be a rotation matrix (orthonormal, det +1)")
        if self.t.shape != (3,):
            raise ValueError(f"t must have shape (3,), got {self.t.shape}")
        if self.kind not in ("perspective", "orthographic"):
            raise ValueError(f"kind must be 'perspective' or 'orthographic', got {self.kind!r}")
        if not (np.isfinite(self.focal) and self.focal > 0):
            raise ValueError(f"focal must be a positive number, got {self.focal}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"width and height must be positive, got {self.width}x{self.height}")
        self.width, self.height = int(self.width), int(self.height)
        if self.center is None:
            self.center = np.array([(self.width - 1) / 2.0, (self.height - 1) / 2.0])
        self.center = np.asarray(self.center, dtype=np.float64).reshape(2)

    # -- frames -------------------------------------------------------------
    def to_view(self, X) -> np.ndarray:
        """Object-frame points (N, 3) -> view-frame points (N, 3)."""
        X = checks.points(X, "points")
        return X.astype(np.float64) @ self.R.T + self.t

    def depth(self, X) -> np.ndarray:
        """Depth (N,) in mm along the viewing direction (positive in front)."""
        return -self.to_view(X)[:, 2]

    def project_view(self, V: np.ndarray) -> np.ndarray:
        """View-frame points (N, 3) -> pixels (N, 2)."""
        V = np.asarray(V, dtype=np.float64)
        if self.kind == "perspective":
            w = -V[:, 2]
            if np.any(w <= 1e-9):
                raise ValueError("some points are behind or on the perspective camera (depth <= 0)")
            s = self.focal / w
            return np.stack([self.center[0] + s * V[:, 0], self.center[1] - s * V[:, 1]], axis=1)
        return np.stack([self.center[0] + self.focal * V[:, 0], self.center[1] - self.focal * V[:, 1]], axis=1)

    def project(self, X) -> np.ndarray:
        """Object-frame points (N, 3) -> pixel coordinates (N, 2): ``(u, v)``."""
        return self.project_view(self.to_view(X))

    # -- pixels -> 3D ---------------------------------------------------------

    def unproject(self, uv, depth, frame: str = "object") -> np.ndarray:
        """Pixels ``uv`` (..., 2) at ``depth`` (...) mm -> 3D points (..., 3): the inverse of
        :meth:`project` and :meth:`depth`, the one back-projection of the kit (range
        images, the scanner, landmarks lifted onto a scan).

        Perspective: ``X_view = (d (u - cx) / f, -d (v - cy) / f, -d)``; orthographic:
        ``X_view = ((u - cx) / s, -(v - cy) / s, -d)``. ``frame`` is ``"object"``
        (``X = R^T (X_view - t)``) or ``"view"``. Non-finite depths give NaN points.
        """
        uv = _pixels(uv)
        d = np.asarray(depth, dtype=np.float64)
        if d.shape != uv.shape[:-1]:
            raise ValueError(f"depth must have shape {uv.shape[:-1]} (one per pixel), got {d.shape}")
        if frame not in ("object", "view"):
            raise ValueError(f"frame must be 'object' or 'view', got {frame!r}")
        x = (uv[..., 0] - self.center[0]) / self.focal
        y = -(uv[..., 1] - self.center[1]) / self.focal
        if self.kind == "perspective":
            x, y = x * d, y * d
        V = np.stack([x, y, -d], axis=-1)
        V[~np.isfinite(d)] = np.nan
        return V if frame == "view" else (V - self.t) @ self.R   # R^T (x - t), row-vector form

    def pixel_rays(self, uv) -> tuple[np.ndarray, np.ndarray]:
        """The rays through pixels ``uv`` (..., 2), in the object frame: ``(origins, directions)``,
        each (..., 3), directions of unit length pointing away from the camera, so that
        ``origin + lam * direction`` for ``lam > 0`` is what the pixel sees. Perspective rays
        start at the camera centre; orthographic rays are parallel and start on the plane
        ``z_view = 0``."""
        uv = _pixels(uv)
        near = self.unproject(uv, np.ones(uv.shape[:-1]), frame="object")
        if self.kind == "perspective":
            origin = np.broadcast_to(-self.R.T @ self.t, near.shape).copy()   # the camera centre
            d = near - origin
        else:
            origin = self.unproject(uv, np.zeros(uv.shape[:-1]), frame="object")
            d = np.broadcast_to(-self.R[2], near.shape).copy()              # R^T (0, 0, -1)
        return origin, d / np.linalg.norm(d, axis=-1, keepdims=True)

    def view_direction(self, X) -> np.ndarray:
        """Unit vectors (N, 3) in the *object* frame from each point towards the camera."""
        X = checks.points(X, "points")
        if self.kind == "orthographic":
            d = np.broadcast_to(self.R.T @ np.array([0.0, 0.0, 1.0]), X.shape)
            return np.array(d)
        eye = -self.R.T @ self.t  # camera centre in the object frame
        d = eye - X
        return d / np.linalg.norm(d, axis=1, keepdims=True)

    def with_pose(self, R=None, t=None) -> "Camera":
        """A copy with another pose."""
        return replace(self, R=self.R if R is None else R, t=self.t if t is None else t)

    @property
    def angles(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) of ``R`` in degrees."""
        return euler_angles(self.R)


def perspective_camera(width: int = 224, height: int = 224, fov: float = 12.0, distance: float = 1200.0,
                       yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0,
                       target=(0.0, 0.0, -40.0)) -> Camera:
    """A perspective camera at ``distance`` mm looking at ``target`` (object frame),
    with a horizontal field of view of ``fov`` degrees, after posing the face by
    (yaw, pitch, roll) degrees about ``target``."""
    if not (0 < fov < 179):
        raise ValueError(f"fov must be in (0, 179) degrees, got {fov}")
    if distance <= 0:
        raise ValueError(f"distance must be positive, got {distance}")
    R = rotation_matrix(yaw, pitch, roll)
    target = np.asarray(target, dtype=np.float64)
    t = -R @ target + np.array([0.0, 0.0, -float(distance)])
    f = (width / 2.0) / np.tan(np.deg2rad(fov) / 2.0)
    return Camera(R=R, t=t, focal=f, width=width, height=height, kind="perspective")


def orthographic_camera(width: int = 224, height: int = 224, scale: float = 1.0,
                        yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0,
                        target=(0.0, 0.0, -40.0), distance: float = 1000.0) -> Camera:
    """A scaled orthographic camera (``scale`` px/mm) centred on ``target``."""
    R = rotation_matrix(yaw, pitch, roll)
    target = np.asarray(target, dtype=np.float64)
    t = -R @ target + np.array([0.0, 0.0, -float(distance)])
    return Camera(R=R, t=t, focal=scale, width=width, height=height, kind="orthographic")


# ---------------------------------------------------------------------------
# the face crop: one rule for the fit, the dataset's network inputs and photos in the wild
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class FaceCrop:
    """A square window of a photo resampled to ``size`` x ``size`` pixels.

    ``center`` (px, the photo's pixel convention) and ``side`` (px) give the window; crop pixel
    ``(u', v')`` sees photo point ``center + (u' - (size - 1) / 2) * side / size`` (and the same
    for ``v``), so pixel centres stay pixel centres. A crop is a change of pixel coordinates
    only: :meth:`points` maps landmarks into it, :meth:`to_photo` back, :meth:`camera` gives
    the camera that sees the crop.
    """

    center: tuple
    side: float
    size: int

    def __post_init__(self):
        c = np.asarray(self.center, dtype=np.float64).reshape(-1)
        if c.shape != (2,) or not np.all(np.isfinite(c)):
            raise ValueError(f"center must be two finite numbers (px), got {self.center!r}")
        object.__setattr__(self, "center", (float(c[0]), float(c[1])))
        side = checks.number(self.side, "side", positive=True)
        object.__setattr__(self, "side", side)
        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)) or self.size < 8:
            raise ValueError(f"size must be an integer >= 8 (px), got {self.size!r}")
        object.__setattr__(self, "size", int(self.size))

    @property
    def zoom(self) -> float:
        """Crop pixels per photo pixel."""
        return self.size / self.side

    def points(self, uv) -> np.ndarray:
        """Photo pixels (..., 2) -> crop pixels (..., 2), float32."""
        uv = _pixels(uv)
        return ((uv - np.asarray(self.center)) * self.zoom + (self.size - 1) / 2.0).astype(np.float32)

    def to_photo(self, uv) -> np.ndarray:
        """Crop pixels (..., 2) -> photo pixels (..., 2): the inverse of :meth:`points`."""
        return (_pixels(uv) - (self.size - 1) / 2.0) / self.zoom + np.asarray(self.center)

    def image(self, image, fill=0) -> np.ndarray:
        """The crop of ``image`` (H, W, 3) uint8 -> (size, size, 3) uint8, bilinear; what lies
        outside the photo is ``fill``. Other layouts are converted as
        :func:`dualface_lite.checks.rgb_image` does."""
        from PIL import Image

        img = np.asarray(image)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:   # grayscale, RGBA, floats
            img = np.round(checks.rgb_image(image, "image") * 255).astype(np.uint8)
        # PIL's affine map sends output point (x, y) to input (a x + b y + c, ...), both with pixel
        # centres at +0.5: x_in = (x_out - 0.5 - (size - 1) / 2) / zoom + center + 0.5
        a = 1.0 / self.zoom
        cx = self.center[0] + 0.5 - (0.5 + (self.size - 1) / 2.0) * a
        cy = self.center[1] + 0.5 - (0.5 + (self.size - 1) / 2.0) * a
        out = Image.fromarray(img).transform((self.size, self.size), Image.Transform.AFFINE,
                                             (a, 0.0, cx, 0.0, a, cy), resample=Image.Resampling.BILINEAR,
                                             fillcolor=(fill,) * 3 if np.isscalar(fill) else tuple(fill))
        return np.asarray(out)

    def camera(self, camera: "Camera") -> "Camera":
        """The camera whose image is this crop of ``camera``'s photo (same pose; the focal
        length scaled by :attr:`zoom`, the principal point moved)."""
        c = self.points(camera.center[None])[0].astype(np.float64)
        return replace(camera, focal=camera.focal * self.zoom, width=self.size, height=self.size, center=c)


def face_crop(landmarks, size: int = 224, scale: float = CROP_SCALE, shift=(0.0, 0.0),
              zoom: float = 1.0) -> FaceCrop:
    """The kit's one face crop: a square centred on the middle of the landmarks' bounding box,
    ``scale`` times its larger side, resampled to ``size`` px.

    Parameters
    ----------
    landmarks : (K, 2) pixels, K >= 2 (the 68 iBUG points, or a detector's box corners).
    size : the crop's side in px.
    scale : the crop's side in units of the landmark box's larger side (:data:`CROP_SCALE`).
    shift, zoom : a jitter for augmentation: the centre moves by ``shift`` (fractions of the side)
        and the side is divided by ``zoom``; the defaults give the rule itself.

    Notes
    -----
    The landmark fit uses the same box: without a photo its principal point is the crop's centre
    (:func:`dualface_lite.fitting.fit_landmarks`); the dataset's network inputs are these crops.
    """
    L = checks.points(landmarks, "landmarks", dim=2, min_count=2)
    scale = checks.number(scale, "scale", positive=True)
    zoom = checks.number(zoom, "zoom", positive=True)
    sh = np.asarray(shift, dtype=np.float64).reshape(-1)
    if sh.shape != (2,) or not np.all(np.isfinite(sh)):
        raise ValueError(f"shift must be two finite numbers, got {shift!r}")
    lo, hi = L.min(0), L.max(0)
    side = scale * max(float(np.max(hi - lo)), 1.0) / zoom
    return FaceCrop(center=tuple(0.5 * (lo + hi) + sh * side), side=side, size=size)
