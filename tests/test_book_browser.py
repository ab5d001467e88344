"""Open the built book in a real browser (playwright + Debian's chromium), fully offline.

For every page of the book (``_build/html/book/*.html`` and ``_build/html/notebooks/*.html``):

* no console errors and no uncaught page errors;
* no request leaves the local server (every other host is aborted and recorded);
* pages with plotly figures: every ``Plotly.newPlot`` settled (plotly's after-plot: the promise
  ``newPlot`` returns resolves after it emits ``plotly_afterplot``; an init script records it), and
  each 3D mesh really drew (``mesh3d`` trace in ``_fullData``, a WebGL canvas of nonzero size, and
  the pixels change when the mesh is hidden);
* pages with math: MathJax typeset it (``mjx-container``) without TeX errors (``mjx-merror``);
* pages with saved ipywidgets: the widget manager drew every saved view from its state (the
  "try it" controls show, at their saved values, but do nothing without a kernel);
* folded solutions (``{admonition}`` with ``:class: dropdown``) start hidden;
* code cells and text outputs fit the article column on a laptop screen, 1440x900 and 1366x768
  (no horizontal scroll bar on ``div.highlight pre`` / output ``pre``).

No fixed sleeps: every wait is on an event or a condition (plotly's promise, animation frames,
the widget manager's DOM, network idle).

The book must be built first (``make book``); this test fails, not skips, when it is not.
"""
from __future__ import annotations

import functools
import http.server
import io
import re
import threading
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

import hang_guard   # tests/hang_guard.py: deadlines named as hang guards
from hang_guard import PlaywrightTimeout

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
NOT_BUILT = "(book not built)"
VIEWPORT = {"width": 1280, "height": 900}
#: laptop screens: code lines of up to 100 characters must fit (book/_ext/static/dualface.css)
LAPTOP_VIEWPORTS = ({"width": 1440, "height": 900}, {"width": 1366, "height": 768})

#: Text the static book shows for each page's "try it" widgets (drawn from the saved widget state;
#: without a kernel they show their saved values and do nothing).
WIDGET_TEXT: dict[str, list[str]] = {
    "notebooks/02_fitting_landmarks.html": ["lambda", "mean error"],  # the Output shows the first refit
    "notebooks/04_mrf_prior.html": ["K\n10", "hidden\n50", "colour", "train"],  # sliders at K = 10, 50 units
    "notebooks/05_resnet.html": ["test face", "reconstruct"],
    "notebooks/06_dual_networks.html": ["test face", "Ours"],  # the explorer shows its first face
    "notebooks/07_in_the_wild.html": ["Upload"],
}

#: Runs before any script of the page: wraps Plotly.newPlot (when plotly.min.js defines
#: window.Plotly) to count the figures whose newPlot promise settled.  newPlot resolves after it
#: emitted "plotly_afterplot", so `plotted` counts figures plotly itself reports as drawn.
PLOTLY_HOOK = """
(() => {
  const state = {called: 0, plotted: 0, failed: []};
  window.__dualface = state;
  let plotly;
  const wrap = (P) => {
    if (!P || typeof P.newPlot !== 'function' || P.newPlot.__dualface) return;
    const newPlot = P.newPlot;
    const wrapped = function (...args) {
      state.called += 1;
      const id = typeof args[0] === 'string' ? args[0] : (args[0] && args[0].id);
      return Promise.resolve(newPlot.apply(this, args)).then(
        (gd) => { state.plotted += 1; if (gd) gd.__dualface_plotted = true; return gd; },
        (err) => { state.failed.push(`${id}: ${err}`); throw err; });
    };
    wrapped.__dualface = true;
    P.newPlot = wrapped;
  };
  Object.defineProperty(window, 'Plotly', {
    configurable: true, enumerable: true,
    get() { return plotly; },
    set(v) { plotly = v; wrap(v); },
  });
})();
"""

#: Resolves after two animation frames: whatever the page changed has been painted.
FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"


