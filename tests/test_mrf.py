"""Tests of the learnable MRF prior (paper Sec. III-B-2..4, Fig. 3): dualface_lite.mrf."""
import numpy as np
import pytest
import torch

from dualface_lite import mrf
from dualface_lite.mrf import MRFGC, MRFPrior, delta_weights, knn_fixed, knn_per_subject, mrfgc

FAST = dict(max_epochs=60, patience=10, progress=False)


def _grid(n_side=8, spacing=5.0):
    """A flat patch of n_side^2 vertices, ``spacing`` mm apart (z = 0)."""
    u, v = np.meshgrid(np.arange(n_side), np.arange(n_side), indexing="ij")
    return np.stack([u.ravel() * spacing, v.ravel() * spacing, np.zeros(u.size)], 1).astype(np.float32)


def _toy(M=240, n_side=8, seed=0, k=4):
    """Faces whose target offsets are a known function of each vertex's neighbourhood.

    Templates: the grid, jittered once by up to 1 mm (so that no two neighbours
    tie in distance), plus noise of 0.5 mm per face (far below the 5 mm spacing).
    Colours: random in [0.2, 0.9]. Target offset of vertex i (mm)::

        d_i = 2 * (mean of the k neighbours' positions - v_i)       a Laplacian (linear)
              + [0, 0, 3 * tanh(4 * (red_i - mean red of the neighbours))]   colour -> depth

    i.e. a function of exactly the vertex's neighbourhood ``B(v_i)``, positions and colours.
    """
    rng = np.random.default_rng(seed)
    base = _grid(n_side) + np.random.default_rng(99).uniform(-1, 1, (n_side**2, 3)).astype(np.float32)
    N = len(base)
    T = base[None] + rng.normal(0, 0.5, (M, N, 3)).astype(np.float32)
    C = rng.uniform(0.2, 0.9, (M, N, 3)).astype(np.float32)
    nb = knn_fixed(T[:200].mean(0), None, k=k)[:, 1:]   # (N, k) by position, on the training faces' mean
    lap = T[:, nb].mean(2) - T                                          # (M, N, 3)
    red = C[..., 0]
    dz = 3.0 * np.tanh(4.0 * (red - red[:, nb].mean(2)))
    Y = T + 2.0 * lap
    Y[..., 2] += dz
    return T, C, Y.astype(np.float32), nb


@pytest.fixture(scope="module")
def toy():
    return _toy()


@pytest.fixture(scope="module")
def toy_prior(toy):
    T, C, Y, _ = toy
    # colour_scale=0: neighbours by position only, as the toy targets were made; align_targets=False:
    # the toy's offsets are defined in the object frame (a rigid part of them is part of the function)
    return MRFPrior(k=4, hidden=32, seed=0, color_scale=0.0, weight_decay=0.0, lr=1e-2, batch_size=32,
                    max_epochs=300, patience=25, align_targets=False, progress=False).fit(T[:200], C[:200], Y[:200])


# ----------------------------------------------------------------------------- neighbours and features
def test_delta_weights_are_linear_and_positive():
    d = delta_weights(10)
    assert d.shape == (11,) and d[0] == 1.0
    np.testing.assert_allclose(np.diff(d), -1 / 11, rtol=1e-6)
    assert d[-1] > 0                                    # the K-th neighbour keeps a weight (paper: 1 - K/K = 0)
    with pytest.raises(ValueError, match="k must be"):
        delta_weights(0)


def test_knn_fixed_puts_the_vertex_first_then_nearest_by_w():
    v = _grid(6)
    idx = knn_fixed(v, None, k=4)
    assert idx.shape == (36, 5)
    np.testing.assert_array_equal(idx[:, 0], np.arange(36))
    d = np.linalg.norm(v[idx[:, 1:]] - v[:, None], axis=2)
    assert np.all(np.diff(d, axis=1) >= -1e-9)          # sorted by distance
    np.testing.assert_allclose(d[7], 5.0)               # an interior vertex: its 4 grid neighbours


