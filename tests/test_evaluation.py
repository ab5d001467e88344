"""The evaluation of chapter 6 (dualface_lite.evaluation): eq. (7) on a hand-computed example, the CED
curve on known values, bootstrap intervals that cover a known mean (and, with correlated faces, only
when people are resampled), paired comparisons, the rigid ICP recovering a known motion, the NoW-style scan-to-mesh distances on a scan
of known geometry and pooled over faces of known distances, the whole evaluation on a stand-in test set, and
the errors on bad input."""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import trimesh

from dualface_lite import camera, metrics
from dualface_lite import evaluation as E
from dualface_lite.groundtruth import scan_landmark_ids


# --------------------------------------------------------------------------- eq. (7), maps, CED
def test_eq7_hand_example():
    errors = [[1.0, 2.0, 4.0],
              [3.0, 3.0, 1.5]]
    np.testing.assert_allclose(E.normalized_errors(errors), [[2.5, 5.0, 10.0], [10.0, 10.0, 5.0]])
    # heat maps: one scale per image, over its methods and vertices
    maps = np.array([[[1.0, 2.0], [4.0, 0.0]], [[0.5, 0.5], [0.25, 1.0]]])   # (images, methods, N)
    np.testing.assert_allclose(E.normalized_vertex_errors(maps),
                               [[[2.5, 5.0], [10.0, 0.0]], [[5.0, 5.0], [2.5, 10.0]]])
    np.testing.assert_allclose(E.normalized_vertex_errors(maps[0]), [[2.5, 5.0], [10.0, 0.0]])


@pytest.mark.parametrize("bad", [[1.0, 2.0], [[0.0, 0.0]], [[1.0, -1.0]], [[1.0, np.nan]]])
def test_eq7_bad_input(bad):
    with pytest.raises(ValueError):
        E.normalized_errors(bad)


def test_vertex_error_maps_match_the_mean_error(rng):
    gt = rng.normal(size=(4, 50, 3)) * 30
    R = camera.rotation_matrix(10, -5, 3)
    pred = gt @ R.T + [4.0, -2.0, 7.0] + rng.normal(size=gt.shape)
    maps = E.vertex_error_maps(pred, gt)
    assert maps.shape == (4, 50)
    np.testing.assert_allclose(maps.mean(1), metrics.mean_vertex_errors(pred, gt), rtol=1e-12)
    assert 1.40 < maps.mean() < 1.71        # measured 1.559: the pose is removed, what is left is the noise


