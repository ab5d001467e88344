"""Tests of the software rasterizer against analytic surfaces (spheres, planes)."""
import numpy as np
import pytest
import trimesh

from dualface_lite.camera import Camera, orthographic_camera, perspective_camera
from dualface_lite.render import (
    Fragments,
    Lighting,
    Rendering,
    rasterize,
    render,
    render_depth,
    sh_basis,
    shade,
    vertex_normals,
    vertex_visibility,
)

RADIUS = 50.0
CENTER = np.array([12.0, -8.0, -30.0])  # object frame, mm


def sphere(subdivisions=4, radius=RADIUS, center=CENTER):
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(m.vertices) + center, np.asarray(m.faces)


def plane(z=0.0, half=2000.0):
    """A square in the object plane z = const, wound to face +z (the camera)."""
    V = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]])
    F = np.array([[0, 1, 2], [0, 2, 3]])
    return V, F


def pixel_rays(cam: Camera):
    """Ray origin and direction (view frame) through every pixel centre (j, i)."""
    j, i = np.meshgrid(np.arange(cam.width), np.arange(cam.height))
    x = (j - cam.center[0]) / cam.focal
    y = -(i - cam.center[1]) / cam.focal
    if cam.kind == "perspective":
        d = np.stack([x, y, -np.ones_like(x)], axis=-1)
        o = np.zeros_like(d)
    else:
        d = np.broadcast_to([0.0, 0.0, -1.0], x.shape + (3,))
        o = np.stack([x, y, np.zeros_like(x)], axis=-1)
    return o, d


def analytic_sphere_depth(cam: Camera, center, radius):
    """Camera depth of the first hit of each pixel ray on a sphere (inf on a miss).
    Rays are o + s d with d_z = -1, so the depth -z of a hit is s."""
    o, d = pixel_rays(cam)
    c = cam.R @ center + cam.t
    oc = o - c
    a = np.sum(d * d, axis=-1)
    b = np.sum(d * oc, axis=-1)
    cc = np.sum(oc * oc, axis=-1) - radius**2
    disc = b * b - a * cc
    with np.errstate(invalid="ignore"):
        s = (-b - np.sqrt(disc)) / a
    return np.where(disc >= 0, s, np.inf)


CAMERAS = {
    "perspective": perspective_camera(160, 140, fov=20, distance=400, yaw=20, pitch=-10, roll=5),
    "orthographic": orthographic_camera(160, 140, scale=1.1, yaw=-25, pitch=15, roll=-5),
}


# --------------------------------------------------------------------------- depth
@pytest.mark.parametrize("kind", ["perspective", "orthographic"])
def test_sphere_depth_matches_analytic(kind):
    cam = CAMERAS[kind]
    V, F = sphere(5)
    frags = rasterize(cam, V, F)
    truth = analytic_sphere_depth(cam, CENTER, RADIUS)
    # The polyhedron lies between the circumscribed sphere (R) and the inscribed one
    # (R_in = smallest distance from the centre to a face plane), so along every
    # pixel ray its depth lies between the two spheres' first hits.
    fn = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])
    fn /= np.linalg.norm(fn, axis=1, keepdims=True)
    r_in = np.min(np.sum((V[F[:, 0]] - CENTER) * fn, axis=1))
    inner = analytic_sphere_depth(cam, CENTER, r_in)
    both = frags.mask & np.isfinite(truth)
    err = np.abs(frags.depth[both] - truth[both])
    assert np.median(err) < 0.0145                # measured 0.0131 mm for both cameras
    core = np.isfinite(inner)
    assert core.sum() > 8500                      # measured 10615 (perspective), 9503 px
    assert np.all(frags.mask[core])
    assert np.all(frags.depth[core] >= truth[core] - 1e-3)
    assert np.all(frags.depth[core] <= inner[core] + 1e-3)
    # the silhouette: mask area equals the analytic disc's to a few pixels (measured 1 px)
    disc = np.isfinite(truth).sum()
    assert abs(int(frags.mask.sum()) - int(disc)) <= 4
    assert np.all(np.isinf(frags.depth[~frags.mask]))
    assert np.all(frags.triangle[~frags.mask] == -1)
    assert np.all(frags.triangle[frags.mask] >= 0)
    # the fast path gives the same depth map
    np.testing.assert_array_equal(render_depth(cam, V, F), frags.depth)


