"""Train the appearance-to-structure network T_L of eq. (3) (chapter 5), on a CPU, a GPU or many GPUs.

    python data_scripts/train.py --size lite                      # the book's: ResNet-18, 64 px, a few min on 2 cores
    python data_scripts/train.py --size lite --variant ResNet     # S_bar = the mean face (Table III's "ResNet")
    python data_scripts/train.py --size paper                     # ResNet-50, 224 px, FRGC's scale: a GPU
    torchrun --nproc_per_node=4 data_scripts/train.py --size paper   # 4 GPUs (DistributedDataParallel)
    python data_scripts/train.py --config my.json                 # any TrainConfig, as TrainConfig.to_dict() writes it

The dataset of the same size must be built first (``python data_scripts/build_dataset.py --size ...``).
The network goes to the kit's cache (``data/cache/networks/<name>-<variant>-<key>/``); a finished
training with the same settings (and code, and dataset) is found at once. A training that is stopped
(Ctrl-C, a crash, a kill) resumes from its last finished epoch when run again with the same settings.
The device is CUDA when there is a GPU (bf16 autocast, channels_last), else the CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dualface_lite import fetch, load_model  # noqa: E402
from dualface_lite.data import DatasetNotBuiltError  # noqa: E402
from dualface_lite.train import TARGETS, VARIANTS, TrainConfig, train  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--size", choices=("lite", "paper"), default=None, help="preset (default: lite)")
    which.add_argument("--config", type=Path, default=None, help="a JSON file of TrainConfig settings")
    ap.add_argument("--variant", choices=tuple(VARIANTS), default=None, help="what S_bar is (default ResNetGC)")
    ap.add_argument("--target", choices=TARGETS, default=None, help="learn towards S_hat (default) or the truth")
    ap.add_argument("--epochs", type=int, default=None, help="the most epochs (early stopping may end sooner)")
    ap.add_argument("--batch-size", type=int, default=None, help="photos per step, over all processes")
    ap.add_argument("--accumulate", type=int, default=None, help="micro-batches per process and step")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers per process")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when present)")
    ap.add_argument("--root", default=None, help="parent folder of the networks (default: the kit's cache)")
    ap.add_argument("--data-root", default=None, help="parent folder of the datasets (default: the kit's cache)")
    ap.add_argument("--force", action="store_true", help="train again even if a finished network is there")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)

    overrides = {k: v for k, v in (("variant", args.variant), ("target", args.target), ("epochs", args.epochs),
                                   ("batch_size", args.batch_size), ("accumulate", args.accumulate),
                                   ("workers", args.workers)) if v is not None}
    try:
        if args.config is not None:
            config = TrainConfig.from_dict({**json.loads(args.config.read_text()), **overrides})
        else:
            config = TrainConfig.preset(args.size or "lite", **overrides)
    except (OSError, ValueError, TypeError) as e:
        ap.error(f"{e}")
    rank = int(os.environ.get("RANK", "0"))
    try:
        model = load_model()
    except fetch.ModelFilesError as e:
        print(f"error: {e}\n(run `python data_scripts/fetch_sfm.py` first)", file=sys.stderr)
        return 1
    try:
        result = train(config, root=args.root, data_root=args.data_root, progress=not args.quiet and rank == 0,
                       force=args.force, device=args.device, model=model)
    except (DatasetNotBuiltError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if rank == 0:
        h, man = result.history, result.manifest
        print(f"network {config.name} {config.variant} (key {config.key()}) in {result.folder}")
        if h.get("val_mm"):
            print(f"  {len(h['val_mm'])} epochs of {h['steps_per_epoch']} steps on {man['processes']} process(es), "
                  f"{man['device']}, {man['seconds']:.1f} s; best validation error {h['best_val_mm']:.3f} mm "
                  f"(epoch {h['best_epoch'] + 1})" + (", resumed" if h.get("resumed") else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
