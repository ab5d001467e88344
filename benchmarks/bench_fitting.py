"""Landmark fit (paper Sec. III-B-1, eq. (4)) against eos-py, Lm2Vertex and the mean face.

On held-out synthetic subjects (seeds 100000 + k, default :class:`~dualface_lite.synth.Population`,
no scan) of each condition ("neutral", "expression", "illumination", as the paper's Figs. 7-9),
every method gets the same 68 noisy landmarks (and the photo where it uses one):

* ``ours``      -- :func:`dualface_lite.fitting.fit_landmarks` (landmarks + photo for the colours)
* ``eos``       -- ``eos.fitting.fit_shape_and_pose`` with its defaults (5 iterations,
                   ``lambda_identity = lambda_expressions = 30``), jaw contour fit on
                   (see ``benchmarks/eos_peer.py``)
* ``lm2vertex`` -- :class:`dualface_lite.baselines.Lm2Vertex`, trained once beforehand on
                   landmark sets of faces from the model's own prior (the paper's refs. [11]/[47])
* ``mean``      -- the SFM mean face, posed onto the landmarks

Measured per method and condition:

* ``error_mm``   -- :func:`dualface_lite.metrics.mean_vertex_error` of the fitted face against the
                    subject's true surface (after rigid alignment); mean and median over subjects.
* ``landmark_px``-- mean distance between the given landmarks and the fitted face's landmark vertices
                    projected with the method's own pose; the jaw landmarks take the vertex that
                    :func:`dualface_lite.fitting.contour_correspondences` (its default method: the
                    fitted face's silhouette along the ray through each landmark) gives under that
                    pose -- the rule of ``Fit.landmark_error`` -- for every method alike. eos's pose is
                    converted exactly (``eos_peer.eos_camera``, checked against eos's own
                    ``get_3x4_affine_camera_matrix``).
* ``ms``         -- median wall time of one fit (``time.perf_counter``, the fit only; subject
                    generation and scoring are outside the timed region). ``ours``, ``lm2vertex`` and
                    ``mean`` include the visibility test and the colour sampling; eos makes no colours.

BLAS threads are pinned to 1 (``--threads``, set before numpy loads): eos's fit is
single-threaded C++, the kit's fits are small linear algebra where threads only add
overhead, and on a busy 2-core machine multi-threaded BLAS slows them by 2-10x. The
load average at the start and the end goes into the JSON, since a timing taken on a
shared machine is only as good as its quiet.

Usage: ``python benchmarks/bench_fitting.py [--n 200] [--quick] [--threads 1]``.
Prints a table and the ratios ours / eos; writes ``benchmarks/results/fitting.json``.
"""
from __future__ import annotations

import hashlib
import os
import statistics
import sys
import time

import _common

if __name__ == "__main__":  # before numpy loads its BLAS
    _common.pin_threads()

import numpy as np  # noqa: E402

ROOT = _common.ROOT

import dualface_lite as df  # noqa: E402
from dualface_lite import fitting, metrics, synth  # noqa: E402
from dualface_lite.baselines import Lm2Vertex, mean_face  # noqa: E402
from dualface_lite.model import IBUG_JAW  # noqa: E402

from eos_peer import EosPeer  # noqa: E402

METHODS = ("ours", "eos", "lm2vertex", "mean")
SEED0 = 100000
ERROR_TARGET, TIME_TARGET = 0.85, 0.4   # ours / eos-py, every condition


def landmark_px(model, vertices, camera, landmarks) -> float:
    """Mean landmark distance (px) of a fitted face under its pose (jaw: contour_correspondences)."""
    V = np.asarray(vertices, dtype=np.float64)
    lv = model.ibug68.astype(np.int64).copy()
    lv[IBUG_JAW] = fitting.contour_correspondences(model, V, camera, landmarks)
    return metrics.landmark_error(camera.project(V[lv]), landmarks)


