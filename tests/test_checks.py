"""The shared input checks (dualface_lite.checks): what they accept, what they return, what they say."""
import numpy as np
import pytest
import trimesh

from dualface_lite import checks


def test_points_accepts_and_converts():
    P = checks.points([[1, 2, 3], [4, 5, 6]], "vertices")
    assert P.dtype == np.float64 and P.shape == (2, 3)
    assert checks.points(np.zeros((5, 2), np.float32), "uv", dim=2, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match=r"vertices must have shape \(N, 3\), got \(2, 2\)"):
        checks.points(np.zeros((2, 2)), "vertices")
    with pytest.raises(ValueError, match=r"vertices contains NaN or infinite values \(rows \[1\]\)"):
        checks.points([[0, 0, 0], [np.nan, 0, 0]], "vertices")
    with pytest.raises(ValueError, match="vertices is empty"):
        checks.points(np.zeros((0, 3)), "vertices")
    with pytest.raises(ValueError, match="needs at least 3 points"):
        checks.points(np.zeros((2, 3)), "pred", min_count=3)
    with pytest.raises(ValueError, match="4 rows"):
        checks.points(np.zeros((3, 3)), "colors", n=4)
    with pytest.raises(ValueError, match="numeric"):
        checks.points(np.array([["a", "b", "c"]]), "vertices")


def test_point_batches():
    a = checks.point_batches(np.ones((2, 5, 3)), "templates", n=5)
    assert a.shape == (2, 5, 3)
    assert checks.point_batches(np.ones((5, 3)), "templates", allow_single=True).shape == (1, 5, 3)
    with pytest.raises(ValueError, match=r"templates must have shape \(M, N, 3\)"):
        checks.point_batches(np.ones((5, 3)), "templates")
    with pytest.raises(ValueError, match="has 5 vertices, expected 4"):
        checks.point_batches(np.ones((2, 5, 3)), "templates", n=4)


def test_triangles_and_meshes():
    F = checks.triangles(np.array([[0, 1, 2], [2, 1, 3]], dtype=np.float64), 4)
    assert F.dtype == np.int64
    with pytest.raises(ValueError, match="out of range"):
        checks.triangles([[0, 1, 4]], 4)
    with pytest.raises(ValueError, match="integer"):
        checks.triangles([[0, 1, 2.5]], 4)
    with pytest.raises(ValueError, match="empty"):
        checks.triangles(np.zeros((0, 3), int), 4)
    box = trimesh.creation.box()
    V, F = checks.mesh(box, "scan")
    assert V.shape == (8, 3) and F.shape == (12, 3)
    assert np.array_equal(checks.mesh((box.vertices, box.faces))[1], F)
    with pytest.raises(ValueError, match="scan is empty"):
        checks.mesh(trimesh.Trimesh(), "scan")
    with pytest.raises(ValueError, match="scan has no faces"):
        checks.mesh((box.vertices, np.zeros((0, 3), int)), "scan")
    with pytest.raises(ValueError, match="trimesh.Trimesh or a"):
        checks.mesh("box.ply", "scan")


