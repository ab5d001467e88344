"""Sphinx extension: serve the book's JavaScript from the book itself (no CDN, no network).

The dualface_lite book must work offline, so every script a page needs is copied into
``_build/html/_static`` at build time and the page points there:

* plotly.js (figure outputs): from the installed ``plotly`` package
  (``plotly/package_data/plotly.min.js``) -> ``_static/plotly/plotly.min.js``;
* MathJax 3 (``$...$``, ``$$...$$``): ``node_modules/mathjax/es5`` (``tex-chtml.js`` and what it
  loads at run time: fonts, autoloaded TeX extensions, menu/a11y) -> ``_static/mathjax/``;
* the Jupyter widget manager: ``node_modules/@jupyter-widgets/html-manager/dist/embed.js`` and
  its font files -> ``_static/jupyter-widgets/``;
* ``book/_ext/static/mathjax2-hub-shim.js`` -> ``_static/dualface/`` (see below);
* ``book/_ext/static/dualface.css`` -> ``_static/dualface/``: the book's layout (a wider article
  column and a slightly smaller code font, so that code lines of up to 100 characters fit
  without a horizontal scroll bar at 1366-1440 px; tests/test_book_browser.py checks it).

``node_modules`` comes from ``npm ci`` in the repository root (``package.json`` /
``package-lock.json``); the build stops with a clear message if it is missing.

Wiring
------
* ``plotly.min.js`` is added to *every* HTML page as a plain, synchronous ``<script>`` in the
  ``<head>`` with priority 250, i.e. before Sphinx's default (500) and before anything myst-nb
  adds per page.  Figure outputs from :func:`dualface_lite.viz.use_plotly_renderer` are
  ``<div>`` + inline ``Plotly.newPlot(...)`` scripts in the body, so ``window.Plotly`` exists
  when they run.  No require.js is loaded (the widget manager used, ``embed.js``, does not need
  it), so plotly's UMD wrapper cannot register itself as an anonymous AMD module.
* ``mathjax_path`` is set to the local MathJax 3 ``tex-chtml.js``; MathJax loads its fonts and
  any autoloaded TeX extension relative to that file.
* myst-nb's ``nb_ipywidgets_js`` (default: require.js from cdnjs + ``embed-amd.js`` from
  jsdelivr) is replaced with the local ``embed.js``, which renders the standard widgets
  (``@jupyter-widgets/base``, ``controls``, ``output``) from the widget state saved in the
  executed notebook.  Third-party widget libraries cannot be loaded offline; the chapters use
  only standard ipywidgets.
* Plotly's bare notebook output (``application/vnd.plotly.v1+json`` only, what a chapter emits
  when it forgot :func:`dualface_lite.viz.use_plotly_renderer`) is not dropped with a
  ``mystnb.unknown_mime_type`` warning: it is rendered to the same ``<div>`` + ``Plotly.newPlot``
  HTML (a small, documented patch of myst-nb's ``NbElementRenderer.render_mime_type``) and
  ranked just after ``text/html``, so a bundle that already carries ``text/html`` (the
  ``"dualface"`` renderer's) uses that.
* ``dualface/mathjax2-hub-shim.js`` (from ``book/_ext/static``, priority 240): the widget
  controls typeset their labels with MathJax 2's ``MathJax.Hub.Queue``; with MathJax 3 on the
  page that threw "Cannot read properties of undefined (reading 'Queue')".  The shim keeps a
  ``Hub`` on ``window.MathJax`` that forwards to MathJax 3's ``typesetPromise``.
* Inline scripts that extensions add twice are de-duplicated per page: with Sphinx 7.4 the
  same inline script can appear once with ``filename=None`` and once with ``''`` (registry vs
  builder), so ``const THEBE_JS_URL = ...`` (sphinx-thebe, always loaded by jupyter-book) ran
  twice and raised "Identifier 'THEBE_JS_URL' has already been declared" on every page.
* After the build, every HTML page is scanned for ``<script src=...>`` / ``<link href=...>``
  that point off-host; any hit is reported as a Sphinx warning (``dualface.offline``).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

__version__ = "0.1.0"

PLOTLY_JS = "plotly/plotly.min.js"
MATHJAX_JS = "mathjax/tex-chtml.js"
WIDGETS_JS = "jupyter-widgets/embed.js"
MATHJAX2_SHIM_JS = "dualface/mathjax2-hub-shim.js"
LAYOUT_CSS = "dualface/dualface.css"
HERE = Path(__file__).resolve().parent
PLOTLY_MIME = "application/vnd.plotly.v1+json"
HTML_BUILDERS = ("html", "dirhtml", "singlehtml")

#: MathJax 3 files that ``tex-chtml.js`` may load at run time (fonts, autoloaded TeX
#: extensions, the context menu's accessibility tools).  Paths relative to ``mathjax/es5``.
MATHJAX_PARTS = (
    "tex-chtml.js",
    "input",
    "output/chtml.js",
    "output/chtml",
    "ui",
    "a11y",
    "sre",
    "adaptors",
)

NPM_HINT = (
    "The offline book needs its web assets from npm: run `npm ci` in the repository root "
    "(or `make book`, which does it for you) and build again."
)


# --------------------------------------------------------------------------- helpers
def _node_modules(app: Sphinx) -> Path:
    """``node_modules`` next to the book's ``_config.yml`` (override: DUALFACE_NODE_MODULES)."""
    env = os.environ.get("DUALFACE_NODE_MODULES")
    if env:
        return Path(env).expanduser().resolve()
    return Path(app.confdir).resolve() / "node_modules"


