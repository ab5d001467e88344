"""Build the training data of the paper's Fig. 2: photo + range scan -> S0 -> NICP -> dense ground truth S_hat.

    python data_scripts/build_dataset.py --size lite      # the book's size: 240 train / 90 test, ~2 min on 2 cores
    python data_scripts/build_dataset.py --size paper     # the paper's: 2800 train / 500 test
    python data_scripts/build_dataset.py --size lite --workers 4 --keep-scans --force

The result goes to the kit's cache (``data/cache/datasets/<size>-<key>/`` in a
checkout, or under $DUALFACE_HOME): train.npz, test.npz, timings.npz and
manifest.json. A finished build with the same settings is found at once; a
changed setting gets another key and folder. Needs the face model
(``python data_scripts/fetch_sfm.py`` first).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dualface_lite import fetch, load_model  # noqa: E402
from dualface_lite.data import SIZES, DatasetConfig, build_dataset  # noqa: E402


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=SIZES, default="lite", help="preset: lite (book) or paper (default: lite)")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    ap.add_argument("--keep-scans", action="store_true", help="also store every range scan (large)")
    ap.add_argument("--force", action="store_true", help="rebuild even if a finished build is there")
    ap.add_argument("--root", default=None, help="parent folder of the datasets (default: the kit's cache)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        ap.error(f"--workers must be at least 1, got {args.workers}")

    try:
        model = load_model()
    except fetch.ModelFilesError as e:
        print(f"error: {e}\n(run `python data_scripts/fetch_sfm.py` first)", file=sys.stderr)
        return 1
    config = DatasetConfig.preset(args.size, keep_scans=args.keep_scans)
    folder = build_dataset(config, root=args.root, workers=args.workers, progress=not args.quiet,
                           force=args.force, model=model)
    man = json.loads((folder / "manifest.json").read_text())
    print(f"dataset {man['name']} (key {man['key']}) in {folder}")
    print(f"  {man['sizes']['train']} train + {man['sizes']['test']} test subjects, "
          f"{_size(folder) / 2**20:.1f} MiB, built in {man['build_seconds']:.1f} s with {man['workers']} workers "
          f"(NICP {man['nicp_seconds_mean']:.2f} s per subject)")
    print("  mean vertex error against the true surface (mm, object frame; 'cov' = where the scan has data):")
    print(f"  {'split':6s}{'condition':14s}{'n':>5s}{'S0':>8s}{'S_hat':>8s}{'S0 cov':>8s}{'S_hat cov':>10s}"
          f"{'covered':>9s}{'lm3d':>6s}")
    for split in ("train", "test"):
        for cond, r in man["summary"][split].items():
            print(f"  {split:6s}{cond:14s}{r['n']:5d}{r['s0_mm']:8.2f}{r['s_hat_mm']:8.2f}{r['s0_covered_mm']:8.2f}"
                  f"{r['s_hat_covered_mm']:10.2f}{r['covered_fraction']:9.2f}{r['scan_landmarks']:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
