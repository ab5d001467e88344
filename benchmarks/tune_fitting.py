"""Choose the defaults of the landmark fit (paper Sec. III-B-1, eq. (4)) by validation on a mix.

Eq. (4) is ``1/(2 sigma_L^2) sum_i ||pi_i(Proj S_alpha) - L_i||^2 + lambda ||alpha||^2``;
only ``lambda * sigma_L^2`` moves its minimum, so ``lam = 0.5`` stays fixed (the MAP
estimate under the model's prior ``alpha ~ N(0, I)``) and ``sigma_L`` is what is tuned.
The defaults of :func:`~dualface_lite.fitting.fit_landmarks` chosen here:

* ``projection``: the pinhole refinement against the orthographic fit alone;
* ``sigma_l``: a fixed value in px (at the reference face size) against the estimate from
  the residuals (:func:`~dualface_lite.fitting.landmark_sigma`), whose factor
  ``SIGMA_L_PER_RESIDUAL`` is tuned;
* ``face_size``: the factor that undoes the fit's bias to small faces (landmarks cannot tell
  a face's absolute size), tuned on the fitted faces afterwards (it moves no pixel);
* ``focal_spread``: the width of the prior on the focal length.

Validation mix (seeds 50000 + k, k < ``--n``, the three conditions each; disjoint from the
tests' and from ``bench_fitting.py``'s 100000+), one set per row of the issue's list:

* ``kit``: the default :class:`~dualface_lite.synth.Population`, 0.7 px landmark noise;
* ``prior``: faces from the model's own prior (inside its span);
* ``outside``: out-of-span modes twice as strong, twice the detail, identity shift 2.5;
* ``small`` / ``large``: the kit's people at 0.92x / 1.08x size;
* ``noise0.5`` / ``noise2`` / ``noise5``: landmark noise 0.5, 2, 5 px;
* ``yaw45``: yaw up to 45 degrees.

Score: :func:`dualface_lite.metrics.mean_vertex_error` against the true surface (rigid
alignment, no scale), the mean over a set's subjects, and the mix's average over sets. A
setting is eligible only if it beats the mean face (``model.mean``) by at least 10 % on every
set (``MARGIN``): the defaults must also hold for faces that none of these sets resembles.

Usage: ``python benchmarks/tune_fitting.py [--n 20] [--threads 1]``.
Prints the tables; writes ``benchmarks/results/tune_fitting.json``.
"""
from __future__ import annotations

import argparse
import os
import time

import _common

if __name__ == "__main__":  # before numpy loads its BLAS: small solves, threads only add overhead
    _common.pin_threads()

import numpy as np  # noqa: E402

import dualface_lite as df  # noqa: E402
from dualface_lite import fitting, metrics, synth  # noqa: E402

SEED0 = 50000
FACE_SIZES = (1.0, 1.01, 1.02, 1.03, 1.04, 1.05, 1.06, 1.07, 1.08)
PER_RESIDUAL = (1.5, 2.0, 2.5, 3.0)
FOCAL_SPREADS = (0.5, 1.0, 3.0)
MARGIN = 0.9   # eligible: error <= MARGIN x the mean face's on every set


def mix() -> dict:
    """The validation sets: name -> keyword arguments of :func:`synth.make_subject`."""
    P = synth.Population
    base = P()
    outside = P(mode_mean=tuple(2 * x for x in base.mode_mean), mode_std=tuple(2 * x for x in base.mode_std),
                detail_rms=2.0 * base.detail_rms, alpha_shift=2.5)
    return {
        "kit": dict(population=base),
        "prior": dict(population=P.prior()),
        "outside": dict(population=outside),
        "small": dict(population=P(size=0.92)),
        "large": dict(population=P(size=1.08)),
        "noise0.5": dict(population=base, landmark_noise=0.5),
        "noise2": dict(population=base, landmark_noise=2.0),
        "noise5": dict(population=base, landmark_noise=5.0),
        "yaw45": dict(population=base, max_yaw=45.0),
    }


def make_sets(model, n: int) -> dict:
    out = {}
    for name, kw in mix().items():
        out[name] = [synth.make_subject(SEED0 + k, c, model=model, with_scan=False, **kw)
                     for k in range(n) for c in synth.CONDITIONS]
    return out


def evaluate(model, sets, sizes=(None,), **kw) -> dict:
    """Mean error per set (mm) for each face size in ``sizes`` (``None``: as fitted), and ms/fit."""
    res = {g: {} for g in sizes}
    ms = []
    for name, subs in sets.items():
        errs = {g: [] for g in sizes}
        for s in subs:
            f = fitting.fit_landmarks(model, s.landmarks, **kw)
            ms.append(1e3 * f.seconds)
            base = f.vertices / f.scale
            for g in sizes:
                errs[g].append(metrics.mean_vertex_error(f.vertices if g is None else g * base, s.vertices))
        for g in sizes:
            res[g][name] = float(np.mean(errs[g]))
    for g in sizes:
        res[g]["avg"] = float(np.mean([v for k, v in res[g].items() if k != "avg"]))
        res[g]["ms"] = float(np.median(ms))
    return res


def row(name: str, r: dict, sets) -> str:
    return f"{name:40s} " + " ".join(f"{r[k]:8.3f}" for k in sets) + f" {r['avg']:8.3f}"


