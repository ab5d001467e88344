"""Optimal-step NICP (dualface_lite.registration): recovers known deformations, honours
landmarks, ignores the target's vertex order, copes with holes, rejects bad input."""
import numpy as np
import pytest
import trimesh

from dualface_lite.camera import rotation_matrix
from dualface_lite.groundtruth import scan_landmark_ids
from dualface_lite.metrics import rigid_align
from dualface_lite.registration import NICPResult, closest_points_on_triangles, nicp
from dualface_lite.render import vertex_normals
from dualface_lite.synth import make_subject, smooth_field


@pytest.fixture(scope="module")
def face(model):
    """The mean face as a mesh, and its 50 fixed landmark vertices."""
    V = model.mean.astype(np.float64)
    return trimesh.Trimesh(V, model.triangles, process=False), model.ibug68[scan_landmark_ids(model)]


@pytest.fixture(scope="module")
def deformed(model, face):
    """The mean face bent by a smooth bump field along its normals, then rotated and moved."""
    src, _ = face
    V = src.vertices
    rng = np.random.default_rng(0)
    n = vertex_normals(V, model.triangles).astype(np.float64)
    bumps = smooth_field(V, V[rng.choice(len(V), 6, replace=False)], rng.uniform(-4, 4, 6), 25.0)
    Vd = (V + bumps[:, None] * n) @ rotation_matrix(4, -3, 2).T + np.array([2.0, -3.0, 1.5])
    return Vd


def test_recovers_smooth_deformation(face, deformed):
    src, idx = face
    target = trimesh.Trimesh(deformed, src.faces, process=False)
    before = np.linalg.norm(src.vertices - deformed, axis=1).mean()
    out = nicp(src, target, idx, deformed[idx])
    assert out.shape == src.vertices.shape and out.dtype == np.float32
    err = np.linalg.norm(out - deformed, axis=1)
    # measured: 6.587 mm apart before, 0.4834 mm after (0.0734 of it); median distance to the target 0.0058 mm
    assert before == pytest.approx(6.587, rel=0.1)
    assert err.mean() == pytest.approx(0.4834, rel=0.1) and err.mean() / before < 0.081
    # on the surface: the registered vertices lie on the target
    _, d, _ = trimesh.proximity.closest_point(target, out)
    assert np.median(d) < 0.0064


def test_rigid_motion_is_recovered_exactly_with_landmarks(face):
    src, idx = face
    V = src.vertices
    Vd = V @ rotation_matrix(10, 5, -3).T + np.array([5.0, -2.0, 8.0])
    out = nicp(src, trimesh.Trimesh(Vd, src.faces, process=False), idx, Vd[idx])
    assert np.linalg.norm(out - Vd, axis=1).max() < 1e-4        # float32 rounding (measured 5.2e-6 mm)


def test_without_landmarks_still_registers(face, deformed):
    src, _ = face
    target = trimesh.Trimesh(deformed, src.faces, process=False)
    out = nicp(src, target)
    before = np.linalg.norm(src.vertices - deformed, axis=1).mean()
    # measured: 2.259 mm (0.343 of the 6.587 mm before), median distance to the target 0.0184 mm
    assert np.linalg.norm(out - deformed, axis=1).mean() == pytest.approx(2.259, rel=0.1)
    assert np.linalg.norm(out - deformed, axis=1).mean() / before < 0.38
    _, d, _ = trimesh.proximity.closest_point(target, out)
    assert np.median(d) < 0.0203


