"""Evaluating reconstructions as the paper does (section IV-C), and as a reviewer would want it.

The paper reports one number per method, the mean vertex error over the test set (Table III), the
normalised errors of eq. (7) as heat maps (Figs. 4-5, 7-9) and cumulative error distributions (Fig. 6).
The differences between its methods are a tenth of a millimetre, so this module adds what the paper
leaves out:

* the error against the **true surface** as well as against the NICP ground truth ``S_hat`` (the kit's
  synthetic people have both; FRGC only has ``S_hat``);
* **bootstrap confidence intervals** of every mean, and **paired comparisons** between two methods on
  the same faces (the mean difference, its interval, a two-sided p-value). The resampling unit is the
  *person*: two captures of one person are not independent evidence;
* **NoW-style scan-to-mesh** statistics (median / mean / std of the distance from range-scan points to
  the reconstructed surface, after a landmark-based rigid alignment refined by rigid ICP), the form in
  which the field reports reconstructions whose vertices do not correspond to the ground truth's.

Shapes: M faces, N vertices, J methods. Errors are millimetres.

>>> ev = evaluate({"GC": S0, "Ours": S_ours}, test)       # test: a dualface_lite.data.FaceData
>>> ev.table("true")["Ours"]["all"]                        # Interval(mean, low, high)
>>> ev.compare("GC", "Ours", "true")["all"]                # GC - Ours: > 0 if Ours is better
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import checks, metrics
from .metrics import ced

__all__ = ["REFERENCES", "normalized_errors", "normalized_vertex_errors", "vertex_error_maps", "ced",
           "Interval", "Comparison", "bootstrap_ci", "paired_comparison", "ScanDistances", "icp_align",
           "scan_to_mesh", "Evaluation", "evaluate", "gallery"]

#: what a reconstruction is compared with: the NICP ground truth (the paper's) and the true surface
REFERENCES = ("s_hat", "true")


# ---------------------------------------------------------------------------
# eq. (7), error maps and the CED curve
# ---------------------------------------------------------------------------

def normalized_errors(errors) -> np.ndarray:
    """Eq. (7): ``e_ij = 10 * e_hat_ij / max_j e_hat_ij`` for test image ``i`` and method ``j``.

    errors : (I, J) mean errors (one row per test image, one column per compared method).
    Returns (I, J) in [0, 10]: the worst method on each image scores 10.
    """
    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 2 or e.shape[1] < 1:
        raise ValueError(f"errors must have shape (images, methods), got {e.shape}")
    if not np.all(np.isfinite(e)) or (e < 0).any():
        raise ValueError("errors must be finite and non-negative")
    top = e.max(axis=1, keepdims=True)
    if (top == 0).any():
        raise ValueError("an image on which every method has error 0 cannot be normalised")
    return 10.0 * e / top


def normalized_vertex_errors(vertex_errors) -> np.ndarray:
    """Eq. (7) for heat maps: per-vertex errors of the J methods on one image, (J, N), or on I
    images, (I, J, N), divided by the largest of that image (over methods and vertices), x 10.
    One colour scale per image, so that the methods compare at a glance."""
    e = np.asarray(vertex_errors, dtype=np.float64)
    if e.ndim not in (2, 3):
        raise ValueError(f"vertex_errors must have shape (methods, N) or (images, methods, N), got {e.shape}")
    if not np.all(np.isfinite(e)) or (e < 0).any():
        raise ValueError("vertex_errors must be finite and non-negative")
    top = e.max(axis=(-2, -1), keepdims=True)
    if (top == 0).any():
        raise ValueError("an image on which every method has error 0 cannot be normalised")
    return 10.0 * e / top


def vertex_error_maps(pred, gt) -> np.ndarray:
    """Per-vertex errors (M, N) of faces ``pred`` (M, N, 3) against ``gt`` (M, N, 3), each face
    rigidly aligned first (:func:`dualface_lite.metrics.align_batch`); their row means are
    :func:`dualface_lite.metrics.mean_vertex_errors`."""
    a = metrics.align_batch(pred, gt)
    return np.linalg.norm(a - np.asarray(gt, dtype=np.float64), axis=2)


# ---------------------------------------------------------------------------
# bootstrap intervals and paired comparisons
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap confidence interval (``level``, e.g. 0.95)."""

    mean: float
    low: float
    high: float
    level: float = 0.95
    n: int = 0

    def __str__(self) -> str:
        return f"{self.mean:.2f} [{self.low:.2f}, {self.high:.2f}]"

    def to_dict(self) -> dict:
        def num(x):
            return None if np.isnan(x) else x

        return {"mean": self.mean, "low": num(self.low), "high": num(self.high), "level": self.level, "n": self.n}


