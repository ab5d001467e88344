"""Fetch the Surrey Face Model files (non-commercial license) into the kit's data folder.

    python data_scripts/fetch_sfm.py                 # download from the eos repository (pinned commit)
    python data_scripts/fetch_sfm.py --from DIR      # copy from a folder that holds the files
    DUALFACE_SFM_DIR=DIR python data_scripts/fetch_sfm.py

Every file is checked against its SHA-256. Then the model is loaded once so its
plain-array cache is written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dualface_lite import fetch, load_model, paths  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="source", default=None,
                    help="folder that already holds the SFM files (default: $DUALFACE_SFM_DIR)")
    ap.add_argument("--dest", default=None, help=f"where to keep them (default: {paths.sfm_dir()})")
    ap.add_argument("--no-download", action="store_true", help="never use the network")
    args = ap.parse_args(argv)
    try:
        dest = fetch.fetch_sfm(args.dest, source_dir=args.source, download=not args.no_download)
    except fetch.ModelFilesError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    m = load_model(dest)
    print(f"Surrey Face Model ready in {dest}: {m.n_vertices} vertices, {m.n_components} components, "
          f"{m.n_expressions} expressions.\n{fetch.LICENSE_NOTE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