def test_landmarks_are_honoured(face):
    """Target = the source itself, but five landmarks ask to slide 3 mm along the face."""
    src, idx = face
    V = src.vertices
    lm = idx[[13, 19, 22, 31, 37]]
    goal = V[lm] + np.array([0.0, 3.0, 0.0])  # mostly tangential on the front of the face
    free = nicp(src, src, lm, goal, landmark_weights=0.0, rigid_init=False)
    held = nicp(src, src, lm, goal, landmark_weights=20.0, rigid_init=False)
    # without weight the face stays where it is (3 mm from the goals); with it they are reached (measured
    # 0.00425 mm off)
    assert np.linalg.norm(free[lm] - goal, axis=1).mean() == pytest.approx(3.0, rel=1e-3)
    assert np.linalg.norm(held[lm] - goal, axis=1).mean() < 0.0047
    # the default weight (5) pulls less hard: measured 0.0903 mm off (about 1 / weight^2)
    dflt = nicp(src, src, lm, goal, rigid_init=False)
    assert np.linalg.norm(dflt[lm] - goal, axis=1).mean() == pytest.approx(0.0903, rel=0.1)


def test_target_vertex_order_does_not_matter(face, deformed):
    src, idx = face
    rng = np.random.default_rng(3)
    perm = rng.permutation(len(deformed))            # new vertex k = old vertex perm[k]
    inv = np.argsort(perm)
    faces = inv[src.faces][rng.permutation(len(src.faces))]
    a = nicp(src, trimesh.Trimesh(deformed, src.faces, process=False), idx, deformed[idx])
    b = nicp(src, trimesh.Trimesh(deformed[perm], faces, process=False), idx, deformed[idx])
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_scan_with_holes_registers(model):
    """A synthetic range scan (noise, 3 holes, only the side the scanner sees)."""
    s = make_subject(seed=4, condition="neutral", model=model)
    idx = model.ibug68[scan_landmark_ids(model)]
    R, t, _ = rigid_align(model.mean[idx], s.vertices[idx])
    S0 = model.mean @ R.T + t                          # the mean face, rigidly aligned
    res = nicp(model.to_trimesh(S0), s.scan, idx, s.vertices[idx], record=True)
    assert isinstance(res, NICPResult)
    _, true_d, _ = trimesh.proximity.closest_point(s.scan, s.vertices)
    covered = true_d < 2.0                             # vertices with scan data under them
    assert covered.mean() == pytest.approx(0.862, rel=0.1)            # measured 0.862
    before = np.linalg.norm(S0 - s.vertices, axis=1)[covered].mean()
    after = np.linalg.norm(res.vertices - s.vertices, axis=1)[covered].mean()
    # measured: 5.170 -> 1.554 mm (ratio 0.3006), surface distance 0.2167 mm; bounds 10% either side
    assert before == pytest.approx(5.170, rel=0.1)
    assert after == pytest.approx(1.554, rel=0.1) and after / before == pytest.approx(0.3006, rel=0.1)
    _, d, _ = trimesh.proximity.closest_point(s.scan, res.vertices)
    assert d[covered].mean() == pytest.approx(0.2167, rel=0.1)
    # vertices off the scan were not matched (border rejection) and stayed in one piece
    assert not res.matched[~covered & (true_d > 10)].any()
    assert np.isfinite(res.vertices).all()


def test_border_rejection_keeps_unscanned_parts_in_place(face):
    """Target: the right half of the face only. The exact answer is the identity;
    without border rejection the left half is dragged onto the cut."""
    src, idx = face
    keep = src.vertices[src.faces].mean(1)[:, 0] < 5.0
    half = trimesh.Trimesh(src.vertices, src.faces[keep], process=False)
    half.remove_unreferenced_vertices()
    lm = idx[src.vertices[idx, 0] < 0]
    kw = dict(reject_distance=40.0, rigid_init=False)
    good = nicp(src, half, lm, src.vertices[lm], **kw)
    bad = nicp(src, half, lm, src.vertices[lm], reject_boundary=False, **kw)
    off = src.vertices[:, 0] > 15.0
    assert np.linalg.norm(good - src.vertices, axis=1)[off].mean() < 1e-4          # measured 0.0
    assert np.linalg.norm(bad - src.vertices, axis=1)[off].mean() == pytest.approx(44.99, rel=0.1)