def test_plane_at_known_depth():
    cam = perspective_camera(64, 48, fov=30, distance=1200)  # target z = -40: depth = 1160 - z
    V, F = plane(z=10.0)
    d = render_depth(cam, V, F)
    assert d.dtype == np.float32 and d.shape == (48, 64)
    np.testing.assert_allclose(d, 1150.0, rtol=0, atol=1e-3)


@pytest.mark.parametrize("kind", ["perspective", "orthographic"])
def test_tilted_plane_depth_ramp(kind):
    if kind == "perspective":
        cam = perspective_camera(80, 60, fov=30, distance=600)
    else:
        cam = orthographic_camera(80, 60, scale=0.5)
    V, F = plane(z=0.0, half=500.0)
    V[:, 2] = 0.3 * V[:, 0] - 0.2 * V[:, 1]  # tilted plane, still facing the camera
    frags = rasterize(cam, V, F)
    assert frags.mask.all()
    j, i = np.meshgrid(np.arange(80), np.arange(60))
    A = np.stack([j.ravel(), i.ravel(), np.ones(j.size)], axis=1)
    # orthographic: depth is affine in (u, v); perspective: 1 / depth is
    target = frags.depth.ravel().astype(np.float64)
    if kind == "perspective":
        target = 1.0 / target
    coef, *_ = np.linalg.lstsq(A, target, rcond=None)
    assert np.max(np.abs(A @ coef - target)) < 1e-6 * np.abs(target).max()
    assert abs(coef[0]) > 1e-3 * np.abs(target).max() / 80  # a real ramp, not a constant
    # and it is the plane's own depth: the analytic ray-plane intersection
    o, dirs = pixel_rays(cam)
    n_v = cam.R @ np.array([-0.3, 0.2, 1.0])  # plane normal, view frame
    p0 = cam.t  # object origin lies on the plane
    s = np.sum((p0 - o) * n_v, axis=-1) / np.sum(dirs * n_v, axis=-1)
    np.testing.assert_allclose(frags.depth, s, rtol=1e-6)


def test_perspective_correct_barycentrics():
    """The barycentrics are the weights of the 3D point seen at the pixel: it projects
    back onto the pixel centre and has the pixel's depth (screen-space weights do not)."""
    cam = perspective_camera(64, 64, fov=40, distance=300)
    V = np.array([[-80.0, -60.0, -100.0], [90.0, -50.0, 60.0], [0.0, 90.0, -20.0]])
    F = np.array([[0, 1, 2]])
    fr = rasterize(cam, V, F)
    i, j = np.nonzero(fr.mask)
    assert len(i) > 500
    X = fr.bary[i, j] @ V
    uv = cam.project(X)
    np.testing.assert_allclose(uv, np.stack([j, i], axis=1), atol=1e-3)
    np.testing.assert_allclose(cam.depth(X), fr.depth[i, j], rtol=1e-5)
    np.testing.assert_allclose(fr.bary[i, j].sum(axis=1), 1.0, atol=1e-5)
    assert fr.bary[i, j].min() >= -1e-6


def test_triangles_outside_and_degenerate_are_skipped():
    cam = perspective_camera(40, 30, fov=20, distance=500)
    V = np.array([[0.0, 0, 0], [5, 0, 0], [0, 5, 0], [1, 1, 0], [2, 2, 0], [3, 3, 0],
                  [1000, 1000, 0], [1010, 1000, 0], [1000, 1010, 0]], dtype=float)
    F = np.array([[3, 4, 5], [6, 7, 8]])  # a zero-area triangle and one far off-image
    assert not rasterize(cam, V, F).mask.any()
    F2 = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    fr = rasterize(cam, V, F2)
    assert fr.mask.any() and set(np.unique(fr.triangle)) == {-1, 0}


def test_big_triangles_are_chunked(monkeypatch):
    """A triangle covering more pixels than one chunk renders the same in bands."""
    import dualface_lite.render as R

    cam = perspective_camera(150, 120, fov=30, distance=600)
    V, F = plane(z=0.0, half=400.0)
    V[:, 2] = 0.2 * V[:, 1]
    ref = rasterize(cam, V, F)
    monkeypatch.setattr(R, "_CHUNK", 1000)
    small = rasterize(cam, V, F)
    np.testing.assert_array_equal(small.depth, ref.depth)
    np.testing.assert_array_equal(small.mask, ref.mask)
    assert small.mask.all()


