"""Tests of the landmark fit (paper Sec. III-B-1, eq. (4)): dualface_lite.fitting."""
import numpy as np
import pytest

from dualface_lite import fitting, metrics, synth
from dualface_lite.camera import Camera, orthographic_camera, perspective_camera, rotation_matrix
from dualface_lite.fitting import (DEFAULT_FACE_SIZE, SIGMA_L_MIN, SIGMA_L_PER_RESIDUAL, SIGMA_L_REFERENCE, Fit,
                                   estimate_camera, fit_landmarks, landmark_sigma, sample_colors, solve_shape)
from dualface_lite.model import IBUG_JAW, IBUG_NOT_JAW

PRIOR = synth.Population.prior()


def _subject(model, seed, condition="neutral", population=PRIOR, noise=0.0):
    return synth.make_subject(seed, condition, model=model, population=population, landmark_noise=noise,
                              with_scan=False)


@pytest.fixture(scope="module")
def exact_subjects(model):
    """Faces from the model's prior, no personal detail, exact landmarks; yaw from -29 to +24 deg."""
    return [_subject(model, seed) for seed in (7000, 7001, 7002, 7003)]


@pytest.fixture(scope="module")
def photo_subject(model):
    return synth.make_subject(7200, "neutral", model=model, with_scan=False)


@pytest.fixture(scope="module")
def photo_fit(model, photo_subject):
    return fit_landmarks(model, photo_subject.landmarks, photo_subject.image)


# ----------------------------------------------------------------------------- camera
@pytest.mark.parametrize("refine", [False, True])
def test_estimate_camera_is_exact_on_exact_points(model, refine):
    cam = orthographic_camera(300, 200, scale=1.7, yaw=-27.0, pitch=8.0, roll=-5.0, target=(4.0, 9.0, -30.0))
    cam.center = np.array([149.5, 99.5])
    X = model.mean[model.ibug68].astype(np.float64)
    uv = cam.project(X)
    est = estimate_camera(X, uv, 300, 200, refine=refine)
    assert isinstance(est, Camera) and est.kind == "orthographic"
    assert (est.width, est.height) == (300, 200)
    np.testing.assert_allclose(est.R, cam.R, atol=1e-9)
    assert est.focal == pytest.approx(1.7, abs=1e-9)
    np.testing.assert_allclose(est.t[:2], cam.t[:2], atol=1e-8)
    np.testing.assert_allclose(est.project(X), uv, atol=1e-8)
    np.testing.assert_allclose(est.angles, (-27.0, 8.0, -5.0), atol=1e-7)
    assert np.all(est.depth(X) > 0)          # the points lie in front of the camera


def test_estimate_camera_refine_lowers_the_reprojection_error(model, rng):
    cam = orthographic_camera(224, 224, scale=1.1, yaw=20.0, pitch=-6.0, roll=3.0)
    X = model.mean[model.ibug68].astype(np.float64)
    uv = cam.project(X) + rng.normal(0.0, 2.0, (68, 2))
    lin = estimate_camera(X, uv, 224, 224, refine=False)
    ref = estimate_camera(X, uv, 224, 224, refine=True)
    e_lin = np.linalg.norm(lin.project(X) - uv)
    e_ref = np.linalg.norm(ref.project(X) - uv)
    assert e_ref <= e_lin + 1e-9
    assert np.allclose(ref.R @ ref.R.T, np.eye(3), atol=1e-12) and np.linalg.det(ref.R) > 0
    # measured: 21.864 px against 21.874 linear; the angles off by (-0.08, -0.79, 0.16) deg
    assert max(abs(a - b) for a, b in zip(ref.angles, (20.0, -6.0, 3.0))) == pytest.approx(0.79, rel=0.1)


@pytest.mark.parametrize("X, uv, match", [
    (np.zeros((5, 2)), np.zeros((5, 2)), "points3d"),
    (np.ones((5, 3)), np.zeros((4, 2)), "same length"),
    (np.ones((3, 3)), np.zeros((3, 2)), "at least 4"),
    (np.outer(np.arange(5.0), [1.0, 2.0, 3.0]), np.zeros((5, 2)), "collinear"),
    (np.full((5, 3), np.nan), np.zeros((5, 2)), "NaN"),
])
def test_estimate_camera_rejects_bad_points(X, uv, match):
    with pytest.raises(ValueError, match=match):
        estimate_camera(X, uv, 100, 100)


