"""The whole pipeline: photo + 68 landmarks -> the dual networks' mesh, per stage.

Measured with the ``lite`` networks (trained by chapters 5-6 and cached, or trained here):

1. **One face at a time**, ``DualNetwork.reconstruct(image, landmarks, "Ours")`` on ``--faces`` test photos,
   on 1 and on 2 threads (torch and BLAS): the median time of the landmark fit (eq. 4, S0 and its colours),
   the MRF prior (S_P), the ResNet (crop + T_L) and the total, against the target of 40 ms per face on one
   thread, and against the paper's 0.14 s per image for its ResNet alone (Table II, GTX 1050 Ti).
2. **Batched**: the two networks on the stored S0 of 64 test faces at once (``DualNetwork.stages``), faces
   per second on the CPU (and on CUDA when there is a GPU: ``--device cuda``), and the throughput of the
   whole pipeline when the fits run one by one and the networks in batches.
3. **Training noise** (``--seeds K``): ``ResNetGC`` and ``Ours`` trained again with seeds 1 .. K-1 (cached like
   the book's, about 2.5 min each on 2 cores the first time); for each seed the test errors against the true
   surface and S_hat and the paired differences of chapter 6. A gap between two variants smaller than the
   seed-to-seed spread is not a finding.

Usage: ``python benchmarks/bench_pipeline.py [--faces 30] [--device cuda] [--seeds 2]``.
Writes ``benchmarks/results/pipeline.json``.
"""
from __future__ import annotations

import statistics
import time

import _common

if __name__ == "__main__":
    _common.pin_threads("2")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from dualface_lite import data, evaluation, train  # noqa: E402
from dualface_lite.pipeline import DualNetwork  # noqa: E402

TARGET_MS = 40.0          # the target per face on one CPU thread
PAPER_RESNET_S = 0.14     # Table II: ResNet-50, one image, GTX 1050 Ti


def per_face(dual: DualNetwork, test, faces: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    with threadpool_limits(threads):
        for i in range(3):   # warm-up
            dual.reconstruct(test.read("image", i), test.read("landmarks", i))
        rows = [dual.reconstruct(test.read("image", i), test.read("landmarks", i)).seconds
                for i in range(faces)]
    return {k: 1e3 * statistics.median(r[k] for r in rows) for k in ("fit", "mrf", "resnet", "total")}


def batched(dual: DualNetwork, test, device: str, threads: int, batch: int = 64) -> dict:
    torch.set_num_threads(threads)
    sub = test.subset(np.arange(min(batch, len(test))))
    s0, colors, images, lms = sub.s0, sub.colors, sub.image, sub.landmarks
    for net in dual.networks.values():
        net.net.to(device)
    try:
        with threadpool_limits(threads):
            dual.stages(s0, colors, images, lms, "Ours")   # warm-up
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            reps = 3
            for _ in range(reps):
                dual.stages(s0, colors, images, lms, "Ours")
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            sec = (time.perf_counter() - t0) / reps
    finally:
        for net in dual.networks.values():
            net.net.to("cpu")
    return {"device": device, "batch": len(s0), "networks_faces_per_s": len(s0) / sec, "ms_per_face": 1e3 * sec / len(s0)}


def seeds(dual: DualNetwork, test, n_seeds: int) -> list:
    """Test errors of MRFGC, ResNetGC and Ours for networks trained with seeds 0 .. n_seeds - 1 (the MRF
    prior of Ours is trained again with each seed too)."""
    rows = []
    for seed in range(n_seeds):
        nets = dual.networks if seed == 0 else {
            v: train.train(train.TrainConfig.lite(variant=v, seed=seed), progress=False, model=dual.model)
            for v in ("ResNetGC", "Ours")}
        d = DualNetwork(dual.model, {v: nets[v] for v in ("ResNetGC", "Ours")})
        ev = evaluation.evaluate(d.predict_all(test, ("MRFGC", "ResNetGC", "Ours")), test, n_boot=2000)
        row = {"seed": seed}
        for ref in ("s_hat", "true"):
            row[ref] = {m: float(ev.errors[ref][m].mean()) for m in ev.methods}
            for other in ("MRFGC", "ResNetGC"):
                c = ev.compare(other, "Ours", ref)["all"]
                row[ref][f"{other}-Ours"] = [c.diff.mean, c.diff.low, c.diff.high]
        rows.append(row)
        for ref in ("s_hat", "true"):
            r = row[ref]
            print(f"seed {seed}, against {ref:6s}: MRFGC {r['MRFGC']:.3f}  ResNetGC {r['ResNetGC']:.3f}  Ours "
                  f"{r['Ours']:.3f} mm; ResNetGC - Ours {r['ResNetGC-Ours'][0]:+.3f} "
                  f"[{r['ResNetGC-Ours'][1]:+.3f}, {r['ResNetGC-Ours'][2]:+.3f}], MRFGC - Ours "
                  f"{r['MRFGC-Ours'][0]:+.3f} [{r['MRFGC-Ours'][1]:+.3f}, {r['MRFGC-Ours'][2]:+.3f}]")
    return rows


def main() -> None:
    ap = _common.parser(__doc__, "pipeline", threads="2")
    ap.add_argument("--faces", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seeds", type=int, default=1, help="train ResNetGC and Ours with this many seeds")
    args = ap.parse_args()
    dual = DualNetwork.from_training("lite", lm2vertex_samples=0)
    test = data.load_split("lite", "test")
    result = {"machine": _common.machine_info(), "faces": args.faces}
    for threads in (1, 2):
        r = per_face(dual, test, args.faces, threads)
        result[f"per_face_{threads}_thread"] = r
        print(f"one face, {threads} thread(s): fit {r['fit']:.1f} ms, MRF {r['mrf']:.1f} ms, ResNet {r['resnet']:.1f} ms, "
              f"total {r['total']:.1f} ms = {r['total'] / TARGET_MS:.2f} x the 40 ms target, "
              f"{PAPER_RESNET_S * 1e3 / r['total']:.1f} x faster than the paper's ResNet alone on its GPU")
    devices = ["cpu"] + ([args.device] if args.device != "cpu" else [])
    for dev in devices:
        b = batched(dual, test, dev, int(args.threads))
        fit_ms = result[f"per_face_{args.threads}_thread"]["fit"] if args.threads in ("1", "2") else float("nan")
        b["pipeline_faces_per_s"] = 1e3 / (fit_ms + b["ms_per_face"])
        result[f"batched_{dev}"] = b
        print(f"batched on {dev} ({b['batch']} faces, {args.threads} threads): the networks {b['networks_faces_per_s']:.0f} "
              f"faces/s ({b['ms_per_face']:.2f} ms/face); with the fits one by one {b['pipeline_faces_per_s']:.0f} faces/s")
    if args.seeds > 1:
        result["seeds"] = seeds(dual, test, args.seeds)
    _common.write_results(args.out, result)


if __name__ == "__main__":
    main()
