"""When the explicit prior pays: Table III's learnt variants trained on fewer people.

For each number of training people (the lite dataset's first 25, 50, 100 and all 300) and each seed,
the lite ``ResNetGC`` and ``Ours`` networks are trained on those people only
(:func:`dualface_lite.train.fewer_people`: the same optimiser steps and early-stopping window, only the
data shrinks), ``Ours``' MRF prior on the same people; ``MRFGC`` is that prior on ``S0``, ``GC`` is ``S0``.
All are measured on the whole lite test set (the same 90 photos for every size), against ``S_hat`` and
against the true surface: each variant's mean vertex error (mm, after rigid alignment), and ``Ours``' paired
gain over ``ResNetGC`` (ResNetGC - Ours, positive when the prior helps) with its 95% bootstrap interval over
the test people, the per-face differences averaged over the seeds first (seeds pooled). Also the size (RMS per vertex) of
the residuals each network learns, on its training photos and on the test photos: ``Ours`` learns on its
prior's outputs for the photos that prior was trained on, which are closer to ``S_hat`` than its outputs on
new people.

Each (people, seed, threads) run is stored in ``benchmarks/results/prior_scaling.json`` with its per-face
errors, replacing an earlier run of the same triple; the summary is recomputed over the stored runs.
Networks go to the kit's network cache. ``--epochs`` sets the training length on all 300 people (default
``_common.RECORDED_EPOCHS`` = 6, the stored runs'; ``TrainConfig.lite()``, the book's networks, trains 4); runs
of another length go to another ``--out``.

Usage::

    python benchmarks/bench_prior_scaling.py --people 25 50 100 300 --seeds 0 1 2
    python benchmarks/bench_prior_scaling.py --summary
"""
import _common

_common.pin_threads("2")

import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dualface_lite import data, metrics, train  # noqa: E402
from dualface_lite.evaluation import paired_comparison  # noqa: E402
from dualface_lite.model import load_model  # noqa: E402
from dualface_lite.pipeline import DualNetwork  # noqa: E402

VARIANTS = ("GC", "MRFGC", "ResNetGC", "Ours")
REFERENCES = ("s_hat", "true")


def run(people: int, seed: int, threads: int, model, epochs: int = _common.RECORDED_EPOCHS) -> dict:
    t0 = time.perf_counter()
    nets = {}
    for v in ("ResNetGC", "Ours"):
        config = train.fewer_people(train.TrainConfig.lite(variant=v, seed=seed, epochs=epochs), people)
        nets[v] = train.train(config, model=model, progress=True)
    test = data.load_split("lite", "test")
    pred = DualNetwork(model, nets).predict_all(test, VARIANTS)
    errors = {ref: {v: np.round(metrics.mean_vertex_errors(pred[v], getattr(test, ref)), 5).tolist()
                    for v in VARIANTS} for ref in REFERENCES}
    cfg = nets["Ours"].config
    # the residuals T_L learns: on the training photos (for Ours on its prior's in-sample outputs) and on
    # the test photos, root mean square per vertex (mm)
    train_set = data.load_split("lite", "train")
    used = train_set.subset(np.arange(cfg.max_photos or len(train_set)))
    bases = {"ResNetGC": (used.s0, test.s0),
             "Ours": (nets["Ours"].prior.predict(used.s0, used.colors), pred["MRFGC"])}
    def rms(base, d):
        return round(float(np.sqrt((metrics.residual_targets(base, d.s_hat) ** 2).sum(-1).mean())), 4)

    residual_rms = {v: {"train": rms(tr, used), "test": rms(te, test)} for v, (tr, te) in bases.items()}
    return dict(people=people, seed=seed, threads=threads, photos=cfg.max_photos or len(data.load_split("lite")),
                epochs=cfg.epochs, patience=cfg.patience, epochs_run={v: len(n.history.get("val_mm", [])) for v, n in nets.items()},
                best_epoch={v: n.history.get("best_epoch") for v, n in nets.items()},
                seconds=round(time.perf_counter() - t0, 1), dataset=cfg.dataset.key(), code=train.code_fingerprint(),
                machine=_common.machine_info(), residual_rms=residual_rms, errors=errors)


