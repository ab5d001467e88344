"""Tests of the learnable MRF prior (paper Sec. III-B-2..4, Fig. 3): dualface_lite.mrf.

Most tests use a toy: a flat 8 x 8 grid whose target offsets are a known function of each
vertex's neighbourhood. One test trains on the kit's ``lite`` dataset (built on first use,
a few minutes) and must beat both the template and the template plus the mean offset.
"""
import numpy as np
import pytest
import torch

import trained_figures as TF
from dualface_lite import data
from dualface_lite.mrf import (MRFGC, MRFPrior, VertexNetworks, adamw, delta_weights, feature_scaling, features,
                               impute_colors, knn_fixed, knn_per_subject, mrfgc, offset_scaling, train_networks,
                               train_step, visible_color_mean)

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


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One torch thread: the toy problems are tiny, and on a machine that other work keeps busy
    several threads make even the lite training slower, not faster."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def toy():
    return _toy()


@pytest.fixture(scope="module")
def toy_prior(toy):
    T, C, Y, _ = toy
    # colour_scale=0: neighbours by position only, as the toy targets were made; align_targets=False:
    # the toy's offsets are defined in the object frame (a rigid part of them is part of the function)
    return MRFPrior(k=4, hidden=32, seed=0, color_scale=0.0, weight_decay=0.0, lr=2e-2, batch_size=32,
                    max_epochs=100, patience=10, align_targets=False, progress=False).fit(T[:200], C[:200], Y[:200])


def _rms(a):
    return float(np.sqrt((np.asarray(a) ** 2).sum(-1).mean()))


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


def test_features_layout_relative_positions_and_delta():
    T, C, _, _ = _toy(M=6)
    idx = knn_fixed(T.mean(0), None, k=4)
    F = features(T, C, idx).numpy()
    assert F.shape == (6, 64, 5 * 6)
    d = delta_weights(4)
    i = 9
    nb = idx[i]
    pos = ((T[:, nb] - T[:, i:i + 1]) * d[None, :, None]).reshape(6, -1)
    col = (C[:, nb] * d[None, :, None]).reshape(6, -1)
    np.testing.assert_allclose(F[:, i], np.concatenate([pos, col], 1), atol=1e-5)
    # absolute positions, xyz only: D = 3 (k + 1)
    Fa = features(torch.as_tensor(T), None, idx, relative=False).numpy()
    np.testing.assert_allclose(Fa[:, i], (T[:, nb] * d[None, :, None]).reshape(6, -1), atol=1e-5)
    # neighbours per face (B, N, S): the same slots for every face give the same features
    np.testing.assert_allclose(features(T, C, np.stack([idx] * 6)).numpy(), F, atol=1e-6)


def test_the_prior_feeds_its_networks_the_normalised_features(toy_prior, toy):
    T, C, _, _ = toy
    p = toy_prior
    F = features(T[200:203], impute_colors(C[200:203], p.color_mean_), p.neighbours_).numpy()
    X = p.network_inputs(T[200:203], C[200:203]).numpy()          # (N, M, D)
    np.testing.assert_allclose(X, ((F - p.feature_mean_) * p.feature_inv_scale_).transpose(1, 0, 2), atol=1e-5)


def test_colours_of_unseen_vertices_are_imputed_not_black():
    C = np.full((4, 3, 3), 0.5, np.float32)
    C[:, 0] = 0.0                                        # vertex 0 never seen
    C[:2, 1] = 0.0                                       # vertex 1 seen in faces 2, 3
    C[2, 1], C[3, 1] = 0.2, 0.4
    cm = visible_color_mean(C)
    np.testing.assert_allclose(cm[1], 0.3, atol=1e-6)    # the mean where it was seen
    np.testing.assert_allclose(cm[0], C[C.sum(2) > 0].mean(0), atol=1e-6)   # never seen: all seen colours
    out = impute_colors(C, cm)
    np.testing.assert_array_equal(out[:, 0], np.broadcast_to(cm[0], (4, 3)))
    np.testing.assert_array_equal(out[2:, 1], C[2:, 1])  # seen colours stay


