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

Finding the faces (both backends): dlib's HOG detector proposes candidates, down to a score of
:data:`HOG_CANDIDATE_SCORE` (a real face can score below dlib's own threshold of 0: a grey portrait scored
-0.22), and each candidate is checked by a second detector on a small crop around it. Two checks, the cheap one
first:

* OpenCV's Haar cascade (``haarcascade_frontalface_alt2.xml``, shipped inside the ``opencv-python`` wheel),
  a few milliseconds on a :data:`HAAR_SIDE` px crop: it confirms a candidate that HOG scores at or above
  dlib's own threshold of 0 when it finds the face there at least :data:`HAAR_NEIGHBOURS` times (its
  "neighbours"; measured on real photos, faces gather 25-91, candidates on non-face photos at most 11);
* dlib's CNN face detector (``mmod_human_face_detector.dat``, shipped beside the predictor) for every
  candidate the cascade does not confirm, on a :data:`CHECK_SIDE` px crop (a tenth to a fifth of a second).

A candidate neither confirms is dropped: a badge or a pattern is reported as no face rather than
reconstructed. When no candidate is confirmed, the CNN searches the whole photo on a copy reduced to
:data:`CNN_MAX_SIDE`. :attr:`Face.detector` says which detector found a face, :attr:`Face.score` its score
there, :attr:`Face.checker` which detector confirmed it and :attr:`Face.check` its confidence there (the
cascade's neighbours, or the CNN's confidence). ``check=False`` keeps HOG's answer alone (faster, and fooled
more easily). ``largest=True`` (what ``dualface reconstruct`` uses) returns one face, searched coarse to
fine: HOG without upsampling first (faces of about 80 px and more, a quarter of the cost), the finer search
only when that finds no confirmed face; within a search the candidates HOG is sure of (score >= 0) come
first, largest first, then the others, and the first one confirmed is the face. So it is the largest face
HOG is sure of, not always the largest face in the photo.

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

__all__ = ["BACKENDS", "HOG_CANDIDATE_SCORE", "HAAR_SIDE", "HAAR_NEIGHBOURS", "HAAR_CASCADE", "CHECK_SIDE",
           "CNN_MAX_SIDE", "FAN_WEIGHTS_FILE", "FAN_WEIGHTS_URL", "NoFaceError", "WeightsMissingError", "Face",
           "Detections", "read_image", "read_pts", "write_pts", "dlib_predictor_path", "fan_weights_path",
           "cnn_detector_path", "available_backends", "hog_candidates", "haar_neighbours", "cnn_confidence",
           "find_faces", "detect_landmarks", "normalized_mean_error"]

BACKENDS = ("auto", "dlib", "face-alignment")
#: the file name face-alignment 1.5 looks for in the torch hub cache, and where it comes from
FAN_WEIGHTS_FILE = "2DFAN4-11f355bf06.pth.tar"
FAN_WEIGHTS_URL = "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar"
#: HOG candidates down to this score are checked (dlib's own threshold is 0)
HOG_CANDIDATE_SCORE = -0.5
#: the Haar cascade sees the same crop as the CNN check, resized to this many pixels (the face then about 48)
HAAR_SIDE = 96
#: the cascade confirms a candidate (HOG score >= 0) that it finds at least this many times ("neighbours")
HAAR_NEIGHBOURS = 20
#: the cascade's file in OpenCV's ``cv2.data.haarcascades`` (its frontal-face cascade "alt2")
HAAR_CASCADE = "haarcascade_frontalface_alt2.xml"
#: the CNN check sees the candidate's box with half its side added on every side, resized to this many
#: pixels (the face then about half of it: the size dlib's CNN detector finds best)
CHECK_SIDE = 160
CHECK_PAD = 0.5
#: when no candidate is confirmed, the CNN searches a copy of the photo at most this large
CNN_MAX_SIDE = 320


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
    score : the confidence of the detector that found the face (higher is surer): dlib's HOG score, or the
        CNN's confidence when the CNN found it.
    backend : which backend gave the landmarks (``"dlib"``, ``"face-alignment"``, ``"pts"``).
    detector : which detector found the face: ``"hog"`` or ``"cnn"`` (``"pts"`` for a file's landmarks).
    check : the confidence of the detector that confirmed the box holds a face: the Haar cascade's
        neighbours or the CNN's confidence (``nan`` when unchecked).
    checker : which detector confirmed it: ``"haar"``, ``"cnn"``, or ``""`` when unchecked.
    candidates : how many candidates HOG proposed in the search that found the face (0 when the face came
        from elsewhere).
    """

    landmarks: np.ndarray
    box: np.ndarray
    score: float
    backend: str
    detector: str = "hog"
    check: float = float("nan")
    candidates: int = 0
    checker: str = ""

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


def cnn_detector_path() -> Path:
    """dlib's CNN face detector ``mmod_human_face_detector.dat``, shipped by ``face-recognition-models``
    beside the 68-point predictor."""
    path = dlib_predictor_path().with_name("mmod_human_face_detector.dat")
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


@functools.lru_cache(maxsize=None)
def _cnn():
    """dlib's CNN face detector, loaded once."""
    dlib, _, _ = _dlib()
    return dlib.cnn_face_detection_model_v1(str(cnn_detector_path()))


def _reduced(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """A copy no larger than ``max_side`` (the photo itself when it is small enough), and its scale."""
    from PIL import Image

    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale == 1.0:
        return image, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR)), scale


