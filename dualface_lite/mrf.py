"""The learnable MRF prior: one shallow network per vertex (paper, section III-B-2..4, Fig. 3).

The personalised template ``S_0`` of the landmark fit (:mod:`dualface_lite.fitting`,
eq. (4)) gets the global shape right but not the local one: the landmarks say
nothing about the nose or the cheeks, and the 3DMM's few hundred scans do not
cover everyone. The paper therefore learns a *projection* ``P`` from ``S_0`` to
the target face, vertex by vertex, under the local Markov assumption of eq. (6)::

    p(S | S_0) = prod_i p(v^i | B(v_0^i))          B = the K nearest neighbours of v_0^i

with the neighbours found by the distance (III-B-3)::

    w^{i,j} = || [v_0^i, C(v_0^i)] - [v_0^j, C(v_0^j)] ||^2           (position in mm, colour)

and one feature vector per vertex::

    F^i = [delta^{i,j_1} f^{i,j_1}, ..., delta^{i,j_K} f^{i,j_K}],   f^{i,j} = [v_0^j, C(v_0^j)],
    delta^{i,j_k} = 1 - k/K

fed to a network with ONE hidden layer, one network per vertex (N = 3448 of
them), each trained on ``sum_m || T_P^i(F^i(v_{0,m}^i)) - v_hat_m^i ||^2``
(III-B-4). Here the ``N`` networks are stored as batched tensors
``W1 (N, D, H)``, ``b1 (N, H)``, ``W2 (N, H, 3)``, ``b2 (N, 3)`` and evaluated by
one batched matrix product (``torch.baddbmm``) for all vertices at once; Adam
updates each entry independently, so this *is* N independent networks trained
side by side -- never a Python loop over vertices.

Decisions the paper leaves open. Each was measured by ``benchmarks/bench_mrf.py``
on the kit's ``lite`` set (240 training / 90 test subjects, trained on the NICP
ground truth ``S_hat``, one change at a time from the default; mean vertex error
on the test set against ``S_hat``; the full tables are in
``benchmarks/results/mrf.json``). For scale: the template ``S_0`` is at 3.28 mm,
the default prior at 2.32 mm.

* **Neighbour order.** The paper searches the neighbours of every template anew,
  so the k-th input slot holds a different vertex from one face to the next,
  while a per-vertex network needs its inputs to mean the same thing for every
  face. The default (``neighbours="fixed"``) searches the K nearest neighbours
  once, with the paper's distance ``w`` on the *mean training template* (mean
  positions, mean visible colours), sorted by ``w``; every face then fills slot
  k with the same vertex. ``neighbours="per_subject"`` is the literal reading
  (K-NN per template, slots by rank): 2.363 mm against 2.318 mm.
* **The vertex itself and delta.** With ``delta = 1 - k/K`` the K-th neighbour
  gets weight 0, i.e. it is not used at all (an off-by-one, or the vertex
  itself counted as its own first neighbour). The kit puts the vertex itself
  in slot ``k = 0`` and its K nearest *other* vertices in slots ``1..K``, with
  ``delta_k = 1 - k/(K+1)`` (:func:`delta_weights`): weights 1, 10/11, ...,
  1/11 for K = 10, all used, decreasing linearly as in the paper; ``K`` keeps
  its meaning. As in the paper's Fig. 3, K hardly matters: K = 5, 10, 20 give
  2.326, 2.318, 2.315 mm (the paper: a largest gap below 0.01 mm); 10 hidden
  units instead of 50 give 2.339 mm.
* **Colour scale.** ``w`` adds millimetres to colour values in [0, 1], so the
  units decide how much colour counts. ``color_scale`` is the number of mm one
  unit of rgb counts as in ``w``. On the validation split 0, 5 and 20 mm are
  equal within 0.02% (5 chosen; at 5 mm colour changes the neighbour set of
  1.8% of the vertices), 200 mm is 0.2% worse.
* **Colour features.** ``use_color=True`` (the paper's ``[v, C(v)]``) against
  ``use_color=False`` (xyz only): 2.318 / 2.351 mm against ``S_hat``, 3.377 /
  3.398 mm against the true surface. What colour can tell here is the skin
  tone, to which the synthetic population ties its broad mid-face shape
  (:class:`dualface_lite.synth.Population`, ``tone_gain``); with no such link
  (the population of an earlier version of the kit) the two were equal.
* **Invisible vertices.** The paper sets their colour to 0 (black). 0 means
  "unknown" here, not "black": such a vertex (all three channels exactly 0 --
  :func:`dualface_lite.fitting.fit_landmarks` writes exactly that) gets the
  vertex's mean colour over the training faces where it was visible, for the
  neighbour search and for the features alike.
* **Residual targets, relative features.** A network predicts the *offset*
  ``v_hat^i - v_0^i`` from the template and sees neighbour positions relative
  to its own vertex, ``v_0^j - v_0^i`` (translation invariant). The output is
  ``v_0^i + T_P^i(F^i)``; a network that ignores its input returns
  ``v_0^i + mean offset``. Measured: absolute positions 2.332 mm; absolute
  positions *and* absolute targets (``residual=False``, the paper's wording)
  2.531 mm; relative positions with absolute targets cannot work at all (the
  network cannot see where its vertex is); all of the paper's literal choices
  together (K-NN per template, absolute features and targets, no alignment)
  2.650 mm.
* **Aligned targets.** ``align_targets=True`` rigidly aligns each target face
  onto its template before training, so the networks learn shape, not the
  pose error of the ground truth -- the error is measured after rigid
  alignment anyway (:func:`dualface_lite.metrics.mean_vertex_error`). Without
  it: 2.338 mm.
* **Normalisation.** Per vertex: the offsets are centred (mean over the
  training faces) and divided by their rms; the features are centred per
  column and divided by one rms per *block* (all position columns, all colour
  columns) of the vertex. One scale per block -- not per column -- so that the
  paper's delta survives: a z-score per column would cancel any constant factor
  on a column, i.e. delta exactly (``normalize="column"``: 2.315 mm, the same
  within 0.003 mm: delta makes no measurable difference).
* **Training.** AdamW (decoupled weight decay 10, i.e. a strong shrinkage of
  each small network: 192 training faces per 3,000 weights) on minibatches of
  faces, the summed squared error of all vertices, a validation split
  (``val_fraction`` of the training faces) and early stopping *per vertex*:
  each network keeps the weights of its own best validation epoch; training
  stops when the mean validation error of the kept networks has not improved
  by ``tol`` for ``patience`` epochs (``early_stopping="global"``: one epoch for
  all, the same test error in two thirds of the epochs). Everything random
  (initialisation, split, minibatches) comes from one ``torch.Generator``
  seeded by ``seed``: the same seed gives the same numbers.
* **Speed.** One training step evaluates all N networks with two
  ``torch.baddbmm`` calls on the minibatch's features, precomputed once as a
  (N, M, D) tensor (about 220 MB for the lite set, 2.5 GB for the paper's
  2,800 faces). On 2 CPU cores the lite set trains in 18 s (45 epochs).
  The same work one vertex at a time (the benchmark times 6 vertices and
  extrapolates) takes about 460 s with raw tensors and the same fused AdamW
  (26x slower; it reproduces the batched networks to 5e-7 mm) and 650 s
  with ``nn.Sequential`` + ``torch.optim.AdamW`` (36x). The ratio is bounded on a
  small CPU: batched, the arithmetic is the limit (a step of 32 faces is about
  1.6 GFLOP, and small batched matrix products run at ~30 GFLOP/s); looped,
  the ~0.5 ms of Python and dispatch per step. ``device="cuda"`` moves
  everything to a GPU, where the batched step gets much faster and the loop
  does not.

What the prior learns on the kit's data: most of its gain over ``S_0`` (3.28 ->
2.32 mm against ``S_hat``, 4.32 -> 3.38 mm against the true surface) is the
per-vertex mean correction (the networks' bias alone: 2.41 / 3.46 mm): the
synthetic population's mean lies outside the morphable model's (as real people
lie outside a 3DMM's few hundred scans, the paper's own motivation). The local
neighbourhood adds 0.06 mm on top and colour another 0.03 mm: what the landmark
fit got wrong is mostly not visible in ``S_0``'s local shape.

:class:`MRFGC` (and :func:`mrfgc`) is the paper's ablation "MRFGC" of Table III:
the naive cascade of the 3DMM landmark fit (GC, the personalised template) and
the learnable MRF.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["MRFPrior", "MRFGC", "mrfgc", "delta_weights", "knn_fixed", "knn_per_subject",
           "DEFAULT_COLOR_SCALE"]

#: mm per unit of rgb in the neighbour distance ``w`` (chosen on validation, see ``benchmarks/bench_mrf.py``)
DEFAULT_COLOR_SCALE = 5.0
_FORMAT = "dualface_lite.mrf/1"
_NEIGHBOURS = ("fixed", "per_subject")
_NORMALIZE = ("block", "column")
_ACTIVATIONS = ("relu", "tanh")
_EARLY = ("vertex", "global")


def delta_weights(k: int) -> np.ndarray:
    """The feature weights (k + 1,) of slot 0 (the vertex itself) .. slot k (its k-th
    neighbour): ``delta_k = 1 - k/(k_max + 1)``, the paper's ``1 - k/K`` shifted by
    one slot so that the K-th neighbour keeps a positive weight (see the module)."""
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return (1.0 - np.arange(k + 1) / (k + 1.0)).astype(np.float32)


def _points(vertices: np.ndarray, colors: np.ndarray | None, color_scale: float) -> np.ndarray:
    """The nodes ``[v, color_scale * C(v)]`` of the paper's local graph (N, 3 or 6)."""
    v = np.asarray(vertices, dtype=np.float64)
    if colors is None or color_scale == 0:
        return v
    return np.concatenate([v, color_scale * np.asarray(colors, dtype=np.float64)], axis=1)