def test_normalisation_keeps_delta_in_block_mode_and_cancels_it_per_column():
    g = torch.Generator().manual_seed(0)
    F = torch.randn(50, 3, 12, generator=g) * 4 + 1     # k = 1 with colours: D = 6 (k + 1) = 12
    F[:, :, 3:6] *= 0.5                                 # slot 1's positions weighted by delta = 0.5
    mean, inv = feature_scaling(F, k=1)
    assert mean.shape == inv.shape == (3, 12)
    # one scale per vertex and block: all 6 position columns share it, all 6 colour columns too
    assert torch.allclose(inv[:, :6], inv[:, :1].expand(-1, 6))
    assert torch.allclose(inv[:, 6:], inv[:, 6:7].expand(-1, 6))
    _, inv_col = feature_scaling(F, k=1, mode="column")
    Z = (F - F.mean(0)) * inv_col
    assert torch.allclose(Z.pow(2).mean(0), torch.ones(3, 12), atol=1e-4)   # every column rms 1: delta is gone
    R = torch.randn(40, 3, 3, generator=g) * 2 + 5
    m, s = offset_scaling(R)
    assert m.shape == (3, 3) and s.shape == (3,)
    assert torch.allclose(((R - m) / s[:, None]).pow(2).sum(2).mean(0), torch.full((3,), 3.0), atol=1e-4)


# ----------------------------------------------------------------------------- the batched networks
def test_batched_networks_are_independent_networks():
    """One training step of N networks as batched tensors equals N steps of one network each,
    and changing the inputs of one vertex changes the gradient of its network only."""
    g = torch.Generator().manual_seed(1)
    N, B, D, H = 5, 8, 7, 6
    X, Y = torch.randn(N, B, D, generator=g), torch.randn(N, B, 3, generator=g)
    nets = VertexNetworks.init(N, D, H, generator=torch.Generator().manual_seed(2))
    alone = [VertexNetworks(*(p.detach()[i:i + 1].clone().requires_grad_() for p in nets.parameters()))
             for i in range(N)]
    err = train_step(nets, adamw(nets.parameters(), lr=1e-2, weight_decay=1.0), X, Y)
    assert err.shape == (N, B, 3) and not err.requires_grad
    for i, one in enumerate(alone):
        train_step(one, adamw(one.parameters(), lr=1e-2, weight_decay=1.0), X[i:i + 1], Y[i:i + 1])
        for p, q in zip(nets.parameters(), one.parameters()):
            torch.testing.assert_close(p.detach()[i:i + 1], q.detach(), atol=1e-6, rtol=1e-5)

    def grads(X):
        fresh = VertexNetworks.init(N, D, H, generator=torch.Generator().manual_seed(2))
        (fresh(X) - Y).pow(2).mean((1, 2)).sum().backward()
        return fresh.W1.grad
    X2 = X.clone()
    X2[3] += 1.0
    changed = (grads(X) - grads(X2)).abs().flatten(1).amax(1) > 0
    assert changed.tolist() == [False, False, False, True, False]


def test_batched_networks_equal_one_small_network_per_vertex(toy_prior, toy):
    """The (N, D, H) tensors are N independent one-hidden-layer networks: evaluate
    vertex i's network alone with plain numpy and compare."""
    T, C, _, _ = toy
    p = toy_prior
    X = p.network_inputs(T[200:203], C[200:203]).numpy()
    P = p.predict(T[200:203], C[200:203])
    nets = p.networks_
    W1, b1, W2, b2 = (q.detach().numpy() for q in nets.parameters())
    for i in (0, 27, 63):
        h = np.maximum(X[i] @ W1[i] + b1[i], 0)
        o = h @ W2[i] + b2[i]
        v = T[200:203, i] + o * p.offset_scale_[i] + p.offset_mean_[i]
        np.testing.assert_allclose(P[:, i], v, atol=1e-4)