# ----------------------------------------------------------------------------- eq. (4)
def test_solve_shape_satisfies_the_normal_equations(model, rng):
    cam = orthographic_camera(224, 224, scale=0.9, yaw=15.0, pitch=5.0)
    idx = model.ibug68
    X0 = model.mean[idx].astype(np.float64)
    Bp = model.linear_basis()[:, :model.n_components].reshape(-1, 3, model.n_components)[idx]
    L = cam.project(model.shape(rng.standard_normal(model.n_components))[idx]) + rng.normal(0, 1, (68, 2))
    lam, sigma_l = 0.5, 2.0
    c = solve_shape(cam, X0, Bp, L, lam, sigma_l)

    def energy(c):  # eq. (4) itself
        proj = cam.project(X0 + Bp @ c)
        return ((proj - L) ** 2).sum() / (2 * sigma_l**2) + lam * (c**2).sum()

    e0 = energy(c)
    for _ in range(5):  # the closed form is the minimum: any step raises eq. (4)
        assert energy(c + 1e-2 * rng.standard_normal(c.shape)) > e0

    def gradient(f, c, h=1e-3):  # central differences: exact for a quadratic, up to rounding
        return np.array([(f(c + h * u) - f(c - h * u)) / (2 * h) for u in np.eye(len(c))])

    # its gradient vanishes: the data term's pull and the prior's balance (a lambda off by 15% leaves a
    # gradient of 0.3 / 2.3 of the pull: measured 0.13)
    pull = gradient(lambda c: energy(c) - lam * (c**2).sum(), c)
    assert np.linalg.norm(gradient(energy, c)) <= 1e-6 * np.linalg.norm(pull)
    # only lam * sigma_l^2 matters
    np.testing.assert_allclose(solve_shape(cam, X0, Bp, L, lam * 4.0, sigma_l / 2.0), c, rtol=1e-9, atol=1e-12)
    # a larger lambda shrinks alpha (measured to 0.2255 of its norm)
    shrink = np.linalg.norm(solve_shape(cam, X0, Bp, L, 50.0, sigma_l)) / np.linalg.norm(c)
    assert shrink == pytest.approx(0.2255, rel=0.1)


def test_expression_ridge_shrinks_as_the_closed_form(model):
    """One expression blendshape, exact landmarks of the face with weight e = 1: with the blendshape's
    landmark motion a (px per unit weight) the normal equations are one number,
    (|a|^2 + 2 sigma_l^2 lam_expr) e = |a|^2, so the default ridge (lam_expr = 0.01) shrinks e by
    2 sigma_l^2 lam_expr / (|a|^2 + 2 sigma_l^2 lam_expr)."""
    cam = orthographic_camera(224, 224, scale=0.9, yaw=15.0, pitch=5.0)
    idx = model.ibug68
    X0 = model.mean[idx].astype(np.float64)
    Bp = model.linear_basis()[:, model.n_components:][:, :1].reshape(-1, 3, 1)[idx]
    L = cam.project(X0 + Bp[:, :, 0])
    a2 = ((L - cam.project(X0)) ** 2).sum()                     # the camera is linear; measured 414.4 px^2
    sigma_l = 10.0
    e = solve_shape(cam, X0, Bp, L, 0.5, sigma_l, n_expr=1)
    ridge = 2 * sigma_l**2 * 0.01
    assert 1.0 - e[0] == pytest.approx(ridge / (a2 + ridge), rel=1e-6)   # measured 0.004803
    # lam weighs the identity coefficients only
    np.testing.assert_array_equal(solve_shape(cam, X0, Bp, L, 50.0, sigma_l, n_expr=1), e)


# ----------------------------------------------------------------------------- the fit
def test_fit_recovers_exact_in_model_faces(model, exact_subjects):
    # The photo is passed: its centre is the pinhole camera's principal point, within the synthetic
    # photographer's +-3 % of the true one. Without it the fit takes the middle of the landmarks' box,
    # which can be tens of px off; under a pinhole camera that is a rotation (here mostly pitch: mean
    # error 2.09 deg, max 3.61 deg without the photo, against 1.62 / 2.11 with it; the shape barely moves).
    # Measured (defaults, sigma_l=0.5): vertex error 1.40 / 2.60 / 1.75 / 1.52 mm (mean 1.82), 0.365 of the
    # mean face's on average (0.39 / 0.57 / 0.25 / 0.32 per face); landmark error 0.50 / 0.43 / 0.41 / 0.49 px;
    # angle error (yaw, pitch, roll) mean (1.04, 1.62, 0.30) deg, max 2.11 deg. The bounds sit 10 % either side.
    errs, base, dang, lm = [], [], [], []
    for s in exact_subjects:
        f = fit_landmarks(model, s.landmarks, s.image, sigma_l=0.5)   # exact landmarks: a small sigma_L
        errs.append(metrics.mean_vertex_error(f.vertices, s.vertices))
        base.append(metrics.mean_vertex_error(model.mean, s.vertices))
        dang.append(np.abs(np.subtract(f.angles, s.camera.angles)))
        lm.append(f.landmark_error)
    errs, base, dang = np.array(errs), np.array(base), np.array(dang)
    np.testing.assert_allclose(lm, [0.504, 0.431, 0.407, 0.491], rtol=0.1)
    np.testing.assert_allclose(errs, [1.401, 2.597, 1.751, 1.515], rtol=0.1)
    assert errs.mean() / base.mean() == pytest.approx(0.365, rel=0.1), (errs, base)
    np.testing.assert_allclose(errs / base, [0.391, 0.575, 0.250, 0.315], rtol=0.1)
    np.testing.assert_allclose(dang.mean(0), [1.042, 1.617, 0.303], rtol=0.1)
    assert dang.max() == pytest.approx(2.110, rel=0.1), dang


