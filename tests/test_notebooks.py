"""The chapters, as the reader gets them: every figure a chapter's code makes is in the book.

The chapters are *not* executed again here: the book build (``make book``) already ran them and
keeps the executed notebooks in its jupyter-cache (``_build/.jupyter_cache``).  This file reads
them from there (``jupyter_cache.get_cache(...).merge_match_into_notebook``, the same match the
book build uses: code cells + kernelspec) and executes a chapter (nbclient) only when its cached
execution is missing or stale (its code changed since the last build).

Per chapter:

* the number of plotly figures (outputs whose ``text/html`` holds ``Plotly.newPlot``) and of
  images (``image/png``) equals :data:`EXPECTED_FIGURES`, the figures its code makes;
* a plotly output with only ``application/vnd.plotly.v1+json`` (no ``text/html``) fails: the
  chapter forgot ``viz.use_plotly_renderer()``; so does a figure that inlines plotly.js or loads
  it from a CDN;
* an image of one flat colour fails (a blank figure), and so does any error output;
* a glued number is a Python number, not a numpy scalar (myst-nb cannot format the latter's
  ``np.float64(...)`` repr: a build warning, and the raw repr in the prose);
* every widget view has its saved state (the static book draws widgets from it), and no saved
  progress bar stopped half-way (the book would show it frozen);
* the built page ``_build/html/notebooks/<chapter>.html`` shows as many plotly figures and output
  images as the executed notebook has.

The checking functions are unit-tested on crafted notebooks at the end of this file (a blank PNG,
a forgotten renderer run in a real kernel, a page that lost a figure), so the checks keep biting.
"""
from __future__ import annotations

import base64
import copy
import io
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
BUILD = ROOT / "_build"
CACHE = BUILD / ".jupyter_cache"  # jupyter-book's default execute.cache ("" in _config.yml)
PAGES = BUILD / "html" / "notebooks"
CELL_TIMEOUT = 1200  # seconds, as execute.timeout in _config.yml: a hang guard (tests/hang_guard.py)

PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


@dataclass(frozen=True)
class Figures:
    plotly: int  # plotly figures: `fig` as the last expression of a cell, or fig.show()
    images: int  # matplotlib figures: plt.show()


#: The figures each chapter's code makes, by chapter number.  A new chapter needs a line here
#: (test_every_chapter_has_expected_figures says so); count its cells that end in a plotly
#: figure (or call .show() on one) and its plt.show() calls.
EXPECTED_FIGURES: dict[str, Figures] = {
    "00": Figures(plotly=1, images=1),  # nose pushed back, camera and side views | three photos
    "01": Figures(plotly=5, images=4),  # mean face, mode explorer, blendshapes, PCA residual, scan
    #                                     | sigma bars, render buffers, photo gallery, photo-like looks
    "02": Figures(plotly=4, images=3),  # S0 error by lambda (slider), typical and failure heat maps,
    #                                     S0 colours | landmarks, lambda curve, jaw
    "03": Figures(plotly=3, images=2),  # NICP steps, S_hat error, test-split error | range image,
    #                                     one person's captures and photos
    "04": Figures(plotly=3, images=2),  # lip-patch graph, colour helps, median faces | curves, Fig. 3
    "05": Figures(plotly=2, images=2),  # residual spread, where the photo helps | crops, training curves
    "06": Figures(plotly=2, images=8),  # stages of one face, per-vertex error by method | Table III vs
    #                                     S_hat and vs the truth, CED, Fig. 4, Figs. 7-9, the prior by
    #                                     training people
    "07": Figures(plotly=2, images=3),  # the astronaut stage by stage, the PLY read back | detections and
    #                                     landmarks, a test photo with real textures, the texture
}


def _number(path: Path) -> str:
    return path.name[:2]