@dataclass(frozen=True)
class Comparison:
    """Method ``a`` against method ``b`` on the same faces: ``diff`` = mean of ``a - b`` with its
    interval (positive: ``b`` has the smaller error), the two-sided bootstrap p-value of "no
    difference", and the share of faces on which ``b`` is better."""

    a: str
    b: str
    diff: Interval
    p_value: float
    b_better: float

    def __str__(self) -> str:
        return (f"{self.a} - {self.b}: {self.diff.mean:+.3f} mm [{self.diff.low:+.3f}, {self.diff.high:+.3f}], "
                f"p = {self.p_value:.3f}, {self.b} better on {100 * self.b_better:.0f}% of faces")

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "diff": self.diff.to_dict(), "p_value": self.p_value,
                "b_better": self.b_better}


def _bootstrap_means(values: np.ndarray, groups, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot,) means of resampled ``values``: faces drawn with replacement, or whole groups
    (people) drawn with replacement with all their faces."""
    rng = np.random.default_rng(seed)
    if groups is None:
        idx = rng.integers(0, len(values), size=(n_boot, len(values)))
        return values[idx].mean(1)
    g = np.asarray(groups).reshape(-1)
    if g.shape != values.shape:
        raise ValueError(f"groups must have one entry per value, shape {values.shape}, got {g.shape}")
    _, inv = np.unique(g, return_inverse=True)
    sums = np.bincount(inv, weights=values)
    counts = np.bincount(inv).astype(np.float64)
    idx = rng.integers(0, len(sums), size=(n_boot, len(sums)))
    return sums[idx].sum(1) / counts[idx].sum(1)


def _check_values(values, name: str = "values") -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size < 2 or not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be a 1-D array of at least 2 finite values, got shape {v.shape}")
    return v


def _check_level(level: float, n_boot: int) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 100:
        raise ValueError(f"n_boot must be an integer >= 100, got {n_boot!r}")


def bootstrap_ci(values, *, groups=None, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> Interval:
    """The mean of ``values`` (M,) with its percentile-bootstrap interval.

    groups : optional (M,) labels (e.g. person ids): the bootstrap then draws whole groups, which
        keeps the interval honest when a group's values are correlated (two captures of one person).
    """
    v = _check_values(values)
    _check_level(level, n_boot)
    boots = _bootstrap_means(v, groups, int(n_boot), seed)
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(v.mean()), float(lo), float(hi), float(level), int(v.size))


def paired_comparison(a, b, *, names=("a", "b"), groups=None, level: float = 0.95, n_boot: int = 2000,
                      seed: int = 0) -> Comparison:
    """Compare two methods' errors on the same faces: ``a``, ``b`` (M,), face ``m`` in both.

    The interval is :func:`bootstrap_ci` of the differences ``a - b`` (pairing removes what the
    faces share: a hard face is hard for both methods); the p-value is twice the smaller share of
    bootstrap means on either side of 0 (at least ``1 / n_boot``).
    """
    x, y = _check_values(a, "a"), _check_values(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must hold the same faces, got shapes {x.shape} and {y.shape}")
    _check_level(level, n_boot)
    d = x - y
    boots = _bootstrap_means(d, groups, int(n_boot), seed)
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    p = min(1.0, max(2 * min((boots <= 0).mean(), (boots >= 0).mean()), 1.0 / n_boot))
    return Comparison(str(names[0]), str(names[1]), Interval(float(d.mean()), float(lo), float(hi), float(level),
                                                             int(d.size)), float(p), float((d > 0).mean()))


# ---------------------------------------------------------------------------
# NoW-style scan-to-mesh distances
# ---------------------------------------------------------------------------

@dataclass
class ScanDistances:
    """Distances (mm) from scan points to a reconstructed surface, after :func:`icp_align`."""

    distances: np.ndarray
    R: np.ndarray
    t: np.ndarray
    icp_iterations: int

    @property
    def median(self) -> float:
        return float(np.median(self.distances))

    @property
    def mean(self) -> float:
        return float(self.distances.mean())

    @property
    def std(self) -> float:
        return float(self.distances.std())


def icp_align(vertices, scan_points, mesh_landmarks, scan_landmarks, *, iterations: int = 30,
              trim: float = 10.0, tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray, int]:
    """Rigidly align a reconstruction onto a scan: first its landmarks onto the scan's (rows with a
    NaN are skipped; at least 3 needed), then rigid ICP, each vertex paired with its nearest scan
    point (pairs farther than ``trim`` mm left out: vertices the scan does not cover).

    vertices (N, 3), scan_points (P, 3), mesh_landmarks / scan_landmarks (L, 3).
    Returns ``(R, t, iterations run)``; the aligned mesh is ``vertices @ R.T + t``.
    """
    from scipy.spatial import cKDTree

    V = checks.points(vertices, "vertices", min_count=3)
    P = checks.points(scan_points, "scan_points", min_count=3)
    if not (np.isfinite(trim) and trim > 0) or int(iterations) < 0:
        raise ValueError(f"trim must be a positive distance (mm) and iterations >= 0, got {trim!r}, {iterations!r}")
    A = np.asarray(mesh_landmarks, dtype=np.float64)
    B = np.asarray(scan_landmarks, dtype=np.float64)
    if A.ndim != 2 or A.shape[1] != 3 or A.shape != B.shape:
        raise ValueError(f"mesh_landmarks and scan_landmarks must both be (L, 3), got {A.shape} and {B.shape}")
    ok = np.isfinite(A).all(1) & np.isfinite(B).all(1)
    if ok.sum() < 3:
        raise ValueError(f"a rigid alignment needs at least 3 landmarks present in both, got {int(ok.sum())}")
    R, t, _ = metrics.rigid_align(A[ok], B[ok])
    tree = cKDTree(P)
    it = 0
    for it in range(1, iterations + 1):
        X = V @ R.T + t
        d, j = tree.query(X, distance_upper_bound=trim)   # farther pairs are left out anyway
        keep = d < trim
        if keep.sum() < 3:
            break
        dR, dt, _ = metrics.rigid_align(X[keep], P[j[keep]])
        R, t = dR @ R, dR @ t + dt
        if np.abs(dR - np.eye(3)).max() < tol and np.linalg.norm(dt) < tol * 100:
            break
    return R, t, it


def scan_to_mesh(vertices, triangles, scan_points, mesh_landmarks, scan_landmarks, *, n_points: int = 2000,
                 seed: int = 0, **icp) -> ScanDistances:
    """NoW-style distances from a scan to a reconstructed mesh.

    The mesh ``vertices`` (N, 3) with ``triangles`` (T, 3) is aligned onto the scan by
    :func:`icp_align` (``icp`` goes there); then ``n_points`` scan points, drawn at random
    (``seed``; all when fewer), are projected onto the aligned surface
    (``trimesh.proximity.closest_point``). Their distances give the median / mean / std the NoW
    benchmark reports.
    """
    import trimesh

    P = checks.points(scan_points, "scan_points", min_count=3)
    F = checks.triangles(triangles, len(np.asarray(vertices)))
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 3:
        raise ValueError(f"n_points must be an integer >= 3, got {n_points!r}")
    R, t, its = icp_align(vertices, P, mesh_landmarks, scan_landmarks, **icp)
    V = np.asarray(vertices, dtype=np.float64) @ R.T + t
    if n_points < len(P):
        P = P[np.random.default_rng(seed).choice(len(P), int(n_points), replace=False)]
    _, dist, _ = trimesh.proximity.closest_point(trimesh.Trimesh(V, F, process=False), P)
    return ScanDistances(np.asarray(dist, dtype=np.float64), R, t, its)


# ---------------------------------------------------------------------------
# the whole evaluation
# ---------------------------------------------------------------------------

@dataclass
class Evaluation:
    """Every method's errors on one test set, and what is read from them.

    Attributes
    ----------
    methods : the method names, in the order given to :func:`evaluate`.
    errors : {reference: {method: (M,) mean vertex errors}} for each of :data:`REFERENCES`.
    vertex_errors : {reference: {method: (N,) the per-vertex error averaged over the faces}}.
    condition : (M,) codes into ``condition_names``.
    groups : (M,) person ids (the bootstrap's unit).
    scans : {method: (M,) per-face mean scan-to-mesh distance}, when asked for (``evaluate(scans=True)``).
    scan_summary : {method: {"median", "mean", "std"}} over all scan points of all faces.
    """

    methods: list
    errors: dict
    vertex_errors: dict
    condition: np.ndarray
    condition_names: tuple
    groups: np.ndarray
    n_boot: int = 2000
    level: float = 0.95
    seed: int = 0
    scans: dict = field(default_factory=dict)
    scan_summary: dict = field(default_factory=dict)

    def _check(self, reference: str, *methods) -> None:
        if reference not in self.errors:
            raise ValueError(f"reference must be one of {tuple(self.errors)}, got {reference!r}")
        for m in methods:
            if m not in self.methods:
                raise ValueError(f"method must be one of {self.methods}, got {m!r}")

    def _subsets(self) -> dict:
        out = {nm: self.condition == c for c, nm in enumerate(self.condition_names) if (self.condition == c).any()}
        out["all"] = np.ones(len(self.condition), bool)
        return out

    def _enough(self, on: np.ndarray) -> bool:
        """At least two people (the bootstrap's unit) in the subset."""
        return len(np.unique(self.groups[on])) >= 2

    def _interval(self, values: np.ndarray, on: np.ndarray) -> Interval:
        if not self._enough(on):   # one person: a mean without an interval
            return Interval(float(values[on].mean()), float("nan"), float("nan"), self.level, int(on.sum()))
        return bootstrap_ci(values[on], groups=self.groups[on], level=self.level, n_boot=self.n_boot, seed=self.seed)

    def table(self, reference: str = "true") -> dict:
        """{method: {condition ... "all": :class:`Interval`}}: Table III per condition, with intervals
        (NaN bounds for a condition with a single person)."""
        self._check(reference)
        return {m: {c: self._interval(self.errors[reference][m], on) for c, on in self._subsets().items()}
                for m in self.methods}

    def compare(self, a: str, b: str, reference: str = "true") -> dict:
        """{condition ... "all": :class:`Comparison`} of method ``a`` against ``b`` (``a - b``);
        conditions with a single person are left out."""
        self._check(reference, a, b)
        e = self.errors[reference]
        return {c: paired_comparison(e[a][on], e[b][on], names=(a, b), groups=self.groups[on], level=self.level,
                                     n_boot=self.n_boot, seed=self.seed)
                for c, on in self._subsets().items() if self._enough(on)}

    def normalized(self, reference: str = "true") -> np.ndarray:
        """Eq. (7) over the methods: (M, J), columns in the order of :attr:`methods`."""
        self._check(reference)
        return normalized_errors(np.stack([self.errors[reference][m] for m in self.methods], axis=1))

    def ranking(self, reference: str = "true") -> list:
        """The methods from the lowest mean error to the highest."""
        self._check(reference)
        return sorted(self.methods, key=lambda m: float(self.errors[reference][m].mean()))

    def text_table(self, reference: str = "true") -> str:
        """The per-condition table as text, each cell ``mean [low, high]``."""
        t = self.table(reference)
        cols = list(next(iter(t.values())))
        w = max(len(m) for m in self.methods)
        lines = [f"{'':{w}s} " + " ".join(f"{c[:20]:>20s}" for c in cols), "-" * (w + 21 * len(cols))]
        lines += [f"{m:{w}s} " + " ".join(f"{str(t[m][c]):>20s}" for c in cols) for m in self.methods]
        return "\n".join(lines)

    def markdown(self, focus: str | None = None) -> str:
        """A short Markdown report: the per-condition table against each reference (mean and
        interval), ``focus`` (default the last method) compared with every other method, and the
        scan-to-mesh figures when measured."""
        focus = self.methods[-1] if focus is None else focus
        self._check(next(iter(self.errors)), focus)
        pct = f"{100 * self.level:.0f}%"
        lines = [f"{len(self.condition)} test faces of {len(np.unique(self.groups))} people; mean vertex error (mm) "
                 f"after rigid alignment, [{pct} bootstrap interval, people resampled]."]
        for r in self.errors:
            t = self.table(r)
            cols = list(t[self.methods[0]])
            lines += ["", f"**Against {'S_hat (as the paper)' if r == 's_hat' else 'the true surface'}**", "",
                      "| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
            lines += [f"| {m} | " + " | ".join(str(t[m][c]) for c in cols) + " |" for m in self.methods]
            lines += ["", f"Paired differences, other method minus {focus} (positive: {focus} is better):", ""]
            for m in self.methods:
                if m != focus:
                    c = self.compare(m, focus, r)
                    cells = [f"{k} {v.diff.mean:+.3f} [{v.diff.low:+.3f}, {v.diff.high:+.3f}]" for k, v in c.items()]
                    lines.append(f"- {m}: " + "; ".join(cells))
        if self.scan_summary:
            lines += ["", "**Scan-to-mesh (NoW-style, mm)**", "", "| method | median | mean | std |",
                      "|---|---|---|---|"]
            lines += [f"| {m} | {v['median']:.3f} | {v['mean']:.3f} | {v['std']:.3f} |"
                      for m, v in self.scan_summary.items()]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        """Every number, JSON-ready."""
        out = {"methods": list(self.methods), "conditions": list(self.condition_names), "faces": len(self.condition),
               "people": int(len(np.unique(self.groups))), "level": self.level, "n_boot": self.n_boot,
               "per_face": {r: {m: v.tolist() for m, v in e.items()} for r, e in self.errors.items()},
               "condition": self.condition.tolist(), "person": self.groups.tolist()}
        for r in self.errors:
            out[f"table_{r}"] = {m: {c: iv.to_dict() for c, iv in row.items()} for m, row in self.table(r).items()}
            out[f"ranking_{r}"] = self.ranking(r)
        if self.scans:
            out["scan_to_mesh"] = {m: dict(self.scan_summary[m], per_face_mean=self.scans[m].tolist())
                                   for m in self.scans}
        return out


def evaluate(predictions: dict, data, *, references=REFERENCES, scans: bool = False, model=None,
             n_points: int = 2000, n_boot: int = 2000, level: float = 0.95, seed: int = 0,
             progress: bool = False) -> Evaluation:
    """Evaluate reconstructions of the records of ``data`` (a :class:`~dualface_lite.data.FaceData`).

    Parameters
    ----------
    predictions : {method: (M, N, 3)}, face ``m`` of each for record ``m`` of ``data``.
    references : which of :data:`REFERENCES` to measure against (``data`` fields ``s_hat``, ``true``).
    scans : also the NoW-style scan-to-mesh distances (:func:`scan_to_mesh`, ``n_points`` per face;
        the scans are read or regenerated by :func:`dualface_lite.data.load_scan`; needs ``model``
        or loads the default one). About 0.1 s per face and method.
    """
    from tqdm.auto import tqdm

    if not predictions:
        raise ValueError("predictions must hold at least one method")
    references = (references,) if isinstance(references, str) else tuple(references)
    _check_level(level, n_boot)
    bad = [r for r in references if r not in REFERENCES]
    if bad or not references:
        raise ValueError(f"references must be some of {REFERENCES}, got {tuple(references)!r}")
    M = len(data)
    for m, P in predictions.items():
        if np.shape(P)[:1] != (M,) or np.ndim(P) != 3:
            raise ValueError(f"predictions[{m!r}] must have shape ({M}, N, 3) (one face per record), "
                             f"got {np.shape(P)}")
    errors, maps = {}, {}
    for r in references:
        gt = getattr(data, r)
        per_vertex = {m: vertex_error_maps(P, gt) for m, P in predictions.items()}
        errors[r] = {m: v.mean(1) for m, v in per_vertex.items()}
        maps[r] = {m: v.mean(0) for m, v in per_vertex.items()}
    ev = Evaluation(list(predictions), errors, maps, np.asarray(data.condition, np.int64),
                    tuple(data.condition_names), np.asarray(data.person_row), n_boot, level, seed)
    if scans:
        from .data import load_scan
        from .groundtruth import scan_landmark_ids
        from .model import load_model

        model = model or load_model()
        on_mesh = model.ibug68[scan_landmark_ids(model)]   # the vertices behind the scan's landmarks
        per_face = {m: np.zeros(M) for m in predictions}
        pooled = {m: [] for m in predictions}
        for i in tqdm(range(M), disable=not progress, desc="scan-to-mesh", unit="face"):
            scan = load_scan(data, i, model)
            target_lm = data.read("scan_landmarks", i)
            for m, P in predictions.items():
                d = scan_to_mesh(P[i], model.triangles, scan.vertices, P[i][on_mesh], target_lm,
                                 n_points=n_points, seed=seed + i).distances
                per_face[m][i] = d.mean()
                pooled[m].append(d)
        ev.scans = per_face
        all_points = {m: np.concatenate(d) for m, d in pooled.items()}   # every scan point of every face
        ev.scan_summary = {m: {"median": float(np.median(d)), "mean": float(d.mean()), "std": float(d.std())}
                           for m, d in all_points.items()}
    return ev


def gallery(predictions: dict, data, rows, triangles, *, reference: str = "true", methods=None,
            size: int = 160, row_labels=None):
    """The paper's Figs. 4 and 7-9 for the records ``rows`` of ``data``: each face's photo, then each
    method's mesh (rigidly aligned onto the reference, so that all face the camera alike) coloured by
    its per-vertex error normalised as eq. (7) over the methods of that face, titled with its
    normalised mean error. Returns a ``matplotlib.figure.Figure`` (:func:`dualface_lite.viz.gallery_figure`)."""
    from . import viz

    methods = list(predictions) if methods is None else list(methods)
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
    rows = [int(i) for i in np.atleast_1d(rows)]
    photos, renders, numbers = [], [], []
    for i in rows:
        gt = data.read(reference, i)[None]
        aligned = {m: metrics.align_batch(np.asarray(predictions[m][i])[None], gt)[0] for m in methods}
        per_vertex = np.stack([np.linalg.norm(aligned[m] - gt[0], axis=1) for m in methods])   # (J, N)
        heat = normalized_vertex_errors(per_vertex)
        numbers.append(normalized_errors(per_vertex.mean(1)[None])[0])
        renders.append([viz.error_image(aligned[m], triangles, heat[j], 10.0, size=size)
                        for j, m in enumerate(methods)])
        photos.append(data.read("image", i))
    return viz.gallery_figure(photos, renders, methods, np.array(numbers), row_labels=row_labels)