def _drop_self(idx: np.ndarray, k: int) -> np.ndarray:
    """From k+1 nearest indices per row (sorted), the first k that are not the row's own vertex."""
    rows = np.arange(idx.shape[-2])[:, None]
    keep = idx != rows
    order = np.argsort(~keep, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(idx, order, axis=-1)


def knn_fixed(vertices, colors=None, k: int = 10, color_scale: float = DEFAULT_COLOR_SCALE) -> np.ndarray:
    """(N, k+1) neighbour slots of one template: the vertex itself, then its ``k``
    nearest other vertices by ``w^{i,j} = ||[v_i, s C_i] - [v_j, s C_j]||^2``
    (``s = color_scale``), nearest first (paper, III-B-3). ``colors=None``: xyz only."""
    from scipy.spatial import cKDTree

    v = np.asarray(vertices)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape (N, 3), got {v.shape}")
    if not 1 <= k < v.shape[0]:
        raise ValueError(f"k must be in [1, {v.shape[0] - 1}] for {v.shape[0]} vertices, got {k}")
    p = _points(v, colors, color_scale)
    _, idx = cKDTree(p).query(p, k=k + 1)
    nb = _drop_self(idx.astype(np.int64), k)
    return np.concatenate([np.arange(len(v))[:, None], nb], axis=1)


def knn_per_subject(templates, colors=None, k: int = 10, color_scale: float = DEFAULT_COLOR_SCALE) -> np.ndarray:
    """(M, N, k+1): :func:`knn_fixed` for every template separately (the paper's
    literal reading: each ``S_0`` has its own neighbourhoods)."""
    t = np.asarray(templates)
    return np.stack([knn_fixed(t[m], None if colors is None else colors[m], k, color_scale)
                     for m in range(t.shape[0])])


def _align_to(Y: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Each target face rigidly aligned (rotation + translation, Kabsch) onto its template."""
    from .metrics import rigid_align

    out = np.empty_like(Y)
    for m in range(len(Y)):
        R, t, _ = rigid_align(Y[m], T[m])
        out[m] = Y[m] @ R.T.astype(np.float32) + t.astype(np.float32)
    return out


def _adamw(params, lr: float, weight_decay: float):
    """AdamW; the fused kernel where this torch has it (~8x faster on 10^7 parameters on a CPU)."""
    import torch

    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@dataclass
class _Data:
    """Faces on the device: templates ``T`` (M, N, 3), imputed colours ``C`` (M, N, 3),
    neighbour slots ``idx`` (N, S) or (M, N, S)."""

    T: "object"
    C: "object"
    idx: "object"


class MRFPrior:
    """The learnable MRF prior of the paper (III-B-2..4): ``N`` shallow networks, one per vertex.

    Parameters
    ----------
    k : neighbours per vertex (the paper's ``K``; 10, from its Fig. 3). The vertex
        itself is added as slot 0, so each network sees ``k + 1`` points.
    hidden : units of the single hidden layer (50, Fig. 3).
    seed : seeds initialisation, validation split and minibatch order.
    color_scale : mm per unit of rgb in the neighbour distance ``w`` (III-B-3).
    use_color : feed colours and use them in ``w`` (``False``: xyz only).
    neighbours : ``"fixed"`` (default) -- one neighbour list per vertex from the
        mean training template, the same slots for every face; ``"per_subject"``
        -- the paper's K-NN per template, slots ordered by distance.
    relative : neighbour positions relative to the vertex (default) or absolute.
    residual : predict the offset from the template ``v_hat - v_0`` (default) or,
        as the paper writes it, the target coordinates themselves.
    normalize : ``"block"`` (default; one scale per vertex for the position
        columns and one for the colour columns, keeps delta) or ``"column"``.
    align_targets : rigidly align each target face onto its template before training.
    activation : ``"relu"`` (default) or ``"tanh"`` for the hidden layer.
    lr, weight_decay, batch_size : AdamW (decoupled weight decay) on minibatches of faces.
    max_epochs, patience, tol, val_fraction : early stopping on a validation
        split of ``val_fraction`` of the training faces; stop when the
        validation error (mm^2, see ``early_stopping``) has not dropped by a
        fraction ``tol`` for ``patience`` epochs.
    early_stopping : ``"vertex"`` (default) -- each network keeps its own best
        epoch; ``"global"`` -- one epoch, the best mean, for all.
    device : torch device for training and prediction ("cpu", or "cuda").
    progress : show a tqdm bar while training.

    After :meth:`fit`: ``neighbours_`` (N, k+1) for ``"fixed"``, ``history_``
    (per-epoch train/validation loss in mm^2), ``best_epoch_`` (N,) and
    ``fit_seconds_``.

    Example
    -------
    >>> prior = MRFPrior(k=10, hidden=50, seed=0).fit(S0_train, colors_train, S_hat_train)
    >>> S_P = prior.predict(S0_test, colors_test)           # (M, N, 3) mm
    """

    def __init__(self, k: int = 10, hidden: int = 50, seed: int = 0, *,
                 color_scale: float = DEFAULT_COLOR_SCALE, use_color: bool = True,
                 neighbours: str = "fixed", relative: bool = True, residual: bool = True,
                 normalize: str = "block",
                 align_targets: bool = True, activation: str = "relu", lr: float = 3e-3,
                 weight_decay: float = 10.0, batch_size: int = 32, max_epochs: int = 300, patience: int = 10,
                 val_fraction: float = 0.2, early_stopping: str = "vertex", tol: float = 1e-3,
                 device: str = "cpu", progress: bool = True):
        def posint(x, name, lo=1):
            if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {x!r}")
            return int(x)

        self.k = posint(k, "k")
        self.hidden = posint(hidden, "hidden")
        self.seed = posint(seed, "seed", 0)
        if not np.isfinite(color_scale) or color_scale < 0:
            raise ValueError(f"color_scale must be a finite number >= 0 (mm per unit rgb), got {color_scale!r}")
        self.color_scale = float(color_scale)
        self.use_color = bool(use_color)
        if neighbours not in _NEIGHBOURS:
            raise ValueError(f"neighbours must be one of {_NEIGHBOURS}, got {neighbours!r}")
        self.neighbours = neighbours
        self.relative = bool(relative)
        self.residual = bool(residual)
        self.align_targets = bool(align_targets)
        if normalize not in _NORMALIZE:
            raise ValueError(f"normalize must be one of {_NORMALIZE}, got {normalize!r}")
        self.normalize = normalize
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        for name, x in (("lr", lr), ("weight_decay", weight_decay)):
            if not np.isfinite(x) or x < 0 or (name == "lr" and x == 0):
                raise ValueError(f"{name} must be a finite number {'> 0' if name == 'lr' else '>= 0'}, got {x!r}")
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.batch_size = posint(batch_size, "batch_size")
        self.max_epochs = posint(max_epochs, "max_epochs")
        self.patience = posint(patience, "patience")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
        self.val_fraction = float(val_fraction)
        if early_stopping not in _EARLY:
            raise ValueError(f"early_stopping must be one of {_EARLY}, got {early_stopping!r}")
        self.early_stopping = early_stopping
        if not 0 <= tol < 1:
            raise ValueError(f"tol must be in [0, 1), got {tol!r}")
        self.tol = float(tol)
        self.device = str(device)
        self.progress = bool(progress)
        self._state = None          # dict of tensors once fitted
        self.neighbours_ = None
        self.history_ = None
        self.best_epoch_ = None
        self.fit_seconds_ = None

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        """The constructor arguments (plain values), as saved by :meth:`save`."""
        return dict(k=self.k, hidden=self.hidden, seed=self.seed, color_scale=self.color_scale,
                    use_color=self.use_color, neighbours=self.neighbours, relative=self.relative,
                    residual=self.residual,
                    align_targets=self.align_targets,
                    normalize=self.normalize, activation=self.activation, lr=self.lr,
                    weight_decay=self.weight_decay, batch_size=self.batch_size, max_epochs=self.max_epochs,
                    patience=self.patience, val_fraction=self.val_fraction,
                    early_stopping=self.early_stopping, tol=self.tol)

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "not fitted"
        return (f"MRFPrior(k={self.k}, hidden={self.hidden}, seed={self.seed}, color_scale={self.color_scale}, "
                f"use_color={self.use_color}, neighbours={self.neighbours!r}; {state})")

    @property
    def is_fitted(self) -> bool:
        return self._state is not None and "W1" in self._state

    @property
    def n_vertices(self) -> int:
        self._require_fitted()
        return int(self._state["W1"].shape[0])

    @property
    def n_inputs(self) -> int:
        """``D``, the length of a vertex's feature vector: (k+1) x (3 + 3 colour channels)."""
        return (self.k + 1) * (6 if self.use_color else 3)

    def _require_fitted(self):
        if not self.is_fitted:
            raise RuntimeError("this MRFPrior is not fitted: call .fit(templates, colors, targets) "
                               "or MRFPrior.load(path) first")

    # ------------------------------------------------------------------ input checks
    @staticmethod
    def _check(x, name: str, n: int | None = None, allow_single: bool = False) -> np.ndarray:
        a = np.asarray(x)
        if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise TypeError(f"{name} must be a numeric array, got dtype {a.dtype}")
        a = a.astype(np.float32, copy=False)
        if allow_single and a.ndim == 2:
            a = a[None]
        if a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"{name} must have shape (M, N, 3) (M faces, N vertices), got {a.shape}")
        if a.shape[0] == 0 or a.shape[1] == 0:
            raise ValueError(f"{name} is empty: shape {a.shape}")
        if n is not None and a.shape[1] != n:
            raise ValueError(f"{name} has {a.shape[1]} vertices, the prior was trained on {n}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or infinite values")
        return a

    def _check_inputs(self, templates, colors, n=None, allow_single=False):
        T = self._check(templates, "templates", n, allow_single)
        if colors is None:
            if self.use_color:
                raise ValueError("colors is required (this prior uses colour features; use_color=True)")
            C = np.zeros_like(T)
        else:
            C = self._check(colors, "colors", n, allow_single)
            if C.shape != T.shape:
                raise ValueError(f"colors must have the same shape as templates {T.shape}, got {C.shape}")
            if C.min() < -1e-6 or C.max() > 1 + 1e-6:
                raise ValueError(f"colors must be rgb in [0, 1] (divide uint8 colours by 255), "
                                 f"got values in [{C.min():g}, {C.max():g}]")
        return T, C

    # ------------------------------------------------------------------ features
    def _torch(self):
        import torch

        return torch

    def _impute(self, C: np.ndarray, color_mean: np.ndarray) -> np.ndarray:
        """Invisible vertices (colour exactly 0, the paper's convention) get the vertex's mean colour."""
        invisible = np.all(C == 0, axis=2)
        return np.where(invisible[..., None], color_mean[None], C).astype(np.float32)

    def _neighbour_index(self, T: np.ndarray, C: np.ndarray, mean_T=None, mean_C=None) -> np.ndarray:
        cols = None if not self.use_color else C
        if self.neighbours == "per_subject":
            return knn_per_subject(T, cols, self.k, self.color_scale)
        return knn_fixed(mean_T, None if not self.use_color else mean_C, self.k, self.color_scale)

    def _features(self, T, C, idx):
        """Raw features ``F`` (B, N, D) of faces ``T``, ``C`` (B, N, 3) torch tensors:
        per slot ``delta_k [v_j - v_i (or v_j), C_j]``, positions first then colours."""
        torch = self._torch()
        B, N, _ = T.shape
        if idx.dim() == 2:                              # fixed: (N, S), the same for every face
            P = T[:, idx]                               # (B, N, S, 3)
            Q = C[:, idx] if self.use_color else None
        else:                                           # per subject: (B, N, S)
            flat = idx.reshape(B, -1, 1).expand(-1, -1, 3)
            P = torch.gather(T, 1, flat).reshape(B, N, -1, 3)
            Q = torch.gather(C, 1, flat).reshape(B, N, -1, 3) if self.use_color else None
        if self.relative:
            P = P - T[:, :, None, :]
        d = self._delta[None, None, :, None]
        parts = [(P * d).reshape(B, N, -1)]
        if self.use_color:
            parts.append((Q * d).reshape(B, N, -1))
        return torch.cat(parts, dim=2)

    def _normalized(self, data: _Data, rows):
        """Normalised features (N, B, D) of faces ``rows`` (a LongTensor), vertex-major for bmm."""
        idx = data.idx if data.idx.dim() == 2 else data.idx[rows]
        F = self._features(data.T[rows], data.C[rows], idx)
        s = self._state
        X = (F - s["x_mean"]) * s["x_inv"]
        return X.permute(1, 0, 2).contiguous()

    # ------------------------------------------------------------------ the networks
    def _forward(self, X, W1, b1, W2, b2):
        """All N networks at once: ``X`` (N, B, D) -> (N, B, 3), normalised offsets."""
        torch = self._torch()
        h = torch.baddbmm(b1[:, None, :], X, W1)
        h = torch.relu(h) if self.activation == "relu" else torch.tanh(h)
        return torch.baddbmm(b2[:, None, :], h, W2)

    def _init_weights(self, n: int, gen):
        """Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) as ``torch.nn.Linear``; zero biases."""
        torch = self._torch()
        D, H = self.n_inputs, self.hidden
        W1 = (torch.rand(n, D, H, generator=gen) * 2 - 1) / math.sqrt(D)
        W2 = (torch.rand(n, H, 3, generator=gen) * 2 - 1) / math.sqrt(H)
        return [W1, torch.zeros(n, H), W2, torch.zeros(n, 3)]

    # ------------------------------------------------------------------ fit
    def fit(self, templates, colors, targets, *, validation=None) -> "MRFPrior":
        """Train the ``N`` vertex networks (paper III-B-4) on ``M`` faces.

        templates : (M, N, 3) personalised templates ``S_0`` (mm, object frame).
        colors : (M, N, 3) their vertex colours in [0, 1], exactly 0 where invisible
            (may be ``None`` when ``use_color=False``).
        targets : (M, N, 3) the target faces ``S_hat`` (NICP ground truth) in the same frame.
        validation : optional (M,) bool mask of the faces to hold out for early
            stopping (default: a random ``val_fraction`` of them, from ``seed``).

        Returns ``self``.
        """
        t0 = time.perf_counter()
        X, Yn, tr_rows, va_rows, gen = self._prepare(templates, colors, targets, validation)
        best, best_epoch, history = self._train(X, Yn, tr_rows, va_rows, gen)
        for name, p in zip(("W1", "b1", "W2", "b2"), best):
            self._state[name] = p
        self.history_ = history
        self.best_epoch_ = best_epoch.cpu().numpy()
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _prepare(self, templates, colors, targets, validation=None):
        """Checks, validation split, colour imputation, neighbours, normalisation
        (stored in ``self._state``) and the training arrays: normalised features
        ``X`` (N, M, D), normalised offsets ``Yn`` (N, M, 3), the rows of the
        training and validation faces, and the generator (drawn from: split, then
        initialisation, then one permutation per epoch)."""
        torch = self._torch()
        T, C = self._check_inputs(templates, colors)
        Y = self._check(targets, "targets")
        if Y.shape != T.shape:
            raise ValueError(f"targets must have the same shape as templates {T.shape}, got {Y.shape}")
        M, N, _ = T.shape
        if N <= self.k:
            raise ValueError(f"k = {self.k} needs more than {self.k} vertices, got {N}")
        gen = torch.Generator().manual_seed(self.seed)
        if validation is None:
            n_val = int(round(self.val_fraction * M))
            if n_val < 1 or M - n_val < 2:
                raise ValueError(f"too few faces for a validation split: M = {M} with val_fraction = "
                                 f"{self.val_fraction} leaves {M - n_val} to train and {n_val} to validate "
                                 f"(need at least 2 and 1)")
            perm = torch.randperm(M, generator=gen).numpy()
            val = np.zeros(M, dtype=bool)
            val[perm[:n_val]] = True
        else:
            val = np.asarray(validation)
            if val.shape != (M,) or val.dtype != bool:
                raise ValueError(f"validation must be a (M,) = ({M},) bool mask, got {val.shape} {val.dtype}")
            if val.sum() < 1 or (~val).sum() < 2:
                raise ValueError("validation must hold out at least 1 face and leave at least 2 to train")
        tr = ~val
        self._state = None          # the inputs are fine: from here on the old networks are gone

        # colours: 0 = invisible -> the vertex's mean visible colour (training faces only)
        vis = ~np.all(C[tr] == 0, axis=2)                                    # (Mtr, N)
        cnt = vis.sum(0)
        fallback = C[tr][vis].mean(0) if vis.any() else np.full(3, 0.5, np.float32)
        color_mean = np.where(cnt[:, None] > 0, (C[tr] * vis[..., None]).sum(0) / np.maximum(cnt, 1)[:, None],
                              fallback[None]).astype(np.float32)
        C = self._impute(C, color_mean)
        mean_T = T[tr].mean(0)
        idx = self._neighbour_index(T, C, mean_T, color_mean)
        self.neighbours_ = idx if self.neighbours == "fixed" else None

        if self.align_targets:      # the networks learn shape, not the pose of the ground truth
            Y = _align_to(Y, T)
        dev = torch.device(self.device)
        self._delta = torch.as_tensor(delta_weights(self.k), device=dev)
        data = _Data(torch.as_tensor(T, device=dev), torch.as_tensor(C, device=dev),
                     torch.as_tensor(idx, device=dev))
        R = torch.as_tensor(Y - T if self.residual else Y, device=dev)       # offsets v_hat - v0
        tr_rows = torch.as_tensor(np.nonzero(tr)[0], device=dev)
        va_rows = torch.as_tensor(np.nonzero(val)[0], device=dev)

        with torch.no_grad():
            # per-vertex normalisation from the training faces
            F = torch.cat([self._features(data.T[r], data.C[r],
                                          data.idx if data.idx.dim() == 2 else data.idx[r])
                           for r in tr_rows.split(64)])                      # (Mtr, N, D)
            x_mean = F.mean(0)
            Fc = F - x_mean
            if self.normalize == "column":
                x_std = Fc.pow(2).mean(0).sqrt()
            else:
                S = self.k + 1
                x_std = torch.empty_like(x_mean)
                blocks = [slice(0, 3 * S)] + ([slice(3 * S, 6 * S)] if self.use_color else [])
                for b in blocks:
                    x_std[:, b] = Fc[:, :, b].pow(2).mean((0, 2)).sqrt()[:, None]
            x_inv = torch.where(x_std > 1e-6, 1.0 / x_std.clamp_min(1e-6), torch.zeros_like(x_std))
            del F, Fc
            y_mean = R[tr_rows].mean(0)                                       # (N, 3)
            y_std = (R[tr_rows] - y_mean).pow(2).sum(2).mean(0).div(3).sqrt().clamp_min(1e-3)  # (N,)
            self._state = {"x_mean": x_mean, "x_inv": x_inv, "y_mean": y_mean, "y_std": y_std,
                           "color_mean": torch.as_tensor(color_mean, device=dev),
                           "mean_template": torch.as_tensor(mean_T, device=dev),
                           "neighbours": torch.as_tensor(idx if self.neighbours == "fixed" else
                                                         np.zeros((0, self.k + 1), np.int64), device=dev)}
            # the normalised features of every face, vertex-major (N, M, D), computed once
            X = torch.empty((N, M, self.n_inputs), device=dev)
            for r in torch.arange(M, device=dev).split(64):
                X[:, r] = self._normalized(data, r)
            Yn = ((R - y_mean) / y_std[:, None]).permute(1, 0, 2).contiguous()   # (N, M, 3)
        del data, R

        return X, Yn, tr_rows, va_rows, gen

    def _train(self, X, Yn, tr_rows, va_rows, gen):
        """Adam on minibatches of faces; early stopping on the faces ``va_rows``.

        X : (N, M, D) normalised features, Yn : (N, M, 3) normalised offsets.
        Returns (best params per vertex, best epoch per vertex, history)."""
        torch = self._torch()
        from tqdm.auto import tqdm

        N, dev = X.shape[0], X.device
        params = [p.to(dev).requires_grad_(True) for p in self._init_weights(N, gen)]
        opt = _adamw(params, self.lr, self.weight_decay)
        y2 = self._state["y_std"].pow(2)                                      # back to mm^2
        best = [p.detach().clone() for p in params]
        best_val = torch.full((N,), float("inf"), device=dev)
        best_epoch = torch.zeros(N, dtype=torch.long, device=dev)
        Xva, Yva = X[:, va_rows], Yn[:, va_rows]
        history = {"train_mm2": [], "val_mm2": [], "best_val_mm2": [], "n_improved": [], "seconds": []}
        stale, best_score = 0, float("inf")
        t0 = time.perf_counter()
        bar = tqdm(range(self.max_epochs), desc="MRF prior", disable=not self.progress, leave=False)
        for epoch in bar:
            order = tr_rows[torch.randperm(len(tr_rows), generator=gen).to(dev)]
            tot = torch.zeros((), device=dev)
            for rows in order.split(self.batch_size):
                out = self._forward(X[:, rows], *params)
                err = (out - Yn[:, rows]).pow(2)                              # (N, B, 3)
                loss = err.mean((1, 2)).sum()                                 # sum over the N networks
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += (err.detach().mean((1, 2)) * y2).mean() * len(rows)
            with torch.no_grad():
                v = (self._forward(Xva, *params) - Yva).pow(2).mean((1, 2))   # (N,) per network
                if self.early_stopping == "vertex":
                    improved = v < best_val
                else:   # one epoch for all: the one with the lowest mean validation error
                    improved = torch.full_like(v, bool(v.mean() < best_val.mean()), dtype=torch.bool)
                best_val = torch.where(improved, v, best_val)
                best_epoch = torch.where(improved, torch.full_like(best_epoch, epoch), best_epoch)
                for b, p in zip(best, params):
                    shape = (N,) + (1,) * (p.dim() - 1)
                    b.copy_(torch.where(improved.view(shape), p.detach(), b))
            n_imp = int(improved.sum())
            history["train_mm2"].append(float(tot) / len(tr_rows) * 3)
            history["val_mm2"].append(float((v * y2).mean()) * 3)
            history["best_val_mm2"].append(float((best_val * y2).mean()) * 3)
            history["n_improved"].append(n_imp)
            history["seconds"].append(time.perf_counter() - t0)
            bar.set_postfix(val_mm2=f"{history['val_mm2'][-1]:.3f}", improved=n_imp)
            score = history["best_val_mm2"][-1] if self.early_stopping == "vertex" else history["val_mm2"][-1]
            if score < best_score * (1 - self.tol):
                best_score, stale = score, 0
            else:
                stale += 1
            if stale >= self.patience:
                break
        bar.close()
        return best, best_epoch, history

    # ------------------------------------------------------------------ predict
    def predict(self, templates, colors=None, *, batch_size: int = 64) -> np.ndarray:
        """The prior's faces ``S_P`` (M, N, 3), mm: ``v_0^i + T_P^i(F^i)`` for every vertex.

        templates, colors : (M, N, 3) as in :meth:`fit` (a single face (N, 3) gives (N, 3)).
        Each face is predicted on its own (the result does not depend on which
        other faces are in the call, nor on their order).
        """
        torch = self._torch()
        self._require_fitted()
        single = np.asarray(templates).ndim == 2
        T, C = self._check_inputs(templates, colors, n=self.n_vertices, allow_single=True)
        s = self._state
        C = self._impute(C, s["color_mean"].cpu().numpy())
        if self.neighbours == "fixed":
            idx = s["neighbours"]
        else:
            idx = torch.as_tensor(knn_per_subject(T, C if self.use_color else None, self.k, self.color_scale))
        dev = s["W1"].device
        data = _Data(torch.as_tensor(T, device=dev), torch.as_tensor(C, device=dev), idx.to(dev))
        out = np.empty_like(T)
        with torch.no_grad():
            for rows in torch.arange(len(T), device=dev).split(batch_size):
                X = self._normalized(data, rows)
                o = self._forward(X, s["W1"], s["b1"], s["W2"], s["b2"])          # (N, B, 3)
                r = o.permute(1, 0, 2) * s["y_std"][:, None] + s["y_mean"]
                out[rows.cpu().numpy()] = (data.T[rows] + r if self.residual else r).cpu().numpy()
        return out[0] if single else out

    def predict_offsets(self, templates, colors=None) -> np.ndarray:
        """``S_P - S_0``: the correction the prior adds to each template (M, N, 3) mm."""
        T = np.asarray(templates, dtype=np.float32)
        return self.predict(templates, colors) - T

    # ------------------------------------------------------------------ save / load
    def save(self, path) -> Path:
        """Write the networks and the configuration with ``torch.save`` (a dict of
        tensors and plain values only, so :meth:`load` can use ``weights_only=True``)."""
        torch = self._torch()
        self._require_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self._state.items()}
        torch.save({"format": _FORMAT, "config": self.get_config(), "state": state,
                    "best_epoch": torch.as_tensor(self.best_epoch_),
                    "history": {k: list(map(float, v)) for k, v in (self.history_ or {}).items()}}, path)
        return path

    @classmethod
    def load(cls, path, device: str = "cpu") -> "MRFPrior":
        """Read a prior written by :meth:`save` (``torch.load(..., weights_only=True)``)."""
        import torch

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no MRF prior at {path}")
        d = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ValueError(f"{path} is not an MRF prior saved by MRFPrior.save (format {_FORMAT})")
        prior = cls(**d["config"], device=device, progress=False)
        prior._state = dict(d["state"])
        prior._delta = torch.as_tensor(delta_weights(prior.k), device=device)
        nb = prior._state["neighbours"]
        prior.neighbours_ = nb.numpy() if prior.neighbours == "fixed" else None
        prior.best_epoch_ = d["best_epoch"].numpy()
        prior.history_ = d.get("history")
        return prior


# ---------------------------------------------------------------------------
# MRFGC: the 3DMM landmark fit (GC) cascaded with the learnable MRF (Table III)
# ---------------------------------------------------------------------------

class MRFGC:
    """The paper's ablation "MRFGC" (Table III, Fig. 6): the naive cascade of the
    3DMM landmark fit -- GC, the personalised template ``S_0`` with its colours
    (:func:`dualface_lite.fitting.fit_landmarks`) -- and the learnable MRF prior.
    No image network: ``S = T_P(S_0)``.

    >>> gc = MRFGC(prior, model)
    >>> S = gc.reconstruct(landmarks, image)          # (N, 3) mm, object frame
    >>> S = gc.from_templates(S0, colors)             # (M, N, 3), templates already fitted
    """

    name = "MRFGC"

    def __init__(self, prior: MRFPrior, model=None):
        if not isinstance(prior, MRFPrior):
            raise TypeError(f"prior must be an MRFPrior, got {type(prior).__name__}")
        prior._require_fitted()
        self.prior = prior
        self.model = model

    def from_templates(self, templates, colors=None) -> np.ndarray:
        """``T_P(S_0)`` for templates (M, N, 3) (or one (N, 3)) and their colours."""
        return self.prior.predict(templates, colors)

    def from_fits(self, fits) -> np.ndarray:
        """``T_P(S_0)`` for one :class:`~dualface_lite.fitting.Fit` (-> (N, 3)) or a list of them (-> (M, N, 3))."""
        single = hasattr(fits, "vertices")
        fs = [fits] if single else list(fits)
        if not fs or not all(hasattr(f, "vertices") and hasattr(f, "colors") for f in fs):
            raise TypeError("fits must be a Fit (dualface_lite.fit_landmarks) or a non-empty list of them")
        out = self.prior.predict(np.stack([f.vertices for f in fs]), np.stack([f.colors for f in fs]))
        return out[0] if single else out

    def reconstruct(self, landmarks, image, **fit_kwargs) -> np.ndarray:
        """Photo + 68 landmarks -> face (N, 3): the landmark fit, then the prior."""
        from .fitting import fit_landmarks
        from .model import load_model

        if self.model is None:
            self.model = load_model()
        return self.from_fits(fit_landmarks(self.model, landmarks, image=image, **fit_kwargs))

    __call__ = from_templates


def mrfgc(prior: MRFPrior, fits_or_templates, colors=None) -> np.ndarray:
    """MRFGC as a function: ``prior`` applied to landmark-fit templates.

    ``fits_or_templates`` is a :class:`~dualface_lite.fitting.Fit`, a list of
    them, or an array of templates (M, N, 3) / (N, 3) with ``colors`` alike.
    """
    gc = MRFGC(prior)
    if hasattr(fits_or_templates, "vertices") or (isinstance(fits_or_templates, (list, tuple))
                                                   and fits_or_templates
                                                   and hasattr(fits_or_templates[0], "vertices")):
        if colors is not None:
            raise ValueError("colors must be None when Fit objects are given (they carry their colours)")
        return gc.from_fits(fits_or_templates)
    return gc.from_templates(fits_or_templates, colors)
