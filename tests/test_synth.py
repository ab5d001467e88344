import numpy as np
import pytest
import trimesh

from dualface_lite import synth
from dualface_lite.model import IBUG_JAW


@pytest.fixture(scope="module")
def subject(model):
    return synth.make_subject(3, "neutral", model=model)


def test_subject_types_and_shapes(subject, model):
    s = subject
    assert s.image.shape == (224, 224, 3) and s.image.dtype == np.uint8
    assert s.landmarks.shape == (68, 2) and s.landmarks.dtype == np.float32
    assert s.vertices.shape == (model.n_vertices, 3) and s.vertices.dtype == np.float32
    assert isinstance(s.scan, trimesh.Trimesh) and len(s.scan.faces) == pytest.approx(47930, rel=0.1)
    assert s.visible.shape == (model.n_vertices,) and s.visible.mean() == pytest.approx(0.877, rel=0.1)
    assert all(abs(a) <= 30.0 + 1e-9 for a in s.pose[:1])


# the largest vertex distance (mm) between subjects 11 and 12, as measured
OTHER_SEED_DISTANCE = {"neutral": 13.28, "expression": 27.24, "illumination": 32.80}


@pytest.mark.parametrize("condition", synth.CONDITIONS)
def test_same_seed_same_subject(model, condition):
    a = synth.make_subject(11, condition, model=model)
    b = synth.make_subject(11, condition, model=model)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_array_equal(a.scan.vertices, b.scan.vertices)
    c = synth.make_subject(12, condition, model=model)
    assert np.abs(c.vertices - a.vertices).max() == pytest.approx(OTHER_SEED_DISTANCE[condition], rel=0.1)


def test_conditions(model):
    n = synth.make_subject(5, "neutral", model=model, with_scan=False)
    e = synth.make_subject(5, "expression", model=model, with_scan=False)
    i = synth.make_subject(5, "illumination", model=model, with_scan=False)
    assert np.all(n.expr == 0) and np.all(i.expr == 0) and e.expr.max() == pytest.approx(1.039, rel=0.1)
    # the illumination condition has a dim ambient term and a strong directional one: measured ambient
    # 1.643 against 2.229, the face's pixels' spread 1.569x the neutral photo's
    amb = lambda s: s.lighting.sh[0].mean()
    assert amb(i) / amb(n) == pytest.approx(0.737, rel=0.1)
    contrast = i.image[i.depth < np.inf].std() / n.image[n.depth < np.inf].std()
    assert contrast == pytest.approx(1.569, rel=0.1)


def test_landmarks_in_image_and_on_their_vertices(model):
    s = synth.make_subject(7, "expression", model=model, landmark_noise=0.0, with_scan=False)
    assert np.all(s.landmarks >= 0) and np.all(s.landmarks <= 223)
    proj = s.camera.project(s.vertices[s.landmark_vertices])
    np.testing.assert_allclose(s.landmarks, proj, atol=1e-3)
    noisy = synth.make_subject(7, "expression", model=model, landmark_noise=1.0, with_scan=False)
    err = np.linalg.norm(noisy.landmarks - proj, axis=1)
    # detector-like noise of 1 px per axis: the mean of a Rayleigh is 1.253 (measured over 68: 1.265)
    assert err.mean() == pytest.approx(1.265, rel=0.1)


def test_jaw_landmarks_lie_on_the_outline(model):
    jaw = IBUG_JAW
    for seed in range(4):
        s = synth.make_subject(seed, "neutral", model=model, landmark_noise=0.0, with_scan=False)
        mask = np.isfinite(s.depth)
        centre = s.landmarks[jaw].mean(0)
        ok = 0
        for p in s.landmarks[jaw]:
            d = (p - centre) / np.linalg.norm(p - centre)
            out, inn = np.round(p + 4 * d).astype(int), np.round(p - 4 * d).astype(int)
            outside = not (0 <= out[0] < 224 and 0 <= out[1] < 224) or not mask[out[1], out[0]]
            ok += outside and mask[inn[1], inn[0]]
        assert ok >= 15, f"seed {seed}: only {ok} of 16 jaw points on the outline"     # measured 16 of 16
    # the jaw vertices move with the pose: turned faces use other vertices than the frontal defaults
    s = synth.make_subject(0, "neutral", model=model, with_scan=False)
    assert abs(s.pose[0]) > 10 and np.any(s.landmark_vertices[jaw] != model.ibug68[jaw])


