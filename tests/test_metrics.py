import numpy as np
import pytest

from dualface_lite import metrics
from dualface_lite.camera import rotation_matrix
from dualface_lite.landmarks import normalized_mean_error


def test_alignment_removes_a_rigid_motion(model, rng):
    R = rotation_matrix(23, -11, 7)
    moved = model.mean @ R.T + np.array([12.0, -40.0, 300.0])
    # unaligned: the mean distance between each vertex and its moved self
    assert metrics.mean_vertex_error(moved, model.mean, align=False) == pytest.approx(
        np.linalg.norm(moved - model.mean, axis=1).mean(), rel=1e-9)
    assert metrics.mean_vertex_error(moved, model.mean) < 1e-3
    R2, t2, c = metrics.rigid_align(moved, model.mean)
    np.testing.assert_allclose(R2, R.T, atol=1e-6)
    assert c == 1.0


def test_error_of_a_known_offset(model, rng):
    # independent noise cannot be explained by a rigid motion: the error is the noise's mean length
    d = rng.normal(0.0, 1.0, model.mean.shape)
    e = metrics.vertex_errors(model.mean + d, model.mean)
    assert e.mean() == pytest.approx(np.linalg.norm(d, axis=1).mean(), rel=0.01)
    # and moving the noisy face rigidly does not change that
    R = rotation_matrix(10, 5, -3)
    e2 = metrics.vertex_errors((model.mean + d) @ R.T + 5.0, model.mean)
    np.testing.assert_allclose(e2, e, atol=1e-6)


def test_scale_is_an_error_unless_asked(model):
    big = 1.1 * model.mean
    # the best rigid motion puts the centroids together: what is left is 0.1 x each vertex's distance
    # from the centroid (measured 5.656 mm)
    spread = np.linalg.norm(model.mean - model.mean.mean(0), axis=1).mean()
    assert metrics.mean_vertex_error(big, model.mean) == pytest.approx(0.1 * spread, rel=1e-4)
    R, t, c = metrics.rigid_align(big, model.mean, scale=True)
    assert c == pytest.approx(1 / 1.1, rel=1e-6)


def test_reflection_is_not_a_rotation(model):
    mirrored = model.mean * np.array([-1.0, 1.0, 1.0])
    R, _, _ = metrics.rigid_align(mirrored, model.mean)
    assert np.linalg.det(R) == pytest.approx(1.0)


def test_landmark_error():
    a = np.zeros((68, 2))
    b = a + np.array([3.0, 4.0])
    assert metrics.landmark_error(a, b) == pytest.approx(5.0)


def test_normalized_mean_error_by_hand():
    # 68 landmarks, outer eye corners (iBUG 37 and 46) 60 px apart; three predictions off by 5, 6 and 7 px
    gt = np.zeros((68, 2))
    gt[:, 0] = np.arange(68.0)
    gt[36], gt[45] = (10.0, 50.0), (70.0, 50.0)
    pred = gt.copy()
    pred[0] += (3.0, 4.0)        # 5 px
    pred[30] += (0.0, -6.0)      # 6 px
    pred[45] += (7.0, 0.0)       # 7 px: the prediction's eyes do not set the scale, the truth's do
    assert normalized_mean_error(pred, gt) == pytest.approx((5 + 6 + 7) / 68 / 60, rel=1e-12)
    # the interocular distance is the truth's: swapping the arguments uses the moved eye corner (67 px)
    assert normalized_mean_error(gt, pred) == pytest.approx((5 + 6 + 7) / 68 / 67, rel=1e-12)
    # scale-free: both sets twice as large, and moved, give the same figure
    assert normalized_mean_error(2 * pred + 9, 2 * gt + 9) == pytest.approx((5 + 6 + 7) / 68 / 60, rel=1e-12)
    assert normalized_mean_error(gt, gt) == 0.0
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        normalized_mean_error(pred[:67], gt[:67])


def test_bad_inputs(model):
    with pytest.raises(ValueError, match="pred"):
        metrics.mean_vertex_error(np.zeros((10, 2)), np.zeros((10, 2)))
    with pytest.raises(ValueError, match="gt"):
        metrics.mean_vertex_error(model.mean, model.mean[:-1])
    bad = model.mean.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        metrics.mean_vertex_error(bad, model.mean)
    with pytest.raises(ValueError, match="shape"):
        metrics.landmark_error(np.zeros((68, 2)), np.zeros((67, 2)))


def test_batch_alignment_matches_one_face_at_a_time(model, rng):
    faces = np.stack([model.shape(rng.standard_normal(5)) for _ in range(4)])
    moved = np.stack([f @ rotation_matrix(10 * k, -5 * k, 3).T + k * 20.0 for k, f in enumerate(faces)])
    noisy = moved + rng.normal(0, 0.5, moved.shape)
    one = [metrics.mean_vertex_error(p, g) for p, g in zip(noisy, faces)]
    np.testing.assert_allclose(metrics.mean_vertex_errors(noisy, faces), one, rtol=1e-9)
    aligned = metrics.align_batch(moved, faces)
    np.testing.assert_allclose(aligned, faces, atol=1e-6)
    # a mirror image is not a rotation: the batch alignment must not reflect
    mirrored = faces * np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(metrics.mean_vertex_errors(mirrored, faces), [26.76, 29.66, 44.58, 33.64], rtol=0.1)
    with pytest.raises(ValueError, match="same shape"):
        metrics.mean_vertex_errors(noisy, faces[:2])
    with pytest.raises(ValueError, match=r"\(M, N, 3\)"):
        metrics.align_batch(faces[0], faces[0])


def test_per_condition_means_and_table():
    values = np.array([1.0, 2.0, 3.0, 5.0, 7.0, 9.0])
    codes = np.array([0, 1, 2, 0, 1, 2])
    r = metrics.per_condition(values, codes)
    assert r == {"neutral": 3.0, "expression": 4.5, "illumination": 6.0, "all": 4.5}
    names = ["neutral", "expression", "illumination"] * 2
    assert metrics.per_condition(values, names) == r
    assert metrics.per_condition(values[:2], ["neutral", "neutral"]) == {"neutral": 1.5, "all": 1.5}
    text = metrics.condition_table({"S0": values, "S_hat": values / 2}, codes, label="method")
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["method", "neutral", "expression", "illumination", "all"]
    assert lines[2].split() == ["S0", "3.00", "4.50", "6.00", "4.50"]
    assert lines[3].split() == ["S_hat", "1.50", "2.25", "3.00", "2.25"]
    with pytest.raises(ValueError, match="codes 0..2"):
        metrics.per_condition(values, codes + 1)
    with pytest.raises(ValueError, match="not in"):
        metrics.per_condition(values[:1], ["smile"])
    with pytest.raises(ValueError, match="one per face"):
        metrics.per_condition(values[:3], codes)
    with pytest.raises(ValueError, match="at least one"):
        metrics.condition_table({}, codes)