def _grid(x0, x1, y0, y1, step):
    """A flat square grid (z = 0) from (x0, y0) to (x1, y1), two triangles per cell."""
    xs, ys = np.arange(x0, x1 + step / 2, step), np.arange(y0, y1 + step / 2, step)
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    k = (np.arange(len(xs) - 1)[:, None] * len(ys) + np.arange(len(ys) - 1)[None, :]).ravel()
    F = np.r_[np.c_[k, k + len(ys), k + len(ys) + 1], np.c_[k, k + len(ys) + 1, k + 1]]
    return np.c_[X.ravel(), Y.ravel(), np.zeros(X.size)], F


def test_matches_farther_than_10_mm_are_rejected_by_default():
    """Source: a flat grid (x, y in 0..100 mm); target: the tilted plane z = 5 + 0.1 x, larger than
    the source, so the distance of each source vertex is known, (5 + 0.1 x) / sqrt(1.01): 4.98 mm at
    x = 0 to 14.93 mm at x = 100. One closest-point round: the vertices within 10 mm are matched, the
    others rejected (26 of the 51 columns: x <= 50.5)."""
    src = _grid(0, 100, 0, 100, 2.0)
    tV, tF = _grid(-50, 150, -50, 150, 5.0)
    tV[:, 2] = 5.0 + 0.1 * tV[:, 0]
    dist = (5.0 + 0.1 * src[0][:, 0]) / np.sqrt(1.01)
    res = nicp(src, (tV, tF), stiffness=(10.0,), max_iter_per_step=1, record=True)
    np.testing.assert_array_equal(res.matched, dist <= 10.0)
    assert res.steps[0].matched_fraction == pytest.approx(26 / 51, abs=1e-12)      # measured 0.5098
    # without a distance limit every vertex is matched: nothing else (border, normals) rejected them
    assert nicp(src, (tV, tF), stiffness=(10.0,), max_iter_per_step=1, record=True,
                reject_distance=None).matched.all()


def test_record_gives_each_step(face, deformed):
    src, idx = face
    target = trimesh.Trimesh(deformed, src.faces, process=False)
    stiffness = (10.0, 1.0, 0.3)
    res = nicp(src, target, idx, deformed[idx], stiffness=stiffness, record=True)
    plain = nicp(src, target, idx, deformed[idx], stiffness=stiffness)
    assert [s.stiffness for s in res.steps] == list(stiffness)
    assert all(1 <= s.iterations <= 5 and 0 < s.matched_fraction <= 1 for s in res.steps)
    # measured: 96.7, 96.4, 96.6 % of the vertices matched
    np.testing.assert_allclose([s.matched_fraction for s in res.steps], [0.967, 0.964, 0.966], rtol=0.03)
    np.testing.assert_array_equal(res.vertices, plain)
    np.testing.assert_array_equal(np.asarray(res), plain)
    np.testing.assert_array_equal(res.steps[-1].vertices, plain)
    np.testing.assert_allclose(res.initial, src.vertices, atol=1e-4)
    # one solve per round; a factorisation at least once per step, at most once per solve
    assert res.n_solves == sum(s.iterations for s in res.steps)
    assert len(stiffness) <= res.n_factorizations <= res.n_solves
    # the fit to the surface improves step by step: measured 0.416, 0.0554, 0.0520 mm
    dists = [s.mean_distance for s in res.steps]
    assert np.all(np.diff(dists) < 0), dists
    np.testing.assert_allclose(dists, [0.416, 0.0554, 0.0520], rtol=0.1)


def test_flipped_target_winding_is_handled(face, deformed):
    src, idx = face
    target = trimesh.Trimesh(deformed, src.faces, process=False)
    flipped = trimesh.Trimesh(deformed, src.faces[:, ::-1], process=False)
    a = nicp(src, target, idx, deformed[idx])
    res = nicp(src, flipped, idx, deformed[idx], record=True)
    assert res.flipped_target_normals
    np.testing.assert_allclose(a, res.vertices, atol=1e-3)


def test_accepts_vertices_faces_pairs(face, deformed):
    src, idx = face
    a = nicp(src, trimesh.Trimesh(deformed, src.faces, process=False), idx, deformed[idx], stiffness=(5.0, 1.0))
    b = nicp((src.vertices, src.faces), (deformed, src.faces), idx, deformed[idx], stiffness=(5.0, 1.0))
    np.testing.assert_array_equal(a, b)