def test_knn_color_scale_moves_neighbours_in_colour_space():
    v = _grid(6)
    c = np.zeros((36, 3), np.float32)
    c[::2] = 1.0                                        # every other vertex is white
    near_xyz = knn_fixed(v, c, k=4, color_scale=0.0)
    near_rgb = knn_fixed(v, c, k=4, color_scale=1000.0)
    assert not np.array_equal(near_xyz, near_rgb)
    same = c[near_rgb[:, 1:], 0] == c[:, None, 0]       # with a large scale, neighbours share the colour
    assert same.all()
    per = knn_per_subject(np.stack([v, v]), np.stack([c, c]), k=4, color_scale=1000.0)
    assert per.shape == (2, 36, 5)
    np.testing.assert_array_equal(per[0], near_rgb)


def test_feature_layout_relative_positions_and_delta():
    T, C, Y, _ = _toy(M=6)
    p = MRFPrior(k=4, hidden=4, seed=0, color_scale=0.0, val_fraction=0.5, max_epochs=1,
                 progress=False).fit(T, C, Y)
    idx = torch.as_tensor(p.neighbours_)
    F = p._features(torch.as_tensor(T), torch.as_tensor(C), idx).numpy()
    assert F.shape == (6, 64, p.n_inputs) == (6, 64, 5 * 6)
    d = delta_weights(4)
    i = 9
    nb = p.neighbours_[i]
    pos = ((T[:, nb] - T[:, i:i + 1]) * d[None, :, None]).reshape(6, -1)
    col = (C[:, nb] * d[None, :, None]).reshape(6, -1)
    np.testing.assert_allclose(F[:, i], np.concatenate([pos, col], 1), atol=1e-5)


# ----------------------------------------------------------------------------- learning
def test_prior_learns_a_known_function_of_the_neighbourhood(toy, toy_prior):
    T, C, Y, nb = toy
    # the learned neighbourhoods are the ones the targets were made from
    np.testing.assert_array_equal(np.sort(toy_prior.neighbours_[:, 1:], 1), np.sort(nb, 1))
    P = toy_prior.predict(T[200:], C[200:])
    offsets = Y[200:] - T[200:]
    rms_target = np.sqrt(((offsets - offsets.mean(0)) ** 2).sum(2).mean())
    rms_err = np.sqrt(((P - Y[200:]) ** 2).sum(2).mean())
    # 160 training faces (40 validate) per 64 networks of 30 inputs: > 93% of the variance explained
    assert rms_err < 0.25 * rms_target, (rms_err, rms_target)
    # and the colour term is learned too: it is what a prior without colour cannot see
    xyz = MRFPrior(k=4, hidden=32, seed=0, use_color=False, weight_decay=0.0, lr=1e-2, batch_size=32,
                   max_epochs=300, patience=25, align_targets=False, progress=False).fit(T[:200], None, Y[:200])
    P_xyz = xyz.predict(T[200:])
    rms_xyz = np.sqrt(((P_xyz - Y[200:]) ** 2).sum(2).mean())
    assert rms_err < 0.5 * rms_xyz, (rms_err, rms_xyz)
    # the Laplacian (x, y) part is learned without colour as well
    assert np.sqrt(((P_xyz - Y[200:])[..., :2] ** 2).mean()) < 0.2 * np.sqrt((offsets[..., :2] ** 2).mean())


def test_predictions_do_not_depend_on_batch_order_or_batch_size(toy, toy_prior):
    T, C, _, _ = toy
    T, C = T[200:], C[200:]
    P = toy_prior.predict(T, C)
    perm = np.random.default_rng(3).permutation(len(T))
    P2 = toy_prior.predict(T[perm], C[perm], batch_size=7)
    np.testing.assert_allclose(P2, P[perm], atol=1e-4)
    P1 = toy_prior.predict(T[5], C[5])                  # one face (N, 3) -> (N, 3)
    assert P1.shape == T[5].shape
    np.testing.assert_allclose(P1, P[5], atol=1e-4)