def test_scan_lies_on_the_true_surface(model):
    s = synth.make_subject(2, "neutral", model=model, scan_noise=0.0)
    true = trimesh.Trimesh(s.vertices, model.triangles, process=False)
    _, dist, _ = trimesh.proximity.closest_point(true, s.scan.vertices[::7])
    assert dist.max() < 1e-4                      # float32 rounding (measured 3.8e-5 mm)
    noisy = synth.make_subject(2, "neutral", model=model, scan_noise=0.3)
    _, dist, _ = trimesh.proximity.closest_point(true, noisy.scan.vertices[::7])
    # measured: median 0.1369 mm, 99th percentile 0.632 mm
    assert np.median(dist) == pytest.approx(0.1369, rel=0.1)
    assert np.percentile(dist, 99) == pytest.approx(0.632, rel=0.1)
    # the default noise (0.2 mm): two thirds of that, measured median 0.0900 mm
    dflt = synth.make_subject(2, "neutral", model=model)
    _, dist, _ = trimesh.proximity.closest_point(true, dflt.scan.vertices[::7])
    assert np.median(dist) == pytest.approx(0.0900, rel=0.1)
    # about 1 mm between neighbouring scan points (a grid's sides and diagonals: median 1.332 mm),
    # finer on request (0.669 mm, 4.03x the points)
    edge = s.scan.edges_unique_length
    assert np.median(edge) == pytest.approx(1.332, rel=0.1)
    fine = synth.make_subject(2, "neutral", model=model, scan_spacing=0.5, scan_noise=0.0)
    assert np.median(fine.scan.edges_unique_length) == pytest.approx(0.669, rel=0.1)
    assert len(fine.scan.vertices) / len(s.scan.vertices) == pytest.approx(4.03, rel=0.1)


def test_scan_has_holes_and_sits_in_the_camera(model):
    s = synth.make_subject(4, "neutral", model=model, scan_holes=0, scan_noise=0.0)
    h = synth.make_subject(4, "neutral", model=model, scan_holes=4, scan_noise=0.0)
    assert len(s.scan.vertices) - len(h.scan.vertices) == pytest.approx(804, rel=0.1)    # measured 804
    # scan_transform takes the scan into the photo camera's view frame: it projects onto the face
    T = s.scan_transform
    view = s.scan.vertices @ T[:3, :3].T + T[:3, 3]
    uv = s.camera.project_view(view)
    inside = (uv >= 0).all(1) & (uv < 223).all(1)
    iu = np.round(uv[inside]).astype(int)
    assert np.isfinite(s.depth[iu[:, 1], iu[:, 0]]).mean() > 0.97     # measured 0.9970


def test_population_differs_from_the_prior(model):
    D = synth.population_modes(model)
    assert D.shape == (synth.N_MODES, model.n_vertices, 3)
    U = model.basis.astype(np.float64)
    for d in D:  # outside the PCA span
        v = d.reshape(-1).astype(np.float64)
        assert np.linalg.norm(U.T @ v) < 1e-3 * np.linalg.norm(v)
        assert np.linalg.norm(d, axis=1).max() == pytest.approx(1.0, rel=1e-4)
    pop = synth.Population()
    subjects = [synth.make_subject(k, "neutral", model=model, with_scan=False) for k in range(40)]
    alphas = np.stack([s.alpha for s in subjects])
    shift = pop.shift_vector(model.n_components)
    # the population mean sits on the shifted mean, not at 0
    # (measured 0.552 of the shift away over 40 people)
    assert np.linalg.norm(alphas.mean(0) - shift) / np.linalg.norm(shift) == pytest.approx(0.552, rel=0.1)
    # one mode is tied to skin tone (measured correlation 0.990)
    tones = np.array([s.tone for s in subjects])
    modes = np.stack([s.modes for s in subjects])
    assert np.corrcoef(tones, modes[:, pop.tone_mode])[0, 1] > 0.89
    # the personal detail has the requested size and lies outside the span too
    det = subjects[0].detail.reshape(-1).astype(np.float64)
    assert np.sqrt((subjects[0].detail ** 2).sum(1).mean()) == pytest.approx(pop.detail_rms, rel=1e-3)
    assert np.linalg.norm(U.T @ det) < 1e-3 * np.linalg.norm(det)


def test_prior_population_is_the_model(model):
    s = synth.make_subject(9, "neutral", model=model, population=synth.Population.prior(), with_scan=False)
    np.testing.assert_allclose(s.vertices, model.shape(s.alpha, s.expr), atol=1e-4)


def test_bad_inputs(model):
    with pytest.raises(ValueError, match="condition"):
        synth.make_subject(0, "smiling", model=model)
    with pytest.raises(ValueError, match="seed"):
        synth.make_subject(-1, model=model)
    with pytest.raises(ValueError, match="image_size"):
        synth.make_subject(0, model=model, image_size=8)
    with pytest.raises(ValueError, match="spacing"):
        synth.make_subject(0, model=model, scan_spacing=0)


