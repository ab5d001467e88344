import shutil

import numpy as np
import pytest

import dualface_lite as df
from dualface_lite import fetch, paths


def test_sizes(model):
    assert model.n_vertices == 3448
    assert model.mean.shape == (3448, 3) and model.mean.dtype == np.float32
    assert model.basis.shape == (3 * 3448, 63)
    assert model.sigma.shape == (63,) and np.all(np.diff(model.sigma) <= 0) and model.sigma[-1] > 0
    assert model.expressions.shape == (3 * 3448, 6)
    assert model.expression_names == ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
    assert model.triangles.shape == (6736, 3)
    assert model.triangles.min() == 0 and model.triangles.max() == 3447
    assert model.ibug68.shape == (68,) and model.ibug68.min() >= 0 and model.ibug68.max() < 3448
    assert model.contour_right.shape == (17,) and model.contour_left.shape == (17,)


def test_basis_is_orthonormal(model):
    gram = model.basis.astype(np.float64).T @ model.basis.astype(np.float64)
    np.testing.assert_allclose(gram, np.eye(63), atol=1e-5)


def test_shape_of_zeros_is_mean(model):
    np.testing.assert_array_equal(model.shape(), model.mean)
    np.testing.assert_allclose(model.shape(np.zeros(63), np.zeros(6)), model.mean, atol=1e-5)


def test_shape_is_linear_and_roundtrips(model, rng):
    a = rng.standard_normal(63)
    s = model.shape(a)
    # alpha_i sigma_i along u_i: the model's own projection recovers alpha
    np.testing.assert_allclose(model.project_to_model(s), a, atol=2e-3)
    # a short alpha is padded with zeros
    np.testing.assert_allclose(model.shape(a[:5]), model.shape(np.r_[a[:5], np.zeros(58)]), atol=1e-4)
    # one standard deviation of the first mode moves the face by sigma_1 in norm
    d = model.shape([1.0]) - model.mean
    assert np.linalg.norm(d) == pytest.approx(model.sigma[0], rel=1e-5)


def test_expressions_move_the_mouth_not_the_ears(model):
    smile = model.shape(expr=[0, 0, 0, 1, 0, 0]) - model.mean
    moved = np.linalg.norm(smile, axis=1)
    mouth = model.ibug68[48:60]
    # measured: the mouth moves 10.29 mm on average, the three top right contour points 6.49 mm
    assert moved[mouth].mean() == pytest.approx(10.29, rel=0.1)
    assert moved[model.contour_right[:3]].mean() == pytest.approx(6.49, rel=0.1)


def test_landmark_map_is_anatomical(model):
    lm = model.landmarks_3d()
    # the subject's right eye corner (iBUG 37) is at -x, the left (46) at +x, nose tip the most forward
    assert lm[36, 0] == pytest.approx(-46.17, rel=0.1) and lm[45, 0] == pytest.approx(46.19, rel=0.1)
    assert lm[30, 2] == pytest.approx(model.mean[:, 2].max(), abs=0.031)    # measured 0.028 mm below
    assert lm[8, 1] < lm[57, 1] < lm[33, 1] < lm[27, 1]  # chin < lower lip < nose base < nose bridge
    assert model.ibug_defined.sum() == 50  # 68 less 16 jaw points and the two inner mouth corners
    assert not model.ibug_defined[[60, 64]].any()
    # jaw defaults run ear -> chin -> ear and are candidates of the contour lists
    assert set(model.ibug68[:8]) <= set(model.contour_right)
    assert set(model.ibug68[9:17]) <= set(model.contour_left)
    assert np.all(np.diff(lm[:9, 1]) < 0) and np.all(np.diff(lm[8:17, 1]) > 0)


def test_symmetry(model):
    s = model.symmetry
    mirrored = model.mean[s] * np.array([-1, 1, 1])
    err = np.linalg.norm(mirrored - model.mean, axis=1)
    assert np.median(err) < 0.45                                   # measured 0.411 mm
    assert (s[s] == np.arange(model.n_vertices)).mean() > 0.95    # measured 0.988
    assert s[model.ibug68[36]] == model.ibug68[45]  # eye corners swap


def test_shape_bad_input(model):
    with pytest.raises(ValueError, match="alpha"):
        model.shape(np.zeros(64))
    with pytest.raises(ValueError, match="alpha"):
        model.shape([np.nan])
    with pytest.raises(ValueError, match="expr"):
        model.shape(expr=np.zeros(7))
    with pytest.raises(ValueError, match="vertices"):
        model.project_to_model(np.zeros((10, 3)))