# ----------------------------------------------------------------------------- learning
def test_prior_learns_a_known_function_of_the_neighbourhood(toy, toy_prior):
    T, C, Y, nb = toy
    # the learned neighbourhoods are the ones the targets were made from
    np.testing.assert_array_equal(np.sort(toy_prior.neighbours_[:, 1:], 1), np.sort(nb, 1))
    P = toy_prior.predict(T[200:], C[200:])
    offsets = Y[200:] - T[200:]
    rms_target = _rms(offsets - offsets.mean(0))
    rms_err = _rms(P - Y[200:])
    # 160 training faces (40 validate) per 64 networks of 30 inputs: > 93% of the variance explained
    assert rms_err < 0.25 * rms_target, (rms_err, rms_target)
    # and the colour term is learned too: it is what a prior without colour cannot see
    xyz = MRFPrior(k=4, hidden=32, seed=0, use_color=False, weight_decay=0.0, lr=2e-2, batch_size=32,
                   max_epochs=100, patience=10, align_targets=False, progress=False).fit(T[:200], None, Y[:200])
    P_xyz = xyz.predict(T[200:])
    rms_xyz = _rms(P_xyz - Y[200:])
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


def test_same_seed_same_numbers_and_seed_matters(toy):
    T, C, Y, _ = toy
    kw = dict(k=4, hidden=8, color_scale=0.0, max_epochs=4, progress=False)
    a = MRFPrior(seed=5, **kw).fit(T[:40], C[:40], Y[:40])
    b = MRFPrior(seed=5, **kw).fit(T[:40], C[:40], Y[:40])
    c = MRFPrior(seed=6, **kw).fit(T[:40], C[:40], Y[:40])
    for p, q in zip(a.networks_.parameters(), b.networks_.parameters()):
        assert torch.equal(p, q)
    assert not torch.equal(a.networks_.W1, c.networks_.W1)
    np.testing.assert_array_equal(a.predict(T[50:53], C[50:53]), b.predict(T[50:53], C[50:53]))
    np.testing.assert_array_equal(a.validation_mask_, b.validation_mask_)
    assert a.validation_mask_.sum() == 8 and not np.array_equal(a.validation_mask_, c.validation_mask_)


# ----------------------------------------------------------------------------- early stopping
@pytest.fixture(scope="module")
def overfit():
    """Few faces, noisy targets, big networks, no weight decay: the networks overfit, so that
    the last epoch is not the best one and early stopping has something to choose."""
    T, C, Y, _ = _toy(M=40)
    Y = Y + np.random.default_rng(7).normal(0, 2.0, Y.shape).astype(np.float32)
    return T, C, Y


#: the overfitting prior's settings (all but early_stopping, max_epochs, patience)
OVERFIT = dict(k=4, hidden=32, seed=0, color_scale=0.0, lr=1e-2, weight_decay=0.0, batch_size=8,
               align_targets=False, tol=0.0, progress=False)


def _val_mse(prior, T, C, Y):
    """Mean squared vertex distance (mm^2) of the prior's faces on its validation faces."""
    v = prior.validation_mask_
    return float(((prior.predict(T[v], C[v]) - Y[v]) ** 2).sum(2).mean())


@pytest.mark.parametrize("mode", ["vertex", "global"])
def test_restored_prior_has_the_best_validation_error(overfit, mode):
    T, C, Y = overfit
    p = MRFPrior(**OVERFIT, max_epochs=40, patience=40, early_stopping=mode).fit(T, C, Y)
    h = p.history_
    err = _val_mse(p, T, C, Y)                 # the restored networks, evaluated afresh
    assert len(h["val_mm2"]) == 40
    assert h["val_mm2"][-1] > 1.1 * min(h["val_mm2"])    # it overfits: the last epoch is not the best
    assert err < 0.9 * h["val_mm2"][-1]                   # so the restored weights are not the last ones
    if mode == "vertex":   # each network at its own best epoch: no single epoch's networks do better
        assert err == pytest.approx(h["best_val_mm2"][-1], rel=1e-4)
        assert err <= min(h["val_mm2"]) * (1 + 1e-4)
        assert len(set(p.best_epoch_.tolist())) > 1
    else:                  # all networks at the epoch of the lowest mean validation error
        best = int(np.argmin(h["val_mm2"]))
        assert err == pytest.approx(h["val_mm2"][best], rel=1e-4)
        assert set(p.best_epoch_.tolist()) == {best}


