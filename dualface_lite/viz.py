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

* :func:`add_steps` -- a slider or a dropdown menu that switches a figure between states with a
  plotly ``"restyle"`` (new vertex positions, a new colour map, ...).  It runs in the browser
  alone, so it works in the static book as well as in JupyterLab (no kernel needed), unlike an
  ipywidgets control.  :func:`mesh_steps_figure` is the common case: one mesh, several vertex
  sets (and per-vertex values) to step through, on one shared colour scale.

* static figures of an evaluation (matplotlib, so that ``data_scripts/evaluate.py`` can write them
  as PNG files without a browser): :func:`error_image` renders a mesh coloured by its per-vertex
  error with the kit's rasterizer, :func:`gallery_figure` lays such renders out as the paper's
  Figs. 4 and 7-9 (a photo, then one mesh per method with its eq. (7) number), :func:`ced_figure`
  draws Fig. 6 and :func:`condition_figure` the per-condition means with their intervals.
"""
from __future__ import annotations

import base64
from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.io._base_renderers import MimetypeRenderer, PlotlyRenderer

from . import checks

__all__ = [
    "RENDERER_NAME",
    "DualfaceRenderer",
    "use_plotly_renderer",
    "mesh_figure",
    "add_steps",
    "mesh_steps_figure",
    "error_image",
    "gallery_figure",
    "ced_figure",
    "condition_figure",
]

#: Name under which :func:`use_plotly_renderer` registers the renderer in ``plotly.io.renderers``.
RENDERER_NAME = "dualface"

#: plotly.js config used by the renderer: no plotly logo, and a fixed size. ``responsive`` stays off:
#: in JupyterLab a responsive figure takes its height from the output area, which takes its height from
#: the figure, so the first redraw after a click (a slider step, a menu choice) collapsed it to 0 px.
DEFAULT_PLOTLY_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": False}


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
        plotly.js config for every figure (default: :data:`DEFAULT_PLOTLY_CONFIG`).

    Notes
    -----
    The renderer is registered as ``plotly.io.renderers["dualface"]`` (:data:`RENDERER_NAME`);
    nothing is returned, so the call leaves no output in the chapter.
    """
    pio.renderers[RENDERER_NAME] = DualfaceRenderer(config=config)
    pio.renderers.default = RENDERER_NAME


# --------------------------------------------------------------------------- validation
def _points(name: str, a: Any, n: int | None = None) -> np.ndarray:
    """(N, 3) finite points (:func:`dualface_lite.checks.points`), float32 unless given as float64."""
    arr = checks.points(a, name, n=n, dtype=np.float64)
    return arr if np.asarray(a).dtype == np.float64 else arr.astype(np.float32)


def _triangles(triangles: Any, n_vertices: int) -> np.ndarray:
    return checks.triangles(triangles, n_vertices).astype(np.int32)


def _vertex_colors(colors: Any, n: int) -> list[str]:
    rgb = np.rint(checks.colors01(colors, n) * 255.0).astype(np.int64)
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


# --------------------------------------------------------------------------- steps (slider / menu)
CONTROLS = ("menu", "slider")


