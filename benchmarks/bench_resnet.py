"""The appearance-to-structure network (paper III-A, Tables I-II): speed on this CPU, and whether the image matters.

Measured (one run, CPU, ``--threads`` torch threads, default 2):

1. **Table II.** Inference time per image of the five trunks at 224 px (``resnet.AppearanceNet`` with
   Table I's head; batch 1; median of ``--repeats`` runs after a warm-up), printed beside the paper's
   times on a GTX 1050 Ti GPU (and its mean errors, which the kit does not retrain five times).
2. **The lite network.** Its training time (read from the cached network, or trained now: ``train.train``
   with ``TrainConfig.lite()``), its inference latency per face (batch 1, crop given) and its throughput
   in batches of 64.
3. **The image must matter**. On the ``lite`` test set, per condition, against S_hat
   and against the true surface: S0; S0 + the mean training residual (the bias alone); ``ResNetGC``;
   ``ResNetGC`` fed the photo of another test person (``train.shuffled_photos``, 5 draws averaged);
   ``ResNet`` (S_bar = the mean face) and the mean face + its mean residual. Both networks come from the
   cache (chapter 5 trains them) or are trained here.

Usage: ``python benchmarks/bench_resnet.py [--threads 2] [--repeats 10] [--no-table2] [--no-errors]``.
Writes ``benchmarks/results/resnet.json``.
"""
from __future__ import annotations

import time

import _common

if __name__ == "__main__":
    _common.pin_threads("2")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dualface_lite import data, metrics, train  # noqa: E402
from dualface_lite.resnet import BACKBONES, AppearanceNet  # noqa: E402

#: Table II of the paper: mean error (mm) on FRGC v2.0 and running time (s) on a GTX 1050 Ti
PAPER_TABLE2 = {"resnet18": (4.1377, 0.13), "resnet34": (4.1199, 0.18), "resnet50": (4.1200, 0.14),
                "resnet101": (4.1198, 0.19), "resnet152": (4.1121, 0.24)}


def table2(repeats: int) -> dict:
    x = torch.rand(1, 3, 224, 224)
    rows = {}
    print(f"{'trunk':10s}{'params':>9s}{'CPU ms':>9s}{'paper GPU ms':>14s}{'CPU / paper':>13s}")
    for b in BACKBONES:
        net = AppearanceNet(b, input_size=224).eval()
        with torch.inference_mode():
            ms = _common.median_ms(lambda: net(x), repeats)
        n = sum(p.numel() for p in net.parameters())
        rows[b] = dict(parameters=n, cpu_ms=ms, paper_gpu_ms=1e3 * PAPER_TABLE2[b][1],
                       paper_error_mm=PAPER_TABLE2[b][0])
        print(f"{b:10s}{n / 1e6:8.1f}M{ms:9.1f}{1e3 * PAPER_TABLE2[b][1]:14.0f}"
              f"{ms / (1e3 * PAPER_TABLE2[b][1]):13.2f}")
    return rows


def lite_speed(net: train.TrainedNetwork, test, repeats: int) -> dict:
    crops = net.crops(test.read("image", slice(0, 64)), test.read("landmarks", slice(0, 64)))
    one = crops[:1]
    with torch.inference_mode():
        ms_one = _common.median_ms(lambda: net.residuals(one), repeats * 5)
        ms_64 = _common.median_ms(lambda: net.residuals(crops, batch_size=64), repeats)
    t0 = time.perf_counter()
    net.crops(test.read("image", slice(0, 64)), test.read("landmarks", slice(0, 64)))
    crop_ms = 1e3 * (time.perf_counter() - t0) / 64
    out = dict(latency_ms=ms_one, batch64_faces_per_s=64e3 / ms_64, crop_ms=crop_ms,
               training_seconds=net.manifest["seconds"], epochs=len(net.history["val_mm"]),
               steps_per_epoch=net.history["steps_per_epoch"], trained_on=net.manifest["device"])
    print(f"\nlite network ({net.config.backbone}, {net.config.input_size} px): trained in "
          f"{out['training_seconds']:.0f} s ({out['epochs']} epochs x {out['steps_per_epoch']} steps, "
          f"{out['trained_on']}); latency {ms_one:.1f} ms per face (+ {crop_ms:.2f} ms for the crop), "
          f"{out['batch64_faces_per_s']:.0f} faces/s in batches of 64")
    return out


def image_matters(net_gc, net_mean, train_set, test) -> dict:
    names = list(test.condition_names)
    bias_gc = train.residual_targets(train_set.s0, train_set.s_hat).mean(0)
    mean_base = net_mean.base(train_set.s0)
    bias_mean = train.residual_targets(mean_base, train_set.s_hat).mean(0)
    shuffled = [net_gc.predict(test, photos=train.shuffled_photos(test.person_row, seed=s)) for s in range(5)]
    preds = {"S0": test.s0, "S0 + mean residual": test.s0 + bias_gc, "ResNetGC": net_gc.predict(test),
             "mean face + mean residual": net_mean.base(test.s0) + bias_mean, "ResNet": net_mean.predict(test)}
    out = {}
    for ref in ("s_hat", "true"):
        errs = {k: metrics.mean_vertex_errors(v, getattr(test, ref)) for k, v in preds.items()}
        # the control: each face's error with another person's photo, averaged over 5 shuffles
        errs["ResNetGC, shuffled photos"] = np.mean([metrics.mean_vertex_errors(p, getattr(test, ref))
                                                     for p in shuffled], axis=0)
        print("\n" + metrics.condition_table(errs, test.condition, names, label=f"against {ref}"))
        out[ref] = {k: metrics.per_condition(v, test.condition, names) for k, v in errs.items()}
    return out


def main() -> None:
    ap = _common.parser(__doc__, "resnet", threads="2")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--no-table2", action="store_true")
    ap.add_argument("--no-errors", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(int(args.threads))
    result = {"machine": _common.machine_info()}
    if not args.no_table2:
        result["table2"] = table2(args.repeats)
    cfg_data = data.DatasetConfig.lite()
    data.build_dataset(cfg_data)
    test = data.load_split(cfg_data, "test")
    net_gc = train.train(train.TrainConfig.lite())
    result["lite"] = lite_speed(net_gc, test, args.repeats)
    if not args.no_errors:
        net_mean = train.train(train.TrainConfig.lite(variant="ResNet"))
        result["errors"] = image_matters(net_gc, net_mean, data.load_split(cfg_data, "train"), test)
    _common.write_results(args.out, result)


if __name__ == "__main__":
    main()
