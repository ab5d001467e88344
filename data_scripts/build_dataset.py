"""Build the training data of the paper's Fig. 2, organised as FRGC v2.0 (people, captures, photos):
photo + range scan -> S0 -> NICP -> dense ground truth S_hat.

    python data_scripts/build_dataset.py --size lite       # the book's: 1,800 training photos, ~3 min on 2 cores
    python data_scripts/build_dataset.py --size paper      # FRGC's scale: 466 people, 4,007 captures
    python data_scripts/build_dataset.py --size paper --scheduler tcp://10.0.0.5:8786   # on a Dask cluster
    python data_scripts/build_dataset.py --config my.json  # any DatasetConfig, as DatasetConfig.to_dict() writes it

The result goes to the kit's cache (``data/cache/datasets/<size>-<key>/`` in a checkout, or under
$DUALFACE_HOME). A finished build with the same settings is found at once; a changed setting gets
another key and folder. A build that is stopped (Ctrl-C, a crash, a kill) resumes where it stopped
when run again. Needs the face model (``python data_scripts/fetch_sfm.py`` first) on the local disk;
Dask workers need only the package (``pip install -e .[cluster]``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dualface_lite import fetch, load_model  # noqa: E402
from dualface_lite.data import SIZES, SPLITS, DatasetConfig, build_dataset  # noqa: E402


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--size", choices=SIZES, default=None, help="preset: lite (book) or paper (default: lite)")
    which.add_argument("--config", type=Path, default=None, help="a JSON file of DatasetConfig settings")
    ap.add_argument("--workers", type=int, default=None, help="local processes (default: all CPUs)")
    ap.add_argument("--scheduler", default=None, help="run on the Dask cluster at this address (tcp://host:port)")
    ap.add_argument("--keep-scans", action="store_true", help="also store every range scan (large)")
    ap.add_argument("--force", action="store_true", help="rebuild even if a finished build is there")
    ap.add_argument("--root", default=None, help="parent folder of the datasets (default: the kit's cache)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        ap.error(f"--workers must be at least 1, got {args.workers}")
    if args.config is not None:
        try:
            settings = json.loads(args.config.read_text())
            config = DatasetConfig.from_dict({**settings, **({"keep_scans": True} if args.keep_scans else {})})
        except (OSError, ValueError, TypeError) as e:
            ap.error(f"--config {args.config}: {e}")
    else:
        config = DatasetConfig.preset(args.size or "lite", keep_scans=args.keep_scans)

    try:
        model = load_model()
    except fetch.ModelFilesError as e:
        print(f"error: {e}\n(run `python data_scripts/fetch_sfm.py` first)", file=sys.stderr)
        return 1
    folder = build_dataset(config, root=args.root, workers=args.workers, progress=not args.quiet,
                           force=args.force, model=model, scheduler=args.scheduler)
    man = json.loads((folder / "manifest.json").read_text())
    print(f"dataset {man['name']} (key {man['key']}) in {folder}")
    print(f"  {_size(folder) / 2**20:.1f} MiB, built in {man['build_seconds']:.1f} s on {man['executor']}"
          + (f" ({man['workers']} workers)" if man.get("workers") else "")
          + (f", {man['resumed_captures']} captures resumed from an earlier run" if man.get("resumed_captures") else ""))
    print("  mean vertex error against the true surface (mm, object frame; 'cov' = where the scan has data):")
    print(f"  {'split':6s}{'condition':14s}{'people':>7s}{'capt.':>6s}{'photos':>7s}{'S0':>7s}{'S_hat':>7s}"
          f"{'S_hat cov':>10s}{'covered':>9s}{'lm3d':>6s}")
    for split in SPLITS:
        for cond, r in man["summary"][split].items():
            print(f"  {split:6s}{cond:14s}{r['people']:7d}{r['captures']:6d}{r['photos']:7d}{r['s0_mm']:7.2f}"
                  f"{r['s_hat_mm']:7.2f}{r['s_hat_covered_mm']:10.2f}{r['covered_fraction']:9.2f}"
                  f"{r['scan_landmarks']:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