def test_closest_points_on_triangles_match_trimesh():
    rng = np.random.default_rng(7)
    tri = rng.normal(size=(500, 3, 3))
    p = rng.normal(size=(500, 3)) * 2
    q, bary = closest_points_on_triangles(p, tri[:, 0], tri[:, 1], tri[:, 2])
    ref = trimesh.triangles.closest_point(tri, p)
    np.testing.assert_allclose(np.linalg.norm(q - p, axis=1), np.linalg.norm(ref - p, axis=1), atol=1e-9)
    np.testing.assert_allclose(q, ref, atol=1e-7)
    np.testing.assert_allclose(bary.sum(1), 1.0)
    assert (bary >= -1e-12).all()
    # a degenerate triangle gives a finite answer
    q, _ = closest_points_on_triangles(np.ones((1, 3)), np.zeros((1, 3)), np.zeros((1, 3)), np.zeros((1, 3)))
    assert np.isfinite(q).all()


# --------------------------------------------------------------------------- bad input

def test_bad_inputs_get_clear_errors(face):
    src, idx = face
    with pytest.raises(ValueError, match="source_mesh is empty"):
        nicp(trimesh.Trimesh(), src)
    with pytest.raises(ValueError, match="target_mesh has no faces"):
        nicp(src, trimesh.Trimesh(src.vertices, np.zeros((0, 3), int), process=False))
    bad = src.vertices.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="target_mesh vertices contains NaN"):
        nicp(src, (bad, src.faces))
    with pytest.raises(ValueError, match="source_mesh must be a trimesh"):
        nicp(np.zeros((10, 3)), src)
    with pytest.raises(ValueError, match="count mismatch: 50 source_landmarks but 49"):
        nicp(src, src, idx, src.vertices[idx[:49]])
    with pytest.raises(ValueError, match="source_landmarks must index source vertices 0..3447"):
        nicp(src, src, np.array([0, 3448]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="source_landmarks must index"):
        nicp(src, src, np.array([-1, 3]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="give both source_landmarks"):
        nicp(src, src, idx, None)
    with pytest.raises(ValueError, match="target_landmarks must have shape"):
        nicp(src, src, idx, src.vertices[idx, :2])
    with pytest.raises(ValueError, match="target_landmarks contain NaN"):
        nicp(src, src, idx[:2], np.array([[0, 0, 0], [np.nan, 0, 0]]))
    with pytest.raises(ValueError, match="stiffness values must be positive"):
        nicp(src, src, stiffness=(10, 0))
    with pytest.raises(ValueError, match="landmark_weights has 2 values but stiffness has 3"):
        nicp(src, src, stiffness=(10, 1, 0.5), landmark_weights=(1, 2))
    with pytest.raises(ValueError, match="reject_normal_deg"):
        nicp(src, src, reject_normal_deg=0)
    with pytest.raises(ValueError, match="no source vertex has an acceptable match"):
        nicp(src, (src.vertices + 500.0, src.faces))


def test_surface_distance_to_a_square():
    """Points above, beside and on a unit square made of two triangles: exact distances."""
    from dualface_lite.registration import surface_distance

    V = np.array([[0, 0, 0], [10, 0, 0], [10, 10, 0], [0, 10, 0]], float)
    F = np.array([[0, 1, 2], [0, 2, 3]])
    P = np.array([[5, 5, 3.0], [2, 7, -1.5], [13, 5, 0], [14, 14, 0], [5, 5, 0]])
    np.testing.assert_allclose(surface_distance(P, V, F), [3.0, 1.5, 3.0, np.hypot(4, 4), 0.0], atol=1e-12)
    assert np.isinf(surface_distance(P, V, np.zeros((0, 3), int))).all()
    with pytest.raises(ValueError, match="points"):
        surface_distance(np.zeros((4, 2)), V, F)
