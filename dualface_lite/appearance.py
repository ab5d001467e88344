"""Real appearance on known geometry: the skin, eyes, brows and hair of real photos on synthetic test faces.

The kit's photos are renders of a smooth synthetic albedo (:mod:`~dualface_lite.synth`); a network trained
on them has never seen eyes with an iris, eyebrows, stubble, make-up or a camera's grain. A real photo has
all of them but no known 3D truth. This module makes photos with both: the texture that
:func:`dualface_lite.io.texture_from_photo` cuts from a real photo (in the model's UV layout, through the
photo's landmark fit) is laid on the true surface of a synthetic test record and rendered with that
record's camera and light. The geometry, the camera and the landmarks are the record's, so its ground
truth ``S_hat`` and true surface still hold, and the landmark fit ``S_0`` is the record's own; only the
appearance (and so the colours of ``S_0`` and every network input) is real.

The image of a textured mesh, per pixel ``p`` inside the face, with ``(u, v)`` its texture coordinates
(barycentric interpolation) and ``E`` the irradiance of the record's light at the vertex normals
(:meth:`dualface_lite.render.Lighting.irradiance`), interpolated likewise::

    I(p) = clip( texture(u(p), v(p)) * E(p), 0, 1 )

Outside the face the record's own photo stays (its background and the dark mouth gap), so that only the
face's appearance changes.

>>> textures = real_textures(model)                       # the real photos of chapter 7
>>> real = retextured_split(test, textures, model)          # every test photo with each texture
>>> preds = dual.predict_all(real)                          # as for a dataset split

A texture cut from a photo also carries that photo's light on that face (shadows beside the nose, a bright
forehead): on another surface under another light they describe a shape that is not there.
``real_textures(model, delit=True)`` divides that shading out (:func:`photo_lighting` estimates the photo's
light from its landmark fit, :func:`remove_shading` divides each texel by the irradiance at its point), so that
what stays real is the albedo: eyes, brows, glasses, stubble, colour, grain.

The same records can also be photographed by a worse camera (:func:`through_camera`: blur, noise, JPEG,
grey; :func:`degraded_split`): the kit's renders are sharp and clean, many photos are not.

How far a photo's colours lie from the training photos' (:class:`ColourFamiliarity`, a Mahalanobis distance
of seven colour statistics of ``S_0``) tells real appearance from the kit's renders; it does not tell, photo
by photo, where a learnt stage helps or hurts (``benchmarks/README.md``, "Real appearance"), so the pipeline
reports it and drops nothing on it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import checks, render
from .fitting import fit_landmarks, sample_colors

__all__ = ["RealTexture", "RetexturedSplit", "photo_lighting", "remove_shading", "real_textures",
           "render_textured", "retextured_split", "through_camera", "degraded_split", "colour_statistics",
           "ColourFamiliarity"]


@dataclass(frozen=True)
class RealTexture:
    """A texture cut from a real photo: ``texture`` (T, T, 3) uint8 in the model's UV layout (row 0 is
    v = 0), ``from_photo`` (T, T) the texels the photo saw (the others hold their mirror image's colour
    where the photo saw that, else the mean colour), ``name`` the photo's name."""

    name: str
    texture: np.ndarray
    from_photo: np.ndarray


def photo_lighting(model, fit) -> "render.Lighting":
    """The light of a photo, estimated from its landmark fit ``fit`` (with the photo's colours): one grey
    order-2 SH lighting (view frame) fitted by least squares to the luminance of the visible vertices'
    colours, taking the albedo to be uniform, scaled so that the mean irradiance there is 1::

        min_l  sum_i ( Y(n_i) l - y_i / mean(y) )^2,   i visible,  y_i = 0.299 r_i + 0.587 g_i + 0.114 b_i

    with ``n_i`` the vertex normals of ``S_0`` turned into the view frame and ``Y`` :func:`render.sh_basis`.
    Eyes, brows and lips are darker than skin, so the estimate is rough: it holds the light's broad
    direction, the part that looks like geometry to a network."""
    return _lighting_at(fit, render.view_normals(fit.camera, fit.vertices, model.triangles))