def hog_candidates(image: np.ndarray, *, max_side: int = 1024, upsample: int = 1,
                   threshold: float = HOG_CANDIDATE_SCORE) -> tuple[np.ndarray, np.ndarray]:
    """dlib's HOG detector on a copy of the photo (any layout :func:`checks.rgb_uint8` takes) no larger than
    ``max_side``, upsampled ``upsample`` times, down to a score of ``threshold``: boxes (F, 4) ``(left, top,
    right, bottom)`` in the full photo's pixels and their scores (F,), unchecked."""
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite HOG score, got {threshold}")
    dlib, detector, _ = _dlib()
    small, scale = _reduced(checks.rgb_uint8(image), int(max_side))
    rects, scores, _ = detector.run(small, int(upsample), float(threshold))
    boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], dtype=np.float64) / scale
    return boxes.reshape(-1, 4), np.asarray(scores, dtype=np.float64)


def _cnn_boxes(image: np.ndarray, max_side: int):
    """dlib's CNN detector on a copy no larger than ``max_side``: boxes (F, 4) in the full photo, confidences."""
    small, scale = _reduced(image, max_side)
    found = _cnn()(small, 0)
    boxes = np.array([[d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()] for d in found],
                     dtype=np.float64) / scale
    return boxes.reshape(-1, 4), np.array([d.confidence for d in found], dtype=np.float64)


@functools.lru_cache(maxsize=None)
def _haar():
    """OpenCV's frontal-face Haar cascade, loaded once; ``None`` when OpenCV or its cascade files are not
    installed (OpenCV 5 moved the cascades out of its wheel): the CNN then checks every candidate."""
    try:
        import cv2
    except ImportError:                     # not installed, or a build that cannot load (no libGL)
        return None
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not folder or not hasattr(cv2, "CascadeClassifier") or not (Path(folder) / HAAR_CASCADE).is_file():
        return None
    cascade = cv2.CascadeClassifier(str(Path(folder) / HAAR_CASCADE))
    return None if cascade.empty() else (cv2, cascade)


def _crop_around(image: np.ndarray, box: np.ndarray, side: int):
    """The box with :data:`CHECK_PAD` of its side added on every side (zero outside the photo), resized to
    ``side`` x ``side``: the crop, its corner ``(x0, y0)`` in the photo and its pixels per photo pixel."""
    from PIL import Image

    h, w = image.shape[:2]
    half = max(box[2] - box[0], box[3] - box[1], 1.0) * (0.5 + CHECK_PAD)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0, y0 = int(round(cx - half)), int(round(cy - half))
    n = int(round(2 * half))
    crop = np.zeros((n, n, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + n), min(h, y0 + n)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return np.asarray(Image.fromarray(crop).resize((side, side), Image.BILINEAR)), x0, y0, side / n


def _matches(box: np.ndarray, found: np.ndarray, x0: int, y0: int, k: float) -> np.ndarray:
    """Which detections ``found`` (D, 4) ``(left, top, right, bottom)`` in crop pixels describe the same face
    as ``box``: their centre lies in the box and their side is within a factor 2 of the box's."""
    side = max(box[2] - box[0], box[3] - box[1], 1.0)
    u = x0 + (found[:, 0] + found[:, 2]) / 2 / k
    v = y0 + (found[:, 1] + found[:, 3]) / 2 / k
    ratio = np.maximum(found[:, 2] - found[:, 0], found[:, 3] - found[:, 1]) / k / side
    return (box[0] <= u) & (u <= box[2]) & (box[1] <= v) & (v <= box[3]) & (0.5 <= ratio) & (ratio <= 2.0)


def haar_neighbours(image: np.ndarray, box: np.ndarray) -> int:
    """How many times OpenCV's Haar cascade finds the face of ``box`` (4,) in a :data:`HAAR_SIDE` px crop
    around it, (H, W, 3) uint8 photo: the most neighbours among its detections whose centre lies in the box
    and whose side is within a factor 2 of its side; 0 when none, or when OpenCV or its cascade is missing."""
    haar = _haar()
    if haar is None:
        return 0
    cv2, cascade = haar
    crop, x0, y0, k = _crop_around(checks.rgb_uint8(image), np.asarray(box, np.float64), HAAR_SIDE)
    grey = cv2.equalizeHist(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY))
    smallest = HAAR_SIDE // 4
    rects, neighbours = cascade.detectMultiScale2(grey, scaleFactor=1.1, minNeighbors=1,
                                                  minSize=(smallest, smallest))
    if len(rects) == 0:
        return 0
    found = np.asarray(rects, np.float64).reshape(-1, 4)
    found[:, 2:] += found[:, :2]                       # (x, y, w, h) -> (left, top, right, bottom)
    hits = np.asarray(neighbours).reshape(-1)[_matches(box, found, x0, y0, k)]
    return int(hits.max()) if hits.size else 0


