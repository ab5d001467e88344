"""Range images -> meshes, and FRGC .abs files (dualface_lite.scans)."""
import gzip

import numpy as np
import trimesh
import pytest

from dualface_lite import scans, synth
from dualface_lite.camera import orthographic_camera, perspective_camera


def grid_points(H=6, W=8, spacing=1.0, z=None):
    """A flat grid of points, x right, y up (row 0 at the top), z towards the viewer."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    z = np.zeros((H, W)) if z is None else z
    return np.stack([u * spacing, -v * spacing, z], axis=-1)


def edge_lengths(mesh):
    e = mesh.vertices[mesh.edges_unique]
    return np.linalg.norm(e[:, 0] - e[:, 1], axis=1)


# --------------------------------------------------------------------------- range_to_mesh

def test_full_grid_gives_two_triangles_per_cell_facing_the_viewer():
    mesh = scans.range_to_mesh(grid_points(6, 8))
    assert mesh.vertices.shape == (48, 3) and mesh.faces.shape == (2 * 5 * 7, 3)
    np.testing.assert_allclose(mesh.face_normals, np.tile([0.0, 0.0, 1.0], (70, 1)), atol=1e-12)
    np.testing.assert_array_equal(mesh.metadata["pixels"][:3], [[0, 0], [0, 1], [0, 2]])
    assert mesh.vertices.dtype == np.float64 and len(mesh.faces) == len(np.unique(np.sort(mesh.faces, 1), axis=0))


def test_depth_discontinuities_are_not_bridged():
    z = np.zeros((10, 12))
    z[:, 6:] = 40.0                                  # a 40 mm step between columns 5 and 6
    mesh = scans.range_to_mesh(grid_points(10, 12, z=z))
    assert edge_lengths(mesh).max() < 1.5
    assert len(mesh.faces) == 2 * 9 * (5 + 5)        # both halves, no cell across the step
    bridged = scans.range_to_mesh(grid_points(10, 12, z=z), max_edge=100.0)
    assert len(bridged.faces) == 2 * 9 * 11
    with pytest.raises(ValueError, match="max_edge"):
        scans.range_to_mesh(grid_points(), max_edge=-1.0)


def test_invalid_pixels_and_nans_leave_holes():
    P = grid_points(8, 8)
    valid = np.ones((8, 8), bool)
    valid[3, 4] = False
    P[6, 1] = np.nan
    mesh = scans.range_to_mesh(P, valid)
    pix = mesh.metadata["pixels"]
    assert not ((pix == [3, 4]).all(1)).any() and not ((pix == [6, 1]).all(1)).any()
    # each missing pixel removes the 4 cells around it: 49 - 4 - 4 cells
    assert len(mesh.faces) == 2 * (49 - 8)
    np.testing.assert_allclose(mesh.vertices, P[pix[:, 0], pix[:, 1]])
    with pytest.raises(ValueError, match="valid must have shape"):
        scans.range_to_mesh(P, valid[:, :4])


def test_the_synthetic_scan_is_its_range_image_triangulated(model):
    """The paper's step 1 is the code that runs: synth.make_scan = range_image -> range_to_mesh."""
    s = synth.make_subject(seed=1, condition="neutral", model=model, with_scan=False)
    ref, depth, cam = synth.make_scan(s.vertices, model.triangles, s.camera.R, noise=0.2, n_holes=2,
                                      rng=np.random.default_rng(5))
    depth2, cam2 = synth.range_image(s.vertices, model.triangles, s.camera.R, noise=0.2, n_holes=2,
                                     rng=np.random.default_rng(5))
    assert np.array_equal(depth, depth2, equal_nan=True) and np.allclose(cam.t, cam2.t)
    mesh = scans.range_to_mesh(depth, camera=cam, max_edge=6.0)
    assert np.array_equal(mesh.vertices, ref.vertices) and np.array_equal(mesh.faces, ref.faces)
    # the scan lies on the true surface, within the depth noise
    true = trimesh.Trimesh(s.vertices, model.triangles, process=False)
    _, dist, _ = trimesh.proximity.closest_point(true, ref.vertices[::7])
    # measured: median 0.0947 mm, 95th percentile 0.313 mm (depth noise 0.2 mm)
    assert np.median(dist) == pytest.approx(0.0947, rel=0.1)
    assert np.percentile(dist, 95) == pytest.approx(0.313, rel=0.1)
    # wound towards the scanner: normals point at the camera (view z > 0)
    nz = (mesh.face_normals @ cam.R.T)[:, 2]
    assert np.median(nz) == pytest.approx(0.749, rel=0.1)            # measured 0.749
    view = scans.range_to_mesh(depth, camera=cam, max_edge=6.0, frame="view")
    np.testing.assert_allclose(view.vertices, cam.to_view(mesh.vertices), atol=1e-6)
    with pytest.raises(ValueError, match="spacing"):
        synth.range_image(s.vertices, model.triangles, s.camera.R, spacing=0.0)


@pytest.mark.parametrize("kind", ["perspective", "orthographic"])
def test_depth_to_points_inverts_the_camera(rng, kind):
    if kind == "perspective":
        cam = perspective_camera(40, 30, fov=20.0, distance=500.0, yaw=10.0, pitch=-5.0)
    else:
        cam = orthographic_camera(40, 30, scale=2.0)
    depth = cam.depth(np.zeros((1, 3)))[0] + rng.uniform(-20, 20, (30, 40))
    depth[3, 4] = np.nan
    depth[5, 6] = -1.0
    P = scans.depth_to_points(depth, cam)
    ok = np.isfinite(P).all(-1)
    assert not ok[3, 4] and not ok[5, 6] and ok.sum() == 30 * 40 - 2
    i, j = np.nonzero(ok)
    np.testing.assert_allclose(cam.project(P[ok]), np.stack([j, i], 1), atol=1e-8)
    np.testing.assert_allclose(cam.depth(P[ok]), depth[ok], atol=1e-8)