def test_train_networks_keeps_each_network_at_its_best_epoch():
    """Against the weights of every epoch: training for e epochs reproduces the first e epochs
    of a longer run (one generator), so the networks of each epoch can be evaluated."""
    g = torch.Generator().manual_seed(3)
    N, M, D, H, E = 6, 30, 5, 24, 12
    X = torch.randn(N, M, D, generator=g)
    Y = torch.tanh(X[..., :3]) + 0.7 * torch.randn(N, M, 3, generator=g)   # noisy: it overfits
    tr, va = torch.arange(20), torch.arange(20, 30)
    kw = dict(lr=3e-2, weight_decay=0.0, batch_size=5, patience=E, tol=0.0)

    def run(epochs):
        nets = VertexNetworks.init(N, D, H, generator=torch.Generator().manual_seed(4))
        best, best_epoch, hist = train_networks(nets, X, Y, tr, va, generator=torch.Generator().manual_seed(5),
                                                max_epochs=epochs, **kw)
        return nets, best, best_epoch, hist

    def val_err(nets):
        with torch.no_grad():
            return (nets(X[:, va]) - Y[:, va]).pow(2).mean((1, 2))

    per_epoch = torch.stack([val_err(run(e)[0]) for e in range(1, E + 1)])     # (E, N): the last weights
    last, best, best_epoch, hist = run(E)
    torch.testing.assert_close(val_err(last), per_epoch[-1])
    assert (per_epoch.argmin(0) < E - 1).any()          # some networks were best before the end
    assert best_epoch.tolist() == per_epoch.argmin(0).tolist()
    torch.testing.assert_close(val_err(best), per_epoch.min(0).values)
    np.testing.assert_allclose(hist["val_mm2"], 3 * per_epoch.mean(1).numpy(), rtol=1e-5)
    assert not any(q.requires_grad for q in best.parameters())


def test_training_stops_when_validation_stalls(overfit):
    T, C, Y = overfit
    p = MRFPrior(**OVERFIT, max_epochs=200, patience=3, early_stopping="global").fit(T, C, Y)
    n = len(p.history_["val_mm2"])
    assert n < 200 and n - 1 - int(np.argmin(p.history_["val_mm2"])) == 3   # 3 epochs without a better one


# ----------------------------------------------------------------------------- other options
def test_prior_stores_the_imputed_colour_means(toy):
    T, C, Y, _ = toy
    C = C.copy()
    C[:, 10] = 0.0                                       # vertex 10 never seen: colour exactly 0
    C[:100:2, 20] = 0.0                                  # vertex 20 seen in half the faces
    p = MRFPrior(k=4, hidden=8, seed=0, color_scale=0.0, max_epochs=2, progress=False).fit(T[:100], C[:100], Y[:100])
    tr = ~p.validation_mask_
    np.testing.assert_allclose(p.color_mean_, visible_color_mean(C[:100][tr]), atol=1e-6)
    assert np.all(p.color_mean_[10] > 0.2)               # fallback: the mean visible colour


def test_absolute_targets_and_positions_are_an_option(toy):
    """``residual=False, relative=False``: the paper's wording (absolute features in,
    target coordinates out). The output is then not anchored to the template."""
    T, C, Y, _ = toy
    p = MRFPrior(k=4, hidden=16, seed=0, color_scale=0.0, residual=False, relative=False, align_targets=False,
                 max_epochs=30, progress=False).fit(T[:100], C[:100], Y[:100])
    P = p.predict(T[200:205], C[200:205])
    assert P.shape == (5, 64, 3) and np.all(np.isfinite(P))
    assert _rms(P - Y[200:205]) < _rms(T[200:205] - Y[200:205])


def test_explicit_validation_mask(toy):
    T, C, Y, _ = toy
    val = np.zeros(40, bool)
    val[:8] = True
    p = MRFPrior(k=4, hidden=8, seed=0, color_scale=0.0, max_epochs=3, progress=False)
    p.fit(T[:40], C[:40], Y[:40], validation=val)
    assert p.is_fitted
    np.testing.assert_array_equal(p.validation_mask_, val)
    with pytest.raises(ValueError, match="validation must be a"):
        p.fit(T[:40], C[:40], Y[:40], validation=np.zeros(39, bool))
    with pytest.raises(ValueError, match="hold out at least 1"):
        p.fit(T[:40], C[:40], Y[:40], validation=np.zeros(40, bool))


