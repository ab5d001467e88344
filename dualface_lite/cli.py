"""The ``dualface`` command: a photo (or a folder of them) in, a 3D face file out (chapter 7).

    dualface reconstruct photo.jpg -o out/                       # out/photo.ply (the dual networks, Ours)
    dualface reconstruct photos/ -o out/ --format obj            # every photo of a folder; OBJ + texture
    dualface reconstruct photo.jpg -o out/ --landmarks photo.pts # landmarks from an iBUG .pts file
    dualface reconstruct photo.jpg -o out/ --variant GC          # the landmark fit alone: no network needed
    dualface fetch-model | build-dataset | train | evaluate ...  # the scripts of data_scripts/, same options

``reconstruct`` takes one face of each photo: the largest of those the detector is sure of
(:func:`landmarks.detect_landmarks` with ``largest=True``). A photo that fails (not an image, no face, ...) is
reported on one line and skipped; the others are written; the exit status is 1 if any failed. Nothing is
overwritten without ``--force``.
"""
from __future__ import annotations

import argparse
import math
import runpy
import sys
import time
from pathlib import Path

__all__ = ["main", "reconstruct_photos", "PHOTO_SUFFIXES"]

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_SCRIPTS = {"fetch-model": "fetch_sfm.py", "build-dataset": "build_dataset.py", "train": "train.py",
            "evaluate": "evaluate.py"}
_EXAMPLES = """examples:
  dualface reconstruct photo.jpg -o out/                        out/photo.ply, the dual networks (Ours)
  dualface reconstruct photos/ -o out/ --format obj             a folder; OBJ with the photo as texture
  dualface reconstruct photo.jpg -o out/ --landmarks photo.pts  landmarks from an iBUG .pts file
  dualface reconstruct photo.jpg -o out/ --variant GC           the landmark fit alone (no network)
  dualface train --size lite --variant Ours                     train the networks (about 2.5 min each)
  dualface evaluate --size lite                                 the report of chapter 6
"""