def cnn_confidence(image: np.ndarray, box: np.ndarray) -> float:
    """dlib's CNN detector's confidence that ``box`` (4,) of the (H, W, 3) uint8 photo holds a face: its best
    detection in a :data:`CHECK_SIDE` px crop around the box, matched as in :func:`haar_neighbours`; ``nan``
    when there is none."""
    crop, x0, y0, k = _crop_around(checks.rgb_uint8(image), np.asarray(box, np.float64), CHECK_SIDE)
    found = _cnn()(crop, 0)
    if not found:
        return float("nan")
    rects = np.array([[d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()] for d in found], np.float64)
    conf = np.array([d.confidence for d in found])[_matches(box, rects, x0, y0, k)]
    return float(conf.max()) if conf.size else float("nan")


def _check(image: np.ndarray, box: np.ndarray, score: float) -> tuple[float, str]:
    """Whether ``box`` (HOG's ``score``) holds a face: ``(confidence, checker)``, the Haar cascade's
    neighbours when it confirms it, else the CNN's confidence (``nan`` when neither does)."""
    if score >= 0.0:
        neighbours = haar_neighbours(image, box)
        if neighbours >= HAAR_NEIGHBOURS:
            return float(neighbours), "haar"
    return cnn_confidence(image, box), "cnn"


