"""The dual networks assembled (dualface_lite.pipeline): the variants differ only in their stages (MRFGC
is Ours with the ResNet residual zeroed, GC is S0, the other order is the prior on ResNetGC's output),
a photo reconstructed from scratch gives the dataset's own S0 and the batched prediction, a saved and
reloaded dual network reproduces its reconstructions exactly, a folder made for another version or model
is refused, the report script writes its files, and bad input fails clearly. On the tiny dataset of
tests/tinydata.py with networks of one epoch; then the lite networks of chapter 6 against the figures
measured for Table III."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dualface_lite import evaluation, pipeline
from dualface_lite.data import load_split
from dualface_lite.pipeline import DualNetwork
import trained_figures as TF
from tinydata import TINY, TINY_TRAINING

ROOT = Path(__file__).resolve().parent.parent
TINY_DUAL = dict(TINY_TRAINING, mrf_hidden=8)


@pytest.fixture(scope="module")
def dual(tiny_data_root, tmp_path_factory, model):
    root = tmp_path_factory.mktemp("networks")
    return DualNetwork.from_training("lite", model=model, root=root, data_root=tiny_data_root, progress=False,
                                     lm2vertex_samples=300, **TINY_DUAL)


@pytest.fixture(scope="module")
def test_split(tiny_data_root):
    return load_split(TINY, "test", root=tiny_data_root)


def _zeroed(net):
    """A copy of a trained network whose output is exactly 0 (its last layer and bias cleared)."""
    out = copy.deepcopy(net)
    with torch.no_grad():
        out.net.offset_mean.zero_()
        for p in out.net.parameters():
            p.zero_()
    return out


def test_the_variants_differ_only_in_their_stages(dual, test_split):
    d = test_split
    assert dual.variants == pipeline.ALL_VARIANTS
    args = (d.s0, d.colors, d.image, d.landmarks)
    s_p = dual.prior.predict(d.s0, d.colors)
    gc = dual.stages(*args, variant="GC")
    np.testing.assert_array_equal(gc["S_T"], d.s0)
    mrf = dual.stages(*args, variant="MRFGC")
    np.testing.assert_array_equal(mrf["S_T"], s_p)
    ours = dual.stages(*args, variant="Ours")
    np.testing.assert_array_equal(ours["S_P"], s_p)
    net = dual.networks["Ours"]
    np.testing.assert_allclose(ours["S_T"], s_p + net.residuals(net.crops(d.image, d.landmarks)), atol=1e-5)
    assert np.abs(ours["S_T"] - s_p).max() > 0.1            # the photo moves the vertices
    rg = dual.stages(*args, variant="ResNetGC")
    other = dual.stages(*args, variant=pipeline.OTHER_ORDER)
    np.testing.assert_array_equal(other["S_RG"], rg["S_T"])
    np.testing.assert_array_equal(other["S_T"], dual.prior.predict(rg["S_T"], d.colors))
    # Ours with the ResNet residual zeroed is MRFGC, exactly
    zero = DualNetwork(dual.model, dict(dual.networks, Ours=_zeroed(dual.networks["Ours"])))
    np.testing.assert_array_equal(zero.stages(*args, variant="Ours")["S_T"], mrf["S_T"])
    # and ResNetGC with it zeroed is GC
    zero = DualNetwork(dual.model, dict(dual.networks, ResNetGC=_zeroed(dual.networks["ResNetGC"])))
    np.testing.assert_array_equal(zero.stages(*args, variant="ResNetGC")["S_T"], d.s0)
    # the batched prediction of every variant is its last stage
    preds = dual.predict_all(d)
    assert set(preds) == set(pipeline.ALL_VARIANTS)
    for v in pipeline.VARIANTS:
        np.testing.assert_array_equal(preds[v], dual.stages(*args, variant=v)["S_T"])
    np.testing.assert_array_equal(preds["ResNet"], dual.model.mean[None] + dual.networks["ResNet"].residuals(
        dual.networks["ResNet"].crops(d.image, d.landmarks)))
    lm = dual.lm2vertex.predict(d.landmarks[0], image=d.image[0])
    np.testing.assert_array_equal(preds["Lm2Vertex"][0], lm.vertices)


def test_a_photo_from_scratch_gives_the_datasets_s0(dual, test_split):
    d = test_split
    preds = dual.predict_all(d, ("Ours", "ResNet", pipeline.OTHER_ORDER))
    for i in range(len(d)):
        r = dual.reconstruct(d.read("image", i), d.read("landmarks", i))
        np.testing.assert_allclose(r.stages["S0"], d.s0[i], atol=1e-4)      # the dataset's fit settings
        np.testing.assert_allclose(r.colors, d.colors[i], atol=1e-4)
        np.testing.assert_allclose(r.vertices, preds["Ours"][i], atol=1e-3)
        assert set(r.stages) == {"S0", "S_P", "S_T"} and r.variant == "Ours"
        assert set(r.seconds) == {"fit", "mrf", "resnet", "total"}
        assert r.seconds["total"] >= r.seconds["fit"] + r.seconds["mrf"] + r.seconds["resnet"]
        assert r.colour_distance == pytest.approx(dual.familiarity.distance(d.colors[i]), rel=1e-6)
        assert r.unlike_training == (r.colour_distance > dual.familiarity.threshold)
    r = dual.reconstruct(d.read("image", 0), d.read("landmarks", 0), "ResNet")
    np.testing.assert_allclose(r.vertices, preds["ResNet"][0], atol=1e-4)
    r = dual.reconstruct(d.read("image", 0), d.read("landmarks", 0), pipeline.OTHER_ORDER)
    assert set(r.stages) == {"S0", "S_RG", "S_P", "S_T"}
    np.testing.assert_allclose(r.vertices, preds[pipeline.OTHER_ORDER][0], atol=1e-3)
    r = dual.reconstruct(d.read("image", 0), d.read("landmarks", 0), "Lm2Vertex")
    lm = dual.lm2vertex.predict(d.read("landmarks", 0), image=d.read("image", 0))
    np.testing.assert_array_equal(r.vertices, lm.vertices)               # the baseline, not a network
    np.testing.assert_array_equal(r.vertices, dual.predict(d, "Lm2Vertex")[0])
    assert np.abs(r.vertices - d.s0[0]).mean() > 0.5                     # not the landmark fit either


def test_save_and_load_reproduce_exactly(dual, test_split, tmp_path, model):
    folder = dual.save(tmp_path / "dual")
    again = DualNetwork.load(folder, model=model)
    assert again.variants == dual.variants and again.fit_kwargs == dual.fit_kwargs
    assert again.dataset == TINY.key()
    assert again.familiarity.threshold == dual.familiarity.threshold > 0
    np.testing.assert_array_equal(again.familiarity.axes, dual.familiarity.axes)
    a, b = dual.predict_all(test_split), again.predict_all(test_split)
    for v in a:
        np.testing.assert_array_equal(a[v], b[v])
    im, lm = test_split.read("image", 1), test_split.read("landmarks", 1)
    for v in ("Ours", "MRFGC", "ResNetGC"):
        np.testing.assert_array_equal(dual.reconstruct(im, lm, v).vertices, again.reconstruct(im, lm, v).vertices)
    man = json.loads((folder / "manifest.json").read_text())
    assert man["dataset"] == TINY.key() and man["model"] == pipeline.model_fingerprint(model)
    assert sorted(man["networks"]) == ["Ours", "ResNet", "ResNetGC"]

    assert dual.networks["Ours"].folder.name != "Ours"          # still the cache folder, not the copy
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="other than a saved dual network"):
        dual.save(tmp_path / "notes")
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"
    dual.save(folder)                                              # over a saved dual network: fine

    # another version, another model, no folder: clear errors
    bad = dict(man, version="0.0.1")
    (folder / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="saved by dualface_lite 0.0.1"):
        DualNetwork.load(folder, model=model)
    (folder / "manifest.json").write_text(json.dumps(dict(man, model="0123456789abcdef")))
    with pytest.raises(ValueError, match="another face model"):
        DualNetwork.load(folder, model=model)
    with pytest.raises(FileNotFoundError):
        DualNetwork.load(tmp_path / "nothing", model=model)


def test_bad_input(dual, test_split, model):
    d = test_split
    with pytest.raises(ValueError, match="variant must be one of"):
        dual.reconstruct(d.image[0], d.landmarks[0], "Dual")
    only_gc = DualNetwork(model, {"ResNetGC": dual.networks["ResNetGC"]})
    assert only_gc.variants == ("GC", "ResNetGC")
    with pytest.raises(ValueError, match="needs the trained Ours network"):
        only_gc.predict(d, "Ours")
    with pytest.raises(ValueError, match="needs the MRF prior"):
        only_gc.predict(d, "MRFGC")
    with pytest.raises(ValueError, match="networks must map"):
        DualNetwork(model, {"ResNet": dual.networks["ResNetGC"]})
    with pytest.raises(ValueError, match="its own MRF prior"):
        DualNetwork(model, dual.networks, prior=copy.deepcopy(dual.prior))
    with pytest.raises(ValueError, match="reads the photo"):
        dual.stages(d.s0, d.colors, variant="Ours")
    with pytest.raises(ValueError, match="s0 must have shape"):
        dual.stages(d.s0[:, :10], d.colors, d.image, d.landmarks, "GC")
    with pytest.raises(ValueError, match="photos for"):
        dual.stages(d.s0, d.colors, d.image[:1], d.landmarks[:1], "ResNetGC")
    with pytest.raises(TypeError):
        DualNetwork("model", {})
    assert list(dual.predict_all(d, "GC")) == ["GC"]                # one variant by its name


#: NoW-style scan-to-mesh median and mean over the tiny test set's scan points (mm; 500 points a scan), as
#: (mean, sd) over the tiny networks trained with seeds 0-4 on 2 threads and 0-1 on 1 thread. GC is the
#: landmark fit (no training: bounded within 10%); the others are bounded at mean -/+ 4 sd.
TINY_SCANS = {"GC": dict(median=(1.2388, 0.0), mean=(1.4679, 0.0)),
              "MRFGC": dict(median=(1.189, 0.058), mean=(1.471, 0.048)),
              "Ours": dict(median=(1.304, 0.078), mean=(1.580, 0.083))}


def test_gallery_and_scans_on_real_records(dual, test_split, model):
    preds = dual.predict_all(test_split, ("GC", "MRFGC", "Ours"))
    fig = evaluation.gallery(preds, test_split, [0, 1], model.triangles, row_labels=["a", "b"])
    images = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(images) == 2 * 4                       # a photo and three meshes per face
    for im in images:
        assert np.asarray(im).std() > 10               # not blank
    ev = evaluation.evaluate(preds, test_split, scans=True, model=model, n_points=500, n_boot=200)
    for m, s in ev.scan_summary.items():
        assert s["median"] < s["mean"], (m, s)
        assert ev.scans[m].shape == (len(test_split),)
        for k, (mean, sd) in TINY_SCANS[m].items():
            lo, hi = TF.bounds(m, mean, sd)
            assert lo < s[k] < hi, (m, k, s[k], mean, sd)


@pytest.mark.integration
def test_evaluate_script_writes_the_report(dual, tiny_data_root, tmp_path):
    folder = dual.save(tmp_path / "dual")
    out = tmp_path / "report"
    dataset = load_split(TINY, "test", root=tiny_data_root).folder
    r = subprocess.run([sys.executable, str(ROOT / "data_scripts" / "evaluate.py"), "--dual", str(folder),
                        "--dataset", str(dataset), "--out", str(out), "--no-scans", "--n-boot", "200",
                        "--gallery-faces", "1", "--quiet"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    for name in ("report.json", "summary.md", "ced_true.png", "ced_s_hat.png", "conditions_true.png",
                 "conditions_s_hat.png", "gallery.png"):
        assert (out / name).stat().st_size > 1000, name
    rep = json.loads((out / "report.json").read_text())
    test = load_split(dataset, "test")
    ours = dual.predict(test, "Ours")
    expected = evaluation.evaluate({"Ours": ours}, test, n_boot=200).errors["true"]["Ours"]
    np.testing.assert_allclose(rep["evaluation"]["per_face"]["true"]["Ours"], expected, rtol=1e-6)
    assert "Ours" in rep["compare_ours"]["true"]["GC"]["all"]["b"]
    bad = subprocess.run([sys.executable, str(ROOT / "data_scripts" / "evaluate.py"), "--dual",
                          str(tmp_path / "none")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "no dual network" in bad.stderr


# --------------------------------------------------------------------------- Table III on the lite data
@pytest.fixture(scope="module")
def lite(model):
    """The lite test split and chapter 6's dual networks with the Lm2Vertex baseline, trained with the seed
    of ``DUALFACE_TEST_SEED`` (default 0: cached by the book build; another seed trains here, about 8
    minutes on 2 cores)."""
    from dualface_lite import data

    data.build_dataset("lite", progress=False, model=model)
    test = data.load_split("lite", "test")
    dual = DualNetwork.from_training("lite", model=model, progress=False, seed=TF.seed())
    return test, dual.predict_all(test)


#: (mean, sd) in mm over the runs of benchmarks/bench_trained_spread.py (benchmarks/results/trained_spread.json),
#: lite test set, all faces: each variant's mean error (a ceiling at mean + 4 sd; GC and Lm2Vertex train no
#: network: their ceiling is 1.10 x the mean), each other variant's error minus Ours'
#: (a floor at mean - 4 sd), the other order minus ResNetGC, and ResNet's margin over the next-worst variant
#: under each condition
TABLE_III = {
    "s_hat": {
        "ResNet": (3.7511, 0.0861),
        "GC": (2.4746, 0.0000),
        "ResNetGC": (2.1772, 0.0163),
        "MRFGC": (2.2992, 0.0078),
        "Ours": (2.1508, 0.0077),
        "ResNetGC+MRF": (2.3961, 0.0174),
        "Lm2Vertex": (2.9686, 0.0000),
        "GC-Ours": (0.3238, 0.0077),
        "ResNet-Ours": (1.6003, 0.0889),
        "MRFGC-Ours": (0.1484, 0.0091),
        "ResNetGC-Ours": (0.0264, 0.0170),
        "ResNetGC+MRF-ResNetGC": (0.2190, 0.0166),
    },
    "true": {
        "ResNet": (4.3080, 0.0988),
        "GC": (3.1674, 0.0000),
        "ResNetGC": (2.9013, 0.0202),
        "MRFGC": (2.9668, 0.0063),
        "Ours": (2.8744, 0.0119),
        "ResNetGC+MRF": (3.0140, 0.0152),
        "Lm2Vertex": (3.3965, 0.0000),
        "GC-Ours": (0.2931, 0.0119),
        "ResNet-Ours": (1.4336, 0.1028),
        "MRFGC-Ours": (0.0924, 0.0098),
        "ResNetGC-Ours": (0.0270, 0.0201),
        "ResNetGC+MRF-ResNetGC": (0.1127, 0.0112),
        "ResNet_margin_neutral": (0.8148, 0.0664),
        "ResNet_margin_expression": (0.8295, 0.2253),
        "ResNet_margin_illumination": (1.0807, 0.0467),
    },
}


@pytest.mark.slow
def test_lite_table_iii(lite):
    """Every variant of Table III within its ceiling against S_hat and against the true surface; Ours ahead
    of GC, ResNet and MRFGC by at least the measured gains less 4 sd; the other order (the prior of S0 after
    ResNetGC) worse than ResNetGC; ResNet the worst variant under every condition. The
    gap between Ours and ResNetGC is within training noise (chapter 6): its floors lie below zero, so there
    the test asks only that Ours is not worse beyond that noise; the gains over MRFGC keep floors above zero
    against both references."""
    test, preds = lite
    got = TF.table_iii(test, preds)
    for ref, figures in TABLE_III.items():
        print(f"\n{ref}: " + ", ".join(f"{k} {v:+.3f}" for k, v in got[ref].items()))
        for k, (m, sd) in figures.items():
            if k in TF.TABLE_III:
                assert got[ref][k] <= TF.bounds(k, m, sd)[1], (ref, k, got[ref][k], m, sd)
            else:
                assert got[ref][k] >= TF.floor(m, sd), (ref, k, got[ref][k], m, sd)