def test_fit_degrades_gracefully_with_landmark_noise(model):
    seeds = (7100, 7101, 7102)
    errs = []
    for noise in (0.0, 1.0, 2.0, 4.0):
        subs = [_subject(model, s, noise=noise) for s in seeds]
        errs.append(np.mean([metrics.mean_vertex_error(fit_landmarks(model, s.landmarks).vertices, s.vertices)
                             for s in subs]))
    base = np.mean([metrics.mean_vertex_error(model.mean, _subject(model, s).vertices) for s in seeds])
    # measured: 3.157, 3.876, 4.132, 4.757 mm at 0, 1, 2, 4 px; the mean face 4.503 mm
    np.testing.assert_allclose(errs, [3.157, 3.876, 4.132, 4.757], rtol=0.1)
    assert base == pytest.approx(4.503, rel=0.1)
    assert np.all(np.diff(errs) > 0), errs                             # grows with the noise
    assert errs[0] < 0.77 * base, (errs, base)                         # exact: better than the mean (0.701)
    assert errs[3] - errs[0] == pytest.approx(1.600, rel=0.1), errs     # noise does hurt


# error of S0 / error of the mean face on two subjects per condition, as measured (fit_landmarks
# defaults: perspective, sigma_l estimated, face_size 1.04; the old orthographic fit with sigma_l = 2.5 px
# and no face_size gave 0.884, 0.458, 0.857); the bounds sit 10% either side of them
FIT_OVER_MEAN_FACE = {"neutral": 0.734, "expression": 0.344, "illumination": 0.579}


def test_fit_beats_the_mean_face_on_realistic_subjects(model):
    # default population (shifted identities, out-of-span modes, detail), 0.7 px noise
    for cond in synth.CONDITIONS:
        subs = [synth.make_subject(s, cond, model=model, with_scan=False) for s in (7300, 7301)]
        e = np.mean([metrics.mean_vertex_error(fit_landmarks(model, s.landmarks).vertices, s.vertices)
                     for s in subs])
        e0 = np.mean([metrics.mean_vertex_error(model.mean, s.vertices) for s in subs])
        assert e / e0 == pytest.approx(FIT_OVER_MEAN_FACE[cond], rel=0.1), (cond, e, e0)


def test_fit_fields_are_consistent(model, photo_subject, photo_fit):
    f, s = photo_fit, photo_subject
    N = model.n_vertices
    assert isinstance(f, Fit)
    assert f.vertices.shape == (N, 3) and f.vertices.dtype == np.float32
    assert f.colors.shape == (N, 3) and f.colors.dtype == np.float32
    assert f.visible.shape == (N,) and f.visible.dtype == bool
    assert f.alpha.shape == (model.n_components,) and f.alpha.dtype == np.float32
    assert f.expr.shape == (model.n_expressions,) and f.expr.dtype == np.float32
    assert f.landmark_vertices.shape == (68,) and f.landmarks_fit.shape == (68, 2)
    # S_0 is a face of the model, in its object frame, scaled by the prior face size
    assert f.scale == DEFAULT_FACE_SIZE
    np.testing.assert_allclose(f.vertices, f.scale * model.shape(f.alpha, f.expr), atol=1e-3)
    # sigma_L was estimated (the default), in px at the reference size, never below the floor
    assert np.isfinite(f.sigma_l) and f.sigma_l >= SIGMA_L_MIN
    # the fitted landmarks are the projections of the landmark vertices under the pose: a pinhole
    # camera (the default) with the photo's centre as principal point
    assert f.camera.kind == "perspective" and (f.camera.width, f.camera.height) == (224, 224)
    np.testing.assert_array_equal(f.camera.center, [111.5, 111.5])
    np.testing.assert_allclose(f.landmarks_fit, f.camera.project(f.vertices[f.landmark_vertices]), atol=1e-3)
    assert f.landmark_error == pytest.approx(np.linalg.norm(f.landmarks_fit - s.landmarks, axis=1).mean(), rel=1e-4)
    assert f.landmark_error == pytest.approx(1.355, rel=0.1)              # measured 1.355 px
    # inner landmarks keep the SFM mapping; jaw ones moved with the pose (yaw != 0)
    inner = IBUG_NOT_JAW
    np.testing.assert_array_equal(f.landmark_vertices[inner], model.ibug68[inner])
    assert np.any(f.landmark_vertices[IBUG_JAW] != model.ibug68[IBUG_JAW])
    assert np.all(f.camera.depth(f.vertices) > 0)
    assert abs(f.angles[0] - s.pose[0]) == pytest.approx(0.914, rel=0.1)  # yaw off by 0.914 deg


def test_colours_zero_where_invisible_and_right_where_visible(model, photo_subject, photo_fit):
    f, s = photo_fit, photo_subject
    assert f.visible.sum() < model.n_vertices                               # a face is seen, not all of it
    assert f.visible.mean() == pytest.approx(0.921, rel=0.1)                # measured 0.921
    assert np.all(f.colors[~f.visible] == 0.0)
    assert np.all(f.colors[f.visible].max(1) > 0.0)
    assert f.colors.min() >= 0.0 and f.colors.max() <= 1.0
    # agreement with the subject's own visibility (z-buffer of the true face)
    both = f.visible & s.visible
    assert both.sum() > 0.9 * s.visible.sum()                               # measured 0.987
    # the colour of the pixel where the TRUE vertex lies in the photo
    truth = sample_colors(s.image, s.camera.project(s.vertices), np.ones(model.n_vertices, bool))
    d = np.abs(f.colors - truth).max(1)[both]
    shuffled = np.abs(f.colors[both] - truth[np.random.default_rng(0).permutation(np.flatnonzero(both))]).max(1)
    assert np.median(d) == pytest.approx(0.01217, rel=0.1)                    # measured 0.01217
    assert np.median(d) / np.median(shuffled) == pytest.approx(0.2421, rel=0.1)  # measured 0.2421
    # RGB order: skin is redder than it is blue (measured mean colour 0.2594, 0.1825, 0.1370)
    mean_c = f.colors[f.visible].mean(0)
    assert mean_c[0] > mean_c[2]
    np.testing.assert_allclose(mean_c, [0.2594, 0.1825, 0.1370], rtol=0.1)