def _largest_first(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The order of the boxes by area, largest first (the higher score first among equal areas)."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.lexsort((-scores, -area))


def _checking_order(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The order in which candidates are checked: those HOG scores at or above dlib's threshold of 0 first,
    each group largest first."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.lexsort((-scores, -area, scores < 0))


@dataclass
class Detections:
    """The faces :func:`find_faces` found in a photo, largest first (F of them; one with ``largest``).

    Attributes
    ----------
    boxes : (F, 4) float64 ``(left, top, right, bottom)`` in the photo's pixels.
    scores : (F,) the finding detector's scores.
    detectors : F names of the finding detector, ``"hog"`` or ``"cnn"``.
    checks : (F,) the confirming detector's confidence (``nan`` unchecked).
    checkers : F names of the confirming detector, ``"haar"``, ``"cnn"`` or ``""`` (unchecked).
    candidates : how many candidates HOG proposed in the search that found them.
    """

    boxes: np.ndarray
    scores: np.ndarray
    detectors: list
    checks: np.ndarray
    checkers: list
    candidates: int


def find_faces(image: np.ndarray, *, max_side: int = 1024, upsample: int = 1, check: bool = True,
               largest: bool = False) -> Detections:
    """The faces in an (H, W, 3) uint8 photo, as described in the module docstring: a :class:`Detections`.
    ``largest``: one face, searched coarse to fine (HOG without upsampling first, then at ``upsample``);
    within a search the candidates HOG scores at or above 0 are checked first, largest first, then the
    others, and the first one confirmed ends it, so a photo with several candidates usually costs one
    check."""
    threshold = HOG_CANDIDATE_SCORE if check else 0.0
    n_candidates = 0
    for level in dict.fromkeys((0, int(upsample)) if largest else (int(upsample),)):
        boxes, scores = hog_candidates(image, max_side=max_side, upsample=level, threshold=threshold)
        order = _checking_order(boxes, scores)
        boxes, scores, n_candidates = boxes[order], scores[order], len(boxes)
        conf, checker = np.full(n_candidates, np.nan), [""] * n_candidates
        for i in range(n_candidates if check else 0):
            conf[i], checker[i] = _check(image, boxes[i], scores[i])
            if largest and not np.isnan(conf[i]):
                break
        keep = np.flatnonzero(~np.isnan(conf) if check else np.ones(n_candidates, bool))
        keep = keep[_largest_first(boxes[keep], scores[keep])][:1 if largest else None]
        if len(keep):
            return Detections(boxes[keep], scores[keep], ["hog"] * len(keep), conf[keep],
                              [checker[i] for i in keep], n_candidates)
    if not check:
        return Detections(np.zeros((0, 4)), np.zeros(0), [], np.zeros(0), [], n_candidates)
    boxes, conf = _cnn_boxes(image, CNN_MAX_SIDE)
    order = _largest_first(boxes, conf)[:1 if largest else None]
    return Detections(boxes[order], conf[order], ["cnn"] * len(order), conf[order], ["cnn"] * len(order),
                      n_candidates)


def _dlib_landmarks(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    dlib, _, predictor = _dlib()
    rect = dlib.rectangle(*[int(round(x)) for x in box])
    shape = predictor(image, rect)
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)


def detect_landmarks(image, backend: str = "auto", *, max_side: int = 1024, upsample: int = 1,
                     check: bool = True, largest: bool = False, allow_download: bool = False,
                     device: str = "cpu") -> list:
    """Every face in ``image`` (largest first) with its 68 landmarks: a list of :class:`Face`.

    Parameters
    ----------
    image : (H, W, 3) or (H, W) or (H, W, 4) array (uint8, or float in [0, 1]), or a path to a photo file
        (read upright by :func:`read_image`).
    backend : ``"auto"``, ``"dlib"`` or ``"face-alignment"`` (see the module docstring).
    max_side : faces are searched on a copy whose longer side is at most this many pixels (large photos).
    upsample : dlib's upsampling of the search copy (1 finds faces down to about 40 px there).
    check : confirm every HOG candidate with the Haar cascade or dlib's CNN detector, and let the CNN search
        when HOG finds nothing confirmed (see the module docstring); ``False``: HOG alone, at dlib's threshold.
    largest : one face (a list of one), searched coarse to fine: HOG without upsampling first (faces of
        about 80 px and more), at ``upsample`` only when that finds none; the candidates HOG scores at or
        above 0 are checked first, largest first, and the first one confirmed ends the search (the
        largest face HOG is sure of, see the module docstring). :attr:`Face.candidates` counts HOG's
        candidates in the search that found the face.
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
    img = read_image(image) if isinstance(image, (str, os.PathLike)) else checks.rgb_uint8(image)
    if min(img.shape[:2]) < 2:
        raise ValueError(f"the image is {img.shape[1]} x {img.shape[0]} pixels: too small to hold a face")
    if backend == "auto":
        backend = "face-alignment" if "face-alignment" in available_backends() else "dlib"
    found = find_faces(img, max_side=max_side, upsample=upsample, check=check, largest=largest)
    boxes = found.boxes
    if len(boxes) == 0:
        how = "HOG, the Haar cascade and dlib's CNN detector" if check else "HOG"
        raise NoFaceError(f"no face found in the {img.shape[1]} x {img.shape[0]} image ({how})")
    if backend == "dlib":
        marks = [_dlib_landmarks(img, b) for b in boxes]
    else:
        fa = _fan(allow_download, device)
        got = fa.get_landmarks_from_image(img, detected_faces=[np.append(b, s)
                                                               for b, s in zip(boxes, found.scores)])
        marks = [np.asarray(lm, dtype=np.float32)[:, :2] for lm in got]
    return [Face(lm, b.astype(np.float32), float(s), backend, by, float(c), found.candidates, who)
            for lm, b, s, by, c, who in zip(marks, boxes, found.scores, found.detectors, found.checks,
                                            found.checkers)]


def normalized_mean_error(pred, gt) -> float:
    """The landmark error of 300-W: the mean point-to-point distance divided by the inter-ocular distance
    (outer eye corners, iBUG points 37 and 46), for (68, 2) landmark sets."""
    a, b = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if a.shape != (68, 2) or b.shape != (68, 2):
        raise ValueError(f"pred and gt must both be (68, 2), got {a.shape} and {b.shape}")
    return float(np.linalg.norm(a - b, axis=1).mean() / np.linalg.norm(b[36] - b[45]))
