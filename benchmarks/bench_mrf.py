"""The learnable MRF prior (paper III-B-2..4, Fig. 3): speed of the batched networks, accuracy, design choices.

Data: the ``lite`` dataset of :mod:`dualface_lite.data` (``--size paper`` for the
paper's; built with ``data.build_dataset`` if it is missing): ``s0`` the
landmark-fit templates with their colours, ``s_hat`` the NICP ground truth the
prior is trained on (as in the paper), ``true`` the synthetic surface the paper
could not know.

Measured (one run, CPU, ``--threads`` torch threads, default: all cores):

1. **Speed.** Time to train all N = 3448 networks together (batched tensors,
   ``MRFPrior.fit``; the training loop only, features precomputed) against the
   same work done one vertex at a time in a Python loop: the same features,
   initial weights, minibatches, number of epochs, per-epoch validation and
   best-epoch snapshot, for ``--loop-vertices`` vertices, extrapolated to all N
   (the loop over all 3448 would take many minutes). Two loops: "lean" (raw
   tensors, ``torch.addmm`` and the same fused AdamW as the batched code,
   ``mrf.adamw`` -- it must reproduce the batched networks, and the benchmark
   checks that it does) and "naive" (``nn.Sequential(Linear, ReLU, Linear)`` +
   ``torch.optim.AdamW`` with its defaults + ``F.mse_loss``, as one would first
   write it). Also the median time of one training step (``mrf.train_step``) of
   all N networks and of one network alone.
2. **Accuracy.** Mean vertex error (mm, after rigid alignment,
   ``metrics.mean_vertex_errors``) on the test set, per condition, against
   S_hat and against the true surface: S0 (GC), S0 + the networks' output
   bias alone (``MRFPrior.offset_mean_``, the mean offset of the training
   faces: what the prior gives without looking at its inputs), the MRF prior
   with xyz + rgb features (MRFGC) and with xyz only.
3. **Design choices** (``--no-ablations`` skips them): ``color_scale`` chosen
   on the validation split (the kept networks' validation error, never the
   test set), then one change at a time from the default: the paper's K-NN per
   template, absolute positions, per-column normalisation (cancels delta),
   targets not rigidly aligned, one early-stopping epoch for all networks,
   K = 5 and 20, 10 hidden units.
4. **Fig. 3** (``--sweeps``): K in {3, 5, 9, 15, 20, 25, 30} at 50 hidden units and
   the hidden units in {5, 10, 25, 50, 100} at K = 10, full training (chapter 4
   runs three values of each with a shortened one).

Usage: ``python benchmarks/bench_mrf.py [--loop-vertices 6] [--no-ablations] [--quick] [--sweeps]
[--size lite|paper] [--threads N] [--out PATH]``. Writes ``benchmarks/results/mrf.json``.
"""
from __future__ import annotations

import copy
import os
import time

import _common

THREADS = str(os.cpu_count() or 1)
if __name__ == "__main__":  # before numpy and torch load their thread pools
    _common.pin_threads(THREADS)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dualface_lite import data, metrics  # noqa: E402
from dualface_lite.mrf import MRFGC, MRFPrior, VertexNetworks, adamw, knn_fixed, train_step  # noqa: E402


# ----------------------------------------------------------------------------- data
def load_data(size: str = "lite", all_photos: bool = False):
    """(train, test, condition names, source line) of the ``size`` dataset, built if missing; the
    training split with one photo per capture (the one registered to its scan, as FRGC's), or with
    every photo (``all_photos``)."""
    cfg = data.DatasetConfig.preset(size)
    folder = data.build_dataset(cfg, progress=True)      # served from the cache when it is there
    tr, te = data.load_split(cfg, "train"), data.load_split(cfg, "test")
    if not all_photos:                                      # the chapter trains on the same
        tr = tr.first_photos()
    split = lambda d: dict(s0=d.s0, colors=d.colors, s_hat=d.s_hat, true=d.true,  # noqa: E731
                           cond=np.asarray(d.condition, int))
    which = "every photo" if all_photos else "one photo per capture"
    return split(tr), split(te), list(tr.condition_names), f"{size} dataset ({folder.name}, {which}); targets S_hat"