# --------------------------------------------------------------------------- where things land
def test_vertex_lands_where_projected():
    cam = perspective_camera(200, 200, fov=25, distance=400, yaw=15, pitch=10)
    V, F = sphere(2)  # big triangles (~20 px), so a vertex's pixel lies in one of its own
    fr = rasterize(cam, V, F)
    vis = vertex_visibility(cam, V, F, fr)
    facing = np.einsum("ij,ij->i", vertex_normals(V, F), cam.view_direction(V)) > 0.3
    idx = np.flatnonzero(vis & facing)
    assert len(idx) > 42                          # measured 47
    uv = cam.project(V[idx])
    j, i = np.round(uv).astype(int).T
    t = fr.triangle[i, j]
    assert np.all(t >= 0)
    assert np.all((F[t] == idx[:, None]).any(axis=1))


def test_red_vertex_is_drawn_at_its_projection():
    cam = perspective_camera(200, 200, fov=25, distance=400)
    V, F = sphere(2)
    k = int(np.argmax(V[:, 2] + 0.5 * V[:, 0]))  # a front vertex off the image centre
    colors = np.ones((len(V), 3))
    colors[k] = [1.0, 0.0, 0.0]
    img = render(cam, V, F, colors=colors).image.astype(int)
    redness = img[..., 0] - img[..., 1]
    i, j = np.unravel_index(np.argmax(redness), redness.shape)
    u, v = cam.project(V[k:k + 1])[0]
    assert abs(j - u) <= 0.5 + 1e-9 and abs(i - v) <= 0.5 + 1e-9
    assert redness[i, j] > 227                    # measured 252


@pytest.mark.parametrize("kind", ["perspective", "orthographic"])
def test_image_orientation(kind):
    cam = perspective_camera(100, 100, fov=20, distance=500) if kind == "perspective" \
        else orthographic_camera(100, 100, scale=0.4)
    Vq = np.array([[-200.0, -200, 0], [0, -200, 0], [200, -200, 0], [-200, 0, 0], [0, 0, 0],
                   [200, 0, 0], [-200, 200, 0], [0, 200, 0], [200, 200, 0]])
    # 3x3 grid of vertices in the plane z = 0; colour = (red if x > 0, green if y > 0)
    Fq = []
    for r in range(2):
        for c in range(2):
            a = 3 * r + c
            Fq += [[a, a + 1, a + 4], [a, a + 4, a + 3]]
    col = np.stack([Vq[:, 0] > 0, Vq[:, 1] > 0, np.zeros(9)], axis=1).astype(float)
    img = render(cam, Vq, np.array(Fq), colors=col).image.astype(float)
    # larger x -> larger column u, larger y -> smaller row v: measured 53, 51 (perspective), 81, 78 grey levels
    gain = {"perspective": (53.0, 51.0), "orthographic": (81.0, 78.0)}[kind]
    assert img[:, 75, 0].mean() - img[:, 25, 0].mean() == pytest.approx(gain[0], rel=0.1)
    assert img[25, :, 1].mean() - img[75, :, 1].mean() == pytest.approx(gain[1], rel=0.1)
    # and the projection agrees
    uv = cam.project(np.array([[0.0, 0, 0], [50, 0, 0], [0, 50, 0]]))
    assert uv[1, 0] > uv[0, 0] and uv[2, 1] < uv[0, 1]


# --------------------------------------------------------------------------- z-buffer
@pytest.mark.parametrize("order", [[0, 1], [1, 0]])
@pytest.mark.parametrize("kind", ["perspective", "orthographic"])
def test_nearer_triangle_wins(order, kind):
    cam = perspective_camera(50, 50, fov=20, distance=500) if kind == "perspective" \
        else orthographic_camera(50, 50, scale=0.2)
    near = [[-100.0, -100, 20], [100, -100, 20], [0, 100, 20]]
    far = [[-100.0, 100, -20], [0, -100, -20], [100, 100, -20]]
    V = np.array(near + far)
    tris = [np.array([0, 1, 2]), np.array([3, 4, 5])]
    F = np.array([tris[k] for k in order])
    near_id = order.index(0)
    fr = rasterize(cam, V, F)
    depth_near = render_depth(cam, V[:3], np.array([[0, 1, 2]]))
    depth_far = render_depth(cam, V[3:], np.array([[0, 1, 2]]))
    overlap = np.isfinite(depth_near) & np.isfinite(depth_far)
    assert overlap.sum() == pytest.approx({"perspective": 924, "orthographic": 400}[kind], rel=0.1)   # measured
    assert np.all(fr.triangle[overlap] == near_id)
    np.testing.assert_array_equal(fr.depth[overlap], depth_near[overlap])
    only_far = np.isfinite(depth_far) & ~np.isfinite(depth_near)
    assert only_far.sum() == pytest.approx({"perspective": 564, "orthographic": 400}[kind], rel=0.1)  # measured
    assert np.all(fr.triangle[only_far] == 1 - near_id)


