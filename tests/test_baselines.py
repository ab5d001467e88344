"""Lm2Vertex (paper Sec. IV-C, refs. [11]/[47]), the mean-face baseline and the eos peer."""
import sys
from pathlib import Path

import numpy as np
import pytest

from dualface_lite import metrics, synth
from dualface_lite.baselines import Lm2Vertex, mean_face, normalise_landmarks, prior_landmark_samples
from dualface_lite.fitting import Fit


@pytest.fixture(scope="module")
def reg(model):
    return Lm2Vertex(model).train(n_samples=2000, seed=1)


@pytest.fixture(scope="module")
def held_out(model):
    """Landmark sets of faces from the model's prior, with seeds the training never used."""
    return prior_landmark_samples(model, 300, seed=999)


def _rotate(L, deg, about):
    th = np.deg2rad(deg)
    R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    return (L - about) @ R.T + about


def test_recovers_prior_faces(model, reg, held_out):
    L, A, E = held_out
    a, e = reg.predict_params(L)
    assert a.shape == A.shape and e.shape == E.shape
    err = np.array([metrics.mean_vertex_error(model.shape(a[i], e[i]), model.shape(A[i], E[i])) for i in range(len(L))])
    base = np.array([metrics.mean_vertex_error(model.mean, model.shape(A[i], E[i])) for i in range(len(L))])
    # measured (300 held-out faces): 0.49 of the mean face's error; leading components 0.58;
    # expression correlations 0.61-0.94. Bounds: 20% worse than measured.
    assert err.mean() < 0.59 * base.mean()
    # the leading identity components and every expression are recovered
    assert np.linalg.norm(a[:, :5] - A[:, :5]) < 0.70 * np.linalg.norm(A[:, :5])
    for j in range(E.shape[1]):
        assert np.corrcoef(e[:, j], E[:, j])[0, 1] > 0.49


def test_recovers_synthetic_prior_subject(model, reg):
    errs, base = [], []
    for k, cond in enumerate(("neutral", "expression", "neutral", "expression")):
        s = synth.make_subject(300000 + k, cond, model=model, population=synth.Population.prior(), with_scan=False)
        fit = reg.predict(s.landmarks, image=s.image)
        errs.append(metrics.mean_vertex_error(fit.vertices, s.vertices))
        base.append(metrics.mean_vertex_error(model.mean, s.vertices))
        assert fit.landmark_error < 3.0
        assert abs(fit.camera.angles[0] - s.pose[0]) < 6.0
    assert np.mean(errs) < 0.75 * np.mean(base)


def test_predict_returns_fit(model, reg):
    s = synth.make_subject(300010, "neutral", model=model, with_scan=False)
    fit = reg.predict(s.landmarks, image=s.image)
    assert isinstance(fit, Fit)
    n = model.n_vertices
    assert fit.vertices.shape == (n, 3) and fit.vertices.dtype == np.float32
    assert fit.colors.shape == (n, 3) and fit.visible.shape == (n,)
    assert fit.alpha.shape == (model.n_components,) and fit.expr.shape == (model.n_expressions,)
    assert fit.landmark_vertices.shape == (68,) and fit.landmarks_fit.shape == (68, 2)
    np.testing.assert_allclose(fit.vertices, model.shape(fit.alpha, fit.expr), atol=1e-4)
    np.testing.assert_allclose(fit.landmark_error,
                               metrics.landmark_error(fit.landmarks_fit, s.landmarks), rtol=1e-5)
    assert fit.camera.kind == "orthographic" and (fit.camera.width, fit.camera.height) == (224, 224)
    assert fit.visible.sum() > n // 2
    assert np.all(fit.colors[~fit.visible] == 0) and fit.colors[fit.visible].max() > 0.2
    plain = reg.predict(s.landmarks)                  # no image: nothing visible, no colours
    assert not plain.visible.any() and not plain.colors.any()
    np.testing.assert_array_equal(plain.vertices, fit.vertices)


def test_mean_face_baseline(model):
    s = synth.make_subject(300011, "neutral", model=model, with_scan=False)
    fit = mean_face(model, s.landmarks, image=s.image)
    np.testing.assert_array_equal(fit.vertices, model.mean)
    assert not fit.alpha.any() and not fit.expr.any()
    assert fit.landmark_error < 4.0


