"""68 iBUG landmarks on real photos (chapter 7): two detectors, one answer format, no hidden downloads.

:func:`detect_landmarks` finds every face in a photo (largest first) and returns a :class:`Face` for each:
its 68 landmarks in pixels (iBUG order, ``(u, v)`` = (column, row), the kit's convention), its box and a
score. Two backends:

* ``"dlib"`` (offline): dlib's HOG face detector and its 68-point shape predictor, the file
  ``shape_predictor_68_face_landmarks.dat`` shipped by the ``face-recognition-models`` package (found with
  ``importlib.util.find_spec``: importing that package needs ``pkg_resources``, which current setuptools no
  longer has). **Licence caveat**: the predictor was trained on the iBUG 300-W data, whose licence excludes
  commercial use; so does the use of this backend.
* ``"face-alignment"``: the 2D FAN of Bulat & Tzimiropoulos (the ``face-alignment`` package). Its weights
  (``2DFAN4-11f355bf06.pth.tar``, about 100 MB) live in the torch hub cache,
  ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch/hub/checkpoints``). The kit never downloads
  them unless asked (``allow_download=True``); without them it says where they come from and where to put
  them (:func:`fan_weights_path`). The faces are found by dlib's detector, so only FAN's weights are needed.
* ``"auto"``: face-alignment when its weights are present, else dlib; :attr:`Face.backend` says which.

Photos: grayscale and RGBA are converted to RGB, files are turned upright by their EXIF orientation
(:func:`read_image`), and a photo larger than ``max_side`` is searched on a reduced copy, the boxes mapped
back, and the landmarks placed on the full photo. iBUG ``.pts`` files (1-based coordinates) are a third source
(:func:`read_pts`).
"""
from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import checks

__all__ = ["BACKENDS", "FAN_WEIGHTS_FILE", "FAN_WEIGHTS_URL", "NoFaceError", "WeightsMissingError", "Face",
           "read_image", "read_pts", "write_pts", "dlib_predictor_path", "fan_weights_path", "available_backends",
           "detect_landmarks", "normalized_mean_error"]

BACKENDS = ("auto", "dlib", "face-alignment")
#: the file name face-alignment 1.5 looks for in the torch hub cache, and where it comes from
FAN_WEIGHTS_FILE = "2DFAN4-11f355bf06.pth.tar"
FAN_WEIGHTS_URL = "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar"


class NoFaceError(ValueError):
    """No face was found in the photo."""


class WeightsMissingError(FileNotFoundError):
    """A detector's weights are not on the local disk (and downloading was not allowed)."""


@dataclass
class Face:
    """One face found in a photo.

    Attributes
    ----------
    landmarks : (68, 2) float32, iBUG-68 pixel positions ``(u, v)`` in the photo as given.
    box : (4,) float32 ``(left, top, right, bottom)`` in pixels.
    score : the detector's confidence (dlib's HOG score; higher is surer).
    backend : which backend gave the landmarks (``"dlib"``, ``"face-alignment"``, ``"pts"``).
    """

    landmarks: np.ndarray
    box: np.ndarray
    score: float
    backend: str

    @property
    def size(self) -> float:
        """The box's area in pixels (faces are ordered by it, largest first)."""
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


# ---------------------------------------------------------------------------
# photos and .pts files
# ---------------------------------------------------------------------------