# --------------------------------------------------------------------------- visibility
def test_sphere_visibility_front_and_back():
    cam = orthographic_camera(200, 200, scale=1.5, yaw=30, pitch=-20, target=CENTER)
    V, F = sphere(4)
    vis = vertex_visibility(cam, V, F)
    cosv = np.einsum("ij,ij->i", (V - CENTER) / RADIUS, cam.view_direction(V))
    assert np.all(vis[cosv > 0.1])
    assert not np.any(vis[cosv < 0])
    assert abs(vis.mean() - 0.5) < 0.005         # half the sphere (measured 0.5)


def test_occluded_vertices_are_invisible():
    cam = perspective_camera(200, 200, fov=25, distance=500, target=CENTER)
    V, F = sphere(4)
    # an occluding plate in front of the sphere's left half (object x < CENTER_x - 5)
    x0, z0 = CENTER[0] - 5.0, CENTER[2] + 80.0
    plate = np.array([[x0 - 200, CENTER[1] - 200, z0], [x0, CENTER[1] - 200, z0],
                      [x0, CENTER[1] + 200, z0], [x0 - 200, CENTER[1] + 200, z0]])
    Vs = np.vstack([V, plate])
    Fs = np.vstack([F, len(V) + np.array([[0, 1, 2], [0, 2, 3]])])
    fr = rasterize(cam, Vs, Fs)
    vis = vertex_visibility(cam, Vs, Fs, fr)[: len(V)]
    alone = vertex_visibility(cam, V, F)
    uv_sphere, uv_edge = cam.project(V), cam.project(np.array([[x0, CENTER[1], z0]]))[0]
    behind = uv_sphere[:, 0] < uv_edge[0] - 2  # projects onto the plate
    clear = uv_sphere[:, 0] > uv_edge[0] + 2
    assert alone[behind].sum() == pytest.approx(485, rel=0.1)   # they would be seen without the plate
    assert not vis[behind].any()
    np.testing.assert_array_equal(vis[clear], alone[clear])


def test_visibility_outside_image():
    cam = perspective_camera(60, 60, fov=12, distance=400)  # the sphere overflows the image
    V, F = sphere(3, center=np.array([30.0, 0, 0]))
    vis = vertex_visibility(cam, V, F)
    uv = cam.project(V)
    out = (uv[:, 0] < -0.5) | (uv[:, 0] >= 59.5) | (uv[:, 1] < -0.5) | (uv[:, 1] >= 59.5)
    assert out.sum() == pytest.approx(375, rel=0.1)             # measured
    facing = np.einsum("ij,ij->i", vertex_normals(V, F), cam.view_direction(V)) > 0.2
    assert (out & facing).sum() == pytest.approx(119, rel=0.1)  # front vertices that fall outside the image
    assert not vis[out].any()
    assert vis[~out & facing].all()


# --------------------------------------------------------------------------- normals and shading
def test_sphere_normals_point_outward():
    V, F = sphere(4)
    n = vertex_normals(V, F)
    assert n.dtype == np.float32 and n.shape == V.shape
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
    radial = (V - CENTER) / np.linalg.norm(V - CENTER, axis=1, keepdims=True)
    assert 1.0 - np.min(np.sum(n * radial, axis=1)) < 1.9e-5     # measured 1.75e-5


def test_area_weighting():
    # vertex 0 shared by a big triangle in the z=0 plane and a tiny one in the x=0 plane
    V = np.array([[0.0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0.1, 0], [0, 0, 0.1]])
    F = np.array([[0, 1, 2], [0, 3, 4]])
    n = vertex_normals(V, F)[0]
    expected = np.array([0.005, 0, 50.0])  # sum of (b - a) x (c - a): twice the areas
    np.testing.assert_allclose(n, expected / np.linalg.norm(expected), atol=1e-6)


def test_sh_basis_constants():
    b = sh_basis(np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))
    assert b.shape == (2, 9) and b.dtype == np.float32
    np.testing.assert_allclose(b[0], [0.282095, 0, 0.488603, 0, 0, 0, 0.630784, 0, 0], atol=1e-6)
    np.testing.assert_allclose(b[1], [0.282095, 0, 0, 0.488603, 0, 0, -0.315392, 0, 0.546274], atol=1e-6)
    s = np.sqrt(0.5)
    b = sh_basis(np.array([[s, s, 0.0]]))[0]
    np.testing.assert_allclose(b[[1, 3, 4]], [0.488603 * s, 0.488603 * s, 1.092548 * 0.5], atol=1e-6)