def test_invariant_to_similarity_in_the_image(model, reg, held_out):
    L = held_out[0][:5].astype(np.float64)
    a0, e0 = reg.predict_params(L)
    for L2 in (L + np.array([37.0, -21.5]), 1.8 * L, 0.6 * L + 11.0, _rotate(L, 9.0, np.array([100.0, 90.0]))):
        a, e = reg.predict_params(L2)
        np.testing.assert_allclose(a, a0, atol=1e-4)
        np.testing.assert_allclose(e, e0, atol=1e-4)
    n0 = normalise_landmarks(model, L[0])
    np.testing.assert_allclose(n0.mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(np.sqrt((n0**2).sum(1).mean()), 1.0)
    np.testing.assert_allclose(normalise_landmarks(model, 2.5 * L[0] + 7), n0, atol=1e-9)
    # the whole fit follows: same face, pose moved with the landmarks
    f0 = reg.predict(L[0])
    f1 = reg.predict(L[0] + np.array([15.0, 8.0]))
    np.testing.assert_array_equal(f1.vertices, f0.vertices)
    np.testing.assert_allclose(f1.landmarks_fit, f0.landmarks_fit + np.array([15.0, 8.0]), atol=1e-2)


def test_save_load_round_trip(model, reg, held_out, tmp_path):
    path = reg.save(tmp_path / "l2v")
    assert path.suffix == ".npz" and path.is_file()
    with np.load(path, allow_pickle=False) as z:     # plain arrays, no pickle
        assert "W" in z.files
    back = Lm2Vertex.load(path, model)
    assert back.n_train == reg.n_train and back.ridge == reg.ridge
    L = held_out[0]
    for x, y in zip(reg.predict_params(L), back.predict_params(L)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(back.predict(L[0]).vertices, reg.predict(L[0]).vertices)


def test_load_rejects_other_files(model, tmp_path):
    p = tmp_path / "other.npz"
    np.savez(p, W=np.zeros(3))
    with pytest.raises(ValueError, match="not an Lm2Vertex file"):
        Lm2Vertex.load(p, model)
    with pytest.raises(FileNotFoundError):
        Lm2Vertex.load(tmp_path / "missing.npz", model)


def test_bad_inputs(model, reg, held_out):
    L = held_out[0][0]
    with pytest.raises(ValueError, match="landmarks"):
        reg.predict(L[:67])
    with pytest.raises(ValueError, match="landmarks"):
        reg.predict(L.T)
    bad = L.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="landmarks.*NaN"):
        reg.predict(bad)
    with pytest.raises(ValueError, match="landmarks"):
        reg.predict(np.zeros((68, 2)))                 # all in one point
    with pytest.raises(ValueError, match="image"):
        reg.predict(L, image=np.zeros((10, 10, 5), np.uint8))
    with pytest.raises(ValueError, match="ridge"):
        Lm2Vertex(model, ridge=-1.0)
    with pytest.raises(TypeError, match="model"):
        Lm2Vertex("sfm")
    with pytest.raises(ValueError, match="n_samples"):
        Lm2Vertex(model).train(n_samples=0)
    Ls, A, E = held_out
    with pytest.raises(ValueError, match="alpha"):
        Lm2Vertex(model).train_on(Ls, A[:, :10], E)
    with pytest.raises(ValueError, match="expr"):
        Lm2Vertex(model).train_on(Ls, A, E[:-1])
    with pytest.raises(ValueError, match="landmarks"):
        Lm2Vertex(model).train_on(Ls[:, :60], A, E)
    A2 = A.copy()
    A2[0, 0] = np.inf
    with pytest.raises(ValueError, match="alpha.*NaN"):
        Lm2Vertex(model).train_on(Ls, A2, E)


def test_untrained_raises(model, tmp_path):
    r = Lm2Vertex(model)
    assert not r.trained and "untrained" in repr(r)
    with pytest.raises(RuntimeError, match="not trained"):
        r.predict(np.random.default_rng(0).uniform(50, 150, (68, 2)))
    with pytest.raises(RuntimeError, match="not trained"):
        r.save(tmp_path / "x.npz")


def test_train_on_custom_data(model, held_out):
    L, A, E = prior_landmark_samples(model, 300, seed=5)
    r = Lm2Vertex(model, ridge=0.1).train_on(L, A, E)
    assert r.trained and r.n_train == 300
    a, e = r.predict_params(held_out[0][0])
    assert a.shape == (model.n_components,) and e.shape == (model.n_expressions,)


def test_prior_samples_reproducible(model):
    a = prior_landmark_samples(model, 5, seed=3)
    b = prior_landmark_samples(model, 5, seed=3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert a[0].shape == (5, 68, 2) and a[1].shape == (5, model.n_components) and a[2].shape == (5, 6)


def test_eos_peer_projection(model):
    """The eos peer's pose, converted to the kit's camera, is eos's own projection
    (y flip included) and puts its fitted landmarks near the input ones."""
    pytest.importorskip("eos")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from eos_peer import EosPeer

    peer = EosPeer()
    s = synth.make_subject(300020, "neutral", model=model, with_scan=False)
    out = peer.fit(s.landmarks, 224, 224)
    V, cam = out["vertices"], out["camera"]
    assert V.shape == (model.n_vertices, 3)
    P = peer.affine_matrix(out["rendering_params"], 224, 224)
    np.testing.assert_allclose(cam.project(V), np.c_[V, np.ones(len(V))] @ P[:2].T, atol=1e-2)
    inner = np.setdiff1d(np.arange(68), np.r_[0:8, 9:17, 60, 64])  # fixed vertices of eos's mapping
    d = np.linalg.norm(cam.project(V[model.ibug68[inner]]) - s.landmarks[inner], axis=1)
    assert d.mean() < 3.0
