"""Getting the Surrey Face Model (SFM) files onto the local disk.

The model is free for non-commercial use only, so the kit never ships it. It
either *copies* the files from a folder that already has them (a flag, or the
``DUALFACE_SFM_DIR`` environment variable), or *downloads* them from the public
eos repository at a pinned commit. Either way every file is checked against its
SHA-256 before it is used.

Cite: P. Huber et al., "A Multiresolution 3D Morphable Face Model and Fitting
Framework", VISAPP 2016.
"""
from __future__ import annotations

import hashlib
import os
import shutil
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
            shutil.copyfile(src, dest / name)
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