def test_ambient_light_gives_albedo():
    cam = perspective_camera(120, 120, fov=20, distance=500, target=CENTER)
    V, F = sphere(3)
    albedo = np.array([0.2, 0.55, 0.8])  # 51, 140.25, 204: no rounding tie at .5
    r = render(cam, V, F, colors=np.tile(albedo, (len(V), 1)), lighting=Lighting.ambient(1.0),
               background=(255, 255, 255))
    assert isinstance(r, Rendering) and isinstance(r.fragments, Fragments)
    assert r.image.dtype == np.uint8 and r.image.shape == (120, 120, 3)
    assert np.all(r.image[r.mask] == np.round(albedo * 255).astype(np.uint8))
    assert np.all(r.image[~r.mask] == 255)
    r2 = render(cam, V, F, colors=np.tile(albedo, (len(V), 1)), lighting=Lighting.ambient(0.5))
    assert np.all(np.abs(r2.image[r2.mask].astype(int) - np.round(albedo * 127.5)) <= 1)


@pytest.mark.parametrize("angle", [0.0, 30.0, 60.0, 85.0])
def test_directional_light_on_a_plane(angle):
    cam = perspective_camera(40, 40, fov=20, distance=800)  # frontal: view frame = object frame
    V, F = plane(z=0.0, half=300.0)
    a = np.deg2rad(angle)
    light = Lighting.directional(direction=(0.0, np.sin(a), np.cos(a)), ambient=0.3, strength=0.5)
    albedo = np.array([0.9, 0.6, 0.3])
    r = render(cam, V, F, colors=np.tile(albedo, (4, 1)), lighting=light)
    c = np.cos(a)
    # order-2 SH projection of max(0, cos): 0.09375 + 0.5 c + 0.46875 c^2 (see Lighting.directional)
    expected = albedo * (0.3 + 0.5 * (0.09375 + 0.5 * c + 0.46875 * c * c))
    assert r.mask.all()
    assert np.all(np.abs(r.image.reshape(-1, 3).astype(float) - expected * 255) <= 0.51)
    # ... which is the Lambertian ambient + strength * cos to within 0.1 * strength
    np.testing.assert_allclose(expected, albedo * (0.3 + 0.5 * c), atol=0.1 * 0.5)
    # the same through shade() directly; the light turned away flips the sign of the 0.5 c term: darker by
    # strength * c
    n = np.array([[0.0, 0.0, 1.0]])
    np.testing.assert_allclose(shade(n, albedo[None], light)[0], expected, atol=1e-6)
    away = Lighting.directional(direction=(0.0, -np.sin(a), -np.cos(a)), ambient=0.3, strength=0.5)
    np.testing.assert_allclose(shade(n, albedo[None], away)[0], expected - albedo * 0.5 * c, atol=1e-6)


def test_light_is_in_the_view_frame():
    """A light from the image's right brightens the right of a sphere, whatever the pose."""
    V, F = sphere(3)
    light = Lighting.directional(direction=(1.0, 0.0, 0.3), ambient=0.1, strength=0.9)
    for yaw in (-40, 0, 40):
        cam = perspective_camera(100, 100, fov=25, distance=400, yaw=yaw, target=CENTER)
        img = render(cam, V, F, lighting=light).image[..., 0].astype(float)
        assert img[40:60, 60:75].mean() - img[40:60, 25:40].mean() == pytest.approx(130.0, rel=0.1)   # measured


def test_gouraud_interpolates_vertex_colours():
    cam = orthographic_camera(40, 40, scale=0.1)
    V, F = plane(z=0.0, half=200.0)
    colors = np.array([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])  # red ~ x, green ~ y
    img = render(cam, V, F, colors=colors).image.astype(float) / 255
    j, i = np.meshgrid(np.arange(40), np.arange(40))
    x = (j - cam.center[0]) / 0.1
    y = -(i - cam.center[1]) / 0.1
    np.testing.assert_allclose(img[..., 0], (x + 200) / 400, atol=0.6 / 255)
    np.testing.assert_allclose(img[..., 1], (y + 200) / 400, atol=0.6 / 255)


