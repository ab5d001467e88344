"""Why the kit's ``ResNet`` is worse than ``Lm2Vertex`` while the paper's was a bit better (Table III).

``ResNet`` regresses the face from the photo alone, starting from the mean face; ``Lm2Vertex`` regresses the
model's parameters from the 68 landmarks, trained on landmark sets of random faces from the model's prior.
Three things differ between the two, and each is varied here, on the lite test set (90 photos):

* **what each learns from**: ``Lm2Vertex`` trained on 300, 1,000, 3,000 (the book's) and 10,000 model samples;
* **training people**: ``ResNet`` trained on the first 25, 100 and 300 people of the lite training split (the
  same optimiser steps at every size, :func:`dualface_lite.train.fewer_people`);
* **input size**: ``ResNet`` at 64 px (the book's) and at 128 px, on all 300 people.

Seed 0 throughout; ``ResNet`` trains ``--epochs`` epochs on all 300 people (default
``_common.RECORDED_EPOCHS`` = 6, as ``bench_prior_scaling.py``; ``TrainConfig.lite()`` trains 4). Each row: the mean vertex error against ``S_hat`` and the truth (mm, after rigid
alignment), and for ``ResNet`` the error of its mean-face start alone (the network's output removed).
Writes ``benchmarks/results/lm2vertex_resnet.json``.

Usage::

    python benchmarks/bench_lm2vertex_resnet.py
"""
import _common

_common.pin_threads("2")

import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dualface_lite import data, metrics, train  # noqa: E402
from dualface_lite.baselines import Lm2Vertex  # noqa: E402
from dualface_lite.model import load_model  # noqa: E402
from dualface_lite.pipeline import DualNetwork  # noqa: E402

REFERENCES = ("s_hat", "true")


def errors(pred, test) -> dict:
    return {ref: round(float(metrics.mean_vertex_errors(pred, getattr(test, ref)).mean()), 4) for ref in REFERENCES}


def main() -> None:
    ap = _common.parser(__doc__, "lm2vertex_resnet", threads="2")
    ap.add_argument("--samples", type=int, nargs="*", default=[300, 1000, 3000, 10000])
    ap.add_argument("--people", type=int, nargs="*", default=[25, 100, 300])
    ap.add_argument("--sizes", type=int, nargs="*", default=[64, 128])
    ap.add_argument("--epochs", type=int, default=_common.RECORDED_EPOCHS,
                    help=f"epochs on all 300 people (default {_common.RECORDED_EPOCHS}, bench_prior_scaling's)")
    args = ap.parse_args()
    torch.set_num_threads(int(args.threads))
    model = load_model()
    data.build_dataset("lite")
    test = data.load_split("lite", "test")
    rows = []
    mean_face = np.broadcast_to(model.mean.astype(np.float32), test.true.shape)
    rows.append(dict(method="mean face", **errors(mean_face, test)))
    for n in args.samples:
        t0 = time.perf_counter()
        reg = Lm2Vertex(model).train(n_samples=n, seed=0)
        pred = np.stack([reg.predict(lm, image=im).vertices for im, lm in zip(test.image, test.landmarks)])
        rows.append(dict(method="Lm2Vertex", samples=n, seconds=round(time.perf_counter() - t0, 1),
                         **errors(pred, test)))
        print(rows[-1])
    configs = [(p, 64) for p in args.people] + [(300, s) for s in args.sizes if s != 64]
    for people, size in configs:
        t0 = time.perf_counter()
        config = train.fewer_people(train.TrainConfig.lite(variant="ResNet", input_size=size, seed=0,
                                                             epochs=args.epochs), people)
        net = train.train(config, model=model, progress=True)
        pred = DualNetwork(model, {"ResNet": net}).predict_all(test, "ResNet")["ResNet"]
        rows.append(dict(method="ResNet", people=people, input_size=size, photos=config.max_photos or 1800,
                         seconds=round(time.perf_counter() - t0, 1), best_epoch=net.history.get("best_epoch"),
                         **errors(pred, test)))
        print(rows[-1])
    _common.write_results(args.out, {"machine": _common.machine_info(), "epochs": args.epochs, "rows": rows})
    print(f"\n{'method':12s}{'samples':>9s}{'people':>8s}{'input':>7s}{'vs S_hat':>10s}{'vs truth':>10s}")
    for r in rows:
        print(f"{r['method']:12s}{r.get('samples', ''):>9}{r.get('people', ''):>8}{r.get('input_size', ''):>7}"
              f"{r['s_hat']:10.3f}{r['true']:10.3f}")


if __name__ == "__main__":
    main()
