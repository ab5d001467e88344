"""The dataset's settings and its cache key (paper section IV-A; FRGC v2.0's layout).

FRGC v2.0, which the paper trains on, holds 4,007 captures of 466 people: each capture a photo
with a registered range image. The kit's datasets are organised the same way:

* a **split** (``train``, ``val``, ``test``) is a set of **people**: identity-disjoint, each
  person with a seed of their own (person ``k`` of a split has seed ``plan.seed + k``) and
  a condition (``CONDITIONS[k % 3]``: neutral, expression, illumination, balanced);
* each person has several **captures**: their own expression within the condition, their own
  range scan, their own ``S_0`` (from the capture's first photo) and dense ground truth
  ``S_hat`` (Fig. 2);
* each capture has one or more **photos**: pose, lighting, camera, background and landmark
  noise re-drawn, ``S_0`` and its colours refitted per photo, ``S_hat`` shared (the surface
  did not change).

:class:`DatasetConfig` holds every setting that decides the arrays; :meth:`DatasetConfig.key`
hashes them, so a changed setting is a new folder (:func:`dataset_dir`) and a finished one is
never served for other settings.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from .. import paths
from ..fitting import DEFAULT_FACE_SIZE, DEFAULT_LAM, DEFAULT_SIGMA_L, PROJECTIONS
from ..groundtruth import DEFAULT_LANDMARK_MAX_RESIDUAL, DEFAULT_REJECT_DISTANCE
from ..registration import DEFAULT_LANDMARK_WEIGHTS, DEFAULT_STIFFNESS
from ..synth import CONDITIONS, Population

__all__ = ["SplitPlan", "DatasetConfig", "dataset_dir", "as_config", "check_split", "SIZES", "SPLITS",
           "DATA_FORMAT_VERSION"]

#: Bump when the records change meaning or layout: every key changes, old folders are not served.
DATA_FORMAT_VERSION = 3   # 3: people / captures / photos, memory-mapped .npy tables
SIZES = ("lite", "paper")
SPLITS = ("train", "val", "test")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _int(v, name: str, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


@dataclass(frozen=True)
class SplitPlan:
    """The size of one split.

    Attributes
    ----------
    people : how many people (identity-disjoint from the other splits).
    captures : captures in all, shared out as evenly as the people allow (person ``k`` gets
        ``captures // people``, one more for the first ``captures % people``); at least one each.
    photos : photos per capture (the first is the one registered to the range scan).
    seed : person ``k`` has seed ``seed + k``.
    """

    people: int
    captures: int
    photos: int = 1
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "people", _int(self.people, "people", 0))
        object.__setattr__(self, "captures", _int(self.captures, "captures", 0))
        object.__setattr__(self, "photos", _int(self.photos, "photos", 1))
        object.__setattr__(self, "seed", _int(self.seed, "seed", 0))
        if self.captures < self.people or (self.people == 0) != (self.captures == 0):
            raise ValueError(f"captures must be at least one per person ({self.people} people), "
                             f"got {self.captures}")

    @property
    def n_photos(self) -> int:
        """Photos in the split."""
        return self.captures * self.photos

    def seeds(self) -> range:
        """The people's seeds."""
        return range(self.seed, self.seed + self.people)

    def captures_of(self, k: int) -> int:
        """How many captures person ``k`` has."""
        q, r = divmod(self.captures, self.people)
        return q + (1 if k < r else 0)


@dataclass(frozen=True)
class DatasetConfig:
    """Everything that decides the dataset's arrays (Fig. 2 of the paper), split by split.

    Attributes
    ----------
    name : a label for the folder (not part of the key).
    train, val, test : :class:`SplitPlan` of each split (people, captures, photos per capture,
        seed). ``train`` and ``test`` need at least 3 people (one per condition); ``val`` may
        be empty. The seeds are clear of those the kit tunes and benchmarks on
        (``tune_fitting.py`` 50000+, ``bench_fitting.py`` 100000+, the chapters' small seeds).
    image_size : photo size in px.
    max_yaw, landmark_noise, scan_spacing, scan_noise, scan_holes : passed to
        :func:`dualface_lite.synth.make_subject` (degrees, px, mm, mm, count).
    fit_lam, fit_sigma_l : ``lambda`` and ``sigma_L`` of eq. (4) for ``S_0`` (``fit_sigma_l=None``:
        estimated from each photo's landmarks, the fit's default).
    fit_projection, fit_face_size : the fit's camera (``"perspective"`` or ``"orthographic"``)
        and its prior face size (:func:`dualface_lite.fitting.fit_landmarks`).
    landmark_max_residual, nicp_stiffness, nicp_landmark_weight, nicp_rigid_init,
        nicp_reject_distance : the settings of the Fig. 2 step
        (:func:`dualface_lite.groundtruth.ground_truth`; :meth:`ground_truth_kwargs`).
    covered_distance : mm; a vertex is *covered* (the scan has data there) when
        its true position lies within this distance of the scan.
    keep_scans : also store each capture's range scan (``scans/<split>/<capture>.npz``);
        without it :func:`dualface_lite.data.subject_for` regenerates it exactly.
    population : the synthetic population (:class:`dualface_lite.synth.Population`).
    """

    name: str = "custom"
    train: SplitPlan = field(default_factory=lambda: SplitPlan(300, 360, 5, 200_000))
    val: SplitPlan = field(default_factory=lambda: SplitPlan(12, 24, 1, 250_000))
    test: SplitPlan = field(default_factory=lambda: SplitPlan(45, 90, 1, 300_000))
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
        for split in SPLITS:
            p = getattr(self, split)
            if isinstance(p, dict):
                p = SplitPlan(**p)
            if not isinstance(p, SplitPlan):
                raise ValueError(f"{split} must be a SplitPlan(people, captures, photos, seed), got {p!r}")
            if split != "val" and p.people < 3:
                raise ValueError(f"{split} needs at least 3 people (one per condition), got {p.people}")
            object.__setattr__(self, split, p)
        spans = [(s, getattr(self, s).seeds()) for s in SPLITS if getattr(self, s).people]
        for i, (a, ra) in enumerate(spans):
            for b, rb in spans[i + 1:]:
                if ra.start < rb.stop and rb.start < ra.stop:
                    raise ValueError(f"{a} seeds {ra.start}..{ra.stop - 1} and {b} seeds {rb.start}..{rb.stop - 1} "
                                     f"overlap: a person would be in both splits")
        if isinstance(self.image_size, bool) or int(self.image_size) < 32:
            raise ValueError(f"image_size must be at least 32 px, got {self.image_size}")
        object.__setattr__(self, "image_size", int(self.image_size))
        object.__setattr__(self, "scan_holes", int(self.scan_holes))
        st = tuple(float(x) for x in np.atleast_1d(self.nicp_stiffness))
        if not st or any(not (np.isfinite(x) and x > 0) for x in st):
            raise ValueError(f"nicp_stiffness must be a non-empty sequence of positive numbers, "
                             f"got {self.nicp_stiffness!r}")
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
        """What the book runs on a 2-core CPU: 300 training people with 360 captures (60 of them
        have two) x 5 photos (1,800 training photos), 12 validation people (24 captures), 45 test
        people (90 captures), one photo per validation and test capture; about 4 minutes on 2
        cores. (Far fewer captures per person than FRGC's 8.6, for more people: what a network must
        generalise over is people; ``benchmarks/README.md`` compares training sets of the same 1,800
        photos from fewer people.)"""
        return cls(**{"name": "lite", **overrides})

    @classmethod
    def paper(cls, **overrides) -> "DatasetConfig":
        """FRGC v2.0's scale: 466 people, 4,007 captures, one photo each: 2,800 captures to train and
        500 to test, the numbers of the paper's Fig. 3 experiment (the split of its Table III is not
        stated; this is the kit's reading), and the other 707 for validation."""
        return cls(**{"name": "paper", "train": SplitPlan(326, 2800, 1, 200_000),
                      "val": SplitPlan(82, 707, 1, 250_000), "test": SplitPlan(58, 500, 1, 300_000),
                      **overrides})

    @classmethod
    def preset(cls, size: str, **overrides) -> "DatasetConfig":
        """``DatasetConfig.preset("lite")`` or ``("paper")``."""
        if size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {size!r}")
        return getattr(cls, size)(**overrides)

    # -- identity -----------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON-able dict of every setting (splits and population as nested dicts)."""
        d = asdict(self)
        d["nicp_stiffness"] = list(self.nicp_stiffness)
        d["population"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in d["population"].items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DatasetConfig":
        """The inverse of :meth:`to_dict`."""
        d = dict(d)
        pop = d.pop("population", None)
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown DatasetConfig settings {sorted(unknown)}")
        if pop is not None:
            d["population"] = Population(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in pop.items()})
        for split in SPLITS:
            if isinstance(d.get(split), dict):
                d[split] = SplitPlan(**d[split])
        return cls(**d)

    def key(self) -> str:
        """12 hex digits: a hash of every setting but ``name``, and of :data:`DATA_FORMAT_VERSION`.
        The population's appearance settings (:attr:`Population.APPEARANCE`) at 0 are left out of the
        hash: a dataset without them has the key it would have without the settings."""
        d = self.to_dict()
        d.pop("name")
        for name in Population.APPEARANCE:
            if not d["population"][name]:
                d["population"].pop(name)
        blob = json.dumps({"format": DATA_FORMAT_VERSION, "config": d}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    # -- what to make ---------------------------------------------------------
    def plan(self, split: str) -> SplitPlan:
        """The :class:`SplitPlan` of a split."""
        return getattr(self, check_split(split))

    def people(self, split: str) -> list[tuple[int, str]]:
        """``[(seed, condition), ...]`` of a split's people, in the order of its records."""
        p = self.plan(split)
        return [(p.seed + k, CONDITIONS[k % len(CONDITIONS)]) for k in range(p.people)]

    def captures(self, split: str) -> list[tuple[int, int]]:
        """``[(person row, capture index), ...]`` of a split, in the order of its records."""
        p = self.plan(split)
        return [(k, c) for k in range(p.people) for c in range(p.captures_of(k))]

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

    def summary(self) -> str:
        """One line per split: people, captures, photos."""
        return "\n".join(f"{s:5s}: {p.people} people, {p.captures} captures, {p.n_photos} photos"
                         for s in SPLITS for p in [self.plan(s)])


def check_split(split) -> str:
    """``split`` if it is one of :data:`SPLITS`, else a ValueError."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def as_config(config) -> DatasetConfig:
    """A :class:`DatasetConfig`, or the preset named ``"lite"`` / ``"paper"``."""
    if isinstance(config, DatasetConfig):
        return config
    if isinstance(config, str) and config in SIZES:
        return DatasetConfig.preset(config)
    raise ValueError(f"config must be a DatasetConfig or one of {SIZES}, got {config!r}")


def dataset_dir(config, root=None) -> Path:
    """The folder of a config's dataset: ``root / f"{name}-{key}"`` (default root:
    ``paths.cache_dir("datasets")``). Not created here."""
    config = as_config(config)
    return paths.result_dir("datasets", f"{config.name}-{config.key()}", root)