def test_uint8_colors_and_default_grey():
    cam = perspective_camera(50, 50, fov=20, distance=400, target=CENTER)
    V, F = sphere(2)
    a = render(cam, V, F, colors=np.full((len(V), 3), 51, np.uint8)).image
    assert np.all(a[a.any(axis=2)] == 51)
    g = render(cam, V, F)
    assert np.all(g.image[g.mask] == round(0.75 * 255))
    assert g.visible.shape == (len(V),) and g.visible.dtype == bool


# --------------------------------------------------------------------------- the face model
def test_sfm_winding_and_face_render(model):
    V, F = model.mean, model.triangles
    n = vertex_normals(V, F)
    nose = int(np.argmax(V[:, 2]))
    assert n[nose, 2] > 0.9                       # out of the face at the nose tip
    cam = perspective_camera(224, 224, fov=12, distance=1200)
    r = render(cam, V, F, lighting=Lighting.directional())
    assert r.mask.mean() == pytest.approx(0.348, rel=0.1)    # the face fills much of the frame
    assert r.visible.mean() == pytest.approx(0.979, rel=0.1)  # frontal: nearly all vertices seen
    assert r.visible[nose]
    # culling back faces changes nothing for a frontal face
    np.testing.assert_array_equal(rasterize(cam, V, F, cull_backfaces=True).mask, r.mask)
    # turned 70 degrees, part of the far cheek is hidden
    side = perspective_camera(224, 224, fov=12, distance=1200, yaw=70)
    assert render(side, V, F).visible.mean() == pytest.approx(0.566, rel=0.1)   # measured


# --------------------------------------------------------------------------- bad input
CAM = perspective_camera(32, 32)
GOOD_V, GOOD_F = sphere(1)


@pytest.mark.parametrize("fn", [rasterize, render_depth, render, vertex_visibility])
def test_bad_vertices(fn):
    with pytest.raises(ValueError, match="vertices"):
        fn(CAM, GOOD_V[:, :2], GOOD_F)
    bad = GOOD_V.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="vertices.*NaN"):
        fn(CAM, bad, GOOD_F)
    with pytest.raises(ValueError, match="vertices.*empty"):
        fn(CAM, np.zeros((0, 3)), np.zeros((0, 3), int))


@pytest.mark.parametrize("fn", [rasterize, render_depth, render, vertex_visibility])
def test_bad_triangles(fn):
    with pytest.raises(ValueError, match="triangles.*out of range"):
        fn(CAM, GOOD_V, np.vstack([GOOD_F, [[0, 1, len(GOOD_V)]]]))
    with pytest.raises(ValueError, match="triangles.*out of range"):
        fn(CAM, GOOD_V, np.vstack([GOOD_F, [[0, -1, 2]]]))
    with pytest.raises(ValueError, match="triangles.*empty"):
        fn(CAM, GOOD_V, np.zeros((0, 3), int))
    with pytest.raises(ValueError, match="triangles.*shape"):
        fn(CAM, GOOD_V, GOOD_F[:, :2])
    with pytest.raises(ValueError, match="triangles.*integer"):
        fn(CAM, GOOD_V, GOOD_F + 0.5)


def test_bad_other_arguments():
    with pytest.raises(ValueError, match="vertices"):
        vertex_normals(GOOD_V[:, :2], GOOD_F)
    with pytest.raises(ValueError, match="normals"):
        sh_basis(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="normals.*NaN"):
        sh_basis(np.full((4, 3), np.nan))
    with pytest.raises(ValueError, match="colors"):
        render(CAM, GOOD_V, GOOD_F, colors=np.ones((3, 3)))
    with pytest.raises(ValueError, match="colors.*\\[0, 1\\]"):
        render(CAM, GOOD_V, GOOD_F, colors=np.full((len(GOOD_V), 3), 200.0))
    with pytest.raises(ValueError, match="albedo"):
        shade(np.ones((4, 3)), np.ones((5, 3)), Lighting.ambient())
    with pytest.raises(ValueError, match="sh"):
        Lighting(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="direction"):
        Lighting.directional(direction=(0, 0, 0))
    with pytest.raises(ValueError, match="background"):
        render(CAM, GOOD_V, GOOD_F, background=(0, 0))
    with pytest.raises(TypeError, match="camera"):
        rasterize("camera", GOOD_V, GOOD_F)
    with pytest.raises(ValueError, match="fragments"):
        vertex_visibility(CAM, GOOD_V, GOOD_F, fragments=rasterize(perspective_camera(16, 16), GOOD_V, GOOD_F))