@pytest.mark.parametrize("neighbours", ["fixed", "per_subject"])
def test_a_vertex_depends_only_on_its_neighbourhood(toy, neighbours):
    T, C, Y, _ = toy
    p = MRFPrior(k=4, hidden=16, seed=1, color_scale=0.0, neighbours=neighbours, max_epochs=5,
                 progress=False).fit(T[:60], C[:60], Y[:60])
    t, c = T[200].copy(), C[200].copy()
    far = 63                                            # a corner of the 8 x 8 grid
    t2, c2 = t.copy(), c.copy()
    t2[far] += np.array([0.3, -0.2, 0.4], np.float32)   # moved, but still nearest to the same vertices
    c2[far] = [0.1, 0.8, 0.3]
    P, P2 = p.predict(t, c), p.predict(t2, c2)
    idx = knn_fixed(t, None, k=4) if neighbours == "per_subject" else p.neighbours_
    touched = np.any(idx == far, axis=1)                # vertices whose neighbourhood holds `far`
    assert 1 < touched.sum() < 10
    np.testing.assert_array_equal(P2[~touched], P[~touched])
    assert np.abs(P2[touched] - P[touched]).max() > 1e-4


def test_batched_networks_equal_one_small_network_per_vertex(toy_prior, toy):
    """The (N, D, H) tensors are N independent one-hidden-layer networks: evaluate
    vertex i's network alone with plain numpy and compare."""
    T, C, _, _ = toy
    p, s = toy_prior, toy_prior._state
    F = p._features(torch.as_tensor(T[200:203]), torch.as_tensor(C[200:203]), s["neighbours"]).numpy()
    P = p.predict(T[200:203], C[200:203])
    for i in (0, 27, 63):
        x = (F[:, i] - s["x_mean"][i].numpy()) * s["x_inv"][i].numpy()
        h = np.maximum(x @ s["W1"][i].numpy() + s["b1"][i].numpy(), 0)
        o = h @ s["W2"][i].numpy() + s["b2"][i].numpy()
        v = T[200:203, i] + o * s["y_std"][i].numpy() + s["y_mean"][i].numpy()
        np.testing.assert_allclose(P[:, i], v, atol=1e-4)


def test_same_seed_same_numbers_and_seed_matters(toy):
    T, C, Y, _ = toy
    kw = dict(k=4, hidden=8, color_scale=0.0, max_epochs=4, progress=False)
    a = MRFPrior(seed=5, **kw).fit(T[:40], C[:40], Y[:40])
    b = MRFPrior(seed=5, **kw).fit(T[:40], C[:40], Y[:40])
    c = MRFPrior(seed=6, **kw).fit(T[:40], C[:40], Y[:40])
    for name in ("W1", "b1", "W2", "b2"):
        assert torch.equal(a._state[name], b._state[name])
    assert not torch.equal(a._state["W1"], c._state["W1"])
    np.testing.assert_array_equal(a.predict(T[50:53], C[50:53]), b.predict(T[50:53], C[50:53]))


def test_early_stopping_keeps_each_vertex_at_its_best_validation_epoch(toy):
    T, C, Y, _ = toy
    p = MRFPrior(k=4, hidden=16, seed=0, color_scale=0.0, max_epochs=40, patience=5, tol=0.0,
                 progress=False).fit(T[:80], C[:80], Y[:80])
    h = p.history_
    n = len(h["val_mm2"])
    assert n <= 40 and len(h["train_mm2"]) == n and len(h["best_val_mm2"]) == n
    assert np.all(np.diff(h["best_val_mm2"]) <= 1e-6)    # the kept networks never get worse on validation
    assert p.best_epoch_.shape == (64,) and p.best_epoch_.max() < n
    g = MRFPrior(k=4, hidden=16, seed=0, color_scale=0.0, max_epochs=40, patience=5, early_stopping="global",
                 progress=False).fit(T[:80], C[:80], Y[:80])
    assert len(set(g.best_epoch_.tolist())) == 1          # one epoch for all networks


def test_invisible_colours_are_imputed_not_black(toy):
    T, C, Y, _ = toy
    C = C.copy()
    C[:, 10] = 0.0                                       # vertex 10 never seen: colour exactly 0
    C[:100:2, 20] = 0.0                                  # vertex 20 seen in half the faces
    p = MRFPrior(k=4, hidden=8, seed=0, color_scale=0.0, max_epochs=2, progress=False).fit(T[:100], C[:100], Y[:100])
    cm = p._state["color_mean"].numpy()
    assert np.all(cm[10] > 0.2)                          # fallback: the mean visible colour
    np.testing.assert_allclose(cm[20], C[1:100:2, 20][~p_val_mask(p, 100)[1::2]].mean(0), atol=0.05)