def _pages() -> list[str]:
    pages = sorted(
        str(p.relative_to(HTML))
        for sub in ("book", "notebooks")
        for p in (HTML / sub).glob("*.html")
    )
    return pages or [NOT_BUILT]


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def book() -> Path:
    if not (HTML / "index.html").is_file() or _pages() == [NOT_BUILT]:
        pytest.fail(f"the book is not built ({HTML} has no pages): run `make book` first")
    return HTML


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature from the base class
        pass


@pytest.fixture(scope="module")
def server(book: Path):
    handler = functools.partial(_QuietHandler, directory=str(book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install it with `apt-get install -y chromium`")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover
        pytest.fail("playwright is not installed: pip install -e '.[test]'")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class _Visit:
    """A loaded page plus everything that went wrong while loading it."""

    def __init__(self, page, console_errors, page_errors, offhost):
        self.page = page
        self.console_errors = console_errors
        self.page_errors = page_errors
        self.offhost = offhost


def _open(browser, url: str, viewport: dict | None = None) -> tuple[object, _Visit]:
    context = browser.new_context(viewport=viewport or VIEWPORT, service_workers="block")
    context.add_init_script(PLOTLY_HOOK)
    console_errors: list[str] = []
    page_errors: list[str] = []
    offhost: list[str] = []

    def route(r):
        u = urlparse(r.request.url)
        if u.scheme in ("http", "https", "ws", "wss") and u.hostname not in LOCAL_HOSTS:
            offhost.append(r.request.url)
            r.abort()
        else:
            r.continue_()

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.on(
        "console",
        lambda m: console_errors.append(f"{m.text} @ {m.location.get('url', '')}")
        if m.type == "error"
        else None,
    )
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.goto(url, wait_until="load")
    return context, _Visit(page, console_errors, page_errors, offhost)


def _wait_for_mathjax(page) -> None:
    page.wait_for_function(
        "() => !window.MathJax || (window.MathJax.startup && window.MathJax.startup.promise)"
    )
    page.evaluate("() => window.MathJax ? window.MathJax.startup.promise : null")


def _settle(page) -> None:
    """Wait until the network is idle and the page has painted (no fixed sleep)."""
    page.wait_for_load_state("networkidle")
    page.evaluate(FRAMES)


def _wait_for_plots(page, name: str, n_figs: int, v: "_Visit") -> None:
    """Every figure's Plotly.newPlot settled (plotly's after-plot), none failed."""
    # the figure scripts are inline, so by the "load" event every one of them has run
    called = page.evaluate("() => window.__dualface ? window.__dualface.called : 0")
    assert called == n_figs, (
        f"{name}: {n_figs} plotly figure(s) in the HTML, but Plotly.newPlot was called {called} "
        f"time(s) (is _static/plotly/plotly.min.js served?).\npage errors: {v.page_errors}\n"
        f"console errors: {v.console_errors}"
    )
    try:
        page.wait_for_function(
            "n => window.__dualface && (window.__dualface.plotted + window.__dualface.failed.length) >= n",
            arg=n_figs, timeout=60_000,
        )
    except PlaywrightTimeout:
        state = page.evaluate("() => window.__dualface || null")
        hang_guard.fail(
            f"{name}: plotly did not finish plotting the {n_figs} figure(s) of the HTML within 60 s",
            f"newPlot calls: {state}; is _static/plotly/plotly.min.js served?\n"
            f"page errors: {v.page_errors}\nconsole errors: {v.console_errors}"
        )
    failed = page.evaluate("() => window.__dualface.failed")
    assert not failed, f"{name}: Plotly.newPlot failed: {failed}"
    page.evaluate(FRAMES)


def _png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


# --------------------------------------------------------------------------- tests
def test_no_offhost_assets_in_html(book: Path):
    """No <script src> or stylesheet <link href> in any built page points off-host."""
    tag = re.compile(r"<(script|link)\b[^>]*>", re.I)
    url = re.compile(r"\b(?:src|href)\s*=\s*[\"']((?:https?:)?//[^\"']+)", re.I)
    bad = []
    for f in sorted(book.rglob("*.html")):
        if "_static" in f.relative_to(book).parts:
            continue
        for t in tag.finditer(f.read_text(encoding="utf-8", errors="replace")):
            m = url.search(t.group(0))
            if not m:
                continue
            if t.group(1).lower() == "link" and not re.search(
                r"rel\s*=\s*[\"'](stylesheet|preload|modulepreload|icon)", t.group(0), re.I
            ):
                continue
            bad.append(f"{f.relative_to(book)}: {m.group(1)}")
    assert not bad, "assets loaded from the network:\n" + "\n".join(bad)


def test_book_has_figures_math_and_widgets(book: Path):
    """The checks below are not vacuous: some chapter has a figure, some page has math."""
    text = {p: (book / p).read_text(encoding="utf-8") for p in _pages()}
    assert any("plotly-graph-div" in t for t in text.values()), "no page has a plotly figure"
    assert any('class="math' in t for t in text.values()), "no page has display math"


@pytest.mark.parametrize("name", _pages())
def test_page(book: Path, server: str, browser, name: str):
    html = (book / name).read_text(encoding="utf-8")
    context, v = _open(browser, f"{server}/{name}")
    page = v.page
    try:
        # ---- math
        # (Sphinx loads MathJax only on pages whose body has math; a title with math shows in every
        # page's sidebar and would stay raw TeX elsewhere, so chapter titles avoid math.)
        if re.search(r'class="math[ "]', html):
            assert "tex-chtml.js" in html, f"{name}: math on a page that does not load MathJax (math in a title?)"
            _wait_for_mathjax(page)
            page.wait_for_selector("mjx-container", state="attached")
            n_err = page.locator("mjx-merror").count()
            assert n_err == 0, f"{name}: MathJax reported {n_err} TeX error(s)"

        # ---- plotly meshes
        n_figs = html.count('class="plotly-graph-div"')
        if n_figs:
            _wait_for_plots(page, name, n_figs, v)
            plots = page.locator(".js-plotly-plot")
            assert plots.count() == n_figs, f"{name}: {n_figs} figure div(s), {plots.count()} plotted"
            n_mesh = 0
            for i in range(plots.count()):
                plot = plots.nth(i)
                assert plot.evaluate("el => el.__dualface_plotted === true"), f"{name}: plot {i} never plotted"
                types = plot.evaluate("el => (el._fullData || []).map(t => t.type)")
                if "mesh3d" not in types:
                    continue
                n_mesh += 1
                plot.scroll_into_view_if_needed()
                size = plot.evaluate(
                    """el => Array.from(el.querySelectorAll('.gl-container canvas'))
                           .map(c => [c.width, c.height])"""
                )
                assert size and all(w > 0 and h > 0 for w, h in size), (
                    f"{name}: plot {i} has no WebGL canvas with a size: {size}"
                )
                page.evaluate(FRAMES)  # the WebGL frame is on screen
                with_mesh = _png(plot.screenshot())
                assert with_mesh.reshape(-1, 3).std(axis=0).max() > 5, (
                    f"{name}: plot {i} is a single flat colour"
                )
                idx = [k for k, t in enumerate(types) if t == "mesh3d"]
                # restyle resolves after plotly redrew (its own after-plot); then one painted frame
                plot.evaluate(f"el => Plotly.restyle(el, {{visible: false}}, {idx}).then(() => true)")
                page.evaluate(FRAMES)
                without = _png(plot.screenshot())
                plot.evaluate(f"el => Plotly.restyle(el, {{visible: true}}, {idx}).then(() => true)")
                changed = (np.abs(with_mesh - without).max(axis=2) > 30).mean()
                assert changed > 0.02, (
                    f"{name}: plot {i}: hiding the mesh changes only {changed:.1%} of the "
                    "pixels, so the mesh did not draw"
                )
            assert n_mesh or "mesh3d" not in html, f"{name}: mesh3d figure was not drawn"

        # ---- ipywidgets (static, from the saved widget state)
        n_views = len(re.findall(r'<script type="application/vnd\.jupyter\.widget-view\+json"', html))
        if n_views:
            assert 'type="application/vnd.jupyter.widget-state+json"' in html, (
                f"{name}: {n_views} widget view(s) but no saved widget state"
            )
            drawn = """() => Array.from(document.querySelectorAll(
                    'script[type="application/vnd.jupyter.widget-view+json"]'))
                .filter(s => s.previousElementSibling
                             && s.previousElementSibling.classList.contains('widget-subarea')
                             && s.previousElementSibling.querySelector('.jupyter-widgets')).length"""
            try:
                page.wait_for_function(f"() => ({drawn})() >= {n_views}", timeout=30_000)
            except PlaywrightTimeout:
                hang_guard.fail(f"{name}: the widget manager drew {page.evaluate(drawn)} of {n_views} widget "
                                f"view(s) within 30 s",
                                f"page errors: {v.page_errors}\nconsole errors: {v.console_errors}")
            page.evaluate(FRAMES)
            text = page.evaluate(
                "() => Array.from(document.querySelectorAll('.widget-subarea')).map(e => e.innerText).join('\\n')"
            )
            for want in WIDGET_TEXT.get(name, []):
                assert want in text, f"{name}: the static widgets do not show {want!r}; they show:\n{text}"
            assert "Error displaying widget" not in text, f"{name}: {text}"
        else:
            assert name not in WIDGET_TEXT, f"{name}: WIDGET_TEXT expects widgets, the page has none"

        # ---- folded solutions start hidden
        for i in range(page.locator(".admonition.dropdown").count()):
            body = page.locator(".admonition.dropdown").nth(i).locator("> :not(.admonition-title)")
            for j in range(body.count()):
                if body.nth(j).get_attribute("class") and "toggle-button" in body.nth(j).get_attribute("class"):
                    continue
                assert not body.nth(j).is_visible(), f"{name}: dropdown {i} is not folded"

        _settle(page)  # late requests / errors
    finally:
        context.close()

    assert not v.offhost, f"{name}: requests left localhost:\n" + "\n".join(v.offhost)
    assert not v.page_errors, f"{name}: page errors:\n" + "\n".join(v.page_errors)
    assert not v.console_errors, f"{name}: console errors:\n" + "\n".join(v.console_errors)


# --------------------------------------------------------------------------- the column
#: `pre` blocks a reader sees: code cells, and the text outputs of cells
PRE_SELECTOR = "div.highlight pre, div.cell_output pre, div.output pre"

OVERFLOW_JS = """sel => {
  // open folded content (dropdowns, <details>) so that it is measured as a reader sees it
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
  const out = [];
  for (const pre of document.querySelectorAll(sel)) {
    if (pre.offsetParent === null) continue;  // not displayed
    if (pre.scrollWidth > pre.clientWidth + 2) {
      const lines = pre.innerText.split('\\n');
      const longest = lines.reduce((a, b) => (b.length > a.length ? b : a), '');
      const where = pre.closest('.cell_output') ? 'output' : 'code';
      out.push({where, scroll: pre.scrollWidth, client: pre.clientWidth,
                chars: longest.length, line: longest.slice(0, 140)});
    }
  }
  return out;
}"""


def overflowing_pre(page) -> list[dict]:
    return page.evaluate(OVERFLOW_JS, PRE_SELECTOR)


@pytest.mark.parametrize("name", _pages())
def test_code_fits_the_column(book: Path, server: str, browser, name: str):
    """On a laptop screen (1440x900, 1366x768) no code cell or text output needs a horizontal scroll bar."""
    bad = []
    context, v = _open(browser, f"{server}/{name}", viewport=LAPTOP_VIEWPORTS[0])
    try:
        v.page.evaluate("() => document.fonts.ready.then(() => true)")  # widths with the real font
        for viewport in LAPTOP_VIEWPORTS:
            v.page.set_viewport_size(viewport)
            v.page.evaluate(FRAMES)  # laid out at the new width
            bad += [dict(b, width=viewport["width"]) for b in overflowing_pre(v.page)]
    finally:
        context.close()
    assert not bad, (
        f"{name}: {len(bad)} block(s) wider than the article column (keep code lines to 100 characters):\n"
        + "\n".join(f"  at {b['width']}px: {b['where']} ({b['chars']} chars, {b['scroll']}px > {b['client']}px): "
                     f"{b['line']}" for b in bad)
    )