def _photos(source: Path) -> list:
    if source.is_dir():
        photos = sorted(p for p in source.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
        if not photos:
            raise ValueError(f"{source} holds no photo ({', '.join(PHOTO_SUFFIXES)})")
        return photos
    if source.is_file():
        return [source]
    raise ValueError(f"{source} is neither a photo nor a folder")


def _dual(variant: str, size: str):
    from .data import DatasetConfig
    from .model import load_model
    from .pipeline import DualNetwork

    model = load_model()
    if variant == "GC":
        return DualNetwork(model, {}, fit_kwargs=DatasetConfig.preset(size).fit_kwargs())
    return DualNetwork.from_cache(size, networks=("Ours",), model=model)


def reconstruct_photos(source, out, *, fmt: str = "ply", landmarks: str = "auto", variant: str = "Ours",
                       size: str = "lite", force: bool = False, allow_download: bool = False,
                       face_check: bool = True, progress: bool = True, log=print) -> tuple[list, list]:
    """Reconstruct one face (``largest=True``) of each photo of ``source`` (a file or a folder) into ``out``
    (a folder, created if missing) as ``<photo name>.<fmt>`` (``<name>_<suffix>.<fmt>`` when two photos share a name).
    ``face_check``: confirm each detected face with OpenCV's Haar cascade or dlib's CNN detector
    (:func:`landmarks.detect_landmarks`).
    Returns ``(written paths, [(photo, error message)])``."""
    from tqdm.auto import tqdm

    from . import io, landmarks as lmk

    source, out = Path(source), Path(out)
    photos = _photos(source)
    pts = None
    if landmarks not in lmk.BACKENDS:
        if len(photos) != 1:
            raise ValueError("a .pts file gives the landmarks of one photo; for a folder use auto, dlib or "
                             "face-alignment")
        pts = lmk.read_pts(landmarks)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".dualface-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"cannot write to the output folder {out}: {e.strerror or e}") from None
    dual = _dual(variant, size)
    written, failed = [], []
    for photo in tqdm(photos, disable=not progress or len(photos) < 2, desc="photos", unit="photo"):
        t0 = time.perf_counter()
        # a.jpg and a.png in one folder: a_jpg.ply and a_png.ply
        twin = sum(p.stem == photo.stem for p in photos) > 1
        target = out / (f"{photo.stem}_{photo.suffix[1:].lower()}.{fmt}" if twin else f"{photo.stem}.{fmt}")
        try:
            if target.exists() and not force:
                raise FileExistsError(f"{target} exists (--force overwrites it)")
            image = lmk.read_image(photo)
            if pts is not None:
                lm, how, n_candidates = pts, "the .pts file", 1
                h, w = image.shape[:2]
                if lm[:, 0].min() < -1 or lm[:, 1].min() < -1 or lm[:, 0].max() > w or lm[:, 1].max() > h:
                    raise ValueError(f"the landmarks of {Path(landmarks).name} lie outside the {w} x {h} photo")
            else:
                f = lmk.detect_landmarks(image, landmarks, check=face_check, largest=True,
                                         allow_download=allow_download)[0]
                how = f"{f.backend}, face found by {f.detector.upper()}" + (
                    "" if math.isnan(f.check) or f.checker == f.detector else   # the CNN's own search
                    f", confirmed by the Haar cascade ({f.check:.0f} neighbours)" if f.checker == "haar" else
                    f", confirmed by the CNN ({f.check:.2f})")
                lm, n_candidates = f.landmarks, f.candidates
            r = dual.reconstruct(image, lm, variant)
            texture = None
            if fmt in ("obj", "glb"):
                texture, _ = io.texture_from_photo(dual.model, r.fit, image)
            io.export_mesh(target, r.vertices, dual.model.triangles, r.colors, texcoords=dual.model.texcoords,
                           texture=texture, force=force)
            written.append(target)
            faces_note = f", one face of {n_candidates} candidates" if n_candidates > 1 else ""
            log(f"{photo.name} -> {target} ({variant}, landmarks: {how}{faces_note}, "
                f"{time.perf_counter() - t0:.1f} s)")
            if r.unlike_training:
                log(f"{photo.name}: its colours are unlike the training photos' (distance {r.colour_distance:.1f}, "
                    f"above {dual.familiarity.threshold:.1f}, the 99th percentile of the training photos'); on "
                    f"such photos the ResNet's residual gains least (chapter 7)")
        except (ValueError, OSError, RuntimeError) as e:   # one photo's failure does not stop the others
            failed.append((photo, str(e)))
            log(f"{photo.name}: failed: {e}")
    return written, failed


def _reconstruct_main(argv) -> int:
    from .landmarks import BACKENDS

    ap = argparse.ArgumentParser(prog="dualface reconstruct", description="Photo(s) -> 3D face file(s).",
                                 epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path, help="a photo, or a folder of photos")
    ap.add_argument("-o", "--out", type=Path, required=True, help="the output folder (made if missing)")
    ap.add_argument("--format", dest="fmt", choices=("ply", "obj", "glb"), default="ply",
                    help="PLY with vertex colours (default), OBJ with a texture, or GLB")
    ap.add_argument("--landmarks", default="auto", metavar="|".join((*BACKENDS, "FILE.pts")),
                    help="the landmark detector, or an iBUG .pts file for a single photo (default auto)")
    ap.add_argument("--variant", choices=("Ours", "MRFGC", "GC"), default="Ours",
                    help="Ours: the dual networks (default); MRFGC: the MRF prior alone; GC: the landmark fit")
    ap.add_argument("--size", choices=("lite", "paper"), default="lite", help="which trained networks")
    ap.add_argument("--force", action="store_true", help="overwrite existing files")
    ap.add_argument("--allow-download", action="store_true",
                    help="let face-alignment download its weights (about 100 MB) if they are missing")
    ap.add_argument("--no-face-check", action="store_true",
                    help="take HOG's faces as they are, without the Haar cascade's or the CNN's check "
                         "(faster, fooled more easily)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        written, failed = reconstruct_photos(args.source, args.out, fmt=args.fmt, landmarks=args.landmarks,
                                             variant=args.variant, size=args.size, force=args.force,
                                             allow_download=args.allow_download,
                                             face_check=not args.no_face_check, progress=not args.quiet)
    except (ValueError, FileNotFoundError) as e:
        print(f"dualface: error: {e}", file=sys.stderr)
        return 2
    if failed:
        print(f"dualface: {len(failed)} of {len(written) + len(failed)} photos failed", file=sys.stderr)
        return 1
    return 0


def _script(name: str, argv) -> int:
    from .paths import REPO_ROOT

    path = REPO_ROOT / "data_scripts" / _SCRIPTS[name]
    if not path.is_file():
        print(f"dualface: error: {name} runs {path.name} of the repository's data_scripts/, which this "
              f"installation does not have (install from a checkout: pip install -e .)", file=sys.stderr)
        return 2
    module = runpy.run_path(str(path), run_name="dualface_script")
    return int(module["main"](list(argv)) or 0)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = ("reconstruct", *_SCRIPTS)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: dualface {" + ",".join(commands) + "} ...\n\n" + __doc__.strip().split("\n\n")[0]
              + "\n\n" + _EXAMPLES + "\n`dualface COMMAND --help` shows a command's options.")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "reconstruct":
        return _reconstruct_main(rest)
    if command in _SCRIPTS:
        return _script(command, rest)
    print(f"dualface: error: unknown command {command!r} (one of {', '.join(commands)})", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