def test_fit_without_image(model, photo_subject, photo_fit):
    L = photo_subject.landmarks.astype(np.float64)
    f = fit_landmarks(model, L)
    assert not f.visible.any() and np.all(f.colors == 0.0)
    assert (f.camera.width, f.camera.height) == fitting.landmark_box(L)
    assert f.camera.width > L[:, 0].max() and f.camera.height > L[:, 1].max()
    # without a photo the principal point is the middle of the landmarks' box (not the box's centre)
    mid = 0.5 * (L.min(0) + L.max(0))
    np.testing.assert_allclose(f.camera.center, mid, atol=1e-12)
    # the image adds colours and the principal point (its centre), nothing else: with landmarks whose
    # box is centred on the photo, the fits agree exactly ...
    Ls = L + (np.array([111.5, 111.5]) - mid)
    np.testing.assert_allclose(fit_landmarks(model, Ls).vertices,
                               fit_landmarks(model, Ls, photo_subject.image).vertices, atol=1e-4)
    # ... and an orthographic camera does not depend on the principal point at all
    np.testing.assert_allclose(fit_landmarks(model, L, projection="orthographic").vertices,
                               fit_landmarks(model, L, photo_subject.image, projection="orthographic").vertices,
                               atol=1e-4)
    # with the photo's own landmarks (box middle 31 px from the photo's centre) the pinhole fits
    # differ a little: measured 0.0970 mm mean, 0.401 mm at most (object frame, no alignment)
    d = np.linalg.norm(f.vertices - photo_fit.vertices, axis=1)
    assert d.mean() == pytest.approx(0.0970, rel=0.1) and d.max() == pytest.approx(0.401, rel=0.1), (d.mean(), d.max())


def test_sample_colors_is_bilinear():
    img = np.zeros((4, 5, 3))
    img[..., 0] = np.arange(5)[None, :] / 10.0          # red grows with u
    img[..., 2] = np.arange(4)[:, None] / 10.0          # blue grows with v
    uv = np.array([[1.25, 2.5], [3.0, 0.0], [2.0, 2.0]])
    c = sample_colors(img, uv, np.array([True, True, False]))
    np.testing.assert_allclose(c[0], [0.125, 0.0, 0.25], atol=1e-6)
    np.testing.assert_allclose(c[1], [0.3, 0.0, 0.0], atol=1e-6)
    assert np.all(c[2] == 0.0)


# ----------------------------------------------------------------------------- bad input
def test_image_layouts_are_converted(model, photo_subject, photo_fit):
    L, img = photo_subject.landmarks, photo_subject.image
    rgba = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2)
    f = fit_landmarks(model, L, rgba)
    np.testing.assert_array_equal(f.colors, photo_fit.colors)
    f = fit_landmarks(model, L, img.astype(np.float64) / 255.0)   # float in [0, 1]
    np.testing.assert_allclose(f.colors, photo_fit.colors, atol=1e-6)
    gray = img.mean(2).astype(np.uint8)
    for g in (gray, gray[..., None]):
        f = fit_landmarks(model, L, g)
        assert f.visible.any()
        np.testing.assert_array_equal(f.colors[:, 0], f.colors[:, 1])
        np.testing.assert_array_equal(f.colors[:, 0], f.colors[:, 2])


@pytest.mark.parametrize("image, match", [
    (np.zeros((224, 224, 2), np.uint8), "image must be"),
    (np.zeros((224, 224, 3, 1), np.uint8), "image must be"),
    (np.full((224, 224, 3), 2.0), r"\[0, 1\]"),
    (np.full((224, 224, 3), np.nan), "NaN"),
    (np.zeros(224, np.uint8), "image must be"),
])
def test_bad_images_are_rejected(model, photo_subject, image, match):
    with pytest.raises(ValueError, match=match):
        fit_landmarks(model, photo_subject.landmarks, image)


def test_bad_landmarks_are_rejected(model, photo_subject):
    L, img = photo_subject.landmarks, photo_subject.image
    with pytest.raises(ValueError, match=r"landmarks must have shape \(68, 2\)"):
        fit_landmarks(model, L[:67])
    with pytest.raises(ValueError, match=r"landmarks must have shape \(68, 2\)"):
        fit_landmarks(model, L.T)
    bad = L.copy()
    bad[30, 1] = np.nan
    with pytest.raises(ValueError, match="landmarks contains NaN"):
        fit_landmarks(model, bad)
    out = L.copy()
    out[3, 0] = -3.0
    with pytest.raises(ValueError, match=r"landmarks \[3\] lie outside"):
        fit_landmarks(model, out, img)
    fit_landmarks(model, out)                      # without an image there is no frame to leave
    edge = L.copy()
    edge[3, 0] = -0.9                              # within the 0.5 px margin: accepted
    fit_landmarks(model, edge, img)