def summary(runs: list) -> dict:
    """Per number of people: each variant's mean error over the seeds (mean, sd, per seed) and
    ResNetGC - Ours with its interval (per-face differences averaged over the seeds, people resampled)."""
    groups = np.asarray(data.load_split("lite", "test").person_row)
    out = {}
    for people in sorted({r["people"] for r in runs}):
        rs = sorted((r for r in runs if r["people"] == people), key=lambda r: (r["threads"], r["seed"]))
        entry = dict(seeds=[r["seed"] for r in rs], threads=sorted({r["threads"] for r in rs}),
                     photos=rs[0]["photos"])
        for ref in REFERENCES:
            e = {v: np.array([r["errors"][ref][v] for r in rs]) for v in VARIANTS}   # (runs, faces)
            table = {}
            for v in VARIANTS:
                per_seed = e[v].mean(1)
                table[v] = dict(mean=round(float(per_seed.mean()), 4),
                                sd=round(float(per_seed.std(ddof=1)), 4) if len(rs) > 1 else None,
                                per_seed=[round(float(x), 4) for x in per_seed])
            gain = paired_comparison(e["ResNetGC"].mean(0), e["Ours"].mean(0), names=("ResNetGC", "Ours"),
                                     groups=groups)
            table["ResNetGC-Ours"] = dict(
                mean=round(gain.diff.mean, 4), low=round(gain.diff.low, 4), high=round(gain.diff.high, 4),
                p=round(gain.p_value, 4), ours_better=round(gain.b_better, 3), per_seed=[round(float(x), 4) for x in (e["ResNetGC"] - e["Ours"]).mean(1)])
            entry[ref] = table
        if all("residual_rms" in r for r in rs):
            entry["residual_rms"] = {v: {sp: round(float(np.mean([r["residual_rms"][v][sp] for r in rs])), 4)
                                         for sp in ("train", "test")} for v in ("ResNetGC", "Ours")}
        out[str(people)] = entry
    return out


def main() -> None:
    ap = _common.parser(__doc__, "prior_scaling", threads="2", seeds=[0, 1, 2])
    ap.add_argument("--people", type=int, nargs="*", default=[25, 50, 100, 300])
    ap.add_argument("--epochs", type=int, default=_common.RECORDED_EPOCHS,
                    help=f"epochs on all 300 people (default {_common.RECORDED_EPOCHS}, the stored runs')")
    args = ap.parse_args()
    threads = int(args.threads)
    torch.set_num_threads(threads)
    runs = _common.stored_runs(args.out)
    if not args.summary:
        data.build_dataset("lite")
        # the optimiser steps on all people; train.fewer_people gives every size about as many (within 4%)
        batch = train.TrainConfig.lite().batch_size
        steps = len(data.load_split("lite")) // batch * args.epochs
        other = sorted({r["photos"] // batch * r["epochs"] for r in runs
                        if abs(r["photos"] // batch * r["epochs"] - steps) > 0.05 * steps})
        if other:
            raise SystemExit(f"{args.out} holds runs of {other} optimiser steps, these would train about "
                             f"{steps}: write them to another --out")
        model = load_model()
        for seed in args.seeds:
            for people in args.people:
                r = run(people, seed, threads, model, args.epochs)
                runs = _common.with_run(runs, r, lambda x: (x["people"], x["threads"], x["seed"]))
                print(f"{people} people, seed {seed}, {threads} thread(s): {r['seconds']:.0f} s")
                _common.write_results(args.out, {"runs": runs, "summary": summary(runs), "test_person_row":
                                                 np.asarray(data.load_split("lite", "test").person_row).tolist()})
    table = summary(runs)
    for ref in REFERENCES:
        print(f"against {ref}: mean vertex error (mm), mean over seeds; ResNetGC - Ours [95% interval]")
        print(f"{'people':>7s} {'seeds':>6s} " + " ".join(f"{v:>9s}" for v in VARIANTS) + "   ResNetGC - Ours")
        for people, entry in table.items():
            t = entry[ref]
            g = t["ResNetGC-Ours"]
            print(f"{people:>7s} {len(entry['seeds']):6d} " + " ".join(f"{t[v]['mean']:9.3f}" for v in VARIANTS)
                  + f"   {g['mean']:+.3f} [{g['low']:+.3f}, {g['high']:+.3f}]")
    print("residuals learnt (RMS per vertex, mm), training photos / test photos, mean over seeds:")
    for people, entry in table.items():
        r = entry.get("residual_rms")
        if r:
            print(f"{people:>7s}   " + "   ".join(f"{v} {r[v]['train']:.3f} / {r[v]['test']:.3f}" for v in r))


if __name__ == "__main__":
    main()
