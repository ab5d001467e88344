"""The paper's method end to end in one command: the dataset, the three networks, Table III and its report.

    python data_scripts/reproduce.py --size tiny      # the same path at toy size: a few minutes on a CPU
    python data_scripts/reproduce.py --size lite      # the book's configuration (about 20 min on 2 cores, cold)
    python data_scripts/reproduce.py --size paper     # FRGC's scale, ResNet-50 at 224 px: for one GPU

The steps, each cached by its settings, so that a second run, or a run killed half-way, continues where it
stopped (the dataset keeps its finished parts, a training its last epoch's checkpoint):

1. the dataset of section IV-A (Fig. 2) on all local cores (``--workers``) or a Dask cluster
   (``--scheduler tcp://host:8786``), in ``data/cache/datasets/``;
2. the networks ``ResNet``, ``ResNetGC`` and ``Ours`` (with its MRF prior) on the GPU when there is one, in
   ``data/cache/networks/``; ``--loader-workers`` DataLoader processes feed each (pinned memory on a GPU);
3. the evaluation of ``data_scripts/evaluate.py``: Table III against ``S_hat`` and the true surface with
   bootstrap intervals, the paired comparisons, CED (Fig. 6), eq. (7) and the NoW-style scan distances.

The report folder (default ``data/reports/reproduce-<size>/``) holds what ``evaluate.py`` writes and
``reproduce.json``: the settings, the time of each step, whether it came from the cache, the device.

Sizes: ``tiny`` has 6 training people (12 captures x 2 photos), 2 validation and 3 test people, and trains
ResNet-18 at 32 px for 2 epochs; it checks the path, its numbers mean nothing. ``lite`` is the book's (chapters
3-6). ``paper`` is :meth:`DatasetConfig.paper` (4,007 captures) with :meth:`TrainConfig.paper`: building the
dataset takes about 1 core-second per capture (about 35 min on 2 cores, 4-5 min on 16), each network about a
minute on an H200 at 3,000 images/s; evaluating 500 test photos about a minute on 16 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from dualface_lite import __version__, fetch, load_model, paths  # noqa: E402
from dualface_lite.data import DatasetConfig, SplitPlan, build_dataset, load_split  # noqa: E402

SIZES = ("tiny", "lite", "paper")
NETWORKS = ("ResNet", "ResNetGC", "Ours")


def configs(size: str) -> tuple:
    """``(DatasetConfig, the TrainConfig overrides of the lite/paper preset, the preset's name)`` of a size."""
    if size == "tiny":
        data = DatasetConfig(name="tiny", train=SplitPlan(6, 12, 2, 200_000), val=SplitPlan(2, 2, 1, 250_000),
                             test=SplitPlan(3, 6, 1, 300_000))
        return data, dict(name="tiny", dataset=data, input_size=32, batch_size=8, epochs=2, patience=2), "lite"
    if size in ("lite", "paper"):
        return DatasetConfig.preset(size), {}, size
    raise ValueError(f"size must be one of {SIZES}, got {size!r}")


def reproduce(size: str, out: Path, *, data_root=None, root=None, workers=None, scheduler=None,
              loader_workers=None, device=None, scans: bool = True, n_boot: int = 2000, progress: bool = True) -> dict:
    """Run the three steps for ``size`` and write the report folder ``out``; returns ``reproduce.json``'s dict."""
    from dualface_lite import train as training
    from dualface_lite.pipeline import DualNetwork
    from evaluate import write_report

    data_config, overrides, preset = configs(size)
    if loader_workers is not None:
        overrides = dict(overrides, workers=int(loader_workers))
    model = load_model()
    steps = {}

    t0 = time.perf_counter()
    folder = build_dataset(data_config, root=data_root, workers=workers, scheduler=scheduler, progress=progress,
                           model=model)
    steps["dataset"] = {"seconds": time.perf_counter() - t0, "folder": folder.name}

    t0 = time.perf_counter()
    cached = {v: (training.network_dir(training.TrainConfig.preset(preset, variant=v, **overrides), root)
                  / "manifest.json").is_file() for v in NETWORKS}
    dual = DualNetwork.from_training(preset, networks=NETWORKS, model=model, root=root, data_root=data_root,
                                     progress=progress, device=device, **overrides)
    steps["networks"] = {"seconds": time.perf_counter() - t0,
                         "cached": cached,
                         "trained_seconds": {v: n.manifest.get("seconds") for v, n in dual.networks.items()},
                         "device": {v: n.manifest.get("device") for v, n in dual.networks.items()},
                         "best_val_mm": {v: n.history.get("best_val_mm") for v, n in dual.networks.items()}}

    t0 = time.perf_counter()
    test = load_split(data_config, "test", root=data_root)
    report = write_report(dual, test, out, scans=scans, n_boot=n_boot, progress=progress)
    steps["evaluation"] = {"seconds": time.perf_counter() - t0}

    table = report["evaluation"]
    summary = {"version": __version__, "size": size, "dataset": data_config.to_dict(),
               "training": {v: n.config.to_dict() for v, n in dual.networks.items()},
               "steps": steps, "seconds": sum(s["seconds"] for s in steps.values()),
               "cpus": os.cpu_count(), "test_photos": len(test),
               "methods": table.get("methods")}
    paths.write_atomic(out / "reproduce.json", json.dumps(summary, indent=1, default=str).encode())
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=SIZES, default="lite")
    ap.add_argument("--out", type=Path, default=None, help="the report folder (default data/reports/reproduce-<size>)")
    ap.add_argument("--workers", type=int, default=None, help="local processes that build the dataset (default: all cores)")
    ap.add_argument("--scheduler", default=None, help="build the dataset on a Dask cluster (tcp://host:8786)")
    ap.add_argument("--loader-workers", type=int, default=None,
                    help="DataLoader processes per training (default: the preset's; 4 for paper)")
    ap.add_argument("--device", default=None, help="cuda, cpu, ... (default: CUDA when there is a GPU)")
    ap.add_argument("--no-scans", action="store_true", help="leave out the scan-to-mesh distances")
    ap.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    ap.add_argument("--root", default=None, help="parent folder of the networks (default: the kit's cache)")
    ap.add_argument("--data-root", default=None, help="parent folder of the datasets (default: the kit's cache)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    if args.n_boot < 100:
        ap.error("--n-boot must be at least 100")
    for name in ("workers", "loader_workers"):
        v = getattr(args, name)
        if v is not None and v < (1 if name == "workers" else 0):
            ap.error(f"--{name.replace('_', '-')} must be at least {1 if name == 'workers' else 0}")
    out = args.out or paths.home() / "reports" / f"reproduce-{args.size}"
    try:
        summary = reproduce(args.size, out, data_root=args.data_root, root=args.root, workers=args.workers,
                            scheduler=args.scheduler, loader_workers=args.loader_workers, device=args.device,
                            scans=not args.no_scans, n_boot=args.n_boot, progress=not args.quiet)
    except fetch.ModelFilesError as e:
        print(f"error: {e}\n(run `python data_scripts/fetch_sfm.py` first)", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print((out / "summary.md").read_text())
    for name, s in summary["steps"].items():
        extra = ""
        if name == "networks":
            extra = " (" + ", ".join(f"{v} {'cached' if c else 'trained'}" for v, c in s["cached"].items()) + ")"
        print(f"{name:11s}{s['seconds']:8.1f} s{extra}")
    print(f"report in {out} ({summary['seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
