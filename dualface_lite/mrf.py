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
(III-B-4).

The building blocks, each public so that it can be called on its own
(:class:`MRFPrior` strings them together)::

    knn_fixed / knn_per_subject     B(v_0^i): the vertex, then its K nearest by w     (III-B-3)
    delta_weights                   delta_k, the rank weights of F^i                   (III-B-3)
    visible_color_mean, impute_colors   C(v_0) where the photo did not see the vertex
    features                        F^i for every vertex of every face, (M, N, D)      (III-B-3)
    feature_scaling, offset_scaling the per-vertex normalisation of inputs and targets
    VertexNetworks                  the N networks T_P^i as batched tensors            (III-B-4)
    train_step, adamw               one minibatch step of all N networks              (III-B-4)
    train_networks                  epochs, validation, early stopping per vertex

:class:`VertexNetworks` stores the ``N`` networks as ``W1 (N, D, H)``,
``b1 (N, H)``, ``W2 (N, H, 3)``, ``b2 (N, 3)`` and evaluates them with one batched
matrix product (``torch.baddbmm``) for all vertices at once; the loss is a sum
over the networks and AdamW updates each entry independently, so this *is* N
independent networks trained side by side -- never a Python loop over vertices.

Decisions the paper leaves open. Each was measured by ``benchmarks/bench_mrf.py``
on the kit's ``lite`` set (trained on the NICP ground truth ``S_hat``, one change
at a time from the default, mean vertex error on the test set); the figures are
in ``benchmarks/README.md`` and ``benchmarks/results/mrf.json``.

* **Neighbour order.** The paper searches the neighbours of every template anew,
  so the k-th input slot holds a different vertex from one face to the next,
  while a per-vertex network needs its inputs to mean the same thing for every
  face. The default (``neighbours="fixed"``) searches the K nearest neighbours
  once, with the paper's distance ``w`` on the *mean training template* (mean
  positions, mean visible colours), sorted by ``w``; every face then fills slot
  k with the same vertex. ``neighbours="per_subject"`` is the literal reading
  (K-NN per template, slots by rank); it is measurably worse.
* **The vertex itself and delta.** With ``delta = 1 - k/K`` the K-th neighbour
  gets weight 0, i.e. it is not used at all (an off-by-one, or the vertex
  itself counted as its own first neighbour). The kit puts the vertex itself
  in slot ``k = 0`` and its K nearest *other* vertices in slots ``1..K``, with
  ``delta_k = 1 - k/(K+1)`` (:func:`delta_weights`): weights 1, 10/11, ...,
  1/11 for K = 10, all used, decreasing linearly as in the paper; ``K`` keeps
  its meaning. As in the paper's Fig. 3, K hardly matters.
* **Colour scale.** ``w`` adds millimetres to colour values in [0, 1], so the
  units decide how much colour counts. ``color_scale`` is the number of mm one
  unit of rgb counts as in ``w`` (:data:`DEFAULT_COLOR_SCALE`, chosen on the
  validation split; small scales only break near-ties between neighbours).