def _lighting_at(fit, normals: np.ndarray) -> "render.Lighting":
    """:func:`photo_lighting` given the fit's view-frame vertex ``normals`` (N, 3)."""
    vis = np.asarray(fit.visible, bool)
    if vis.sum() < 9:
        raise ValueError(f"the fit sees {int(vis.sum())} vertices: too few to estimate a light")
    y = np.asarray(fit.colors, np.float64)[vis] @ np.array([0.299, 0.587, 0.114])
    if y.mean() <= 0:
        raise ValueError("the fit's colours are black: no light to estimate")
    sh, *_ = np.linalg.lstsq(render.sh_basis(normals[vis]).astype(np.float64), y / y.mean(), rcond=None)
    return render.Lighting(sh)


def remove_shading(model, fit, texture: np.ndarray) -> np.ndarray:
    """A (T, T, 3) uint8 ``texture`` cut from a photo through its landmark fit ``fit``
    (:func:`dualface_lite.io.texture_from_photo`) divided by the photo's shading of ``S_0`` under
    :func:`photo_lighting` (cut through the same fit, so texel for texel), rescaled to its own mean
    brightness. Where the surface turns away from the camera the estimate is poor and the texels hold hair
    or background as often as skin: the correction fades out there (fully applied where the normal's
    view-frame z is at least 0.5, none at 0) and is at most 2x either way."""
    from .io import texture_from_photo

    tex = np.asarray(texture)
    if tex.dtype != np.uint8 or tex.ndim != 3 or tex.shape[2] != 3 or tex.shape[0] != tex.shape[1]:
        raise ValueError(f"texture must be a square (T, T, 3) uint8 texture, got {tex.shape} {tex.dtype}")
    normals = render.view_normals(fit.camera, fit.vertices, model.triangles)
    E = _lighting_at(fit, normals).irradiance(normals)[:, 0]
    # the photo of S_0 with the (clipped) irradiance / 2 in red and how far the correction applies in green,
    # cut into the texture's layout like the photo itself; texels the photo did not see are not corrected
    drawn = np.column_stack([np.clip(E, 0.5, 2.0) / 2, np.clip(2 * normals[:, 2], 0, 1), np.zeros(len(E))])
    cut, seen = texture_from_photo(model, fit, render.render(fit.camera, fit.vertices, model.triangles,
                                                             colors=drawn).image, size=tex.shape[0])
    E_tex = cut[..., 0].astype(np.float64) / 255.0 * 2
    weight = cut[..., 1].astype(np.float64) / 255.0 * seen
    E_tex = (1.0 + (E_tex - 1.0) * weight)[..., None]
    flat = tex.astype(np.float64) / E_tex
    flat *= tex.mean() / max(flat.mean(), 1e-9)
    return np.round(np.clip(flat, 0, 255)).astype(np.uint8)


