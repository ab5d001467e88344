"""The dual networks assembled (paper, Fig. 1 and section III): photo + 68 landmarks -> a face.

Three stages, each from an earlier chapter:

1. ``S_0``, the landmark fit of eq. (4) with the photo's colours (chapter 2, :mod:`~dualface_lite.fitting`);
2. ``S_P = T_P(S_0)``, the learnable MRF prior, one shallow network per vertex (chapter 4, :mod:`~dualface_lite.mrf`);
3. ``S_T = S_P + T_L(I)``, the appearance-to-structure ResNet's residual read from the photo (chapter 5,
   :mod:`~dualface_lite.train`).

The order of 2 and 3 is a reading of the paper. Section III-B opens with a projection ``P`` applied to the
ResNet's output ``S_T``, while its last sentence (III-B-4) says the MRF output ``S_P`` takes the place of
the target in the ResNet's training loss, and eq. (3) writes the result as ``S_bar + T_L(I)`` with
``S_bar`` "the output of regularizers". The kit reads: **the MRF prior refines the landmark fit and the
ResNet learns the residual left after it** (``S_bar = S_P``). The MRF's inputs are then the ones it was
trained on (landmark fits with their colours), and the ResNet's target is ``S_hat - S_P``, the reading
under which Table III's "Ours" uses all three components as the table says. The other order, the MRF
applied after ``ResNetGC`` (:data:`OTHER_ORDER`), is a variant here and is measured in chapter 6.

The variants of Table III are named by what they keep:

==================  ============================================  ======================
variant             reconstruction                                the paper (FRGC, mm)
==================  ============================================  ======================
``ResNet``          mean face + ``T_L(I)``                        5.97
``GC``              ``S_0``                                       (not in the table)
``ResNetGC``        ``S_0 + T_L(I)``                              4.14
``MRFGC``           ``T_P(S_0)``                                  4.27
``Ours``            ``T_P(S_0) + T_L(I)``                         4.01
``ResNetGC+MRF``    ``T_P(S_0 + T_L(I))``, the other order        -
``Lm2Vertex``       linear regression landmarks -> 3DMM (Fig. 4)  -
==================  ============================================  ======================

Each ``T_L`` is its own network, trained on the same photos towards the same targets with its own
``S_bar`` (:func:`dualface_lite.train.train`); ``MRFGC``, ``Ours`` and ``ResNetGC+MRF`` share one prior,
the one ``Ours`` was trained with.

>>> dual = DualNetwork.from_training("lite")        # trains or loads the three networks (cached)
>>> r = dual.reconstruct(image, landmarks)          # r.vertices (N, 3), r.colors, r.stages
>>> faces = dual.predict_all(test)                  # {variant: (M, N, 3)}, from stored S_0
>>> dual.save("my_dual"); DualNetwork.load("my_dual")
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__, paths

__all__ = ["VARIANTS", "OTHER_ORDER", "BASELINE", "ALL_VARIANTS", "PAPER_TABLE_III", "Reconstruction",
           "DualNetwork", "model_fingerprint"]

#: Table III's strategies (and GC, the landmark fit alone), by what each keeps
VARIANTS = {"ResNet": "the mean face + T_L(I)", "GC": "S0, the landmark fit", "ResNetGC": "S0 + T_L(I)",
            "MRFGC": "T_P(S0), the MRF prior's output", "Ours": "T_P(S0) + T_L(I), the dual networks"}
#: the other order of the two networks: the MRF prior applied to ResNetGC's output
OTHER_ORDER = "ResNetGC+MRF"
#: the paper's baseline of Figs. 4-5, 7-9 (landmarks -> 3DMM parameters by linear regression)
BASELINE = "Lm2Vertex"
ALL_VARIANTS = (*VARIANTS, OTHER_ORDER, BASELINE)
#: Table III: mean error (mm) on FRGC v2.0 against S_hat
PAPER_TABLE_III = {"ResNet": 5.9661, "ResNetGC": 4.1363, "MRFGC": 4.2680, "Ours": 4.0121}
#: the trained appearance network each variant needs (by its training variant)
_NETWORK_OF = {"ResNet": "ResNet", "ResNetGC": "ResNetGC", "Ours": "Ours", OTHER_ORDER: "ResNetGC"}
_USES_PRIOR = ("MRFGC", "Ours", OTHER_ORDER)
PIPELINE_FORMAT_VERSION = 1


def model_fingerprint(model) -> str:
    """16 hex digits of a face model's arrays (mean, bases, triangles, landmarks): a saved dual
    network only loads with the model it was made for."""
    h = hashlib.sha256()
    for a in (model.mean, model.basis, model.sigma, model.expressions, model.triangles, model.ibug68):
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


@dataclass
class Reconstruction:
    """One face reconstructed by :meth:`DualNetwork.reconstruct`.

    Attributes
    ----------
    vertices : (N, 3) float32, the variant's face (mm, the model's object frame).
    colors : (N, 3) float32 in [0, 1], the photo's colour at each vertex of ``S_0`` (0 where unseen).
    stages : {"S0": (N, 3), "S_P": the MRF output (variants with the prior), "S_RG": ResNetGC's output
        (the other order), "S_T": the final face}, every intermediate the variant computed.
    variant : which variant.
    fit : the landmark fit (:class:`~dualface_lite.fitting.Fit`).
    seconds : wall time of each stage ("fit", "mrf", "resnet", "total").
    colour_distance : how unlike the training photos' the colours of ``S_0`` are
        (:class:`~dualface_lite.appearance.ColourFamiliarity`), when the dual network knows its training photos.
    unlike_training : ``colour_distance`` above the threshold of the validation photos (None when unknown).
    """

    vertices: np.ndarray
    colors: np.ndarray
    stages: dict
    variant: str
    fit: object = None
    seconds: dict = field(default_factory=dict)
    colour_distance: float | None = None
    unlike_training: bool | None = None


def _check_variant(variant: str) -> str:
    if variant not in ALL_VARIANTS:
        raise ValueError(f"variant must be one of {ALL_VARIANTS}, got {variant!r}")
    return variant


class DualNetwork:
    """The model, the fit settings, the MRF prior and the trained appearance networks, as one object.

    Parameters
    ----------
    model : the face model (:func:`dualface_lite.load_model`).
    networks : {training variant: :class:`~dualface_lite.train.TrainedNetwork`}, keys among
        ``"ResNet"``, ``"ResNetGC"``, ``"Ours"`` (each network's own ``config.variant``).
    prior : the fitted :class:`~dualface_lite.mrf.MRFPrior`; default the one the ``Ours`` network was
        trained with (given with an ``Ours`` network, it must be that one).
    fit_kwargs : the settings of :func:`dualface_lite.fitting.fit_landmarks` (default: those of the
        networks' dataset, so that ``S_0`` is the one the networks were trained on).
    lm2vertex : an optional trained :class:`~dualface_lite.baselines.Lm2Vertex` (the paper's baseline).
    dataset : the key of the dataset the networks were trained on (for the manifest).
    familiarity : the :class:`~dualface_lite.appearance.ColourFamiliarity` of the training photos
        (:meth:`from_training` and :meth:`from_cache` fit it when the dataset is built); each
        :class:`Reconstruction` then says whether its photo is unlike them.
    """

    def __init__(self, model, networks: dict, *, prior=None, fit_kwargs: dict | None = None, lm2vertex=None,
                 dataset: str | None = None, familiarity=None):
        from .model import MorphableModel

        if not isinstance(model, MorphableModel):
            raise TypeError(f"model must be a MorphableModel (dualface_lite.load_model()), got {type(model).__name__}")
        networks = dict(networks or {})
        for v, net in networks.items():
            if v not in ("ResNet", "ResNetGC", "Ours") or getattr(net, "variant", None) != v:
                raise ValueError(f"networks must map 'ResNet', 'ResNetGC', 'Ours' to networks trained as that "
                                 f"variant, got {v!r} -> {getattr(net, 'variant', type(net).__name__)!r}")
            if net.net.n_vertices != model.n_vertices:
                raise ValueError(f"the {v} network predicts {net.net.n_vertices} vertices, the model has "
                                 f"{model.n_vertices}")
        keys = {net.config.dataset.key() for net in networks.values()}
        fits = {json.dumps(net.config.dataset.fit_kwargs(), sort_keys=True) for net in networks.values()}
        if len(keys) > 1 or len(fits) > 1:
            raise ValueError(f"the networks were trained on different datasets or landmark-fit settings "
                             f"({sorted(keys)}): a dual network's parts must share their S0")
        if "Ours" in networks:
            if prior is not None and prior is not networks["Ours"].prior:
                raise ValueError("the Ours network was trained on the outputs of its own MRF prior: pass no "
                                 "prior, or that one (networks['Ours'].prior)")
            prior = networks["Ours"].prior
        if prior is not None:
            if not prior.is_fitted:
                raise ValueError("the MRF prior is not fitted (MRFPrior.fit or MRFPrior.load first)")
            if prior.n_vertices != model.n_vertices:
                raise ValueError(f"the MRF prior has {prior.n_vertices} vertices, the model {model.n_vertices}")
        self.model = model
        self.networks = networks
        self.prior = prior
        self.lm2vertex = lm2vertex
        if fit_kwargs is None:
            fit_kwargs = next(iter(networks.values())).config.dataset.fit_kwargs() if networks else {}
        self.fit_kwargs = dict(fit_kwargs)
        if dataset is None and networks:
            dataset = next(iter(networks.values())).config.dataset.key()
        self.dataset = dataset
        self.familiarity = familiarity

    @staticmethod
    def _familiarity_of(networks: dict, data_root=None):
        """The colour familiarity of the networks' training photos, or None when their dataset is not built."""
        from .appearance import ColourFamiliarity
        from .data import DatasetNotBuiltError, load_split

        if not networks:
            return None
        config = next(iter(networks.values())).config.dataset
        try:
            train, val = (load_split(config, s, root=data_root) for s in ("train", "val"))
        except (DatasetNotBuiltError, FileNotFoundError):
            return None
        return ColourFamiliarity.fit(train.colors, val.colors)

    # -- what is there --------------------------------------------------------
    @property
    def variants(self) -> tuple:
        """The variants this object can compute (:data:`ALL_VARIANTS` less those missing a part)."""
        return tuple(v for v in ALL_VARIANTS if self._missing(v) is None)

    def _missing(self, variant: str) -> str | None:
        need = _NETWORK_OF.get(variant)
        if need is not None and need not in self.networks:
            return f"the trained {need} network"
        if variant in _USES_PRIOR and self.prior is None:
            return "the MRF prior"
        if variant == BASELINE and self.lm2vertex is None:
            return "a trained Lm2Vertex"
        return None

    def _require(self, variant: str) -> None:
        _check_variant(variant)
        why = self._missing(variant)
        if why is not None:
            raise ValueError(f"variant {variant!r} needs {why}, which this DualNetwork does not hold "
                             f"(it can compute {self.variants})")

    def __repr__(self) -> str:
        return (f"DualNetwork(networks={sorted(self.networks)}, prior={'yes' if self.prior else 'no'}, "
                f"dataset={self.dataset}, variants={self.variants})")

    # -- building ---------------------------------------------------------------
    @classmethod
    def from_training(cls, size: str = "lite", *, networks=("ResNet", "ResNetGC", "Ours"), model=None,
                      root=None, data_root=None, progress: bool = True, device=None, lm2vertex_samples: int = 3000,
                      **overrides) -> "DualNetwork":
        """Train (or load from the cache) the appearance networks of a preset (``"lite"``, ``"paper"``;
        ``overrides`` change its :class:`~dualface_lite.train.TrainConfig`), all on the same photos and
        targets, and the Lm2Vertex baseline (``lm2vertex_samples`` model samples; 0 leaves it out).
        The dataset must be built (:func:`dualface_lite.data.build_dataset`)."""
        from . import train as training
        from .baselines import Lm2Vertex
        from .model import load_model

        model = model or load_model()
        nets = {}
        for v in networks:
            config = training.TrainConfig.preset(size, variant=v, **overrides)
            nets[v] = training.train(config, root, data_root=data_root, progress=progress, device=device, model=model)
        lm2v = Lm2Vertex(model).train(n_samples=lm2vertex_samples, seed=0) if lm2vertex_samples else None
        return cls(model, nets, lm2vertex=lm2v, familiarity=cls._familiarity_of(nets, data_root))

    @classmethod
    def from_cache(cls, size: str = "lite", *, networks=("Ours",), model=None, root=None, data_root=None,
                   **overrides) -> "DualNetwork":
        """The networks of a preset as :meth:`from_training` would give them, but only if they are trained
        already (in ``root``, default the kit's cache); else ``FileNotFoundError`` saying how to train them.
        No Lm2Vertex."""
        from . import train as training
        from .model import load_model

        model = model or load_model()
        nets = {}
        for v in networks:
            config = training.TrainConfig.preset(size, variant=v, **overrides)
            folder = training.network_dir(config, root)
            if not (folder / "manifest.json").is_file():
                raise FileNotFoundError(
                    f"the {size} {v} network is not trained yet (no {folder.name} in {folder.parent}): train it with "
                    f"`dualface train --size {size} --variant {v}` (about 2.5 min on 2 CPU cores for lite; "
                    f"`make book` trains it too), or use the variant GC, which needs no network")
            nets[v] = training.load_network(folder, model=model)
        return cls(model, nets, familiarity=cls._familiarity_of(nets, data_root))

    # -- the stages ---------------------------------------------------------------
    def _compose(self, variant: str, s0: np.ndarray, colors: np.ndarray, residual, mrf) -> dict:
        """The stages of ``variant`` from ``s0``, ``colors`` (M, N, 3); ``residual(name)`` gives the
        named network's ``T_L(I)`` and ``mrf(S)`` the prior's output for ``S`` (both may cache or time)."""
        out = {"S0": s0}
        if variant == "GC":
            out["S_T"] = s0
        elif variant == "MRFGC":
            out["S_P"] = out["S_T"] = mrf(s0)
        elif variant == "ResNet":
            out["S_T"] = self.model.mean.astype(np.float32)[None] + residual("ResNet")
        elif variant == "ResNetGC":
            out["S_T"] = s0 + residual("ResNetGC")
        elif variant == "Ours":
            out["S_P"] = mrf(s0)
            out["S_T"] = out["S_P"] + residual("Ours")
        else:   # OTHER_ORDER: the MRF prior after ResNetGC
            out["S_RG"] = s0 + residual("ResNetGC")
            out["S_P"] = out["S_T"] = mrf(out["S_RG"])
        return out

    def _residual_of(self, images, landmarks, n: int, seconds: dict | None = None):
        """A memoised ``name -> T_L(I)`` for M photos (adds the time to ``seconds["resnet"]``)."""
        cache = {}

        def residual(name):
            if name not in cache:
                t0 = time.perf_counter()
                net = self.networks[name]
                cache[name] = net.residuals(net.crops(images, landmarks))
                if len(cache[name]) != n:
                    raise ValueError(f"{len(cache[name])} photos for {n} faces")
                if seconds is not None:
                    seconds["resnet"] = seconds.get("resnet", 0.0) + time.perf_counter() - t0
            return cache[name]
        return residual

    def _mrf_of(self, s0: np.ndarray, colors: np.ndarray, seconds: dict | None = None):
        """A ``S -> T_P(S)`` with the colours of ``S_0``, memoised for ``S_0`` itself."""
        cache = {}

        def mrf(S):
            if S is s0 and "s0" in cache:
                return cache["s0"]
            t0 = time.perf_counter()
            out = self.prior.predict(S, colors).astype(np.float32)
            if seconds is not None:
                seconds["mrf"] = seconds.get("mrf", 0.0) + time.perf_counter() - t0
            if S is s0:
                cache["s0"] = out
            return out
        return mrf

    def stages(self, s0, colors, images=None, landmarks=None, variant: str = "Ours") -> dict:
        """Every stage of ``variant`` for M faces with their landmark fits ``s0`` (M, N, 3) and
        colours (M, N, 3); ``images`` (M, H, W, 3) and ``landmarks`` (M, 68, 2) for the variants with an
        appearance network. Returns {"S0", "S_P" / "S_RG" when computed, "S_T"}, each (M, N, 3) float32."""
        self._require(variant)
        if variant == BASELINE:
            raise ValueError("Lm2Vertex does not start from S0: use predict or reconstruct")
        s0 = np.asarray(s0, dtype=np.float32)
        if s0.ndim != 3 or s0.shape[1:] != (self.model.n_vertices, 3):
            raise ValueError(f"s0 must have shape (M, {self.model.n_vertices}, 3), got {s0.shape}")
        colors = np.zeros_like(s0) if colors is None else np.asarray(colors, dtype=np.float32)
        if colors.shape != s0.shape:
            raise ValueError(f"colors must have the shape of s0 {s0.shape}, got {colors.shape}")
        if variant in _NETWORK_OF and (images is None or landmarks is None):
            raise ValueError(f"variant {variant!r} reads the photo: give images and landmarks")
        return self._compose(variant, s0, colors, self._residual_of(images, landmarks, len(s0)),
                             self._mrf_of(s0, colors))

    def predict(self, data, variant: str = "Ours") -> np.ndarray:
        """``variant``'s faces (M, N, 3) for the records of a :class:`~dualface_lite.data.FaceData`,
        from their stored landmark fits (the dataset's ``s0``, ``colors``, ``image``, ``landmarks``)."""
        return self.predict_all(data, (variant,))[variant]

    def predict_all(self, data, variants=None, *, progress: bool = False) -> dict:
        """{variant: (M, N, 3)} for the records of ``data`` (default: every variant this object can
        compute). Shared stages are computed once: one prior pass over ``S_0`` for MRFGC and Ours,
        one pass of each network."""
        from tqdm.auto import tqdm

        variants = self.variants if variants is None else (variants,) if isinstance(variants, str) \
            else tuple(variants)
        for v in variants:
            self._require(v)
        s0, colors = np.asarray(data.s0, np.float32), np.asarray(data.colors, np.float32)
        images, landmarks = data.image, data.landmarks
        residual = self._residual_of(images, landmarks, len(s0))
        mrf = self._mrf_of(s0, colors)
        out = {}
        for v in tqdm(variants, disable=not progress, desc="variants"):
            if v == BASELINE:
                out[v] = np.stack([self.lm2vertex.predict(lm, image=im).vertices for im, lm in zip(images, landmarks)])
            else:
                out[v] = self._compose(v, s0, colors, residual, mrf)["S_T"]
        return out

    def reconstruct(self, image, landmarks, variant: str = "Ours") -> Reconstruction:
        """Photo (H, W, 3) + 68 landmarks (68, 2) px -> :class:`Reconstruction` of ``variant``, with
        the wall time of each stage."""
        from .fitting import fit_landmarks

        self._require(variant)
        t0 = time.perf_counter()
        if variant == BASELINE:
            fit = self.lm2vertex.predict(landmarks, image=image)
            V = np.asarray(fit.vertices, np.float32)
            t = time.perf_counter() - t0
            return Reconstruction(V, np.asarray(fit.colors, np.float32), {"S0": V, "S_T": V}, variant, fit,
                                  {"fit": t, "total": t})
        fit = fit_landmarks(self.model, landmarks, image=image, **self.fit_kwargs)
        seconds = {"fit": time.perf_counter() - t0}
        s0, colors = np.asarray(fit.vertices, np.float32)[None], np.asarray(fit.colors, np.float32)[None]
        images, lms = np.asarray(image)[None], np.asarray(landmarks, np.float32)[None]
        out = self._compose(variant, s0, colors, self._residual_of(images, lms, 1, seconds),
                            self._mrf_of(s0, colors, seconds))
        seconds["total"] = time.perf_counter() - t0
        stages = {k: v[0] for k, v in out.items()}
        distance = None if self.familiarity is None else self.familiarity.distance(colors[0])
        return Reconstruction(stages["S_T"], colors[0], stages, variant, fit, seconds, distance,
                              None if distance is None else bool(distance > self.familiarity.threshold))

    # -- one folder -------------------------------------------------------------
    def save(self, folder) -> Path:
        """Write everything to ``folder``: ``manifest.json`` (package version, model fingerprint,
        dataset key, fit settings, the networks' settings), ``prior.pt``, ``networks/<variant>/`` and
        ``lm2vertex.npz``. Written to a temporary folder first, then moved into place."""
        folder = Path(folder).resolve()
        if folder.exists() and not (folder / "manifest.json").is_file() and any(folder.iterdir()):
            raise FileExistsError(f"{folder} exists and holds something other than a saved dual network: "
                                  f"choose a new or empty folder")
        if folder.exists() and (folder / "manifest.json").is_file() and \
                "networks" not in json.loads((folder / "manifest.json").read_text()):
            raise FileExistsError(f"{folder} holds something else (its manifest.json is not a dual network's)")
        tmp = folder.parent / f".{folder.name}.new"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        origin = {v: net.folder for v, net in self.networks.items()}
        if self.prior is not None:
            self.prior.save(tmp / "prior.pt")
        for v, net in self.networks.items():
            net.save(tmp / "networks" / v)
        if self.lm2vertex is not None:
            self.lm2vertex.save(tmp / "lm2vertex.npz")
        man = {"format": PIPELINE_FORMAT_VERSION, "version": __version__, "n_vertices": self.model.n_vertices,
               "model": model_fingerprint(self.model), "dataset": self.dataset, "fit_kwargs": self.fit_kwargs,
               "networks": {v: net.config.to_dict() for v, net in self.networks.items()},
               "prior": self.prior is not None, "lm2vertex": self.lm2vertex is not None,
               "familiarity": None if self.familiarity is None else self.familiarity.to_dict()}
        paths.write_atomic(tmp / "manifest.json", json.dumps(man, indent=1).encode())
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
        for v, net in self.networks.items():   # TrainedNetwork.save pointed them at the temporary folder
            net.folder = origin[v] if origin[v] is not None else folder / "networks" / v
        return folder

    @classmethod
    def load(cls, folder, model=None, device: str = "cpu") -> "DualNetwork":
        """Read a folder written by :meth:`save` (weights with ``weights_only=True``). Fails with a
        clear message when the folder was made by another version of the package or for another face
        model."""
        from .appearance import ColourFamiliarity
        from .baselines import Lm2Vertex
        from .model import load_model
        from .mrf import MRFPrior
        from .train import load_network

        folder = Path(folder)
        if not (folder / "manifest.json").is_file():
            raise FileNotFoundError(f"no dual network in {folder} (manifest.json expected)")
        man = json.loads((folder / "manifest.json").read_text())
        if man.get("format") != PIPELINE_FORMAT_VERSION or man.get("version") != __version__:
            raise ValueError(f"{folder} was saved by dualface_lite {man.get('version')} (format {man.get('format')}); "
                             f"this is {__version__} (format {PIPELINE_FORMAT_VERSION}): train or save it again")
        model = model or load_model()
        if man.get("n_vertices") != model.n_vertices or man.get("model") != model_fingerprint(model):
            raise ValueError(f"{folder} was made for another face model ({man.get('n_vertices')} vertices, "
                             f"fingerprint {man.get('model')}); this one has {model.n_vertices} vertices, "
                             f"fingerprint {model_fingerprint(model)}")
        nets = {v: load_network(folder / "networks" / v, device=device, model=model) for v in man["networks"]}
        prior = None
        if "Ours" in nets:
            prior = nets["Ours"].prior
        elif man.get("prior"):
            prior = MRFPrior.load(folder / "prior.pt")
        lm2v = Lm2Vertex.load(folder / "lm2vertex.npz", model) if man.get("lm2vertex") else None
        fam = ColourFamiliarity.from_dict(man["familiarity"]) if man.get("familiarity") else None
        return cls(model, nets, prior=prior, fit_kwargs=man["fit_kwargs"], lm2vertex=lm2v, dataset=man["dataset"],
                   familiarity=fam)
