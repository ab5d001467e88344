"""The dataset on disk, and reading it (any size, memory-mapped).

A finished dataset is a folder ``<name>-<key>`` (:func:`dualface_lite.data.dataset_dir`)::

    manifest.json                 settings, sizes, per-condition quality, SHA-256 of every file
    <split>/photos/<field>.npy    one row per photo:   image, landmarks, s0, colors, visible, pose,
                                  fit_pose, fit_alpha, fit_expr, fit_landmark_error,
                                  capture_row (its capture), photo_index (within the capture)
    <split>/captures/<field>.npy  one row per capture: s_hat, true, covered, scan_landmarks, expr,
                                  person_row (its person), capture_index (within the person)
    <split>/people/<field>.npy    one row per person:  seed, condition
    timings/<split>.<table>.<field>.npy   wall times (fit_seconds, nicp_seconds): the only files
                                  that differ between two builds of the same settings
    scans/<split>/<capture>.npz   the range scans, when built with ``keep_scans``

Plain ``.npy`` files (no pickle): :func:`load_split` opens them memory-mapped, so opening is
instant at any size and memory grows with what is read (:meth:`FaceData.item`,
:meth:`FaceData.read`, or a whole field as an attribute).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..model import MorphableModel
from ..synth import CONDITIONS, make_subject
from .config import SIZES, DatasetConfig, as_config, check_split, dataset_dir

__all__ = ["FaceData", "load_split", "verify_dataset", "read_manifest", "field_specs", "table_file",
           "timing_file", "subject_for", "load_scan", "DatasetNotBuiltError", "TABLES", "TIMING_FIELDS"]

TABLES = ("photos", "captures", "people")
#: wall times, kept apart from the records (which are byte-identical between builds): field -> table
TIMING_FIELDS = {"fit_seconds": "photos", "nicp_seconds": "captures"}


class DatasetNotBuiltError(FileNotFoundError):
    """The dataset asked for has not been built (or its build was not finished)."""


def field_specs(config: DatasetConfig, model: MorphableModel) -> dict:
    """``{table: {field: (shape of one row, dtype)}}`` of a config's dataset."""
    from ..groundtruth import scan_landmark_ids

    N, H = model.n_vertices, config.image_size
    m, e, L = model.n_components, model.n_expressions, len(scan_landmark_ids(model))
    f32 = np.float32
    return {
        "photos": {"image": ((H, H, 3), np.uint8), "landmarks": ((68, 2), f32), "s0": ((N, 3), f32),
                   "colors": ((N, 3), f32), "visible": ((N,), np.bool_), "pose": ((3,), f32),
                   "fit_pose": ((3,), f32), "fit_alpha": ((m,), f32), "fit_expr": ((e,), f32),
                   "fit_landmark_error": ((), f32), "capture_row": ((), np.int32), "photo_index": ((), np.int16)},
        "captures": {"s_hat": ((N, 3), f32), "true": ((N, 3), f32), "covered": ((N,), np.bool_),
                     "scan_landmarks": ((L, 3), f32), "expr": ((e,), f32), "person_row": ((), np.int32),
                     "capture_index": ((), np.int16)},
        "people": {"seed": ((), np.int64), "condition": ((), np.int8)},
    }


def table_file(folder, split: str, table: str, name: str) -> Path:
    """Where a field of a split's table lives."""
    return Path(folder) / split / table / f"{name}.npy"


def timing_file(folder, split: str, name: str) -> Path:
    """Where a split's wall times (:data:`TIMING_FIELDS`) live."""
    return Path(folder) / "timings" / f"{split}.{TIMING_FIELDS[name]}.{name}.npy"


