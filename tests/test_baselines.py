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
    # measured (300 held-out faces): 3.022 mm, 0.4907 of the mean face's error (6.159 mm); leading
    # components 0.5832; expression correlations 0.688, 0.813, 0.609, 0.897, 0.785, 0.944.
    # Bounds: 10% either side.
    assert err.mean() == pytest.approx(3.022, rel=0.1)
    assert err.mean() / base.mean() == pytest.approx(0.4907, rel=0.1)
    # the leading identity components and every expression are recovered
    assert np.linalg.norm(a[:, :5] - A[:, :5]) / np.linalg.norm(A[:, :5]) == pytest.approx(0.5832, rel=0.1)
    corr = [np.corrcoef(e[:, j], E[:, j])[0, 1] for j in range(E.shape[1])]
    np.testing.assert_allclose(corr, [0.688, 0.813, 0.609, 0.897, 0.785, 0.944], rtol=0.1)


def test_recovers_synthetic_prior_subject(model, reg):
    # measured per subject: vertex error 2.431, 3.652, 1.863, 2.481 mm (mean 2.607, 0.3622 of the mean
    # face's 7.196); landmark error 1.322, 1.550, 1.597, 1.876 px; yaw off by 2.186, 0.587, 1.078, 0.506 deg
    errs, base, lm, dyaw = [], [], [], []
    for k, cond in enumerate(("neutral", "expression", "neutral", "expression")):
        s = synth.make_subject(300000 + k, cond, model=model, population=synth.Population.prior(), with_scan=False)
        fit = reg.predict(s.landmarks, image=s.image)
        errs.append(metrics.mean_vertex_error(fit.vertices, s.vertices))
        base.append(metrics.mean_vertex_error(model.mean, s.vertices))
        lm.append(fit.landmark_error)
        dyaw.append(abs(fit.camera.angles[0] - s.pose[0]))
    np.testing.assert_allclose(errs, [2.431, 3.652, 1.863, 2.481], rtol=0.1)
    np.testing.assert_allclose(lm, [1.322, 1.550, 1.597, 1.876], rtol=0.1)
    np.testing.assert_allclose(dyaw, [2.186, 0.587, 1.078, 0.506], rtol=0.1)
    assert np.mean(errs) / np.mean(base) == pytest.approx(0.3622, rel=0.1)


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
    assert fit.visible.mean() == pytest.approx(0.936, rel=0.1)              # measured 0.936
    assert np.all(fit.colors[~fit.visible] == 0) and fit.colors[fit.visible].max() == pytest.approx(0.777, rel=0.1)
    plain = reg.predict(s.landmarks)                  # no image: nothing visible, no colours
    assert not plain.visible.any() and not plain.colors.any()
    np.testing.assert_array_equal(plain.vertices, fit.vertices)


def test_mean_face_baseline(model):
    s = synth.make_subject(300011, "neutral", model=model, with_scan=False)
    fit = mean_face(model, s.landmarks, image=s.image)
    np.testing.assert_array_equal(fit.vertices, model.mean)
    assert not fit.alpha.any() and not fit.expr.any()
    assert fit.landmark_error == pytest.approx(2.054, rel=0.1)              # measured 2.054 px


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
    # train() is train_on() of the prior's samples
    same = Lm2Vertex(model, ridge=0.1).train(n_samples=300, seed=5)
    for x, y in zip(same.predict_params(held_out[0][:20]), r.predict_params(held_out[0][:20])):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-9)
    # accuracy on the first 100 held-out faces against their truth. Measured: 3.538 mm, 0.555 of the
    # mean face's 6.374 mm (the fixture's 2000 samples, ridge 0.01: 0.491 over all 300)
    Lh, Ah, Eh = (x[:100] for x in held_out)
    a, e = r.predict_params(Lh)
    truth = [model.shape(Ah[i], Eh[i]) for i in range(len(Lh))]
    err = np.mean([metrics.mean_vertex_error(model.shape(a[i], e[i]), truth[i]) for i in range(len(Lh))])
    base = np.mean([metrics.mean_vertex_error(model.mean, t) for t in truth])
    assert err == pytest.approx(3.538, rel=0.1), err
    assert err / base == pytest.approx(0.555, rel=0.1), (err, base)


def test_ridge_shrinks_as_documented(model):
    """Targets exactly linear in the normalised landmarks, along the leading eigenvector v of their
    covariance C (eigenvalue c): ridge regression returns them shrunk by c / (c + ridge * mean(diag C))."""
    L, _, _ = prior_landmark_samples(model, 200, seed=11)
    X = normalise_landmarks(model, L).reshape(len(L), -1)
    Xc = X - X.mean(0)
    C = Xc.T @ Xc / len(X)
    eigval, eigvec = np.linalg.eigh(C)
    c, v = eigval[-1], eigvec[:, -1]
    A = np.zeros((len(L), model.n_components))
    A[:, 0] = Xc @ v
    E = np.zeros((len(L), model.n_expressions))
    for ridge in (10.0, 100.0):                      # c is 81 x mean(diag C): shrunk to 0.891, 0.448
        a, e = Lm2Vertex(model, ridge=ridge).train_on(L, A, E).predict_params(L)
        shrink = c / (c + ridge * np.mean(np.diag(C)))
        np.testing.assert_allclose(a[:, 0], shrink * A[:, 0], rtol=1e-4, atol=1e-6)
        assert np.abs(a[:, 1:]).max() < 1e-6 and np.abs(e).max() < 1e-6
    # the default ridge (0.01) on the direction whose variance is nearest a tenth of it (c = 0.00108 x
    # mean(diag C), targets of unit variance): shrunk to c / (c + 0.01 mean(diag C)), measured 0.0974
    k = int(np.argmin(np.abs(eigval - 1e-3 * np.mean(np.diag(C)))))
    A[:, 0] = Xc @ eigvec[:, k] / np.sqrt(eigval[k])
    a, e = Lm2Vertex(model).train_on(L, A, E).predict_params(L)
    shrink = eigval[k] / (eigval[k] + 0.01 * np.mean(np.diag(C)))
    np.testing.assert_allclose(a[:, 0], shrink * A[:, 0], rtol=1e-4, atol=1e-6)
    assert np.abs(a[:, 1:]).max() < 1e-6 and np.abs(e).max() < 1e-6


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
    assert d.mean() == pytest.approx(1.728, rel=0.1)                       # measured 1.728 px