def real_textures(model, names=None, *, folder=None, size: int = 256, delit: bool = False) -> list[RealTexture]:
    """The textures of the real photos of :data:`dualface_lite.fetch.REAL_FACES` (``make faces``), each
    cut through the landmark fit of its hand-labelled 68 points: a list of :class:`RealTexture`.

    Parameters
    ----------
    model : the face model (:func:`dualface_lite.load_model`) whose landmark fit cuts each texture.
    names : which photos (default all, in :data:`~dualface_lite.fetch.REAL_FACES` order).
    folder : where the photos are (default ``paths.real_faces_dir()``).
    size : the texture's side in px.
    delit : divide out the photo's own shading (:func:`remove_shading`). A texture cut
        from a photo carries the light of that photo on that face: laid on another face under another
        light, its baked shadows (the side of the nose, the eye sockets) describe a surface that is not
        there. Without them the texture is closer to an albedo; the rest of the real appearance (eyes,
        brows, glasses, stubble, colour) stays.
    """
    from .fetch import real_face_files
    from .io import texture_from_photo
    from .landmarks import read_image, read_pts

    files = real_face_files(folder)
    names = list(files) if names is None else [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in files]
    if unknown or not names:
        raise ValueError(f"names must be among {sorted(files)}, got {names!r}")
    out = []
    for name in names:
        photo, pts = files[name]
        if not photo.is_file() or not pts.is_file():
            raise FileNotFoundError(f"{photo} or {pts} is missing: run `make faces` "
                                    f"(or dualface_lite.fetch.fetch_real_faces())")
        image, points = read_image(photo), read_pts(pts)
        fit = fit_landmarks(model, points, image=image)
        tex, seen = texture_from_photo(model, fit, image, size=size)
        if delit:
            tex = remove_shading(model, fit, tex)
        # the model's UV layout is left-right symmetric (u -> 1 - u): a texel the photo did not see
        # (behind the nose of a turned face) takes its mirror's colour where the photo saw that one
        mirror = ~seen & seen[:, ::-1]
        tex = tex.copy()
        tex[mirror] = tex[:, ::-1][mirror]
        out.append(RealTexture(name, tex, seen))
    return out


def render_textured(camera, vertices, triangles, texcoords, texture, lighting=None):
    """A mesh drawn with a texture: ``(image (H, W, 3) float64 in [0, 1], mask (H, W) bool)``.

    camera : the :class:`~dualface_lite.camera.Camera` (object -> view).
    vertices (N, 3), triangles (F, 3) : the mesh, object frame (mm).
    texcoords : (N, 2) the model's texture coordinates, in [0, 1], v downwards (as the texture's rows).
    texture : (T, T', 3) uint8 or float in [0, 1].
    lighting : a :class:`~dualface_lite.render.Lighting` in the view frame, or None (the texture unlit).
    """
    V = checks.points(vertices, "vertices")
    F = np.asarray(triangles)
    uv = np.asarray(texcoords, dtype=np.float64)
    if uv.shape != (len(V), 2) or not np.all(np.isfinite(uv)):
        raise ValueError(f"texcoords must be finite with shape ({len(V)}, 2), got {uv.shape}")
    tex = checks.rgb_image(texture)
    frags = render.rasterize(camera, V, F)
    H, W = frags.mask.shape
    tri = frags.triangle.reshape(-1)
    pix = np.flatnonzero(tri >= 0)
    corners = F[tri[pix]]
    bary = frags.bary.reshape(-1, 3)[pix].astype(np.float64)
    th, tw = tex.shape[:2]
    # texel (row i, column j) holds (u, v) = (j, i) / size, as texture_from_photo cuts it
    at = np.einsum("pk,pkc->pc", bary, uv[corners]) * np.array([tw, th])
    color = sample_colors(tex, at, np.ones(len(pix), bool)).astype(np.float64)
    if lighting is not None:
        normals = render.view_normals(camera, V, F)
        E = lighting.irradiance(normals).astype(np.float64)                 # (N, 3)
        color = color * np.einsum("pk,pkc->pc", bary, E[corners])
    image = np.zeros((H * W, 3))
    image[pix] = np.clip(color, 0.0, 1.0)
    return image.reshape(H, W, 3), frags.mask


@dataclass
class RetexturedSplit:
    """Records of a dataset split re-photographed with real textures; it reads as a
    :class:`~dualface_lite.data.FaceData` where the pipeline and the evaluation need it.

    image (M, H, W, 3) uint8, landmarks (M, 68, 2), s0, colors, s_hat, true (M, N, 3) float32,
    condition (M,) codes into ``condition_names``, ``person_row`` (M,) the person (bootstrap intervals
    resample people, :mod:`~dualface_lite.evaluation`); ``texture`` (M,) the index of each photo's texture in
    ``texture_names``; ``record`` (M,) its record in the source split.
    """

    image: np.ndarray
    landmarks: np.ndarray
    s0: np.ndarray
    colors: np.ndarray
    s_hat: np.ndarray
    true: np.ndarray
    condition: np.ndarray
    condition_names: tuple
    person_row: np.ndarray
    texture: np.ndarray
    texture_names: tuple
    record: np.ndarray

    def __len__(self) -> int:
        return len(self.record)

    def read(self, name: str, i):
        """Field ``name`` of record(s) ``i``, as :meth:`dualface_lite.data.FaceData.read`."""
        return getattr(self, name)[i]


