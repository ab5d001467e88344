"""Optimal-step NICP: ``df.nicp`` against ``trimesh.registration.nricp_amberg``.

Both register the same template onto the same synthetic range scans
(``synth.make_subject``: a triangulated depth grid, 1 mm apart, 0.2 mm noise,
3 holes) with the same landmarks, and both are judged the same way:

* ``time_s``        wall time of one registration (``time.perf_counter``; the
                    kit's is the median of ``--repeats`` runs, the peer's of
                    ``--peer-repeats``);
* ``surf_mm``       mean distance from the registered vertices to the scan
                    (closest point on its triangles, ``trimesh.proximity``),
                    over the *covered* vertices: those whose true position lies
                    within 2 mm of the scan (the rest have no scan data under
                    them and are placed by the stiffness term alone);
* ``corr_mm``       mean distance between registered vertex i and the true
                    surface's vertex i (``Subject.vertices``), no alignment (both
                    are in the object frame): the error of the dense ground
                    truth ``S_hat`` that the paper could not measure;
                    ``corr_cov_mm`` the same over the covered vertices.

Template: ``S0 = fit_landmarks(model, s.landmarks, image=s.image).vertices``
(the paper's personalized template, section III-B-1), rigidly aligned to the
target landmarks (Kabsch on the 50 fixed landmark vertices), since the fit lives
in the model's frame and the scan in the subject's; if ``dualface_lite.fitting``
is not available, the SFM mean face aligned the same way (the JSON says which).
Landmarks: ``source_landmarks`` = the 50 iBUG landmarks with a fixed SFM vertex
(``groundtruth.scan_landmark_ids``, as the dataset: no jaw line), ``target_landmarks`` = the
true positions of those vertices on the subject.

The peer runs with its own defaults (steps ``[[0.01, 10, 0.5, 10], [0.02, 5,
0.5, 10], [0.03, 2.5, 0.5, 10], [0.01, 0, 0.0, 10]]``, ``eps=1e-4``, ``gamma=1``,
``distance_threshold=0.1`` in its normalized units, i.e. 0.1 x the template's
bounding-box diagonal, about 26 mm), closest points on the scan's triangles and
normal weighting, as documented in trimesh.

Usage: ``python benchmarks/bench_nicp.py [--subjects 10] [--repeats 3] [--peer-repeats 1]``.
Writes ``benchmarks/results/nicp.json``.
"""
from __future__ import annotations

import statistics
import time

import _common

_common.pin_threads(default="2")

import numpy as np  # noqa: E402

import dualface_lite as df  # noqa: E402
from dualface_lite.groundtruth import scan_landmark_ids  # noqa: E402
from dualface_lite.metrics import rigid_align  # noqa: E402
from dualface_lite.registration import DEFAULT_LANDMARK_WEIGHTS, DEFAULT_STIFFNESS, nicp  # noqa: E402
from dualface_lite.synth import CONDITIONS, make_subject  # noqa: E402


def surface_distance(vertices, scan) -> np.ndarray:
    import trimesh

    _, d, _ = trimesh.proximity.closest_point(scan, np.asarray(vertices, dtype=np.float64))
    return d


def template_for(model, s, idx):
    """The personalized template S0, rigidly aligned to the target landmarks."""
    try:
        from dualface_lite.fitting import fit_landmarks

        S0, kind = fit_landmarks(model, s.landmarks, image=s.image).vertices, "fit_landmarks (S0), rigidly aligned"
    except ImportError:
        S0, kind = model.mean, "SFM mean face, rigidly aligned"
    R, t, _ = rigid_align(S0[idx], s.vertices[idx])
    return (np.asarray(S0, dtype=np.float64) @ R.T + t).astype(np.float32), kind


def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def scores(v, s, covered, scan) -> dict:
    corr = np.linalg.norm(np.asarray(v, dtype=np.float64) - s.vertices, axis=1)
    sd = surface_distance(v, scan)
    return dict(surf_mm=float(sd[covered].mean()), surf_all_mm=float(sd.mean()),
                corr_mm=float(corr.mean()), corr_cov_mm=float(corr[covered].mean()))