@pytest.mark.parametrize("kw, match", [
    (dict(lam=-1.0), "lam"),
    (dict(sigma_l=0.0), "sigma_l"),
    (dict(sigma_l=-2.0), "sigma_l"),
    (dict(lam=float("nan")), "lam"),
    (dict(lam_expr=-0.1), "lam_expr"),
    (dict(n_iter=0), "n_iter"),
    (dict(n_components=64), "n_components"),
    (dict(contour="nearest"), "contour"),
    (dict(jaw="glide"), "jaw"),
])
def test_bad_parameters_are_rejected(model, photo_subject, kw, match):
    with pytest.raises(ValueError, match=match):
        fit_landmarks(model, photo_subject.landmarks, **kw)


def test_fewer_components_and_no_expressions(model, photo_subject):
    f = fit_landmarks(model, photo_subject.landmarks, n_components=10, fit_expressions=False)
    assert np.all(f.alpha[10:] == 0.0) and np.any(f.alpha[:10] != 0.0)
    assert np.all(f.expr == 0.0)
    np.testing.assert_allclose(f.vertices, f.scale * model.shape(f.alpha, f.expr), atol=1e-3)
    f0 = fit_landmarks(model, photo_subject.landmarks, n_components=0, fit_expressions=False, face_size=1.0)
    np.testing.assert_allclose(f0.vertices, model.mean, atol=1e-4)      # only a pose: the mean face


@pytest.mark.parametrize("kw", [dict(projection="orthographic"), dict(focal=1000.0), dict()],
                         ids=["orthographic", "fixed-focal", "estimated-focal"])
def test_lam_times_sigma_squared_is_what_matters(model, photo_subject, kw):
    # Exact only for a given sigma_l (None estimates it) and, under the pinhole camera, a given focal
    # length: the log-normal prior on the estimated focal enters eq. (4) as
    # (log f - mu)^2 / (2 focal_spread^2) next to ||r||^2 / (2 sigma_l^2), independently of lam, so
    # (lam, sigma_l) -> (4 lam, sigma_l / 2) keeps the minimum only if focal_spread halves as well
    # (measured without it: 0.26 mm apart, focal 1528 vs 1685 px). Measured: exactly equal vertices.
    L = photo_subject.landmarks
    a = fit_landmarks(model, L, lam=0.5, sigma_l=2.0, lam_expr=0.01, **kw)
    b = fit_landmarks(model, L, lam=2.0, sigma_l=1.0, lam_expr=0.04,
                      **(kw if kw else dict(focal_spread=0.5 * fitting.DEFAULT_FOCAL_SPREAD)))
    np.testing.assert_allclose(a.vertices, b.vertices, atol=1e-4)
    assert b.camera.focal == pytest.approx(a.camera.focal, rel=1e-6)
    assert (a.sigma_l, b.sigma_l) == (2.0, 1.0)        # the given sigma_L is reported (reference size)
    c = fit_landmarks(model, L, lam=50.0, sigma_l=2.0, **kw)
    # measured 0.0438 (orthographic), 0.0430 (fixed focal), 0.0436 (estimated focal)
    assert np.linalg.norm(c.alpha) / np.linalg.norm(a.alpha) == pytest.approx(0.0435, rel=0.1)


def test_fit_is_deterministic_and_rotation_invariant_in_the_image(model, photo_subject):
    L = photo_subject.landmarks.astype(np.float64)
    a = fit_landmarks(model, L)
    np.testing.assert_array_equal(a.vertices, fit_landmarks(model, L).vertices)
    # the same landmarks turned by 10 degrees in the image: same face, roll changed by 10
    c = np.array([150.0, 150.0])
    R2 = rotation_matrix(roll=10.0)[:2, :2]
    Lr = (L - c) @ np.diag([1, -1]) @ R2.T @ np.diag([1, -1]) + c   # v points down
    b = fit_landmarks(model, Lr)
    assert metrics.mean_vertex_error(a.vertices, b.vertices) < 0.01           # measured 0.0091 mm
    assert b.angles[2] - a.angles[2] == pytest.approx(10.0, abs=0.033)         # measured 10.030 deg


def test_linear_basis_is_the_model(model, rng):
    c = rng.standard_normal(model.n_components + model.n_expressions)
    face = model.mean.reshape(-1) + model.linear_basis() @ c
    np.testing.assert_allclose(face.reshape(-1, 3), model.shape(c[:model.n_components], c[model.n_components:]),
                               atol=1e-3)
    assert model.linear_basis(np.float32).dtype == np.float32


def test_silhouette_along_rays_finds_the_outline(model):
    from dualface_lite.fitting import silhouette_along_rays

    cam = orthographic_camera(224, 224, scale=1.0, yaw=0.0)
    p = cam.project(model.mean)
    c = p.mean(0)
    through = c + np.array([[100.0, 0.0], [-100.0, 0.0], [0.0, 100.0]])   # right, left, down in the image
    idx, found = silhouette_along_rays(model, model.mean, cam, through, wedge_deg=3.0)
    assert found.all()
    assert p[idx[0], 0] > np.percentile(p[:, 0], 99) and p[idx[1], 0] < np.percentile(p[:, 0], 1)
    assert p[idx[2], 1] > np.percentile(p[:, 1], 98)
    with pytest.raises(ValueError, match="through must have shape"):
        silhouette_along_rays(model, model.mean, cam, through[:, :1])