def _typed_array(a: np.ndarray) -> dict[str, str]:
    """A 1-D numeric array as plotly's typed-array spec ``{"dtype", "bdata"}`` (base64).

    plotly.py writes trace data this way already; layout values (slider / menu ``args``) would
    otherwise become JSON lists of 17-digit floats, several times larger.  plotly.js (2.28+, the
    book's and JupyterLab's 4.x included) decodes the spec when ``restyle`` sets a data array.
    """
    if np.issubdtype(a.dtype, np.floating):
        a, dtype = a.astype("<f4"), "f4"  # display precision; mesh_figure draws float32 too
    else:  # integers that fit int32 (checked by the caller)
        a, dtype = a.astype("<i4"), "i4"
    return {"dtype": dtype, "bdata": base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")}


#: Numeric arrays at least this long go into slider / menu args as typed arrays; shorter ones
#: (e.g. an info_array such as ``domain.x``, which plotly.js does not decode) stay JSON lists.
TYPED_ARRAY_MIN = 16


def _restyle_value(value: Any) -> list:
    """One restyle value, wrapped so that plotly.js applies it whole to every listed trace.

    ``Plotly.restyle(gd, {x: [arr]}, [0, 1])`` gives ``arr`` to traces 0 and 1; without the
    wrapping list an array would be spread over the traces, one element each.
    """
    if isinstance(value, (list, tuple)):
        value = np.asarray(value) if value and all(
            isinstance(x, (int, float, np.number)) and not isinstance(x, bool) for x in value
        ) else list(value)
    if isinstance(value, np.ndarray):
        if value.ndim == 1 and value.size >= TYPED_ARRAY_MIN and value.dtype != bool and (
            np.issubdtype(value.dtype, np.number) and not np.issubdtype(value.dtype, np.complexfloating)
        ):
            if np.issubdtype(value.dtype, np.integer) and value.size and not (
                np.iinfo(np.int32).min <= value.min() and value.max() <= np.iinfo(np.int32).max
            ):
                return [value.tolist()]
            return [_typed_array(value)]
        return [value.tolist()]
    if isinstance(value, list):
        return [value]
    if isinstance(value, np.generic):
        value = value.item()
    return [value]


def add_steps(
    fig,
    labels: Sequence[str],
    updates: Sequence[dict[str, Any]],
    traces: int | Sequence[int] = 0,
    control: str = "menu",
    active: int = 0,
    prefix: str = "",
):
    """Add a slider or a dropdown menu to ``fig`` that steps through trace updates.

    Each step applies one plotly ``"restyle"``: ``updates[k]`` maps a trace property (``"x"``,
    ``"intensity"``, ``"marker.color"``, ...) to its new value (a numpy array, a list or a scalar),
    set whole on every trace in ``traces``.  Everything is in the figure's JSON, so the control
    works in the static book (no kernel) as well as in JupyterLab.

    Parameters
    ----------
    fig:
        A ``plotly.graph_objects.Figure``; modified in place (its existing sliders / menus are
        kept, the new control is appended).
    labels:
        One label per step (shown on the slider / as the menu entries).
    updates:
        One dict per step, ``{property: new value}``.
    traces:
        Index (or list of indices) into ``fig.data`` of the trace(s) to restyle.
    control:
        ``"menu"`` (a dropdown) or ``"slider"``.
    active:
        Index of the step the figure shows now (the control starts there; ``add_steps`` does
        not apply it: build ``fig`` in that state).
    prefix:
        Text in front of the current value (slider) or of every menu entry, e.g. ``"step: "``.

    Returns
    -------
    The same ``fig``.

    Raises
    ------
    ValueError
        Empty or mismatched ``labels`` / ``updates``, an update that is not a non-empty dict, an
        unknown ``control``, ``active`` out of range, or a trace index out of range.
    """
    labels = list(labels)
    updates = list(updates)
    if not labels:
        raise ValueError("labels is empty: a slider or menu needs at least one step")
    if len(labels) != len(updates):
        raise ValueError(
            f"labels and updates must have the same length (one update per step), "
            f"got {len(labels)} labels and {len(updates)} updates"
        )
    for k, u in enumerate(updates):
        if not isinstance(u, dict) or not u:
            raise ValueError(
                f"updates[{k}] must be a non-empty dict {{trace property: new value}}, got {u!r:.80}"
            )
        bad = [key for key in u if not isinstance(key, str) or not key]
        if bad:
            raise ValueError(f"updates[{k}] has keys that are not property names: {bad!r}")
    if control not in CONTROLS:
        raise ValueError(f"control must be one of {CONTROLS}, got {control!r}")
    if isinstance(active, bool) or not isinstance(active, (int, np.integer)):
        raise ValueError(f"active must be an integer step index, got {active!r}")
    if not 0 <= active < len(labels):
        raise ValueError(f"active must be a step index in 0..{len(labels) - 1}, got {active}")
    idx = [traces] if isinstance(traces, (int, np.integer)) else list(traces)
    if not idx or any(isinstance(t, bool) or not isinstance(t, (int, np.integer)) for t in idx):
        raise ValueError(f"traces must be a trace index or a non-empty list of them, got {traces!r}")
    n = len(fig.data)
    out = [int(t) for t in idx if not 0 <= t < n]
    if out:
        raise ValueError(
            f"trace index {out} out of range: the figure has {n} trace(s) (indices 0..{n - 1})"
        )
    idx = [int(t) for t in idx]

    def args(u: dict[str, Any]) -> list:
        return [{key: _restyle_value(val) for key, val in u.items()}, idx]

    if control == "slider":
        new = dict(
            active=int(active),
            currentvalue=dict(prefix=prefix),
            pad=dict(t=30, b=10),
            steps=[dict(label=str(lab), method="restyle", args=args(u)) for lab, u in zip(labels, updates)],
        )
        fig.update_layout(sliders=list(fig.layout.sliders or ()) + [new])
    else:
        new = dict(
            type="dropdown",
            active=int(active),
            direction="down",
            x=0.0, y=1.0, xanchor="left", yanchor="top",  # top left of the plot, below the title
            pad=dict(l=4, t=4),
            buttons=[dict(label=f"{prefix}{lab}", method="restyle", args=args(u))
                     for lab, u in zip(labels, updates)],
        )
        fig.update_layout(updatemenus=list(fig.layout.updatemenus or ()) + [new])
    return fig


def _one_per_step(items: Any, name: str, shape: str, ndim: int, n_steps: int, unit: str) -> list:
    """``items`` as a list of one ``shape`` array per step; one ``ndim`` array alone is refused."""
    if isinstance(items, np.ndarray) and items.ndim == ndim:
        raise ValueError(f"{name} must be a list of {shape} arrays, one per step, "
                         f"got one array of shape {items.shape}")
    items = list(items)
    if len(items) != n_steps:
        raise ValueError(f"{name} must hold one {shape} array per label: {n_steps} labels, {len(items)} {unit}")
    return items


def mesh_steps_figure(
    labels: Sequence[str],
    vertices: Sequence[Any],
    triangles: Any,
    intensities: Sequence[Any] | None = None,
    *,
    control: str = "slider",
    active: int = 0,
    prefix: str = "",
    intensity_range: tuple[float, float] | None = None,
    **mesh_figure_kwargs: Any,
):
    """A mesh that steps through several vertex sets (and per-vertex values) with a slider or menu.

    The figure is :func:`mesh_figure` of ``vertices[active]`` (heat map of ``intensities[active]``
    if given); the control swaps the mesh's x/y/z (and intensity) for those of another step.
    All steps share one colour scale: ``intensity_range`` if given, else min..max over all
    ``intensities``, so that colours compare across steps.

    Parameters
    ----------
    labels:
        One label per step.
    vertices:
        One (N, 3) array per step (same N; the mesh topology ``triangles`` is shared).
    triangles:
        (T, 3) vertex indices.
    intensities:
        Optional, one (N,) array per step.
    control, active, prefix:
        As in :func:`add_steps` (default a slider).
    intensity_range:
        ``(cmin, cmax)`` of the shared colour scale.
    **mesh_figure_kwargs:
        Passed to :func:`mesh_figure` (``title``, ``colorscale``, ``colorbar_title``, ``height``,
        ``colors``, ``landmarks``, ...).  Landmarks given as vertex indices are drawn on
        ``vertices[active]`` and do not move with the control.

    Returns
    -------
    plotly.graph_objects.Figure

    Raises
    ------
    ValueError
        Empty or mismatched ``labels`` / ``vertices`` / ``intensities``, vertex sets of different
        sizes, wrong shapes or NaN values, and everything :func:`add_steps` and
        :func:`mesh_figure` refuse.
    """
    labels = list(labels)
    if not labels:
        raise ValueError("labels is empty: a slider or menu needs at least one step")
    verts = _one_per_step(vertices, "vertices", "(N, 3)", 2, len(labels), "vertex sets")
    for key in ("intensity", "vertices", "triangles"):
        if key in mesh_figure_kwargs:
            hint = " (pass intensities, one array per step)" if key == "intensity" else ""
            raise ValueError(f"mesh_steps_figure does not take {key}= as a keyword{hint}")
    if isinstance(active, bool) or not isinstance(active, (int, np.integer)) or not 0 <= active < len(labels):
        raise ValueError(f"active must be a step index in 0..{len(labels) - 1}, got {active!r}")
    verts = [_points(f"vertices[{k}]", v) for k, v in enumerate(verts)]
    n = verts[0].shape[0]
    for k, v in enumerate(verts):
        if v.shape[0] != n:
            raise ValueError(
                f"all vertex sets must have the same number of vertices: vertices[0] has {n}, "
                f"vertices[{k}] has {v.shape[0]}"
            )
    vals = None
    if intensities is not None:
        vals = _one_per_step(intensities, "intensities", "(N,)", 1, len(labels), "arrays")
        if mesh_figure_kwargs.get("colors") is not None:
            raise ValueError("give either colors (RGB per vertex) or intensities (per step), not both")
        vals = [_intensity(v, n) for v in vals]
        if intensity_range is None:
            lo = float(min(v.min() for v in vals))
            hi = float(max(v.max() for v in vals))
            if not hi > lo:  # all values equal: any range shows them, one colour
                lo, hi = lo - 0.5, hi + 0.5
            intensity_range = (lo, hi)
    elif intensity_range is not None:
        raise ValueError("intensity_range needs intensities")

    if control == "slider" and "height" not in mesh_figure_kwargs:
        mesh_figure_kwargs["height"] = 540  # mesh_figure's 450 px plus the slider below the scene
    fig = mesh_figure(
        verts[active], triangles,
        intensity=None if vals is None else vals[active],
        intensity_range=intensity_range,
        **mesh_figure_kwargs,
    )
    updates = []
    for k, v in enumerate(verts):
        u = {"x": v[:, 0], "y": v[:, 1], "z": v[:, 2]}
        if vals is not None:
            u["intensity"] = vals[k]
        updates.append(u)
    return add_steps(fig, labels, updates, traces=0, control=control, active=active, prefix=prefix)


# --------------------------------------------------------------------------- static evaluation figures
def error_image(vertices: Any, triangles: Any, values: Any, vmax: float, *, size: int = 180,
                cmap: str = "jet") -> np.ndarray:
    """A frontal render (``size`` x ``size`` uint8 RGB, white background) of a face mesh whose
    vertices are coloured by ``values`` (N,) on the scale 0..``vmax`` (e.g. the eq. (7) heat map,
    ``vmax=10``), lightly shaded so that the shape reads."""
    import matplotlib

    from . import camera, render

    V = _points("vertices", vertices)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.shape != (len(V),) or not np.all(np.isfinite(v)):
        raise ValueError(f"values must hold one finite number per vertex ({len(V)}), got shape {v.shape}")
    if not (np.isfinite(vmax) and vmax > 0):
        raise ValueError(f"vmax must be a positive number, got {vmax!r}")
    centre = (V.max(0) + V.min(0)) / 2
    extent = float(max(np.ptp(V[:, 0]), np.ptp(V[:, 1])))
    cam = camera.orthographic_camera(size, size, scale=0.92 * size / extent, target=centre)
    rgb = matplotlib.colormaps[cmap](np.clip(v / vmax, 0, 1))[:, :3]
    light = render.Lighting.directional((0.3, 0.4, 1.0), ambient=0.55, strength=0.5)
    return render.render(cam, V, _triangles(triangles, len(V)), rgb, light, background=(255, 255, 255)).image


def gallery_figure(photos: Sequence[Any], renders: Sequence[Sequence[Any]], methods: Sequence[str],
                   numbers: Any = None, *, row_labels: Sequence[str] | None = None, vmax: float = 10.0,
                   cmap: str = "jet"):
    """The layout of the paper's Figs. 4 and 7-9: one row per test face, its photo, then one
    render per method (:func:`error_image`), titled with the method and ``numbers[row, method]``
    (the normalised mean error of eq. (7)). Returns a ``matplotlib.figure.Figure``."""
    import matplotlib.pyplot as plt

    rows, cols = len(photos), len(methods)
    if rows == 0 or len(renders) != rows or any(len(r) != cols for r in renders):
        raise ValueError(f"renders must hold {cols} images for each of the {rows} photos")
    num = None if numbers is None else np.asarray(numbers, dtype=np.float64)
    if num is not None and num.shape != (rows, cols):
        raise ValueError(f"numbers must have shape ({rows}, {cols}), got {num.shape}")
    fig, ax = plt.subplots(rows, cols + 1, figsize=(1.75 * (cols + 1) + 0.6, 1.85 * rows + 0.3), squeeze=False)
    for i in range(rows):
        ax[i, 0].imshow(photos[i])
        if row_labels is not None:
            ax[i, 0].set_title(row_labels[i], fontsize=8)
        for j in range(cols):
            ax[i, j + 1].imshow(renders[i][j])
            title = methods[j] if num is None else f"{methods[j]}\n{num[i, j]:.2f}"
            ax[i, j + 1].set_title(title, fontsize=8)
    for a in ax.flat:
        a.axis("off")
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, vmax))
    fig.colorbar(sm, ax=ax.ravel().tolist(), shrink=0.6, pad=0.01, label="normalised error (eq. 7)")
    return fig


