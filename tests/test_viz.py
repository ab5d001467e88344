"""dualface_lite.viz: the HTML the offline book depends on, mesh_figure's input checks, and the
slider / menu helpers (add_steps, mesh_steps_figure).

No browser here: tests/test_book_browser.py checks that the figures really draw in chromium.
"""
from __future__ import annotations

import base64
import json
import re

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from dualface_lite import viz

PLOTLY_MIME = "application/vnd.plotly.v1+json"


# --------------------------------------------------------------------------- helpers
def _tetra(shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], dtype=np.float32) + shift
    tri = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    return v, tri


def _decode(value):
    """A restyle value as written by add_steps (typed-array spec or plain JSON) -> numpy / scalar."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]).newbyteorder("<"))
    if isinstance(value, list):
        return np.asarray(value)
    return value


def _steps(fig, control: str):
    """[(label, {prop: decoded value}, traces)] of the last slider / menu of ``fig`` (as JSON)."""
    layout = json.loads(fig.to_json())["layout"]
    if control == "slider":
        items = layout["sliders"][-1]["steps"]
    else:
        items = layout["updatemenus"][-1]["buttons"]
    out = []
    for item in items:
        assert item["method"] == "restyle"
        update, traces = item["args"]
        for prop, wrapped in update.items():
            assert isinstance(wrapped, list) and len(wrapped) == 1, (
                f"{prop}: restyle value must be wrapped in a one-element list, got {wrapped!r:.80}"
            )
        out.append((item["label"], {p: _decode(w[0]) for p, w in update.items()}, traces))
    return out


@pytest.fixture
def default_renderer():
    """Restore plotly's default renderer after a test that changes it."""
    before = pio.renderers.default
    yield
    pio.renderers.default = before


# --------------------------------------------------------------------------- the book's HTML
def test_renderer_html_is_a_div_and_newplot_without_plotlyjs():
    v, tri = _tetra()
    fig = viz.mesh_figure(v, tri, title="tetra")
    bundle = viz.DualfaceRenderer().to_mimebundle(fig.to_dict())
    assert set(bundle) == {PLOTLY_MIME, "text/html", "text/plain"}
    html = bundle["text/html"]
    assert html.lstrip().startswith("<div"), html[:80]
    assert html.count('class="plotly-graph-div"') == 1
    assert "Plotly.newPlot(" in html
    # plotly.js itself is not in the output: the book page loads it once, in <head>
    assert len(html) < 100_000, f"{len(html)} characters: plotly.js inlined?"
    assert "plotly.js v" not in html and "define(" not in html and "require(" not in html
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.I)
    assert not re.search(r"https?://", html), re.findall(r"https?://\S{0,60}", html)
    # the plotly JSON part is for JupyterLab (plotly's extension); it holds the same figure
    assert bundle[PLOTLY_MIME]["data"][0]["type"] == "mesh3d"
    assert bundle[PLOTLY_MIME]["config"] == viz.DEFAULT_PLOTLY_CONFIG
    assert bundle["text/plain"] == "<plotly figure: tetra [mesh3d]>"


def test_use_plotly_renderer_selects_the_renderer(default_renderer):
    v, tri = _tetra()
    fig = viz.mesh_figure(v, tri)
    pio.renderers.default = "plotly_mimetype"
    # _repr_mimebundle_ (IPython's display protocol) is what a notebook shows for `fig` as the
    # last expression of a cell; it asks plotly's default renderer
    data = fig._repr_mimebundle_()
    assert "Plotly.newPlot" not in data.get("text/html", ""), "test set-up: expected plotly's own renderer"

    assert viz.use_plotly_renderer() is None  # leaves no output in the chapter
    assert pio.renderers.default == viz.RENDERER_NAME
    assert isinstance(pio.renderers[viz.RENDERER_NAME], viz.DualfaceRenderer)
    data = fig._repr_mimebundle_()
    assert "Plotly.newPlot(" in data["text/html"] and PLOTLY_MIME in data
    assert not re.search(r"https?://", data["text/html"])

    viz.use_plotly_renderer(config={"displaylogo": True})
    data = fig._repr_mimebundle_()
    assert '"displaylogo": true' in data["text/html"]