def test_fit_record_helpers(model, photo_subject, photo_fit):
    w, h = fitting.landmark_box(photo_subject.landmarks)
    L = photo_subject.landmarks
    # the landmarks with a margin of half the face's size (its larger extent) right and below
    x, y = L.astype(np.float64).T
    half = 0.5 * max(np.ptp(x), np.ptp(y))
    assert 0 <= w - 1 - (x.max() + half) < 1 and 0 <= h - 1 - (y.max() + half) < 1, (w, h)
    vis, col = fitting.photo_colors(photo_fit.camera, photo_fit.vertices, model.triangles, photo_subject.image)
    assert np.array_equal(vis, photo_fit.visible) and np.allclose(col, photo_fit.colors)
    vis0, col0 = fitting.photo_colors(photo_fit.camera, photo_fit.vertices, model.triangles, None)
    assert not vis0.any() and not col0.any()
    again = fitting.make_fit(model, photo_fit.vertices, photo_fit.camera, photo_fit.landmark_vertices, L,
                             photo_subject.image, photo_fit.alpha, photo_fit.expr)
    assert again.landmark_error == pytest.approx(photo_fit.landmark_error, rel=1e-5)
    assert again.camera.depth(again.vertices).min() == pytest.approx(1574.0, rel=0.1)   # measured 1573.9 mm


# ----------------------------------------------------------------------------- scale, camera, face size
def _pinhole_landmarks(model, V, cam):
    """Exact landmarks of face ``V`` under the pinhole camera ``cam``: the inner ones at their SFM
    vertices, the jaw ones on the face's outline as ``cam`` sees it (as the synthetic subjects)."""
    lv = model.ibug68.astype(np.int64).copy()
    lv[IBUG_JAW] = synth.jaw_outline(model, V, cam)
    return cam.project(V[lv])


@pytest.mark.parametrize("projection", fitting.PROJECTIONS)
def test_fit_is_invariant_to_the_photos_scale(model, projection):
    # The same landmarks 4x larger (a 4x larger photo), scaled about the origin, a far point or their
    # centroid, without a photo: the same S_0, pose and sigma_L (stated at the reference size), the
    # camera's focal (px, or px/mm) 4x, landmark error 4x. Measured: exactly equal (differences ~1e-13).
    s = synth.make_subject(7200, "neutral", model=model, with_scan=False)   # 0.7 px landmark noise
    L = s.landmarks.astype(np.float64)
    a = fit_landmarks(model, L, projection=projection)
    assert a.camera.kind == projection
    for p in (np.zeros(2), np.array([-5000.0, 3000.0]), L.mean(0)):
        b = fit_landmarks(model, p + 4.0 * (L - p), projection=projection)
        assert np.abs(b.vertices - a.vertices).max() < 1e-4, p
        assert b.camera.focal == pytest.approx(4.0 * a.camera.focal, rel=1e-6), p
        np.testing.assert_allclose(b.angles, a.angles, atol=1e-6)
        assert b.sigma_l == pytest.approx(a.sigma_l, rel=1e-6)
        assert b.landmark_error == pytest.approx(4.0 * a.landmark_error, rel=1e-6)


@pytest.mark.parametrize("projection", fitting.PROJECTIONS)
def test_face_size_scales_the_face_not_the_pixels(model, photo_subject, projection):
    L = photo_subject.landmarks
    one = fit_landmarks(model, L, projection=projection, face_size=1.0)
    big = fit_landmarks(model, L, projection=projection, face_size=1.1)
    dflt = fit_landmarks(model, L, projection=projection)
    assert (one.scale, big.scale, dflt.scale) == (1.0, 1.1, DEFAULT_FACE_SIZE)
    np.testing.assert_allclose(one.vertices, model.shape(one.alpha, one.expr), atol=1e-3)
    # the fit is the same; only the face (and the camera with it) is scaled
    np.testing.assert_array_equal(big.alpha, one.alpha)
    np.testing.assert_array_equal(big.expr, one.expr)
    np.testing.assert_allclose(big.vertices, 1.1 * one.vertices, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dflt.vertices, DEFAULT_FACE_SIZE * one.vertices, rtol=1e-5, atol=1e-4)
    # no pixel moves: the same landmark fit, the same pose
    np.testing.assert_allclose(big.landmarks_fit, one.landmarks_fit, atol=1e-3)
    np.testing.assert_allclose(big.camera.project(big.vertices), one.camera.project(one.vertices), atol=1e-3)
    np.testing.assert_allclose(big.angles, one.angles, atol=1e-9)
    if projection == "perspective":    # twice as large is twice as far, same focal length
        assert big.camera.focal == pytest.approx(one.camera.focal, rel=1e-12)
        np.testing.assert_allclose(big.camera.t, 1.1 * one.camera.t, rtol=1e-12)
    else:                              # 1/g the px per mm
        assert big.camera.focal == pytest.approx(one.camera.focal / 1.1, rel=1e-12)


