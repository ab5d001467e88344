import numpy as np
import pytest

import dualface_lite as df
from dualface_lite.camera import Camera, euler_angles, orthographic_camera, perspective_camera, rotation_matrix


@pytest.mark.parametrize("angles", [(0, 0, 0), (25, -10, 5), (-30, 12, -7), (89, 0, 0)])
def test_euler_roundtrip(angles):
    R = rotation_matrix(*angles)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(euler_angles(R), angles, atol=1e-9)


def test_yaw_turns_nose_to_viewers_right():
    nose = np.array([[0.0, 0.0, 100.0]])
    assert (nose @ rotation_matrix(yaw=20).T)[0, 0] > 0
    assert (nose @ rotation_matrix(pitch=20).T)[0, 1] < 0


def test_perspective_projection_formula(rng):
    cam = perspective_camera(200, 100, fov=20, distance=800, yaw=10, pitch=-5, roll=3)
    X = rng.uniform(-50, 50, (20, 3))
    V = X @ cam.R.T + cam.t
    u = cam.center[0] + cam.focal * V[:, 0] / -V[:, 2]
    v = cam.center[1] - cam.focal * V[:, 1] / -V[:, 2]
    np.testing.assert_allclose(cam.project(X), np.stack([u, v], 1), atol=1e-9)
    np.testing.assert_allclose(cam.depth(X), -V[:, 2])
    # the target projects to the image centre; the focal length matches the field of view
    np.testing.assert_allclose(cam.project(np.array([[0.0, 0.0, -40.0]])), [cam.center], atol=1e-9)
    assert cam.focal == pytest.approx(100 / np.tan(np.deg2rad(10)))


def test_image_orientation():
    cam = perspective_camera(224, 224)
    p = cam.project(np.array([[0, 0, -40.0], [10, 0, -40.0], [0, 10, -40.0]]))
    assert p[1, 0] > p[0, 0]  # +x -> larger column
    assert p[2, 1] < p[0, 1]  # +y -> smaller row (up in the image)


def test_orthographic_ignores_depth():
    cam = orthographic_camera(100, 100, scale=2.0)
    p = cam.project(np.array([[5.0, 1.0, 0.0], [5.0, 1.0, -70.0]]))
    np.testing.assert_allclose(p[0], p[1])
    np.testing.assert_allclose(p[0], cam.center + np.array([10.0, -2.0]))


def test_view_direction_points_at_camera():
    cam = perspective_camera(yaw=20)
    X = np.array([[0.0, 0.0, 0.0], [30.0, -20.0, -10.0]])
    eye = -cam.R.T @ cam.t
    d = cam.view_direction(X)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0)
    np.testing.assert_allclose(d, (eye - X) / np.linalg.norm(eye - X, axis=1, keepdims=True))


def test_bad_inputs():
    cam = perspective_camera()
    with pytest.raises(ValueError, match="points"):
        cam.project(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        cam.project(np.array([[0.0, np.nan, 0.0]]))
    with pytest.raises(ValueError, match="behind"):
        cam.project(np.array([[0.0, 0.0, 2000.0]]))
    with pytest.raises(ValueError, match="rotation"):
        Camera(R=np.ones((3, 3)), t=np.zeros(3), focal=100, width=10, height=10)
    with pytest.raises(ValueError, match="kind"):
        Camera(R=np.eye(3), t=np.zeros(3), focal=100, width=10, height=10, kind="fisheye")
    with pytest.raises(ValueError, match="focal"):
        Camera(R=np.eye(3), t=np.zeros(3), focal=-1, width=10, height=10)
    with pytest.raises(ValueError, match="fov"):
        perspective_camera(fov=0)


@pytest.mark.parametrize("kind", ["perspective", "orthographic"])
def test_unproject_inverts_project_and_rays_hit_the_points(rng, kind):
    if kind == "perspective":
        cam = perspective_camera(120, 90, fov=15, distance=900, yaw=20, pitch=-8, roll=4)
    else:
        cam = orthographic_camera(120, 90, scale=1.7, yaw=-15, pitch=6)
    X = rng.uniform(-60, 60, (50, 3))
    uv, d = cam.project(X), cam.depth(X)
    np.testing.assert_allclose(cam.unproject(uv, d), X, atol=1e-8)
    np.testing.assert_allclose(cam.unproject(uv, d, frame="view"), cam.to_view(X), atol=1e-8)
    # batched shapes and NaN for missing depths
    grid = cam.unproject(uv.reshape(5, 10, 2), np.where(np.arange(50) % 7 == 0, np.inf, d).reshape(5, 10))
    assert grid.shape == (5, 10, 3) and np.isnan(grid.reshape(-1, 3)[::7]).all()
    o, v = cam.pixel_rays(uv)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0)
    lam = ((X - o) * v).sum(1)                       # distance along the ray to the point
    assert np.all(lam > 0)
    np.testing.assert_allclose(o + lam[:, None] * v, X, atol=1e-7)
    if kind == "orthographic":                        # parallel rays
        np.testing.assert_allclose(v, np.broadcast_to(v[0], v.shape))
    with pytest.raises(ValueError, match="uv must have shape"):
        cam.unproject(np.zeros((4, 3)), np.ones(4))
    with pytest.raises(ValueError, match="depth must have shape"):
        cam.unproject(uv, d[:3])
    with pytest.raises(ValueError, match="frame"):
        cam.unproject(uv, d, frame="world")