def test_renderer_html_uses_the_figure_height():
    v, tri = _tetra()
    html = viz.DualfaceRenderer().to_mimebundle(viz.mesh_figure(v, tri, height=333).to_dict())["text/html"]
    assert html.lstrip().startswith('<div style="height:333px'), html[:80]


# --------------------------------------------------------------------------- mesh_figure
def test_mesh_figure_defaults():
    v, tri = _tetra()
    fig = viz.mesh_figure(v, tri, landmarks=np.array([0, 3]))
    mesh, lm = fig.data
    assert mesh.type == "mesh3d" and lm.type == "scatter3d"
    np.testing.assert_array_equal(np.asarray(mesh.x), v[:, 0])
    np.testing.assert_array_equal(np.asarray(mesh.i), tri[:, 0])
    np.testing.assert_array_equal(np.asarray(lm.z), v[[0, 3], 2])
    assert fig.layout.scene.camera.up.to_plotly_json() == {"x": 0, "y": 1, "z": 0}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(vertices=np.zeros((4, 2))), r"vertices must have shape \(N, 3\)"),
        (dict(vertices=np.array([["a", "b", "c"]] * 4)), "numeric"),
        (dict(vertices=np.zeros((2, 3))), "at least 3"),
        (dict(vertices=np.where(np.eye(4, 3) > 0, np.nan, 1.0)), "NaN or infinite"),
        (dict(triangles=np.array([[0, 1, 4]])), r"out of range: found \[0, 4\], expected \[0, 3\]"),
        (dict(triangles=np.array([[0, 1, -1]])), r"out of range: found \[-1, 1\], expected \[0, 3\]"),
        (dict(triangles=np.array([[0, 1, 2.5]])), "integer vertex indices"),
        (dict(triangles=np.zeros((0, 3), int)), "empty"),
        (dict(triangles=np.array([0, 1, 2])), r"\(T, 3\)"),
        (dict(colors=np.zeros((4, 3)), intensity=np.zeros(4)), "not both"),
        (dict(colors=np.full((4, 3), 2.0)), r"\[0, 1\]"),
        (dict(colors=np.zeros((3, 3))), r"shape \(4, 3\)"),
        (dict(colors=np.full((4, 3), 300)), "0..255"),
        (dict(intensity=np.zeros(5)), r"shape \(4,\)"),
        (dict(intensity=np.array([0, 1, np.inf, 2])), "NaN or infinite"),
        (dict(intensity=np.zeros(4), intensity_range=(1, 1)), "cmin < cmax"),
        (dict(landmarks=np.array([0, 9])), r"0\.\.3"),
        (dict(landmarks=np.zeros((2, 2))), r"\(N, 3\)"),
        (dict(height=0), "positive"),
    ],
)
def test_mesh_figure_input_errors(kwargs, message):
    v, tri = _tetra()
    args = dict(vertices=v, triangles=tri)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        viz.mesh_figure(**args)


# --------------------------------------------------------------------------- add_steps
@pytest.mark.parametrize("control", ["slider", "menu"])
def test_add_steps_structure(control):
    v, tri = _tetra()
    fig = viz.mesh_figure(v, tri, intensity=np.zeros(4))
    moved = [v, v * 2.0]
    values = [np.zeros(4), np.arange(4.0)]
    updates = [{"x": m[:, 0], "intensity": val, "opacity": op} for m, val, op in zip(moved, values, (1, 0.5))]
    out = viz.add_steps(fig, ["a", "b"], updates, control=control, active=1, prefix="step: ")
    assert out is fig
    steps = _steps(fig, control)
    assert [t for *_, t in steps] == [[0], [0]]
    for (label, update, _), m, val, op in zip(steps, moved, values, (1, 0.5)):
        np.testing.assert_allclose(update["x"], m[:, 0], rtol=1e-6)
        np.testing.assert_allclose(update["intensity"], val, rtol=1e-6)
        assert update["opacity"] == op
    if control == "slider":
        (slider,) = fig.layout.sliders
        assert [s.label for s in slider.steps] == ["a", "b"]
        assert slider.active == 1 and slider.currentvalue.prefix == "step: "
        assert not fig.layout.updatemenus
    else:
        (menu,) = fig.layout.updatemenus
        assert [b.label for b in menu.buttons] == ["step: a", "step: b"]
        assert menu.active == 1 and menu.type == "dropdown"
        assert not fig.layout.sliders


