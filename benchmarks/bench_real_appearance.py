"""Table III on real appearance: the lite test set's photos re-rendered with textures cut from real photos.

Every photo of the lite test set (its geometry, camera, light and landmarks; so its S_hat, true surface and
landmark fit S0) is rendered again with the texture of each real photo of chapter 7 (Einstein, Breaking
Bad, Takeo Kanade, Lenna: grey and colour, glasses, stubble, hair; ``dualface_lite.appearance``), and every
variant of Table III (and Lm2Vertex) reconstructs it. The table beside it is the same variants on the
synthetic test photos. Intervals: 95% bootstrap over people (``evaluation.evaluate``); the paired
comparisons say whether a learnt stage helps or hurts against the landmark fit it starts from.

Also the learnt stages' harm per texture, and candidate out-of-distribution signals per photo (the distance of
the ResNet trunk's pooled features from those of the training photos, Mahalanobis in their principal
subspace; the same for the colours S0 reads; how far the prior's and ResNetGC's corrections disagree; the
size of Ours' residual; how much a network's residual moves when the crop moves a little), each with its area
under the ROC curve for telling apart the photos where a learnt stage makes its starting point worse from
those where it makes it better.

Usage::

    python benchmarks/bench_real_appearance.py            # the lite networks the book trained
    python benchmarks/bench_real_appearance.py --photometric --out benchmarks/results/real_appearance_photometric.json
    python benchmarks/bench_real_appearance.py --photo-like --out benchmarks/results/real_appearance_photo_like.json
    python benchmarks/bench_real_appearance.py --delit --out benchmarks/results/real_appearance_delit.json

``--photo-like`` trains the three networks on the lite dataset built from ``synth.Population.photo_like()``
(white eyes, hair, stubble and beards, a speckled skin; the same people, cameras and surfaces) and adds a
third test set: that dataset's own test photos. Building it and training takes about 15 min on 2 cores.
"""
import _common

_common.pin_threads("2")

import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dataclasses import replace  # noqa: E402

from dualface_lite import appearance, data, evaluation, load_model  # noqa: E402
from dualface_lite.pipeline import DualNetwork  # noqa: E402
from dualface_lite.synth import Population  # noqa: E402

METHODS = ("GC", "MRFGC", "ResNetGC", "Ours", "ResNet", "Lm2Vertex")


def table(ev, reference):
    t = ev.table(reference)
    return {m: {"mean": round(t[m]["all"].mean, 4), "low": round(t[m]["all"].low, 4), "high": round(t[m]["all"].high, 4)}
            for m in ev.methods}


def paired(ev, reference):
    out = {}
    for a, b in (("ResNetGC", "GC"), ("Ours", "MRFGC"), ("MRFGC", "GC"), ("Ours", "GC"), ("Ours", "ResNetGC")):
        c = ev.compare(a, b, reference)["all"]
        out[f"{a} - {b}"] = {"mean": round(c.diff.mean, 4), "low": round(c.diff.low, 4),
                             "high": round(c.diff.high, 4), "share_b_better": round(c.b_better, 3)}
    return out


def pooled_features(net, crops, batch=64):
    """The trunk's globally pooled features (M, C) of crops (M, 3, S, S)."""
    trunk = net.net.trunk.eval()
    with torch.no_grad():
        out = [trunk((crops[i:i + batch] - net.net.mean) / net.net.std).mean((2, 3)) for i in range(0, len(crops), batch)]
    return torch.cat(out).numpy().astype(np.float64)


def mahalanobis(train_f, f, k=32):
    """Mahalanobis distance of rows of ``f`` from the rows of ``train_f`` in their first ``k`` principal axes."""
    mu = train_f.mean(0)
    _, s, Vt = np.linalg.svd(train_f - mu, full_matrices=False)
    var = s[:k] ** 2 / (len(train_f) - 1)
    z = (f - mu) @ Vt[:k].T
    return np.sqrt((z ** 2 / var).sum(1))


def colour_stats(d):
    """Per photo: the mean and spread of the colours S0 reads, and their grey-ness (6 + 1 numbers)."""
    out = []
    for c in d.colors:
        seen = c.any(1)
        v = c[seen] if seen.any() else np.zeros((1, 3))
        out.append(np.concatenate([v.mean(0), v.std(0), [np.ptp(v, axis=1).mean()]]))
    return np.array(out)


