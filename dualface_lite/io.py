"""Writing a reconstructed face to files other programs open (chapter 7), through trimesh.

Three formats, one call, :func:`export_mesh` (by the file's suffix):

* **PLY** (``.ply``): the vertices with their colours (RGBA per vertex), binary; MeshLab, CloudCompare,
  Blender.
* **OBJ** (``.obj`` + ``.mtl`` + ``.png``): the mesh with the model's texture coordinates and a texture
  image cut from the photo (:func:`texture_from_photo`); the usual format of 3D face papers.
* **GLB** (``.glb``): binary glTF 2.0, one file, for web viewers (three.js, model-viewer) and Blender.

The texture: each texel of the model's UV layout is a point on the surface of ``S_0`` (the landmark
fit); the fit's camera projects it into the photo, which gives its colour. Texels whose triangle the
camera does not see (the far side of the face, the ears) get the mean colour of the visible ones, and
``texture_from_photo`` returns the mask of the texels that came from the photo. The same texture fits
every later stage (``S_P``, ``S_T``): they share the model's vertices and UVs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import checks

__all__ = ["FORMATS", "texture_from_photo", "to_trimesh", "export_mesh", "load_mesh"]

#: the file suffixes :func:`export_mesh` writes
FORMATS = (".ply", ".obj", ".glb")


def texture_from_photo(model, fit, image, size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """A texture image for the model's UV layout, cut from ``image`` with the landmark fit ``fit``
    (:class:`~dualface_lite.fitting.Fit`: its ``vertices`` (S_0), ``camera`` and ``visible``).

    Returns ``(texture (size, size, 3) uint8, from_photo (size, size) bool)``, upright: row 0 is v = 0 of
    the model's texture coordinates, which count v downwards like image rows (:func:`to_trimesh` turns
    them into the v-up convention of OBJ).
    """
    from . import camera as cam
    from . import render
    from .fitting import sample_colors

    img = checks.rgb_uint8(image)
    size = int(size)
    if size < 16:
        raise ValueError(f"size must be at least 16 px, got {size}")
    uv = np.asarray(model.texcoords, dtype=np.float64)
    F = np.asarray(model.triangles)
    # the UV layout as a flat mesh seen by an orthographic camera: pixel (i, j) <-> (u, v) = (j, i) / size
    # (the model's texture coordinates are image coordinates, v down, as in eos)
    flat = np.column_stack([uv[:, 0] * size - size / 2, size / 2 - uv[:, 1] * size, np.zeros(len(uv))])
    uv_camera = cam.orthographic_camera(size, size, scale=1.0, target=(0.0, 0.0, 0.0))
    frags = render.rasterize(uv_camera, flat, F)
    tri, bary = frags.triangle.reshape(-1), frags.bary.reshape(-1, 3).astype(np.float64)
    inside = tri >= 0
    corners = F[tri[inside]]                                          # (P, 3) vertex ids of each texel
    S0 = np.asarray(fit.vertices, dtype=np.float64)
    points = np.einsum("pk,pkc->pc", bary[inside], S0[corners])       # the surface point behind each texel
    pix = fit.camera.project(points)                                   # (P, 2) where the photo sees it
    seen = np.asarray(fit.visible, bool)[corners].all(1)
    h, w = img.shape[:2]
    seen &= (pix[:, 0] >= 0) & (pix[:, 0] <= w - 1) & (pix[:, 1] >= 0) & (pix[:, 1] <= h - 1)
    colors = sample_colors(img, pix, seen)                             # (P, 3) in [0, 1], 0 where unseen
    fill = colors[seen].mean(0) if seen.any() else np.full(3, 0.5)
    colors[~seen] = fill
    tex = np.empty((size * size, 3))
    tex[:] = fill
    tex[inside] = colors
    from_photo = np.zeros(size * size, bool)
    from_photo[np.flatnonzero(inside)[seen]] = True
    return (np.round(tex * 255).astype(np.uint8).reshape(size, size, 3), from_photo.reshape(size, size))


def to_trimesh(vertices, triangles, colors=None, *, texcoords=None, texture=None):
    """A ``trimesh.Trimesh`` of a face (``process=False``: the vertices keep their order). ``colors``
    (N, 3) in [0, 1] or uint8 become vertex colours; ``texcoords`` (N, 2) with ``texture`` (H, W, 3)
    uint8 a textured material instead. ``texcoords`` are the model's (v down, like image rows); the
    mesh gets ``(u, 1 - v)``, trimesh's and OBJ's convention."""
    import trimesh
    from PIL import Image

    V = checks.points(vertices, "vertices")
    F = checks.triangles(triangles, len(V))
    if texture is not None:
        if texcoords is None:
            raise ValueError("a texture needs the texture coordinates (the model's texcoords)")
        uv = np.asarray(texcoords, dtype=np.float64)
        if uv.shape != (len(V), 2):
            raise ValueError(f"texcoords must have shape ({len(V)}, 2), got {uv.shape}")
        tex = np.asarray(texture)
        if tex.dtype != np.uint8 or tex.ndim != 3 or tex.shape[2] != 3:
            raise ValueError(f"texture must be an (H, W, 3) uint8 image, got {tex.dtype} {tex.shape}")
        visual = trimesh.visual.TextureVisuals(uv=np.column_stack([uv[:, 0], 1.0 - uv[:, 1]]),
                                               image=Image.fromarray(tex))
        return trimesh.Trimesh(V, F, visual=visual, process=False)
    mesh = trimesh.Trimesh(V, F, process=False)
    if colors is not None:
        c = checks.colors01(colors, len(V))
        rgba = np.column_stack([np.round(c * 255), np.full(len(V), 255)]).astype(np.uint8)
        mesh.visual.vertex_colors = rgba
    return mesh


def export_mesh(path, vertices, triangles, colors=None, *, texcoords=None, texture=None,
                force: bool = False) -> Path:
    """Write a face mesh to ``path``; the format follows its suffix (:data:`FORMATS`).

    ``.ply``: vertex colours (``colors``). ``.obj``: the texture (``texcoords`` + ``texture``) when
    given, written beside it as ``<name>.png`` with ``<name>.mtl``; else vertex colours. ``.glb``: the
    texture when given, else vertex colours. An existing file (the mesh, or for a textured OBJ its
    ``.mtl`` / ``.png``) is an error unless ``force``.
    Returns the path written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"the file's suffix must be one of {FORMATS}, got {path.name!r}")
    textured = texture is not None and suffix in (".obj", ".glb")
    written = [path] + ([path.with_suffix(".mtl"), path.with_suffix(".png")] if textured and suffix == ".obj" else [])
    for p in written:
        if p.exists() and not force:
            raise FileExistsError(f"{p} exists (use force=True, or --force, to overwrite it)")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder {path.parent} does not exist")
    mesh = to_trimesh(vertices, triangles, colors, texcoords=texcoords if textured else None,
                      texture=texture if textured else None)
    if suffix == ".obj":
        from trimesh.exchange.obj import export_obj

        if textured:
            text, files = export_obj(mesh, include_texture=True, return_texture=True, mtl_name=f"{path.stem}.mtl")
            mtl = files.pop(f"{path.stem}.mtl")
            for name, data in files.items():   # the texture image, renamed after the mesh
                new = f"{path.stem}{Path(name).suffix}" if len(files) == 1 else f"{path.stem}_{name}"
                mtl = mtl.replace(name.encode(), new.encode())
                (path.parent / new).write_bytes(data)
            (path.parent / f"{path.stem}.mtl").write_bytes(mtl)
            path.write_text(text)
        else:
            path.write_text(export_obj(mesh, include_color=True, include_texture=False))
        return path
    mesh.export(path)
    return path


def load_mesh(path):
    """Read a mesh written by :func:`export_mesh` back (``trimesh``, vertices in file order)."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}")
    loaded = trimesh.load(path, process=False, maintain_order=True)
    if isinstance(loaded, trimesh.Scene):
        loaded = loaded.to_geometry() if hasattr(loaded, "to_geometry") else loaded.dump(concatenate=True)
    return loaded
