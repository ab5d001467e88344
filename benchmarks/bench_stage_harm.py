"""Which photos a learnt stage makes worse, and whether that belongs to the photo's appearance or to the face.

The lite test set's 90 photos, and the same photos with each of the four real textures of chapter 7 (de-lit,
``appearance.real_textures(model, delit=True)``; ``--as-cut`` for the textures with their photos' light), are
reconstructed by the book's lite networks trained with several seeds. Per photo, the harm of a learnt stage is
its mean error against S_hat minus that of the output it starts from (ResNetGC - GC: the image network on the
landmark fit; Ours - MRFGC: the image network after the prior); positive means the stage made the face worse.

What it measures:

* how repeatable the harm of one photo is from one training to the next (Pearson r between seeds): training
  noise would give r near 0;
* how the harm on real appearance splits between the faces (the mean over the four textures of one test
  record), the textures (the mean over the records of one texture) and the rest;
* how well the harm on a face with real appearance follows the harm on the same face with synthetic skin;
* the straight line through the errors, photo by photo: the stage's error = slope x its starting point's +
  intercept (a slope below 1 and an intercept above 0 make the stage hurt where its start was already good);
* what ranks the photos where the stage hurts above those where it helps (area under the ROC curve): S0's own
  error against S_hat (known only here, an upper reference), and what a reconstruction does know: how far the
  prior and the network move S0, and whether they move it the same way;
* whether S0's own error can be read from the fit: ridge regressions fitted to the training photos' S0 errors
  against S_hat (no network involved) on S0's first 10 / 20 / 40 principal components, or on the numbers the
  landmark fit reports (landmark error, pose, expression and shape coefficients), and what dropping the stage
  where that reading is below the training photos' lowest quarter changes;
* the error a perfect per-photo choice between the stage and its starting point would reach, and what
  dropping the stage where the prior moves S0 less than on a quarter of the synthetic photos changes.

Usage::

    python benchmarks/bench_stage_harm.py                 # seeds 0 1 2 (60 s cached; trained when not: ~8 min each)
    python benchmarks/bench_stage_harm.py --as-cut --out benchmarks/results/stage_harm_as_cut.json
"""
import _common

_common.pin_threads("2")

import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench_real_appearance import auc  # noqa: E402
from dualface_lite import appearance, data, evaluation, load_model, metrics  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402
from dualface_lite.pipeline import DualNetwork  # noqa: E402

METHODS = ("GC", "MRFGC", "ResNetGC", "Ours")
STAGES = {"ResNetGC - GC": ("ResNetGC", "GC"), "Ours - MRFGC": ("Ours", "MRFGC")}


def rank(score, harm):
    """AUC of ``score`` for the photos with ``harm > 0`` against the rest."""
    return round(auc(score[harm > 0], score[harm <= 0]), 3)


def observables(preds, stage):
    """What a reconstruction knows about a photo, one number each: how far the prior moves S0 (mm, mean over
    vertices), how far the stage's network moves its starting point, and the cosine between the two moves."""
    a, b = STAGES[stage]
    prior = preds["MRFGC"] - preds["GC"]
    net = preds[a] - preds[b]
    cos = (prior * net).sum((1, 2)) / np.sqrt((prior ** 2).sum((1, 2)) * (net ** 2).sum((1, 2)))
    return {"the prior's move": np.linalg.norm(prior, axis=2).mean(1),
            "the network's move": np.linalg.norm(net, axis=2).mean(1),
            "cosine of the two moves": cos}


def split_variance(harm, record, texture):
    """Shares of the variance of ``harm`` between records (faces), between textures, and left over."""
    def group_means(labels):
        _, which = np.unique(labels, return_inverse=True)
        return (np.bincount(which, harm) / np.bincount(which))[which]

    total = harm.var()
    between_faces, between_textures = group_means(record).var() / total, group_means(texture).var() / total
    return {"between_faces": round(float(between_faces), 3), "between_textures": round(float(between_textures), 3),
            "rest": round(float(1 - between_faces - between_textures), 3)}


def shape_components(train, k):
    """S0 as its first ``k`` principal components (whitened), those of ``train``'s S0: a function of a split."""
    x = np.asarray(train.s0, np.float64).reshape(len(train), -1)
    mu = x.mean(0)
    _, sv, vt = np.linalg.svd(x - mu, full_matrices=False)
    return lambda d: (np.asarray(d.s0, np.float64).reshape(len(d), -1) - mu) @ vt[:k].T / sv[:k]