def p_val_mask(p, M):
    """The validation mask ``fit`` drew (same generator, same order)."""
    g = torch.Generator().manual_seed(p.seed)
    perm = torch.randperm(M, generator=g).numpy()
    m = np.zeros(M, bool)
    m[perm[:int(round(p.val_fraction * M))]] = True
    return m


def test_absolute_targets_and_positions_are_an_option(toy):
    """``residual=False, relative=False``: the paper's wording (absolute features in,
    target coordinates out). The output is then not anchored to the template."""
    T, C, Y, _ = toy
    p = MRFPrior(k=4, hidden=16, seed=0, color_scale=0.0, residual=False, relative=False, align_targets=False,
                 max_epochs=30, progress=False).fit(T[:100], C[:100], Y[:100])
    P = p.predict(T[200:205], C[200:205])
    assert P.shape == (5, 64, 3) and np.all(np.isfinite(P))
    assert np.sqrt(((P - Y[200:205]) ** 2).sum(2).mean()) < np.sqrt(((T[200:205] - Y[200:205]) ** 2).sum(2).mean())


def test_explicit_validation_mask(toy):
    T, C, Y, _ = toy
    val = np.zeros(40, bool)
    val[:8] = True
    p = MRFPrior(k=4, hidden=8, seed=0, color_scale=0.0, max_epochs=3, progress=False)
    p.fit(T[:40], C[:40], Y[:40], validation=val)
    assert p.is_fitted
    with pytest.raises(ValueError, match="validation must be a"):
        p.fit(T[:40], C[:40], Y[:40], validation=np.zeros(39, bool))
    with pytest.raises(ValueError, match="hold out at least 1"):
        p.fit(T[:40], C[:40], Y[:40], validation=np.zeros(40, bool))


# ----------------------------------------------------------------------------- save / load
def test_save_and_load_with_weights_only(tmp_path, toy, toy_prior):
    T, C, _, _ = toy
    path = toy_prior.save(tmp_path / "prior.pt")
    raw = torch.load(path, weights_only=True)           # plain tensors and values: no pickle needed
    assert raw["config"]["k"] == 4 and raw["state"]["W1"].shape == (64, toy_prior.n_inputs, 32)
    q = MRFPrior.load(path)
    assert q.get_config() == toy_prior.get_config()
    np.testing.assert_array_equal(q.predict(T[200:205], C[200:205]), toy_prior.predict(T[200:205], C[200:205]))
    np.testing.assert_array_equal(q.neighbours_, toy_prior.neighbours_)


