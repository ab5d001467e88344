"""Synthetic subjects: the kit's stand-in for FRGC v2.0 (paper, section IV-A).

FRGC pairs each photo with a range scan of the same face. It needs a signed
license, so the kit makes its own subjects, and -- unlike FRGC -- it knows each
subject's true dense surface, so later chapters can measure how good their
"ground truth" is.

A subject's true surface (object frame, mm) is built in layers::

    S = u_bar + U diag(sigma) alpha          identity inside the PCA span
          + B e                              expression blendshapes
          + sum_k c_k d_k                    population modes OUTSIDE the PCA span
          + detail                           a personal smooth displacement, also outside the span

Why the two last layers: a 3DMM is built from a few hundred scans, and real
people differ from them. If subjects were drawn from the model's own prior,
the landmark fit of chapter 2 would already be the best guess and the learned
MRF prior of chapter 4 would have nothing to learn. So the population here has
(i) a shifted mean in PCA space, (ii) a few smooth shape modes ``d_k`` that the
PCA cannot express, one of them tied to skin tone, and (iii) a personal detail.
Every one of these is a field of :class:`Population`, so a chapter can switch
it off (``Population.prior()``) and show the effect.

Then the subject is posed (yaw up to +-30 deg), lit (ambient + one directional
light, spherical-harmonics shading), photographed by a perspective camera
(224 x 224 by default) and scanned: a depth grid of the true surface seen from
the camera's direction, about 1 mm apart, with noise and holes, triangulated
into a ``trimesh.Trimesh``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import render as _render
from .camera import Camera, perspective_camera, orthographic_camera
from .model import IBUG_JAW, MorphableModel

__all__ = ["MODE_NAMES", "N_MODES", "Population", "Person", "Subject", "make_person", "make_subject", "make_scan", "range_image",
           "jaw_outline", "CONDITIONS", "population_modes", "smooth_field", "skin_albedo", "appearance_features",
           "draw_camera",
           "draw_expression"]

CONDITIONS = ("neutral", "expression", "illumination")
#: the smooth shape modes outside the PCA span (:func:`population_modes`)
MODE_NAMES = ("nose bridge", "cheekbones", "chin", "brow ridge", "mid-face")
N_MODES = len(MODE_NAMES)
_N_ORIGINAL_MODES = 4  # drawn from the subject's own random stream (see make_subject)


@dataclass(frozen=True)
class Population:
    """How the synthetic people are distributed (all lengths in mm).

    Attributes
    ----------
    alpha_shift : length (in standard deviations) of the shift of the identity
        mean in PCA space; the direction is fixed by ``seed`` over the first 20
        components.
    alpha_scale : spread of ``alpha`` around that mean (1 = the model's prior).
    mode_mean, mode_std : mean and spread of the coefficients of the five smooth
        modes outside the PCA span (:func:`population_modes`: nose bridge,
        cheekbones, chin, brow ridge, mid-face), each mode peaking at 1 mm per
        unit coefficient.
    tone_mode : index of the mode tied to skin tone, and ``tone_gain`` the mm it
        moves per unit of tone (tone is in [0, 1]). The default ties the broad
        mid-face mode (4) to tone: darker subjects get a flatter mid-face, lighter
        ones a more prominent one, up to +-6 mm at the nose. This is what
        colour can tell the MRF prior of chapter 4 and 68 landmarks cannot
        (``tone_gain=0``: colour carries no shape).
    detail_rms : root-mean-square of the personal detail (mm along normals).
    detail_scale : spatial scale (mm) of the detail's bumps.
    crease_gain : how much the albedo darkens in recessed detail (colour carries
        a little shape information, as in real skin).
    seed : fixes the population's own structure (shift direction).
    size : every face scaled by this factor about the model's origin (1 = the model's
        own size; people differ by about +-7 % in head size).
    sclera : how white the eyes are around the irises (0: skin-coloured eyes, 1: white sclera).
    hair : the share of people with hair across the top of the forehead (a hairline drawn
        22-40 mm above the brows, one of four hair colours).
    stubble : the share of people with stubble or a beard on the upper lip, chin and jaw (speckled,
        in their hair colour; strength drawn per person).
    skin_texture : the standard deviation of a per-vertex speckle of the albedo (pores and
        freckles at the model's resolution of about 3 mm), relative.

    The last four (:attr:`APPEARANCE`) change only the albedo, with draws from a random stream of
    their own; at 0 (the default) the albedo is :func:`skin_albedo`'s. :meth:`photo_like` sets them.
    """

    alpha_shift: float = 1.5
    alpha_scale: float = 0.8
    mode_mean: tuple = (2.5, 2.0, -2.0, 1.5, 0.0)
    mode_std: tuple = (1.5, 1.2, 1.5, 1.0, 0.5)
    tone_mode: int = 4
    tone_gain: float = 12.0
    detail_rms: float = 1.0
    detail_scale: float = 14.0
    crease_gain: float = 0.15
    seed: int = 2024
    size: float = 1.0
    sclera: float = 0.0
    hair: float = 0.0
    stubble: float = 0.0
    skin_texture: float = 0.0

    #: the appearance settings: 0 leaves the albedo as :func:`skin_albedo` makes it
    APPEARANCE = ("sclera", "hair", "stubble", "skin_texture")

    def __post_init__(self):
        for name in ("mode_mean", "mode_std"):
            v = getattr(self, name)
            if len(v) != N_MODES:
                raise ValueError(f"{name} must have {N_MODES} entries (one per mode of population_modes), got {len(v)}")
        if not (np.isfinite(self.size) and self.size > 0):
            raise ValueError(f"size must be a positive number, got {self.size!r}")
        if not 0 <= self.tone_mode < N_MODES:
            raise ValueError(f"tone_mode must be in [0, {N_MODES - 1}], got {self.tone_mode}")
        for name in self.APPEARANCE:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError(f"{name} must be a number in [0, 1], got {v!r}")

    @classmethod
    def photo_like(cls, **overrides) -> "Population":
        """The default population with the appearance of photographed faces: white eyes, hair on
        seven people in ten, stubble or a beard on one in three, a speckled skin."""
        return cls(**{"sclera": 1.0, "hair": 0.7, "stubble": 0.35, "skin_texture": 0.05, **overrides})

    @classmethod
    def prior(cls) -> "Population":
        """Subjects drawn from the model's own prior: no shift, no extra modes, no detail."""
        return cls(alpha_shift=0.0, alpha_scale=1.0, mode_mean=(0.0,) * N_MODES, mode_std=(0.0,) * N_MODES,
                   tone_gain=0.0, detail_rms=0.0, crease_gain=0.0)

    def shift_vector(self, n_components: int) -> np.ndarray:
        """The population's mean ``alpha`` (length ``alpha_shift``)."""
        d = np.zeros(n_components)
        k = min(20, n_components)
        d[:k] = np.random.default_rng(self.seed).standard_normal(k) / np.sqrt(np.arange(1, k + 1))
        return self.alpha_shift * d / np.linalg.norm(d)


@dataclass
class Subject:
    """One synthetic person photographed and scanned.

    Attributes
    ----------
    image : (H, W, 3) uint8 photo.
    landmarks : (68, 2) float32 pixel positions (iBUG order, with detector-like noise).
    scan : ``trimesh.Trimesh`` range scan in the object frame (mm).
    vertices : (N, 3) float32 true surface, SFM vertex order, object frame (mm).
    albedo : (N, 3) float32 skin colour in [0, 1] before lighting.
    camera : the photo's camera (its ``R``, ``t`` are the pose: object -> view).
    scan_transform : (4, 4) object frame -> the photo camera's view frame (mm), ``[R | t]`` of
        ``camera``: the frame in which FRGC would store the range image registered to the photo
        (the scanner looks along the same direction; ``scan`` itself is in the object frame).
    landmark_vertices : (68,) vertex behind each landmark (the jaw ones follow the outline).
    visible : (N,) vertices seen by the camera.
    alpha, expr, modes, tone : the draws behind the face; ``detail`` (N, 3) displacement.
    capture, photo : which capture of the person and which photo of it (:func:`make_subject`).
    """

    seed: int
    condition: str
    image: np.ndarray
    landmarks: np.ndarray
    scan: object
    vertices: np.ndarray
    albedo: np.ndarray
    camera: Camera
    scan_transform: np.ndarray
    landmark_vertices: np.ndarray
    visible: np.ndarray
    alpha: np.ndarray
    expr: np.ndarray
    modes: np.ndarray
    tone: float
    detail: np.ndarray
    lighting: object = None
    depth: np.ndarray = field(default=None, repr=False)
    capture: int = 0
    photo: int = 0

    @property
    def pose(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) in degrees."""
        return self.camera.angles


# ---------------------------------------------------------------------------
# smooth fields on the mesh
# ---------------------------------------------------------------------------

def smooth_field(points: np.ndarray, centres: np.ndarray, weights: np.ndarray, scale: float) -> np.ndarray:
    """Sum of Gaussian bumps: ``f(x) = sum_c w_c exp(-|x - p_c|^2 / (2 scale^2))`` at ``points`` (N, 3)."""
    d2 = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2.0 * scale**2)) @ weights


def _remove_span(model: MorphableModel, disp: np.ndarray) -> np.ndarray:
    """Remove from a displacement field (N, 3) its part inside the PCA span: ``d - U U^T d``."""
    v = disp.reshape(-1).astype(np.float64)
    U = model.basis.astype(np.float64)
    return (v - U @ (U.T @ v)).reshape(-1, 3)


def population_modes(model: MorphableModel) -> np.ndarray:
    """(5, N, 3) the smooth shape modes outside the PCA span (``MODE_NAMES``: nose
    bridge, cheekbones, chin, brow ridge, and a broad mid-face protrusion around
    the nose and mouth), each with a largest displacement of 1 mm and
    ``U^T d_k = 0``."""
    n = _render.vertex_normals(model.mean, model.triangles).astype(np.float64)
    mean = model.mean.astype(np.float64)
    lm = mean[model.ibug68]
    cheek_r = 0.5 * (lm[36] + lm[3]) + np.array([0, 0, 8.0])
    cheek_l = 0.5 * (lm[45] + lm[13]) + np.array([0, 0, 8.0])
    chin = lm[8] + np.array([0, 8.0, 0])
    specs = [  # (centres, scale mm): nose bridge, cheekbones, chin, brow ridge
        (np.stack([lm[27], lm[28]]), 10.0),
        (np.stack([cheek_r, cheek_l]), 16.0),
        (chin[None], 14.0),
        (np.stack([lm[19], lm[24]]), 11.0),
        (np.stack([lm[30], 0.5 * (lm[51] + lm[57])]), 24.0),
    ]
    modes = []
    for centres, scale in specs:
        f = smooth_field(mean, centres, np.ones(len(centres)), scale)
        d = _remove_span(model, f[:, None] * n)
        modes.append(d / np.linalg.norm(d, axis=1).max())
    return np.stack(modes).astype(np.float32)  # (N_MODES, N, 3)


def _personal_detail(model: MorphableModel, rng: np.random.Generator, rms: float, scale: float) -> np.ndarray:
    if rms <= 0:
        return np.zeros_like(model.mean)
    n = _render.vertex_normals(model.mean, model.triangles).astype(np.float64)
    idx = rng.choice(model.n_vertices, size=24, replace=False)
    f = smooth_field(model.mean.astype(np.float64), model.mean[idx].astype(np.float64),
                     rng.standard_normal(24), scale)
    d = _remove_span(model, f[:, None] * n)
    d *= rms / np.sqrt((d**2).sum(1).mean())
    return d.astype(np.float32)


# ---------------------------------------------------------------------------
# appearance
# ---------------------------------------------------------------------------

_DARK_SKIN = np.array([0.33, 0.21, 0.15])
_LIGHT_SKIN = np.array([0.95, 0.79, 0.68])


def _near(points: np.ndarray, centres: np.ndarray, scale: float) -> np.ndarray:
    """(N,) a Gaussian of each point's distance to the nearest of ``centres`` (``scale`` mm): 1 on them."""
    d2 = ((points[:, None, :] - centres[None]) ** 2).sum(-1).min(1)
    return np.exp(-d2 / (2 * scale**2))


def _lip_weight(mean: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """(N,) how much each vertex of the mean face is lip (near the 20 lip landmarks ``lm[48:68]``)."""
    return _near(mean, lm[48:68], 3.0)


def skin_albedo(model: MorphableModel, tone: float, rng: np.random.Generator,
                crease: np.ndarray | None = None, crease_gain: float = 0.0) -> np.ndarray:
    """Per-vertex albedo (N, 3) in [0, 1]: a skin tone (0 dark .. 1 light), redder
    lips, dark brows and irises, a faint blotchiness, and creases darkened by
    ``crease_gain`` where the ``crease`` field (mm, + out, - in) is negative. The
    pattern is laid out on the model's mean face, so every subject's features sit at
    the same vertices."""
    mean = model.mean.astype(np.float64)
    lm = mean[model.ibug68]
    skin = _DARK_SKIN + (_LIGHT_SKIN - _DARK_SKIN) * tone
    skin = skin * (1 + 0.03 * rng.standard_normal(3))
    a = np.tile(skin, (model.n_vertices, 1))

    def near(points, scale):
        return _near(mean, points, scale)

    lips = _lip_weight(mean, lm)
    a = a * (1 - 0.6 * lips[:, None]) + 0.6 * lips[:, None] * (skin * np.array([0.95, 0.55, 0.55]))
    t = np.linspace(0, 1, 8, endpoint=False)[:, None, None]
    brow_line = np.concatenate([(lm[a:b - 1] * (1 - t) + lm[a + 1:b] * t).reshape(-1, 3) for a, b in ((17, 22), (22, 27))])
    brows = near(brow_line, 3.0)
    hair = np.array([0.12, 0.08, 0.06]) * (0.7 + 0.6 * rng.random())
    a = a * (1 - 0.8 * brows[:, None]) + 0.8 * brows[:, None] * hair
    irises = near(np.stack([lm[36:42].mean(0), lm[42:48].mean(0)]), 2.5)
    a = a * (1 - 0.9 * irises[:, None]) + 0.9 * irises[:, None] * np.array([0.15, 0.1, 0.08])
    idx = rng.choice(model.n_vertices, size=12, replace=False)
    blotch = smooth_field(mean, mean[idx], rng.standard_normal(12), 20.0)
    a = a * (1 + 0.03 * blotch[:, None])
    if crease is not None and crease_gain > 0:
        a = a * (1 + crease_gain * np.clip(crease, -3, 3)[:, None] / 3.0)
    return np.clip(a, 0, 1).astype(np.float32)


#: hair colours (linear RGB in [0, 1]): black-brown, brown, blond, grey
_HAIR_COLOURS = np.array([[0.07, 0.05, 0.04], [0.22, 0.13, 0.07], [0.58, 0.45, 0.28], [0.55, 0.54, 0.52]])


def appearance_features(model: MorphableModel, albedo: np.ndarray, population: Population,
                        rng: np.random.Generator) -> np.ndarray:
    """The albedo (N, 3) with what a photographed face has and :func:`skin_albedo` lacks, each as
    strong as ``population`` says (:attr:`Population.APPEARANCE`): white sclera around the irises,
    a hairline, stubble or a beard (off the lips), a speckled skin. Laid out on the model's mean face,
    as :func:`skin_albedo`; ``rng`` is the person's appearance stream (every draw is made, whatever
    the settings, so each setting keeps its draws when another changes)."""
    if not isinstance(population, Population):
        raise ValueError(f"population must be a synth.Population, got {type(population).__name__}")
    a = np.asarray(albedo, dtype=np.float64).copy()
    if a.shape != (model.n_vertices, 3):
        raise ValueError(f"albedo must have shape ({model.n_vertices}, 3), got {a.shape}")
    mean = model.mean.astype(np.float64)
    lm = mean[model.ibug68]
    hair_colour = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * (0.85 + 0.3 * rng.random())
    has_hair, hairline = rng.random() < population.hair, rng.uniform(22.0, 40.0)
    has_stubble, stubble_strength = rng.random() < population.stubble, rng.uniform(0.3, 0.75)
    speckle = rng.standard_normal(model.n_vertices)

    def blend(weight, colour):
        return a * (1 - weight[:, None]) + weight[:, None] * colour

    # sclera: inside each eye's opening (an ellipse through its six landmarks), outside the iris
    for eye in (lm[36:42], lm[42:48]):
        c = eye.mean(0)
        half_w = np.linalg.norm(eye[3] - eye[0]) / 2
        half_h = max(np.abs(eye[:, 1] - c[1]).max(), 1.5)
        r2 = ((mean[:, 0] - c[0]) / half_w) ** 2 + ((mean[:, 1] - c[1]) / half_h) ** 2
        inside = np.clip(1.2 - r2, 0, 1) * (np.abs(mean[:, 2] - c[2]) < 8.0)
        iris = _near(mean, c[None], 2.5)
        a = blend(population.sclera * inside * (1 - iris) * 0.85, np.array([0.86, 0.82, 0.78]))
    # hair: above a hairline over the brows, soft over 3 mm
    if has_hair:
        brow_y = lm[17:27, 1].mean()
        a = blend(1 / (1 + np.exp(-(mean[:, 1] - brow_y - hairline) / 3.0)) * 0.95, hair_colour)
    # stubble: below the nose, off the lips, speckled
    if has_stubble:
        below = 1 / (1 + np.exp(-(lm[33, 1] - 4.0 - mean[:, 1]) / 3.0))
        off_lips = np.clip(1 - 2 * _lip_weight(mean, lm), 0, 1)     # none where the lips are half-painted
        w = stubble_strength * below * off_lips * np.clip(0.7 + 0.3 * speckle, 0, 1)
        a = blend(w, hair_colour)
    a = a * (1 + population.skin_texture * np.clip(speckle, -3, 3)[:, None])
    return np.clip(a, 0, 1).astype(np.float32)


def _lighting(condition: str, rng: np.random.Generator) -> "_render.Lighting":
    if condition == "illumination":
        az = rng.choice([-1, 1]) * rng.uniform(45, 80)
        el = rng.uniform(-20, 35)
        ambient, strength = rng.uniform(0.15, 0.3), rng.uniform(0.8, 1.1)
    else:
        az, el = rng.uniform(-20, 20), rng.uniform(10, 35)
        ambient, strength = rng.uniform(0.5, 0.65), rng.uniform(0.35, 0.5)
    a, e = np.deg2rad(az), np.deg2rad(el)
    direction = np.array([np.sin(a) * np.cos(e), np.sin(e), np.cos(a) * np.cos(e)])
    tint = 1 + 0.03 * rng.standard_normal(3)
    return _render.Lighting.directional(direction, ambient=ambient, strength=strength, color=tuple(tint))


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    c0, c1 = rng.uniform(0.2, 0.8, 3), rng.uniform(0.2, 0.8, 3)
    t = np.linspace(0, 1, h)[:, None, None] * np.ones((1, w, 1))
    return c0 * (1 - t) + c1 * t


def _fill_mouth(img: np.ndarray, mask: np.ndarray, inner_lips: np.ndarray) -> np.ndarray:
    """The SFM has no mouth interior: paint the gap inside the outer lip line dark."""
    from PIL import Image, ImageDraw

    h, w = mask.shape
    poly = Image.new("L", (w, h), 0)
    ImageDraw.Draw(poly).polygon([tuple(p) for p in inner_lips.astype(float)], fill=1)
    hole = (np.asarray(poly) > 0) & ~mask
    img = img.copy()
    img[hole] = np.array([0.25, 0.08, 0.08])
    return img


# ---------------------------------------------------------------------------
# the draws of a photo: expression and camera
# ---------------------------------------------------------------------------

def draw_expression(rng: np.random.Generator, n_expressions: int) -> np.ndarray:
    """A large expression as in the paper's Fig. 8: one or two blendshapes at weights
    ``U(0.6, 1.5) / sqrt(k)`` (k = how many), the others 0. Returns (n_expressions,)."""
    expr = np.zeros(n_expressions)
    k = rng.choice(n_expressions, size=rng.integers(1, 3), replace=False)
    expr[k] = rng.uniform(0.6, 1.5, size=len(k)) / np.sqrt(len(k))
    return expr


def draw_camera(rng: np.random.Generator, image_size: int = 224, max_yaw: float = 30.0,
                max_pitch: float = 10.0, max_roll: float = 6.0) -> Camera:
    """The synthetic photographer: a perspective camera 1.2 m away with a 12 deg (+-5 %)
    field of view, the face turned by yaw, pitch, roll uniform in +-``max_*`` degrees,
    and the principal point moved by up to +-3 % of the image size."""
    yaw = rng.uniform(-max_yaw, max_yaw)
    pitch, roll = rng.uniform(-max_pitch, max_pitch), rng.uniform(-max_roll, max_roll)
    cam = perspective_camera(image_size, image_size, fov=12.0 * rng.uniform(0.95, 1.05), distance=1200.0,
                             yaw=yaw, pitch=pitch, roll=roll, target=(0.0, 12.0, -45.0))
    cam.center = cam.center + rng.uniform(-0.03, 0.03, 2) * image_size
    return cam


# ---------------------------------------------------------------------------
# landmarks: the jaw line follows the outline of the face in the photo
# ---------------------------------------------------------------------------

def jaw_outline(model: MorphableModel, vertices: np.ndarray, camera: Camera, wedge_deg: float = 4.0) -> np.ndarray:
    """Vertex indices (16,) of the jaw-line landmarks (iBUG 1-8, 10-17) on the
    outline of the face as the camera sees it.

    A detector puts jaw points on the visible boundary of the face, not on fixed
    vertices. Here: :func:`dualface_lite.fitting.silhouette_along_rays` in the
    directions of the frontal default jaw vertices (``model.ibug68``) as posed by
    the camera, with rays ``wedge_deg`` wide -- the extreme of the face's
    silhouette there.
    """
    from .fitting import silhouette_along_rays

    through = camera.project(vertices[model.ibug68[IBUG_JAW]])
    return silhouette_along_rays(model, vertices, camera, through, wedge_deg=wedge_deg)[0]


# ---------------------------------------------------------------------------
# range scan
# ---------------------------------------------------------------------------

def range_image(vertices: np.ndarray, triangles: np.ndarray, R: np.ndarray, spacing: float = 1.0,
                noise: float = 0.2, n_holes: int = 3, hole_radius: float = 6.0,
                rng: np.random.Generator | None = None, size_mm: float = 240.0) -> tuple[np.ndarray, Camera]:
    """What the synthetic scanner records: a range image of a surface seen along the rotation
    ``R`` (object -> view), like FRGC's structured-light range images.

    An orthographic depth grid ``spacing`` mm apart and ``size_mm`` wide, centred on the
    surface, with Gaussian depth noise of ``noise`` mm and ``n_holes`` round holes of about
    ``hole_radius`` mm (no return). Returns ``(depth, scanner)``: depth (n, n) float32 in mm,
    ``inf`` where there is no data, and the scanner's orthographic
    :class:`~dualface_lite.camera.Camera` (``scanner.unproject`` turns pixels and depths back
    into points).
    """
    if spacing <= 0:
        raise ValueError(f"spacing must be positive, got {spacing}")
    rng = rng or np.random.default_rng(0)
    n = int(np.ceil(size_mm / spacing))
    centre = vertices.mean(0)
    cam = orthographic_camera(n, n, scale=1.0 / spacing, target=centre, distance=1000.0)
    cam = cam.with_pose(R=R, t=-R @ centre + np.array([0.0, 0.0, -1000.0]))
    depth = _render.render_depth(cam, vertices, triangles).astype(np.float64)
    valid = np.isfinite(depth)
    if noise > 0:
        depth = depth + noise * rng.standard_normal(depth.shape)
    if n_holes > 0 and valid.any():
        rows, cols = np.nonzero(valid)
        pick = rng.choice(len(rows), size=n_holes, replace=False)
        yy, xx = np.mgrid[0:n, 0:n]
        for k in pick:
            rad = hole_radius / spacing * rng.uniform(0.5, 1.5)
            valid &= (yy - rows[k]) ** 2 + (xx - cols[k]) ** 2 > rad**2
    return np.where(valid, depth, np.inf).astype(np.float32), cam


def make_scan(vertices: np.ndarray, triangles: np.ndarray, R: np.ndarray, spacing: float = 1.0,
              noise: float = 0.2, n_holes: int = 3, hole_radius: float = 6.0, max_edge: float = 6.0,
              rng: np.random.Generator | None = None, size_mm: float = 240.0):
    """A range scan of a surface seen along ``R``: the paper's first step (Fig. 2) on the
    synthetic scanner's output. :func:`range_image` records the depth grid, and
    :func:`dualface_lite.scans.range_to_mesh` triangulates it (triangles with an edge longer
    than ``max_edge`` mm span a depth discontinuity and are dropped).

    Returns ``(trimesh.Trimesh in the object frame, depth image, scanner camera)``.
    """
    from .scans import range_to_mesh

    depth, cam = range_image(vertices, triangles, R, spacing=spacing, noise=noise, n_holes=n_holes,
                             hole_radius=hole_radius, rng=rng, size_mm=size_mm)
    return range_to_mesh(depth, camera=cam, max_edge=max_edge, frame="object"), depth, cam


# ---------------------------------------------------------------------------
# the subject
# ---------------------------------------------------------------------------

@dataclass
class Person:
    """A synthetic person: the identity draws shared by all their captures and photos.

    Attributes
    ----------
    seed, condition : who they are (the condition is the person's: FRGC-like captures of one
        person share it, as the paper's conditions of Figs. 7-9 group subjects).
    alpha : (m,) float64 identity coefficients; ``modes`` (5,) the out-of-span mode coefficients;
        ``tone`` in [0, 1]; ``detail`` (N, 3) the personal displacement.
    extra : (N, 3) everything outside the PCA span (modes and detail), object frame, mm.
    albedo : (N, 3) skin colour in [0, 1].
    first_expression : (6,) the expression of capture 0 (drawn among the identity draws).
    stream_state : the random stream's state after the identity draws; capture 0 and its
        first photo continue it, so :func:`make_subject` with ``capture=0, photo=0`` is the
        kit's original single-photo subject.
    population : the :class:`Population` the person was drawn from.
    """

    seed: int
    condition: str
    alpha: np.ndarray = field(repr=False)
    modes: np.ndarray = field(repr=False)
    tone: float
    detail: np.ndarray = field(repr=False)
    extra: np.ndarray = field(repr=False)
    albedo: np.ndarray = field(repr=False)
    first_expression: np.ndarray = field(repr=False)
    stream_state: dict = field(repr=False)
    population: Population = field(repr=False)


def _check_index(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def make_person(seed: int = 0, condition: str = "neutral", model: MorphableModel | None = None,
                population: Population | None = None) -> Person:
    """The identity of a synthetic person, the same for the same arguments on every machine.

    One random stream per person (``seed``, ``condition``): identity ``alpha``, capture 0's
    expression, skin tone, out-of-span modes, personal detail, albedo, in that order.
    """
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
    seed = _check_index(seed, "seed")
    if model is None:
        from .model import load_model

        model = load_model()
    pop = population or Population()
    if not isinstance(pop, Population):
        raise ValueError(f"population must be a synth.Population, got {type(pop).__name__}")
    # the condition gets its own offset so that the three conditions of one seed are three people
    rng = np.random.default_rng([seed, CONDITIONS.index(condition), 7])
    alpha = pop.shift_vector(model.n_components) + pop.alpha_scale * rng.standard_normal(model.n_components)
    alpha[:] = np.clip(alpha, -3.0, 3.0)
    expr = draw_expression(rng, model.n_expressions) if condition == "expression" else np.zeros(model.n_expressions)
    tone = float(rng.random())
    # the four original modes from the person's stream; modes added later (mid-face) from a stream of
    # their own, so that every other draw stays as it was
    z = np.concatenate([rng.standard_normal(_N_ORIGINAL_MODES),
                        np.random.default_rng([seed, CONDITIONS.index(condition), 8])
                        .standard_normal(N_MODES - _N_ORIGINAL_MODES)])
    modes = np.asarray(pop.mode_mean) + np.asarray(pop.mode_std) * z
    modes[pop.tone_mode] += pop.tone_gain * (tone - 0.5)
    detail = _personal_detail(model, rng, pop.detail_rms, pop.detail_scale)
    extra = np.tensordot(modes, population_modes(model), axes=1) + detail
    normals0 = _render.vertex_normals(model.mean, model.triangles)
    crease = (extra * normals0).sum(1)
    albedo = skin_albedo(model, tone, rng, crease=crease, crease_gain=pop.crease_gain)
    if any(getattr(pop, name) for name in Population.APPEARANCE):   # a stream of its own
        albedo = appearance_features(model, albedo, pop,
                                     np.random.default_rng([seed, CONDITIONS.index(condition), 11]))
    return Person(seed=seed, condition=condition, alpha=alpha, modes=modes,
                  tone=tone, detail=detail, extra=extra, albedo=albedo, first_expression=expr,
                  stream_state=rng.bit_generator.state, population=pop)


def _stream(state: dict) -> np.random.Generator:
    g = np.random.Generator(np.random.PCG64())
    g.bit_generator.state = state
    return g


def make_subject(seed: int = 0, condition: str = "neutral", model: MorphableModel | None = None,
                 population: Population | None = None, image_size: int = 224, max_yaw: float = 30.0,
                 landmark_noise: float = 0.7, scan_spacing: float = 1.0, scan_noise: float = 0.2,
                 scan_holes: int = 3, with_scan: bool = True, capture: int = 0, photo: int = 0,
                 person: Person | None = None) -> Subject:
    """One photo of one capture of a synthetic person, the same for the same arguments on every machine.

    Parameters
    ----------
    condition : "neutral" (no expression, soft light), "expression" (one or two
        blendshapes at up to twice their strength, soft light), "illumination"
        (neutral face, strong side light, dim ambient) -- as in the paper's Figs. 7-9.
    landmark_noise : std of the detector-like noise on the 68 landmarks (px).
    scan_spacing, scan_noise, scan_holes : see :func:`make_scan`.
    capture, photo : which capture of the person (its own expression within the condition, its
        own range scan) and which photo of that capture (pose, lighting, camera, background and
        landmark noise re-drawn; the surface is the capture's). FRGC registers one photo to each
        range image: here photo 0, the only one that carries the ``scan`` (``None`` for the others).
    person : the :func:`make_person` of ``seed`` and ``condition`` when the caller already has it
        (the builder makes it once per capture); it must match them.

    Notes
    -----
    Random streams: the person's identity (:func:`make_person`); capture 0 and its photo 0
    continue that stream, capture ``c > 0`` has its own (seed, condition, 9, c), photo
    ``j > 0`` its own (seed, condition, 10, c, j). Adding captures or photos to a dataset
    never changes the ones already there.
    """
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
    seed = _check_index(seed, "seed")
    capture, photo = _check_index(capture, "capture"), _check_index(photo, "photo")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 px, got {image_size}")
    if model is None:
        from .model import load_model

        model = load_model()
    if person is None:
        person = make_person(seed, condition, model=model, population=population)
    elif (person.seed, person.condition) != (seed, condition) or person.population != (population or Population()):
        raise ValueError(f"person is ({person.seed}, {person.condition!r}) with its own population; it does not "
                         f"match seed={seed}, condition={condition!r} and the population given")
    pop = person.population
    ci = CONDITIONS.index(condition)

    # the capture: its expression and its stream (which photo 0 and the scan continue)
    if capture == 0:
        rng_c, expr = _stream(person.stream_state), person.first_expression
    else:
        rng_c = np.random.default_rng([seed, ci, 9, capture])
        expr = draw_expression(rng_c, model.n_expressions) if condition == "expression" else np.zeros(model.n_expressions)
    vertices = (model.shape(person.alpha, expr) + person.extra).astype(np.float32)
    if pop.size != 1.0:
        vertices = (vertices * np.float32(pop.size)).astype(np.float32)
    rng = rng_c if photo == 0 else np.random.default_rng([seed, ci, 10, capture, photo])

    # pose and camera
    cam = draw_camera(rng, image_size, max_yaw=max_yaw)
    lighting = _lighting(condition, rng)

    # the photo: normals turned into the view frame, since the light is given there
    normals = _render.vertex_normals(vertices, model.triangles) @ cam.R.T
    shaded = _render.shade(normals, person.albedo, lighting)
    ren = _render.render(cam, vertices, model.triangles, colors=shaded)
    img = ren.image.astype(np.float64) / 255.0
    bg = _background(image_size, image_size, rng)
    img = np.where(ren.mask[..., None], img, bg)
    img = _fill_mouth(img, ren.mask, cam.project(vertices[model.ibug68[48:60]]))
    img = img + 0.01 * rng.standard_normal(img.shape)
    image = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)

    # landmarks: fixed vertices, jaw on the outline, plus detector noise
    lm_vert = model.ibug68.copy()
    lm_vert[IBUG_JAW] = jaw_outline(model, vertices, cam)
    landmarks = cam.project(vertices[lm_vert]) + landmark_noise * rng.standard_normal((68, 2))
    landmarks = np.clip(landmarks, 0, image_size - 1).astype(np.float32)

    scan, T = None, np.eye(4)
    T[:3, :3], T[:3, 3] = cam.R, cam.t
    if with_scan and photo == 0:
        scan, _, _ = make_scan(vertices, model.triangles, cam.R, spacing=scan_spacing, noise=scan_noise,
                               n_holes=scan_holes, rng=rng)
    return Subject(seed=seed, condition=condition, image=image, landmarks=landmarks, scan=scan,
                   vertices=vertices, albedo=person.albedo, camera=cam, scan_transform=T,
                   landmark_vertices=lm_vert, visible=ren.visible, alpha=person.alpha.astype(np.float32),
                   expr=np.asarray(expr, dtype=np.float32), modes=person.modes.astype(np.float32), tone=person.tone,
                   detail=person.detail, lighting=lighting, depth=ren.depth, capture=capture, photo=photo)