# the mean face under a known pinhole camera (640 x 480, 35 deg, 500 mm from the face's middle):
# (yaw, pitch) -> measured (fitted focal / true focal - 1; with the true focal the camera centre's distance
# from the true one (mm) and the vertex error (mm); the vertex error with twice the true focal (mm))
FOCAL_POSES = {(-30.0, -10.0): (0.0353, 4.367, 0.2061, 0.7758), (-15.0, 5.0): (0.0485, 4.086, 0.2151, 1.2747),
               (20.0, -5.0): (0.0407, 2.692, 0.1753, 1.1915), (30.0, 10.0): (0.0551, 4.964, 0.2251, 1.3628)}


def test_fit_recovers_the_focal_length_of_a_close_camera(model):
    # Exact landmarks of the mean face 0.5 m away. The focal prior is centred on a face 1.2 m away
    # (2.6x the true focal length), so the landmarks decide. Measured focal / true: 1.035, 1.049, 1.041,
    # 1.055; with the true focal given the camera centre is 2.7-5.0 mm from the true one and the vertex
    # error 0.18-0.23 mm, with twice the true focal 0.78-1.36 mm (and the face 2.04-2.09x as far).
    # The bounds sit 10 % either side of each pose's measured figures (FOCAL_POSES).
    V = model.shape(np.zeros(model.n_components), np.zeros(model.n_expressions)).astype(np.float64)
    for (yaw, pitch), (focal_err, eye_err, true_err, wrong_err) in FOCAL_POSES.items():
        cam = perspective_camera(640, 480, fov=35.0, distance=500.0, yaw=yaw, pitch=pitch, target=(0.0, 12.0, -45.0))
        L = _pinhole_landmarks(model, V, cam)
        f = fit_landmarks(model, L, face_size=1.0)
        assert f.camera.kind == "perspective"
        assert f.camera.focal / cam.focal - 1.0 == pytest.approx(focal_err, rel=0.1), (yaw, pitch, f.camera.focal)
        # a given focal length is kept, and with the true one the camera sits where it was
        eye = -cam.R.T @ cam.t
        g = fit_landmarks(model, L, face_size=1.0, focal=cam.focal)
        assert g.camera.focal == cam.focal
        assert np.linalg.norm(-g.camera.R.T @ g.camera.t - eye) == pytest.approx(eye_err, rel=0.1), (yaw, pitch)
        h = fit_landmarks(model, L, face_size=1.0, focal=2.0 * cam.focal)
        assert h.camera.focal == 2.0 * cam.focal
        assert np.linalg.norm(h.camera.t) == pytest.approx(2.0 * np.linalg.norm(g.camera.t), rel=0.048)
        e_true, e_wrong = (metrics.mean_vertex_error(x.vertices, V) for x in (g, h))
        assert e_true == pytest.approx(true_err, rel=0.1) and e_wrong == pytest.approx(wrong_err, rel=0.1), \
            (yaw, pitch, e_true, e_wrong)


def test_perspective_beats_orthographic_on_close_faces(model):
    # Faces of the model's prior (alpha ~ N(0, I)), exact landmarks, 40 deg lens, face_size=1.0 (the
    # faces are the model's size). At 0.4 m the nose is visibly magnified against the ears and the
    # orthographic camera cannot say so. Measured mean vertex error over these 4 faces: at 0.4 m
    # perspective 2.905 mm, orthographic 3.903 mm (ratio 0.744; over 8 faces 0.70); at 1.2 m 2.546 vs 2.617 mm
    # (ratio 0.97; 8 faces 0.94). (The focal length itself is not well recovered for these faces:
    # 0.8-1.6x the true one, the shape taking up the rest.)
    rng = np.random.default_rng(0)
    faces = []
    for _ in range(4):
        alpha = rng.standard_normal(model.n_components)
        V = model.shape(alpha, np.zeros(model.n_expressions)).astype(np.float64)
        faces.append((V, rng.uniform(-30.0, 30.0), rng.uniform(-10.0, 10.0)))
    ratio = {}
    for distance in (400.0, 1200.0):
        ep, eo = [], []
        for V, yaw, pitch in faces:
            cam = perspective_camera(640, 480, fov=40.0, distance=distance, yaw=yaw, pitch=pitch,
                                     target=(0.0, 12.0, -45.0))
            L = _pinhole_landmarks(model, V, cam)
            ep.append(metrics.mean_vertex_error(fit_landmarks(model, L, face_size=1.0).vertices, V))
            eo.append(metrics.mean_vertex_error(
                fit_landmarks(model, L, face_size=1.0, projection="orthographic").vertices, V))
        ratio[distance] = np.mean(ep) / np.mean(eo)
        if distance == 400.0:
            assert np.mean(ep) == pytest.approx(2.905, rel=0.1), ep
    assert ratio[400.0] == pytest.approx(0.744, rel=0.1), ratio
    assert abs(ratio[1200.0] - 1.0) < 0.03, ratio      # far away the two cameras are nearly alike (0.973)
    assert ratio[400.0] < ratio[1200.0] - 0.205, ratio  # the gain is the close camera's (0.229)


