"""Evaluate the dual networks and every variant of Table III on a test split; write a report folder.

    python data_scripts/evaluate.py --size lite                 # trains (or loads) the lite networks first
    python data_scripts/evaluate.py --size paper                # the paper's configuration (see below)
    python data_scripts/evaluate.py --dual my_dual --dataset lite    # a DualNetwork saved with .save()
    python data_scripts/evaluate.py --size lite --no-scans      # skip the scan-to-mesh distances

The report folder (default ``data/reports/<size or dual>-<dataset folder>-<split>/``) holds:

    report.json            every number: per-face errors against S_hat and the true surface, Table III per
                           condition with bootstrap intervals, paired comparisons, eq. (7), scan-to-mesh
    summary.md             the tables and comparisons in a few lines of Markdown
    ced_true.png, ced_s_hat.png           Fig. 6, the cumulative error distributions
    conditions_true.png, conditions_s_hat.png   the per-condition means with their intervals
    gallery.png            Figs. 4 and 7-9: faces of each condition, each method's eq. (7) heat map

Times on 2 CPU cores: ``--size lite`` about 2.5 min when the networks are cached (plus about 8 min to train
the three of them first), 1.5 min of it the scan-to-mesh distances (7 methods x 90 faces, about 0.13 s each).
``--size paper`` needs the paper dataset (``build_dataset.py --size paper``, about 35 min on 2 cores) and its
three ResNet-50 networks (``train.py --size paper --variant ...``, a GPU); the evaluation of its 500 test
photos then takes about 9 min on 2 cores, 8 of them the scan-to-mesh distances (``--no-scans``: 1 min).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from dualface_lite import __version__, fetch, load_model, paths  # noqa: E402
from dualface_lite.data import DatasetNotBuiltError, load_split  # noqa: E402
from dualface_lite.evaluation import evaluate, gallery  # noqa: E402
from dualface_lite.pipeline import PAPER_TABLE_III, DualNetwork  # noqa: E402

#: the methods of the report, in the order of the paper's figures
METHODS = ("Lm2Vertex", "ResNet", "GC", "MRFGC", "ResNetGC", "ResNetGC+MRF", "Ours")


def write_report(dual: DualNetwork, test, out: Path, *, scans: bool = True, n_boot: int = 2000,
                 gallery_faces: int = 2, progress: bool = True) -> dict:
    """Evaluate ``dual`` on the records of ``test`` and write the report folder ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dualface_lite import viz

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    methods = [m for m in METHODS if m in dual.variants]
    preds = dual.predict_all(test, methods, progress=progress)
    t_pred = time.perf_counter() - t0
    ev = evaluate(preds, test, scans=scans, model=dual.model, n_boot=n_boot, progress=progress)
    report = {"version": __version__, "dataset": dual.dataset, "test_folder": str(test.folder),
              "fit_kwargs": dual.fit_kwargs, "networks": {v: n.folder.name if n.folder else None
                                                          for v, n in dual.networks.items()},
              "paper_table_iii": PAPER_TABLE_III, "seconds": {"predict": t_pred},
              "evaluation": ev.to_dict(),
              "normalized_eq7": {r: ev.normalized(r).tolist() for r in ev.errors},
              "compare_ours": {r: {m: {c: v.to_dict() for c, v in ev.compare(m, "Ours", r).items()}
                                   for m in methods if m != "Ours"} for r in ev.errors} if "Ours" in methods else {}}
    report["seconds"]["evaluate"] = time.perf_counter() - t0 - t_pred

    main = [m for m in ("ResNet", "GC", "MRFGC", "ResNetGC", "Ours") if m in methods]
    for r in ev.errors:
        name = "S_hat" if r == "s_hat" else "the true surface"
        fig = viz.ced_figure({m: ev.errors[r][m] for m in main}, title=f"CED against {name}")
        fig.savefig(out / f"ced_{r}.png", dpi=110)
        plt.close(fig)
        table = {m: row for m, row in ev.table(r).items() if m in main}
        fig = viz.condition_figure(table, title=f"mean error against {name}",
                                   paper=PAPER_TABLE_III if r == "s_hat" else None)
        fig.savefig(out / f"conditions_{r}.png", dpi=110)
        plt.close(fig)
    rows = [int(i) for c in range(len(test.condition_names))
            for i in np.flatnonzero(test.condition == c)[:gallery_faces]]
    labels = [f"{test.condition_names[test.condition[i]]} (face {i})" for i in rows]
    fig = gallery(preds, test, rows, dual.model.triangles, methods=[m for m in methods if m != "GC"],
                  row_labels=labels)
    fig.savefig(out / "gallery.png", dpi=100)
    plt.close(fig)

    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "summary.md").write_text(f"# Evaluation of the dual networks ({dual.dataset})\n\n"
                                    + ev.markdown("Ours" if "Ours" in methods else None))
    report["seconds"]["total"] = time.perf_counter() - t0
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--size", choices=("lite", "paper"), default=None, help="train or load this preset's networks")
    which.add_argument("--dual", type=Path, default=None, help="a folder written by DualNetwork.save")
    ap.add_argument("--dataset", default=None, help="the test data: lite, paper or a dataset folder "
                    "(default: the networks' own)")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--out", type=Path, default=None,
                    help="the report folder (default data/reports/<size>-<dataset>-<split>)")
    ap.add_argument("--no-scans", action="store_true", help="leave out the scan-to-mesh distances")
    ap.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    ap.add_argument("--gallery-faces", type=int, default=2, help="faces per condition in gallery.png")
    ap.add_argument("--save-dual", type=Path, default=None, help="also save the dual network to this folder")
    ap.add_argument("--root", default=None, help="parent folder of the networks (default: the kit's cache)")
    ap.add_argument("--data-root", default=None, help="parent folder of the datasets (default: the kit's cache)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    if args.n_boot < 100 or args.gallery_faces < 1:
        ap.error("--n-boot must be at least 100 and --gallery-faces at least 1")
    try:
        model = load_model()
    except fetch.ModelFilesError as e:
        print(f"error: {e}\n(run `python data_scripts/fetch_sfm.py` first)", file=sys.stderr)
        return 1
    try:
        if args.dual is not None:
            dual = DualNetwork.load(args.dual, model=model)
        else:
            dual = DualNetwork.from_training(args.size or "lite", model=model, root=args.root,
                                             data_root=args.data_root, progress=not args.quiet)
        dataset = args.dataset
        if dataset is None:
            if not dual.networks:
                raise ValueError("this dual network holds no trained network: name the test data with --dataset")
            dataset = next(iter(dual.networks.values())).config.dataset
        test = load_split(dataset, args.split, root=args.data_root)
        out = args.out or paths.home() / "reports" / f"{args.size or 'dual'}-{test.folder.name}-{args.split}"
        report = write_report(dual, test, out, scans=not args.no_scans, n_boot=args.n_boot,
                              gallery_faces=args.gallery_faces, progress=not args.quiet)
        if args.save_dual is not None:
            dual.save(args.save_dual)
    except (DatasetNotBuiltError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print((out / "summary.md").read_text())
    print(f"report in {out} ({report['seconds']['total']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