# ---------------------------------------------------------------------------- the face crop
def test_face_crop_maps_points_and_pixels_consistently(rng):
    from dualface_lite.camera import CROP_SCALE, face_crop

    L = rng.uniform(60, 160, (68, 2))
    crop = face_crop(L, size=112)
    lo, hi = L.min(0), L.max(0)
    assert np.allclose(crop.center, 0.5 * (lo + hi)) and np.isclose(crop.side, CROP_SCALE * (hi - lo).max())
    P = crop.points(L)
    assert np.allclose(crop.to_photo(P), L, atol=1e-4)                        # round trip
    assert P.min() >= (112 - 112 / CROP_SCALE) / 2 - 0.5 and P.max() <= 112 - (112 - 112 / CROP_SCALE) / 2
    # one bright pixel lands where points() says
    img = np.zeros((224, 224, 3), np.uint8)
    img[101, 83] = 255
    out = crop.image(img)
    u, v = crop.points([[83, 101]])[0]
    r, c = np.unravel_index(out[..., 0].argmax(), out.shape[:2])
    assert out.shape == (112, 112, 3) and abs(c - u) <= 0.5 and abs(r - v) <= 0.5
    # the crop's camera sees points where the crop puts their pixels
    cam = df.camera.perspective_camera(224, 224, yaw=10)
    X = rng.normal(size=(20, 3)) * 40
    assert np.allclose(crop.camera(cam).project(X), crop.points(cam.project(X)), atol=1e-3)
    # an identity crop (the whole image at its own size) gives the image back
    ident = df.camera.FaceCrop(center=(111.5, 111.5), side=224, size=224)
    photo = rng.integers(0, 256, (224, 224, 3)).astype(np.uint8)
    assert np.array_equal(ident.image(photo), photo)
    # jitter: shift moves the centre by fractions of the side, zoom shrinks the side
    j = face_crop(L, size=112, shift=(0.1, -0.05), zoom=1.25)
    assert np.allclose(np.subtract(j.center, crop.center), np.array([0.1, -0.05]) * j.side)
    assert np.isclose(j.side, crop.side / 1.25)
    # grayscale photos are converted, not refused
    assert crop.image(img[..., 0]).shape == (112, 112, 3)


def test_face_crop_bad_inputs():
    from dualface_lite.camera import FaceCrop, face_crop

    with pytest.raises(ValueError, match="landmarks"):
        face_crop(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="scale"):
        face_crop(np.eye(2) * 10, scale=0)
    with pytest.raises(ValueError, match="shift"):
        face_crop(np.eye(2) * 10, shift=(np.nan, 0))
    with pytest.raises(ValueError, match="size"):
        FaceCrop(center=(0, 0), side=10, size=4)
    with pytest.raises(ValueError, match="side"):
        FaceCrop(center=(0, 0), side=-1, size=16)