def fit_numbers(d):
    """What the landmark fit reports of itself: its landmark error (px), its pose angles' sizes, its
    expression and first 20 shape coefficients."""
    return np.column_stack([d.fit_landmark_error, np.abs(np.asarray(d.fit_pose, np.float64)), d.fit_expr,
                            np.asarray(d.fit_alpha, np.float64)[:, :20]])


def s0_error_reader(train, train_error, features, ridge=1.0):
    """A ridge regression of S0's error against S_hat (mm), ``train_error`` (M,) of ``train``'s records, on
    the standardised ``features(split)`` (M, F), fitted once on ``train`` (no network): the function that
    reads the error of any split's records."""
    f_train = np.asarray(features(train), np.float64)
    mu, sd = f_train.mean(0), f_train.std(0) + 1e-12

    def design(f):
        return np.column_stack([(np.asarray(f, np.float64) - mu) / sd, np.ones(len(f))])

    a = design(f_train)
    penalty = ridge * np.diag(np.r_[np.ones(a.shape[1] - 1), 0.0])      # the intercept is not shrunk
    w = np.linalg.solve(a.T @ a + penalty, a.T @ train_error)
    return lambda d: design(features(d)) @ w


def change_if_dropped(drop, stage_error, start_error):
    """How the mean error changes (mm) when the stage is dropped (its starting point kept) where ``drop``."""
    return round(float(np.where(drop, start_error, stage_error).mean() - stage_error.mean()), 4)