def _record_rows(data, rows) -> np.ndarray:
    """The records ``rows`` of a split (default all) as int64, checked."""
    rows = np.arange(len(data)) if rows is None else np.atleast_1d(np.asarray(rows, dtype=np.int64))
    if len(rows) == 0 or rows.min() < 0 or rows.max() >= len(data):
        raise ValueError(f"rows must be records of the split (0..{len(data) - 1})")
    return rows


def _dataset_config(data):
    """The :class:`~dualface_lite.data.DatasetConfig` a split was built with."""
    from .data.config import DatasetConfig
    from .data.store import read_manifest

    return DatasetConfig.from_dict(read_manifest(data.folder)["config"])


def retextured_split(data, textures, model, *, rows=None, per_record: str = "all", noise: float = 0.01,
                     seed: int = 0, progress: bool = True) -> RetexturedSplit:
    """Every photo of ``rows`` of a split rendered anew with real textures (:func:`render_textured`, with the
    record's camera, light and true surface, regenerated exactly by :func:`dualface_lite.data.subject_for`),
    and its landmark fit refitted to read the new colours.

    Parameters
    ----------
    data : a :class:`~dualface_lite.data.FaceData` (a split of a built dataset).
    textures : a list of :class:`RealTexture` (:func:`real_textures`).
    model : the face model.
    rows : the records (default all).
    per_record : ``"all"`` (each record once with every texture) or ``"cycle"`` (record ``k`` of ``rows``
        with texture ``k mod T``).
    noise : the std of the pixel noise added on the face, as the kit's photos have (in [0, 1] units).
    seed : the noise's seed.
    progress : a tqdm bar over the records.

    Notes
    -----
    The landmarks are the record's, and so is ``S_0`` (the fit reads only the landmarks; the tests check it
    is the stored one); ``colors`` are read from the new photo.
    """
    from tqdm.auto import tqdm

    from .data.store import subject_for

    if per_record not in ("all", "cycle"):
        raise ValueError(f"per_record must be 'all' or 'cycle', got {per_record!r}")
    textures = list(textures)
    if not textures or not all(isinstance(t, RealTexture) for t in textures):
        raise ValueError("textures must be a non-empty list of RealTexture (see real_textures)")
    rows = _record_rows(data, rows)
    config = _dataset_config(data)
    fit_kwargs = config.fit_kwargs()
    rng = np.random.default_rng(seed)
    names = tuple(data.condition_names)
    out = {k: [] for k in ("image", "landmarks", "s0", "colors", "s_hat", "true", "condition", "person_row", "texture",
                           "record")}
    for k, i in enumerate(tqdm(rows, disable=not progress, desc="real textures", unit="record")):
        i = int(i)
        s = subject_for(config, int(data.read("seed", i)), names[int(data.read("condition", i))], model=model,
                        with_scan=False, capture=int(data.read("capture_index", i)),
                        photo=int(data.read("photo_index", i)))
        which = range(len(textures)) if per_record == "all" else [k % len(textures)]
        for t in which:
            face, mask = render_textured(s.camera, s.vertices, model.triangles, model.texcoords,
                                         textures[t].texture, s.lighting)
            img = np.where(mask[..., None], face + noise * rng.standard_normal(face.shape),
                           s.image / 255.0)
            image = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
            fit = fit_landmarks(model, s.landmarks, image=image, **fit_kwargs)
            out["image"].append(image)
            out["landmarks"].append(s.landmarks)
            out["s0"].append(np.asarray(fit.vertices, np.float32))
            out["colors"].append(np.asarray(fit.colors, np.float32))
            out["s_hat"].append(data.read("s_hat", i))
            out["true"].append(data.read("true", i))
            out["condition"].append(int(data.read("condition", i)))
            out["person_row"].append(int(data.read("person_row", i)))
            out["texture"].append(t)
            out["record"].append(i)
    arr = {k: np.stack(v) if k in ("image", "landmarks", "s0", "colors", "s_hat", "true") else np.asarray(v)
           for k, v in out.items()}
    for k in ("landmarks", "s0", "colors", "s_hat", "true"):
        arr[k] = arr[k].astype(np.float32)
    return RetexturedSplit(condition_names=names, texture_names=tuple(t.name for t in textures), **arr)


