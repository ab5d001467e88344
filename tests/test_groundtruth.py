"""The Fig. 2 step (dualface_lite.groundtruth): landmarks lifted onto the scan, the outlier
filter, NICP; the chapter's call gives the dataset's own S_hat."""
import numpy as np
import pytest

import dualface_lite as df
from dualface_lite import data, groundtruth
from dualface_lite.groundtruth import ground_truth, landmarks_on_scan, lift_landmarks, scan_landmark_ids

CFG = data.DatasetConfig(name="gt", train=data.SplitPlan(3, 3, 1, 200_000), val=data.SplitPlan(0, 0),
                         test=data.SplitPlan(3, 3, 1, 300_000))


@pytest.fixture(scope="module")
def subject(model):
    return data.subject_for(CFG, 200002, "illumination", model=model)


def test_scan_landmarks_are_the_fixed_non_jaw_ones(model):
    ids = scan_landmark_ids(model)
    assert not np.isin(ids, df.model.IBUG_JAW).any() and model.ibug_defined[ids].all()
    assert len(ids) == int(model.ibug_defined.sum()) - int(model.ibug_defined[df.model.IBUG_JAW].sum())


def test_landmarks_on_scan_lie_on_the_rays_and_the_surface(model, subject):
    s = subject
    vid = model.ibug68[scan_landmark_ids(model)]
    exact = s.camera.project(s.vertices[vid])       # noise-free pixels of the true landmark vertices
    hits = landmarks_on_scan(s.camera, exact, s.scan)
    ok = np.isfinite(hits).all(1)
    assert ok.mean() > 0.6
    # back on the landmark's ray, and within the scan's noise and spacing of the true vertex
    assert np.allclose(s.camera.project(hits[ok]), exact[ok], atol=1e-6)
    assert np.median(np.linalg.norm(hits[ok] - s.vertices[vid][ok], axis=1)) < 1.0
    far = landmarks_on_scan(s.camera, np.array([[0.0, 0.0]]), s.scan)   # the image corner: background
    assert np.isnan(far).all()
    with pytest.raises(ValueError, match="landmarks must have shape"):
        landmarks_on_scan(s.camera, exact[:, :1], s.scan)


def test_outlier_filter_drops_a_far_landmark(model, subject):
    s = subject
    fit = df.fit_landmarks(model, s.landmarks, image=s.image)
    keep_all = lift_landmarks(model, fit.vertices, s.camera, s.landmarks, s.scan, max_residual=0)
    filtered = lift_landmarks(model, fit.vertices, s.camera, s.landmarks, s.scan)
    assert np.isfinite(keep_all[:, 0]).sum() >= np.isfinite(filtered[:, 0]).sum() >= 30
    # move the nose tip's pixel onto a cheek: its hit lands far from S0's nose tip and is dropped
    ids = scan_landmark_ids(model)
    r = int(np.flatnonzero(ids == 30)[0])                       # iBUG 31, the nose tip
    cheek = 0.5 * (s.vertices[model.ibug68[30]] + s.vertices[model.contour_left[4]])
    cheek = s.vertices[np.argmin(np.linalg.norm(s.vertices - cheek, axis=1))]
    L = s.landmarks.copy()
    L[30] = s.camera.project(cheek[None])[0]
    unfiltered = lift_landmarks(model, fit.vertices, s.camera, L, s.scan, max_residual=0)
    assert np.isfinite(unfiltered[r]).all() and np.linalg.norm(unfiltered[r] - cheek) < 3.0
    assert np.isnan(lift_landmarks(model, fit.vertices, s.camera, L, s.scan)[r]).all()
    with pytest.raises(ValueError, match="max_residual"):
        lift_landmarks(model, fit.vertices, s.camera, s.landmarks, s.scan, max_residual=-1)
    with pytest.raises(ValueError, match="template"):
        lift_landmarks(model, fit.vertices[:10], s.camera, s.landmarks, s.scan)


def test_the_chapters_call_gives_the_datasets_s_hat(model, tmp_path):
    """Chapter 3 calls ground_truth with the config's settings; the dataset builder does the same."""
    folder = data.build_dataset(CFG, root=tmp_path, workers=1, progress=False, model=model)
    test = data.load_split(folder, "test")
    k = 1
    s = data.subject_for(CFG, int(test.seed[k]), test.condition_names[int(test.condition[k])], model=model)
    fit = df.fit_landmarks(model, s.landmarks, image=s.image, **CFG.fit_kwargs())
    gt = ground_truth(model, fit.vertices, s.scan, s.camera, s.landmarks, **CFG.ground_truth_kwargs(),
                      record=True)
    assert np.array_equal(fit.vertices, test.s0[k])
    assert np.array_equal(gt.s_hat, test.s_hat[k])
    assert np.array_equal(gt.scan_landmarks, test.scan_landmarks[k], equal_nan=True)
    # other settings give another S_hat: the chapter must use the dataset's
    other = ground_truth(model, fit.vertices, s.scan, s.camera, s.landmarks)
    assert gt.registration is not None and len(gt.registration.steps) == len(CFG.nicp_stiffness)
    assert gt.n_landmarks == int(np.isfinite(gt.scan_landmarks[:, 0]).sum()) >= 30
    e_hat = np.linalg.norm(gt.s_hat - s.vertices, axis=1).mean()
    e_0 = np.linalg.norm(fit.vertices - s.vertices, axis=1).mean()
    assert e_hat < 0.75 * e_0
    assert other.s_hat.shape == gt.s_hat.shape


def test_module_names(model):
    assert groundtruth.DEFAULT_LANDMARK_MAX_RESIDUAL == CFG.landmark_max_residual