# --------------------------------------------------------------------------- checking functions
@dataclass
class OutputReport:
    """What a reader would see of one executed notebook's outputs."""

    plotly: list[str] = field(default_factory=list)  # where each plotly figure is
    images: list[str] = field(default_factory=list)  # where each PNG is
    problems: list[str] = field(default_factory=list)

    @property
    def counts(self) -> Figures:
        return Figures(plotly=len(self.plotly), images=len(self.images))


def _where(k: int, cell) -> str:
    first = next((ln for ln in "".join(cell.get("source", "")).splitlines() if ln.strip()), "")
    return f"cell {k} ({first[:60]!r})"


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def png_problem(data) -> str | None:
    """Why a PNG output is not a figure a reader can see (None if it is fine)."""
    from PIL import Image

    try:
        raw = base64.b64decode(_text(data))
        img = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), dtype=np.int16)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the finding
        return f"image/png does not decode: {exc}"
    h, w = img.shape[:2]
    if h < 10 or w < 10:
        return f"image is only {w}x{h} pixels"
    flat = img.reshape(-1, 3)
    packed = (flat[:, 0].astype(np.int32) << 16) | (flat[:, 1].astype(np.int32) << 8) | flat[:, 2]
    colours, counts = np.unique(packed, return_counts=True)
    top = int(colours[np.argmax(counts)])
    background = np.array([(top >> 16) & 255, (top >> 8) & 255, top & 255])
    differ = float((np.abs(flat - background).max(axis=1) > 8).mean())
    std = float(flat.std(axis=0).max())
    if differ < 0.005 or std < 1.0:
        return (f"image is one flat colour rgb{tuple(int(c) for c in background)} "
                f"({differ:.2%} of the pixels differ, pixel std {std:.2f}): a blank figure")
    return None


def plotly_html_problem(html: str) -> str | None:
    if re.search(r"<script[^>]*\bsrc\s*=", html, re.I) or re.search(r"https?://cdn", html):
        return "plotly figure loads a script from the network (the book is offline)"
    if "plotly.js v" in html or len(html) > 20_000_000:
        return "plotly figure inlines plotly.js (the book page loads it once, in <head>)"
    return None


def inspect_outputs(nb) -> OutputReport:
    """Count the plotly figures and images of an executed notebook and list what is wrong."""
    rep = OutputReport()
    state = ((nb.get("metadata", {}).get("widgets") or {}).get(WIDGET_STATE) or {}).get("state") or {}
    for k, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        where = _where(k, cell)
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "error":
                rep.problems.append(f"{where}: {out.get('ename')}: {out.get('evalue')}")
                continue
            if kind not in ("display_data", "execute_result"):
                continue
            data = out.get("data", {})
            glued = (out.get("metadata") or {}).get("scrapbook")
            if glued:
                plain = _text(data.get(glued.get("mime_prefix", "") + "text/plain", ""))
                if re.match(r"np\.\w+\(", plain):
                    rep.problems.append(
                        f"{where}: glue {glued.get('name')!r} holds a numpy scalar ({plain[:40]}); "
                        "myst-nb cannot format it for the prose (a build warning, the raw repr in "
                        "the text): glue float(...) or int(...)")
                continue
            html = _text(data.get("text/html", ""))
            if "Plotly.newPlot" in html:
                rep.plotly.append(where)
                problem = plotly_html_problem(html)
                if problem:
                    rep.problems.append(f"{where}: {problem}")
                fig = data.get(PLOTLY_MIME)
                if isinstance(fig, dict) and not fig.get("data"):
                    rep.problems.append(f"{where}: plotly figure without any trace")
            elif PLOTLY_MIME in data:
                rep.problems.append(
                    f"{where}: a plotly figure with only {PLOTLY_MIME} and no text/html: the chapter "
                    "shows figures without calling viz.use_plotly_renderer() first (call it once, "
                    "near the top), so the static book gets no figure from it"
                )
            if "image/png" in data:
                rep.images.append(where)
                problem = png_problem(data["image/png"])
                if problem:
                    rep.problems.append(f"{where}: {problem}")
            if WIDGET_VIEW in data:
                model_id = data[WIDGET_VIEW].get("model_id")
                if model_id not in state:
                    rep.problems.append(
                        f"{where}: widget {model_id} has no saved state in the notebook metadata, "
                        "so the static book cannot draw it"
                    )
                    continue
                for bar in _unfinished_progress_bars(state, model_id):
                    rep.problems.append(f"{where}: {bar}")
    return rep