def run(n: int, conditions, l2v_samples: int, progress: bool = True) -> dict:
    from tqdm.auto import tqdm

    load_start = os.getloadavg()
    m = df.load_model()
    eos_peer = EosPeer()
    if not eos_peer.uses_contour:
        print(f"note: {eos_peer.folder} has no sfm_3448_edge_topology.json: eos fits without the jaw contour",
              file=sys.stderr)
    t0 = time.perf_counter()
    l2v = Lm2Vertex(m).train(n_samples=l2v_samples, seed=0)
    l2v_train_s = time.perf_counter() - t0

    fitters = {
        "ours": lambda s: fitting.fit_landmarks(m, s.landmarks, image=s.image),
        "eos": lambda s: eos_peer.fit(s.landmarks, s.image.shape[1], s.image.shape[0]),
        "lm2vertex": lambda s: l2v.predict(s.landmarks, image=s.image),
        "mean": lambda s: mean_face(m, s.landmarks, image=s.image),
    }
    # warm-up (imports, caches) outside the measurements
    s = synth.make_subject(SEED0 - 1, "neutral", model=m, with_scan=False)
    for f in fitters.values():
        f(s)

    raw = {c: {k: {"error_mm": [], "landmark_px": [], "ms": []} for k in METHODS} for c in conditions}
    self_reported = {c: [] for c in conditions}
    bar = tqdm(total=n * len(conditions), desc="subjects", disable=not progress)
    for c in conditions:
        for k in range(n):
            s = synth.make_subject(SEED0 + k, c, model=m, with_scan=False)
            for name, f in fitters.items():
                t = time.perf_counter()
                out = f(s)
                dt = time.perf_counter() - t
                if name == "eos":
                    V, cam = out["vertices"], out["camera"]
                else:
                    V, cam = out.vertices, out.camera
                    if name == "ours":
                        self_reported[c].append(out.landmark_error)
                r = raw[c][name]
                r["error_mm"].append(metrics.mean_vertex_error(V, s.vertices))
                r["landmark_px"].append(landmark_px(m, V, cam, s.landmarks))
                r["ms"].append(1e3 * dt)
            bar.update(1)
    bar.close()

    table = {}
    for c in conditions:
        table[c] = {}
        for name in METHODS:
            r = raw[c][name]
            table[c][name] = {
                "error_mm": float(np.mean(r["error_mm"])),
                "error_mm_median": float(np.median(r["error_mm"])),
                "error_mm_std": float(np.std(r["error_mm"])),
                "landmark_px": float(np.mean(r["landmark_px"])),
                "ms": float(statistics.median(r["ms"])),
                "n": len(r["ms"]),
            }
        ours, peer = table[c]["ours"], table[c]["eos"]
        table[c]["ratio_ours_over_eos"] = {
            "error": ours["error_mm"] / peer["error_mm"],
            "landmark": ours["landmark_px"] / peer["landmark_px"],
            "time": ours["ms"] / peer["ms"],
        }
        table[c]["ours_self_reported_landmark_px"] = float(np.mean(self_reported[c]))

    from importlib.metadata import version

    return {
        "benchmark": "landmark fit vs eos-py, Lm2Vertex, mean face",
        "n_per_condition": n,
        "seeds": [SEED0, SEED0 + n - 1],
        "conditions": list(conditions),
        "population": "default synth.Population()",
        "eos": {"version": version("eos-py"), "contour": eos_peer.uses_contour, **eos_peer.options},
        "lm2vertex": {"n_train": l2v.n_train, "ridge": l2v.ridge, "train_seconds": l2v_train_s},
        "code_sha256": {f: hashlib.sha256((ROOT / f).read_bytes()).hexdigest()[:16]
                        for f in ("dualface_lite/fitting.py", "dualface_lite/baselines.py", "benchmarks/eos_peer.py")},
        "results": table,
        "per_subject": raw,
        "machine": {**_common.machine_info(), "load_average_start": list(load_start)},
    }


def print_table(res: dict) -> None:
    print(f"\nLandmark fit, {res['n_per_condition']} subjects per condition "
          f"(error vs true surface, mm; landmarks, px; median time per fit, ms)")
    head = f"{'condition':<13}{'method':<11}{'error mm':>10}{'median':>9}{'lmk px':>9}{'ms':>9}"
    print(head)
    print("-" * len(head))
    for c, rows in res["results"].items():
        for name in METHODS:
            r = rows[name]
            print(f"{c:<13}{name:<11}{r['error_mm']:>10.3f}{r['error_mm_median']:>9.3f}"
                  f"{r['landmark_px']:>9.3f}{r['ms']:>9.2f}")
        q = rows["ratio_ours_over_eos"]
        print(f"{'':<13}ours/eos: error {q['error']:.3f}, landmark {q['landmark']:.3f}, time {q['time']:.3f}")
    print(f"(Lm2Vertex trained on {res['lm2vertex']['n_train']} prior samples in "
          f"{res['lm2vertex']['train_seconds']:.1f} s; eos-py {res['eos']['version']}, "
          f"contour fit {'on' if res['eos']['contour'] else 'OFF'}; BLAS threads "
          f"{res['machine']['blas_threads']}; load average {res['machine']['load_average_start'][0]:.1f} at the "
          f"start, {res['machine']['load_average'][0]:.1f} at the end)")
    r = res["results"]
    q = {c: r[c]["ratio_ours_over_eos"] for c in r}
    met = all(q[c]["error"] <= ERROR_TARGET and q[c]["time"] <= TIME_TARGET
              and r[c]["ours"]["error_mm"] <= r[c]["lm2vertex"]["error_mm"] for c in r)
    print(f"target: error <= {ERROR_TARGET}x eos's and <= Lm2Vertex's, time <= {TIME_TARGET}x eos's in every "
          f"condition -> {'meets' if met else 'misses'}")


def main(argv=None) -> dict:
    ap = _common.parser(__doc__, "fitting")
    ap.add_argument("--n", type=int, default=200, help="subjects per condition (default 200)")
    ap.add_argument("--quick", action="store_true", help="20 subjects per condition")
    ap.add_argument("--conditions", nargs="+", default=list(synth.CONDITIONS), choices=synth.CONDITIONS)
    ap.add_argument("--l2v-samples", type=int, default=4000, help="Lm2Vertex training samples (default 4000)")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    n = 20 if a.quick else a.n
    if n < 1:
        ap.error("--n must be positive")
    res = run(n, a.conditions, a.l2v_samples, progress=not a.no_progress)
    print_table(res)
    _common.write_results(a.out, res)
    return res


if __name__ == "__main__":
    main()
