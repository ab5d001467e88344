"""The training data: photo + range scan -> dense ground truth ``S_hat`` (paper, section IV-A, Fig. 2).

The paper turns FRGC v2.0 (photos with registered range images and 68 labelled
landmarks) into training pairs in three steps: triangulate each range image
(:func:`dualface_lite.scans.range_to_mesh`), fit the morphable model to the
photo's landmarks (``S_0`` with its colours, eq. (4),
:func:`dualface_lite.fitting.fit_landmarks`) and register ``S_0`` onto the scan
(:func:`dualface_lite.groundtruth.ground_truth`: landmarks lifted onto the scan,
outlier filter, NICP) -> ``S_hat``.

The kit's stand-in for FRGC is :func:`dualface_lite.synth.make_subject`, which
also knows the true surface, so every record carries the error that FRGC could
not measure. One subject: :func:`build_subject`.

:func:`build_dataset` runs this for ``n_train`` + ``n_test`` subjects (seeds
``train_seed + k`` and ``test_seed + k``, condition ``CONDITIONS[k % 3]``) on all
cores, shows a tqdm bar and writes ``train.npz``, ``test.npz`` (plain arrays, no
pickle), ``timings.npz`` and ``manifest.json`` into
``paths.cache_dir("datasets") / f"{name}-{key}"``. The key is a hash of every
setting (and :data:`DATA_FORMAT_VERSION`), so a changed setting gets its own
folder and a re-run finds the finished one at once. The arrays do not depend on
the number of workers: each subject is built alone, in a process limited to one
BLAS thread, and put in its place by index; ``train.npz`` and ``test.npz`` are
byte-identical between builds (the wall times live in ``timings.npz``).

Read them with :func:`load_split` (numpy, :class:`FaceData`) or, for training,
:class:`FaceDataset` (a ``torch.utils.data.Dataset``; torch is imported only then).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import time
import uuid
import warnings
import zipfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from . import paths
from .checks import DualfaceWarning
from .fitting import DEFAULT_FACE_SIZE, DEFAULT_LAM, DEFAULT_SIGMA_L, PROJECTIONS, fit_landmarks
from .groundtruth import (DEFAULT_LANDMARK_MAX_RESIDUAL, DEFAULT_REJECT_DISTANCE, ground_truth,
                          scan_landmark_ids)
from .model import MorphableModel
from .registration import DEFAULT_LANDMARK_WEIGHTS, DEFAULT_STIFFNESS, surface_distance
from .synth import CONDITIONS, Population, make_subject

__all__ = ["DatasetConfig", "FaceData", "build_subject", "build_dataset", "load_split",
           "dataset_dir", "verify_dataset", "subject_for",
           "load_scan", "SIZES", "SPLITS", "DATA_FORMAT_VERSION", "DatasetNotBuiltError"]

#: Bump when the records change meaning or layout: every key changes, old folders are not served.
DATA_FORMAT_VERSION = 2   # 2: the scanner's range images triangulated by scans.range_to_mesh
SIZES = ("lite", "paper")
SPLITS = ("train", "test")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: the modules whose code makes the records (a change is reported on a cache hit, see build_dataset)
_CODE_MODULES = ("camera", "checks", "render", "model", "synth", "scans", "fitting", "registration",
                 "groundtruth", "metrics", "data")


class DatasetNotBuiltError(FileNotFoundError):
    """The dataset asked for has not been built (or its build was not finished)."""


# ---------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetConfig:
    """Everything that decides the dataset's arrays (Fig. 2 of the paper).

    Attributes
    ----------
    name : a label for the folder (not part of the key).
    n_train, n_test : subjects per split (at least 3 each), split as equally as
        possible over the 3 conditions (subject ``k`` has ``CONDITIONS[k % 3]``).
    train_seed, test_seed : subject ``k`` of a split has seed ``*_seed + k``
        (clear of the subjects the kit tunes and benchmarks on: ``tune_fitting.py``
        50000+, ``bench_fitting.py`` 100000+, the chapters' small seeds).
    image_size : photo size in px.
    max_yaw, landmark_noise, scan_spacing, scan_noise, scan_holes : passed to
        :func:`dualface_lite.synth.make_subject` (degrees, px, mm, mm, count).
    fit_lam, fit_sigma_l : ``lambda`` and ``sigma_L`` of eq. (4) for ``S_0`` (``fit_sigma_l=None``:
        estimated from each photo's landmarks, the fit's default).
    fit_projection, fit_face_size : the fit's camera (``"perspective"`` or ``"orthographic"``)
        and its prior face size (:func:`dualface_lite.fitting.fit_landmarks`).
    landmark_max_residual, nicp_stiffness, nicp_landmark_weight, nicp_rigid_init,
        nicp_reject_distance : the settings of the Fig. 2 step
        (:func:`dualface_lite.groundtruth.ground_truth`'s ``landmark_max_residual`` (mm),
        ``stiffness``, ``landmark_weight``, ``rigid_init``, ``reject_distance`` (mm);
        :meth:`ground_truth_kwargs`).
    covered_distance : mm; a vertex is *covered* (the scan has data there) when
        its true position lies within this distance of the scan.
    keep_scans : also store each range scan (``scans/<split>_<k>.npz``); without
        it :func:`subject_for` regenerates a subject, scan included, exactly.
    population : the synthetic population (:class:`dualface_lite.synth.Population`).
    """

    name: str = "custom"
    n_train: int = 240
    n_test: int = 90
    train_seed: int = 200_000
    test_seed: int = 300_000
    image_size: int = 224
    max_yaw: float = 30.0
    landmark_noise: float = 0.7
    scan_spacing: float = 1.0
    scan_noise: float = 0.2
    scan_holes: int = 3
    fit_lam: float = DEFAULT_LAM
    fit_sigma_l: float | None = DEFAULT_SIGMA_L
    fit_projection: str = "perspective"
    fit_face_size: float = DEFAULT_FACE_SIZE
    landmark_max_residual: float = DEFAULT_LANDMARK_MAX_RESIDUAL
    nicp_stiffness: tuple = tuple(DEFAULT_STIFFNESS)
    nicp_landmark_weight: float = DEFAULT_LANDMARK_WEIGHTS
    nicp_rigid_init: bool = True
    nicp_reject_distance: float = DEFAULT_REJECT_DISTANCE
    covered_distance: float = 2.0
    keep_scans: bool = False
    population: Population = field(default_factory=Population)

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(f"name must be 1-64 characters of letters, digits, '_', '-' or '.', "
                             f"starting with a letter or digit, got {self.name!r}")
        for nm in ("n_train", "n_test"):
            v = getattr(self, nm)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 3:
                raise ValueError(f"{nm} must be an integer >= 3 (one subject per condition at least), got {v!r}")
            object.__setattr__(self, nm, int(v))
        for nm in ("train_seed", "test_seed"):
            v = getattr(self, nm)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{nm} must be a non-negative integer, got {v!r}")
            object.__setattr__(self, nm, int(v))
        a = (self.train_seed, self.train_seed + self.n_train)
        b = (self.test_seed, self.test_seed + self.n_test)
        if a[0] < b[1] and b[0] < a[1]:
            raise ValueError(f"train seeds {a[0]}..{a[1] - 1} and test seeds {b[0]}..{b[1] - 1} overlap: "
                             f"a test subject would also be a training subject")
        if int(self.image_size) < 32:
            raise ValueError(f"image_size must be at least 32 px, got {self.image_size}")
        object.__setattr__(self, "image_size", int(self.image_size))
        object.__setattr__(self, "scan_holes", int(self.scan_holes))
        st = tuple(float(x) for x in np.atleast_1d(self.nicp_stiffness))
        if not st or any(not (np.isfinite(x) and x > 0) for x in st):
            raise ValueError(f"nicp_stiffness must be a non-empty sequence of positive numbers, got {self.nicp_stiffness!r}")
        object.__setattr__(self, "nicp_stiffness", st)
        for nm in ("max_yaw", "landmark_noise", "scan_noise", "fit_lam", "landmark_max_residual",
                   "nicp_landmark_weight"):
            v = float(getattr(self, nm))
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"{nm} must be a finite non-negative number, got {getattr(self, nm)!r}")
            object.__setattr__(self, nm, v)
        for nm in ("scan_spacing", "fit_sigma_l", "fit_face_size", "nicp_reject_distance", "covered_distance"):
            if nm == "fit_sigma_l" and self.fit_sigma_l is None:
                continue
            v = float(getattr(self, nm))
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{nm} must be a positive number, got {getattr(self, nm)!r}")
            object.__setattr__(self, nm, v)
        if self.fit_projection not in PROJECTIONS:
            raise ValueError(f"fit_projection must be one of {PROJECTIONS}, got {self.fit_projection!r}")
        object.__setattr__(self, "nicp_rigid_init", bool(self.nicp_rigid_init))
        object.__setattr__(self, "keep_scans", bool(self.keep_scans))
        if not isinstance(self.population, Population):
            raise ValueError(f"population must be a synth.Population, got {type(self.population).__name__}")

    # -- presets ------------------------------------------------------------
    @classmethod
    def lite(cls, **overrides) -> "DatasetConfig":
        """What the book runs on a 2-core CPU: 240 train / 90 test (about 2 minutes)."""
        return cls(**{"name": "lite", "n_train": 240, "n_test": 90, **overrides})

    @classmethod
    def paper(cls, **overrides) -> "DatasetConfig":
        """The paper's size (section IV-B): 2800 train / 500 test (about 20 CPU-core minutes)."""
        return cls(**{"name": "paper", "n_train": 2800, "n_test": 500, **overrides})

    @classmethod
    def preset(cls, size: str, **overrides) -> "DatasetConfig":
        """``DatasetConfig.preset("lite")`` or ``("paper")``."""
        if size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {size!r}")
        return getattr(cls, size)(**overrides)

    # -- identity -----------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON-able dict of every setting (the population as a nested dict)."""
        d = asdict(self)
        d["nicp_stiffness"] = list(self.nicp_stiffness)
        d["population"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in d["population"].items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DatasetConfig":
        d = dict(d)
        pop = d.pop("population", None)
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown DatasetConfig settings {sorted(unknown)}")
        if pop is not None:
            d["population"] = Population(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in pop.items()})
        return cls(**d)

    def key(self) -> str:
        """12 hex digits: a hash of every setting but ``name``, and of :data:`DATA_FORMAT_VERSION`."""
        d = self.to_dict()
        d.pop("name")
        blob = json.dumps({"format": DATA_FORMAT_VERSION, "config": d}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def subject_kwargs(self) -> dict:
        """The keyword arguments of :func:`dualface_lite.synth.make_subject` this config uses."""
        return dict(population=self.population, image_size=self.image_size, max_yaw=self.max_yaw,
                    landmark_noise=self.landmark_noise, scan_spacing=self.scan_spacing,
                    scan_noise=self.scan_noise, scan_holes=self.scan_holes)

    def fit_kwargs(self) -> dict:
        """The keyword arguments of :func:`dualface_lite.fitting.fit_landmarks` this config uses."""
        return dict(lam=self.fit_lam, sigma_l=self.fit_sigma_l, projection=self.fit_projection,
                    face_size=self.fit_face_size)

    def ground_truth_kwargs(self) -> dict:
        """The keyword arguments of :func:`dualface_lite.groundtruth.ground_truth` this config uses."""
        return dict(stiffness=self.nicp_stiffness, landmark_weight=self.nicp_landmark_weight,
                    rigid_init=self.nicp_rigid_init, reject_distance=self.nicp_reject_distance,
                    landmark_max_residual=self.landmark_max_residual)

    def plan(self, split: str) -> list[tuple[int, str]]:
        """``[(seed, condition), ...]`` of a split, in the order of its records."""
        _check_split(split)
        n, base = (self.n_train, self.train_seed) if split == "train" else (self.n_test, self.test_seed)
        return [(base + k, CONDITIONS[k % len(CONDITIONS)]) for k in range(n)]


def _check_split(split) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _as_config(config) -> DatasetConfig:
    if isinstance(config, DatasetConfig):
        return config
    if isinstance(config, str) and config in SIZES:
        return DatasetConfig.preset(config)
    raise ValueError(f"config must be a DatasetConfig or one of {SIZES}, got {config!r}")


def dataset_dir(config, root=None) -> Path:
    """The folder of a config's dataset: ``root / f"{name}-{key}"`` (default root:
    ``paths.cache_dir("datasets")``). Not created here."""
    config = _as_config(config)
    base = Path(root).expanduser() if root is not None else paths.cache_dir("datasets")
    return base / f"{config.name}-{config.key()}"


# ---------------------------------------------------------------------------
# one subject (Fig. 2)
# ---------------------------------------------------------------------------

def subject_for(config, seed: int, condition: str, model: MorphableModel | None = None, with_scan: bool = True):
    """The :class:`~dualface_lite.synth.Subject` behind a record, regenerated exactly
    (photo, landmarks, true surface and range scan): ``make_subject(seed, condition,
    **config.subject_kwargs())``."""
    config = _as_config(config)
    return make_subject(int(seed), str(condition), model=model, with_scan=with_scan, **config.subject_kwargs())


def build_subject(config, seed: int, condition: str, model: MorphableModel) -> dict:
    """One training record by the paper's data preparation (section IV-A, Fig. 2).

    photo + range scan (:func:`subject_for`) -> landmark fit ``S_0`` with colours
    (eq. (4)) -> :func:`dualface_lite.groundtruth.ground_truth` with the config's
    settings (landmarks lifted onto the scan, outlier filter, NICP) -> ``S_hat``.

    Returns a dict of numpy arrays (all in the object frame, mm):
    ``image`` (H, W, 3) uint8, ``landmarks`` (68, 2) px, ``s0``, ``colors``
    (N, 3) in [0, 1], ``visible`` (N,), ``s_hat``, ``true`` (N, 3) float32,
    ``covered`` (N,) the scan has data at the true vertex (within
    ``config.covered_distance``), ``condition`` (code into ``CONDITIONS``),
    ``seed``, ``pose`` (true yaw, pitch, roll in degrees), ``fit_pose``,
    ``fit_alpha``, ``fit_expr``, ``fit_landmark_error`` (px),
    ``scan_landmarks`` (L, 3) the targets given to NICP, NaN where dropped
    (order of :func:`scan_landmark_ids`), ``fit_seconds``, ``nicp_seconds``; and
    ``scan_vertices`` / ``scan_faces`` when ``config.keep_scans``.
    """
    config = _as_config(config)
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
    s = subject_for(config, seed, condition, model=model, with_scan=True)
    V = np.asarray(s.scan.vertices, dtype=np.float64)
    F = np.asarray(s.scan.faces, dtype=np.int64)

    t0 = time.perf_counter()
    fit = fit_landmarks(model, s.landmarks, image=s.image, **config.fit_kwargs())
    t_fit = time.perf_counter() - t0
    S0 = np.asarray(fit.vertices, dtype=np.float32)
    gt = ground_truth(model, S0, (V, F), s.camera, s.landmarks, **config.ground_truth_kwargs())
    s_hat, hits, t_nicp = gt.s_hat, gt.scan_landmarks, gt.seconds

    covered = surface_distance(s.vertices, V, F) <= config.covered_distance  # NICP's own closest-point query
    rec = dict(
        image=s.image, landmarks=s.landmarks.astype(np.float32), s0=S0,
        colors=np.asarray(fit.colors, dtype=np.float32), visible=np.asarray(fit.visible, dtype=bool),
        s_hat=np.asarray(s_hat, dtype=np.float32), true=s.vertices.astype(np.float32), covered=covered,
        condition=np.int8(CONDITIONS.index(condition)), seed=np.int64(seed),
        pose=np.asarray(s.pose, dtype=np.float32), fit_pose=np.asarray(fit.angles, dtype=np.float32),
        fit_alpha=np.asarray(fit.alpha, dtype=np.float32), fit_expr=np.asarray(fit.expr, dtype=np.float32),
        fit_landmark_error=np.float32(fit.landmark_error), scan_landmarks=hits.astype(np.float32),
        fit_seconds=np.float32(t_fit), nicp_seconds=np.float32(t_nicp),
    )
    if config.keep_scans:
        rec["scan_vertices"] = V.astype(np.float32)
        rec["scan_faces"] = F.astype(np.int32)
    return rec


# ---------------------------------------------------------------------------
# the whole dataset
# ---------------------------------------------------------------------------

#: wall times: kept apart from the records, which are byte-identical between builds
_TIMING_FIELDS = ("fit_seconds", "nicp_seconds")
_SCAN_FIELDS = ("scan_vertices", "scan_faces")


def _field_specs(config: DatasetConfig, model: MorphableModel) -> dict:
    """name -> (shape of one record, dtype) of the arrays in ``<split>.npz``."""
    N, H = model.n_vertices, config.image_size
    m, e, L = model.n_components, model.n_expressions, len(scan_landmark_ids(model))
    f32 = np.float32
    return {"image": ((H, H, 3), np.uint8), "landmarks": ((68, 2), f32), "s0": ((N, 3), f32),
            "colors": ((N, 3), f32), "visible": ((N,), np.bool_), "s_hat": ((N, 3), f32),
            "true": ((N, 3), f32), "covered": ((N,), np.bool_), "condition": ((), np.int8),
            "seed": ((), np.int64), "pose": ((3,), f32), "fit_pose": ((3,), f32), "fit_alpha": ((m,), f32),
            "fit_expr": ((e,), f32), "fit_landmark_error": ((), f32), "scan_landmarks": ((L, 3), f32)}


def _model_fingerprint(model: MorphableModel) -> str:
    h = hashlib.sha256()
    for a in (model.mean, model.basis, model.sigma, model.expressions, model.triangles, model.ibug68,
              model.ibug_defined):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _code_fingerprint() -> str:
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in _CODE_MODULES:
        h.update((here / f"{name}.py").read_bytes())
    return h.hexdigest()[:16]


def _sha256(path: Path) -> str:
    from .fetch import sha256

    return sha256(path)


def _write_npz(path: Path, arrays: dict) -> None:
    """Like ``np.savez`` (a zip of ``.npy`` files, no pickle) but from ``.npy`` files or
    arrays, streamed, with fixed timestamps so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, a in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            with zf.open(info, "w", force_zip64=True) as out:
                if isinstance(a, Path):
                    with open(a, "rb") as src:
                        shutil.copyfileobj(src, out, 1 << 22)
                else:
                    np.lib.format.write_array(out, np.ascontiguousarray(a), allow_pickle=False)


# -- worker processes ---------------------------------------------------------

_WORKER: dict = {}
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                "NUMEXPR_NUM_THREADS", "BLIS_NUM_THREADS")


def _init_worker(model: MorphableModel, config: DatasetConfig) -> None:
    try:  # the environment already says 1 thread (set before the process started); make sure
        from threadpoolctl import threadpool_limits

        _WORKER["limits"] = threadpool_limits(1)
    except ImportError:
        pass
    _WORKER["model"], _WORKER["config"] = model, config


def _work(task):
    split, k, seed, condition = task
    return split, k, build_subject(_WORKER["config"], seed, condition, _WORKER["model"])


class _single_thread_env:
    """Set the BLAS/OpenMP thread variables to 1 while worker processes start (they
    inherit them, and read them when numpy loads), then restore them."""

    def __enter__(self):
        self.saved = {v: os.environ.get(v) for v in _THREAD_VARS}
        os.environ.update({v: "1" for v in _THREAD_VARS})

    def __exit__(self, *exc):
        for v, old in self.saved.items():
            if old is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = old


def _read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((Path(folder) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def verify_dataset(folder) -> bool:
    """True when ``folder`` holds a finished build: a manifest whose SHA-256 of every
    file matches."""
    folder = Path(folder)
    man = _read_manifest(folder)
    if not man or "files" not in man:
        return False
    for name, info in man["files"].items():
        p = folder / name
        if not p.is_file() or p.stat().st_size != info.get("bytes") or _sha256(p) != info.get("sha256"):
            return False
    return True


def _summary(folder: Path, split: str) -> dict:
    """Per-condition means of the errors against the true surface (mm)."""
    from .metrics import mean_vertex_errors, per_condition

    with np.load(folder / f"{split}.npz", allow_pickle=False) as z:
        s0, sh, tr, cov, cond = z["s0"], z["s_hat"], z["true"], z["covered"], z["condition"]
        n_lm = np.isfinite(z["scan_landmarks"][:, :, 0]).sum(1)
        lm_err = z["fit_landmark_error"]
    e0 = np.linalg.norm(s0 - tr, axis=2)
    eh = np.linalg.norm(sh - tr, axis=2)
    a0, ah = mean_vertex_errors(s0, tr), mean_vertex_errors(sh, tr)
    covm = lambda e: np.array([e[i][cov[i]].mean() if cov[i].any() else np.nan for i in range(len(e))])  # noqa: E731
    per_face = dict(s0_mm=e0.mean(1), s_hat_mm=eh.mean(1), s0_aligned_mm=a0, s_hat_aligned_mm=ah,
                    s0_covered_mm=covm(e0), s_hat_covered_mm=covm(eh), covered_fraction=cov.mean(1),
                    scan_landmarks=n_lm, fit_landmark_error_px=lm_err)
    table = {k: per_condition(v, cond, CONDITIONS) for k, v in per_face.items()}
    out = {}
    for code, name in enumerate(CONDITIONS):
        if name in table["s0_mm"]:
            out[name] = dict(n=int((cond == code).sum()), **{k: table[k][name] for k in per_face})
    return out


def build_dataset(config="lite", root=None, workers: int | None = None, progress: bool = True,
                  force: bool = False, model: MorphableModel | None = None) -> Path:
    """Build the dataset of ``config`` (paper section IV-A, Fig. 2) and return its folder.

    Parameters
    ----------
    config : a :class:`DatasetConfig`, or ``"lite"`` / ``"paper"``.
    root : parent folder (default ``paths.cache_dir("datasets")``); the dataset goes
        to ``root / f"{config.name}-{config.key()}"``.
    workers : processes (default: the CPUs this process may use); each loads the
        model once and uses one BLAS thread. The arrays do not depend on it.
    progress : show a tqdm bar over the subjects.
    force : rebuild even when a finished build is there.
    model : the face model (default ``load_model()``).

    Notes
    -----
    The workers are *spawned* processes, which import the calling script again:
    a script that calls ``build_dataset`` needs the usual
    ``if __name__ == "__main__":`` guard (notebooks and the CLI need nothing).

    A finished build (manifest present, every file's SHA-256 matching, same face
    model) is returned at once; if the code that makes the records changed since
    (its hash is in the manifest) a warning says so, and ``force=True`` rebuilds. Otherwise the records are built in a temporary
    folder next to the final one, which is renamed into place only when complete:
    an interrupted build is never served.
    """
    config = _as_config(config)
    _n_workers(workers, 1)  # check the argument before anything else
    folder = dataset_dir(config, root)
    if model is None:
        from .model import load_model

        model = load_model()
    model_fp = _model_fingerprint(model)

    if not force and folder.is_dir() and verify_dataset(folder):
        man = _read_manifest(folder)
        if man.get("model_fingerprint") == model_fp:
            if man.get("code_fingerprint") != _code_fingerprint():
                warnings.warn(f"the code that makes the dataset changed since {folder.name} was built; "
                              f"serving the cached build (pass force=True, or --force, to rebuild)",
                              DualfaceWarning, stacklevel=2)
            return folder

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    t_start = time.perf_counter()
    try:
        _build_into(tmp, config, model, workers, progress)
        build_seconds = time.perf_counter() - t_start
        _write_manifest(tmp, config, model_fp, build_seconds, workers)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _n_workers(workers, n_tasks: int) -> int:
    if workers is None:
        try:
            workers = len(os.sched_getaffinity(0))
        except AttributeError:
            workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a positive integer (or None for all CPUs), got {workers!r}")
    return int(min(workers, n_tasks))


def _build_into(tmp: Path, config: DatasetConfig, model: MorphableModel, workers, progress: bool) -> None:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from tqdm.auto import tqdm

    specs = _field_specs(config, model)
    tasks = [(split, k, seed, cond) for split in SPLITS for k, (seed, cond) in enumerate(config.plan(split))]
    n = {"train": config.n_train, "test": config.n_test}
    nw = _n_workers(workers, len(tasks))
    # records go straight into .npy files on disk (memory stays small for the paper size)
    parts = {split: {name: np.lib.format.open_memmap(tmp / f".{split}.{name}.npy", mode="w+", dtype=dt,
                                                     shape=(n[split], *shape))
                     for name, (shape, dt) in specs.items()} for split in SPLITS}
    timings = {split: {name: np.zeros(n[split], np.float32) for name in _TIMING_FIELDS} for split in SPLITS}
    if config.keep_scans:
        (tmp / "scans").mkdir()

    # spawned workers: a fresh interpreter reads the 1-thread variables when numpy loads
    # (a script that calls build_dataset needs the `if __name__ == "__main__":` guard)
    ctx = mp.get_context("spawn")
    bar = tqdm(total=len(tasks), desc=f"dataset {config.name}", unit="subject", disable=not progress)
    try:
        with _single_thread_env(), ProcessPoolExecutor(nw, mp_context=ctx, initializer=_init_worker,
                                                       initargs=(model, config)) as ex:
            pending = {ex.submit(_work, t) for t in tasks}
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        split, k, rec = fut.result()
                        for name in specs:
                            parts[split][name][k] = rec[name]
                        for name in _TIMING_FIELDS:
                            timings[split][name][k] = rec[name]
                        if config.keep_scans:
                            _write_npz(tmp / "scans" / f"{split}_{k:05d}.npz",
                                       {"vertices": rec["scan_vertices"], "faces": rec["scan_faces"]})
                        bar.update(1)
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
    except BrokenProcessPool as e:
        raise RuntimeError("a dataset worker process died (out of memory? or a script that calls build_dataset "
                           "without the `if __name__ == \"__main__\":` guard)") from e
    finally:
        bar.close()

    for split in SPLITS:
        for a in parts[split].values():
            a.flush()
        files = {name: tmp / f".{split}.{name}.npy" for name in specs}
        del parts[split]
        _write_npz(tmp / f"{split}.npz", {**files, "condition_names": np.array(CONDITIONS)})
        for p in files.values():
            p.unlink()
    _write_npz(tmp / "timings.npz", {f"{split}_{name}": timings[split][name]
                                     for split in SPLITS for name in _TIMING_FIELDS})


def _versions() -> dict:
    import scipy
    import trimesh

    from . import __version__

    return dict(python=platform.python_version(), numpy=np.__version__, scipy=scipy.__version__,
                trimesh=trimesh.__version__, dualface_lite=__version__)


def _write_manifest(tmp: Path, config: DatasetConfig, model_fp: str, build_seconds: float, workers) -> None:
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    with np.load(tmp / "timings.npz", allow_pickle=False) as z:
        nicp_s = np.concatenate([z[f"{s}_nicp_seconds"] for s in SPLITS])
    man = dict(
        format=DATA_FORMAT_VERSION, name=config.name, key=config.key(), config=config.to_dict(),
        sizes={"train": config.n_train, "test": config.n_test},
        seeds={s: [config.plan(s)[0][0], config.plan(s)[-1][0]] for s in SPLITS},
        conditions=list(CONDITIONS),
        build_seconds=round(build_seconds, 2), workers=_n_workers(workers, config.n_train + config.n_test),
        nicp_seconds_mean=round(float(nicp_s.mean()), 4), created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        model_fingerprint=model_fp, code_fingerprint=_code_fingerprint(), versions=_versions(),
        summary={s: _summary(tmp, s) for s in SPLITS},
        files={p.relative_to(tmp).as_posix(): dict(bytes=p.stat().st_size, sha256=_sha256(p)) for p in files},
    )
    (tmp / "manifest.json").write_text(json.dumps(man, indent=2))


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------

@dataclass
class FaceData:
    """One split of a built dataset, as numpy arrays (record ``i`` is row ``i``).

    image (n, H, W, 3) uint8; landmarks (n, 68, 2) px; s0, colors, s_hat, true
    (n, N, 3) float32 (mm, object frame; colours in [0, 1]); visible, covered
    (n, N) bool; condition (n,) int8 codes into ``condition_names``; seed (n,);
    pose, fit_pose (n, 3) degrees; fit_alpha, fit_expr; fit_landmark_error (n,)
    px; scan_landmarks (n, L, 3) (NaN where dropped); nicp_seconds,
    fit_seconds (n,) wall times (NaN if the timings file is missing).
    """

    image: np.ndarray
    landmarks: np.ndarray
    s0: np.ndarray
    colors: np.ndarray
    visible: np.ndarray
    s_hat: np.ndarray
    true: np.ndarray
    covered: np.ndarray
    condition: np.ndarray
    seed: np.ndarray
    pose: np.ndarray
    fit_pose: np.ndarray
    fit_alpha: np.ndarray
    fit_expr: np.ndarray
    fit_landmark_error: np.ndarray
    scan_landmarks: np.ndarray
    nicp_seconds: np.ndarray
    fit_seconds: np.ndarray
    condition_names: tuple = CONDITIONS
    split: str = ""
    folder: Path | None = None
    index: np.ndarray | None = None  # row of each record in the split's files

    #: the per-record arrays (one row per subject), in the order of the fields
    ARRAYS = ("image", "landmarks", "s0", "colors", "visible", "s_hat", "true", "covered", "condition", "seed",
              "pose", "fit_pose", "fit_alpha", "fit_expr", "fit_landmark_error", "scan_landmarks",
              "nicp_seconds", "fit_seconds", "index")

    def __post_init__(self):
        if self.index is None:
            self.index = np.arange(len(self.s0))

    def __len__(self) -> int:
        return int(self.s0.shape[0])

    def __repr__(self) -> str:
        counts = ", ".join(f"{n}={int((self.condition == c).sum())}" for c, n in enumerate(self.condition_names))
        return f"FaceData({self.split or 'split'}: {len(self)} subjects, {counts})"

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
        return replace(self, **{k: getattr(self, k)[w] for k in self.ARRAYS})

    def by_condition(self, name: str) -> "FaceData":
        """The records of one condition (``"neutral"``, ``"expression"``, ``"illumination"``)."""
        if name not in self.condition_names:
            raise ValueError(f"condition must be one of {tuple(self.condition_names)}, got {name!r}")
        return self.subset(self.condition == self.condition_names.index(name))

    def conditions(self) -> np.ndarray:
        """(n,) the condition name of each record."""
        return np.asarray(self.condition_names)[self.condition]


def _resolve_folder(config_or_path, root=None) -> Path:
    hint = ("build it first: `python data_scripts/build_dataset.py --size lite` (or --size paper), "
            "or `dualface_lite.data.build_dataset(config)`")
    if isinstance(config_or_path, DatasetConfig) or (isinstance(config_or_path, str) and config_or_path in SIZES
                                                     and not Path(config_or_path).is_dir()):
        config = _as_config(config_or_path)
        folder = dataset_dir(config, root)
        if _read_manifest(folder) is None:
            raise DatasetNotBuiltError(f"the dataset {config.name!r} (key {config.key()}) is not built at {folder}: {hint}")
        return folder
    if isinstance(config_or_path, (str, os.PathLike)):
        folder = Path(config_or_path).expanduser()
        if folder.is_file() and folder.name == "manifest.json":
            folder = folder.parent
        if _read_manifest(folder) is None:
            raise DatasetNotBuiltError(f"{folder} holds no finished dataset (no manifest.json): {hint}")
        return folder
    raise ValueError(f"config_or_path must be a DatasetConfig, 'lite', 'paper' or a dataset folder, "
                     f"got {type(config_or_path).__name__}")


def load_split(config_or_path="lite", split: str = "train", root=None, verify: bool = False) -> FaceData:
    """Read one split of a built dataset into a :class:`FaceData` (plain numpy).

    config_or_path : a :class:`DatasetConfig`, ``"lite"`` / ``"paper"``, or a dataset folder.
    split : ``"train"`` or ``"test"``.
    root : where the datasets live, as given to :func:`build_dataset`.
    verify : check every file's SHA-256 against the manifest first.
    """
    _check_split(split)
    folder = _resolve_folder(config_or_path, root)
    if verify and not verify_dataset(folder):
        raise ValueError(f"{folder}: the files do not match their manifest checksums; rebuild with force=True")
    f = folder / f"{split}.npz"
    if not f.is_file():
        raise DatasetNotBuiltError(f"{f} is missing; rebuild the dataset with force=True")
    with np.load(f, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    n = len(arrays["s0"])
    names = tuple(str(x) for x in arrays.pop("condition_names"))
    times = {k: np.full(n, np.nan, np.float32) for k in _TIMING_FIELDS}
    if (folder / "timings.npz").is_file():
        with np.load(folder / "timings.npz", allow_pickle=False) as z:
            times = {k: z[f"{split}_{k}"] for k in _TIMING_FIELDS}
    known = {f.name for f in fields(FaceData)}
    return FaceData(**{k: v for k, v in arrays.items() if k in known}, **times, condition_names=names,
                    split=split, folder=folder)


def load_scan(data: FaceData, i: int, model: MorphableModel | None = None):
    """The range scan (``trimesh.Trimesh``, object frame, mm) of record ``i``: read from
    the dataset when it was built with ``keep_scans``, else regenerated exactly from
    the record's seed and condition (:func:`subject_for`)."""
    import trimesh

    k = int(data.index[i])
    folder = data.folder
    if folder is not None:
        p = Path(folder) / "scans" / f"{data.split}_{k:05d}.npz"
        if p.is_file():
            with np.load(p, allow_pickle=False) as z:
                return trimesh.Trimesh(z["vertices"], z["faces"], process=False)
    man = _read_manifest(folder) if folder is not None else None
    if man is None:
        raise ValueError("the record's dataset folder is unknown: cannot regenerate its scan")
    config = DatasetConfig.from_dict(man["config"])
    cond = data.condition_names[int(data.condition[i])]
    return subject_for(config, int(data.seed[i]), cond, model=model).scan


# -- torch --------------------------------------------------------------------

_DATASET_CLASS = None


def _face_dataset_class():
    global _DATASET_CLASS
    if _DATASET_CLASS is not None:
        return _DATASET_CLASS
    import torch
    from torch.utils.data import Dataset

    class FaceDataset(Dataset):
        """A ``torch.utils.data.Dataset`` over a :class:`FaceData` (or a config /
        folder and a split, read by :func:`load_split`).

        Each item is a dict of tensors: ``image`` (3, H, W) float32 in [0, 1],
        ``landmarks`` (68, 2), ``s0``, ``colors``, ``s_hat``, ``true`` (N, 3)
        float32, ``visible`` (N,) bool, ``condition`` int64 and ``index`` int64.
        """

        FLOAT_FIELDS = ("landmarks", "s0", "colors", "s_hat", "true")

        def __init__(self, data, split: str = "train", root=None):
            self.data = data if isinstance(data, FaceData) else load_split(data, split, root=root)

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, i):
            i = int(i)
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} out of range for {len(self)} records")
            d = self.data
            item = {"image": torch.from_numpy(np.ascontiguousarray(d.image[i].transpose(2, 0, 1))).float() / 255.0}
            for k in self.FLOAT_FIELDS:
                item[k] = torch.from_numpy(np.asarray(getattr(d, k)[i], dtype=np.float32).copy())
            item["visible"] = torch.from_numpy(d.visible[i].copy())
            item["condition"] = torch.tensor(int(d.condition[i]), dtype=torch.int64)
            item["index"] = torch.tensor(i, dtype=torch.int64)
            return item

    FaceDataset.__module__ = __name__
    _DATASET_CLASS = FaceDataset
    return FaceDataset


def __getattr__(name):  # FaceDataset is made on first use, so `import dualface_lite.data` needs no torch
    if name == "FaceDataset":
        return _face_dataset_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
