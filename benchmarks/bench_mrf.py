"""The learnable MRF prior (paper III-B-2..4, Fig. 3): speed of the batched networks, accuracy, design choices.

Data: the ``lite`` dataset of :mod:`dualface_lite.data` (240 training / 90 test
subjects, 3 conditions; built with ``data.build_dataset`` if it is missing):
``s0`` the landmark-fit templates with their colours, ``s_hat`` the NICP ground
truth the prior is trained on (as in the paper), ``true`` the synthetic surface
the paper could not know. If ``dualface_lite.data`` is not importable, the
benchmark generates its own subjects (``synth.make_subject`` +
``fitting.fit_landmarks``, 80 + 30 per condition), trains on the true surface
and has no S_hat column; the output says which.

Measured (one run, CPU, the torch thread count as found, usually 2 here):

1. **Speed.** Time to train all N = 3448 networks together (batched tensors,
   ``MRFPrior.fit``; the training loop only, features precomputed) against the
   same work done one vertex at a time in a Python loop: the same features,
   initial weights, minibatches, number of epochs, per-epoch validation and
   best-epoch snapshot, for ``--loop-vertices`` vertices, extrapolated to all N
   (the loop over all 3448 would take many minutes). Two loops: "lean" (raw
   tensors, ``torch.addmm`` and the same fused AdamW as the batched code -- it
   must reproduce the batched networks, and the benchmark checks that it does)
   and "naive" (``nn.Sequential(Linear, ReLU, Linear)`` + ``torch.optim.AdamW``
   with its defaults + ``F.mse_loss``, as one would first write it).
2. **Accuracy.** Mean vertex error (mm, after rigid alignment,
   ``metrics.mean_vertex_error``) on the test set, per condition, against
   S_hat and against the true surface: S0 (GC), S0 + the networks' output
   bias alone (the mean offset of the training faces: what the prior gives
   without looking at its inputs), the MRF prior with xyz + rgb features
   (MRFGC) and with xyz only.
3. **Design choices** (``--no-ablations`` skips them): ``color_scale`` chosen
   on the validation split (the kept networks' validation error, never the
   test set), then one change at a time from the default: the paper's K-NN per
   template, absolute positions, per-column normalisation (cancels delta),
   targets not rigidly aligned, one early-stopping epoch for all networks,
   K = 5 and 20.

4. **Fig. 3** (``--sweeps``): K in {3, 5, 9, 15, 20, 25, 30} at 50 hidden units and
   the hidden units in {5, 10, 25, 50, 100} at K = 10, full training (chapter 4
   runs them with a shortened one).

Usage: ``python benchmarks/bench_mrf.py [--loop-vertices 6] [--no-ablations] [--quick] [--sweeps]
[--size lite|paper]``.
Writes ``benchmarks/results/mrf.json``.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dualface_lite as df  # noqa: E402
from dualface_lite import metrics  # noqa: E402
from dualface_lite.mrf import MRFGC, MRFPrior, _adamw  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "mrf.json"


# ----------------------------------------------------------------------------- data
def load_data(quick: bool, size: str = "lite"):
    try:
        from dualface_lite import data
    except ImportError:
        data = None
    if data is not None:
        cfg = data.DatasetConfig.preset(size)
        try:
            tr, te = data.load_split(cfg, "train"), data.load_split(cfg, "test")
        except FileNotFoundError:
            print(f"building the {size} dataset (data.build_dataset) ...", flush=True)
            data.build_dataset(cfg)
            tr, te = data.load_split(cfg, "train"), data.load_split(cfg, "test")
        names = list(tr.condition_names)
        split = lambda d: dict(s0=d.s0, colors=d.colors, s_hat=d.s_hat, true=d.true,  # noqa: E731
                               cond=np.asarray(d.condition, int))
        return split(tr), split(te), names, f"{size} dataset (dualface_lite.data, {tr.folder.name}); targets S_hat"
    from dualface_lite import fitting, synth

    m = df.load_model()

    def make(base, per):
        out = {k: [] for k in ("s0", "colors", "true", "cond")}
        for k in range(per * 3):
            c = synth.CONDITIONS[k % 3]
            s = synth.make_subject(base + k, c, model=m, with_scan=False)
            f = fitting.fit_landmarks(m, s.landmarks, image=s.image)
            for key, v in (("s0", f.vertices), ("colors", f.colors), ("true", s.vertices), ("cond", k % 3)):
                out[key].append(v)
        d = {k: np.asarray(v) for k, v in out.items()}
        d["s_hat"] = None
        return d

    per = (20, 10) if quick else (80, 30)
    return (make(200_000, per[0]), make(300_000, per[1]), list(synth.CONDITIONS),
            "generated here (synth.make_subject + fit_landmarks; dualface_lite.data not available); targets: true surface")


def errors(P, d, names):
    """{"s_hat"/"true": {"all": mm, condition: mm}} mean vertex error after rigid alignment."""
    out = {}
    for ref in ("s_hat", "true"):
        if d[ref] is None:
            continue
        e = np.array([metrics.mean_vertex_error(p, g) for p, g in zip(P, d[ref])])
        out[ref] = {"all": float(e.mean()), **{n: float(e[d["cond"] == i].mean()) for i, n in enumerate(names)}}
    return out


# ----------------------------------------------------------------------------- the per-vertex loops
def loop_reference(cfg: dict, tr: dict, target: str, vertices, epochs: int, naive: bool):
    """Train the networks of ``vertices`` one at a time, exactly as the batched code does
    (same features, initial weights, minibatch order, epochs, validation and snapshots).
    Returns (seconds per vertex, {vertex: best (W1, b1, W2, b2)})."""
    p = MRFPrior(**cfg)
    X, Yn, tr_rows, va_rows, gen = p._prepare(tr["s0"], tr["colors"], tr[target])
    init = p._init_weights(X.shape[0], gen)                         # the same draws as MRFPrior._train
    orders = [tr_rows[torch.randperm(len(tr_rows), generator=gen)] for _ in range(epochs)]
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
            opt = _adamw(params, p.lr, p.weight_decay)
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
    s = prior._state
    act = torch.relu if prior.activation == "relu" else torch.tanh
    with torch.no_grad():
        o = torch.addmm(W[3], act(torch.addmm(W[1], X[n], W[0])), W[2])
        return (o * s["y_std"][n] + s["y_mean"][n]).numpy()


# ----------------------------------------------------------------------------- main
def fmt_row(name, e, names, extra=""):
    cells = []
    for ref in ("s_hat", "true"):
        if ref in e:
            cells.append("  ".join(f"{e[ref][k]:6.3f}" for k in ["all", *names]))
    return f"{name[:40]:<40s} | " + " | ".join(cells) + (f" | {extra}" if extra else "")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loop-vertices", type=int, default=6, help="vertices timed in the per-vertex loops")
    ap.add_argument("--no-ablations", action="store_true", help="skip the design-choice fits")
    ap.add_argument("--quick", action="store_true", help="fewer epochs and no ablations (a smoke run)")
    ap.add_argument("--sweeps", action="store_true",
                    help="also run the Fig. 3 sweeps (K at 50 hidden units, hidden units at K = 10), full training")
    ap.add_argument("--size", choices=("lite", "paper"), default="lite",
                    help="dataset preset (paper: 2800 / 500 faces, built on first use; much longer)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    t_all = time.perf_counter()
    tr, te, names, source = load_data(args.quick, args.size)
    target = "s_hat" if tr["s_hat"] is not None else "true"
    M, N = tr["s0"].shape[:2]
    print(f"data: {source}\n  train {M} faces, test {len(te['s0'])}, N = {N} vertices; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads\n", flush=True)
    base = dict(seed=0, progress=False)
    if args.quick:
        base.update(max_epochs=15, patience=5)

    results = {"source": source, "target": target, "n_train": int(M), "n_test": int(len(te["s0"])),
               "n_vertices": int(N), "conditions": names, "torch": torch.__version__,
               "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
               "loadavg_start": os.getloadavg()[0]}

    # ---- the two priors of the chapter
    fits = {}
    for label, kw in (("xyz+rgb", {}), ("xyz", dict(use_color=False))):
        p = MRFPrior(**base, **kw).fit(tr["s0"], tr["colors"], tr[target])
        fits[label] = p
        print(f"fit MRF {label:8s}: {p.fit_seconds_:6.1f} s in all, training loop {p.history_['seconds'][-1]:6.1f} s, "
              f"{len(p.history_['val_mm2'])} epochs, best epochs median {int(np.median(p.best_epoch_))}", flush=True)
    prior = fits["xyz+rgb"]

    # ---- accuracy
    rows = {}
    rows["S0 (GC, landmark fit)"] = errors(te["s0"], te, names)
    bias = prior._state["y_mean"].numpy()            # what the networks output for any input when their
    rows["S0 + mean offset (bias only)"] = errors(te["s0"] + bias[None], te, names)   # weights are 0
    rows["MRFGC: MRF xyz+rgb (default)"] = errors(MRFGC(prior)(te["s0"], te["colors"]), te, names)
    rows["MRF xyz only"] = errors(fits["xyz"].predict(te["s0"]), te, names)
    results["errors"] = rows
    hdr = "  ".join(f"{k[:6]:>6s}" for k in ["all", *names])
    refs = [r for r in ("s_hat", "true") if r in rows["S0 (GC, landmark fit)"]]
    print("\nmean vertex error on the test set (mm, after rigid alignment)")
    print(f"{'':<40s} | " + " | ".join(f"vs {r}: {hdr}" for r in refs))
    for name, e in rows.items():
        print(fmt_row(name, e, names))
    s0 = rows["S0 (GC, landmark fit)"]
    gains = {}
    for name in list(rows)[1:]:
        gains[name] = {r: 1 - rows[name][r]["all"] / s0[r]["all"] for r in refs}
        print(f"  {name:<32s} vs S0: " + ", ".join(f"{100 * g:+.1f}% ({r})" for r, g in gains[name].items()))
    results["gain_vs_s0"] = gains
    results["colour_gain_vs_xyz"] = {r: 1 - rows["MRFGC: MRF xyz+rgb (default)"][r]["all"] / rows["MRF xyz only"][r]["all"]
                                     for r in refs}

    # ---- speed: batched vs one vertex at a time
    epochs = len(prior.history_["val_mm2"])
    t_batched = prior.history_["seconds"][-1]
    verts = np.linspace(0, N - 1, args.loop_vertices).round().astype(int).tolist()
    cfg = {**prior.get_config(), "progress": False}
    speed = {"epochs": epochs, "batched_train_s": t_batched, "batched_fit_s": prior.fit_seconds_,
             "loop_vertices": verts, "loadavg_before_loops": os.getloadavg()[0]}
    for naive in (False, True):
        key = "naive" if naive else "lean"
        per_vertex, best, X = loop_reference(cfg, tr, target, verts, epochs, naive)
        est = per_vertex * N
        speed[key] = {"seconds_per_vertex": per_vertex, "extrapolated_all_s": est, "ratio": est / t_batched}
        if not naive:   # the loop must reproduce the batched networks of these vertices
            s = prior._state
            diff = max(float(np.abs(offsets_mm(prior, X, n, best[n]) -
                                    offsets_mm(prior, X, n, (s["W1"][n], s["b1"][n], s["W2"][n], s["b2"][n]))).max())
                       for n in verts)
            speed[key]["max_offset_difference_mm"] = diff
    speed["loadavg_after_loops"] = os.getloadavg()[0]
    results["speed"] = speed
    print(f"\ntraining all {N} networks ({epochs} epochs, {M} faces):")
    print(f"  batched (MRFPrior.fit, training loop)      {t_batched:8.1f} s")
    for key, label in (("lean", "lean loop (addmm + fused AdamW)"), ("naive", "naive loop (nn.Sequential + AdamW)")):
        sp = speed[key]
        print(f"  {label:<38s}   {sp['extrapolated_all_s']:8.1f} s  (extrapolated from {len(verts)} vertices, "
              f"{sp['seconds_per_vertex'] * 1e3:.0f} ms each)   batched is {sp['ratio']:.0f}x faster")
    print(f"  the lean loop reproduces the batched networks to {speed['lean']['max_offset_difference_mm']:.2e} mm")
    busy = max(results["loadavg_start"], speed["loadavg_before_loops"], speed["loadavg_after_loops"])
    if busy > (os.cpu_count() or 1):
        print(f"  note: load average up to {busy:.1f} on {os.cpu_count()} cores -- other processes shared the CPU, "
              f"so these times (and the ratios) are noisy")

    # ---- design choices
    if not (args.no_ablations or args.quick):
        val_key = "best_val_mm2"
        sweep = {}
        for cs in (0.0, 5.0, 20.0, 60.0, 200.0):
            p = prior if cs == prior.color_scale else MRFPrior(**base, color_scale=cs).fit(tr["s0"], tr["colors"], tr[target])
            sweep[cs] = {"val_mm2": p.history_[val_key][-1], "test": errors(p.predict(te["s0"], te["colors"]), te, names),
                         "fit_s": p.fit_seconds_}
            print(f"  color_scale {cs:6.1f}: validation {sweep[cs]['val_mm2']:.4f} mm^2", flush=True)
        chosen = min(sweep, key=lambda c: sweep[c]["val_mm2"])
        results["color_scale_sweep"] = {str(k): v for k, v in sweep.items()}
        results["color_scale_chosen_by_validation"] = chosen
        nb_changed = None
        if prior.neighbours_ is not None:
            xyz_nb = MRFPrior(**base, color_scale=0.0)._neighbour_index(None, None, prior._state["mean_template"].numpy(), None)
            nb_changed = float(np.mean([set(a) != set(b) for a, b in zip(prior.neighbours_, xyz_nb)]))
            results["neighbour_sets_changed_by_colour"] = nb_changed
        print(f"color_scale by validation: {chosen} (default {prior.color_scale}); colour changes the neighbour set "
              f"of {100 * (nb_changed or 0):.1f}% of the vertices at the default")

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
        abl = {}
        print(f"\ndesign choices, one at a time (test error vs {refs[0]}, all / per condition; validation mm^2)")
        for name, kw in variants.items():
            p = prior if kw is None else MRFPrior(**base, **kw).fit(tr["s0"], tr["colors"], tr[target])
            e = errors(p.predict(te["s0"], te["colors"]), te, names)
            abl[name] = {"errors": e, "val_mm2": p.history_[val_key][-1], "fit_s": p.fit_seconds_,
                         "epochs": len(p.history_["val_mm2"])}
            print(fmt_row(name, {refs[0]: e[refs[0]]}, names,
                          f"val {abl[name]['val_mm2']:.3f}  fit {p.fit_seconds_:5.1f} s"), flush=True)
        results["ablations"] = abl

    # ---- Fig. 3: K and the hidden units (the book runs these with a shortened training)
    if args.sweeps:
        fig3 = {"K": {}, "hidden": {}}
        print(f"\nFig. 3 sweeps (test error vs {refs[0]}, all / per condition)")
        for axis, values, make in (("K", (3, 5, 9, 15, 20, 25, 30), lambda v: dict(k=v, hidden=50)),
                                   ("hidden", (5, 10, 25, 50, 100), lambda v: dict(k=10, hidden=v))):
            for v in values:
                p = MRFPrior(**base, **make(v)).fit(tr["s0"], tr["colors"], tr[target])
                e = errors(p.predict(te["s0"], te["colors"]), te, names)
                fig3[axis][str(v)] = {"errors": e, "fit_s": p.fit_seconds_, "epochs": len(p.history_["val_mm2"])}
                print(fmt_row(f"{axis} = {v}", {refs[0]: e[refs[0]]}, names, f"fit {p.fit_seconds_:5.1f} s"), flush=True)
            vals = [fig3[axis][str(v)]["errors"][refs[0]]["all"] for v in values]
            print(f"  over {axis}: largest gap {max(vals) - min(vals):.3f} mm")
        results["fig3"] = fig3

    results["seconds_total"] = time.perf_counter() - t_all
    results["loadavg_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {args.out} ({results['seconds_total']:.0f} s)")


if __name__ == "__main__":
    main()
