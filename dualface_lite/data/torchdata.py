"""The dataset for training: ``torch.utils.data.Dataset`` of face crops with their 3D targets.

Each item is one photo: the face crop the networks see (:func:`dualface_lite.camera.face_crop`,
the same rule the landmark fit uses), its landmarks in crop pixels, ``S_0`` and colours, the
capture's ``S_hat`` and true surface, and ids. Items are read one row at a time from the
memory-mapped store, so a ``DataLoader`` with worker processes holds only its batches.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..camera import CROP_SCALE, face_crop
from .store import FaceData, load_split

__all__ = ["FaceDataset", "crop_tensor", "crop_batch", "camera_look"]


def crop_tensor(image, crop) -> torch.Tensor:
    """The network's input from one photo (H, W, 3) uint8 and its :class:`~dualface_lite.camera.FaceCrop`:
    (3, S, S) float32 in [0, 1]. Training (:class:`FaceDataset`) and inference
    (:func:`crop_batch`) both make their tensors here."""
    return torch.from_numpy(crop.image(image).transpose(2, 0, 1).copy()).float() / 255.0


def crop_batch(images, landmarks, size: int, scale: float = CROP_SCALE) -> torch.Tensor:
    """The face crops (:func:`dualface_lite.camera.face_crop`) of M photos (M, H, W, 3) uint8 (or one,
    (H, W, 3)) with their landmarks (M, 68, 2): (M, 3, size, size) float32 in [0, 1]."""
    images, landmarks = np.asarray(images), np.asarray(landmarks)
    if images.ndim == 3:
        images, landmarks = images[None], landmarks[None]
    if len(images) != len(landmarks):
        raise ValueError(f"{len(images)} images but {len(landmarks)} landmark sets")
    if len(images) == 0:
        return torch.zeros((0, 3, size, size))
    return torch.stack([crop_tensor(im, face_crop(lm, size=size, scale=scale)) for im, lm in zip(images, landmarks)])


def camera_look(img: torch.Tensor, rng: np.random.Generator, colour_gain: float = 0.25, grey: float = 0.2,
                blur: float = 1.2, noise: float = 0.03) -> torch.Tensor:
    """A crop (3, S, S) in [0, 1] as another camera might take it: a gain per channel
    ``U(1 - colour_gain, 1 + colour_gain)``, grey (the channels' luma) with probability ``grey``, a Gaussian
    blur of sigma ``U(0, blur)`` px and Gaussian noise of std ``U(0, noise)``; the draws from ``rng``.
    Returns a new tensor, clipped to [0, 1]."""
    from torchvision.transforms.functional import gaussian_blur

    gains = torch.as_tensor(rng.uniform(1 - colour_gain, 1 + colour_gain, 3), dtype=img.dtype)
    to_grey, sigma, std = rng.random() < grey, float(rng.uniform(0, blur)), float(rng.uniform(0, noise))
    out = img * gains[:, None, None]
    if to_grey:
        luma = torch.tensor([0.299, 0.587, 0.114], dtype=img.dtype)
        out = (out * luma[:, None, None]).sum(0, keepdim=True).expand_as(out)
    if sigma > 0.1:
        k = 2 * int(np.ceil(3 * sigma)) + 1
        out = gaussian_blur(out[None], [k, k], [sigma, sigma])[0]
    noise_field = torch.from_numpy(rng.standard_normal(out.shape).astype(np.float32)).to(img.dtype)
    return (out + std * noise_field).clamp(0.0, 1.0)


class FaceDataset(Dataset):
    """Photos of a split as tensors.

    Parameters
    ----------
    data : a :class:`~dualface_lite.data.store.FaceData`, or what :func:`load_split` takes
        (a config, ``"lite"``, a folder) with ``split`` and ``root``.
    crop_size : side of the crop in px (default: the photos' size).
    crop_scale : the crop's side in landmark-box sides (:data:`dualface_lite.camera.CROP_SCALE`).
    augment : jitter each crop (centre by up to ``shift`` of its side, size by up to
        ``zoom``) and its brightness and contrast (up to ``gain``); the 3D targets live in the
        object frame and do not change. The draws depend on ``seed``, the epoch
        (:meth:`set_epoch`) and the photo only, not on the worker that reads it.
    seed : the augmentation's seed.
    shift, zoom, gain : the largest crop shift (fraction of its side), log-zoom and brightness/contrast
        change of the augmentation.
    photometric : also make each crop look as if another camera took it (with ``augment``): a gain per
        colour channel in [1 - ``colour_gain``, 1 + ``colour_gain``], grey with probability ``grey``, a
        Gaussian blur of sigma up to ``blur`` px (of the crop) and Gaussian noise of std up to ``noise``.
        The kit's renders are clean, smooth and in colour; photos are not.
    colour_gain, grey, blur, noise : the photometric augmentation's ranges.

    Notes
    -----
    Items are dicts: ``image`` (3, S, S) float32 in [0, 1]; ``landmarks`` (68, 2) crop pixels;
    ``s0``, ``colors``, ``s_hat``, ``true`` (N, 3) float32; ``visible`` (N,) bool;
    ``condition``, ``index`` (record in ``data``), ``photo`` (row in the split's files),
    ``capture``, ``person`` int64.
    """

    FLOAT_FIELDS = ("s0", "colors", "s_hat", "true")

    def __init__(self, data, split: str = "train", root=None, crop_size: int | None = None,
                 crop_scale: float = CROP_SCALE, augment: bool = False, seed: int = 0,
                 shift: float = 0.05, zoom: float = 0.08, gain: float = 0.2, photometric: bool = False,
                 colour_gain: float = 0.25, grey: float = 0.2, blur: float = 1.2, noise: float = 0.03):
        self.data = data if isinstance(data, FaceData) else load_split(data, split, root=root)
        size = self.data.read("image", 0).shape[0] if len(self.data) else 0
        self.crop_size = int(crop_size or size)
        if self.crop_size < 8:
            raise ValueError(f"crop_size must be at least 8 px, got {crop_size!r}")
        if not (np.isfinite(crop_scale) and crop_scale > 0):
            raise ValueError(f"crop_scale must be a positive number, got {crop_scale!r}")
        for nm, v in (("shift", shift), ("zoom", zoom), ("gain", gain)):
            if not (np.isfinite(v) and 0 <= v < 1):
                raise ValueError(f"{nm} must be in [0, 1), got {v!r}")
        for nm, v in (("colour_gain", colour_gain), ("grey", grey), ("noise", noise)):
            if not (np.isfinite(v) and 0 <= v <= 1):
                raise ValueError(f"{nm} must be in [0, 1], got {v!r}")
        if not (np.isfinite(blur) and 0 <= blur <= 5):
            raise ValueError(f"blur must be in [0, 5] px, got {blur!r}")
        self.crop_scale, self.augment, self.seed = float(crop_scale), bool(augment), int(seed)
        self.shift, self.zoom, self.gain = float(shift), float(zoom), float(gain)
        self.photometric = bool(photometric)
        self.colour_gain, self.grey, self.blur, self.noise = float(colour_gain), float(grey), float(blur), float(noise)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """New augmentation draws for each epoch (call it before iterating, as with a
        ``DistributedSampler``). A ``DataLoader``'s worker processes copy the dataset when they start, so
        the call reaches only workers started after it: not ``persistent_workers=True`` ones."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} records")
        i %= len(self)
        d = self.data
        rec = {name: d.read(name, i) for name in ("image", "landmarks", "visible", "condition", "capture_row",
                                                  "person_row", *self.FLOAT_FIELDS)}
        photo = int(d.index[i])
        shift, zoom, gain, bias = (0.0, 0.0), 1.0, 1.0, 0.0
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, photo])
            shift = tuple(rng.uniform(-self.shift, self.shift, 2))
            zoom = float(np.exp(rng.uniform(-self.zoom, self.zoom)))
            gain, bias = float(rng.uniform(1 - self.gain, 1 + self.gain)), float(rng.uniform(-0.5, 0.5) * self.gain)
        crop = face_crop(rec["landmarks"], size=self.crop_size, scale=self.crop_scale, shift=shift, zoom=zoom)
        img = crop_tensor(rec["image"], crop)
        if self.augment:
            img = ((img - 0.5) * gain + 0.5 + bias).clamp_(0.0, 1.0)
            if self.photometric:     # drawn after the geometric jitter: without it the draws above are unchanged
                img = camera_look(img, rng, self.colour_gain, self.grey, self.blur, self.noise)
        item = {"image": img, "landmarks": torch.from_numpy(crop.points(rec["landmarks"]))}
        for k in self.FLOAT_FIELDS:
            item[k] = torch.from_numpy(np.asarray(rec[k], dtype=np.float32))
        item["visible"] = torch.from_numpy(np.asarray(rec["visible"], dtype=bool))
        for k, v in (("condition", rec["condition"]), ("index", i), ("photo", photo),
                     ("capture", rec["capture_row"]), ("person", rec["person_row"])):
            item[k] = torch.tensor(int(v), dtype=torch.int64)
        return item