def test_add_steps_several_traces_lists_and_strings():
    fig = go.Figure([go.Scatter(y=[1, 2]), go.Scatter(y=[3, 4]), go.Scatter(y=[5, 6])])
    viz.add_steps(
        fig, ["red", "blue"],
        [{"marker.color": "red", "y": [1, 2]}, {"marker.color": "blue", "y": [7.5, 8.5]}],
        traces=[0, 2], control="menu",
    )
    steps = _steps(fig, "menu")
    assert [t for *_, t in steps] == [[0, 2], [0, 2]]
    assert steps[0][1]["marker.color"] == "red"
    np.testing.assert_allclose(steps[1][1]["y"], [7.5, 8.5])
    # a list of strings stays a list, applied whole to every trace
    viz.add_steps(fig, ["x"], [{"text": ["p", "q"]}], traces=1, control="slider")
    assert fig.layout.sliders[0].steps[0].args[0]["text"] == [["p", "q"]]
    # the earlier control is kept
    assert len(fig.layout.updatemenus) == 1 and len(fig.layout.sliders) == 1


def test_add_steps_large_arrays_are_compact():
    """Numeric arrays go into the figure as typed arrays (base64), not as 17-digit JSON floats."""
    fig = go.Figure(go.Scatter(y=np.zeros(3000)))
    values = np.random.default_rng(0).normal(size=3000) * 100
    viz.add_steps(fig, ["only"], [{"y": values}], control="slider")
    text = json.dumps(json.loads(fig.to_json())["layout"]["sliders"])
    assert len(text) < 3000 * 6, f"{len(text)} characters for 3000 values"
    np.testing.assert_allclose(_steps(fig, "slider")[0][1]["y"], values, rtol=1e-6)


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(labels=[], updates=[]), "labels is empty"),
        (dict(labels=["a", "b"], updates=[{"x": [1]}]), "same length"),
        (dict(labels=["a"], updates=[{}]), "non-empty dict"),
        (dict(labels=["a"], updates=[[1, 2]]), "non-empty dict"),
        (dict(control="buttons"), "control must be one of"),
        (dict(active=2), r"active must be a step index in 0\.\.1"),
        (dict(active=-1), r"active must be a step index in 0\.\.1"),
        (dict(active=0.5), "active must be an integer"),
        (dict(traces=1), r"trace index \[1\] out of range: the figure has 1 trace"),
        (dict(traces=[0, 5]), r"trace index \[5\] out of range"),
        (dict(traces=-1), "out of range"),
        (dict(traces=[]), "non-empty list"),
        (dict(traces="0"), "trace index"),
    ],
)
def test_add_steps_errors(args, message):
    fig = go.Figure(go.Scatter(y=[1, 2]))
    kw = dict(labels=["a", "b"], updates=[{"y": [1, 2]}, {"y": [2, 1]}])
    kw.update(args)
    with pytest.raises(ValueError, match=message):
        viz.add_steps(fig, **kw)
    assert not fig.layout.sliders and not fig.layout.updatemenus, "a refused call must not change fig"