def _unfinished_progress_bars(state: dict, model_id: str) -> list[str]:
    """Progress bars (tqdm's, in a saved widget) that stopped before their end: the book shows
    them frozen (and red when tqdm closed them early)."""
    found, todo, seen = [], [model_id], set()
    while todo:
        mid = todo.pop()
        if mid in seen or mid not in state:
            continue
        seen.add(mid)
        model = state[mid]
        st = model.get("state", {})
        if model.get("model_name") in ("FloatProgressModel", "IntProgressModel"):
            value, top = st.get("value", 0), st.get("max", 100)
            if value < top:
                found.append(
                    f"a progress bar stopped at {value:g}/{top:g} shows in the book (a tqdm bar of a "
                    "loop that ended early?): run it with progress=False in the chapter, or close the bar"
                )
        todo += [c.removeprefix("IPY_MODEL_") for c in st.get("children", []) if isinstance(c, str)]
    return found


class _PageCounter(HTMLParser):
    """Plotly figures (``plotly-graph-div``) and output images (``<img>`` in ``.cell_output``)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.plotly = 0
        self.images = 0
        self._stack: list[bool] = []  # per open <div>: is it (inside) a cell output?

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        inside = bool(self._stack and self._stack[-1])
        if tag == "div":
            self._stack.append(inside or "cell_output" in classes)
        if "plotly-graph-div" in classes:
            self.plotly += 1
        if tag == "img" and inside:
            self.images += 1

    def handle_endtag(self, tag):
        if tag == "div" and self._stack:
            self._stack.pop()


def page_counts(html: str) -> Figures:
    parser = _PageCounter()
    parser.feed(html)
    parser.close()
    return Figures(plotly=parser.plotly, images=parser.images)


# --------------------------------------------------------------------------- executed chapters
def _read(path: Path):
    return nbformat.read(path, as_version=4)


def from_book_cache(nb, cache_path: Path = CACHE):
    """The book build's executed version of ``nb`` (None if missing or stale)."""
    if not cache_path.is_dir():  # get_cache() would create an empty one
        return None
    from jupyter_cache import get_cache

    try:
        _, merged = get_cache(str(cache_path)).merge_match_into_notebook(nb)
    except KeyError:  # no cached execution of these code cells
        return None
    return merged


def execute(nb, cwd: Path):
    """Run a notebook (as the book build does: cwd = its folder); raises on the first cell error."""
    from nbclient import NotebookClient

    nb = copy.deepcopy(nb)
    NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


@dataclass
class Executed:
    nb: object
    from_cache: bool


_EXECUTED: dict[Path, Executed] = {}


def executed_chapter(path: Path) -> Executed:
    """From the book build's cache, or executed now when that is missing or stale (once per run)."""
    if path not in _EXECUTED:
        nb = _read(path)
        cached = from_book_cache(nb)
        _EXECUTED[path] = Executed(cached, True) if cached is not None else Executed(execute(nb, path.parent), False)
    return _EXECUTED[path]


# --------------------------------------------------------------------------- tests: the chapters
def test_there_are_chapters():
    assert len(NOTEBOOKS) >= 2


