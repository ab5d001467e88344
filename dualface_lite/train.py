"""Training the appearance-to-structure network ``T_L`` of eq. (3), on one CPU, one GPU or many.

Eq. (3) reconstructs a face as ``S = S_bar + T_L(I)``: a regulariser's output ``S_bar`` plus a residual
read from the photo ``I``. What ``S_bar`` is names the variant (Table III):

=============  =====================================================  ==========================
variant        ``S_bar``                                              the paper's error (FRGC)
=============  =====================================================  ==========================
``ResNet``     the model's mean face (no geometric constraint)        5.97 mm
``ResNetGC``   ``S_0``, the landmark fit of chapter 2                 4.14 mm
``Ours``       the MRF prior's output from ``S_0`` (chapter 4)        4.01 mm
=============  =====================================================  ==========================

The network learns the residual ``DeltaS = S_hat - S_bar`` with the squared error of the paper's
training loss (section III-A, after eq. (3)). Two choices of the kit, both said in the chapter:

* **Pose does not count.** The target is ``align(S_hat -> S_bar) - S_bar``: ``S_hat`` rigidly aligned
  onto ``S_bar`` first (the errors of the book are measured after the same alignment), so the network
  spends nothing on a rotation that the evaluation removes.
* **Normalised outputs.** The residuals are centred per vertex by their training mean and divided by
  one scale (their root mean square); the network's last layer starts near zero, so an untrained
  network already predicts ``S_bar`` + the mean training residual, the "bias alone" baseline, and the
  loss stays proportional to the squared error in mm.

:func:`train` runs the training described by a :class:`TrainConfig` and caches the result by the
config, the dataset and the code (``paths.cache_dir("networks")``): seeded, a tqdm bar, a validation
split with early stopping, a warm-up + cosine learning rate, AdamW, checkpoints written atomically
after every epoch and loaded with ``weights_only=True`` (a killed training resumes where it stopped,
with the same result), channels-last weights (:class:`~dualface_lite.resnet.AppearanceNet`), and
CUDA with bf16 autocast when there is a GPU.

Started by ``torchrun --nproc_per_node=K``, the same call trains with DistributedDataParallel (NCCL
on GPUs, gloo on CPUs) and a ``DistributedSampler``: the global batch ``batch_size`` is shared out
between the K processes, each of which may further split its part into ``accumulate`` micro-batches.
One process with ``accumulate=K`` visits the same micro-batches as K processes (the sampler's order
does not depend on K), so both reach the same weights, up to the order of floating-point sums.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from . import __version__, metrics, paths
from .data.config import DatasetConfig, as_config as as_dataset_config, dataset_dir
from .data.store import FaceData, load_split
from .data.torchdata import FaceDataset, crop_batch
from .metrics import residual_targets
from .resnet import BACKBONES, AppearanceNet

__all__ = ["VARIANTS", "TARGETS", "LOSSES", "TrainConfig", "TrainedNetwork", "train", "load_network", "network_dir",
           "base_shapes", "residual_targets", "shuffled_photos", "code_fingerprint", "fewer_people", "ours_prior",
           "prior_dir"]

#: the variants of eq. (3), by what ``S_bar`` is
VARIANTS = {"ResNet": "the mean face", "ResNetGC": "S0 (landmark fit)", "Ours": "the MRF prior's output"}
#: what the residual is learnt towards: the NICP ground truth (as the paper) or the true surface
TARGETS = ("s_hat", "true")
#: the training losses: the paper's squared error, or the mean distance per vertex
LOSSES = ("mse", "vertex")
#: the source files whose code trains a network (a change makes cached networks stale)
_CODE_FILES = ("resnet.py", "train.py", "mrf.py", "data/torchdata.py", "camera.py", "metrics.py")
TRAIN_FORMAT_VERSION = 1


def code_fingerprint() -> str:
    """16 hex digits of the code (not the docs) that trains a network: part of its cache key."""
    return paths.source_fingerprint(_CODE_FILES)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a trained network (its cache key hashes all of it but ``name``).

    Parameters
    ----------
    name : a label for the folder (``lite``, ``paper``, ...).
    variant : one of :data:`VARIANTS`.
    dataset : a :class:`~dualface_lite.data.DatasetConfig` or a preset name (``"lite"``, ``"paper"``).
    target : what ``S_hat`` is: ``"s_hat"`` (the NICP ground truth, as the paper) or ``"true"``.
    backbone, input_size, pretrained : the network (:class:`~dualface_lite.resnet.AppearanceNet`).
    batch_size : the global batch (photos per optimiser step, over all processes).
    accumulate : micro-batches per process and step (gradient accumulation).
    epochs : the most epochs; ``patience`` epochs without a better validation error stop earlier.
    lr, weight_decay, warmup : AdamW's peak learning rate and weight decay; the learning rate rises
        linearly over the first ``warmup`` of the steps, then falls as a cosine to zero.
    loss : ``"mse"``, the paper's squared error, or ``"vertex"``, the mean distance per vertex (the
        error the book measures; less pulled by a few large residuals).
    augment : jitter the crops and their brightness (:class:`~dualface_lite.data.FaceDataset`).
    photometric : with ``augment``, also vary each crop's colour balance, grey, blur and noise
        (:func:`dualface_lite.data.torchdata.camera_look`): training photos that look less like clean renders.
    max_photos : use only the first ``max_photos`` training photos (0: all); for tiny tests.
    mrf_k, mrf_hidden : the MRF prior of ``Ours`` (chapter 4), trained on the first photo of each
        training capture towards ``target``. Its outputs on those photos are in-sample, so the residuals
        ``T_L`` learns on top of them are a little smaller than those it meets on new people.
    workers : DataLoader worker processes per training process.
    seed : the network's initial weights, the order of the photos, the augmentation.
    """

    name: str = "lite"
    variant: str = "ResNetGC"
    dataset: DatasetConfig | str = "lite"
    target: str = "s_hat"
    backbone: str = "resnet18"
    input_size: int = 64
    pretrained: bool = False
    batch_size: int = 32
    accumulate: int = 1
    epochs: int = 4
    patience: int = 3
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: float = 0.05
    loss: str = "mse"
    augment: bool = True
    photometric: bool = False
    max_photos: int = 0
    mrf_k: int = 10
    mrf_hidden: int = 50
    workers: int = 0
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "dataset", as_dataset_config(self.dataset))
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {tuple(VARIANTS)}, got {self.variant!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        for nm, lo in (("input_size", 32), ("batch_size", 1), ("accumulate", 1), ("epochs", 1), ("patience", 1),
                       ("max_photos", 0), ("mrf_k", 1), ("mrf_hidden", 1), ("workers", 0)):
            v = getattr(self, nm)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{nm} must be an integer >= {lo}, got {v!r}")
        for nm in ("lr", "weight_decay", "warmup"):
            v = getattr(self, nm)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{nm} must be a number >= 0, got {v!r}")
        if not self.lr > 0 or not self.warmup < 1:
            raise ValueError(f"lr must be > 0 and warmup < 1, got lr={self.lr!r}, warmup={self.warmup!r}")

    @classmethod
    def lite(cls, **overrides) -> "TrainConfig":
        """The book's CPU configuration: ResNet-18 at 64 px on the ``lite`` dataset's 1,800 training
        photos, 4 epochs (about two and a half minutes per network on 2 cores)."""
        return cls(**{"name": "lite", **overrides})

    @classmethod
    def paper(cls, **overrides) -> "TrainConfig":
        """The paper's configuration: ResNet-50 at 224 px (Table I) on the ``paper`` dataset (2,800
        training photos), for a GPU; batch 64, at most 60 epochs."""
        return cls(**{"name": "paper", "dataset": "paper", "backbone": "resnet50", "input_size": 224,
                      "batch_size": 64, "epochs": 60, "patience": 8, "lr": 1e-3, "workers": 4, **overrides})

    @classmethod
    def preset(cls, size: str, **overrides) -> "TrainConfig":
        if size not in ("lite", "paper"):
            raise ValueError(f"size must be 'lite' or 'paper', got {size!r}")
        return getattr(cls, size)(**overrides)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["dataset"] = self.dataset.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        if isinstance(d.get("dataset"), dict):
            d["dataset"] = DatasetConfig.from_dict(d["dataset"])
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown training settings: {sorted(unknown)}")
        return cls(**d)

    def key(self) -> str:
        """12 hex digits: every setting but ``name`` and ``workers`` (which do not change the
        result), the dataset's key, the code's fingerprint and :data:`TRAIN_FORMAT_VERSION`."""
        d = self.to_dict()
        for nm in ("name", "workers", "dataset"):
            d.pop(nm)
        if not self.photometric:     # the keys of networks trained before the setting existed
            d.pop("photometric")
        if self.variant != "Ours":
            d.pop("mrf_k"), d.pop("mrf_hidden")
        return _digest(config=d, dataset=self.dataset.key())


def fewer_people(config, people: int, *, data_root=None) -> TrainConfig:
    """``config`` restricted to the first ``people`` people of its training split, with the same number
    of optimiser steps and the same early-stopping window counted in steps: ``max_photos`` becomes their
    photos, ``epochs`` and ``patience`` grow by (steps per epoch on all photos) / (steps on theirs).
    Only the amount of training data changes, not how long the network trains. The name gains
    ``-<people>p``; the whole split gives ``config`` back unchanged. The dataset must be built.
    """
    config = _as_config(config)
    rows = np.asarray(load_split(config.dataset, "train", root=data_root).person_row)
    n_people = len(np.unique(rows))
    if isinstance(people, bool) or not isinstance(people, (int, np.integer)) or not 1 <= people <= n_people:
        raise ValueError(f"people must be an integer in 1..{n_people} (the training people), got {people!r}")
    if np.any(np.diff(rows) < 0):
        raise ValueError("the training split's photos are not ordered by person")
    if people == n_people:
        return config
    photos = int(np.searchsorted(rows, people))
    if photos < config.batch_size:
        raise ValueError(f"{people} people have {photos} photos: fewer than one batch of {config.batch_size}")
    factor = (len(rows) // config.batch_size) / (photos // config.batch_size)
    return replace(config, name=f"{config.name}-{people}p", max_photos=photos,
                   epochs=max(1, round(config.epochs * factor)), patience=max(1, round(config.patience * factor)))


def _as_config(config) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, str):
        return TrainConfig.preset(config)
    if isinstance(config, dict):
        return TrainConfig.from_dict(config)
    raise ValueError(f"config must be a TrainConfig, a dict or 'lite' / 'paper', got {config!r}")


def network_dir(config, root=None) -> Path:
    """The folder of a trained network: ``root / f"{name}-{variant}-{key}"`` (default root:
    ``paths.cache_dir("networks")``). Not created here."""
    config = _as_config(config)
    return paths.result_dir("networks", f"{config.name}-{config.variant}-{config.key()}", root)


def prior_dir(config, root=None) -> Path:
    """The folder of the MRF prior of ``Ours`` for ``config``: ``root / f"{name}-prior-{key}"``, the key
    hashing what decides the prior (the dataset's key, ``max_photos``, ``target``, ``mrf_k``,
    ``mrf_hidden``, ``seed`` and the code's fingerprint), so every variant of a config names the same
    prior. Not created here."""
    config = _as_config(config)
    key = _digest(dataset=config.dataset.key(),
                  **{k: getattr(config, k) for k in ("max_photos", "target", "mrf_k", "mrf_hidden", "seed")})
    return paths.result_dir("networks", f"{config.name}-prior-{key}", root)


def _digest(**parts) -> str:
    """12 hex digits of ``parts`` with :data:`TRAIN_FORMAT_VERSION` and the code's fingerprint: a cache key."""
    blob = json.dumps({"format": TRAIN_FORMAT_VERSION, "code": code_fingerprint(), **parts}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _publish(folder: Path, save) -> None:
    """Write a cached result as a whole: ``save(tmp)`` fills a sibling folder, which then replaces ``folder``."""
    tmp = folder.parent / f".{folder.name}.new"
    shutil.rmtree(tmp, ignore_errors=True)
    save(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def ours_prior(config="lite", root=None, *, data_root=None, progress: bool = True):
    """The MRF prior of ``Ours`` (chapter 4) for ``config``, fitted once and then read from the cache.

    ``MRFPrior(k=mrf_k, hidden=mrf_hidden, seed=seed).fit(S0, colours, target)`` on the first photo of
    each training capture (of the first ``max_photos`` photos when that is set), written to
    :func:`prior_dir` ``/ "prior.pt"``. :func:`train` of ``Ours`` starts from this prior, so chapter 4's
    prior and chapter 6's dual network share one training. ``root`` and ``data_root`` as in
    :func:`train`; the dataset must be built.
    """
    from .mrf import MRFPrior

    config = _as_config(config)
    folder = prior_dir(config, root)
    path = folder / "prior.pt"
    if path.is_file():
        return MRFPrior.load(path)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with paths.FileLock(folder.parent / f".{folder.name}.lock", "another fit of this prior" if progress else None):
        if path.is_file():   # fitted by the process we waited for
            return MRFPrior.load(path)
        first = _training_photos(config, data_root).first_photos()
        prior = MRFPrior(k=config.mrf_k, hidden=config.mrf_hidden, seed=config.seed, progress=progress)
        prior.fit(first.s0, first.colors, getattr(first, config.target))
        _publish(folder, lambda tmp: prior.save(tmp / "prior.pt"))
    return prior


def _training_photos(config: TrainConfig, data_root):
    train_data = load_split(config.dataset, "train", root=data_root)
    if config.max_photos:
        train_data = train_data.subset(np.arange(min(config.max_photos, len(train_data))))
    return train_data


# ---------------------------------------------------------------------------
# what the network learns
# ---------------------------------------------------------------------------

def base_shapes(variant: str, s0, colors=None, *, mean_face=None, prior=None) -> np.ndarray:
    """``S_bar`` of eq. (3) for M faces, (M, N, 3) float32.

    Parameters
    ----------
    variant : one of :data:`VARIANTS`.
    s0 : (M, N, 3) the landmark fits (their number and size are used by every variant).
    colors : (M, N, 3) their colours (``Ours`` only).
    mean_face : (N, 3) the model's mean (``ResNet`` only).
    prior : a fitted :class:`~dualface_lite.mrf.MRFPrior` (``Ours`` only).
    """
    s0 = np.asarray(s0, dtype=np.float32)
    if s0.ndim != 3 or s0.shape[2] != 3:
        raise ValueError(f"s0 must have shape (M, N, 3), got {s0.shape}")
    if variant == "ResNetGC":
        return s0
    if variant == "ResNet":
        if mean_face is None:
            raise ValueError("the ResNet variant needs mean_face (the model's mean shape)")
        mean_face = np.asarray(mean_face, dtype=np.float32)
        if mean_face.shape != s0.shape[1:]:
            raise ValueError(f"mean_face must have shape {s0.shape[1:]}, got {mean_face.shape}")
        return np.broadcast_to(mean_face, s0.shape).copy()
    if variant == "Ours":
        if prior is None or colors is None:
            raise ValueError("the Ours variant needs a fitted MRF prior and the colours of S0")
        return prior.predict(s0, colors).astype(np.float32)
    raise ValueError(f"variant must be one of {tuple(VARIANTS)}, got {variant!r}")


def shuffled_photos(persons, seed: int = 0) -> np.ndarray:
    """A permutation of M photos in which no photo stays with its person: the control that feeds the
    network another person's photo. ``persons`` (M,) person ids (at least two different people)."""
    persons = np.asarray(persons)
    if len(np.unique(persons)) < 2:
        raise ValueError("shuffling photos between people needs at least two people")
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        perm = rng.permutation(len(persons))
        bad = np.flatnonzero(persons[perm] == persons)
        for i in bad:   # swap each photo that stayed with its person with one that goes elsewhere
            for j in rng.permutation(len(persons)):
                if persons[perm[j]] != persons[i] and persons[perm[i]] != persons[j]:
                    perm[i], perm[j] = perm[j], perm[i]
                    break
        if not np.any(persons[perm] == persons):
            return perm
    raise ValueError("could not shuffle the photos between people (one person holds most of them)")


class _Residuals(torch.utils.data.Dataset):
    """A :class:`FaceDataset` with each item's residual target, by record."""

    def __init__(self, faces: FaceDataset, residuals: np.ndarray):
        self.faces, self.residuals = faces, residuals

    def __len__(self):
        return len(self.faces)

    def __getitem__(self, i):
        item = self.faces[i]
        return item["image"], torch.from_numpy(self.residuals[int(i)]), torch.tensor(int(i))

    def set_epoch(self, epoch: int):
        self.faces.set_epoch(epoch)


# ---------------------------------------------------------------------------
# the trained network
# ---------------------------------------------------------------------------

@dataclass
class TrainedNetwork:
    """A trained ``T_L`` with what it needs to be used: its config, the MRF prior of ``Ours``, the
    model's mean face of ``ResNet``, the training history and the folder it lives in."""

    config: TrainConfig
    net: AppearanceNet
    mean_face: np.ndarray
    prior: object = None
    history: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    folder: Path | None = None

    def __post_init__(self):
        self.net.eval()

    @property
    def variant(self) -> str:
        return self.config.variant

    def base(self, s0, colors=None) -> np.ndarray:
        """``S_bar`` for faces (M, N, 3) (:func:`base_shapes` with this network's variant)."""
        return base_shapes(self.variant, s0, colors, mean_face=self.mean_face, prior=self.prior)

    def crops(self, images, landmarks) -> torch.Tensor:
        """The network's input: the face crop (the same rule and tensor as training,
        :func:`dualface_lite.data.torchdata.crop_batch`) of M photos (M, H, W, 3) uint8 with their
        landmarks (M, 68, 2): (M, 3, S, S) float32 in [0, 1]."""
        return crop_batch(images, landmarks, self.config.input_size)

    def residuals(self, crops, batch_size: int = 64) -> np.ndarray:
        """``T_L(I)``: (M, N, 3) mm from crops (M, 3, S, S) in [0, 1] (see :meth:`crops`)."""
        return self.net.infer(crops, batch_size).numpy()

    def predict(self, data: FaceData, photos=None, batch_size: int = 64) -> np.ndarray:
        """Eq. (3) for the records of ``data``: ``S_bar + T_L(I)``, (M, N, 3). ``photos`` (M,)
        optionally takes each face's photo from another record of ``data`` (the shuffled control)."""
        base = self.base(data.s0, data.colors if self.variant == "Ours" else None)
        which = np.arange(len(data)) if photos is None else np.asarray(photos)
        crops = self.crops(data.read("image", which), data.read("landmarks", which))
        return base + self.residuals(crops, batch_size)

    def save(self, folder) -> Path:
        """Write ``network.pt`` (the state dict), ``prior.pt`` (``Ours``) and ``manifest.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in self.net.state_dict().items()}, buf)
        paths.write_atomic(folder / "network.pt", buf.getvalue())
        if self.prior is not None:
            self.prior.save(folder / "prior.pt")
        man = dict(self.manifest, config=self.config.to_dict(), history=self.history)
        paths.write_atomic(folder / "manifest.json", json.dumps(man, indent=1).encode())
        self.folder = folder
        return folder


def load_network(folder, device: str = "cpu", model=None) -> TrainedNetwork:
    """Load a network saved by :func:`train` (weights with ``weights_only=True``)."""
    from .model import load_model
    from .mrf import MRFPrior

    folder = Path(folder)
    if not (folder / "manifest.json").is_file() or not (folder / "network.pt").is_file():
        raise FileNotFoundError(f"no trained network in {folder} (manifest.json and network.pt expected)")
    man = json.loads((folder / "manifest.json").read_text())
    config = TrainConfig.from_dict(man["config"])
    state = torch.load(folder / "network.pt", map_location="cpu", weights_only=True)
    model = model or load_model()
    n = int(state["offset_mean"].shape[0])
    if n != model.n_vertices:
        raise ValueError(f"the network in {folder} was trained for a model with {n} vertices, not "
                         f"{model.n_vertices}")
    net = AppearanceNet(config.backbone, config.input_size, n_vertices=n)
    net.load_state_dict(state)
    prior = MRFPrior.load(folder / "prior.pt") if config.variant == "Ours" else None
    return TrainedNetwork(config, net.to(device), model.mean.astype(np.float32), prior,
                          man.get("history", {}), man, folder)


# ---------------------------------------------------------------------------
# processes and devices
# ---------------------------------------------------------------------------

@dataclass
class _Processes:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    started_here: bool = False

    @classmethod
    def from_env(cls, device: torch.device) -> "_Processes":
        import torch.distributed as dist

        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        started = False
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            started = True
        return cls(rank, world, local, started)

    def sync_buffers(self, net) -> None:
        """Every process takes the batch-norm statistics of process 0."""
        if self.world > 1:
            import torch.distributed as dist

            for b in net.buffers():
                dist.broadcast(b.data, 0)

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.started_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def _device(device) -> torch.device:
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


# ---------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------

def _lr_factor(step: int, total: int, warmup: float) -> float:
    """Linear warm-up over ``warmup`` of the steps, then a cosine down to 0."""
    w = max(1, int(round(warmup * total)))
    if step < w:
        return (step + 1) / w
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - w) / max(1, total - w))))


def _loss(out: torch.Tensor, target: torch.Tensor, scale: float, kind: str) -> torch.Tensor:
    """The training loss in units of the residuals' scale: the mean squared error (the paper's) or the
    mean Euclidean distance per vertex (smoothed at 0)."""
    d = (out - target) / scale
    if kind == "mse":
        return d.pow(2).mean()
    return (d.pow(2).sum(-1) + 1e-6).sqrt().mean()


def _validation_error(net: AppearanceNet, crops, base, target, batch: int) -> float:
    """Mean vertex error (mm, after rigid alignment) of ``base + net(crops)`` against ``target``."""
    return float(metrics.mean_vertex_errors(base + net.infer(crops, batch).numpy(), target).mean())


def _prepare(config: TrainConfig, root, data_root, model, progress: bool):
    """Training and validation records, the training residuals, the validation ``S_bar``, the MRF
    prior (``Ours``, :func:`ours_prior`) and the mean face."""
    train_data = _training_photos(config, data_root)
    val_data = load_split(config.dataset, "val", root=data_root)
    if len(val_data) == 0:
        raise ValueError("training needs a validation split (the dataset's val plan has no people)")
    prior = ours_prior(config, root, data_root=data_root, progress=progress) if config.variant == "Ours" else None
    mean_face = model.mean.astype(np.float32)

    def base_and_residuals(d):
        base = base_shapes(config.variant, d.s0, d.colors if prior is not None else None,
                           mean_face=mean_face, prior=prior)
        return base, residual_targets(base, getattr(d, config.target))

    _, train_res = base_and_residuals(train_data)
    val_base, _ = base_and_residuals(val_data)
    return train_data, val_data, train_res, val_base, prior, mean_face


def train(config="lite", root=None, *, data_root=None, progress: bool = True, force: bool = False,
          device=None, model=None) -> TrainedNetwork:
    """Train ``T_L`` as ``config`` says, or load it from the cache when it was trained before.

    Parameters
    ----------
    config : a :class:`TrainConfig`, its dict, or ``"lite"`` / ``"paper"``.
    root : the cache folder of networks (default ``paths.cache_dir("networks")``).
    data_root : the datasets' folder (default ``paths.cache_dir("datasets")``); the dataset must
        be built (:func:`dualface_lite.data.build_dataset`).
    progress : a tqdm bar of the steps, with the validation error of each epoch.
    force : train again even when the cache holds this network.
    device : ``"cpu"``, ``"cuda"``, ...; default CUDA when there is a GPU.
    model : the face model (default :func:`dualface_lite.load_model`).

    Returns
    -------
    The :class:`TrainedNetwork` (on the CPU, evaluation mode), also under :func:`network_dir`.
    Under ``torchrun`` every process returns it; process 0 writes the files.
    """
    from .model import load_model

    config = _as_config(config)
    dev = _device(device)
    procs = _Processes.from_env(dev)
    if procs.world > 1 and dev.type == "cuda":
        torch.cuda.set_device(dev)
    folder = network_dir(config, root)
    try:
        if not force and (folder / "manifest.json").is_file():
            return load_network(folder, model=model)
        model = model or load_model()
        if procs.rank != 0:   # the other processes train in step with process 0, which holds the lock
            result = _train_locked(config, folder, data_root, False, dev, procs, model)
        else:
            folder.parent.mkdir(parents=True, exist_ok=True)
            with paths.FileLock(folder.parent / f".{folder.name}.lock",
                                "another training of this network" if progress else None):
                if procs.world == 1 and not force and (folder / "manifest.json").is_file():
                    return load_network(folder, model=model)   # trained by the process we waited for
                result = _train_locked(config, folder, data_root, progress, dev, procs, model)
        procs.barrier()   # process 0 has written the folder
        return result
    finally:
        procs.close()


def _train_locked(config: TrainConfig, folder: Path, data_root, progress: bool, dev: torch.device,
                  procs: _Processes, model) -> TrainedNetwork:
    from torch.nn.parallel import DistributedDataParallel
    from tqdm.auto import tqdm

    per_process, rest = divmod(config.batch_size, procs.world * config.accumulate)
    if rest or per_process < 1:
        raise ValueError(f"batch_size {config.batch_size} must be a multiple of processes x accumulate "
                         f"= {procs.world} x {config.accumulate}")
    work = folder.parent / f".{folder.name}.train"
    if procs.rank == 0:
        work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    train_data, val_data, train_res, val_base, prior, mean_face = _prepare(
        config, folder.parent, data_root, model, progress and procs.rank == 0)
    # the network starts at S_bar + the mean training residual (normalised outputs, see the module)
    net = AppearanceNet(config.backbone, config.input_size, n_vertices=train_res.shape[1],
                        pretrained=config.pretrained, seed=config.seed)
    net.set_output_scaling(train_res.mean(0), float(np.sqrt(((train_res - train_res.mean(0)) ** 2).mean())))
    net = net.to(dev)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    faces = FaceDataset(train_data, crop_size=config.input_size, augment=config.augment, seed=config.seed,
                        photometric=config.photometric)
    dataset = _Residuals(faces, train_res)
    sampler = DistributedSampler(dataset, num_replicas=procs.world, rank=procs.rank, shuffle=True,
                                 seed=config.seed, drop_last=True)
    per_rank = config.batch_size // procs.world
    # worker processes start anew each epoch: each holds a copy of the dataset made when it starts, so a
    # persistent one would never see dataset.set_epoch and would repeat the first epoch's augmentation
    loader = DataLoader(dataset, batch_size=per_rank, sampler=sampler, drop_last=True,
                        num_workers=config.workers, pin_memory=cuda)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f"{len(dataset)} training photos make no batch of {config.batch_size}")
    total = steps_per_epoch * config.epochs
    ddp = DistributedDataParallel(net, device_ids=[dev.index] if cuda else None) if procs.world > 1 else net
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, total, config.warmup))
    val_faces = FaceDataset(val_data, crop_size=config.input_size)
    val_crops = torch.stack([val_faces[i]["image"] for i in range(len(val_faces))])
    val_target = getattr(val_data, config.target)
    scale = float(net.offset_scale)

    state = {"epoch": 0, "best_val_mm": math.inf, "best_epoch": -1, "bad_epochs": 0,
             "history": {"train_loss": [], "val_mm": [], "lr": [], "epoch_seconds": []}, "best": None}
    ckpt = work / "checkpoint.pt"
    resumed = False
    if ckpt.is_file():
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        if saved.get("key") == config.key() and saved.get("world") == procs.world:
            net.load_state_dict(saved["net"])
            opt.load_state_dict(saved["opt"])
            sched.load_state_dict(saved["sched"])
            state = saved["state"]
            resumed = True
        elif progress:
            why = (f"{saved.get('world')} process(es), now {procs.world}" if saved.get("key") == config.key()
                   else "other settings or code")
            print(f"starting again: the checkpoint in {work} was made by {why}", file=sys.stderr)
    bar = tqdm(total=total, initial=state["epoch"] * steps_per_epoch, disable=not progress, unit="step",
               desc=f"training {config.variant} ({config.backbone}, {config.input_size} px)")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    net.train()
    while state["epoch"] < config.epochs and state["bad_epochs"] < config.patience:
        epoch = state["epoch"]
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        t0, losses = time.perf_counter(), []
        for images, residuals, _ in loader:
            opt.zero_grad(set_to_none=True)
            step_loss = 0.0
            for m in range(config.accumulate):   # micro-batch m: every accumulate-th photo of the batch
                x = images[m::config.accumulate].to(dev, non_blocking=True)
                y = residuals[m::config.accumulate].to(dev, non_blocking=True)
                # DDP averages the gradients between processes once, at the last micro-batch
                last = m == config.accumulate - 1
                with (contextlib.nullcontext() if last or ddp is net else ddp.no_sync()):
                    with autocast:
                        out = ddp(x)
                    loss = _loss(out.float(), y, scale, config.loss) / config.accumulate
                    loss.backward()
                step_loss += loss.detach().item()
            opt.step()
            sched.step()
            losses.append(step_loss)
            bar.update(1)
        procs.sync_buffers(net)
        val_mm = _validation_error(net, val_crops, val_base, val_target, 64)
        h = state["history"]
        h["train_loss"].append(float(np.mean(losses)))
        h["val_mm"].append(val_mm)
        h["lr"].append(float(sched.get_last_lr()[0]))
        h["epoch_seconds"].append(time.perf_counter() - t0)
        if val_mm < state["best_val_mm"]:
            state.update(best_val_mm=val_mm, best_epoch=epoch, bad_epochs=0,
                         best={k: v.detach().cpu().clone() for k, v in net.state_dict().items()})
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        bar.set_postfix(val_mm=f"{val_mm:.3f}", best=f"{state['best_val_mm']:.3f}")
        if procs.rank == 0:
            buf = io.BytesIO()
            torch.save({"key": config.key(), "world": procs.world, "net": net.state_dict(),
                        "opt": opt.state_dict(), "sched": sched.state_dict(), "state": state}, buf)
            paths.write_atomic(ckpt, buf.getvalue())
    bar.close()
    net.load_state_dict(state["best"])
    net = net.to("cpu").eval()
    history = dict(state["history"], best_epoch=state["best_epoch"], best_val_mm=state["best_val_mm"],
                   stopped_early=state["epoch"] < config.epochs, resumed=resumed,
                   steps_per_epoch=steps_per_epoch)
    manifest = {"key": config.key(), "dataset": dataset_dir(config.dataset, data_root).name,
                "code_fingerprint": code_fingerprint(), "version": __version__, "torch": torch.__version__,
                "device": str(dev), "processes": procs.world, "train_photos": len(train_data),
                "val_photos": len(val_data), "seconds": time.perf_counter() - t_start}
    result = TrainedNetwork(config, net, mean_face, prior, history, manifest, None)
    if procs.rank == 0:
        _publish(folder, result.save)
        result.folder = folder
        shutil.rmtree(work, ignore_errors=True)
    else:
        result.folder = folder
    return result
