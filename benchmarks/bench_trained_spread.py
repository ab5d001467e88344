"""The spread of the trained figures the slow tests bound: over training seeds and thread counts.

For each seed, the lite networks (ResNet, ResNetGC, Ours with its MRF prior; ``TrainConfig.lite(seed=...)``)
and chapter 4's shortened MRF prior are trained with ``--threads`` torch/BLAS threads, and the figures of
``tests/trained_figures.py`` are measured on the lite test set: does the image matter (chapter 5), the MRF
prior's gains (chapter 4), Table III (chapter 6). A trained network's figures move with the CPU's vector
instructions, the thread count and the seed, so the tests bound each at its mean -/+ 4 standard deviations
over all the runs recorded here.

Networks trained with the book's thread count (2) share the kit's network cache (the book trained seed 0);
other thread counts train into ``data/cache/spread/threads<N>`` so that the cache's networks are not reused.

Each (seed, threads, CPU capability) run is stored in ``benchmarks/results/trained_spread.json`` (committed: the
tests' bounds come from it), replacing a stored run of the same seed and threads on a CPU with the same vector
instructions (``torch.backends.cpu.get_cpu_capability()``: AVX2, AVX512, ...); the summary (mean, sd, min, max, the
floor and ceiling at 4 sd) is recomputed over every stored run and printed.

Usage::

    python benchmarks/bench_trained_spread.py --threads 2 --seeds 0 1 2 3 4
    python benchmarks/bench_trained_spread.py --threads 1 --seeds 0 1 2
    python benchmarks/bench_trained_spread.py --summary        # print the table of the stored runs
"""
import _common

_common.pin_threads("2")

import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dualface_lite import data, paths  # noqa: E402
from dualface_lite.mrf import MRFPrior  # noqa: E402
from dualface_lite.pipeline import DualNetwork  # noqa: E402

sys.path.insert(0, str(_common.ROOT / "tests"))
import trained_figures as TF  # noqa: E402

OUT = _common.RESULTS / "trained_spread.json"
BOOK_THREADS = 2


def run(seed: int, threads: int) -> dict:
    root = None if threads == BOOK_THREADS else paths.cache_dir(f"spread/threads{threads}")
    t0 = time.perf_counter()
    dual = DualNetwork.from_training("lite", root=root, progress=True, seed=seed)
    train_set, test = data.load_split("lite", "train"), data.load_split("lite", "test")
    first = train_set.first_photos()
    prior = MRFPrior(seed=seed, **TF.MRF_FIT).fit(first.s0, first.colors, first.s_hat)
    figures = dict(
        image_matters=TF.image_matters(train_set, test, dual.networks["ResNetGC"], dual.networks["ResNet"]),
        mrf_lite=TF.mrf_lite(first, test, prior),
        table_iii=TF.table_iii(test, dual.predict_all(test)),
    )
    return dict(seed=seed, threads=threads, seconds=time.perf_counter() - t0, dataset=test.folder.name,
                machine=_common.machine_info(), figures=figures)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def run_key(r: dict) -> tuple:
    """A run replaces a stored one of the same threads, seed and vector instructions (``cpu_capability``, as
    torch reports it; empty for runs stored without it): runs of other CPUs are kept beside it."""
    return r["threads"], r["seed"], r["machine"].get("cpu_capability") or ""


def summary(runs: list) -> dict:
    """{figure: {mean, sd, min, max, n, floor, ceiling}} over the runs (sd with ddof=1)."""
    flat = [_flatten(r["figures"]) for r in runs]
    out = {}
    for k in flat[0]:
        v = np.array([f[k] for f in flat if k in f], dtype=np.float64)
        sd = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
        m = float(v.mean())
        out[k] = dict(mean=round(m, 4), sd=round(sd, 4), min=round(float(v.min()), 4), max=round(float(v.max()), 4),
                      n=int(len(v)), floor=round(TF.floor(m, sd), 4), ceiling=round(TF.ceiling(m, sd), 4))
    return out


def main() -> None:
    ap = _common.parser(__doc__, "trained_spread", threads=str(BOOK_THREADS), seeds=[0, 1, 2, 3, 4])
    ap.set_defaults(out=OUT)
    args = ap.parse_args()
    threads = int(args.threads)
    torch.set_num_threads(threads)
    runs = _common.stored_runs(args.out)
    if not args.summary:
        data.build_dataset("lite")
        for s in args.seeds:
            r = run(s, threads)
            runs = _common.with_run(runs, r, run_key)
            print(f"seed {s}, {threads} thread(s): {r['seconds']:.0f} s")
            _common.write_results(args.out, {"runs": runs, "summary": summary(runs)})
    table = summary(runs)
    print(f"{len(runs)} runs (seed/threads/CPU capability): "
          + ", ".join(f"{r['seed']}/{r['threads']}t/{run_key(r)[2] or '?'}" for r in runs))
    print(f"{'figure':48s} {'mean':>8s} {'sd':>7s} {'min':>8s} {'max':>8s} {'floor':>8s} {'ceiling':>8s}")
    for k, s in table.items():
        print(f"{k:48s} {s['mean']:8.4f} {s['sd']:7.4f} {s['min']:8.4f} {s['max']:8.4f} {s['floor']:8.4f} "
              f"{s['ceiling']:8.4f}")


if __name__ == "__main__":
    main()