# ----------------------------------------------------------------------------- sigma_L
def test_landmark_sigma_is_twice_the_counted_rms_residual():
    # jaw landmarks count only across the jaw line: here the x direction
    W = np.tile(np.eye(2), (68, 1, 1))
    W[IBUG_JAW] = np.diag([1.0, 0.0])
    r = np.full((68, 2), 3.0) * np.where(np.arange(68) % 2, 1.0, -1.0)[:, None]
    r[IBUG_JAW, 1] = 100.0                      # along the jaw line: not counted
    assert landmark_sigma(r, W, 0.89) == pytest.approx(SIGMA_L_PER_RESIDUAL * 3.0, rel=1e-12)
    assert landmark_sigma(r, W, 2 * 0.89) == pytest.approx(SIGMA_L_PER_RESIDUAL * 3.0, rel=1e-12)   # px
    # the floor: SIGMA_L_MIN px at the reference size, scaled with the face
    assert landmark_sigma(0.01 * r, W, SIGMA_L_REFERENCE) == pytest.approx(SIGMA_L_MIN, rel=1e-12)
    assert landmark_sigma(0.01 * r, W, 4 * SIGMA_L_REFERENCE) == pytest.approx(4 * SIGMA_L_MIN, rel=1e-12)


def test_estimated_sigma_follows_the_landmark_noise(model):
    # Subjects of the kit's population with 0.5 and 5 px of landmark noise (photos at about the reference
    # size). Measured Fit.sigma_l (px at the reference size), seeds 7100-7102: 1.40, 1.72, 1.73 at 0.5 px;
    # 7.79, 8.05, 7.07 at 5 px (ratio 4.1-5.6); the same for both projections (it comes from the
    # orthographic start). The bounds sit 10 % either side.
    measured = {7100: (1.403, 7.788), 7101: (1.717, 8.049), 7102: (1.727, 7.074)}
    for seed, (m_lo, m_hi) in measured.items():
        lo, hi = (fit_landmarks(model, synth.make_subject(seed, "neutral", model=model, landmark_noise=n,
                                                          with_scan=False).landmarks) for n in (0.5, 5.0))
        assert lo.sigma_l >= SIGMA_L_MIN
        assert lo.sigma_l == pytest.approx(m_lo, rel=0.1), (seed, lo.sigma_l)
        assert hi.sigma_l == pytest.approx(m_hi, rel=0.1), (seed, hi.sigma_l)


# ----------------------------------------------------------------------------- more bad input
@pytest.mark.parametrize("kw, match", [
    (dict(focal=0.0), "focal must be positive"),
    (dict(focal=-500.0), "focal must be positive"),
    (dict(focal=float("nan")), "focal must be positive"),
    (dict(face_size=0.0), "face_size must be positive"),
    (dict(face_size=-1.04), "face_size must be positive"),
    (dict(projection="weak-perspective"), r"projection must be one of \('perspective', 'orthographic'\)"),
    (dict(projection=None), "projection must be one of"),
    (dict(focal_distance=0.0), "focal_distance must be positive"),
    (dict(focal_spread=-1.0), "focal_spread must be positive"),
    (dict(focal=1.0), r"focal=1 px puts the face 1 mm from the camera"),   # a focal length in mm, say
])
def test_bad_camera_parameters_are_rejected(model, photo_subject, kw, match):
    with pytest.raises(ValueError, match=match):
        fit_landmarks(model, photo_subject.landmarks, **kw)


@pytest.mark.parametrize("projection", fitting.PROJECTIONS)
def test_degenerate_landmarks_are_rejected(model, photo_subject, projection):
    L = photo_subject.landmarks.astype(np.float64)
    bad = L.copy()
    bad[40] = np.nan
    with pytest.raises(ValueError, match=r"landmarks contains NaN or infinite values \(landmarks \[40\]\)"):
        fit_landmarks(model, bad, projection=projection)
    bad[40] = (np.inf, 3.0)
    with pytest.raises(ValueError, match="landmarks contains NaN or infinite"):
        fit_landmarks(model, bad, projection=projection)
    # all 68 on one pixel, or on one line: no face, no camera
    with pytest.raises(ValueError, match="landmarks are all at one point"):
        fit_landmarks(model, np.tile(L[30], (68, 1)), projection=projection)
    with pytest.raises(ValueError, match="landmarks are all at one point"):
        fit_landmarks(model, np.tile(L[30], (68, 1)), photo_subject.image, projection=projection)
    line = np.stack([np.linspace(10, 100, 68), np.full(68, 50.0)], axis=1)
    with pytest.raises(ValueError, match="landmarks are on one line"):
        fit_landmarks(model, line, projection=projection)


def test_landmark_sigma_rejects_bad_input():
    W = np.tile(np.eye(2), (68, 1, 1))
    with pytest.raises(ValueError, match=r"residuals must have shape \(68, 2\)"):
        fitting.landmark_sigma(np.zeros((67, 2)), W, 0.9)
    with pytest.raises(ValueError, match="residuals contains NaN"):
        fitting.landmark_sigma(np.full((68, 2), np.nan), W, 0.9)
    with pytest.raises(ValueError, match=r"weights must be \(68, 2, 2\)"):
        fitting.landmark_sigma(np.zeros((68, 2)), W[:, :1], 0.9)
    with pytest.raises(ValueError, match="scale must be positive"):
        fitting.landmark_sigma(np.zeros((68, 2)), W, 0.0)
    # zero residuals are fine (a perfect first fit): the floor
    assert fitting.landmark_sigma(np.zeros((68, 2)), W, 0.89) == pytest.approx(fitting.SIGMA_L_MIN)