def test_ced_known_values():
    x, share = E.ced([1.0, 2.0, 2.0, 3.0], [0.0, 1.0, 1.5, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(share, [0.0, 0.25, 0.25, 0.75, 1.0, 1.0])
    _, n = E.ced([1.0, 2.0, 2.0, 3.0], [0.0, 1.0, 1.5, 2.0, 3.0, 4.0], counts=True)
    np.testing.assert_array_equal(n, [0, 1, 1, 3, 4, 4])
    x, share = E.ced([0.5, 1.5])
    assert x[0] == 0.0 and x[-1] == 1.5 and share[-1] == 1.0 and share[0] == 0.0
    with pytest.raises(ValueError):
        E.ced([1.0, 2.0], [2.0, 1.0])
    with pytest.raises(ValueError):
        E.ced([])


# --------------------------------------------------------------------------- bootstrap
def test_bootstrap_covers_a_known_mean():
    rng = np.random.default_rng(0)
    hits, widths = 0, []
    for k in range(300):
        x = rng.normal(5.0, 1.0, size=40)
        iv = E.bootstrap_ci(x, n_boot=1000, seed=k)
        hits += iv.low <= 5.0 <= iv.high
        widths.append(iv.high - iv.low)
        assert iv.low < iv.mean < iv.high and iv.mean == pytest.approx(x.mean())
    assert 0.90 <= hits / 300 <= 0.98
    assert np.mean(widths) == pytest.approx(2 * 1.96 / np.sqrt(40), rel=0.1)   # the normal interval's width


def test_bootstrap_by_person_when_faces_are_correlated():
    """3 faces of each of 20 people share the person's offset: resampling faces treats 60 faces as 60
    pieces of evidence and undercovers; resampling people covers."""
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(20), 3)
    by_face = by_person = 0
    for k in range(200):
        x = 5.0 + rng.normal(size=20)[groups] + 0.1 * rng.normal(size=60)
        a = E.bootstrap_ci(x, n_boot=1000, seed=k)
        b = E.bootstrap_ci(x, groups=groups, n_boot=1000, seed=k)
        by_face += a.low <= 5.0 <= a.high
        by_person += b.low <= 5.0 <= b.high
    assert by_person / 200 >= 0.88
    assert by_face / 200 <= 0.82


def test_paired_comparison():
    rng = np.random.default_rng(2)
    hard = rng.gamma(4.0, 0.6, size=80)             # some faces are hard for every method
    a = hard + 0.3 + 0.1 * rng.normal(size=80)
    c = E.paired_comparison(a, hard, names=("A", "B"))
    assert c.diff.mean == pytest.approx(np.mean(a - hard))
    assert 0.25 < c.diff.low < 0.3 < c.diff.high < 0.35     # pairing: narrow although the faces vary a lot
    assert c.p_value == 1 / 2000 and c.b_better > 0.95      # no resampled mean <= 0: the floor 1 / n_boot
    unpaired = E.bootstrap_ci(a).high - E.bootstrap_ci(a).low
    assert unpaired > 10 * (c.diff.high - c.diff.low)        # measured 11.2 x
    same = E.paired_comparison(hard, hard)
    assert same.diff.mean == 0 and same.p_value == 1.0 and same.b_better == 0.0
    noise = E.paired_comparison(hard + 0.1 * rng.normal(size=80), hard)
    assert noise.diff.low < 0 < noise.diff.high and noise.p_value > 0.08   # measured 0.089
    assert "A - B" in str(c) and json.dumps(c.to_dict())


@pytest.mark.parametrize("kw", [dict(level=1.0), dict(level=0.0), dict(n_boot=10), dict(groups=[0, 1])])
def test_bootstrap_bad_input(kw):
    with pytest.raises(ValueError):
        E.bootstrap_ci(np.arange(5.0), **kw)


def test_bootstrap_and_paired_bad_values():
    with pytest.raises(ValueError):
        E.bootstrap_ci([1.0])
    with pytest.raises(ValueError):
        E.bootstrap_ci([1.0, np.nan, 2.0])
    with pytest.raises(ValueError):
        E.paired_comparison([1.0, 2.0, 3.0], [1.0, 2.0])


# --------------------------------------------------------------------------- scan-to-mesh
def _moved_scan(model, R, t, offset: float = 0.0, n: int = 8000):
    """A 'scan' of the model's mean face, its surface pushed ``offset`` mm along the normals, then
    moved by R, t; the mean face's landmark vertices moved alike."""
    mesh = trimesh.Trimesh(model.mean, model.triangles, process=False)
    pts, tri = trimesh.sample.sample_surface_even(mesh, n, seed=0)
    pts = pts + offset * mesh.face_normals[tri]
    lm = model.mean[model.ibug68[17:]]           # the inner landmarks (no jaw line)
    return pts @ R.T + t, lm @ R.T + t, lm


def test_scan_to_mesh_known_geometry(model):
    R, t = camera.rotation_matrix(12, -8, 5), np.array([5.0, -3.0, 20.0])
    scan, scan_lm, mesh_lm = _moved_scan(model, R, t)
    d = E.scan_to_mesh(model.mean, model.triangles, scan, mesh_lm, scan_lm, n_points=3000)
    # the scan is the surface itself: what is left is ICP pairing vertices with the nearest samples
    assert d.median < 0.0077 and d.mean < 0.0085                    # measured 0.00702, 0.00777
    np.testing.assert_allclose(d.R, R, atol=1e-4)                   # measured 9.2e-5
    # landmarks 3 mm off: ICP still lands on the surface
    noisy = scan_lm + np.random.default_rng(0).normal(scale=3.0, size=scan_lm.shape)
    d = E.scan_to_mesh(model.mean, model.triangles, scan, mesh_lm, noisy, n_points=3000)
    assert d.median < 0.031 and d.icp_iterations > 1               # measured 0.0285
    # a surface 1 mm outside: 1 mm from the landmark alignment alone; rigid ICP slides the open face
    # forward and takes part of it back (a rigid offset is not an error of the shape)
    scan, scan_lm, mesh_lm = _moved_scan(model, R, t, offset=1.0)
    d0 = E.scan_to_mesh(model.mean, model.triangles, scan, mesh_lm, scan_lm, n_points=3000, iterations=0)
    assert d0.icp_iterations == 0 and 0.95 < d0.median < 1.05 and d0.std < 0.008   # measured 1.000, 0.0072
    d = E.scan_to_mesh(model.mean, model.triangles, scan, mesh_lm, scan_lm, n_points=3000)
    assert 0.23 * d0.median < d.median < 0.28 * d0.median         # measured 0.258
    with pytest.raises(ValueError, match="n_points"):
        E.scan_to_mesh(model.mean, model.triangles, scan, mesh_lm, scan_lm, n_points=0)
    with pytest.raises(ValueError, match="trim"):
        E.scan_to_mesh(model.mean, model.triangles, scan, mesh_lm, scan_lm, trim=0.0)
    # NaN landmarks are skipped; fewer than 3 left is an error
    scan_lm[:-2] = np.nan
    with pytest.raises(ValueError, match="at least 3 landmarks"):
        E.scan_to_mesh(model.mean, model.triangles, scan, mesh_lm, scan_lm)


def test_icp_align_recovers_a_known_motion(model):
    """The mean face moved by a known R, t is the scan. With its landmarks 3 mm off, the landmark alignment
    alone misses; ICP then pairs every vertex with its own moved copy and finds R, t to machine precision."""
    V = model.mean.astype(np.float64)
    R, t = camera.rotation_matrix(12, -8, 5), np.array([5.0, -3.0, 20.0])
    scan = V @ R.T + t
    lm = V[model.ibug68[17:]]
    noisy = lm @ R.T + t + np.random.default_rng(0).normal(scale=3.0, size=lm.shape)
    R0, t0, n0 = E.icp_align(V, scan, lm, noisy, iterations=0)
    assert n0 == 0 and 0.73 < np.abs(t0 - t).max() < 0.89                 # measured 0.812 mm
    R1, t1, n1 = E.icp_align(V, scan, lm, noisy)
    np.testing.assert_allclose(R1, R, atol=1e-12)
    np.testing.assert_allclose(t1, t, atol=1e-10)
    assert 1 <= n1 < 30                                                   # converged before the cap
    # exact landmarks: the landmark alignment is the motion already
    R2, t2, _ = E.icp_align(V, scan, lm, lm @ R.T + t, iterations=0)
    np.testing.assert_allclose(R2, R, atol=1e-12)
    np.testing.assert_allclose(t2, t, atol=1e-10)


# --------------------------------------------------------------------------- the whole evaluation
@dataclass
class _Split:
    """What evaluate() reads of a FaceData."""

    s_hat: np.ndarray
    true: np.ndarray
    condition: np.ndarray
    person_row: np.ndarray
    condition_names: tuple = ("neutral", "expression", "illumination")

    def __len__(self):
        return len(self.condition)


def test_evaluate_reads_the_errors(rng):
    M, N = 24, 40
    true = rng.normal(size=(M, N, 3)) * 20
    split = _Split(true + rng.normal(scale=0.5, size=true.shape), true, np.arange(M) % 3, np.arange(M) // 2)
    good = true + rng.normal(scale=1.0, size=true.shape)
    bad = true + rng.normal(scale=3.0, size=true.shape)
    ev = E.evaluate({"bad": bad, "good": good}, split, n_boot=500)
    assert ev.ranking("true") == ["good", "bad"] and ev.ranking("s_hat") == ["good", "bad"]
    np.testing.assert_allclose(ev.errors["true"]["good"], metrics.mean_vertex_errors(good, true))
    t = ev.table("true")
    assert set(t["good"]) == {"neutral", "expression", "illumination", "all"}
    assert t["good"]["all"].mean == pytest.approx(ev.errors["true"]["good"].mean())
    assert t["good"]["neutral"].n == 8 and t["good"]["all"].n == 24
    c = ev.compare("bad", "good", "true")["all"]
    assert c.diff.low > 2.7 and c.b_better == 1.0                      # measured 2.966
    norm = ev.normalized("true")
    assert norm.shape == (M, 2) and np.all(norm[:, 0] == 10.0)
    assert ev.vertex_errors["true"]["good"].shape == (N,)
    d = json.loads(json.dumps(ev.to_dict()))
    assert d["faces"] == M and d["people"] == 12 and d["ranking_true"] == ["good", "bad"]
    assert "| good |" in ev.markdown("good") and "bad: " in ev.markdown("good")
    assert "good" in ev.text_table("s_hat")
    with pytest.raises(ValueError):
        ev.table("scan")
    with pytest.raises(ValueError):
        ev.compare("good", "other")
    with pytest.raises(ValueError):
        E.evaluate({"good": good[:5]}, split)
    with pytest.raises(ValueError):
        E.evaluate({}, split)
    with pytest.raises(ValueError):
        E.evaluate({"good": good}, split, references=("scan",))
    with pytest.raises(ValueError, match="n_boot"):
        E.evaluate({"good": good}, split, n_boot=5)
    assert list(E.evaluate({"good": good}, split, references="true", n_boot=200).errors) == ["true"]


def test_one_person_gets_no_interval(rng):
    """A condition held by one person (two captures) has a mean but no interval and no comparison:
    resampling people would always redraw the same person and feign certainty."""
    M, N = 6, 20
    true = rng.normal(size=(M, N, 3)) * 20
    split = _Split(true, true, np.array([0, 0, 1, 1, 1, 1]), np.array([0, 0, 1, 1, 2, 2]))
    ev = E.evaluate({"a": true + rng.normal(size=true.shape), "b": true + 2 * rng.normal(size=true.shape)},
                    split, n_boot=200)
    t = ev.table("true")["a"]
    assert np.isfinite(t["neutral"].mean) and np.isnan(t["neutral"].low) and np.isfinite(t["expression"].low)
    assert "neutral" not in ev.compare("a", "b") and "expression" in ev.compare("a", "b")
    assert json.loads(json.dumps(ev.to_dict()))["table_true"]["a"]["neutral"]["low"] is None


@dataclass
class _ScanSplit:
    """What evaluate(scans=True) reads of a FaceData whose scans are kept in ``folder/scans/<split>/``."""

    folder: Path
    true: np.ndarray
    scan_landmarks: np.ndarray
    condition: np.ndarray
    person_row: np.ndarray
    split: str = "test"
    condition_names: tuple = ("neutral", "expression", "illumination")

    def __len__(self):
        return len(self.condition)

    def read(self, name, i):
        return i if name == "capture_row" else getattr(self, name)[i]


def test_pooled_scan_summary_on_known_distances(model, tmp_path):
    """evaluate(scans=True) pools every scan point of every face: its median, mean and std are those of all
    the distances together, not averages of per-face figures. Each prediction is the model's mesh flattened
    onto the plane z = 0; face i's scan holds the mesh's own vertices (distance 0, so ICP has nothing to move)
    and a point at height h_i above the centroid of every (i + 1)-th triangle (distance h_i: the centroid
    below it lies on the mesh, and the whole mesh on the plane)."""
    V = model.mean.astype(np.float64)
    V[:, 2] = 0.0
    centroids = V[model.triangles].mean(1)
    heights = (0.1, 0.3, 0.6)
    (tmp_path / "scans" / "test").mkdir(parents=True)
    known = []
    for i, h in enumerate(heights):
        lifted = centroids[:: i + 1] + [0.0, 0.0, h]
        np.savez(tmp_path / "scans" / "test" / f"{i:06d}.npz", vertices=np.concatenate([V, lifted]),
                 faces=np.array([[0, 1, 2]]))
        known.append(np.concatenate([np.zeros(len(V)), np.full(len(lifted), h)]))
    M = len(heights)
    flat = np.repeat(V[None], M, axis=0)
    on_mesh = model.ibug68[scan_landmark_ids(model)]
    data = _ScanSplit(tmp_path, flat, flat[:, on_mesh], np.arange(M), np.arange(M))
    ev = E.evaluate({"flat": flat}, data, references="true", scans=True, model=model, n_points=20_000, n_boot=200)
    pooled = np.concatenate(known)
    got = ev.scan_summary["flat"]
    assert got["median"] == pytest.approx(np.median(pooled), abs=1e-9)
    assert got["mean"] == pytest.approx(pooled.mean(), abs=1e-9)
    assert got["std"] == pytest.approx(pooled.std(), abs=1e-9)
    np.testing.assert_allclose(ev.scans["flat"], [d.mean() for d in known], atol=1e-9)
    # the per-face figures averaged are other numbers: the test tells pooling from averaging
    assert abs(np.mean([np.median(d) for d in known]) - got["median"]) > 0.05
    assert abs(np.mean([d.mean() for d in known]) - got["mean"]) > 0.01
    assert abs(np.mean([d.std() for d in known]) - got["std"]) > 0.01
    assert json.loads(json.dumps(ev.to_dict()))["scan_to_mesh"]["flat"]["median"] == pytest.approx(got["median"])