def jitter_spread(net, images, landmarks, step=0.03):
    """How much the network's residual moves (mm, mean over vertices of the spread over the variants) when the
    crop moves by ``step`` of the face's size left, right, up and down and grows and shrinks by that much:
    a network that reads what it learnt should answer a slightly moved crop of the same face alike."""
    lm = np.asarray(landmarks, np.float64)
    centre = lm.mean(1, keepdims=True)
    shift = step * np.ptp(lm, axis=1).max(1)[:, None, None]      # step of each face's size, px
    variants = [lm] + [lm + shift * np.array(v) for v in ((1, 0), (-1, 0), (0, 1), (0, -1))]
    variants += [centre + f * (lm - centre) for f in (1 + step, 1 - step)]
    out = np.stack([net.residuals(net.crops(images, v.astype(np.float32))) for v in variants])   # (K, M, N, 3)
    return np.linalg.norm(out - out.mean(0), axis=3).mean((0, 2))


def signals(dual, train_set, d):
    """Candidate out-of-distribution signals, one number per photo of ``d``."""
    rows = np.arange(0, len(train_set), max(1, len(train_set) // 600))
    out = {}
    for name in ("ResNetGC", "Ours"):
        net = dual.networks[name]
        f_train = pooled_features(net, net.crops(train_set.read("image", rows), train_set.read("landmarks", rows)))
        out[f"trunk features of {name}, Mahalanobis"] = mahalanobis(f_train, pooled_features(net, net.crops(d.image, d.landmarks)))
    c_train = colour_stats(train_set.subset(rows))
    out["colours of S0, Mahalanobis"] = mahalanobis(c_train, colour_stats(d), k=7)
    s0 = np.asarray(d.s0, np.float32)
    prior_move = dual.prior.predict(s0, np.asarray(d.colors, np.float32)) - s0
    gc = dual.networks["ResNetGC"]
    net_move = gc.residuals(gc.crops(d.image, d.landmarks))
    out["prior's and ResNetGC's corrections disagree (mm)"] = np.linalg.norm(prior_move - net_move, axis=2).mean(1)
    ours = dual.networks["Ours"]
    out["Ours' residual size (mm)"] = np.linalg.norm(ours.residuals(ours.crops(d.image, d.landmarks)), axis=2).mean(1)
    for name in ("ResNetGC", "Ours"):
        spread = jitter_spread(dual.networks[name], d.image, d.landmarks)
        out[f"{name}'s residual under a moved crop, spread (mm)"] = spread
    return out


def auc(score_pos, score_neg):
    """P(a positive scores above a negative), ties half."""
    p, n = np.asarray(score_pos)[:, None], np.asarray(score_neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size)) if p.size and n.size else float("nan")


def main() -> None:
    ap = _common.parser(__doc__, "real_appearance", threads="2")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--photometric", action="store_true",
                    help="networks trained with the photometric augmentation (TrainConfig.photometric; trained here "
                         "when not cached, about 8 min on 2 cores)")
    ap.add_argument("--seed", type=int, default=0, help="the networks' training seed (TrainConfig.seed)")
    ap.add_argument("--delit", action="store_true",
                    help="the real textures without their photos' own shading (appearance.real_textures(delit=True))")
    ap.add_argument("--photo-like", action="store_true",
                    help="networks trained on the lite dataset of Population.photo_like() (built and trained here "
                         "when not cached, about 15 min on 2 cores)")
    args = ap.parse_args()
    torch.set_num_threads(int(args.threads))
    t0 = time.perf_counter()
    model = load_model()
    lite = data.DatasetConfig.preset("lite")
    trained_on = (replace(lite, name="lite-photo-like", population=Population.photo_like()) if args.photo_like
                  else lite)
    for config in {lite.key(): lite, trained_on.key(): trained_on}.values():
        data.build_dataset(config, progress=True, model=model)
    test, train_set = data.load_split(lite, "test"), data.load_split(trained_on, "train")
    overrides = dict({"photometric": True} if args.photometric else {}, dataset=trained_on, seed=args.seed)
    dual = DualNetwork.from_training("lite", model=model, progress=True, **overrides)
    textures = appearance.real_textures(model, delit=args.delit)
    real = appearance.retextured_split(test, textures, model)
    t_build = time.perf_counter() - t0
    sets = [("synthetic", test), ("real_appearance", real)]
    if args.photo_like:
        sets.append(("photo_like", data.load_split(trained_on, "test")))
    # the photos like the training photos: the reference of the out-of-distribution signals below
    familiar = "photo_like" if args.photo_like else "synthetic"
    result = {"photometric": args.photometric, "photo_like": args.photo_like, "delit": args.delit, "seed": args.seed,
              "photos": {name: len(d) for name, d in sets},
              "textures": list(real.texture_names), "seconds_to_build": round(t_build, 1)}
    ev_errors = {}
    for name, d in sets:
        preds = dual.predict_all(d)
        preds = {m: preds[m] for m in METHODS if m in preds}
        ev = evaluation.evaluate(preds, d, n_boot=args.n_boot)
        result[name] = {r: {"table": table(ev, r), "paired": paired(ev, r)} for r in ("s_hat", "true")}
        ev_errors[name] = ev.errors["s_hat"]
        if name == "real_appearance":
            e = ev.errors["s_hat"]
            result["per_texture"] = {
                tn: {m: round(float(e[m][real.texture == k].mean()), 4) for m in preds}
                for k, tn in enumerate(real.texture_names)}
            harm = e["ResNetGC"] - e["GC"]
        if name == familiar:
            harm_syn = ev.errors["s_hat"]["ResNetGC"] - ev.errors["s_hat"]["GC"]
    # candidate signals that a photo lies outside what the networks learnt, per photo; each is judged by
    # its area under the ROC curve for telling the photos where a learnt stage makes S0 worse from those
    # where it makes it better (0.5: no better than chance)
    sig_syn, sig_real = signals(dual, train_set, dict(sets)[familiar]), signals(dual, train_set, real)
    harm_ours_syn = ev_errors[familiar]["Ours"] - ev_errors[familiar]["MRFGC"]
    harm_ours = ev_errors["real_appearance"]["Ours"] - ev_errors["real_appearance"]["MRFGC"]
    result["signal"] = {"reference": familiar, "share_harmed": {
        f"ResNetGC over GC, {familiar}": round(float((harm_syn > 0).mean()), 3),
        "ResNetGC over GC, real appearance": round(float((harm > 0).mean()), 3),
        f"Ours over MRFGC, {familiar}": round(float((harm_ours_syn > 0).mean()), 3),
        "Ours over MRFGC, real appearance": round(float((harm_ours > 0).mean()), 3)}}
    for k in sig_syn:
        a, b = sig_syn[k], sig_real[k]
        both, h, ho = np.concatenate([a, b]), np.concatenate([harm_syn, harm]), np.concatenate([harm_ours_syn, harm_ours])
        result["signal"][k] = {
            "median_synthetic": round(float(np.median(a)), 3), "median_real": round(float(np.median(b)), 3),
            "real_above_synthetic_p99": round(float((b > np.percentile(a, 99)).mean()), 3),
            "auc_resnetgc_harm_all": round(auc(both[h > 0], both[h <= 0]), 3),
            "auc_resnetgc_harm_real": round(auc(b[harm > 0], b[harm <= 0]), 3),
            "auc_ours_harm_all": round(auc(both[ho > 0], both[ho <= 0]), 3),
            "auc_ours_harm_real": round(auc(b[harm_ours > 0], b[harm_ours <= 0]), 3)}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"{len(test)} synthetic test photos, {len(real)} with real textures ({', '.join(real.texture_names)})")
    names = [name for name, _ in sets]
    for r in ("s_hat", "true"):
        print(f"\nmean error vs {r} (mm) [95% interval]")
        print(f"{'method':18s}" + "".join(f"{name:>25s}" for name in names))
        for m in result["synthetic"][r]["table"]:
            print(f"{m:18s}" + "".join("{mean:8.3f} [{low:.3f}, {high:.3f}]  ".format(**result[name][r]["table"][m])
                                       for name in names))
        for k in result["synthetic"][r]["paired"]:
            print(f"{k:18s}" + "".join("{mean:+8.3f} [{low:+.3f}, {high:+.3f}]".format(**result[name][r]["paired"][k])
                                       for name in names))
    print("\nper texture vs s_hat:", result["per_texture"])
    print("\nshare of photos a learnt stage harms:", result["signal"]["share_harmed"])
    print(f"{'signal':52s} {'med syn':>8s} {'med real':>8s} {'>p99':>6s} {'AUC GC all':>10s} {'real':>6s} "
          f"{'AUC Ours all':>12s} {'real':>6s}")
    for k, s in result["signal"].items():
        if k not in ("share_harmed", "reference"):
            print(f"{k:52s} {s['median_synthetic']:8.3f} {s['median_real']:8.3f} {s['real_above_synthetic_p99']:6.3f} "
                  f"{s['auc_resnetgc_harm_all']:10.3f} {s['auc_resnetgc_harm_real']:6.3f} "
                  f"{s['auc_ours_harm_all']:12.3f} {s['auc_ours_harm_real']:6.3f}")
    _common.write_results(args.out, result)


if __name__ == "__main__":
    main()