def _plotly_js() -> Path:
    try:
        import plotly
    except ImportError as exc:  # pragma: no cover - plotly is a hard dependency of the kit
        raise ExtensionError("dualface_assets: plotly is not installed (pip install plotly)") from exc
    path = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise ExtensionError(f"dualface_assets: plotly.js not found at {path}; reinstall plotly")
    return path


def _sources(app: Sphinx) -> list[tuple[Path, str]]:
    """(source file or folder, destination relative to ``_static``) for every asset."""
    nm = _node_modules(app)
    mathjax = nm / "mathjax" / "es5"
    widgets = nm / "@jupyter-widgets" / "html-manager" / "dist"
    required = {
        "mathjax (npm package mathjax@3)": mathjax / "tex-chtml.js",
        "@jupyter-widgets/html-manager (npm)": widgets / "embed.js",
    }
    missing = [f"  - {name}: {path}" for name, path in required.items() if not path.is_file()]
    if missing:
        raise ExtensionError(
            "dualface_assets: web assets missing from node_modules:\n"
            + "\n".join(missing)
            + "\n"
            + NPM_HINT
        )
    out: list[tuple[Path, str]] = [
        (_plotly_js(), PLOTLY_JS),
        (HERE / "static" / "mathjax2-hub-shim.js", MATHJAX2_SHIM_JS),
        (HERE / "static" / "dualface.css", LAYOUT_CSS),
    ]
    for part in MATHJAX_PARTS:
        src = mathjax / part
        if src.exists():
            out.append((src, f"mathjax/{part}"))
    # embed.js plus the font files its CSS references (webpack resolves them next to the script)
    for f in sorted(widgets.iterdir()):
        if f.is_file() and not f.name.endswith(".map") and "amd" not in f.name:
            out.append((f, f"jupyter-widgets/{f.name}"))
    return out


def _iter_files(src: Path, dest: Path) -> Iterable[tuple[Path, Path]]:
    if src.is_file():
        yield src, dest
        return
    for root, _dirs, files in os.walk(src):
        for name in files:
            s = Path(root) / name
            yield s, dest / s.relative_to(src)


def _copy_if_changed(src: Path, dest: Path) -> bool:
    try:
        st, dt = src.stat(), dest.stat()
        if st.st_size == dt.st_size and int(st.st_mtime) == int(dt.st_mtime):
            return False
    except FileNotFoundError:
        pass
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest)
    return True


# --------------------------------------------------------------------------- events
def _configure(app: Sphinx, config: Config) -> None:
    """config-inited: point MathJax and the widget manager at the local copies."""
    # Sphinx's default is a jsdelivr URL; a relative path is resolved against _static.
    config.mathjax_path = MATHJAX_JS
    # myst-nb reads this when it builds its own config (builder-inited), after this event.
    config.nb_ipywidgets_js = {WIDGETS_JS: {}}
    # plotly's own mimetype: selectable in HTML output, after text/html (myst-nb ranks 30)
    overrides = list(getattr(config, "nb_mime_priority_overrides", None) or [])
    overrides += [(b, PLOTLY_MIME, 35) for b in HTML_BUILDERS]
    config.nb_mime_priority_overrides = overrides
    # The layout stylesheet, after the theme's (priority 900).  Through html_css_files, not
    # app.add_css_file, and with the file's digest in an attribute: Sphinx rewrites every page
    # when this config value changes, so an existing build picks up a new or edited stylesheet
    # (and its ?v= cache buster) without `--all`.
    digest = hashlib.sha256((HERE / "static" / "dualface.css").read_bytes()).hexdigest()[:12]
    css = [c for c in (getattr(config, "html_css_files", None) or [])
           if (c[0] if isinstance(c, (tuple, list)) else c) != LAYOUT_CSS]
    css.append((LAYOUT_CSS, {"priority": 900, "data-digest": digest}))
    config.html_css_files = css