def main(argv=None):
    ap = _common.parser(__doc__, "tune_fitting")
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    ap.add_argument("--n", type=int, default=20, help="subjects per condition and set (seeds 50000 + k)")
    args = ap.parse_args(argv)

    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
    model = df.load_model()
    t0 = time.perf_counter()
    sets = make_sets(model, args.n)
    names = list(sets)
    print(f"{sum(map(len, sets.values()))} validation subjects ({len(sets)} sets x {args.n} seeds x "
          f"{len(synth.CONDITIONS)} conditions) in {time.perf_counter() - t0:.1f} s; mean vertex error, mm\n")
    header = f"{'setting':40s} " + " ".join(f"{k[:8]:>8s}" for k in names) + f" {'avg':>8s}"
    mean_row = {k: float(np.mean([metrics.mean_vertex_error(model.mean, s.vertices) for s in v]))
                for k, v in sets.items()}
    mean_row["avg"] = float(np.mean(list(mean_row.values())))

    def eligible(r):
        return all(r[k] <= MARGIN * mean_row[k] for k in names)

    tables = {}
    # 1. the camera and sigma_L -------------------------------------------------------------
    print("1. camera and sigma_L (face_size 1: as the landmarks give it)")
    print(header)
    print(row("mean face (no fit)", mean_row, names))
    first = {
        "orthographic, sigma_l = 2.5 px (old default)": dict(projection="orthographic", sigma_l=2.5),
        "orthographic, sigma_l estimated": dict(projection="orthographic", sigma_l=None),
        "perspective, sigma_l = 2.5 px": dict(projection="perspective", sigma_l=2.5),
        "perspective, sigma_l estimated": dict(projection="perspective", sigma_l=None),
    }
    for name, kw in first.items():
        tables[name] = evaluate(model, sets, face_size=1.0, **kw)[None]
        print(row(name, tables[name], names))

    # 2. the factor of the sigma_L estimate --------------------------------------------------
    print("\n2. sigma_l estimated: SIGMA_L_PER_RESIDUAL (perspective; face_size 1)")
    print(header)
    default_per = fitting.SIGMA_L_PER_RESIDUAL
    per_rows = {}
    try:
        for k in PER_RESIDUAL:
            fitting.SIGMA_L_PER_RESIDUAL = k
            per_rows[k] = evaluate(model, sets, face_size=1.0)[None]
            print(row(f"SIGMA_L_PER_RESIDUAL = {k:g}", per_rows[k], names))
    finally:
        fitting.SIGMA_L_PER_RESIDUAL = default_per
    best_per = min(per_rows, key=lambda k: per_rows[k]["avg"])
    print(f"-> {best_per:g} (the package's value: {default_per:g})")

    # 3. face size -------------------------------------------------------------------------
    print("\n3. face_size (the fitted faces scaled; every other setting at the package's defaults)")
    print(header)
    size_rows = evaluate(model, sets, sizes=FACE_SIZES)
    for g in FACE_SIZES:
        ok = "" if eligible(size_rows[g]) else f"   (above {MARGIN:g}x the mean face on a set)"
        print(row(f"face_size = {g:.2f}", size_rows[g], names) + ok)
    best_size = min((g for g in FACE_SIZES if eligible(size_rows[g])), key=lambda g: size_rows[g]["avg"])
    print(f"-> {best_size:.2f} (the package's value: {fitting.DEFAULT_FACE_SIZE:g})")

    # 4. focal prior -------------------------------------------------------------------------
    print("\n4. focal_spread (prior on log f; the mix's faces are all 1.2 m away, so a narrow prior "
          "is right by construction)")
    print(header)
    spread_rows = {}
    for sp in FOCAL_SPREADS:
        spread_rows[sp] = evaluate(model, sets, focal_spread=sp)[None]
        print(row(f"focal_spread = {sp:g}", spread_rows[sp], names))

    # 5. the defaults against the old fit ------------------------------------------------------
    final = evaluate(model, sets)[None]
    ortho = evaluate(model, sets, projection="orthographic")[None]
    old = tables["orthographic, sigma_l = 2.5 px (old default)"]
    print("\n5. the package's defaults")
    print(header)
    print(row("mean face (no fit)", mean_row, names))
    print(row("old default (orthographic, 2.5 px, size 1)", old, names))
    print(row("defaults, projection='orthographic'", ortho, names))
    print(row("defaults", final, names))
    print(f"at most {MARGIN:g}x the mean face's error on every set: {eligible(final)}; ms per fit (landmarks only): {final['ms']:.1f}")

    result = {
        "benchmark": "tune_fitting: defaults of fit_landmarks by validation on a mix",
        "seeds": [SEED0, SEED0 + args.n - 1], "conditions": list(synth.CONDITIONS),
        "sets": {k: {kk: (vv.__dict__ if hasattr(vv, "__dict__") else vv) for kk, vv in v.items()}
                 for k, v in mix().items()},
        "n_subjects": sum(map(len, sets.values())),
        "mean_face": mean_row, "camera_and_sigma": tables,
        "sigma_l_per_residual": {str(k): v for k, v in per_rows.items()}, "best_per_residual": best_per,
        "face_size": {f"{g:.2f}": v for g, v in size_rows.items()}, "best_face_size": best_size,
        "focal_spread": {str(k): v for k, v in spread_rows.items()},
        "defaults": final, "defaults_orthographic": ortho, "margin": MARGIN,
        "within_margin_of_mean_face": eligible(final),
        "package": dict(SIGMA_L_PER_RESIDUAL=fitting.SIGMA_L_PER_RESIDUAL, SIGMA_L_MIN=fitting.SIGMA_L_MIN,
                        DEFAULT_FACE_SIZE=fitting.DEFAULT_FACE_SIZE, DEFAULT_FOCAL_SPREAD=fitting.DEFAULT_FOCAL_SPREAD,
                        DEFAULT_FOCAL_DISTANCE=fitting.DEFAULT_FOCAL_DISTANCE),
        "loadavg_start": load0, "machine": _common.machine_info(),
    }
    _common.write_results(args.out, result)
    return result


if __name__ == "__main__":
    main()