def test_every_chapter_has_expected_figures():
    numbers = [_number(p) for p in NOTEBOOKS]
    missing = [p.name for p in NOTEBOOKS if _number(p) not in EXPECTED_FIGURES]
    assert not missing, f"add the figure counts of {missing} to EXPECTED_FIGURES in {Path(__file__).name}"
    extra = sorted(set(EXPECTED_FIGURES) - set(numbers))
    assert not extra, f"EXPECTED_FIGURES lists chapters that do not exist: {extra}"
    assert len(set(numbers)) == len(numbers), f"two chapters share a number: {numbers}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_without_outputs(path):
    """Committed clean, so JupyterLab opens a chapter with nothing to distrust (no outputs to
    sanitise) and no widget views to miss (no saved widget state), on the kit's kernel."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, f"{path.name} has outputs"
    assert "widgets" not in nb["metadata"], f"{path.name} holds saved widget state"
    assert "signature" not in nb["metadata"], f"{path.name} holds a trust signature"
    assert nb["metadata"]["kernelspec"]["name"] == "python3", nb["metadata"]["kernelspec"]


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_book_download_is_the_chapter(path):
    """The .ipynb a reader downloads from a chapter's page is the chapter's notebook, byte for byte
    (Jupyter Book links the source it built from)."""
    page = BUILD / "html" / "notebooks" / f"{path.stem}.html"
    assert page.exists(), f"{page} is missing: build the book first (make book)"
    links = set(re.findall(r'href="([^"]+\.ipynb)"', page.read_text()))
    assert links, f"{page.name} offers no .ipynb download"
    for link in links:
        target = (page.parent / link).resolve()
        assert target.name == path.name and target.read_bytes() == path.read_bytes(), (link, target)


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_chapter_figures(path):
    ex = executed_chapter(path)
    rep = inspect_outputs(ex.nb)
    source = "the book build's cache" if ex.from_cache else "a fresh run (the book's cache is stale)"
    assert not rep.problems, f"{path.name} (executed: {source}):\n  " + "\n  ".join(rep.problems)
    expected = EXPECTED_FIGURES.get(_number(path))
    assert expected is not None, f"no EXPECTED_FIGURES entry for {path.name}"
    assert rep.counts == expected, (
        f"{path.name}: its code makes {expected}, the executed chapter has {rep.counts}\n"
        f"  plotly: {rep.plotly}\n  images: {rep.images}\n"
        "(a figure got lost, or the chapter changed: then update EXPECTED_FIGURES)"
    )


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_built_page_shows_every_figure(path):
    page = PAGES / f"{path.stem}.html"
    if not page.is_file():
        pytest.fail(f"{page.relative_to(ROOT)} is missing: build the book first (make book)")
    ex = executed_chapter(path)
    assert ex.from_cache, (
        f"{path.name} changed since the book was built (its cached execution does not match): "
        "run `make book` again"
    )
    want = inspect_outputs(ex.nb).counts
    got = page_counts(page.read_text(encoding="utf-8"))
    assert got == want, f"{page.relative_to(ROOT)} shows {got}, the executed notebook has {want}"


# --------------------------------------------------------------------------- tests: the checks bite
def _png(colour_fn, size=(60, 80)) -> str:
    from PIL import Image

    h, w = size
    img = Image.fromarray(colour_fn(h, w).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _flat_png(colour=(255, 255, 255)) -> str:
    return _png(lambda h, w: np.broadcast_to(np.array(colour), (h, w, 3)))


def _plot_png() -> str:
    def draw(h, w):
        img = np.full((h, w, 3), 255)
        img[10:50, 20:25] = (31, 119, 180)  # a bar
        img[30:50, 40:45] = (255, 127, 14)
        return img

    return _png(draw)


def _crafted(*outputs_per_cell, widgets=None):
    nb = nbformat.v4.new_notebook()
    for k, outputs in enumerate(outputs_per_cell):
        cell = nbformat.v4.new_code_cell(f"cell_{k}()")
        cell.outputs = [nbformat.v4.new_output("display_data", data=d) for d in outputs]
        nb.cells.append(cell)
    if widgets is not None:
        nb.metadata["widgets"] = {WIDGET_STATE: {"state": {m: {} for m in widgets}, "version_major": 2}}
    return nb


def _plotly_bundle() -> dict:
    from dualface_lite import viz

    fig = viz.mesh_figure(np.eye(3) * 10, [[0, 1, 2]])
    return viz.DualfaceRenderer().to_mimebundle(fig.to_dict())


def test_check_passes_a_good_notebook():
    nb = _crafted([_plotly_bundle()], [{"image/png": _plot_png(), "text/plain": "<Figure>"}],
                  [{WIDGET_VIEW: {"model_id": "abc"}, "text/plain": "IntSlider()"}], widgets=["abc"])
    rep = inspect_outputs(nb)
    assert rep.problems == [] and rep.counts == Figures(plotly=1, images=1)


def test_check_fails_a_blank_image():
    for colour in ((255, 255, 255), (0, 0, 0), (12, 34, 56)):
        rep = inspect_outputs(_crafted([{"image/png": _flat_png(colour)}]))
        assert rep.counts.images == 1
        assert len(rep.problems) == 1 and "one flat colour" in rep.problems[0], rep.problems


def test_check_fails_a_plotly_figure_without_the_renderer():
    bundle = _plotly_bundle()
    del bundle["text/html"]  # what plotly's own default renderer emits
    rep = inspect_outputs(_crafted([bundle]))
    assert rep.counts.plotly == 0
    assert len(rep.problems) == 1 and "viz.use_plotly_renderer()" in rep.problems[0]


def test_check_fails_plotlyjs_inlined_or_from_a_cdn():
    bundle = _plotly_bundle()
    cdn = dict(bundle, **{"text/html": '<script src="https://cdn.plot.ly/plotly-3.0.1.min.js"></script>'
                          + bundle["text/html"]})
    inline = dict(bundle, **{"text/html": "<script>/** plotly.js v4.1.1 */</script>" + bundle["text/html"]})
    assert "network" in inspect_outputs(_crafted([cdn])).problems[0]
    assert "inlines plotly.js" in inspect_outputs(_crafted([inline])).problems[0]


def test_check_fails_errors_and_unsaved_widgets():
    nb = _crafted([{WIDGET_VIEW: {"model_id": "lost"}}])
    nb.cells[0].outputs.append(nbformat.v4.new_output("error", ename="ValueError", evalue="boom", traceback=[]))
    problems = inspect_outputs(nb).problems
    assert any("no saved state" in p for p in problems) and any("ValueError: boom" in p for p in problems)


def test_check_fails_a_glued_numpy_scalar():
    def glued(value):
        nb = _crafted([])
        nb.cells[0].outputs = [nbformat.v4.new_output(
            "display_data", data={"application/papermill.record/text/plain": repr(value)},
            metadata={"scrapbook": {"name": "c9_x", "mime_prefix": "application/papermill.record/"}})]
        return inspect_outputs(nb).problems

    assert glued(0.25) == [] and glued(3) == [] and glued("0.25 mm") == []
    (problem,) = glued(np.float64(0.25))
    assert "'c9_x'" in problem and "numpy scalar" in problem


def test_check_fails_an_unfinished_progress_bar():
    def bar(value):
        nb = _crafted([{WIDGET_VIEW: {"model_id": "box"}}], widgets=[])
        nb.metadata["widgets"][WIDGET_STATE]["state"] = {
            "box": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_label", "IPY_MODEL_bar"]}},
            "label": {"model_name": "HTMLModel", "state": {"value": "MRF prior: 15%"}},
            "bar": {"model_name": "FloatProgressModel", "state": {"value": value, "max": 300.0}},
        }
        return inspect_outputs(nb).problems

    assert bar(300.0) == []
    (problem,) = bar(44.0)
    assert "progress bar stopped at 44/300" in problem


def test_page_counts():
    html = """<html><body><div class="cell docutils container"><div class="cell_output docutils container">
      <div class="output text_html"><div style="height:450px"><div id="a" class="plotly-graph-div"></div></div></div>
      <img alt="_images/a.png" src="../_images/a.png" /></div></div>
      <p><img src="../_images/diagram.png" /></p>
      <div class="cell_output"><div><div><img src="../_images/b.png"/></div></div></div></body></html>"""
    assert page_counts(html) == Figures(plotly=1, images=2)


def _first_chapter_with_images() -> Path:
    for p in NOTEBOOKS:
        if EXPECTED_FIGURES.get(_number(p), Figures(0, 0)).images:
            return p
    pytest.fail("no chapter with an image")


@pytest.mark.notebooks
def test_blanking_a_real_figure_fails():
    """A copy of a real executed chapter with one PNG painted flat white fails the check."""
    path = _first_chapter_with_images()
    nb = copy.deepcopy(executed_chapter(path).nb)
    assert inspect_outputs(nb).problems == []
    out = next(o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if "image/png" in o.get("data", {}))
    out["data"]["image/png"] = _flat_png()
    problems = inspect_outputs(nb).problems
    assert len(problems) == 1 and "one flat colour" in problems[0], problems


@pytest.mark.notebooks
def test_a_real_page_that_lost_a_figure_fails():
    """The page check notices a figure missing from a (copy of a) built page."""
    path = _first_chapter_with_images()
    page = PAGES / f"{path.stem}.html"
    if not page.is_file():
        pytest.fail(f"{page.relative_to(ROOT)} is missing: build the book first (make book)")
    html = page.read_text(encoding="utf-8")
    want = inspect_outputs(executed_chapter(path).nb).counts
    assert page_counts(html) == want
    m = re.search(r"<img [^>]*_images/[^>]*>", html)
    assert m, "no output image in the page"
    assert page_counts(html[: m.start()] + html[m.end():]).images == want.images - 1


@pytest.mark.integration
def test_forgotten_renderer_in_a_real_kernel_fails(tmp_path):
    """Run a tiny chapter in a real kernel, once without and once with viz.use_plotly_renderer()."""
    show = [
        "import numpy as np\nfrom dualface_lite import viz",
        "viz.mesh_figure(np.eye(3) * 10, [[0, 1, 2]])",
        "viz.mesh_figure(np.eye(3) * 10, [[0, 1, 2]]).show()",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in show])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    rep = inspect_outputs(execute(nb, tmp_path))
    assert rep.counts.plotly == 0 and len(rep.problems) == 2, rep
    assert all("use_plotly_renderer" in p for p in rep.problems)

    nb.cells.insert(1, nbformat.v4.new_code_cell("viz.use_plotly_renderer()"))
    rep = inspect_outputs(execute(nb, tmp_path))
    assert rep.problems == [] and rep.counts == Figures(plotly=2, images=0)


@pytest.mark.integration
def test_a_chapter_without_its_renderer_line_fails(tmp_path):
    """Chapter 0's first cells in a copy, with the renderer line dropped, lose their plotly figure."""
    path = NOTEBOOKS[0]
    nb = _read(path)
    setup = next(c for c in nb.cells if c.cell_type == "code" and "use_plotly_renderer()" in c.source)
    plotly_cell = next(c for c in nb.cells if c.cell_type == "code" and c is not setup
                       and re.search(r"mesh_figure|go\.Figure|make_subplots", c.source))
    cells = [c for c in nb.cells if c.cell_type == "code"]
    keep = cells[: cells.index(plotly_cell) + 1]  # up to the first plotly figure
    nb.cells = copy.deepcopy(keep)
    for cell in nb.cells:
        cell.source = "\n".join(ln for ln in cell.source.splitlines() if "use_plotly_renderer()" not in ln)
    rep = inspect_outputs(execute(nb, path.parent))
    assert rep.counts.plotly == 0 and rep.problems, rep
    assert all("use_plotly_renderer" in p for p in rep.problems), rep.problems