* **Colour features.** ``use_color=True`` (the paper's ``[v, C(v)]``) or
  ``use_color=False`` (xyz only). What colour can tell here is the skin tone,
  to which the synthetic population ties its broad mid-face shape
  (:class:`dualface_lite.synth.Population`, ``tone_gain``).
* **Invisible vertices.** The paper sets their colour to 0 (black). 0 means
  "unknown" here, not "black": such a vertex (all three channels exactly 0 --
  :func:`dualface_lite.fitting.fit_landmarks` writes exactly that) gets the
  vertex's mean colour over the training faces where it was visible
  (:func:`visible_color_mean`, :func:`impute_colors`), for the neighbour search
  and for the features alike.
* **Residual targets, relative features.** A network predicts the *offset*
  ``v_hat^i - v_0^i`` from the template and sees neighbour positions relative
  to its own vertex, ``v_0^j - v_0^i`` (translation invariant). The output is
  ``v_0^i + T_P^i(F^i)``; a network that ignores its input returns
  ``v_0^i + mean offset``. ``relative=False`` and ``residual=False`` are the
  paper's wording (absolute positions in, target coordinates out).
* **Aligned targets.** ``align_targets=True`` rigidly aligns each target face
  onto its template before training (:func:`dualface_lite.metrics.align_batch`),
  so the networks learn shape, not the pose error of the ground truth -- the
  error is measured after rigid alignment anyway
  (:func:`dualface_lite.metrics.mean_vertex_error`).
* **Normalisation.** Per vertex: the offsets are centred (mean over the
  training faces) and divided by their rms (:func:`offset_scaling`); the
  features are centred per column and divided by one rms per *block* (all
  position columns, all colour columns) of the vertex (:func:`feature_scaling`).
  One scale per block -- not per column -- so that the paper's delta survives:
  a z-score per column would cancel any constant factor on a column, i.e.
  delta exactly (``normalize="column"``).
* **Training.** AdamW (decoupled weight decay 10, a strong shrinkage of each
  small network: a few hundred training faces per 3,000 weights) on
  minibatches of faces, the summed squared error of all vertices, a validation
  split (``val_fraction`` of the training faces) and early stopping *per
  vertex*: each network keeps the weights of its own best validation epoch;
  training stops when the mean validation error of the kept networks has not
  improved by ``tol`` for ``patience`` epochs (``early_stopping="global"``: one
  epoch for all). Everything random (initialisation, split, minibatches) comes
  from one ``torch.Generator`` seeded by ``seed``: the same seed gives the same
  numbers.
* **Speed.** One training step evaluates all N networks with two
  ``torch.baddbmm`` calls on the minibatch's features, precomputed once as a
  (N, M, D) float32 tensor (``4 N M D`` bytes, D = 6 (K + 1): about 330 MB for
  the lite set's 360 templates at K = 10, 2.5 GB for the paper's 2,800). A step of 32 faces is about
  1.6 GFLOP. The benchmark also trains a few vertices one at a time in a
  Python loop (the same features, weights, minibatches and AdamW) and
  extrapolates: the loop reproduces the batched networks and is more than an
  order of magnitude slower on a CPU. ``device="cuda"`` moves everything to a
  GPU, where the batched step gets much faster and the loop does not.

What the prior learns on the kit's data: most of its gain over ``S_0`` is the
per-vertex mean correction (the networks' bias alone, ``S_0 + mean offset``):
the synthetic population's mean lies outside the morphable model's (as real
people lie outside a 3DMM's few hundred scans, the paper's own motivation). The
local neighbourhood and colour add a smaller part on top: what the landmark fit
got wrong is mostly not visible in ``S_0``'s local shape.

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
import torch

from . import checks
from .metrics import align_batch, residual_targets

__all__ = ["MRFPrior", "MRFGC", "mrfgc", "DEFAULT_COLOR_SCALE",
           "delta_weights", "knn_fixed", "knn_per_subject", "visible_color_mean", "impute_colors",
           "features", "feature_scaling", "offset_scaling",
           "VertexNetworks", "adamw", "train_step", "train_networks", "TrainingSet"]

#: mm per unit of rgb in the neighbour distance ``w`` (chosen on validation, see ``benchmarks/bench_mrf.py``)
DEFAULT_COLOR_SCALE = 5.0
_FORMAT = "dualface_lite.mrf/1"
_NEIGHBOURS = ("fixed", "per_subject")
_NORMALIZE = ("block", "column")
_ACTIVATIONS = ("relu", "tanh")
_EARLY = ("vertex", "global")


def _posint(x, name: str, lo: int = 1) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {x!r}")
    return int(x)


# ---------------------------------------------------------------------------
# the local graph (III-B-3)
# ---------------------------------------------------------------------------

def delta_weights(k: int) -> np.ndarray:
    """The rank weights ``delta`` of ``F^i`` (III-B-3), float32 (k + 1,): slot 0 (the
    vertex itself) .. slot k (its k-th neighbour), ``delta_s = 1 - s/(k + 1)`` -- the
    paper's ``1 - k/K`` shifted by one slot so that the K-th neighbour keeps a
    positive weight (see the module)."""
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
    """Neighbour slots (N, k+1) int64 of one template ``vertices`` (N, 3) mm: the
    vertex itself, then its ``k`` nearest other vertices by (III-B-3)
    ``w^{i,j} = ||[v_i, s C_i] - [v_j, s C_j]||^2`` (``s = color_scale``, ``colors``
    (N, 3) rgb in [0, 1]), nearest first. ``colors=None``: xyz only."""
    from scipy.spatial import cKDTree

    v = np.asarray(vertices)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape (N, 3), got {v.shape}")
    if not 1 <= k < v.shape[0]:
        raise ValueError(f"k must be in [1, {v.shape[0] - 1}] for {v.shape[0]} vertices, got {k}")
    if colors is not None and np.shape(colors) != v.shape:
        raise ValueError(f"colors must have the shape of vertices {v.shape}, got {np.shape(colors)}")
    p = _points(v, colors, color_scale)
    _, idx = cKDTree(p).query(p, k=k + 1)
    nb = _drop_self(idx.astype(np.int64), k)
    return np.concatenate([np.arange(len(v))[:, None], nb], axis=1)


def knn_per_subject(templates, colors=None, k: int = 10, color_scale: float = DEFAULT_COLOR_SCALE) -> np.ndarray:
    """(M, N, k+1): :func:`knn_fixed` for every template (M, N, 3) separately (the
    paper's literal reading: each ``S_0`` has its own neighbourhoods)."""
    t = np.asarray(templates)
    if t.ndim != 3 or t.shape[2] != 3:
        raise ValueError(f"templates must have shape (M, N, 3), got {t.shape}")
    return np.stack([knn_fixed(t[m], None if colors is None else colors[m], k, color_scale)
                     for m in range(t.shape[0])])


def visible_color_mean(colors) -> np.ndarray:
    """Each vertex's mean colour (N, 3) float32 over the faces ``colors`` (M, N, 3)
    where it was seen; a vertex is unseen in a face when its colour is exactly 0 (the
    paper's convention). A vertex never seen gets the mean of all seen colours (0.5
    grey if nothing was seen at all)."""
    C = np.asarray(colors, dtype=np.float32)
    if C.ndim != 3 or C.shape[2] != 3 or C.shape[0] == 0:
        raise ValueError(f"colors must have shape (M, N, 3) with M >= 1, got {C.shape}")
    vis = ~np.all(C == 0, axis=2)                                        # (M, N)
    cnt = vis.sum(0)
    fallback = C[vis].mean(0) if vis.any() else np.full(3, 0.5, np.float32)
    return np.where(cnt[:, None] > 0, (C * vis[..., None]).sum(0) / np.maximum(cnt, 1)[:, None],
                    fallback[None]).astype(np.float32)


def impute_colors(colors, color_mean) -> np.ndarray:
    """``colors`` (M, N, 3) float32 with every unseen vertex (colour exactly 0) set to
    its entry of ``color_mean`` (N, 3) (from :func:`visible_color_mean`)."""
    C = np.asarray(colors, dtype=np.float32)
    cm = np.asarray(color_mean, dtype=np.float32)
    if C.ndim != 3 or C.shape[2] != 3:
        raise ValueError(f"colors must have shape (M, N, 3), got {C.shape}")
    if cm.shape != C.shape[1:]:
        raise ValueError(f"color_mean must have shape {C.shape[1:]} (N, 3), got {cm.shape}")
    invisible = np.all(C == 0, axis=2)
    return np.where(invisible[..., None], cm[None], C).astype(np.float32)


def features(templates, colors, neighbours, *, relative: bool = True) -> torch.Tensor:
    """The paper's feature vectors ``F^i`` (III-B-3) of every vertex of every face.

    Parameters
    ----------
    templates : (B, N, 3) ``S_0`` (mm), a numpy array or a float32 tensor.
    colors : (B, N, 3) their colours ``C(v_0)`` in [0, 1] (unseen ones already
        imputed, :func:`impute_colors`), or ``None`` for xyz-only features.
    neighbours : (N, S) slots from :func:`knn_fixed` (the same for every face) or
        (B, N, S) from :func:`knn_per_subject`; slot 0 is the vertex itself and
        ``S = K + 1``.
    relative : neighbour positions relative to the vertex, ``v_0^j - v_0^i``
        (default), or absolute ``v_0^j`` as the paper writes ``f^{i,j}``.

    Returns
    -------
    torch.Tensor
        A float32 tensor (B, N, D) on the device of ``templates``:
        ``[delta_0 p_0, ..., delta_K p_K, delta_0 c_0, ..., delta_K c_K]`` with
        ``p_s, c_s`` the position (relative or not) and colour of slot ``s`` and
        ``delta`` = :func:`delta_weights` ``(K)``, so ``D = 6 S`` (``3 S`` without colours).
    """
    T = torch.as_tensor(np.asarray(templates, np.float32) if not torch.is_tensor(templates) else templates)
    if T.ndim != 3 or T.shape[2] != 3:
        raise ValueError(f"templates must have shape (B, N, 3), got {tuple(T.shape)}")
    B, N, _ = T.shape
    C = None
    if colors is not None:
        C = torch.as_tensor(np.asarray(colors, np.float32) if not torch.is_tensor(colors) else colors,
                            device=T.device)
        if C.shape != T.shape:
            raise ValueError(f"colors must have the shape of templates {tuple(T.shape)}, got {tuple(C.shape)}")
    idx = torch.as_tensor(neighbours, device=T.device)
    if idx.dtype not in (torch.int64, torch.int32) or idx.ndim not in (2, 3) or idx.shape[-2] != N \
            or (idx.ndim == 3 and idx.shape[0] != B) or idx.shape[-1] < 2:
        raise ValueError(f"neighbours must be integer slots (N, S) or (B, N, S) with N = {N}, B = {B}, S >= 2, "
                         f"got {idx.dtype} {tuple(idx.shape)}")
    if int(idx.min()) < 0 or int(idx.max()) >= N:
        raise ValueError(f"neighbours must index the {N} vertices, got values in [{int(idx.min())}, {int(idx.max())}]")
    idx = idx.long()
    if idx.ndim == 2:                               # fixed: (N, S), the same for every face
        P = T[:, idx]                               # (B, N, S, 3)
        Q = C[:, idx] if C is not None else None
    else:                                           # per subject: (B, N, S)
        flat = idx.reshape(B, -1, 1).expand(-1, -1, 3)
        P = torch.gather(T, 1, flat).reshape(B, N, -1, 3)
        Q = torch.gather(C, 1, flat).reshape(B, N, -1, 3) if C is not None else None
    if relative:
        P = P - T[:, :, None, :]
    d = torch.as_tensor(delta_weights(idx.shape[-1] - 1), device=T.device)[None, None, :, None]
    parts = [(P * d).reshape(B, N, -1)]
    if Q is not None:
        parts.append((Q * d).reshape(B, N, -1))
    return torch.cat(parts, dim=2)


def feature_scaling(F: torch.Tensor, k: int, mode: str = "block") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-vertex normalisation of the features ``F`` (M, N, D) of the training faces.

    Returns ``(mean, inv_scale)``, both (N, D): the networks see
    ``(F - mean) * inv_scale``. ``mode="block"`` (default): one rms per vertex for
    all position columns and one for all colour columns, so that the rank weights
    ``delta`` survive; ``"column"``: one per column (a z-score, which cancels
    ``delta``). ``k``: the neighbours per vertex (``D`` is ``6 (k+1)`` with colours,
    ``3 (k+1)`` without). A constant column gets ``inv_scale`` 0.
    """
    if mode not in _NORMALIZE:
        raise ValueError(f"mode must be one of {_NORMALIZE}, got {mode!r}")
    S = _posint(k, "k") + 1
    if not torch.is_tensor(F) or F.ndim != 3 or F.shape[2] not in (3 * S, 6 * S) or F.shape[0] < 1:
        raise ValueError(f"F must be a tensor (M, N, D) with M >= 1 and D = {3 * S} or {6 * S} for k = {k}, "
                         f"got {tuple(F.shape) if torch.is_tensor(F) else type(F).__name__}")
    x_mean = F.mean(0)
    Fc = F - x_mean
    if mode == "column":
        x_std = Fc.pow(2).mean(0).sqrt()
    else:
        x_std = torch.empty_like(x_mean)
        blocks = [slice(0, 3 * S)] + ([slice(3 * S, 6 * S)] if F.shape[2] == 6 * S else [])
        for b in blocks:
            x_std[:, b] = Fc[:, :, b].pow(2).mean((0, 2)).sqrt()[:, None]
    x_inv = torch.where(x_std > 1e-6, 1.0 / x_std.clamp_min(1e-6), torch.zeros_like(x_std))
    return x_mean, x_inv


def offset_scaling(R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-vertex normalisation of the targets ``R`` (M, N, 3) of the training faces
    (offsets ``v_hat - v_0`` in mm). Returns ``(mean (N, 3), scale (N,))``, the rms
    per coordinate around the mean (at least 1e-3 mm): the networks learn
    ``(R - mean) / scale``."""
    if not torch.is_tensor(R) or R.ndim != 3 or R.shape[2] != 3 or R.shape[0] < 1:
        raise ValueError(f"R must be a tensor (M, N, 3) with M >= 1, "
                         f"got {tuple(R.shape) if torch.is_tensor(R) else type(R).__name__}")
    y_mean = R.mean(0)
    y_std = (R - y_mean).pow(2).sum(2).mean(0).div(3).sqrt().clamp_min(1e-3)
    return y_mean, y_std


# ---------------------------------------------------------------------------
# the N networks (III-B-4)
# ---------------------------------------------------------------------------

class VertexNetworks:
    """``N`` networks with one hidden layer (III-B-4), stored as batched tensors.

    Network ``i`` maps the normalised features ``x`` (D,) of vertex ``i`` to its
    normalised offset (3,)::

        T_P^i(x) = act(x W1[i] + b1[i]) W2[i] + b2[i]

    with ``W1 (N, D, H)``, ``b1 (N, H)``, ``W2 (N, H, 3)``, ``b2 (N, 3)``; ``act`` is
    ``"relu"`` (default) or ``"tanh"``. :meth:`forward` evaluates all N at once
    with two ``torch.baddbmm`` calls.

    >>> nets = VertexNetworks.init(3448, 66, 50, generator=torch.Generator().manual_seed(0))
    >>> out = nets(X)                     # X (N, B, D) -> (N, B, 3)
    """

    def __init__(self, W1, b1, W2, b2, activation: str = "relu"):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
        ok = all(torch.is_tensor(p) for p in (W1, b1, W2, b2)) and W1.ndim == 3
        if ok:
            N, D, H = W1.shape
            ok = b1.shape == (N, H) and W2.shape == (N, H, 3) and b2.shape == (N, 3)
        if not ok:
            shapes = [tuple(p.shape) if torch.is_tensor(p) else type(p).__name__ for p in (W1, b1, W2, b2)]
            raise ValueError(f"W1, b1, W2, b2 must be tensors (N, D, H), (N, H), (N, H, 3), (N, 3), got {shapes}")
        self.W1, self.b1, self.W2, self.b2 = W1, b1, W2, b2
        self.activation = activation

    @classmethod
    def init(cls, n_vertices: int, n_inputs: int, hidden: int, *, generator: torch.Generator | None = None,
             activation: str = "relu", device="cpu", requires_grad: bool = True) -> "VertexNetworks":
        """Fresh networks: weights uniform in +-1/sqrt(fan_in) (as ``torch.nn.Linear``),
        zero biases; drawn on the CPU from ``generator`` (``W1``, then ``W2``) and
        moved to ``device``."""
        n, D, H = _posint(n_vertices, "n_vertices"), _posint(n_inputs, "n_inputs"), _posint(hidden, "hidden")
        W1 = (torch.rand(n, D, H, generator=generator) * 2 - 1) / math.sqrt(D)
        W2 = (torch.rand(n, H, 3, generator=generator) * 2 - 1) / math.sqrt(H)
        params = [p.to(device).requires_grad_(requires_grad)
                  for p in (W1, torch.zeros(n, H), W2, torch.zeros(n, 3))]
        return cls(*params, activation=activation)

    @property
    def n_vertices(self) -> int:
        return int(self.W1.shape[0])

    @property
    def n_inputs(self) -> int:
        return int(self.W1.shape[1])

    @property
    def hidden(self) -> int:
        return int(self.W1.shape[2])

    def parameters(self) -> list:
        """``[W1, b1, W2, b2]`` (for an optimiser)."""
        return [self.W1, self.b1, self.W2, self.b2]

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """All N networks at once: ``X`` (N, B, D) -> (N, B, 3); slice ``i`` is network
        ``i`` applied to the B feature vectors of vertex ``i``."""
        if X.ndim != 3 or X.shape[0] != self.n_vertices or X.shape[2] != self.n_inputs:
            raise ValueError(f"X must have shape (N, B, D) = ({self.n_vertices}, B, {self.n_inputs}), "
                             f"got {tuple(X.shape)}")
        h = torch.baddbmm(self.b1[:, None, :], X, self.W1)
        h = torch.relu(h) if self.activation == "relu" else torch.tanh(h)
        return torch.baddbmm(self.b2[:, None, :], h, self.W2)

    __call__ = forward

    def clone(self) -> "VertexNetworks":
        """A detached copy (no gradients)."""
        return VertexNetworks(*(p.detach().clone() for p in self.parameters()), activation=self.activation)

    def __repr__(self) -> str:
        return (f"VertexNetworks(N={self.n_vertices}, D={self.n_inputs}, H={self.hidden}, "
                f"activation={self.activation!r})")


def adamw(params, lr: float = 3e-3, weight_decay: float = 10.0) -> torch.optim.Optimizer:
    """``torch.optim.AdamW`` (decoupled weight decay) over ``params``; the fused kernel
    where this torch has it (on a CPU several times faster for the ~10^7 weights of
    all N networks; the same update rule)."""
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def train_step(networks: VertexNetworks, optimizer: torch.optim.Optimizer, X: torch.Tensor,
               Y: torch.Tensor) -> torch.Tensor:
    """One minibatch step of all N networks (III-B-4): the loss is the sum over the
    networks of each one's mean squared error on its vertex's B faces,
    ``sum_i mean_b ||T_P^i(X[i, b]) - Y[i, b]||^2 / 3``, then one ``optimizer`` step.

    X : (N, B, D) normalised features; Y : (N, B, 3) normalised targets.
    Returns the squared errors (N, B, 3) before the step (detached).
    """
    if Y.shape != X.shape[:2] + (3,):
        raise ValueError(f"Y must have shape {tuple(X.shape[:2]) + (3,)} (N, B, 3), got {tuple(Y.shape)}")
    err = (networks(X) - Y).pow(2)                                         # (N, B, 3)
    loss = err.mean((1, 2)).sum()                                          # sum over the N networks
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return err.detach()


def train_networks(networks: VertexNetworks, X: torch.Tensor, Y: torch.Tensor, train_rows, val_rows, *,
                   generator: torch.Generator | None = None, lr: float = 3e-3, weight_decay: float = 10.0,
                   batch_size: int = 32, max_epochs: int = 300, patience: int = 10, tol: float = 1e-3,
                   early_stopping: str = "vertex", target_scale: torch.Tensor | None = None,
                   progress: bool = False) -> tuple[VertexNetworks, torch.Tensor, dict]:
    """Train ``networks`` (in place) with AdamW on minibatches of faces, early stopping on validation faces.

    Parameters
    ----------
    X : (N, M, D) normalised features of M faces, vertex-major; Y : (N, M, 3)
        normalised targets. train_rows, val_rows : indices of the training and
        validation faces (1-D integer tensors or arrays).
    generator : draws one permutation of ``train_rows`` per epoch.
    early_stopping : ``"vertex"`` -- each network keeps the weights of the epoch of
        its own lowest validation error; ``"global"`` -- all keep the epoch of the
        lowest mean validation error. Training stops when the score (the mean
        validation error of the kept networks, resp. of the epoch) has not dropped
        by a fraction ``tol`` for ``patience`` epochs, or after ``max_epochs``.
    target_scale : (N,) the targets' scale per vertex (:func:`offset_scaling`), so
        that the history is in mm^2 (``None``: in normalised units).

    Returns
    -------
    tuple
        ``(best, best_epoch, history)``: the kept networks (a detached copy;
        ``networks`` itself ends at the last epoch), the kept epoch of each network
        (N,), and per epoch ``train_mm2`` (mean over the epoch's minibatches),
        ``val_mm2`` (the networks of this epoch), ``best_val_mm2`` (the kept ones),
        ``n_improved`` and ``seconds`` -- mean squared vertex distance over vertices
        and faces.
    """
    from tqdm.auto import tqdm

    N = networks.n_vertices
    if X.ndim != 3 or X.shape[0] != N or X.shape[2] != networks.n_inputs:
        raise ValueError(f"X must have shape (N, M, D) = ({N}, M, {networks.n_inputs}), got {tuple(X.shape)}")
    if Y.shape != X.shape[:2] + (3,):
        raise ValueError(f"Y must have shape {tuple(X.shape[:2]) + (3,)} (N, M, 3), got {tuple(Y.shape)}")
    dev, M = X.device, X.shape[1]
    tr_rows = torch.as_tensor(train_rows, device=dev).long().reshape(-1)
    va_rows = torch.as_tensor(val_rows, device=dev).long().reshape(-1)
    for name, r in (("train_rows", tr_rows), ("val_rows", va_rows)):
        if len(r) == 0 or int(r.min()) < 0 or int(r.max()) >= M:
            raise ValueError(f"{name} must be non-empty indices into the {M} faces")
    if early_stopping not in _EARLY:
        raise ValueError(f"early_stopping must be one of {_EARLY}, got {early_stopping!r}")
    batch_size, max_epochs = _posint(batch_size, "batch_size"), _posint(max_epochs, "max_epochs")
    patience = _posint(patience, "patience")
    if not 0 <= tol < 1:
        raise ValueError(f"tol must be in [0, 1), got {tol!r}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    y2 = torch.ones(N, device=dev) if target_scale is None else torch.as_tensor(target_scale, device=dev).pow(2)
    if y2.shape != (N,):
        raise ValueError(f"target_scale must have shape ({N},), got {tuple(y2.shape)}")

    opt = adamw(networks.parameters(), lr, weight_decay)
    best = networks.clone()
    best_val = torch.full((N,), float("inf"), device=dev)
    best_epoch = torch.zeros(N, dtype=torch.long, device=dev)
    Xva, Yva = X[:, va_rows], Y[:, va_rows]
    history = {"train_mm2": [], "val_mm2": [], "best_val_mm2": [], "n_improved": [], "seconds": []}
    stale, best_score = 0, float("inf")
    t0 = time.perf_counter()
    bar = tqdm(total=max_epochs, desc="MRF prior", unit="epoch", disable=not progress, leave=False)
    for epoch in range(max_epochs):
        order = tr_rows[torch.randperm(len(tr_rows), generator=generator).to(dev)]
        tot = torch.zeros((), device=dev)
        for rows in order.split(batch_size):
            err = train_step(networks, opt, X[:, rows], Y[:, rows])
            tot += (err.mean((1, 2)) * y2).mean() * len(rows)
        with torch.no_grad():
            v = (networks(Xva) - Yva).pow(2).mean((1, 2))                 # (N,) per network
            if early_stopping == "vertex":
                improved = v < best_val
            else:   # one epoch for all: the one with the lowest mean validation error
                improved = torch.full_like(v, bool(v.mean() < best_val.mean()), dtype=torch.bool)
            best_val = torch.where(improved, v, best_val)
            best_epoch = torch.where(improved, torch.full_like(best_epoch, epoch), best_epoch)
            for b, p in zip(best.parameters(), networks.parameters()):
                b[improved] = p.detach()[improved]      # only the improved networks' rows are copied
        n_imp = int(improved.sum())
        history["train_mm2"].append(float(tot) / len(tr_rows) * 3)
        history["val_mm2"].append(float((v * y2).mean()) * 3)
        history["best_val_mm2"].append(float((best_val * y2).mean()) * 3)
        history["n_improved"].append(n_imp)
        history["seconds"].append(time.perf_counter() - t0)
        bar.set_postfix(val_mm2=f"{history['val_mm2'][-1]:.3f}", improved=n_imp, refresh=False)
        bar.update(1)
        score = history["best_val_mm2"][-1] if early_stopping == "vertex" else history["val_mm2"][-1]
        if score < best_score * (1 - tol):
            best_score, stale = score, 0
        else:
            stale += 1
        if stale >= patience:
            bar.reset(total=epoch + 1)   # stopped early: the bar ends full, not as an interrupted run
            bar.update(epoch + 1)
            break
    bar.close()
    return best, best_epoch, history


@dataclass
class TrainingSet:
    """What :meth:`MRFPrior.prepare` hands to :func:`train_networks`: the normalised
    features ``X`` (N, M, D) and targets ``Y`` (N, M, 3) of all M faces, the rows of
    the training and validation faces, and the generator (after the split, before
    the initial weights and the epochs' permutations)."""

    X: torch.Tensor
    Y: torch.Tensor
    train_rows: torch.Tensor
    val_rows: torch.Tensor
    generator: torch.Generator


# ---------------------------------------------------------------------------
# the prior: the building blocks in a row
# ---------------------------------------------------------------------------

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
        split of ``val_fraction`` of the training faces (:func:`train_networks`).
    early_stopping : ``"vertex"`` (default) -- each network keeps its own best
        epoch; ``"global"`` -- one epoch, the best mean, for all.
    device : torch device for training and prediction ("cpu", or "cuda").
    progress : show a tqdm bar while training.

    Notes
    -----
    :meth:`fit` runs :meth:`prepare` (split, colours, neighbours, features,
    normalisation), :meth:`VertexNetworks.init` and :func:`train_networks`.
    After it: ``networks_`` (:class:`VertexNetworks`), ``neighbours_`` (N, k+1)
    for ``"fixed"``, ``validation_mask_`` (M,), ``history_`` (per-epoch
    train/validation loss in mm^2), ``best_epoch_`` (N,), ``fit_seconds_`` and
    the per-vertex statistics ``mean_template_``, ``color_mean_``,
    ``feature_mean_``, ``feature_inv_scale_``, ``offset_mean_``, ``offset_scale_``.

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
        self.k = _posint(k, "k")
        self.hidden = _posint(hidden, "hidden")
        self.seed = _posint(seed, "seed", 0)
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
        self.batch_size = _posint(batch_size, "batch_size")
        self.max_epochs = _posint(max_epochs, "max_epochs")
        self.patience = _posint(patience, "patience")
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
        self.validation_mask_ = None
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

    # ------------------------------------------------------------------ what fit learned
    @property
    def networks_(self) -> VertexNetworks:
        """The N trained networks (:class:`VertexNetworks`; the prior's own tensors, not a copy)."""
        self._require_fitted()
        s = self._state
        return VertexNetworks(s["W1"], s["b1"], s["W2"], s["b2"], activation=self.activation)

    def _stat(self, key: str) -> np.ndarray:
        self._require_fitted()
        return self._state[key].detach().cpu().numpy()

    @property
    def mean_template_(self) -> np.ndarray:
        """(N, 3) the mean training template (where the ``"fixed"`` neighbours were searched)."""
        return self._stat("mean_template")

    @property
    def color_mean_(self) -> np.ndarray:
        """(N, 3) each vertex's mean visible colour over the training faces (:func:`visible_color_mean`)."""
        return self._stat("color_mean")

    @property
    def feature_mean_(self) -> np.ndarray:
        """(N, D) the features' mean over the training faces (:func:`feature_scaling`)."""
        return self._stat("x_mean")

    @property
    def feature_inv_scale_(self) -> np.ndarray:
        """(N, D) the features' inverse scale (:func:`feature_scaling`)."""
        return self._stat("x_inv")

    @property
    def offset_mean_(self) -> np.ndarray:
        """(N, 3) the mean target offset over the training faces (mm; :func:`offset_scaling`):
        what every network outputs, in mm, when it ignores its input."""
        return self._stat("y_mean")

    @property
    def offset_scale_(self) -> np.ndarray:
        """(N,) the targets' rms per coordinate around their mean (mm; :func:`offset_scaling`)."""
        return self._stat("y_std")

    # ------------------------------------------------------------------ input checks
    @staticmethod
    def _check(x, name: str, n: int | None = None, allow_single: bool = False) -> np.ndarray:
        a = checks.point_batches(x, name, dtype=np.float32, allow_single=allow_single)
        if n is not None and a.shape[1] != n:
            raise ValueError(f"{name} has {a.shape[1]} vertices, the prior was trained on {n}")
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
    def _features(self, T, C, idx) -> torch.Tensor:
        """Raw features (B, N, D) with this prior's settings (:func:`features`)."""
        return features(T, C if self.use_color else None, idx, relative=self.relative)

    def _normalized(self, T, C, idx, rows) -> torch.Tensor:
        """Normalised features (N, B, D) of the faces ``rows`` of the tensors ``T``, ``C``
        (M, N, 3), vertex-major for bmm."""
        F = self._features(T[rows], C[rows], idx if idx.dim() == 2 else idx[rows])
        s = self._state
        return ((F - s["x_mean"]) * s["x_inv"]).permute(1, 0, 2).contiguous()

    def _predict_inputs(self, templates, colors):
        """Checked inputs of a fitted prior as tensors on its device: T, C (imputed), slots."""
        T, C = self._check_inputs(templates, colors, n=self.n_vertices, allow_single=True)
        s = self._state
        C = impute_colors(C, s["color_mean"].cpu().numpy())
        if self.neighbours == "fixed":
            idx = s["neighbours"]
        else:
            idx = torch.as_tensor(knn_per_subject(T, C if self.use_color else None, self.k, self.color_scale))
        dev = s["W1"].device
        return torch.as_tensor(T, device=dev), torch.as_tensor(C, device=dev), idx.to(dev)

    def network_inputs(self, templates, colors=None) -> torch.Tensor:
        """The normalised features (N, M, D) the networks of this fitted prior see for
        the faces ``templates``, ``colors`` (M, N, 3): :func:`features` (with the
        prior's neighbours and imputed colours), then ``(F - feature_mean_) *
        feature_inv_scale_``, vertex-major."""
        self._require_fitted()
        T, C, idx = self._predict_inputs(templates, colors)
        with torch.no_grad():
            return self._normalized(T, C, idx, torch.arange(len(T), device=T.device))

    # ------------------------------------------------------------------ fit
    def fit(self, templates, colors, targets, *, validation=None) -> "MRFPrior":
        """Train the ``N`` vertex networks (paper III-B-4) on ``M`` faces.

        Parameters
        ----------
        templates : (M, N, 3) personalised templates ``S_0`` (mm, object frame).
        colors : (M, N, 3) their vertex colours in [0, 1], exactly 0 where invisible
            (may be ``None`` when ``use_color=False``).
        targets : (M, N, 3) the target faces ``S_hat`` (NICP ground truth) in the same frame.
        validation : optional (M,) bool mask of the faces to hold out for early
            stopping (default: a random ``val_fraction`` of them, from ``seed``).

        Returns
        -------
        MRFPrior
            ``self``, fitted.
        """
        t0 = time.perf_counter()
        data = self.prepare(templates, colors, targets, validation=validation)
        nets = VertexNetworks.init(data.X.shape[0], self.n_inputs, self.hidden, generator=data.generator,
                                   activation=self.activation, device=data.X.device)
        best, best_epoch, history = train_networks(
            nets, data.X, data.Y, data.train_rows, data.val_rows, generator=data.generator, lr=self.lr,
            weight_decay=self.weight_decay, batch_size=self.batch_size, max_epochs=self.max_epochs,
            patience=self.patience, tol=self.tol, early_stopping=self.early_stopping,
            target_scale=self._state["y_std"], progress=self.progress)
        self._state.update(W1=best.W1, b1=best.b1, W2=best.W2, b2=best.b2)
        self.history_ = history
        self.best_epoch_ = best_epoch.cpu().numpy()
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def prepare(self, templates, colors, targets, *, validation=None) -> TrainingSet:
        """Everything :meth:`fit` does before training, as a :class:`TrainingSet`.

        Checks the inputs (as :meth:`fit`), draws the validation split from
        ``seed``, imputes unseen colours (:func:`visible_color_mean` of the
        training faces), finds the neighbours (:func:`knn_fixed` on the mean
        training template, or :func:`knn_per_subject`), aligns the targets
        (:func:`dualface_lite.metrics.align_batch`), computes the features
        (:func:`features`) and the normalisation (:func:`feature_scaling`,
        :func:`offset_scaling`) from the training faces. The prior keeps the
        normalisation and the neighbours (the networks of an earlier fit are
        dropped) and returns the normalised features ``X`` (N, M, D) and offsets
        ``Y`` (N, M, 3) of all M faces.
        """
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
        self.validation_mask_ = val.copy()

        # colours: 0 = invisible -> the vertex's mean visible colour (training faces only)
        color_mean = visible_color_mean(C[tr])
        C = impute_colors(C, color_mean)
        mean_T = T[tr].mean(0)
        cols = C if self.use_color else None
        if self.neighbours == "per_subject":
            idx = knn_per_subject(T, cols, self.k, self.color_scale)
        else:
            idx = knn_fixed(mean_T, color_mean if self.use_color else None, self.k, self.color_scale)
        self.neighbours_ = idx if self.neighbours == "fixed" else None

        # the networks learn shape, not the pose of the ground truth: the targets aligned onto the
        # templates, the residuals as the ResNet's (metrics.residual_targets)
        if self.residual:
            R = residual_targets(T, Y) if self.align_targets else Y - T      # offsets v_hat - v0
        else:
            R = align_batch(Y, T).astype(np.float32) if self.align_targets else Y
        dev = torch.device(self.device)
        Tt, Ct, It = (torch.as_tensor(a, device=dev) for a in (T, C, idx))
        R = torch.as_tensor(R, device=dev)
        tr_rows = torch.as_tensor(np.nonzero(tr)[0], device=dev)
        va_rows = torch.as_tensor(np.nonzero(val)[0], device=dev)

        with torch.no_grad():
            # per-vertex normalisation from the training faces
            F = torch.cat([self._features(Tt[r], Ct[r], It if It.dim() == 2 else It[r])
                           for r in tr_rows.split(64)])                      # (Mtr, N, D)
            x_mean, x_inv = feature_scaling(F, self.k, self.normalize)
            del F
            y_mean, y_std = offset_scaling(R[tr_rows])
            self._state = {"x_mean": x_mean, "x_inv": x_inv, "y_mean": y_mean, "y_std": y_std,
                           "color_mean": torch.as_tensor(color_mean, device=dev),
                           "mean_template": torch.as_tensor(mean_T, device=dev),
                           "neighbours": torch.as_tensor(idx if self.neighbours == "fixed" else
                                                         np.zeros((0, self.k + 1), np.int64), device=dev)}
            # the normalised features of every face, vertex-major (N, M, D), computed once
            X = torch.empty((N, M, self.n_inputs), device=dev)
            for r in torch.arange(M, device=dev).split(64):
                X[:, r] = self._normalized(Tt, Ct, It, r)
            Yn = ((R - y_mean) / y_std[:, None]).permute(1, 0, 2).contiguous()   # (N, M, 3)
        return TrainingSet(X, Yn, tr_rows, va_rows, gen)

    # ------------------------------------------------------------------ predict
    def predict(self, templates, colors=None, *, batch_size: int = 64) -> np.ndarray:
        """The prior's faces ``S_P`` (M, N, 3), mm: ``v_0^i + T_P^i(F^i)`` for every vertex.

        templates, colors : (M, N, 3) as in :meth:`fit` (a single face (N, 3) gives (N, 3)).
        Each face is predicted on its own (the result does not depend on which
        other faces are in the call, nor on their order).
        """
        self._require_fitted()
        single = np.asarray(templates).ndim == 2
        T, C, idx = self._predict_inputs(templates, colors)
        s, nets = self._state, self.networks_
        out = np.empty(tuple(T.shape), dtype=np.float32)
        with torch.no_grad():
            for rows in torch.arange(len(T), device=T.device).split(batch_size):
                o = nets(self._normalized(T, C, idx, rows))                       # (N, B, 3)
                r = o.permute(1, 0, 2) * s["y_std"][:, None] + s["y_mean"]
                out[rows.cpu().numpy()] = (T[rows] + r if self.residual else r).cpu().numpy()
        return out[0] if single else out

    def predict_offsets(self, templates, colors=None) -> np.ndarray:
        """``S_P - S_0``: the correction the prior adds to each template (M, N, 3) mm."""
        T = np.asarray(templates, dtype=np.float32)
        return self.predict(templates, colors) - T

    # ------------------------------------------------------------------ save / load
    def save(self, path) -> Path:
        """Write the networks and the configuration with ``torch.save`` (a dict of
        tensors and plain values only, so :meth:`load` can use ``weights_only=True``)."""
        self._require_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self._state.items()}
        d = {"format": _FORMAT, "config": self.get_config(), "state": state,
             "best_epoch": torch.as_tensor(self.best_epoch_),
             "history": {k: list(map(float, v)) for k, v in (self.history_ or {}).items()},
             "fit_seconds": float(self.fit_seconds_ or 0.0)}
        if self.validation_mask_ is not None:
            d["validation_mask"] = torch.as_tensor(self.validation_mask_)
        torch.save(d, path)
        return path

    @classmethod
    def load(cls, path, device: str = "cpu") -> "MRFPrior":
        """Read a prior written by :meth:`save` (``torch.load(..., weights_only=True)``)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no MRF prior at {path}")
        d = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ValueError(f"{path} is not an MRF prior saved by MRFPrior.save (format {_FORMAT})")
        prior = cls(**d["config"], device=device, progress=False)
        prior._state = dict(d["state"])
        nb = prior._state["neighbours"]
        prior.neighbours_ = nb.numpy() if prior.neighbours == "fixed" else None
        prior.best_epoch_ = d["best_epoch"].numpy()
        prior.history_ = d.get("history")
        prior.fit_seconds_ = d.get("fit_seconds")
        if "validation_mask" in d:
            prior.validation_mask_ = d["validation_mask"].numpy()
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