def test_prepare_hands_train_networks_what_fit_uses(toy):
    """fit = prepare + VertexNetworks.init + train_networks, with one generator."""
    T, C, Y, _ = toy
    kw = dict(k=4, hidden=8, seed=2, max_epochs=3, progress=False)
    p = MRFPrior(**kw).fit(T[:40], C[:40], Y[:40])
    q = MRFPrior(**kw)
    ts = q.prepare(T[:40], C[:40], Y[:40])
    assert ts.X.shape == (64, 40, q.n_inputs) and ts.Y.shape == (64, 40, 3)
    assert len(ts.train_rows) == 32 and len(ts.val_rows) == 8
    nets = VertexNetworks.init(64, q.n_inputs, q.hidden, generator=ts.generator)
    best, _, _ = train_networks(nets, ts.X, ts.Y, ts.train_rows, ts.val_rows, generator=ts.generator,
                                max_epochs=3, patience=q.patience, tol=q.tol, lr=q.lr, weight_decay=q.weight_decay)
    for a, b in zip(p.networks_.parameters(), best.parameters()):
        assert torch.equal(a, b)


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
    np.testing.assert_array_equal(q.validation_mask_, toy_prior.validation_mask_)
    np.testing.assert_array_equal(q.best_epoch_, toy_prior.best_epoch_)


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


# ----------------------------------------------------------------------------- the kit's data
@pytest.fixture(scope="module")
def lite():
    cfg = data.DatasetConfig.lite()
    data.build_dataset(cfg, progress=False)              # cached; a few minutes on first use
    return data.load_split(cfg, "train").first_photos(), data.load_split(cfg, "test")


#: (mean, sd) over the runs of benchmarks/bench_trained_spread.py (benchmarks/results/trained_spread.json),
#: lite test set against S_hat: the prior's relative gain over S0 and over S0 + the mean training offset
#: (what the networks' biases alone give), all faces; S0's error minus the prior's under each condition, mm
MRF_LITE = {
    "gain_over_s0": (0.0683, 0.0029),
    "gain_over_mean_offset": (0.0286, 0.0030),
    "over_s0_neutral": (0.0711, 0.0041),
    "over_s0_expression": (0.4301, 0.0143),
    "over_s0_illumination": (0.0060, 0.0076),
}


@pytest.mark.slow
def test_prior_on_the_lite_dataset_beats_s0_and_the_mean_offset(lite):
    """End to end on the kit's subjects (targets S_hat, as in the paper), with the training seed of
    ``DUALFACE_TEST_SEED``: the prior beats the template S0 *and* S0 plus the mean offset of the training
    faces, and S0 under neutral light and expressions, each at least by its mean - 4 sd over training seeds
    and thread counts."""
    train, test = lite
    prior = MRFPrior(seed=TF.seed(), **TF.MRF_FIT).fit(train.s0, train.colors, train.s_hat)
    got = TF.mrf_lite(train, test, prior)
    print("\n" + ", ".join(f"{k} {v:.4f}" for k, v in got.items()))
    for k, (m, sd) in MRF_LITE.items():
        assert got[k] >= TF.floor(m, sd), (k, got[k], m, sd)


# ----------------------------------------------------------------------------- bad input
def test_predict_before_fit():
    with pytest.raises(RuntimeError, match="not fitted"):
        MRFPrior().predict(np.zeros((1, 20, 3)), np.zeros((1, 20, 3)))
    with pytest.raises(RuntimeError, match="not fitted"):
        MRFPrior().save("x.pt")
    with pytest.raises(RuntimeError, match="not fitted"):
        MRFPrior().networks_
    with pytest.raises(RuntimeError, match="not fitted"):
        MRFPrior().network_inputs(np.zeros((1, 20, 3)), np.zeros((1, 20, 3)))


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
    with pytest.raises(ValueError, match="numeric"):
        p.fit(np.array([["a"]]), C, Y)