def _plotly_figure_html(figure: dict) -> str:
    """``<div>`` + inline ``Plotly.newPlot`` for a plotly-mimetype output (no plotly.js inside)."""
    import plotly.io as pio

    # the static page's figures follow the window's width (in JupyterLab the renderer keeps them fixed)
    config = {"displaylogo": False, **(figure.get("config") or {}), "responsive": True}
    fig = {k: v for k, v in figure.items() if k in ("data", "layout", "frames")}
    return pio.to_html(fig, config=config, include_plotlyjs=False, include_mathjax=False,
                       full_html=False, validate=False, default_width="100%",
                       default_height="450px")


def _patch_myst_nb() -> None:
    """Teach myst-nb to render plotly's mimetype as HTML instead of dropping it."""
    import dataclasses

    from myst_nb.core.render import NbElementRenderer

    if getattr(NbElementRenderer.render_mime_type, "_dualface", False):
        return
    original = NbElementRenderer.render_mime_type

    def render_mime_type(self, data):  # type: ignore[no-untyped-def]
        if data.mime_type == PLOTLY_MIME and isinstance(data.content, dict):
            html = _plotly_figure_html(data.content)
            return self.render_text_html(dataclasses.replace(data, mime_type="text/html", content=html))
        return original(self, data)

    render_mime_type._dualface = True  # type: ignore[attr-defined]
    NbElementRenderer.render_mime_type = render_mime_type  # type: ignore[method-assign]


def _install(app: Sphinx) -> None:
    """builder-inited: check node_modules (before any notebook runs) and copy the assets."""
    if app.builder is None or app.builder.format != "html":
        return
    static = Path(app.outdir) / "_static"
    copied = 0
    for src, rel in _sources(app):
        for s, d in _iter_files(src, static / rel):
            copied += _copy_if_changed(s, d)
    logger.info(f"dualface_assets: offline web assets in {static} ({copied} file(s) updated)")


def _dedupe_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """html-page-context (last): drop repeated <script> entries (same file/body and attributes)."""
    files = context.get("script_files")
    if not files:
        return
    seen: set = set()
    unique = []
    for js in files:
        key = (
            getattr(js, "filename", str(js)) or "",
            tuple(sorted((str(k), str(v)) for k, v in (getattr(js, "attributes", None) or {}).items())),
        )
        if key in seen:
            continue
        seen.add(key)
        unique.append(js)
    if len(unique) != len(files):
        context["script_files"] = unique


_OFFHOST = re.compile(
    r"<(?:script|link)\b[^>]*?\b(?:src|href)\s*=\s*[\"']((?:https?:)?//[^\"']+)[\"'][^>]*>",
    re.IGNORECASE,
)


def _check_offline(app: Sphinx, exception: Exception | None) -> None:
    """build-finished: warn about any <script src> / <link href> that leaves the host."""
    if exception is not None or app.builder is None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    for page in sorted(outdir.rglob("*.html")):
        if "_static" in page.relative_to(outdir).parts:
            continue
        text = page.read_text(encoding="utf-8", errors="replace")
        for tag in _OFFHOST.finditer(text):
            # <link rel="canonical"/"alternate"> etc. are not loaded by the browser
            if tag.group(0).lower().startswith("<link") and not re.search(
                r"rel\s*=\s*[\"'](?:stylesheet|preload|modulepreload|icon)", tag.group(0), re.I
            ):
                continue
            logger.warning(
                f"dualface_assets: {page.relative_to(outdir)} loads {tag.group(1)} from the "
                "network; the book must work offline",
                type="dualface",
                subtype="offline",
            )


def setup(app: Sphinx) -> dict[str, Any]:
    # Plain synchronous <script> in <head>, before Sphinx's default priority (500) and before
    # myst-nb's per-page scripts, so Plotly exists when figure outputs run.
    app.add_js_file(PLOTLY_JS, priority=250)
    # before Sphinx's `window.MathJax = {...}` config and the widget manager (both 500)
    app.add_js_file(MATHJAX2_SHIM_JS, priority=240)
    _patch_myst_nb()
    app.connect("config-inited", _configure, priority=900)
    app.connect("builder-inited", _install)
    app.connect("html-page-context", _dedupe_scripts, priority=999)
    app.connect("build-finished", _check_offline)
    return {"version": __version__, "parallel_read_safe": True, "parallel_write_safe": True}