def through_camera(image, *, blur: float = 1.5, noise: float = 0.03, jpeg: int | None = 30, grey: bool = False,
                   seed: int = 0) -> np.ndarray:
    """A photo as a worse camera takes it: grey (its luma, when ``grey``), a Gaussian blur of sigma ``blur`` px,
    Gaussian noise of std ``noise`` (in [0, 1] units, drawn with ``seed``), then JPEG compression at quality
    ``jpeg`` (1-95; ``None``: none). ``image`` (H, W, 3) uint8 or float in [0, 1]; returns (H, W, 3) uint8."""
    import io as _bytes

    from PIL import Image
    from scipy.ndimage import gaussian_filter

    img = checks.rgb_image(image)
    x = img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)
    blur, noise = checks.number(blur, "blur"), checks.number(noise, "noise")
    if jpeg is not None and (isinstance(jpeg, bool) or not isinstance(jpeg, (int, np.integer)) or not 1 <= jpeg <= 95):
        raise ValueError(f"jpeg must be a quality in 1..95 or None, got {jpeg!r}")
    if grey:
        x = np.repeat((x @ np.array([0.299, 0.587, 0.114]))[..., None], 3, axis=2)
    if blur > 0:
        x = gaussian_filter(x, sigma=(blur, blur, 0))
    if noise > 0:
        x = x + noise * np.random.default_rng(seed).standard_normal(x.shape)
    out = np.clip(np.round(x * 255), 0, 255).astype(np.uint8)
    if jpeg is not None:
        buf = _bytes.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=int(jpeg))
        out = np.asarray(Image.open(_bytes.BytesIO(buf.getvalue())).convert("RGB"))
    return out


def degraded_split(data, model, *, rows=None, blur: float = 1.5, noise: float = 0.03, jpeg: int | None = 30,
                   grey: bool = False, seed: int = 0, progress: bool = True) -> RetexturedSplit:
    """Every photo of ``rows`` of a split (default all) passed :func:`through_camera` (photo ``k`` with noise
    seed ``seed + k``), and its colours read again by the landmark fit; the landmarks, ``S_0`` and the truth
    are the record's. Returns a :class:`RetexturedSplit` whose one "texture" is the record's own skin."""
    from tqdm.auto import tqdm

    rows = _record_rows(data, rows)
    fit_kwargs = _dataset_config(data).fit_kwargs()
    images, s0, colors = [], [], []
    for k, i in enumerate(tqdm(rows, disable=not progress, desc="through a camera", unit="photo")):
        image = through_camera(data.read("image", int(i)), blur=blur, noise=noise, jpeg=jpeg, grey=grey,
                               seed=seed + k)
        fit = fit_landmarks(model, data.read("landmarks", int(i)), image=image, **fit_kwargs)
        images.append(image)
        s0.append(np.asarray(fit.vertices, np.float32))
        colors.append(np.asarray(fit.colors, np.float32))
    return RetexturedSplit(image=np.stack(images), landmarks=np.asarray(data.read("landmarks", rows), np.float32),
                           s0=np.stack(s0), colors=np.stack(colors),
                           s_hat=np.asarray(data.read("s_hat", rows), np.float32),
                           true=np.asarray(data.read("true", rows), np.float32),
                           condition=np.asarray(data.read("condition", rows)),
                           condition_names=tuple(data.condition_names),
                           person_row=np.asarray(data.read("person_row", rows)),
                           texture=np.zeros(len(rows), np.int64), texture_names=("own",), record=rows)