def read_image(path) -> np.ndarray:
    """A photo file as (H, W, 3) uint8 RGB, turned upright by its EXIF orientation. A file that is not an
    image, is truncated or is smaller than 2 x 2 pixels raises ``ValueError`` saying so."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
            rgb = np.asarray(im.convert("RGB"))
    except UnidentifiedImageError:
        raise ValueError(f"{path.name} is not an image that Pillow can read") from None
    except OSError as e:   # truncated or corrupt files
        raise ValueError(f"{path.name} could not be read as an image: {e}") from None
    if min(rgb.shape[:2]) < 2:
        raise ValueError(f"{path.name} is {rgb.shape[1]} x {rgb.shape[0]} pixels: too small to hold a face")
    return rgb


def read_pts(path, n: int = 68) -> np.ndarray:
    """Landmarks from an iBUG ``.pts`` file: (n, 2) float32 in the kit's 0-based pixels (the files count
    from 1). A file with another number of points, or not in the format, raises ``ValueError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no .pts file at {path}")
    text = path.read_text(errors="replace").split("{", 1)
    header = text[0]
    if len(text) != 2 or "}" not in text[1] or "n_points" not in header:
        raise ValueError(f"{path.name} is not an iBUG .pts file (version / n_points header and {{ }} block)")
    try:
        declared = int(header.split("n_points:")[1].split()[0])
        rows = [ln.split() for ln in text[1].split("}")[0].strip().splitlines() if ln.strip()]
        pts = np.array(rows, dtype=np.float64)
    except (IndexError, ValueError):
        raise ValueError(f"{path.name}: could not read its points") from None
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"{path.name}: each point must be two numbers (u v), got rows of {pts.shape[-1]}")
    if declared != len(pts):
        raise ValueError(f"{path.name}: its header says {declared} points, its block holds {len(pts)} rows")
    if len(pts) != n:
        raise ValueError(f"{path.name} holds {len(pts)} points; the kit needs the {n} iBUG landmarks")
    return (pts - 1.0).astype(np.float32)


def write_pts(path, landmarks) -> Path:
    """Write (L, 2) 0-based pixel landmarks as an iBUG ``.pts`` file (1-based)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[1] != 2 or not np.all(np.isfinite(lm)):
        raise ValueError(f"landmarks must be finite with shape (L, 2), got {lm.shape}")
    lines = ["version: 1", f"n_points: {len(lm)}", "{", *(f"{u + 1:.3f} {v + 1:.3f}" for u, v in lm), "}"]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


# ---------------------------------------------------------------------------
# the backends' files
# ---------------------------------------------------------------------------

def dlib_predictor_path() -> Path:
    """The 68-point predictor shipped by ``face-recognition-models`` (``pip install face-recognition-models
    dlib-bin``), found without importing the package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsMissingError("the dlib backend needs the 68-point predictor of the face-recognition-models "
                                  "package: pip install dlib-bin face-recognition-models")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise WeightsMissingError(f"face-recognition-models is installed but {path} is missing: reinstall it")
    return path


def fan_weights_path() -> Path:
    """Where face-alignment looks for its 2D FAN weights: ``$TORCH_HOME/hub/checkpoints/`` +
    :data:`FAN_WEIGHTS_FILE` (the file may or may not be there)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / FAN_WEIGHTS_FILE


def available_backends() -> list:
    """The backends that can run here without a download."""
    out = []
    if importlib.util.find_spec("face_alignment") and importlib.util.find_spec("dlib") and \
            fan_weights_path().is_file():
        out.append("face-alignment")
    try:
        if importlib.util.find_spec("dlib"):
            dlib_predictor_path()
            out.append("dlib")
    except WeightsMissingError:
        pass
    return out


# ---------------------------------------------------------------------------
# detection
# ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _dlib():
    """dlib, its HOG face detector and the 68-point predictor, loaded once (about a second)."""
    try:
        import dlib
    except ImportError:
        raise WeightsMissingError("the dlib backend needs dlib: pip install dlib-bin face-recognition-models "
                                  "(or the kit's extra: pip install -e \".[wild]\")") from None

    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(str(dlib_predictor_path()))


def _fan(allow_download: bool, device: str):
    if importlib.util.find_spec("face_alignment") is None:
        raise WeightsMissingError("the face-alignment backend needs the package: pip install face-alignment")
    if not fan_weights_path().is_file() and not allow_download:
        raise WeightsMissingError(
            f"face-alignment's 2D FAN weights are not on the local disk. They come from {FAN_WEIGHTS_URL} "
            f"(about 100 MB); put the file at {fan_weights_path()} (the torch hub cache, $TORCH_HOME), or "
            f"pass allow_download=True (dualface: --allow-download) to fetch them once. The dlib backend "
            f"works offline.")
    return _load_fan(device, str(fan_weights_path()))


@functools.lru_cache(maxsize=4)
def _load_fan(device: str, weights: str):
    """face-alignment's FAN, loaded once per device and weights file. The faces come from dlib's detector
    (the "folder" detector: face-alignment builds none of its own)."""
    import face_alignment

    return face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device=device, face_detector="folder",
                                        compile=False, flip_input=False)


def _boxes(image: np.ndarray, max_side: int, upsample: int) -> tuple[np.ndarray, np.ndarray]:
    """dlib's HOG detector on a copy no larger than ``max_side``: boxes (F, 4) in the full photo, scores."""
    from PIL import Image

    dlib, detector, _ = _dlib()
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = image if scale == 1.0 else np.asarray(
        Image.fromarray(image).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR))
    rects, scores, _ = detector.run(small, upsample, 0.0)
    boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], dtype=np.float64) / scale
    return boxes.reshape(-1, 4), np.asarray(scores, dtype=np.float64)