def test_bad_predict_inputs(toy, toy_prior):
    T, C, _, _ = toy
    with pytest.raises(ValueError, match="trained on 64"):
        toy_prior.predict(T[:2, :30], C[:2, :30])
    with pytest.raises(ValueError, match="NaN"):
        toy_prior.predict(np.full_like(T[:1], np.inf), C[:1])
    with pytest.raises(ValueError, match="same shape"):
        toy_prior.predict(T[:2], C[:3])


def test_bad_inputs_of_the_building_blocks():
    T, C, _, _ = _toy(M=3)
    idx = knn_fixed(T.mean(0), None, k=4)
    with pytest.raises(ValueError, match="colors must have the shape of vertices"):
        knn_fixed(T[0], C[0, :10], k=4)
    with pytest.raises(ValueError, match=r"templates must have shape \(M, N, 3\)"):
        knn_per_subject(T[0], None, k=4)
    with pytest.raises(ValueError, match=r"colors must have shape \(M, N, 3\)"):
        visible_color_mean(C[0])
    with pytest.raises(ValueError, match="color_mean must have shape"):
        impute_colors(C, C[0, :10])
    with pytest.raises(ValueError, match=r"templates must have shape \(B, N, 3\)"):
        features(T[0], C[0], idx)
    with pytest.raises(ValueError, match="colors must have the shape of templates"):
        features(T, C[:2], idx)
    with pytest.raises(ValueError, match="neighbours must be integer slots"):
        features(T, C, idx.astype(np.float32))
    with pytest.raises(ValueError, match="neighbours must be integer slots"):
        features(T, C, idx[:10])
    with pytest.raises(ValueError, match="neighbours must be integer slots"):
        features(T, C, np.stack([idx] * 2))              # (B, N, S) with the wrong B
    with pytest.raises(ValueError, match="neighbours must index the 64 vertices"):
        features(T, C, idx + 1)
    F = features(T, C, idx)
    with pytest.raises(ValueError, match="mode must be one of"):
        feature_scaling(F, 4, mode="z")
    with pytest.raises(ValueError, match="D = 12 or 24 for k = 3"):
        feature_scaling(F, 3)
    with pytest.raises(ValueError, match=r"R must be a tensor \(M, N, 3\)"):
        offset_scaling(np.zeros((3, 4, 3)))
    with pytest.raises(ValueError, match="W1, b1, W2, b2 must be tensors"):
        VertexNetworks(torch.zeros(4, 5, 6), torch.zeros(4, 6), torch.zeros(4, 6, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="activation must be one of"):
        VertexNetworks.init(4, 5, 6, activation="gelu")
    nets = VertexNetworks.init(4, 5, 6)
    with pytest.raises(ValueError, match=r"X must have shape \(N, B, D\) = \(4, B, 5\)"):
        nets(torch.zeros(3, 2, 5))
    with pytest.raises(ValueError, match=r"Y must have shape \(4, 2, 3\)"):
        train_step(nets, adamw(nets.parameters()), torch.zeros(4, 2, 5), torch.zeros(4, 3, 3))
    X, Y = torch.zeros(4, 10, 5), torch.zeros(4, 10, 3)
    with pytest.raises(ValueError, match="X must have shape"):
        train_networks(nets, X[..., :4], Y, [0, 1], [2])
    with pytest.raises(ValueError, match="Y must have shape"):
        train_networks(nets, X, Y[:, :5], [0, 1], [2])
    with pytest.raises(ValueError, match="val_rows must be non-empty indices into the 10 faces"):
        train_networks(nets, X, Y, [0, 1], [])
    with pytest.raises(ValueError, match="train_rows must be non-empty indices"):
        train_networks(nets, X, Y, [0, 10], [2])
    with pytest.raises(ValueError, match="early_stopping must be one of"):
        train_networks(nets, X, Y, [0, 1], [2], early_stopping="never")
    with pytest.raises(ValueError, match="tol must be in"):
        train_networks(nets, X, Y, [0, 1], [2], tol=1.0)
    with pytest.raises(ValueError, match=r"target_scale must have shape \(4,\)"):
        train_networks(nets, X, Y, [0, 1], [2], target_scale=torch.ones(3))