def main(argv=None):
    ap = _common.parser(__doc__, "nicp", threads="2")
    ap.add_argument("--subjects", type=int, default=10, help="subjects, cycling through the 3 conditions")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of df.nicp per subject (median)")
    ap.add_argument("--peer-repeats", type=int, default=1, help="timed runs of nricp_amberg per subject")
    args = ap.parse_args(argv)

    import trimesh
    from trimesh.registration import nricp_amberg

    model = df.load_model()
    idx = model.ibug68[scan_landmark_ids(model)]
    rows, template_kind = [], None
    for k in range(args.subjects):
        cond = CONDITIONS[k % len(CONDITIONS)]
        s = make_subject(seed=k, condition=cond, model=model)
        S0, template_kind = template_for(model, s, idx)
        targets = s.vertices[idx].astype(np.float64)
        covered = surface_distance(s.vertices, s.scan) < 2.0
        src = model.to_trimesh(S0)

        ours, t_ours = timed(lambda: nicp(src, s.scan, idx, targets), args.repeats)
        # nricp_amberg normalizes the meshes in place and back: give it its own copies
        peer, t_peer = timed(lambda: nricp_amberg(src.copy(), s.scan.copy(), source_landmarks=idx,
                                                  target_positions=targets.copy()), args.peer_repeats)
        row = dict(seed=k, condition=cond, scan_vertices=int(len(s.scan.vertices)),
                   covered=float(covered.mean()), template=scores(S0, s, covered, s.scan),
                   nicp=dict(time_s=t_ours, **scores(ours, s, covered, s.scan)),
                   nricp_amberg=dict(time_s=t_peer, **scores(peer, s, covered, s.scan)))
        rows.append(row)
        print(f"  subject {k:2d} {cond:12s} nicp {t_ours:6.2f} s  nricp_amberg {t_peer:6.2f} s  "
              f"corr_cov {row['template']['corr_cov_mm']:.2f} -> {row['nicp']['corr_cov_mm']:.2f} | "
              f"{row['nricp_amberg']['corr_cov_mm']:.2f} mm", flush=True)

    def mean(method, key):
        return float(np.mean([r[method][key] for r in rows]))

    keys = ["time_s", "surf_mm", "surf_all_mm", "corr_mm", "corr_cov_mm"]
    summary = {m: {k: mean(m, k) for k in keys if k in rows[0][m]} for m in ("template", "nicp", "nricp_amberg")}
    ratio = {k: summary["nricp_amberg"][k] / summary["nicp"][k] for k in keys}
    speedups = [r["nricp_amberg"]["time_s"] / r["nicp"]["time_s"] for r in rows]
    print(f"\nNICP on {len(rows)} synthetic scans (template: {template_kind}); means over subjects")
    print(f"{'':14s}{'time s':>9s}{'surf mm':>9s}{'surf(all)':>10s}{'corr mm':>9s}{'corr(cov)':>10s}")
    for m in ("template", "nicp", "nricp_amberg"):
        vals = [summary[m].get(k, float("nan")) for k in keys]
        print(f"{m:14s}{vals[0]:9.3f}{vals[1]:9.3f}{vals[2]:10.3f}{vals[3]:9.3f}{vals[4]:10.3f}")
    print(f"{'peer / nicp':14s}{ratio['time_s']:9.1f}{ratio['surf_mm']:9.2f}{ratio['surf_all_mm']:10.2f}"
          f"{ratio['corr_mm']:9.2f}{ratio['corr_cov_mm']:10.2f}")
    print(f"speed-up per subject: min {min(speedups):.1f}x, median {statistics.median(speedups):.1f}x")
    ok = dict(faster_10x=bool(ratio["time_s"] >= 10), surface_not_larger=bool(ratio["surf_mm"] >= 1.0),
              correspondence_smaller=bool(ratio["corr_cov_mm"] > 1.0 and ratio["corr_mm"] > 1.0))
    print("targets:", ", ".join(f"{k}={v}" for k, v in ok.items()))

    result = dict(
        subjects=len(rows), template=template_kind, landmarks="50 fixed iBUG vertices -> true positions",
        covered_definition="true vertex within 2 mm of the scan",
        nicp_defaults=dict(stiffness=list(DEFAULT_STIFFNESS), landmark_weights=DEFAULT_LANDMARK_WEIGHTS),
        peer=dict(name="trimesh.registration.nricp_amberg (default steps)", trimesh_version=trimesh.__version__),
        repeats=args.repeats, peer_repeats=args.peer_repeats,
        summary=summary, ratio_peer_over_nicp=ratio,
        speedup_per_subject=dict(min=min(speedups), median=statistics.median(speedups)),
        targets=ok, rows=rows,
        machine=_common.machine_info(),
    )
    _common.write_results(args.out, result)
    return result


if __name__ == "__main__":
    main()