def ced_figure(errors: dict, *, title: str = "", xlabel: str = "mean error (mm)", counts: bool = True):
    """Fig. 6: the cumulative error distribution of each method, ``errors`` {method: (M,) mm}.
    The y-axis counts the faces whose error is at most x (the paper's), or their share."""
    import matplotlib.pyplot as plt

    from .metrics import ced

    if not errors:
        raise ValueError("errors must hold at least one method")
    top = max(float(np.max(e)) for e in errors.values())
    x = np.linspace(0.0, top * 1.02, 300)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, e in errors.items():
        ax.plot(*ced(e, x, counts=counts), label=name)
    n = len(next(iter(errors.values())))
    ax.set(xlabel=xlabel, ylabel=f"faces (of {n}) with a smaller error" if counts else "share of faces",
           title=title, xlim=(0, x[-1]))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def condition_figure(table: dict, *, title: str = "", paper: dict | None = None):
    """The per-condition means with their intervals: ``table`` {method: {condition: Interval}}
    (:meth:`dualface_lite.evaluation.Evaluation.table`), one group of bars per condition.
    ``paper`` {method: mm} adds the paper's Table III as markers on the "all" group."""
    import matplotlib.pyplot as plt

    methods = list(table)
    if not methods:
        raise ValueError("table must hold at least one method")
    conds = list(table[methods[0]])
    w = 0.8 / len(methods)
    marked = False
    fig, ax = plt.subplots(figsize=(1.9 * len(conds) + 2, 3.6))
    for j, m in enumerate(methods):
        x = np.arange(len(conds)) + (j - (len(methods) - 1) / 2) * w
        mean = np.array([table[m][c].mean for c in conds])
        err = np.array([[table[m][c].mean - table[m][c].low for c in conds],
                        [table[m][c].high - table[m][c].mean for c in conds]])
        err = np.nan_to_num(err)   # a condition with one face has no interval
        ax.bar(x, mean, w, yerr=err, capsize=2, label=m)
        if paper and m in paper:
            ax.plot(x[-1], paper[m], "kD", ms=5, label=None if marked else "the paper (FRGC)")
            marked = True
    ax.set_xticks(np.arange(len(conds)), conds)
    ax.set(ylabel="mean vertex error (mm)", title=title)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