def errors(P, d, names):
    """{"s_hat"/"true": {condition: mm, ..., "all": mm}}: mean vertex error after rigid alignment."""
    return {ref: metrics.per_condition(metrics.mean_vertex_errors(P, d[ref]), d["cond"], names)
            for ref in ("s_hat", "true")}


def per_face(P, d):
    """{"s_hat"/"true": (M,) mean vertex errors}, for the printed tables."""
    return {ref: metrics.mean_vertex_errors(P, d[ref]) for ref in ("s_hat", "true")}


# ----------------------------------------------------------------------------- the per-vertex loops
def loop_reference(cfg: dict, tr: dict, vertices, epochs: int, naive: bool):
    """Train the networks of ``vertices`` one at a time, exactly as the batched code does
    (same features, initial weights, minibatch order, epochs, validation and snapshots).
    Returns (seconds per vertex, {vertex: best (W1, b1, W2, b2)}, the features X (N, M, D))."""
    p = MRFPrior(**cfg)
    ts = p.prepare(tr["s0"], tr["colors"], tr["s_hat"])
    X, Yn, tr_rows, va_rows = ts.X, ts.Y, ts.train_rows, ts.val_rows
    init = VertexNetworks.init(X.shape[0], p.n_inputs, p.hidden, generator=ts.generator,
                               activation=p.activation, requires_grad=False).parameters()   # as MRFPrior.fit
    orders = [tr_rows[torch.randperm(len(tr_rows), generator=ts.generator)] for _ in range(epochs)]
    act = torch.relu if p.activation == "relu" else torch.tanh
    times, best = [], {}
    for n in vertices:
        x, y = X[n].contiguous(), Yn[n].contiguous()                # (M, D), (M, 3): this vertex only
        xv, yv = x[va_rows], y[va_rows]
        t0 = time.perf_counter()
        if naive:
            net = torch.nn.Sequential(torch.nn.Linear(p.n_inputs, p.hidden),
                                      torch.nn.ReLU() if p.activation == "relu" else torch.nn.Tanh(),
                                      torch.nn.Linear(p.hidden, 3))
            with torch.no_grad():
                net[0].weight.copy_(init[0][n].T), net[0].bias.copy_(init[1][n])
                net[2].weight.copy_(init[2][n].T), net[2].bias.copy_(init[3][n])
            opt = torch.optim.AdamW(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
            bv, keep = float("inf"), None
            for order in orders:
                for rows in order.split(p.batch_size):
                    loss = torch.nn.functional.mse_loss(net(x[rows]), y[rows])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                with torch.no_grad():
                    v = float(torch.nn.functional.mse_loss(net(xv), yv))
                if v < bv:
                    bv, keep = v, copy.deepcopy(net.state_dict())
            W = (keep["0.weight"].T, keep["0.bias"], keep["2.weight"].T, keep["2.bias"])
        else:
            params = [init[i][n].clone().requires_grad_(True) for i in range(4)]
            W1, b1, W2, b2 = params
            opt = adamw(params, p.lr, p.weight_decay)
            bv, keep = torch.tensor(float("inf")), [q.detach().clone() for q in params]
            for order in orders:
                for rows in order.split(p.batch_size):
                    out = torch.addmm(b2, act(torch.addmm(b1, x[rows], W1)), W2)
                    loss = (out - y[rows]).pow(2).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                with torch.no_grad():
                    v = (torch.addmm(b2, act(torch.addmm(b1, xv, W1)), W2) - yv).pow(2).mean()
                    if v < bv:
                        bv = v
                        for k_, q in zip(keep, params):
                            k_.copy_(q)
            W = tuple(keep)
        times.append(time.perf_counter() - t0)
        best[n] = W
    return float(np.mean(times)), best, X


def offsets_mm(prior: MRFPrior, X, n, W):
    """Vertex ``n``'s offsets (M, 3) in mm from its features ``X[n]`` and weights ``W``."""
    act = torch.relu if prior.activation == "relu" else torch.tanh
    with torch.no_grad():
        o = torch.addmm(W[3], act(torch.addmm(W[1], X[n], W[0])), W[2]).numpy()
    return o * prior.offset_scale_[n] + prior.offset_mean_[n]


def step_times(prior: MRFPrior, batch: int, repeats: int = 10):
    """Median ms of one ``train_step`` of all N networks and of one network alone, on random
    features of ``batch`` faces (the arithmetic does not depend on the values)."""
    g = torch.Generator().manual_seed(0)
    N, D, H = prior.n_vertices, prior.n_inputs, prior.hidden
    out = {}
    for label, n in (("all_networks_ms", N), ("one_network_ms", 1)):
        nets = VertexNetworks.init(n, D, H, generator=g)
        opt = adamw(nets.parameters(), prior.lr, prior.weight_decay)
        X, Y = torch.randn(n, batch, D, generator=g), torch.randn(n, batch, 3, generator=g)
        out[label] = _common.median_ms(lambda: train_step(nets, opt, X, Y), repeats=repeats if n > 1 else 200)
    out["loop_over_vertices_ms"] = out["one_network_ms"] * N
    out["ratio"] = out["loop_over_vertices_ms"] / out["all_networks_ms"]
    return out


# ----------------------------------------------------------------------------- main
def print_tables(rows: dict, te: dict, names):
    """One per-condition table per reference (``metrics.condition_table``)."""
    for ref, title in (("s_hat", "against S_hat"), ("true", "against the true surface")):
        print(metrics.condition_table({k: v[ref] for k, v in rows.items()}, te["cond"], names,
                                      label=title, digits=3, width=12))
        print()


def main(argv=None):
    ap = _common.parser(__doc__, "mrf", threads=THREADS)
    ap.add_argument("--loop-vertices", type=int, default=6, help="vertices timed in the per-vertex loops")
    ap.add_argument("--no-ablations", action="store_true", help="skip the design-choice fits")
    ap.add_argument("--quick", action="store_true", help="fewer epochs and no ablations (a smoke run)")
    ap.add_argument("--sweeps", action="store_true",
                    help="also run the Fig. 3 sweeps (K at 50 hidden units, hidden units at K = 10), full training")
    ap.add_argument("--size", choices=data.SIZES, default="lite",
                    help="dataset preset (paper: 2800 / 500 faces, built on first use; much longer)")
    ap.add_argument("--all-photos", action="store_true",
                    help="train on every photo of each training capture (default: the first photo of each)")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(args.threads))

    t_all = time.perf_counter()
    tr, te, names, source = load_data(args.size, args.all_photos)
    M, N = tr["s0"].shape[:2]
    print(f"data: {source}\n  train {M} faces, test {len(te['s0'])}, N = {N} vertices; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads\n", flush=True)
    base = dict(seed=0, progress=False)
    if args.quick:
        base.update(max_epochs=15, patience=5)

    results = {"source": source, "target": "s_hat", "n_train": int(M), "n_test": int(len(te["s0"])),
               "n_vertices": int(N), "conditions": names, "quick": bool(args.quick),
               "machine": _common.machine_info()}

    # ---- the two priors of the chapter
    fits = {}
    for label, kw in (("xyz+rgb", {}), ("xyz", dict(use_color=False))):
        p = MRFPrior(**base, **kw).fit(tr["s0"], tr["colors"], tr["s_hat"])
        fits[label] = p
        print(f"fit MRF {label:8s}: {p.fit_seconds_:6.1f} s in all, training loop "
              f"{p.history_['seconds'][-1]:6.1f} s, {len(p.history_['val_mm2'])} epochs, "
              f"best epochs median {int(np.median(p.best_epoch_))}", flush=True)
    prior = fits["xyz+rgb"]

    # ---- accuracy
    preds = {"S0 (GC, landmark fit)": te["s0"],
             "S0 + mean offset (bias only)": te["s0"] + prior.offset_mean_[None],
             "MRFGC: MRF xyz+rgb (default)": MRFGC(prior)(te["s0"], te["colors"]),
             "MRF xyz only": fits["xyz"].predict(te["s0"])}
    rows = {name: errors(P, te, names) for name, P in preds.items()}
    results["errors"] = rows
    print("\nmean vertex error on the test set (mm, after rigid alignment)")
    print_tables({name: per_face(P, te) for name, P in preds.items()}, te, names)
    s0 = rows["S0 (GC, landmark fit)"]
    gains = {}
    for name in list(rows)[1:]:
        gains[name] = {r: 1 - rows[name][r]["all"] / s0[r]["all"] for r in ("s_hat", "true")}
        print(f"  {name:<30s} vs S0: " + ", ".join(f"{100 * g:+.1f}% ({r})" for r, g in gains[name].items()))
    results["gain_vs_s0"] = gains
    results["gain_vs_mean_offset"] = {
        r: 1 - rows["MRFGC: MRF xyz+rgb (default)"][r]["all"] / rows["S0 + mean offset (bias only)"][r]["all"]
        for r in ("s_hat", "true")}
    results["colour_gain_vs_xyz"] = {
        r: 1 - rows["MRFGC: MRF xyz+rgb (default)"][r]["all"] / rows["MRF xyz only"][r]["all"]
        for r in ("s_hat", "true")}

    # ---- speed: batched vs one vertex at a time
    epochs = len(prior.history_["val_mm2"])
    t_batched = prior.history_["seconds"][-1]
    verts = np.linspace(0, N - 1, args.loop_vertices).round().astype(int).tolist()
    cfg = {**prior.get_config(), "progress": False}
    speed = {"epochs": epochs, "batched_train_s": t_batched, "batched_fit_s": prior.fit_seconds_,
             "loop_vertices": verts, "loadavg_before_loops": os.getloadavg()[0]}
    for naive in (False, True):
        key = "naive" if naive else "lean"
        per_vertex, best, X = loop_reference(cfg, tr, verts, epochs, naive)
        est = per_vertex * N
        speed[key] = {"seconds_per_vertex": per_vertex, "extrapolated_all_s": est, "ratio": est / t_batched}
        if not naive:   # the loop must reproduce the batched networks of these vertices
            nets = prior.networks_
            diff = max(float(np.abs(offsets_mm(prior, X, n, best[n]) -
                                    offsets_mm(prior, X, n, [q[n] for q in nets.parameters()])).max())
                       for n in verts)
            speed[key]["max_offset_difference_mm"] = diff
    speed["step"] = step_times(prior, prior.batch_size)
    speed["loadavg_after_loops"] = os.getloadavg()[0]
    results["speed"] = speed
    print(f"\ntraining all {N} networks ({epochs} epochs, {M} faces):")
    print(f"  batched (MRFPrior.fit, training loop)      {t_batched:8.1f} s")
    for key, label in (("lean", "lean loop (addmm + fused AdamW)"),
                       ("naive", "naive loop (nn.Sequential + AdamW)")):
        sp = speed[key]
        print(f"  {label:<38s}   {sp['extrapolated_all_s']:8.1f} s  (from {len(verts)} vertices, "
              f"{sp['seconds_per_vertex'] * 1e3:.0f} ms each)   batched is {sp['ratio']:.0f}x faster")
    print(f"  the lean loop reproduces the batched networks to {speed['lean']['max_offset_difference_mm']:.2e} mm")
    st = speed["step"]
    print(f"  one train_step of {prior.batch_size} faces: all networks {st['all_networks_ms']:.1f} ms, "
          f"one network {st['one_network_ms']:.3f} ms (x {N}: {st['loop_over_vertices_ms']:.0f} ms, "
          f"{st['ratio']:.0f}x)")
    busy = max(results["machine"]["load_average"][0], speed["loadavg_before_loops"], speed["loadavg_after_loops"])
    if busy > (os.cpu_count() or 1):
        print(f"  note: load average up to {busy:.1f} on {os.cpu_count()} cores -- other processes shared "
              f"the CPU, so these times (and the ratios) are noisy")

    # ---- design choices
    if not (args.no_ablations or args.quick):
        val_key = "best_val_mm2"
        sweep = {}
        for cs in (0.0, 5.0, 20.0, 60.0, 200.0):
            p = prior if cs == prior.color_scale else \
                MRFPrior(**base, color_scale=cs).fit(tr["s0"], tr["colors"], tr["s_hat"])
            sweep[cs] = {"val_mm2": p.history_[val_key][-1],
                         "test": errors(p.predict(te["s0"], te["colors"]), te, names), "fit_s": p.fit_seconds_}
            print(f"  color_scale {cs:6.1f}: validation {sweep[cs]['val_mm2']:.4f} mm^2", flush=True)
        chosen = min(sweep, key=lambda c: sweep[c]["val_mm2"])
        results["color_scale_sweep"] = {str(k): v for k, v in sweep.items()}
        results["color_scale_chosen_by_validation"] = chosen
        xyz_nb = knn_fixed(prior.mean_template_, None, k=prior.k)
        nb_changed = float(np.mean([set(a) != set(b) for a, b in zip(prior.neighbours_, xyz_nb)]))
        results["neighbour_sets_changed_by_colour"] = nb_changed
        print(f"color_scale by validation: {chosen} (default {prior.color_scale}); colour changes the "
              f"neighbour set of {100 * nb_changed:.1f}% of the vertices at the default")

        variants = {
            "default": None,
            "neighbours per template (paper)": dict(neighbours="per_subject"),
            "absolute positions": dict(relative=False),
            "absolute positions and targets": dict(relative=False, residual=False),
            "paper literal (K-NN per template, absolute F and targets, not aligned)":
                dict(neighbours="per_subject", relative=False, residual=False, align_targets=False),
            "per-column normalisation": dict(normalize="column"),
            "targets not aligned": dict(align_targets=False),
            "one early-stopping epoch": dict(early_stopping="global"),
            "K = 5": dict(k=5),
            "K = 20": dict(k=20),
            "hidden = 10": dict(hidden=10),
        }
        abl, abl_faces = {}, {}
        print("\ndesign choices, one at a time (fitting ...)", flush=True)
        for name, kw in variants.items():
            p = prior if kw is None else MRFPrior(**base, **kw).fit(tr["s0"], tr["colors"], tr["s_hat"])
            P = p.predict(te["s0"], te["colors"])
            abl[name] = {"errors": errors(P, te, names), "val_mm2": p.history_[val_key][-1],
                         "fit_s": p.fit_seconds_, "epochs": len(p.history_["val_mm2"])}
            abl_faces[name[:40]] = metrics.mean_vertex_errors(P, te["s_hat"])
            print(f"  {name[:60]:<60s} val {abl[name]['val_mm2']:.3f} mm^2, fit {p.fit_seconds_:5.1f} s", flush=True)
        print(metrics.condition_table(abl_faces, te["cond"], names, label="test error vs S_hat", digits=3))
        results["ablations"] = abl

    # ---- Fig. 3: K and the hidden units (the book runs a few of these with a shortened training)
    if args.sweeps:
        fig3 = {"K": {}, "hidden": {}}
        print("\nFig. 3 sweeps (test error vs S_hat)")
        for axis, values, make in (("K", (3, 5, 9, 15, 20, 25, 30), lambda v: dict(k=v, hidden=50)),
                                   ("hidden", (5, 10, 25, 50, 100), lambda v: dict(k=10, hidden=v))):
            faces = {}
            for v in values:
                p = MRFPrior(**base, **make(v)).fit(tr["s0"], tr["colors"], tr["s_hat"])
                P = p.predict(te["s0"], te["colors"])
                fig3[axis][str(v)] = {"errors": errors(P, te, names), "fit_s": p.fit_seconds_,
                                      "epochs": len(p.history_["val_mm2"])}
                faces[f"{axis} = {v}"] = metrics.mean_vertex_errors(P, te["s_hat"])
                print(f"  {axis} = {v}: fit {p.fit_seconds_:5.1f} s", flush=True)
            print(metrics.condition_table(faces, te["cond"], names, label=f"over {axis}", digits=3))
            vals = [fig3[axis][str(v)]["errors"]["s_hat"]["all"] for v in values]
            print(f"  over {axis}: largest gap {max(vals) - min(vals):.3f} mm\n")
        results["fig3"] = fig3

    results["seconds_total"] = time.perf_counter() - t_all
    results["load_average_end"] = list(os.getloadavg())
    _common.write_results(args.out, results)
    print(f"({results['seconds_total']:.0f} s)")
    return results


if __name__ == "__main__":
    main()