def main() -> None:
    ap = _common.parser(__doc__, "stage_harm", threads="2")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="the networks' training seeds")
    ap.add_argument("--as-cut", action="store_true", help="the real textures with their photos' own light")
    args = ap.parse_args()
    if len(args.seeds) < 2:
        ap.error("--seeds needs at least two seeds to compare trainings")
    torch.set_num_threads(int(args.threads))
    t0 = time.perf_counter()
    model = load_model()
    lite = data.DatasetConfig.preset("lite")
    data.build_dataset(lite, progress=True, model=model)
    test = data.load_split(lite, "test")
    real = appearance.retextured_split(test, appearance.real_textures(model, delit=not args.as_cut), model)
    errors, preds = {}, {}
    for seed in args.seeds:
        dual = DualNetwork.from_training("lite", model=model, seed=seed, networks=("ResNetGC", "Ours"),
                                         lm2vertex_samples=0, progress=True)
        for name, d in (("synthetic", test), ("real", real)):
            p = dual.predict_all(d, METHODS)
            errors[seed, name] = evaluation.evaluate(p, d, references=("s_hat",), n_boot=100).errors["s_hat"]
            preds[seed, name] = p
    record, texture = np.asarray(real.record), np.asarray(real.texture)
    train = data.load_split(lite, "train")
    s0_error = metrics.mean_vertex_errors(test.s0, test.s_hat)
    train_error = metrics.mean_vertex_errors(train.s0, train.s_hat)
    features = {f"its shape ({k} components)": shape_components(train, k) for k in (10, 20, 40)}
    features["the fit's own numbers"] = fit_numbers
    readers = {name: s0_error_reader(train, train_error, f) for name, f in features.items()}
    read_error = {name: read(test) for name, read in readers.items()}
    read_train = {name: read(train) for name, read in readers.items()}
    # a reading is "small" below the training photos' lowest quarter of the same reader's readings
    read_cut = {name: np.percentile(v, 25) for name, v in read_train.items()}
    result = {"textures": list(real.texture_names), "delit": not args.as_cut, "seeds": args.seeds,
              "photos": {"synthetic": len(test), "real": len(real)},
              "per_photo": {"record": record.tolist(), "texture": texture.tolist()}}
    for stage, (a, b) in STAGES.items():
        harm = {k: e[a] - e[b] for k, e in errors.items()}
        out = {"mean_harm": {}, "share_harmed": {}, "between_seeds_r": {}, "split_of_real_variance": {},
               "real_vs_synthetic_same_face_r": {}, "auc_real": {}, "error_real": {}, "drop_on_small_prior_move": {},
               "drop_on_small_read_error": {}, "error_line": {}}
        for seed in args.seeds:
            hs, hr = harm[seed, "synthetic"], harm[seed, "real"]
            e = errors[seed, "real"]
            out["mean_harm"][seed] = {n: round(float(harm[seed, n].mean()), 4) for n in ("synthetic", "real")}
            out["share_harmed"][seed] = {n: round(float((harm[seed, n] > 0).mean()), 3) for n in ("synthetic", "real")}
            out["split_of_real_variance"][seed] = split_variance(hr, record, texture)
            out["real_vs_synthetic_same_face_r"][seed] = round(float(np.corrcoef(hr, hs[record])[0, 1]), 3)
            seen = {n: observables(preds[seed, n], stage) for n in ("synthetic", "real")}
            out["auc_real"][seed] = {
                "S0's own error, small (known only here)": rank(-e["GC"], hr),
                **{f"{k}, small": rank(-v, hr) for k, v in seen["real"].items()},
                **{f"S0's error read from {k}, small": rank(-v[record], hr) for k, v in read_error.items()}}
            out["error_real"][seed] = {"stage": round(float(e[a].mean()), 4), "start": round(float(e[b].mean()), 4),
                                       "better of the two per photo": round(float(np.minimum(e[a], e[b]).mean()), 4)}
            out["error_line"][seed] = {}
            for n in ("synthetic", "real"):
                slope, intercept = np.polyfit(errors[seed, n][b], errors[seed, n][a], 1)
                out["error_line"][seed][n] = {"slope": round(float(slope), 3),
                                              "intercept_mm": round(float(intercept), 3),
                                              "break_even_mm": (round(float(intercept / (1 - slope)), 2)
                                                                if slope < 1 else None)}
            # the stage dropped where S0's error read from the fit is small
            out["drop_on_small_read_error"][seed] = {
                name: {n: change_if_dropped(v[rows] < read_cut[name], errors[seed, n][a], errors[seed, n][b])
                       for n, rows in (("synthetic", slice(None)), ("real", record))}
                for name, v in read_error.items()}
            # the stage dropped where the prior's move is in the synthetic photos' lowest quarter
            moves = {n: seen[n]["the prior's move"] for n in ("synthetic", "real")}
            cut = np.percentile(moves["synthetic"], 25)
            out["drop_on_small_prior_move"][seed] = {
                n: {"change_mm": change_if_dropped(moves[n] < cut, errors[seed, n][a], errors[seed, n][b]),
                    "share_dropped": round(float((moves[n] < cut).mean()), 3)} for n in ("synthetic", "real")}
        for i, s in enumerate(args.seeds):
            for t in args.seeds[i + 1:]:
                out["between_seeds_r"][f"{s}-{t}"] = {
                    n: round(float(np.corrcoef(harm[s, n], harm[t, n])[0, 1]), 3) for n in ("synthetic", "real")}
        result[stage] = out
        # the harm of every photo (mm), from which the summaries above follow (the tests recompute them)
        result["per_photo"][stage] = {seed: {n: np.round(harm[seed, n], 4).tolist() for n in ("synthetic", "real")}
                                      for seed in args.seeds}
        result["per_photo"][f"{b}, error"] = {seed: {n: np.round(errors[seed, n][b], 4).tolist()
                                                     for n in ("synthetic", "real")} for seed in args.seeds}
    result["s0_error_read_spearman"] = {k: round(float(spearmanr(v, s0_error)[0]), 3) for k, v in read_error.items()}
    result["s0_error_read_spearman_on_training"] = {k: round(float(spearmanr(v, train_error)[0]), 3)
                                                    for k, v in read_train.items()}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"{len(test)} synthetic test photos, {len(real)} with real textures "
          f"({'de-lit' if not args.as_cut else 'as cut'}), seeds {args.seeds}")
    for stage in STAGES:
        out = result[stage]
        print(f"\n{stage} (harm: > 0 when the stage makes S0 worse, mm vs S_hat)")
        for seed in args.seeds:
            print(f"  seed {seed}: mean harm {out['mean_harm'][seed]}, share harmed {out['share_harmed'][seed]}")
            print(f"    real harm's variance: {out['split_of_real_variance'][seed]}; r with the same face's "
                  f"synthetic harm {out['real_vs_synthetic_same_face_r'][seed]}")
            print(f"    AUC on real: {out['auc_real'][seed]}")
            print(f"    error on real: {out['error_real'][seed]}")
            print(f"    the stage's error against its start's: {out['error_line'][seed]}")
            print(f"    dropped where the prior's move is small: {out['drop_on_small_prior_move'][seed]}")
            print(f"    dropped where S0's error read from the fit is small: {out['drop_on_small_read_error'][seed]}")
        print(f"  harm per photo, r between seeds: {out['between_seeds_r']}")
    print(f"S0's error read from the fit, Spearman with the truth on the test photos: "
          f"{result['s0_error_read_spearman']}; on the training photos it was fitted to: "
          f"{result['s0_error_read_spearman_on_training']}")
    _common.write_results(args.out, result)


if __name__ == "__main__":
    main()