def colour_statistics(colors) -> np.ndarray:
    """Seven numbers per photo from the colours ``S_0`` reads (M, N, 3) in [0, 1], 0 where unseen (or one
    photo, (N, 3)): the mean and the std of each channel over the seen vertices, and how far the channels
    disagree (the mean of max - min over the channels: 0 for a grey photo). Returns (M, 7) (or (7,))."""
    c = np.asarray(colors, dtype=np.float64)
    one = c.ndim == 2
    c = c[None] if one else c
    if c.ndim != 3 or c.shape[2] != 3:
        raise ValueError(f"colors must have shape (M, N, 3) or (N, 3), got {np.shape(colors)}")
    out = np.zeros((len(c), 7))
    for k, face in enumerate(c):
        seen = face[face.any(1)]
        if len(seen):
            out[k] = np.concatenate([seen.mean(0), seen.std(0), [np.ptp(seen, axis=1).mean()]])
    return out[0] if one else out


@dataclass(frozen=True)
class ColourFamiliarity:
    """How unlike the training photos a photo's colours are: the Mahalanobis distance of its
    :func:`colour_statistics` from those of the training photos,

        d(x) = sqrt( sum_k ((x - mean) . axis_k)^2 / var_k ),

    over the principal axes ``axis_k`` of the training statistics; a photo is *unlike the training photos*
    when ``d`` exceeds ``threshold``, the ``quantile`` of ``d`` over the training and validation photos
    together (about 1% of photos like them are flagged; seven numbers estimated from many photos hardly
    fit the training photos better than new ones, and the validation photos alone are few)."""

    mean: np.ndarray
    axes: np.ndarray
    var: np.ndarray
    threshold: float
    quantile: float = 0.99

    @classmethod
    def fit(cls, train_colors, val_colors, quantile: float = 0.99) -> "ColourFamiliarity":
        """From the colours of the training photos (M, N, 3) and of the validation photos (V, N, 3)."""
        if not 0.5 <= quantile < 1:
            raise ValueError(f"quantile must be in [0.5, 1), got {quantile!r}")
        x = colour_statistics(train_colors)
        if x.ndim != 2 or len(x) < 8:
            raise ValueError(f"need at least 8 training photos, got {len(np.atleast_2d(x))}")
        mean = x.mean(0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        var = np.maximum(s ** 2 / (len(x) - 1), 1e-12)
        made = cls(mean, vt, var, float("inf"), float(quantile))
        val = made.distance(val_colors)
        if np.ndim(val) == 0 or len(val) < 1:
            raise ValueError("need the colours of at least one validation photo")
        both = np.concatenate([made._distance_of(x), val])
        return cls(mean, vt, var, float(np.quantile(both, quantile)), float(quantile))

    def distance(self, colors):
        """``d`` of each photo: colours (M, N, 3) -> (M,), or (N, 3) -> a float."""
        d = self._distance_of(colour_statistics(colors))
        return float(d) if np.ndim(d) == 0 else d

    def _distance_of(self, x: np.ndarray) -> np.ndarray:
        """``d`` of :func:`colour_statistics` (M, 7) -> (M,), or (7,) -> a 0-d array."""
        z = (x - self.mean) @ self.axes.T
        return np.sqrt((z ** 2 / self.var).sum(-1))

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "axes": self.axes.tolist(), "var": self.var.tolist(),
                "threshold": self.threshold, "quantile": self.quantile}

    @classmethod
    def from_dict(cls, d: dict) -> "ColourFamiliarity":
        return cls(np.asarray(d["mean"], float), np.asarray(d["axes"], float), np.asarray(d["var"], float),
                   float(d["threshold"]), float(d["quantile"]))