def test_landmarks():
    ang = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    L = 50.0 + 20.0 * np.stack([np.cos(ang), np.sin(ang)], axis=1)
    assert checks.landmarks(L, image_hw=(100, 100)).shape == (68, 2)
    assert checks.landmarks(L[None].repeat(3, 0), batch=True).shape == (3, 68, 2)
    with pytest.raises(ValueError, match=r"landmarks must have shape \(68, 2\)"):
        checks.landmarks(L[:67])
    bad = L.copy()
    bad[12, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values \(landmarks \[12\]\)"):
        checks.landmarks(bad)
    far = L.copy()
    far[3] = (120.0, 50.0)
    with pytest.raises(ValueError, match=r"landmarks \[3\] lie outside the 100 x 100 image"):
        checks.landmarks(far, image_hw=(100, 100))
    edge = L.copy()
    edge[3] = (100.0, -1.0)               # within half a pixel of the outer pixel edges
    checks.landmarks(edge, image_hw=(100, 101))
    with pytest.raises(ValueError, match="not an array of numbers"):
        checks.landmarks([["a", "b"]] * 68)
    # no area: all on one point, or on one line (also within a batch)
    with pytest.raises(ValueError, match="landmarks are all at one point"):
        checks.landmarks(np.full((68, 2), 50.0))
    line = np.stack([np.linspace(10, 90, 68), 0.5 * np.linspace(10, 90, 68)], axis=1)
    with pytest.raises(ValueError, match="landmarks are on one line"):
        checks.landmarks(line)
    with pytest.raises(ValueError, match=r"on one line \(sets \[1\]\)"):
        checks.landmarks(np.stack([L, line]), batch=True)


def test_number():
    assert checks.number("2.5", "sigma_l", positive=True) == 2.5
    assert checks.number(0, "lam") == 0.0
    for bad, kw in ((0, dict(positive=True)), (-1, {}), (np.inf, {}), ("x", {}), (True, {})):
        with pytest.raises(ValueError, match="sigma_l"):
            checks.number(bad, "sigma_l", **kw)
    with pytest.raises(ValueError, match=">= 2"):
        checks.number(1, "k", minimum=2)


def test_rgb_image_layouts():
    gray = np.full((4, 5), 255, np.uint8)
    assert checks.rgb_image(gray).shape == (4, 5, 3) and checks.rgb_image(gray).max() == 1.0
    rgba = np.zeros((4, 5, 4), np.float32)
    assert checks.rgb_image(rgba).shape == (4, 5, 3)
    assert checks.rgb_image(np.full((3, 3, 3), 51, np.int32)).max() == pytest.approx(0.2)
    with pytest.raises(ValueError, match="float images must be in"):
        checks.rgb_image(np.full((3, 3, 3), 2.0))
    with pytest.raises(ValueError, match="at least 2 x 2"):
        checks.rgb_image(np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ValueError, match="photo must be an"):
        checks.rgb_image(np.zeros((3, 3, 2)), "photo")


def test_rgb_pixels_keeps_uint8_and_agrees_with_rgb_image():
    """rgb_pixels leaves a uint8 photo as it is; its pixels / 255 are rgb_image's values bit for bit, and every
    other layout comes out as rgb_image's."""
    photo = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    px = checks.rgb_pixels(photo)
    assert px.dtype == np.uint8 and px.shape == (6, 7, 3)
    assert np.array_equal(px[2:4, 1:5].astype(np.float64) / 255.0, checks.rgb_image(photo)[2:4, 1:5])
    gray = photo[..., 0]
    assert checks.rgb_pixels(gray).dtype == np.uint8 and np.array_equal(checks.rgb_pixels(gray)[..., 2], gray)
    floats = photo / 255.0
    assert np.array_equal(checks.rgb_pixels(floats), checks.rgb_image(floats))
    with pytest.raises(ValueError, match="float images must be in"):
        checks.rgb_pixels(np.full((3, 3, 3), 2.0))
    with pytest.raises(ValueError, match="at least 2 x 2"):
        checks.rgb_pixels(np.zeros((1, 1, 3), np.uint8))


def test_rgb_uint8_is_the_8_bit_photo():
    """rgb_uint8 hands a contiguous uint8 photo back as it is (no copy); a float or grey layout becomes the
    uint8 whose / 255 is rgb_image's value to within rounding; a transposed view is made contiguous."""
    photo = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    assert checks.rgb_uint8(photo) is photo
    assert np.array_equal(checks.rgb_uint8(photo / 255.0), photo)
    assert np.array_equal(checks.rgb_uint8(photo[..., 0])[..., 1], photo[..., 0])
    turned = checks.rgb_uint8(photo.transpose(1, 0, 2))
    assert turned.flags.c_contiguous and np.array_equal(turned, photo.transpose(1, 0, 2))
    with pytest.raises(ValueError, match="float images must be in"):
        checks.rgb_uint8(np.full((3, 3, 3), 2.0))
    with pytest.raises(ValueError, match="photo must be an"):
        checks.rgb_uint8(np.zeros((3, 3, 2)), "photo")


def test_colors01():
    c = checks.colors01(np.array([255, 0, 51], np.uint8), 4)
    assert c.shape == (4, 3) and np.allclose(c[2], [1.0, 0.0, 0.2])
    np.testing.assert_allclose(checks.colors01(np.full((2, 3), 0.5), 2), 0.5)
    with pytest.raises(ValueError, match=r"colors must have shape \(3, 3\)"):
        checks.colors01(np.zeros((2, 3)), 3)
    with pytest.raises(ValueError, match="must lie in"):
        checks.colors01(np.full((2, 3), 1.5), 2)
    with pytest.raises(ValueError, match="0..255"):
        checks.colors01(np.full((2, 3), 300), 2)
