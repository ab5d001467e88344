"""Interactive 3D views of face meshes (plotly), for the notebooks and the static book.

Two things live here:

* :func:`use_plotly_renderer` -- call it **once per chapter**, near the top, before the first
  figure is shown.  It registers and selects the plotly renderer ``"dualface"``, whose output
  works in both places a chapter is read:

  - in JupyterLab / VS Code the ``application/vnd.plotly.v1+json`` part of the output is used
    (plotly's own JupyterLab extension draws it, fully interactive);
  - in the built book (myst-nb keeps only ``text/html``), the ``text/html`` part is a ``<div>``
    plus an inline ``Plotly.newPlot(...)`` script **without** plotly.js inside it.  The book's
    Sphinx extension (``book/_ext/dualface_assets.py``) serves ``plotly.min.js`` locally on every
    page, loaded in ``<head>`` before any figure script, so the book needs no network.

  Plotly's default notebook output (the plotly mimetype alone) is dropped by myst-nb, which is
  why a chapter that forgets this call shows no figures in the book.

* :func:`mesh_figure` -- a ``plotly.graph_objects.Figure`` of a triangle mesh in millimetres
  (``Mesh3d``), grey and shaded, with per-vertex colours, or as a heat map of a per-vertex
  scalar (e.g. the per-vertex error of the paper's eq. (7) / Fig. 6), optionally with landmark
  points.  The camera looks at the face from +z with y up (the kit's camera convention).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.io._base_renderers import MimetypeRenderer, PlotlyRenderer

__all__ = ["RENDERER_NAME", "DualfaceRenderer", "use_plotly_renderer", "mesh_figure"]

#: Name under which :func:`use_plotly_renderer` registers the renderer in ``plotly.io.renderers``.
RENDERER_NAME = "dualface"

#: plotly.js config used by the renderer (no plotly logo, resizes with the page).
DEFAULT_PLOTLY_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True}


# --------------------------------------------------------------------------- renderer
class DualfaceRenderer(MimetypeRenderer):
    """plotly renderer for notebooks that are also built into a static book.

    Mime bundle: ``application/vnd.plotly.v1+json`` (JupyterLab, VS Code: interactive, drawn by
    plotly's own extension), ``text/html`` (kept by myst-nb for the static book; a ``<div>`` and
    an inline ``Plotly.newPlot`` script that expects ``window.Plotly`` on the page, which the
    book's extension provides) and a one-line ``text/plain``.
    """

    def __init__(self, config: dict[str, Any] | None = None):
        self.config = dict(DEFAULT_PLOTLY_CONFIG if config is None else config)

    def to_mimebundle(self, fig_dict: dict) -> dict[str, Any]:
        bundle = PlotlyRenderer(config=self.config).to_mimebundle(dict(fig_dict))
        bundle["text/html"] = pio.to_html(
            fig_dict,
            config=self.config,
            include_plotlyjs=False,  # the book page loads plotly.min.js once, in <head>
            include_mathjax=False,
            full_html=False,
            validate=False,
            default_width="100%",
            default_height="450px",
        )
        layout = fig_dict.get("layout") or {}
        title = layout.get("title")
        if isinstance(title, dict):
            title = title.get("text")
        kinds = sorted({str(t.get("type", "scatter")) for t in fig_dict.get("data", [])})
        label = f": {title}" if title else ""
        bundle["text/plain"] = f"<plotly figure{label} [{', '.join(kinds)}]>"
        return bundle


def use_plotly_renderer(config: dict[str, Any] | None = None) -> None:
    """Register the ``"dualface"`` plotly renderer and make it plotly's default.

    Call once near the top of every chapter notebook::

        from dualface_lite.viz import use_plotly_renderer, mesh_figure
        use_plotly_renderer()

    Afterwards ``fig`` (as the last expression of a cell) and ``fig.show()`` produce output that
    plotly's JupyterLab extension renders interactively *and* that survives into the static
    book as HTML (plotly.js is then provided by the page, not by the output).

    Parameters
    ----------
    config:
        plotly.js config for every figure (default: ``{"displaylogo": False, "responsive": True}``).

    The renderer is registered as ``plotly.io.renderers["dualface"]`` (:data:`RENDERER_NAME`);
    nothing is returned, so the call leaves no output in the chapter.
    """
    pio.renderers[RENDERER_NAME] = DualfaceRenderer(config=config)
    pio.renderers.default = RENDERER_NAME


# --------------------------------------------------------------------------- validation
def _points(name: str, a: Any, n: int | None = None) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be a numeric array of shape (N, 3), got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} must have one row per vertex ({n}), got {arr.shape[0]} rows")
    arr = arr.astype(np.float64 if arr.dtype == np.float64 else np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr).all(axis=1)))
        raise ValueError(f"{name} contains NaN or infinite values ({bad} row(s))")
    return arr


def _triangles(triangles: Any, n_vertices: int) -> np.ndarray:
    tri = np.asarray(triangles)
    if tri.ndim != 2 or tri.shape[1] != 3:
        raise ValueError(f"triangles must have shape (T, 3), got {tri.shape}")
    if tri.shape[0] == 0:
        raise ValueError("triangles is empty: a mesh needs at least one triangle")
    if not np.issubdtype(tri.dtype, np.integer):
        if np.issubdtype(tri.dtype, np.floating) and np.all(np.isfinite(tri)) and np.all(tri == np.round(tri)):
            tri = tri.astype(np.int64)
        else:
            raise ValueError(f"triangles must hold integer vertex indices, got dtype {tri.dtype}")
    lo, hi = int(tri.min()), int(tri.max())
    if lo < 0 or hi >= n_vertices:
        raise ValueError(
            f"triangles index vertices 0..{n_vertices - 1}, but contains indices in [{lo}, {hi}]"
        )
    return tri.astype(np.int32, copy=False)


def _vertex_colors(colors: Any, n: int) -> list[str]:
    c = np.asarray(colors)
    if c.ndim != 2 or c.shape != (n, 3):
        raise ValueError(f"colors must have shape ({n}, 3) (one RGB per vertex), got {c.shape}")
    if c.dtype == np.uint8:
        rgb = c.astype(np.int64)
    elif np.issubdtype(c.dtype, np.floating):
        if not np.all(np.isfinite(c)):
            raise ValueError("colors contains NaN or infinite values")
        if c.min() < 0.0 or c.max() > 1.0:
            raise ValueError(
                f"float colors must lie in [0, 1], got range [{c.min():.3g}, {c.max():.3g}] "
                "(pass uint8 for 0..255 values)"
            )
        rgb = np.rint(c * 255.0).astype(np.int64)
    elif np.issubdtype(c.dtype, np.integer):
        if c.min() < 0 or c.max() > 255:
            raise ValueError(f"integer colors must lie in 0..255, got range [{c.min()}, {c.max()}]")
        rgb = c.astype(np.int64)
    else:
        raise ValueError(f"colors must be uint8 (0..255) or float (0..1), got dtype {c.dtype}")
    return [f"rgb({r},{g},{b})" for r, g, b in rgb]


def _intensity(intensity: Any, n: int) -> np.ndarray:
    v = np.asarray(intensity)
    if v.ndim != 1 or v.shape[0] != n:
        raise ValueError(f"intensity must have shape ({n},) (one value per vertex), got {v.shape}")
    if not np.issubdtype(v.dtype, np.number) or v.dtype == np.complex128:
        raise ValueError(f"intensity must be real numbers, got dtype {v.dtype}")
    v = v.astype(np.float32)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"intensity contains NaN or infinite values ({int(np.count_nonzero(~np.isfinite(v)))})")
    return v


def _landmark_points(landmarks: Any, vertices: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks)
    if lm.ndim == 1:  # vertex indices, e.g. MorphableModel.ibug68
        if lm.size == 0 or not np.issubdtype(lm.dtype, np.integer):
            raise ValueError(
                "landmarks must be (L, 3) points in mm or a 1-D integer array of vertex indices, "
                f"got shape {lm.shape} dtype {lm.dtype}"
            )
        if lm.min() < 0 or lm.max() >= len(vertices):
            raise ValueError(
                f"landmark vertex indices must be in 0..{len(vertices) - 1}, "
                f"got range [{lm.min()}, {lm.max()}]"
            )
        return vertices[lm]
    return _points("landmarks", lm)


# --------------------------------------------------------------------------- figures
def mesh_figure(
    vertices: Any,
    triangles: Any,
    colors: Any | None = None,
    intensity: Any | None = None,
    colorscale: str | Sequence = "Viridis",
    title: str | None = None,
    landmarks: Any | None = None,
    height: int = 450,
    *,
    colorbar_title: str | None = None,
    intensity_range: tuple[float, float] | None = None,
    name: str = "mesh",
):
    """Plotly figure of a triangle mesh (``Mesh3d``), seen from +z with y up.

    Parameters
    ----------
    vertices:
        (N, 3) vertex positions in millimetres.
    triangles:
        (T, 3) integer vertex indices (0-based), counter-clockwise seen from outside.
    colors:
        Optional per-vertex colours, (N, 3) ``uint8`` in 0..255 or float in [0, 1]
        (e.g. the albedo sampled by the landmark fit).
    intensity:
        Optional per-vertex scalar, (N,), drawn as a heat map with a colour bar (e.g. the
        per-vertex error in mm, or the normalised error of eq. (7)). Not together with ``colors``.
    colorscale:
        plotly colour scale for ``intensity``.
    title:
        Figure title.
    landmarks:
        Optional landmarks drawn as red points: (L, 3) positions in mm, or a 1-D integer array
        of vertex indices (e.g. ``MorphableModel.ibug68``).
    height:
        Figure height in pixels.
    colorbar_title:
        Title of the colour bar (``intensity`` only), e.g. ``"mm"``.
    intensity_range:
        ``(cmin, cmax)`` for the colour scale, so that several figures share one scale.
    name:
        Trace name (legend / hover).

    Returns
    -------
    plotly.graph_objects.Figure
        Without ``colors``/``intensity`` the mesh is light grey with lighting that shows its shape.

    Raises
    ------
    ValueError
        On wrong shapes, NaN/inf values, out-of-range triangle or landmark indices, or when both
        ``colors`` and ``intensity`` are given.
    """
    v = _points("vertices", vertices)
    if v.shape[0] < 3:
        raise ValueError(f"vertices must hold at least 3 points, got {v.shape[0]}")
    tri = _triangles(triangles, v.shape[0])
    if colors is not None and intensity is not None:
        raise ValueError("give either colors (RGB per vertex) or intensity (scalar per vertex), not both")
    if not isinstance(height, (int, np.integer)) or height <= 0:
        raise ValueError(f"height must be a positive number of pixels, got {height!r}")

    mesh: dict[str, Any] = dict(
        x=v[:, 0], y=v[:, 1], z=v[:, 2],
        i=tri[:, 0], j=tri[:, 1], k=tri[:, 2],
        name=name,
        flatshading=False,
        lighting=dict(ambient=0.35, diffuse=0.85, specular=0.25, roughness=0.55, fresnel=0.1),
        lightposition=dict(x=1e4, y=2e4, z=1e5),  # in front of the face, above and to the right
        hovertemplate="x %{x:.1f} mm<br>y %{y:.1f} mm<br>z %{z:.1f} mm<extra></extra>",
    )
    if intensity is not None:
        val = _intensity(intensity, v.shape[0])
        mesh.update(intensity=val, intensitymode="vertex", colorscale=colorscale, showscale=True,
                    colorbar=dict(title=dict(text=colorbar_title or ""), thickness=15))
        if intensity_range is not None:
            lo, hi = (float(x) for x in intensity_range)
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise ValueError(f"intensity_range must be (cmin, cmax) with cmin < cmax, got {intensity_range!r}")
            mesh.update(cmin=lo, cmax=hi)
        mesh["hovertemplate"] = (
            "x %{x:.1f} mm<br>y %{y:.1f} mm<br>z %{z:.1f} mm<br>value %{intensity:.3g}<extra></extra>"
        )
    elif colors is not None:
        mesh.update(vertexcolor=_vertex_colors(colors, v.shape[0]))
    else:
        mesh.update(color="rgb(200,200,200)")

    data = [go.Mesh3d(**mesh)]
    if landmarks is not None:
        lm = _landmark_points(landmarks, v)
        data.append(go.Scatter3d(
            x=lm[:, 0], y=lm[:, 1], z=lm[:, 2], mode="markers", name="landmarks",
            marker=dict(size=3, color="red"),
            hovertemplate="landmark %{pointNumber}<extra></extra>",
        ))

    axis = dict(title=dict(text=""), showbackground=False, showgrid=True, zeroline=False,
                gridcolor="rgb(230,230,230)", ticksuffix=" mm")
    fig = go.Figure(data=data)
    fig.update_layout(
        title=dict(text=title) if title else None,
        height=int(height),
        margin=dict(l=0, r=0, t=40 if title else 10, b=0),
        showlegend=landmarks is not None,
        legend=dict(x=0.01, y=0.99),
        scene=dict(
            aspectmode="data",
            xaxis=dict(axis), yaxis=dict(axis), zaxis=dict(axis),
            camera=dict(up=dict(x=0, y=1, z=0), center=dict(x=0, y=0, z=0),
                        eye=dict(x=0, y=0, z=1.8), projection=dict(type="perspective")),
            dragmode="orbit",  # plotly.js forces up=(0,0,1) in "turntable" mode
        ),
    )
    return fig
