"""A GPU check that fits in four minutes: the paper's network on CUDA.

1. **Throughput.** The ``paper`` configuration's network (ResNet-50 + Table I's head, 224 px) trained for
   ``--steps`` steps (default 300) of batch ``--batch`` (64) with bf16 autocast, channels_last and AdamW,
   on random crops and residuals (the data loader is not what is measured): training images/s; then
   inference images/s in batches of 256 and the latency of one image (batch 1).
2. **The real path.** ``train.train`` on a tiny dataset built here (24 captures; about a minute on 16
   cores) with the paper's backbone and input size for 2 epochs: the manifest must say it ran on CUDA.

Fails (exit status 1) when CUDA is not available or was not used. Usage:
``python benchmarks/gpu_check.py [--steps 300] [--batch 64] [--skip-train]``; writes
``benchmarks/results/gpu_check.json``.
"""
from __future__ import annotations

import sys
import tempfile
import time

import _common

import torch  # noqa: E402

from dualface_lite import train  # noqa: E402
from dualface_lite.resnet import AppearanceNet  # noqa: E402


def _sync():
    torch.cuda.synchronize()


def throughput(steps: int, batch: int) -> dict:
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    net = AppearanceNet("resnet50", input_size=224).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.05)
    x = torch.rand(batch, 3, 224, 224, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randn(batch, net.n_vertices, 3, device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = net(x)
        loss = (out.float() - y).pow(2).mean()
        loss.backward()
        opt.step()

    for _ in range(10):
        step()
    _sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync()
    train_s = time.perf_counter() - t0
    net.eval()
    xb = torch.rand(256, 3, 224, 224, device=dev).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(3):
            net(xb)
        _sync()
        t0 = time.perf_counter()
        for _ in range(10):
            net(xb)
        _sync()
        infer_s = (time.perf_counter() - t0) / 10
        one = xb[:1]
        for _ in range(10):
            net(one)
        _sync()
        lat = []
        for _ in range(50):
            t0 = time.perf_counter()
            net(one)
            _sync()
            lat.append(time.perf_counter() - t0)
    lat.sort()
    out = dict(device=torch.cuda.get_device_name(0), steps=steps, batch=batch,
               train_images_per_s=steps * batch / train_s, train_seconds=train_s,
               inference_images_per_s=256 / infer_s, latency_ms=1e3 * lat[len(lat) // 2],
               param_device=str(next(net.parameters()).device))
    print(f"{out['device']}: training {out['train_images_per_s']:.0f} images/s ({steps} steps of {batch}, "
          f"{train_s:.1f} s), inference {out['inference_images_per_s']:.0f} images/s (batch 256), "
          f"latency {out['latency_ms']:.2f} ms (batch 1)")
    return out


def tiny_configs() -> tuple:
    """The tiny dataset of the real path (train 8 people / 16 captures x 4 photos, val 2 / 4, test 3 / 4:
    24 captures) and the paper's training settings on it for 2 epochs: ``(DatasetConfig, TrainConfig)``."""
    from dualface_lite.data import DatasetConfig, SplitPlan

    tiny = DatasetConfig(name="gpucheck", train=SplitPlan(8, 16, 4, 200_000), val=SplitPlan(2, 4, 1, 250_000),
                         test=SplitPlan(3, 4, 1, 300_000))
    return tiny, train.TrainConfig.paper(name="gpucheck", dataset=tiny, epochs=2, batch_size=32, workers=2)


def real_path(cfg: train.TrainConfig, device: str = "cuda", data_root=None) -> dict:
    """``train.train(cfg)`` on ``device`` in a temporary folder; its dataset is built there unless
    ``data_root`` holds it. Returns the manifest's device and seconds, the validation errors."""
    from dualface_lite.data import build_dataset

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        if data_root is None:
            data_root = f"{tmp}/data"
            build_dataset(cfg.dataset, root=data_root, progress=False)
        build_s = time.perf_counter() - t0
        net = train.train(cfg, root=f"{tmp}/nets", data_root=data_root, progress=False, device=device)
    out = dict(dataset_seconds=build_s, device=net.manifest["device"], seconds=net.manifest["seconds"],
               val_mm=net.history["val_mm"])
    print(f"train.train on {out['device']}: {out['seconds']:.1f} s for {len(out['val_mm'])} epochs (dataset "
          f"built in {build_s:.0f} s)")
    return out


def main() -> int:
    ap = _common.parser(__doc__, "gpu_check", threads="4")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--skip-train", action="store_true", help="only the throughput part")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("error: CUDA is not available: this check needs a GPU", file=sys.stderr)
        return 1
    result = {"machine": _common.machine_info(), "throughput": throughput(args.steps, args.batch)}
    ok = result["throughput"]["param_device"].startswith("cuda")
    if not args.skip_train:
        result["train"] = real_path(tiny_configs()[1], "cuda")
        ok = ok and result["train"]["device"].startswith("cuda")
    _common.write_results(args.out, result)
    if not ok:
        print("error: the check did not run on CUDA", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