def read_manifest(folder) -> dict | None:
    """The folder's ``manifest.json`` as a dict, or None when there is none (an unfinished build)."""
    try:
        return json.loads((Path(folder) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def verify_dataset(folder) -> bool:
    """True when ``folder`` holds a finished build: a manifest whose SHA-256 of every file matches."""
    from ..fetch import sha256

    folder = Path(folder)
    man = read_manifest(folder)
    if not man or "files" not in man:
        return False
    for name, info in man["files"].items():
        p = folder / name
        if not p.is_file() or p.stat().st_size != info.get("bytes") or sha256(p) != info.get("sha256"):
            return False
    return True


def _resolve_folder(config_or_path, root=None) -> Path:
    hint = ("build it first: `python data_scripts/build_dataset.py --size lite` (or --size paper), "
            "or `dualface_lite.data.build_dataset(config)`")
    if isinstance(config_or_path, DatasetConfig) or (isinstance(config_or_path, str) and config_or_path in SIZES
                                                     and not Path(config_or_path).is_dir()):
        config = as_config(config_or_path)
        folder = dataset_dir(config, root)
        if read_manifest(folder) is None:
            raise DatasetNotBuiltError(f"the dataset {config.name!r} (key {config.key()}) is not built at {folder}: "
                                       f"{hint}")
        return folder
    if isinstance(config_or_path, (str, os.PathLike)):
        folder = Path(config_or_path).expanduser()
        if folder.is_file() and folder.name == "manifest.json":
            folder = folder.parent
        if read_manifest(folder) is None:
            raise DatasetNotBuiltError(f"{folder} holds no finished dataset (no manifest.json): {hint}")
        return folder
    raise ValueError(f"config_or_path must be a DatasetConfig, 'lite', 'paper' or a dataset folder, "
                     f"got {type(config_or_path).__name__}")


#: every field a reader gives, and the table it lives in (per photo, per capture, per person)
_FIELDS_BY_TABLE = {
    "photos": ("image", "landmarks", "s0", "colors", "visible", "pose", "fit_pose", "fit_alpha", "fit_expr",
               "fit_landmark_error", "capture_row", "photo_index", "fit_seconds"),
    "captures": ("s_hat", "true", "covered", "scan_landmarks", "expr", "person_row", "capture_index",
                 "nicp_seconds"),
    "people": ("seed", "condition"),
}
_LEVEL = {name: table for table, names in _FIELDS_BY_TABLE.items() for name in names}


class FaceData:
    """One split of a built dataset, one row per photo (record ``i`` is photo ``index[i]`` of the
    split's files); what belongs to its capture or person is looked up through them.

    Fields (each an attribute, read into memory on first use and kept; :meth:`read` and
    :meth:`item` read only the rows asked for):

    per photo
        image (n, H, W, 3) uint8; landmarks (n, 68, 2) px; s0, colors (n, N, 3) float32 (the
        photo's landmark fit, mm, object frame; colours in [0, 1], 0 where unseen); visible (n, N);
        pose, fit_pose (n, 3) degrees; fit_alpha, fit_expr; fit_landmark_error (n,) px;
        photo_index (n,) which photo of its capture (0: the one registered to the scan);
        fit_seconds (n,) wall time.
    per capture (repeated for each photo of the capture)
        s_hat, true (n, N, 3) float32 (dense ground truth and the true surface); covered (n, N);
        scan_landmarks (n, L, 3) NICP's landmark targets (NaN where dropped); expr (n, 6) the
        true expression; capture_index (n,) which capture of its person; capture_row (n,) its
        row in the split's captures; nicp_seconds (n,).
    per person
        seed (n,); condition (n,) int8 codes into ``condition_names``; person_row (n,).
    """

    #: every field, in the order of the docstring
    ARRAYS = tuple(_LEVEL)

    def __init__(self, folder, split: str, index=None, _tables=None):
        self.folder = Path(folder)
        self.split = check_split(split)
        man = read_manifest(self.folder)
        if man is None:
            raise DatasetNotBuiltError(f"{self.folder} holds no finished dataset (no manifest.json)")
        self.condition_names = tuple(man.get("conditions", CONDITIONS))
        self.sizes = man["sizes"][split]
        self._tables = _tables if _tables is not None else {}
        self._cache = {}
        n = int(self.sizes["photos"])
        self.index = np.arange(n, dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)

    # -- pickling (DataLoader workers): the path, not the arrays ---------------
    def __getstate__(self):
        return {"folder": self.folder, "split": self.split, "index": self.index}

    def __setstate__(self, state):
        self.__init__(state["folder"], state["split"], state["index"])

    # -- raw access -------------------------------------------------------------
    def _array(self, name: str) -> np.ndarray:
        """The whole split's file of a field, memory-mapped (read-only)."""
        a = self._tables.get(name)
        if a is None:
            level = _LEVEL[name]
            p = timing_file(self.folder, self.split, name) if name in TIMING_FIELDS \
                else table_file(self.folder, self.split, level, name)
            if not p.is_file():
                if name in TIMING_FIELDS:
                    n = int(self.sizes[level])
                    return np.full(n, np.nan, np.float32)
                raise DatasetNotBuiltError(f"{p} is missing; rebuild the dataset with force=True")
            a = np.load(p, mmap_mode="r", allow_pickle=False)
            self._tables[name] = a
        return a

    def _rows(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Rows (photo numbers of the split) -> rows of the field's own table."""
        level = _LEVEL[name]
        if level == "photos":
            return rows
        cap = np.asarray(self._array("capture_row")[rows], dtype=np.int64)
        if level == "captures":
            return cap
        return np.asarray(self._array("person_row")[cap], dtype=np.int64)

    def read(self, name: str, which=slice(None)) -> np.ndarray:
        """Field ``name`` of the records ``which`` (an int, a slice, integer indices or a mask
        over this view), read from disk as a new array."""
        if name not in _LEVEL:
            raise ValueError(f"name must be one of {self.ARRAYS}, got {name!r}")
        rows = self.index[which]
        scalar = np.ndim(rows) == 0
        r = self._rows(name, np.atleast_1d(rows))
        a = self._array(name)
        out = np.asarray(a[r[0]]).copy() if scalar else np.asarray(a[r])
        return out

    def item(self, i: int) -> dict:
        """Every field of record ``i`` (a dict of arrays): reads one row of each file."""
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} records")
        return {name: self.read(name, i) for name in self.ARRAYS}

    def __getattr__(self, name):
        if name.startswith("_") or name not in _LEVEL:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        cache = self.__dict__["_cache"]
        if name not in cache:
            cache[name] = self.read(name)
        return cache[name]

    # -- views ----------------------------------------------------------------
    def __len__(self) -> int:
        return int(len(self.index))

    def __repr__(self) -> str:
        counts = ", ".join(f"{n}={int((self.condition == c).sum())}" for c, n in enumerate(self.condition_names))
        n_cap = len(np.unique(self.capture_row))
        n_people = len(np.unique(self.person_row))
        return (f"FaceData({self.split}: {len(self)} photos of {n_cap} captures of {n_people} people; "
                f"photos by condition: {counts})")

    def subset(self, which) -> "FaceData":
        """The records picked by a boolean mask (n,) or by integer indices."""
        w = np.asarray(which)
        if w.dtype == bool:
            if w.shape != (len(self),):
                raise ValueError(f"a boolean mask must have shape ({len(self)},), got {w.shape}")
            w = np.nonzero(w)[0]
        elif w.dtype.kind in "iu" or w.size == 0:
            w = w.astype(np.int64).reshape(-1)
            if w.size and (w.min() < -len(self) or w.max() >= len(self)):
                raise IndexError(f"indices must lie in 0..{len(self) - 1}, got {w.min()}..{w.max()}")
        else:
            raise ValueError(f"which must be a boolean mask or integer indices, got dtype {w.dtype}")
        return FaceData(self.folder, self.split, self.index[w], _tables=self._tables)

    def by_condition(self, name: str) -> "FaceData":
        """The records of one condition (``"neutral"``, ``"expression"``, ``"illumination"``)."""
        if name not in self.condition_names:
            raise ValueError(f"condition must be one of {tuple(self.condition_names)}, got {name!r}")
        return self.subset(self.condition == self.condition_names.index(name))

    def first_photos(self) -> "FaceData":
        """One record per capture: its first photo, the one registered to the range scan (as FRGC's)."""
        return self.subset(self.photo_index == 0)

    def conditions(self) -> np.ndarray:
        """(n,) the condition name of each record."""
        return np.asarray(self.condition_names)[self.condition]


def load_split(config_or_path="lite", split: str = "train", root=None, verify: bool = False) -> FaceData:
    """Open one split of a built dataset as a :class:`FaceData` (memory-mapped: nothing is read yet).

    Parameters
    ----------
    config_or_path : a :class:`~dualface_lite.data.DatasetConfig`, ``"lite"`` / ``"paper"``, or a
        dataset folder.
    split : ``"train"``, ``"val"`` or ``"test"``.
    root : where the datasets live, as given to :func:`dualface_lite.data.build_dataset`.
    verify : check every file's SHA-256 against the manifest first (reads everything).
    """
    check_split(split)
    folder = _resolve_folder(config_or_path, root)
    if verify and not verify_dataset(folder):
        raise ValueError(f"{folder}: the files do not match their manifest checksums; rebuild with force=True")
    return FaceData(folder, split)


def subject_for(config, seed: int, condition: str, model: MorphableModel | None = None, with_scan: bool = True,
                capture: int = 0, photo: int = 0, person=None):
    """The :class:`~dualface_lite.synth.Subject` behind a record, regenerated exactly (photo,
    landmarks, true surface, and the capture's range scan for ``photo=0``):
    ``make_subject(seed, condition, capture=capture, photo=photo, **config.subject_kwargs())``."""
    config = as_config(config)
    return make_subject(int(seed), str(condition), model=model, with_scan=with_scan, capture=capture,
                        photo=photo, person=person, **config.subject_kwargs())


def load_scan(data: FaceData, i: int, model: MorphableModel | None = None):
    """The range scan (``trimesh.Trimesh``, object frame, mm) of record ``i``'s capture: read from
    the dataset when it was built with ``keep_scans``, else regenerated exactly from the person's
    seed, condition and the capture's index (:func:`dualface_lite.data.subject_for`)."""
    import trimesh


    cap = int(data.read("capture_row", i))
    p = Path(data.folder) / "scans" / data.split / f"{cap:06d}.npz"
    if p.is_file():
        with np.load(p, allow_pickle=False) as z:
            return trimesh.Trimesh(z["vertices"], z["faces"], process=False)
    config = DatasetConfig.from_dict(read_manifest(data.folder)["config"])
    cond = data.condition_names[int(data.read("condition", i))]
    return subject_for(config, int(data.read("seed", i)), cond, model=model,
                       capture=int(data.read("capture_index", i))).scan