def test_skin_tone_carries_the_mid_face_mode(model):
    """The default population ties the broad mid-face mode to skin tone (what colour can tell the MRF
    prior of chapter 4); with tone_gain = 0 the link is gone."""
    assert synth.MODE_NAMES[synth.Population().tone_mode] == "mid-face"

    def link(pop):
        subs = [synth.make_subject(k, "neutral", model=model, population=pop, with_scan=False) for k in range(30)]
        coef = np.array([s.modes[pop.tone_mode] for s in subs])
        bright = np.array([s.albedo.mean() for s in subs])
        return np.corrcoef(coef, bright)[0, 1], coef

    r, coef = link(synth.Population())
    assert r > 0.9, r                                                   # measured 0.991
    assert coef.max() - coef.min() == pytest.approx(11.29, rel=0.1)     # mm between the darkest and lightest
    r0, _ = link(synth.Population(tone_gain=0.0))
    assert r0 == pytest.approx(-0.294, abs=0.03), r0                    # measured -0.294 (30 people)


def test_population_checks_its_settings():
    with pytest.raises(ValueError, match="mode_mean"):
        synth.Population(mode_mean=(1.0, 2.0))
    with pytest.raises(ValueError, match="mode_std"):
        synth.Population(mode_std=(1.0,) * (synth.N_MODES + 1))
    with pytest.raises(ValueError, match="tone_mode"):
        synth.Population(tone_mode=synth.N_MODES)
    with pytest.raises(ValueError, match="size must be a positive number"):
        synth.Population(size=0.0)
    assert synth.Population.prior().tone_gain == 0.0