def _dlib_landmarks(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    dlib, _, predictor = _dlib()
    rect = dlib.rectangle(*[int(round(x)) for x in box])
    shape = predictor(image, rect)
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)


def detect_landmarks(image, backend: str = "auto", *, max_side: int = 1024, upsample: int = 1,
                     allow_download: bool = False, device: str = "cpu") -> list:
    """Every face in ``image`` (largest first) with its 68 landmarks: a list of :class:`Face`.

    Parameters
    ----------
    image : (H, W, 3) or (H, W) or (H, W, 4) array (uint8, or float in [0, 1]), or a path to a photo file
        (read upright by :func:`read_image`).
    backend : ``"auto"``, ``"dlib"`` or ``"face-alignment"`` (see the module docstring).
    max_side : faces are searched on a copy whose longer side is at most this many pixels (large photos).
    upsample : dlib's upsampling of the search copy (1 finds faces down to about 40 px there).
    allow_download : let face-alignment download its weights if they are missing.
    device : face-alignment's torch device.

    Raises
    ------
    NoFaceError
        when no face is found.
    WeightsMissingError
        when the backend's files are not on the local disk.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    img = read_image(image) if isinstance(image, (str, os.PathLike)) else checks.rgb_image(image)
    if img.dtype != np.uint8:
        img = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    img = np.ascontiguousarray(img)
    if min(img.shape[:2]) < 2:
        raise ValueError(f"the image is {img.shape[1]} x {img.shape[0]} pixels: too small to hold a face")
    if backend == "auto":
        backend = "face-alignment" if "face-alignment" in available_backends() else "dlib"
    boxes, scores = _boxes(img, int(max_side), int(upsample))
    if len(boxes) == 0:
        raise NoFaceError(f"no face found in the {img.shape[1]} x {img.shape[0]} image")
    if backend == "dlib":
        marks = [_dlib_landmarks(img, b) for b in boxes]
    else:
        fa = _fan(allow_download, device)
        found = fa.get_landmarks_from_image(img, detected_faces=[np.append(b, s) for b, s in zip(boxes, scores)])
        marks = [np.asarray(lm, dtype=np.float32)[:, :2] for lm in found]
    faces = [Face(lm, b.astype(np.float32), float(s), backend) for lm, b, s in zip(marks, boxes, scores)]
    return sorted(faces, key=lambda f: (-f.size, -f.score))


def normalized_mean_error(pred, gt) -> float:
    """The landmark error of 300-W: the mean point-to-point distance divided by the inter-ocular distance
    (outer eye corners, iBUG points 37 and 46), for (68, 2) landmark sets."""
    a, b = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if a.shape != (68, 2) or b.shape != (68, 2):
        raise ValueError(f"pred and gt must both be (68, 2), got {a.shape} and {b.shape}")
    return float(np.linalg.norm(a - b, axis=1).mean() / np.linalg.norm(b[36] - b[45]))