# --------------------------------------------------------------------------- mesh_steps_figure
@pytest.mark.parametrize("control", ["slider", "menu"])
def test_mesh_steps_figure(control):
    verts = [_tetra(s)[0] for s in (0.0, 1.0, 2.0)]
    tri = _tetra()[1]
    vals = [np.arange(4.0), np.arange(4.0) + 1, -np.arange(4.0)]
    fig = viz.mesh_steps_figure(["a", "b", "c"], verts, tri, vals, control=control, active=1,
                                prefix="s = ", title="three", colorscale="Hot_r")
    (mesh,) = fig.data
    np.testing.assert_allclose(np.asarray(mesh.x), verts[1][:, 0])  # drawn at the active step
    np.testing.assert_allclose(np.asarray(mesh.intensity), vals[1])
    assert (mesh.cmin, mesh.cmax) == (-3.0, 4.0)  # one colour range over every step
    assert fig.layout.title.text == "three" and mesh.colorscale[0][1] == "rgb(255,255,255)"  # Hot_r
    steps = _steps(fig, control)
    assert [s[0] for s in steps] == (["a", "b", "c"] if control == "slider" else ["s = a", "s = b", "s = c"])
    for (_, update, traces), v, val in zip(steps, verts, vals):
        assert traces == [0] and set(update) == {"x", "y", "z", "intensity"}
        for k, axis in enumerate("xyz"):
            np.testing.assert_allclose(update[axis], v[:, k], rtol=1e-6)
        np.testing.assert_allclose(update["intensity"], val, rtol=1e-6)


def test_mesh_steps_figure_without_intensities_and_given_range():
    verts = [_tetra(s)[0] for s in (0.0, 5.0)]
    tri = _tetra()[1]
    fig = viz.mesh_steps_figure(["a", "b"], verts, tri)
    assert fig.data[0].intensity is None
    assert {p for p in _steps(fig, "slider")[0][1]} == {"x", "y", "z"}
    fig = viz.mesh_steps_figure(["a", "b"], verts, tri, [np.zeros(4), np.ones(4)], intensity_range=(0, 10))
    assert (fig.data[0].cmin, fig.data[0].cmax) == (0, 10)
    # all values equal: still a valid range
    fig = viz.mesh_steps_figure(["a", "b"], verts, tri, [np.ones(4), np.ones(4)])
    assert fig.data[0].cmin < 1 < fig.data[0].cmax


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(labels=[]), "labels is empty"),
        (dict(labels=["a"]), r"one \(N, 3\) array per label: 1 labels, 2 vertex sets"),
        (dict(vertices=np.zeros((4, 3))), "a list of"),
        (dict(vertices=[np.zeros((4, 3)), np.zeros((5, 3))]), r"vertices\[0\] has 4, vertices\[1\] has 5"),
        (dict(vertices=[np.zeros((4, 3)), np.zeros((4, 2))]), r"vertices\[1\] must have shape \(N, 3\)"),
        (dict(intensities=[np.zeros(4)]), r"one \(N,\) array per label"),
        (dict(intensities=np.zeros(4)), "a list of"),
        (dict(intensities=[np.zeros(4), np.zeros(3)]), r"shape \(4,\)"),
        (dict(intensities=None, intensity_range=(0, 1)), "needs intensities"),
        (dict(intensity=np.zeros(4)), "pass intensities"),
        (dict(colors=np.zeros((4, 3))), "not both"),
        (dict(active=2), r"0\.\.1"),
        (dict(control="dial"), "control must be one of"),
        (dict(triangles=np.array([[0, 1, 7]])), r"out of range: found \[0, 7\], expected \[0, 3\]"),
    ],
)
def test_mesh_steps_figure_errors(args, message):
    v, tri = _tetra()
    kw = dict(labels=["a", "b"], vertices=[v, v + 1], triangles=tri, intensities=[np.zeros(4), np.ones(4)])
    kw.update(args)
    with pytest.raises(ValueError, match=message):
        viz.mesh_steps_figure(**kw)


def test_add_steps_short_lists_stay_json_lists():
    """Short numeric values (info arrays such as domain.x) are not typed arrays plotly.js can't read."""
    fig = go.Figure(go.Scatter(y=[1, 2]))
    viz.add_steps(fig, ["a"], [{"y": [1.5, 2.5], "x": np.arange(20)}], control="menu")
    args = json.loads(fig.to_json())["layout"]["updatemenus"][0]["buttons"][0]["args"][0]
    assert args["y"] == [[1.5, 2.5]]
    assert args["x"][0]["dtype"] == "i4"
    np.testing.assert_array_equal(_decode(args["x"][0]), np.arange(20))