def test_crop_around_landmarks():
    P = grid_points(40, 50)
    L = np.array([[20.0, 10.0], [30.0, 10.0], [25.0, 22.0], [21.0, 28.0], [29.0, 28.0]])  # (u, v)
    box = scans.range_to_mesh(P, landmarks2d=L, crop_margin=0.0)
    pix = box.metadata["pixels"]
    assert pix[:, 1].min() == 20 and pix[:, 1].max() == 30 and pix[:, 0].min() == 10 and pix[:, 0].max() == 28
    grown = scans.range_to_mesh(P, landmarks2d=L, crop_margin=0.5)
    assert grown.metadata["pixels"][:, 1].min() == 15 and len(grown.vertices) > len(box.vertices)
    hull = scans.range_to_mesh(P, landmarks2d=L, crop_margin=0.0, crop="hull")
    assert len(hull.vertices) < len(box.vertices)
    with pytest.raises(ValueError, match="landmarks2d must have shape"):
        scans.range_to_mesh(P, landmarks2d=L[:, :1])
    with pytest.raises(ValueError, match="crop must be"):
        scans.range_to_mesh(P, landmarks2d=L, crop="circle")
    with pytest.raises(ValueError, match="nothing to triangulate"):
        scans.range_to_mesh(P, landmarks2d=L + 1000.0)


def test_range_to_mesh_bad_inputs():
    with pytest.raises(ValueError, match="needs camera="):
        scans.range_to_mesh(np.ones((5, 5)))
    with pytest.raises(ValueError, match=r"points \(H, W, 3\) or depths \(H, W\)"):
        scans.range_to_mesh(np.ones((5, 5, 2)))
    with pytest.raises(ValueError, match="nothing to triangulate"):
        scans.range_to_mesh(np.full((5, 5, 3), np.nan))
    cam = orthographic_camera(8, 8, scale=1.0)
    with pytest.raises(ValueError, match="camera's image is 8 x 8"):
        scans.range_to_mesh(np.ones((5, 5)), camera=cam)


# --------------------------------------------------------------------------- .abs files

FRGC_STYLE = """2 rows
3 columns
pixels (flag X Y Z):
1 0 1 1 1 0 
-10.5 -999999.000000 12.25 -10.5 1 -999999.000000 
20 -999999.000000 20 7 7.5 -999999.000000 
-1000 -999999.000000 -1001.5 -1002 -1003 -999999.000000 
"""


def test_read_abs_parses_the_frgc_layout(tmp_path):
    f = tmp_path / "04200d74.abs"
    f.write_text(FRGC_STYLE)
    points, valid = scans.read_abs(f)
    assert points.shape == (2, 3, 3) and points.dtype == np.float32
    np.testing.assert_array_equal(valid, [[True, False, True], [True, True, False]])
    np.testing.assert_allclose(points[0, 2], [12.25, 20.0, -1001.5])
    np.testing.assert_allclose(points[1, 1], [1.0, 7.5, -1003.0])
    assert np.isnan(points[~valid]).all()


def test_abs_round_trip(tmp_path, rng):
    P = rng.uniform(-100, 100, (5, 7, 3))
    P[..., 2] -= 1000.0
    valid = rng.random((5, 7)) > 0.3
    for name in ("scan.abs", "scan.abs.gz"):
        path = scans.write_abs(tmp_path / name, P, valid)
        Q, v = scans.read_abs(path)
        np.testing.assert_array_equal(v, valid)
        np.testing.assert_allclose(Q[valid], P[valid], rtol=1e-6, atol=1e-4)
        assert np.isnan(Q[~valid]).all()
    lines = (tmp_path / "scan.abs").read_text().splitlines()
    assert lines[:3] == ["5 rows", "7 columns", "pixels (flag X Y Z):"] and len(lines) == 7
    assert lines[3].split() == ["1" if x else "0" for x in valid.ravel()]
    assert {float(x) for x, ok in zip(lines[4].split(), valid.ravel()) if not ok} == {-999999.0}
    with gzip.open(tmp_path / "scan.abs.gz", "rt") as g:
        assert g.readline().strip() == "5 rows"
    # default validity: the finite pixels
    P[0, 0] = np.nan
    Q, v = scans.read_abs(scans.write_abs(tmp_path / "nan.abs", P))
    assert not v[0, 0] and v.sum() == 34
    # and the mesh of a read scan
    mesh = scans.range_to_mesh(*scans.read_abs(scans.write_abs(tmp_path / "flat.abs", grid_points(4, 5))))
    assert len(mesh.faces) == 2 * 3 * 4


def test_abs_errors(tmp_path):
    bad = tmp_path / "bad.abs"
    bad.write_text("hello\nworld\n\n1 2 3\n")
    with pytest.raises(ValueError, match="not an FRGC .abs file"):
        scans.read_abs(bad)
    short = tmp_path / "short.abs"
    short.write_text(FRGC_STYLE.rsplit("\n", 2)[0] + "\n")
    with pytest.raises(ValueError, match="expected 4 x 2 x 3 = 24 numbers"):
        scans.read_abs(short)
    with pytest.raises(FileNotFoundError):
        scans.read_abs(tmp_path / "missing.abs")
    with pytest.raises(ValueError, match=r"points must have shape \(H, W, 3\)"):
        scans.write_abs(tmp_path / "x.abs", np.zeros((4, 3)))
    with pytest.raises(ValueError, match="NaN or infinite coordinates at pixels marked valid"):
        scans.write_abs(tmp_path / "x.abs", np.full((2, 2, 3), np.nan), np.ones((2, 2), bool))
