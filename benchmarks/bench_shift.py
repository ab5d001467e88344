"""When the explicit prior pays out of distribution: Table III on test sets unlike the training photos.

The lite networks (``ResNetGC``, ``Ours`` with its MRF prior; ``TrainConfig.lite(seed=...)``, the seeds of
``bench_prior_scaling.py``'s 300-people runs) trained on the lite dataset are measured on:

* ``in distribution``: the lite test set (45 people, 90 photos);
* ``camera``: the same photos through a worse camera (:func:`dualface_lite.appearance.degraded_split`:
  blur sigma 1.5 px, noise 0.03, JPEG quality 30); landmarks, ``S0`` and truth unchanged; ``grey camera``:
  the same, in grey (the colours ``S0`` reads lose their hue);
* ``identity``: test people of a wider population (``Population(alpha_scale=1.3)``, the personal modes'
  spread doubled): faces farther from the training people than any of them;
* ``larger``: every face 10% larger (``Population(size=1.1)``; people differ by about +-7%);
* ``turned``: faces turned by up to 45 degrees (``max_yaw=45``; training up to 30).

The population and pose sets are built by the kit's own builder (same test seeds as the lite test set, 3
training people so that the configuration is valid; about a minute each on 2 cores, cached). For each set and
seed: each variant's mean vertex error against ``S_hat`` and the truth, and the paired differences
GC - ResNetGC (what the image network's residual gains over the landmark fit), GC - MRFGC (the prior's gain),
ResNetGC - Ours (the dual network's gain over ResNetGC) and MRFGC - Ours, with 95% intervals over the test
people (per-face differences averaged over the seeds). Writes ``benchmarks/results/shift.json``, with the
per-face errors of every seed (``errors[reference][variant]``: seeds x photos) and the photos' people.

The networks train ``--epochs`` epochs (default ``_common.RECORDED_EPOCHS`` = 6, as
``bench_prior_scaling.py``'s stored runs; ``TrainConfig.lite()`` trains 4).

Usage::

    python benchmarks/bench_shift.py --seeds 0 1 2
"""
import _common

_common.pin_threads("2")

import time  # noqa: E402
from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dualface_lite import appearance, data, metrics, train  # noqa: E402
from dualface_lite.data import DatasetConfig, SplitPlan  # noqa: E402
from dualface_lite.evaluation import paired_comparison  # noqa: E402
from dualface_lite.model import load_model  # noqa: E402
from dualface_lite.pipeline import DualNetwork  # noqa: E402

OUT = _common.RESULTS / "shift.json"
VARIANTS = ("GC", "MRFGC", "ResNetGC", "Ours")
REFERENCES = ("s_hat", "true")
GAINS = (("GC", "ResNetGC"), ("GC", "MRFGC"), ("ResNetGC", "Ours"), ("MRFGC", "Ours"))
CAMERA = dict(blur=1.5, noise=0.03, jpeg=30)


def shifted_configs() -> dict:
    """The built test sets: {name: DatasetConfig} (only their test split is used)."""
    base = DatasetConfig.lite()
    pop = base.population
    small = dict(train=SplitPlan(3, 3, 1, 200_000), val=SplitPlan(0, 0))
    return {
        "identity": DatasetConfig.lite(name="shift-identity", population=replace(
            pop, alpha_scale=1.3, mode_std=tuple(2 * s for s in pop.mode_std)), **small),
        "larger": DatasetConfig.lite(name="shift-larger", population=replace(pop, size=1.1), **small),
        "turned": DatasetConfig.lite(name="shift-turned", max_yaw=45.0, **small),
    }


def main() -> None:
    ap = _common.parser(__doc__, "shift", threads="2")
    ap.set_defaults(out=OUT)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=_common.RECORDED_EPOCHS,
                    help=f"training epochs (default {_common.RECORDED_EPOCHS}, bench_prior_scaling's)")
    args = ap.parse_args()
    torch.set_num_threads(int(args.threads))
    model = load_model()
    t0 = time.perf_counter()
    data.build_dataset("lite")
    test = data.load_split("lite", "test")
    sets = {"in distribution": test}
    t = time.perf_counter()
    sets["camera"] = appearance.degraded_split(test, model, **CAMERA)
    seconds = {"camera": time.perf_counter() - t}
    sets["grey camera"] = appearance.degraded_split(test, model, grey=True, **CAMERA)
    configs = shifted_configs()
    for name, cfg in configs.items():
        t = time.perf_counter()
        data.build_dataset(cfg, model=model)
        sets[name] = data.load_split(cfg, "test")
        seconds[name] = time.perf_counter() - t
    errors = {name: {ref: {v: [] for v in VARIANTS} for ref in REFERENCES} for name in sets}
    for seed in args.seeds:
        nets = {v: train.train(train.TrainConfig.lite(variant=v, seed=seed, epochs=args.epochs), model=model,
                               progress=True)
                for v in ("ResNetGC", "Ours")}
        dual = DualNetwork(model, nets)
        for name, s in sets.items():
            pred = dual.predict_all(s, VARIANTS)
            for ref in REFERENCES:
                for v in VARIANTS:
                    errors[name][ref][v].append(metrics.mean_vertex_errors(pred[v], getattr(s, ref)))
        print(f"seed {seed} done ({time.perf_counter() - t0:.0f} s)")
    table = {}
    for name, s in sets.items():
        groups = np.asarray(s.person_row)
        entry = {"photos": len(s), "seconds_to_make": round(seconds.get(name, 0.0), 1),
                 "person_row": groups.tolist(),
                 "errors": {ref: {v: np.round(np.array(errors[name][ref][v]), 5).tolist() for v in VARIANTS}
                            for ref in REFERENCES}}
        for ref in REFERENCES:
            e = {v: np.array(errors[name][ref][v]) for v in VARIANTS}      # (seeds, faces)
            row = {v: dict(mean=round(float(e[v].mean()), 4), per_seed=[round(float(x), 4) for x in e[v].mean(1)])
                   for v in VARIANTS}
            for a, b in GAINS:
                c = paired_comparison(e[a].mean(0), e[b].mean(0), names=(a, b), groups=groups)
                row[f"{a}-{b}"] = dict(mean=round(c.diff.mean, 4), low=round(c.diff.low, 4),
                                       high=round(c.diff.high, 4), b_better=round(c.b_better, 3))
            entry[ref] = row
        table[name] = entry
    result = {"seeds": args.seeds, "epochs": args.epochs, "camera": CAMERA,
              "configs": {k: {"key": c.key(), "population": c.to_dict()["population"], "max_yaw": c.max_yaw}
                          for k, c in configs.items()},
              "machine": _common.machine_info(), "seconds": round(time.perf_counter() - t0, 1), "sets": table}
    _common.write_results(args.out, result)
    for ref in REFERENCES:
        print(f"\nagainst {ref}: mean vertex error (mm), mean over {len(args.seeds)} seeds; paired gains [95%]")
        print(f"{'set':16s} " + " ".join(f"{v:>9s}" for v in VARIANTS) + "  " +
              "  ".join(f"{a}-{b}".rjust(24) for a, b in GAINS))
        for name, entry in table.items():
            r = entry[ref]
            print(f"{name:16s} " + " ".join(f"{r[v]['mean']:9.3f}" for v in VARIANTS) + "  " + "  ".join(
                f"{r[f'{a}-{b}']['mean']:+.3f} [{r[f'{a}-{b}']['low']:+.3f},{r[f'{a}-{b}']['high']:+.3f}]".rjust(24)
                for a, b in GAINS))


if __name__ == "__main__":
    main()
