"""The chapters as students use them: a live JupyterLab, Debian's chromium (playwright), offline.

A JupyterLab server (the kit's venv, ``lab/jupyter_lab_config.py`` as ``make lab`` uses it) starts
on localhost with a random free port and a token, serving copies of the chapters from a temporary
folder (autosave never touches ``notebooks/``), with its own config, settings and runtime folders.
For each chapter below the test opens it in chromium, runs all its cells (Run > Run All Cells),
moves its "try it" control the way a student does and checks that what the control drives changed:

* chapter 1, the mode explorer: a plotly figure whose own slider (part of the figure, no kernel
  needed) walks along mode 1; clicking the slider's last step (alpha = +3) and then its first
  (alpha = -3) changes the mesh shown, in its vertices and in its pixels (the 3D scene alone);
* chapter 2, the ``lambda`` slider (an ipywidget, moved from the keyboard): the refit's report (mean
  error, landmark error) and its heat map (an image) are in its Output at the default, and both
  change with the value.

Throughout: no console errors and no uncaught page errors, no request leaves localhost (every other
host is aborted and recorded; the server's own news feed and update check are off by config), no
dialog opens (a "trust" or kernel prompt would), and no cell output holds a Python traceback. The
server is stopped (its whole process group) even when a check fails. No fixed sleeps: every wait
is on a condition, polled against a hang guard (a generous deadline, tests/hang_guard.py).

Chapter 4's control (train with another K) trains the prior on the ``lite`` dataset; it is not
run here (the chapter alone takes over a minute), so its wiring is left to the book build, which
runs its callback code as part of the chapter.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import Request, urlopen

import pytest

import hang_guard   # tests/hang_guard.py: deadlines named as hang guards
from test_book_browser import CHROMIUM, CHROMIUM_ARGS, LOCAL_HOSTS, ROOT  # one browser set-up for both

pytestmark = pytest.mark.browser

LAB_CONFIG = ROOT / "lab" / "jupyter_lab_config.py"
CHAPTERS = ("01_faces_as_data.ipynb", "02_fitting_landmarks.ipynb")
SETTLE_S = 3              # the kernel idle this long, with its session listed, before the chapter runs
KERNEL_LOST_S = 20         # a notebook whose kernel is gone this long is reopened (Session.run_all)
# hang guards (tests/hang_guard.py), not bounds on speed:
RUN_TIMEOUT_S = 240         # one chapter, all cells (chapter 2 runs in about 20 s)
STEP_TIMEOUT_MS = 60_000    # one widget change: the kernel's callback and the redraw (about 1 s)

#: JupyterLab's own start-up, not the chapters: opening the first notebook it starts a kernel and
#: replaces it half a second later (with the preferred kernel), polling the kernel list meanwhile;
#: jupyter_server 2.21 can answer that poll with a 500 while the new kernel is half made (its
#: ``last_activity`` not yet set), and the debugger's state request to the replaced kernel is
#: cancelled. These console messages, and that one server error, are allowed; nothing else is.
STARTUP_CONSOLE_NOISE = ("Failed to load resource: the server responded with a status of 500",
                         "Could not restore the debugger state")
STARTUP_SERVER_ERROR = "Uncaught exception GET /api/kernels"

#: chapter 1's mode explorer: the id of the cell whose output is the plotly figure with its own slider
MODE_EXPLORER_CELL = "fbdc8d1f"

#: CSS: the notebook on show, and its cell at an index (JupyterLab's windowed list numbers its cells)
NOTEBOOK_ON_SHOW = ".jp-NotebookPanel:not(.lm-mod-hidden)"
CELL_AT_INDEX = NOTEBOOK_ON_SHOW + ' .jp-Cell[data-windowed-list-index="{}"]'
#: JS: the cell at this index (by that number; else the index-th cell the notebook holds)
CELL_AT = """(i) => document.querySelector(`%s .jp-Cell[data-windowed-list-index="${i}"]`)
  || document.querySelectorAll('%s .jp-Notebook .jp-Cell')[i] || null""" % (NOTEBOOK_ON_SHOW, NOTEBOOK_ON_SHOW)
#: JS: the plotly figure in the output of that cell: its traces, the data of its slider's last step, its title
PLOT_IN_CELL = """(i) => {
  const cell = (%s)(i), gd = cell && cell.querySelector('.jp-OutputArea .js-plotly-plot');
  if (!gd || !gd.data || !gd._fullLayout) return null;
  const sample = (a) => Array.from(a || []).slice(0, 200).map(v => Math.round(v * 1000) / 1000);
  const traces = gd._fullData.map(t => [t.type, t._length, sample(t.z), sample(t.intensity)]);
  const steps = ((gd.layout.sliders || [])[0] || {}).steps || [];
  const last = steps.length ? JSON.stringify(steps[steps.length - 1].args).slice(0, 4000) : '';
  return JSON.stringify(traces) + last + ' | ' + ((gd.layout.title && gd.layout.title.text) || '');
}""" % CELL_AT
#: JS: the mesh that figure shows now: vertex z and intensity (sampled)
MESH_SHOWN = """(i) => {
  const cell = (%s)(i), gd = cell && cell.querySelector('.jp-OutputArea .js-plotly-plot');
  if (!gd || !gd._fullData) return null;
  const t = gd._fullData[0], sample = (a) => Array.from(a || []).slice(0, 400).map(v => Math.round(v * 1e3) / 1e3);
  return JSON.stringify([sample(t.z), sample(t.intensity)]);
}""" % CELL_AT
#: JS: the page rectangle of that figure's 3D scene (where WebGL draws the mesh)
SCENE_RECT = """(i) => {
  const gd = (%s)(i).querySelector('.jp-OutputArea .js-plotly-plot');
  const r = gd._fullLayout.scene._scene.container.getBoundingClientRect();
  return {x: r.x, y: r.y, width: r.width, height: r.height};
}""" % CELL_AT
#: JS: the Output widget of the cell whose slider has this description
OUTPUT_OF = """(desc) => {
  const label = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .widget-slider .widget-label')]
    .find(l => l.textContent.trim() === desc);
  return label ? label.closest('.jp-Cell').querySelector('.widget-output') : null;
}"""
#: JS: the text of that Output
TEXT_IN_OUTPUT = """(desc) => { const o = (%s)(desc); return o ? o.innerText.trim() : null; }""" % OUTPUT_OF
#: JS: the image in that Output (its data URL), once the browser has decoded it
IMAGE_IN_OUTPUT = """(desc) => {
  const o = (%s)(desc), img = o && o.querySelector('img');
  return img && img.complete && img.naturalWidth > 0 ? img.src : null;
}""" % OUTPUT_OF
#: JS: resolves after the browser has drawn two more frames (WebGL has drawn what plotly was given)
NEXT_FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"
#: JS: the code cells' prompts ("[ ]:", "[*]:", "[3]:") of the notebook on show
PROMPTS = ("() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt')]"
           ".map(e => e.textContent)")


def cell_index(chapter: str, cell_id: str) -> int:
    """The index of the cell with this id in the chapter's notebook (the order JupyterLab shows)."""
    cells = json.loads((ROOT / "notebooks" / chapter).read_text())["cells"]
    return next(i for i, c in enumerate(cells) if c.get("id") == cell_id)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on localhost: ``(base_url, token, log_path)``; stopped afterwards."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium): the JupyterLab test never skips")
    jupyter = Path(sys.executable).with_name("jupyter")
    if not jupyter.exists():
        pytest.fail(f"{jupyter} is missing: JupyterLab belongs to the kit's environment (make env)")
    base = tmp_path_factory.mktemp("lab")
    served = base / "notebooks"
    served.mkdir()
    for name in CHAPTERS:
        shutil.copy(ROOT / "notebooks" / name, served / name)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(base / "config"), JUPYTER_RUNTIME_DIR=str(base / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(base / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
               JUPYTER_DATA_DIR=str(base / "data"))
    env.pop("JUPYTER_PATH", None)
    # as make lab does: sign the chapters (their own signature database, in the temporary data folder)
    subprocess.run([str(jupyter), "trust", *(str(served / n) for n in CHAPTERS)], env=env, check=True,
                   capture_output=True)
    log_path = base / "server.log"
    cmd = [str(jupyter), "lab", f"--config={LAB_CONFIG}", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={served}"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=served,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = hang_guard.Deadline(60, "JupyterLab answering")
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            deadline.check(lambda: log_path.read_text()[-3000:])
            time.sleep(0.1)
        yield url, token, log_path
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Session:
    """One chapter open in JupyterLab, with the page's errors and outside requests recorded."""

    def __init__(self, browser, url: str, token: str, name: str):
        self.errors: list[str] = []
        self.external: list[str] = []
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("dialog", lambda d: (self.errors.append(f"browser dialog: {d.message}"), d.dismiss()))
        self.page.route("**/*", self._route)
        # a workspace of its own (?reset): only this chapter is open, not what an earlier page left
        self.address = f"{url}/lab/workspaces/{Path(name).stem}/tree/{name}?reset&token={token}"
        self.sessions = f"{url}/api/sessions?token={token}"
        self.name = name
        self.reopened = 0
        self._open()

    def _open(self) -> None:
        """Open the chapter and wait until its kernel has settled. The indicator says "idle" before the
        kernel exists, and JupyterLab may reconnect to a new kernel within its first seconds (the server
        logs "Discarding N buffered messages"): cells run then can lose their outputs and widgets. So
        the server must list the notebook's session with a kernel, and the indicator must have said
        "idle" for SETTLE_S seconds in a row."""
        self.page.goto(self.address)
        self.page.wait_for_selector(".jp-NotebookPanel .jp-Notebook", timeout=STEP_TIMEOUT_MS)
        deadline, since = hang_guard.Deadline(STEP_TIMEOUT_MS / 1000, "the notebook's kernel settling"), None
        while True:
            with urlopen(self.sessions, timeout=5) as r:
                live = any(x.get("kernel") and x.get("path", "").endswith(self.name) for x in json.load(r))
            if live and self.kernel_status() == "idle":
                since = since or time.monotonic()
                if time.monotonic() - since >= SETTLE_S:
                    return
            else:
                since = None
            deadline.check(lambda: f"kernel: {self.kernel_status()}")
            self.page.wait_for_timeout(250)

    def kernel_status(self) -> str | None:
        """The notebook's execution indicator: "idle", "busy", "initializing", "unknown" (no kernel), ..."""
        return self.page.evaluate("() => { const e = document.querySelector("
                                  "'.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');"
                                  " return e ? e.dataset.status : null; }")

    def _route(self, route):
        host = urlparse(route.request.url).hostname
        if host in LOCAL_HOSTS:
            route.continue_()
        else:
            self.external.append(route.request.url)
            route.abort()

    def prompts(self) -> list[str]:
        return self.page.evaluate(PROMPTS)

    def run_all(self) -> float:
        """Run > Run All Cells until every code cell has run; seconds taken. A click that lands
        before the kernel's session is fully connected runs only the first cell, so the command is
        given again (from the top: the chapters do not depend on being run once) when the kernel is
        idle with cells left unrun."""
        t0 = time.monotonic()
        deadline = hang_guard.Deadline(RUN_TIMEOUT_S, "the chapter running all its cells")
        clicks, lost, last = 0, None, 0.0
        while True:
            p = self.prompts()
            if p and all(t.strip().startswith("[") and t.strip()[1:-2].isdigit() for t in p):
                return time.monotonic() - t0
            # JupyterLab now and then shuts down the kernel it has just started (the server logs "Kernel
            # shutdown") and starts no other: the indicator stays off "idle" / "busy", or a dialog says
            # "Error Starting Kernel". A student would reopen the notebook; so does the test, once.
            dialogs = self.page.locator(".jp-Dialog")
            dialog = dialogs.first.inner_text() if dialogs.count() else ""
            no_kernel = dialog.startswith("Error Starting Kernel")
            if self.kernel_status() not in ("idle", "busy") or no_kernel:
                lost = lost or time.monotonic()
                if no_kernel or time.monotonic() - lost > KERNEL_LOST_S:
                    assert self.reopened == 0, "the notebook lost its kernel again after it was reopened"
                    if no_kernel:
                        dialogs.first.get_by_role("button", name="Ok").click()
                    self.reopened += 1
                    self._open()
                    clicks, lost = 0, None
                    deadline = hang_guard.Deadline(RUN_TIMEOUT_S, "the reopened chapter running all its cells")
                    continue
            else:
                lost = None
            assert not dialog, f"JupyterLab opened a dialog: {dialog!r}"
            idle = self.page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').count() > 0
            if idle and not any("*" in t for t in p) and (clicks == 0 or time.monotonic() - last > 3.0):
                assert clicks < 3, f"Run All Cells did not run the chapter: prompts {p}"
                self.page.get_by_role("menuitem", name="Run", exact=True).click()
                self.page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
                clicks, last = clicks + 1, time.monotonic()
            deadline.check(lambda: f"prompts: {p}")
            self.page.wait_for_timeout(200)

    def slider(self, description: str):
        """The slider with this description, scrolled into view (JupyterLab draws the widgets of a
        cell only when it comes into view)."""
        sl = self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .widget-slider",
                               has=self.page.locator(".widget-label", has_text=description)).first
        sl.scroll_into_view_if_needed()
        return sl

    def press_slider(self, description: str, key: str) -> None:
        """Move a slider from the keyboard, as a student can: focus its handle, press ``key``."""
        handle = self.slider(description).locator(".noUi-handle")
        handle.focus()
        self.page.keyboard.press(key)

    def cell(self, index: int):
        """The cell at this index, scrolled into view (JupyterLab draws an output when it comes into
        view)."""
        c = self.page.locator(CELL_AT_INDEX.format(index))
        if c.count() == 0:
            c = self.page.locator(f"{NOTEBOOK_ON_SHOW} .jp-Notebook .jp-Cell").nth(index)
        c.scroll_into_view_if_needed()
        return c

    def plotly_step(self, index: int, end: str) -> str:
        """Click one end (``"first"`` or ``"last"``) of the slider of the plotly figure in the output of
        cell ``index`` and return the mesh it then shows."""
        before = self.page.evaluate(MESH_SHOWN, index)
        rail = self.cell(index).locator(".js-plotly-plot .slider-rail-touch-rect").first
        rail.scroll_into_view_if_needed()
        box = rail.bounding_box()
        x = {"first": 2, "last": box["width"] - 2}[end]
        rail.click(position={"x": x, "y": box["height"] / 2})
        return self.wait_for_change(MESH_SHOWN, index, before)

    def scene_pixels(self, index: int) -> bytes:
        """A screenshot of the 3D scene alone (no title, no slider) of that figure, once drawn."""
        self.page.evaluate(NEXT_FRAMES)
        return self.page.screenshot(clip=self.page.evaluate(SCENE_RECT, index))

    def wait_for_change(self, js: str, arg, before):
        """Wait until ``js(arg)`` is neither null, empty nor ``before``; return it."""
        self.page.wait_for_function(
            f"([a, b]) => {{ const s = ({js})(a); return s !== null && s !== '' && s !== b; }}",
            arg=[arg, before], timeout=STEP_TIMEOUT_MS, polling=200)
        return self.page.evaluate(js, arg)

    def check_clean(self, log_path: Path):
        tracebacks = self.page.evaluate(
            "() => [...document.querySelectorAll('.jp-NotebookPanel .jp-OutputArea-output')].map(e => e.innerText)"
            ".filter(t => t.includes('Traceback'))")
        assert not tracebacks, "a cell failed:\n" + "\n".join(t[:2000] for t in tracebacks)
        assert self.page.locator(".jp-Dialog").count() == 0, self.page.locator(".jp-Dialog").first.inner_text()
        log = log_path.read_text()
        uncaught = re.findall(r"Uncaught exception (\w+ \S+)", log)
        assert all(u.startswith("GET /api/kernels") for u in uncaught), log[-3000:]
        assert log.count("Traceback") == 2 * len(uncaught), log[-3000:]   # each: the KeyError, then the TraitError
        assert all("'last_activity' trait" in t for t in re.findall(r"TraitError: .*", log)), log[-3000:]

        def startup_noise(e: str) -> bool:
            if STARTUP_CONSOLE_NOISE[0] in e:
                return bool(uncaught)                 # the 500, only with the server's error to match
            return STARTUP_CONSOLE_NOISE[1] in e and "Kernel shutdown" in log   # only with a replaced kernel

        errors = [e for e in self.errors if not startup_noise(e)]
        assert not errors, "\n".join(errors)
        assert not self.external, f"requests left localhost: {self.external}"
        assert "is not trusted" not in log, log[-3000:]


def test_chapter_1_mode_explorer_slider_moves_the_mesh(lab, browser):
    url, token, log_path = lab
    s = Session(browser, url, token, CHAPTERS[0])
    try:
        assert s.prompts() and all(t.strip() in ("[ ]:", "") for t in s.prompts())   # opens unexecuted
        s.run_all()
        i = cell_index(CHAPTERS[0], MODE_EXPLORER_CELL)
        s.cell(i)
        first = s.wait_for_change(PLOT_IN_CELL, i, None)
        assert '"mesh3d"' in first and "mode 1" in first, first
        mesh_plus = s.plotly_step(i, "last")                       # the face at alpha_1 = +3
        pixels_plus = s.scene_pixels(i)
        mesh_minus = s.plotly_step(i, "first")                     # the face at alpha_1 = -3
        assert mesh_minus != mesh_plus                             # another face: the mesh's data changed ...
        assert s.scene_pixels(i) != pixels_plus                    # ... and its pixels
        s.check_clean(log_path)
    finally:
        s.page.close()


def test_chapter_2_lambda_slider_refits(lab, browser):
    url, token, log_path = lab
    s = Session(browser, url, token, CHAPTERS[1])
    try:
        s.run_all()
        s.slider("lambda")
        start = s.wait_for_change(TEXT_IN_OUTPUT, "lambda", None)
        assert start.startswith("lambda = 0.5:") and "mean error" in start, start    # the default's refit
        map_start = s.wait_for_change(IMAGE_IN_OUTPUT, "lambda", None)             # ... and its heat map
        assert map_start.startswith("data:image/png"), map_start[:80]
        s.press_slider("lambda", "End")                              # the last value, the strongest prior
        after = s.wait_for_change(TEXT_IN_OUTPUT, "lambda", start)
        assert after.startswith("lambda = 50:"), after
        e0, e1 = (float(t.split("mean error ")[1].split(" mm")[0]) for t in (start, after))
        assert e0 != e1                                            # a new fit, a new error ...
        s.wait_for_change(IMAGE_IN_OUTPUT, "lambda", map_start)    # ... and its heat map redrawn
        s.check_clean(log_path)
    finally:
        s.page.close()


def test_server_stays_on_localhost(lab):
    """The server listens on 127.0.0.1 only, wants the token, and its status counts the kernels it runs:
    one more while a kernel the test starts runs, as many as before once it is shut down."""
    import psutil

    url, token, _ = lab
    port = urlparse(url).port
    listening = [c.laddr.ip for c in psutil.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
    assert listening and set(listening) == {"127.0.0.1"}, listening

    def api(path: str, method: str = "GET", body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = Request(f"{url}{path}", data=data, method=method, headers={"Authorization": f"token {token}"})
        with urlopen(req, timeout=STEP_TIMEOUT_MS / 1000) as r:
            text = r.read()
            return r.status, (json.loads(text) if text else None)

    _, before = api("/api/kernels")
    _, status = api("/api/status")
    assert status["kernels"] == len(before) and {"started", "last_activity", "connections"} <= set(status)
    code, kernel = api("/api/kernels", "POST", {"name": "python3"})
    try:
        assert code == 201 and kernel["name"] == "python3"
        assert kernel["id"] in [k["id"] for k in api("/api/kernels")[1]]
        assert api("/api/status")[1]["kernels"] == len(before) + 1
    finally:
        assert api(f"/api/kernels/{kernel['id']}", "DELETE")[0] == 204
    assert api("/api/status")[1]["kernels"] == len(before)
    with pytest.raises(OSError):
        urlopen(f"{url}/api/contents", timeout=5)               # 403 without the token