def test_load_model_from_folder_and_cache(model, sfm_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("DUALFACE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DUALFACE_SFM_DIR", raising=False)
    folder = tmp_path / "sfm"
    shutil.copytree(sfm_folder, folder)
    m2 = df.load_model(folder)
    np.testing.assert_array_equal(m2.mean, model.mean)
    caches = list((tmp_path / "home" / "cache" / "model").glob("*.npz"))
    assert len(caches) == 1
    m3 = df.load_model(folder)  # now from the cache
    np.testing.assert_array_equal(m3.basis, model.basis)
    np.testing.assert_array_equal(m3.ibug68, model.ibug68)


def test_load_model_copies_from_env_folder(sfm_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("DUALFACE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DUALFACE_SFM_DIR", str(sfm_folder))
    m = df.load_model()
    assert m.n_vertices == 3448
    assert fetch.missing_or_bad(tmp_path / "home" / "sfm") == []


def test_missing_model_files_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("DUALFACE_HOME", str(tmp_path))
    monkeypatch.delenv("DUALFACE_SFM_DIR", raising=False)
    with pytest.raises(fetch.ModelFilesError, match="fetch_sfm.py"):
        df.load_model()
    with pytest.raises(fetch.ModelFilesError, match="not a folder"):
        df.load_model(tmp_path / "nowhere")


def test_fetch_copies_and_checks(sfm_folder, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(sfm_folder, src)
    dest = fetch.fetch_sfm(tmp_path / "dest", source_dir=src, download=False, progress=False)
    assert fetch.missing_or_bad(dest) == []
    # a tampered file is refused
    (tmp_path / "dest" / "readme.txt").unlink()
    (src / "readme.txt").write_text("not the real file")
    with pytest.raises(fetch.ModelFilesError, match="SHA-256"):
        fetch.fetch_sfm(tmp_path / "dest", source_dir=src, download=False)
    with pytest.raises(fetch.ModelFilesError, match="not a folder"):
        fetch.fetch_sfm(tmp_path / "dest2", source_dir=tmp_path / "missing", download=False)


def test_a_copy_that_fails_half_way_leaves_no_file_under_its_name(sfm_folder, tmp_path, monkeypatch):
    """fetch_sfm copies each file through a temporary one renamed into place: a copy cut short (a full disk,
    a kill) leaves neither a half file under the final name, which another process could read meanwhile,
    nor the temporary file."""
    def full_disk(fd):
        raise OSError("no space left on device")

    monkeypatch.setattr(paths.os, "fsync", full_disk)   # after the bytes are written, before the rename
    with pytest.raises(OSError, match="no space left"):
        fetch.fetch_sfm(tmp_path / "dest", source_dir=sfm_folder, download=False, progress=False)
    assert list((tmp_path / "dest").iterdir()) == []


def test_write_atomic_leaves_the_old_file_when_cut_short(tmp_path, monkeypatch):
    """paths.write_atomic (the model's .npz cache, the datasets' manifests) replaces a file whole: written
    in full it holds the new bytes; cut short before the rename, the old file is untouched and the temporary
    one gone."""
    target = tmp_path / "cache.npz"
    target.write_bytes(b"old")
    paths.write_atomic(target, b"new contents")
    assert target.read_bytes() == b"new contents" and [f.name for f in tmp_path.iterdir()] == ["cache.npz"]

    def full_disk(fd):
        raise OSError("no space left on device")

    monkeypatch.setattr(paths.os, "fsync", full_disk)
    with pytest.raises(OSError, match="no space left"):
        paths.write_atomic(target, b"never seen")
    assert target.read_bytes() == b"new contents" and [f.name for f in tmp_path.iterdir()] == ["cache.npz"]


def test_download_failure_is_explained(tmp_path, monkeypatch):
    monkeypatch.delenv("DUALFACE_SFM_DIR", raising=False)
    asked = []

    def no_network(url, *a, **k):
        asked.append(url)
        raise OSError("network unreachable")

    monkeypatch.setattr(fetch.urllib.request, "urlopen", no_network)
    with pytest.raises(fetch.ModelFilesError) as info:
        fetch.fetch_sfm(tmp_path / "d", progress=False)
    msg = str(info.value)
    first = next(iter(fetch.SFM_FILES))  # the first file it tries
    # the specific failure: which URL, and the underlying error
    assert asked == [fetch.BASE_URL + first]
    assert f"could not download {fetch.BASE_URL + first}: network unreachable" in msg
    assert isinstance(info.value.__cause__, OSError) and str(info.value.__cause__) == "network unreachable"
    # ... then, separately, what to do about it (the generic help)
    assert "DUALFACE_SFM_DIR" in msg and "fetch_sfm.py --from" in msg
    assert msg.index("network unreachable") < msg.index("DUALFACE_SFM_DIR")
    assert not list((tmp_path / "d").glob("*.part")), "the partial download was left behind"