def test_population_size_scales_the_faces(model):
    """Population.size: the same people, every face scaled about the model's origin."""
    a = synth.make_subject(11, "expression", model=model, with_scan=False)
    b = synth.make_subject(11, "expression", model=model, population=synth.Population(size=1.1), with_scan=False)
    np.testing.assert_allclose(b.vertices, 1.1 * a.vertices, rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(b.alpha, a.alpha)
    # a larger face in the photo: measured 1.0896x as wide
    assert np.ptp(b.landmarks[:, 0]) / np.ptp(a.landmarks[:, 0]) - 1.0 == pytest.approx(0.0896, rel=0.1)


def test_draws_of_a_photo_are_the_subjects(model):
    """make_subject and Lm2Vertex's training data draw cameras and expressions in one place."""
    rng = np.random.default_rng(3)
    cams = [synth.draw_camera(rng, 224) for _ in range(200)]
    yaw, pitch, roll = np.array([c.angles for c in cams]).T
    assert np.abs(yaw).max() <= 30 and np.abs(pitch).max() <= 10 and np.abs(roll).max() <= 6
    assert np.abs(yaw).max() > 27 and np.ptp([c.focal for c in cams]) > 0       # measured 29.99 deg
    assert all(np.all(np.abs(c.center - 111.5) <= 0.03 * 224 + 1e-9) for c in cams)
    e = np.array([synth.draw_expression(rng, model.n_expressions) for _ in range(200)])
    k = (e > 0).sum(1)
    assert set(k) == {1, 2} and e.max() <= 1.5 and e[k == 1].max(1).min() >= 0.6
    s = synth.make_subject(4, "expression", model=model, with_scan=False)
    assert s.expr.max() > 0 and (s.expr > 0).sum() <= 2


def test_jaw_outline_is_the_silhouette_along_rays(model):
    from dualface_lite.fitting import silhouette_along_rays

    s = synth.make_subject(seed=3, condition="neutral", model=model, with_scan=False)
    through = s.camera.project(s.vertices[model.ibug68[IBUG_JAW]])
    idx, found = silhouette_along_rays(model, s.vertices, s.camera, through, wedge_deg=4.0)
    assert found.all()
    assert np.array_equal(synth.jaw_outline(model, s.vertices, s.camera), idx)
    assert np.array_equal(s.landmark_vertices[IBUG_JAW], idx)


def test_capture_and_photo_streams(model):
    """A person's captures share the identity and get their own expression and scan; the photos of a
    capture share the surface and get their own camera, light and background (FRGC's layout)."""
    kw = dict(model=model, with_scan=False)
    base = synth.make_subject(7, "expression", **kw)
    assert (base.capture, base.photo) == (0, 0)
    c1 = synth.make_subject(7, "expression", capture=1, **kw)
    p1 = synth.make_subject(7, "expression", photo=1, **kw)
    # the same person: identity and albedo shared; capture 1 has its own expression
    assert np.array_equal(c1.alpha, base.alpha) and np.array_equal(c1.albedo, base.albedo)
    assert not np.allclose(c1.expr, base.expr)
    # photo 1 of capture 0: the same surface, another camera and photo
    assert np.array_equal(p1.vertices, base.vertices) and not np.allclose(p1.camera.R, base.camera.R)
    assert not np.array_equal(p1.image, base.image)
    # a neutral person's captures share the surface (no expression), and get their own scans
    n0 = synth.make_subject(7, "neutral", model=model)
    n1 = synth.make_subject(7, "neutral", model=model, capture=1)
    assert np.array_equal(n0.vertices, n1.vertices) and len(n0.scan.vertices) != len(n1.scan.vertices)
    assert synth.make_subject(7, "neutral", model=model, photo=1).scan is None      # FRGC: one registered photo
    person = synth.make_person(7, "neutral", model=model)
    assert np.array_equal(synth.make_subject(7, "neutral", model=model, capture=1, person=person).image, n1.image)
    with pytest.raises(ValueError, match="person"):
        synth.make_subject(8, "neutral", model=model, person=person)
    with pytest.raises(ValueError, match="capture"):
        synth.make_subject(7, "neutral", model=model, capture=-1)


def test_appearance_settings_change_only_the_albedo(model):
    """Population.photo_like: the same person, camera, landmarks and surface; only the colours differ.
    The default population draws no appearance at all (its people are those of every built dataset)."""
    a = synth.make_subject(3, "neutral", model=model, with_scan=False)
    b = synth.make_subject(3, "neutral", model=model, population=synth.Population.photo_like(), with_scan=False)
    np.testing.assert_array_equal(b.vertices, a.vertices)
    np.testing.assert_array_equal(b.landmarks, a.landmarks)
    np.testing.assert_array_equal(b.camera.R, a.camera.R)
    assert np.abs(b.albedo - a.albedo).max() > 0.3 and np.abs(b.image.astype(int) - a.image).max() > 50


def test_each_appearance_setting_paints_its_own_region(model):
    """Hair only above the brows, stubble only below the nose and off the lips (the vertices skin_albedo
    paints more than half lip), sclera only at the eyes, and the speckle as strong as asked (hair and
    stubble at 1 are on everyone)."""
    mean, lm = model.mean, model.mean[model.ibug68]
    brow, nose, eyes = lm[17:27, 1].mean(), lm[33, 1], lm[36:48].mean(0)
    eye_region = np.abs(mean[:, 1] - eyes[1]) < 6
    lips = np.exp(-((mean[:, None] - lm[None, 48:68]) ** 2).sum(-1).min(1) / (2 * 3.0**2)) > 0.5
    gains = []
    for seed in range(4):
        a = synth.make_person(seed, "expression", model=model)

        def change(**setting):
            p = synth.make_person(seed, "expression", model=model, population=synth.Population(**setting))
            return p.albedo - a.albedo

        hair, stubble, sclera = change(hair=1.0), change(stubble=1.0), change(sclera=1.0)
        assert np.abs(hair[mean[:, 1] < brow]).max() < 1e-3 < np.abs(hair[mean[:, 1] > brow + 45]).mean()
        assert np.abs(stubble[mean[:, 1] > nose + 15]).max() < 1e-3 < np.abs(stubble[mean[:, 1] < nose - 15]).mean()
        assert np.abs(stubble[lips]).max() == 0                         # no stubble on the lips
        assert np.abs(sclera[np.abs(mean[:, 1] - eyes[1]) > 15]).max() == 0
        gains.append(sclera.mean(1)[eye_region].max())                 # whiter eyes
        speckle = synth.make_person(seed, "expression", model=model, population=synth.Population(skin_texture=0.05))
        assert np.std(speckle.albedo / a.albedo - 1) == pytest.approx(0.05, rel=0.1)   # measured 0.048-0.051
    assert min(gains) > 0.12          # measured 0.14-0.39 on these people (the darker the skin, the more)


def test_appearance_shares_and_checks(model):
    """hair and stubble are the shares of people who have them (photo_like's 0.7 and 0.35 on 24 people:
    binomial, within 3 sd; the complementary share would lie 4 sd away), and every appearance setting is a
    number in [0, 1]."""
    base = [synth.make_person(s, "neutral", model=model).albedo for s in range(24)]
    for name, share in (("hair", 0.7), ("stubble", 0.35)):
        pop = synth.Population(**{name: share})
        has = [np.abs(synth.make_person(s, "neutral", model=model, population=pop).albedo - base[s]).max() > 0
               for s in range(24)]
        assert abs(sum(has) - 24 * share) <= 3 * np.sqrt(24 * share * (1 - share))
    albedo = synth.make_person(0, "neutral", model=model).albedo
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="albedo must have shape"):
        synth.appearance_features(model, albedo[:10], synth.Population.photo_like(), rng)
    with pytest.raises(ValueError, match="population must be a synth.Population"):
        synth.appearance_features(model, albedo, {"hair": 1.0}, rng)
    for name in synth.Population.APPEARANCE:
        for bad in (-0.1, 1.5, True, "1"):
            with pytest.raises(ValueError, match=f"{name} must be a number in"):
                synth.Population(**{name: bad})