def test_load_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        MRFPrior.load(tmp_path / "nope.pt")
    torch.save({"W": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an MRF prior"):
        MRFPrior.load(tmp_path / "other.pt")


# ----------------------------------------------------------------------------- MRFGC
def test_mrfgc_is_the_prior_applied_to_the_landmark_fit(toy, toy_prior):
    T, C, _, _ = toy
    gc = MRFGC(toy_prior)
    assert gc.name == "MRFGC"
    np.testing.assert_array_equal(gc(T[200:202], C[200:202]), toy_prior.predict(T[200:202], C[200:202]))

    class FakeFit:                                       # what fit_landmarks returns: .vertices, .colors
        def __init__(self, v, c):
            self.vertices, self.colors = v, c

    fits = [FakeFit(T[200], C[200]), FakeFit(T[201], C[201])]
    np.testing.assert_array_equal(mrfgc(toy_prior, fits), toy_prior.predict(T[200:202], C[200:202]))
    np.testing.assert_array_equal(mrfgc(toy_prior, fits[0]), toy_prior.predict(T[200], C[200]))
    np.testing.assert_array_equal(mrfgc(toy_prior, T[200:202], C[200:202]), gc(T[200:202], C[200:202]))
    with pytest.raises(TypeError, match="MRFPrior"):
        MRFGC("not a prior")
    with pytest.raises(RuntimeError, match="not fitted"):
        MRFGC(MRFPrior())


def test_mrfgc_on_synthetic_faces_beats_the_template(model):
    """End to end on the kit's own subjects: landmark fit (GC) -> prior; the
    prior's faces are closer to the true surface than the templates."""
    from dualface_lite import fitting, metrics, synth

    def faces(seeds):
        T, C, Y = [], [], []
        for s_ in seeds:
            s = synth.make_subject(s_, synth.CONDITIONS[s_ % 3], model=model, with_scan=False)
            f = fitting.fit_landmarks(model, s.landmarks, image=s.image)
            T.append(f.vertices), C.append(f.colors), Y.append(s.vertices)
        return np.stack(T), np.stack(C), np.stack(Y)

    T, C, Y = faces(range(91000, 91030))
    Tt, Ct, Yt = faces(range(92000, 92006))
    prior = MRFPrior(seed=0, max_epochs=30, patience=5, progress=False).fit(T, C, Y)
    P = MRFGC(prior, model).from_templates(Tt, Ct)
    e0 = np.mean([metrics.mean_vertex_error(a, b) for a, b in zip(Tt, Yt)])
    e1 = np.mean([metrics.mean_vertex_error(a, b) for a, b in zip(P, Yt)])
    assert e1 < 0.9 * e0, (e0, e1)


# ----------------------------------------------------------------------------- bad input
def test_predict_before_fit():
    with pytest.raises(RuntimeError, match="not fitted"):
        MRFPrior().predict(np.zeros((1, 20, 3)), np.zeros((1, 20, 3)))
    with pytest.raises(RuntimeError, match="not fitted"):
        MRFPrior().save("x.pt")


@pytest.mark.parametrize("kw, match", [
    (dict(k=0), "k must be"), (dict(hidden=0), "hidden must be"), (dict(seed=-1), "seed must be"),
    (dict(color_scale=-1.0), "color_scale"), (dict(color_scale=float("nan")), "color_scale"),
    (dict(neighbours="mesh"), "neighbours must be"), (dict(normalize="x"), "normalize must be"),
    (dict(activation="gelu"), "activation must be"), (dict(lr=0.0), "lr must be"),
    (dict(val_fraction=1.0), "val_fraction"), (dict(early_stopping="never"), "early_stopping"),
    (dict(batch_size=0), "batch_size"),
])
def test_bad_constructor_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        MRFPrior(**kw)


def test_bad_fit_inputs(toy):
    T, C, Y, _ = toy
    p = MRFPrior(k=4, **FAST)
    with pytest.raises(ValueError, match=r"templates must have shape \(M, N, 3\)"):
        p.fit(T[0], C[0], Y[0])
    with pytest.raises(ValueError, match="templates must have shape"):
        p.fit(T[..., :2], C, Y)
    with pytest.raises(ValueError, match="colors must have the same shape"):
        p.fit(T, C[:, :10], Y)
    with pytest.raises(ValueError, match="targets must have the same shape"):
        p.fit(T, C, Y[:5])
    bad = T.copy()
    bad[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="templates contains NaN"):
        p.fit(bad, C, Y)
    with pytest.raises(ValueError, match=r"colors must be rgb in \[0, 1\]"):
        p.fit(T, C * 255, Y)
    with pytest.raises(ValueError, match="too few faces for a validation split"):
        p.fit(T[:2], C[:2], Y[:2])
    with pytest.raises(ValueError, match="colors is required"):
        p.fit(T, None, Y)
    with pytest.raises(ValueError, match="k = 4 needs more than 4 vertices"):
        p.fit(T[:, :4], C[:, :4], Y[:, :4])
    with pytest.raises(TypeError, match="numeric"):
        p.fit(np.array([["a"]]), C, Y)


def test_bad_predict_inputs(toy, toy_prior):
    T, C, _, _ = toy
    with pytest.raises(ValueError, match="trained on 64"):
        toy_prior.predict(T[:2, :30], C[:2, :30])
    with pytest.raises(ValueError, match="NaN"):
        toy_prior.predict(np.full_like(T[:1], np.inf), C[:1])
    with pytest.raises(ValueError, match="same shape"):
        toy_prior.predict(T[:2], C[:3])
