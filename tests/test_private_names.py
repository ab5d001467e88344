"""No file reaches into another module's private (``_underscore``) names.

A leading underscore says "this module's business only": it may change or vanish without notice.
When another module, a test, a benchmark or a chapter needs it, it should become public (and
documented) instead.  This test parses (``ast``) the package (``dualface_lite/*.py``), the tests,
the benchmarks and the code cells of the chapters (``notebooks/*.ipynb``), and fails on

* ``from dualface_lite.x import _y`` / ``from .x import _y`` / ``from x import _y``;
* ``import a._b`` / ``from a._b import c`` (a private module), unless ``_b`` sits next to the
  importing file (a folder's shared helper such as ``benchmarks/_common.py``);
* ``module._y`` / ``obj._y`` / ``Class._y`` attribute access where ``_y`` is not defined in the file
  itself (``self._y`` / ``cls._y`` are fine, and so is any ``_y`` the file defines: a function,
  class, assignment or attribute it sets).

Dunders (``__init__``) are public protocol, and so are the ``_repr_*_`` / ``_ipython_*_`` display
hooks of IPython and namedtuple's documented ``_replace`` / ``_asdict`` / ``_fields`` / ``_make``.
Third-party private names the kit cannot avoid are listed in :data:`ALLOWED` with the reason.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: (file relative to the repository root, dotted name) -> why this private name is allowed.
ALLOWED: dict[tuple[str, str], str] = {
    ("dualface_lite/viz.py", "plotly.io._base_renderers"): (
        "plotly exports MimetypeRenderer / PlotlyRenderer (the base classes of a custom renderer) "
        "only from this module; plotly's own docs subclass them from there"
    ),
    ("dualface_lite/data/build.py", "os._exit"): (
        "the documented way for a child process to stop at once (the standard library's own "
        "multiprocessing workers use it); a local dataset worker whose build process died exits so"
    ),
}

#: private-looking names that are public protocol or documented API
PUBLIC_PROTOCOL = re.compile(r"^(_repr_\w+_|_ipython_\w+_|_replace|_asdict|_fields|_field_defaults|_make)$")


def _is_private(name: str) -> bool:
    return (
        name.startswith("_")
        and not (name.startswith("__") and name.endswith("__"))
        and name.strip("_") != ""
        and not PUBLIC_PROTOCOL.match(name)
    )


@dataclass(frozen=True)
class Use:
    file: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.what}"


# --------------------------------------------------------------------------- sources
def _sources() -> list[tuple[str, str]]:
    """(display name, python source) for every file the test looks at."""
    out = []
    for pattern in ("dualface_lite/*.py", "dualface_lite/*/*.py", "tests/*.py", "benchmarks/*.py", "data_scripts/*.py"):
        for p in sorted(ROOT.glob(pattern)):
            out.append((str(p.relative_to(ROOT)), p.read_text(encoding="utf-8")))
    for p in sorted(ROOT.glob("notebooks/*.ipynb")):
        nb = json.loads(p.read_text(encoding="utf-8"))
        for k, cell in enumerate(nb["cells"]):
            if cell["cell_type"] != "code":
                continue
            src = "".join(cell["source"])
            # IPython magics / shell escapes are not Python
            src = "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in src.splitlines())
            out.append((f"{p.relative_to(ROOT)} [cell {k}]", src))
    return out


def _notebook_file(name: str) -> str:
    return name.split(" [cell ")[0]


def _defined_names(tree: ast.AST) -> set[str]:
    """Every name the source defines: functions, classes, arguments, assigned names and attributes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias) and node.asname:
            names.add(node.asname)  # `import x as _x` defines `_x` here
    return names


def _private_module(dotted: str) -> str | None:
    parts = dotted.split(".")
    return next((p for p in parts if _is_private(p)), None)


def private_uses(name: str, source: str, defined: set[str] | None = None,
                 siblings: set[str] = frozenset()) -> list[Use]:
    """The uses of other modules' private names in one file (``name`` is for the messages).

    ``defined``: names the file defines (for a notebook: over all its cells);
    ``siblings``: module names next to the file (a folder's own ``_helpers``).
    """
    tree = ast.parse(source, filename=name)
    if defined is None:
        defined = _defined_names(tree)
    uses: list[Use] = []

    def allowed(dotted: str) -> bool:
        return (_notebook_file(name), dotted) in ALLOWED

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            shown = "." * node.level + mod
            pm = _private_module(mod)
            # a private module next to this file (`from _common import x`, `from ._impl import y`)
            # is the folder's own business
            sibling = pm is not None and mod.split(".")[0] == pm and pm in siblings
            if pm and not sibling and not allowed(mod):
                uses.append(Use(name, node.lineno, f"from {shown} import ... (private module {pm})"))
            for alias in node.names:
                if not _is_private(alias.name) or allowed(f"{mod}.{alias.name}"):
                    continue
                if node.level and not mod and alias.name in siblings:  # from . import _sibling_module
                    continue
                uses.append(Use(name, node.lineno, f"from {shown} import {alias.name}"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                pm = _private_module(alias.name)
                if pm and not allowed(alias.name) and not (alias.name == pm and pm in siblings):
                    uses.append(Use(name, node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.Attribute) and _is_private(node.attr):
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            if node.attr in defined:
                continue
            target = ast.unparse(base)
            if allowed(f"{target}.{node.attr}"):
                continue
            uses.append(Use(name, node.lineno, f"{target}.{node.attr}"))
    return uses


def find_private_uses() -> list[Use]:
    sources = _sources()
    # a notebook is one namespace: a name one cell defines may be used by another
    nb_defined: dict[str, set[str]] = {}
    for name, src in sources:
        if name.endswith("]"):
            nb_defined.setdefault(_notebook_file(name), set()).update(_defined_names(ast.parse(src)))
    uses: list[Use] = []
    for name, src in sources:
        file = _notebook_file(name)
        siblings = {p.stem for p in (ROOT / file).parent.glob("*.py")}
        uses += private_uses(name, src, defined=nb_defined.get(file), siblings=siblings)
    return uses


# --------------------------------------------------------------------------- tests
def test_no_private_names_across_modules():
    uses = find_private_uses()
    assert not uses, (
        f"{len(uses)} use(s) of another module's private name (make it public, or keep it in its "
        "module):\n  " + "\n  ".join(map(str, uses))
    )


def test_every_source_parses_and_there_is_something_to_check():
    names = [n for n, _ in _sources()]
    assert any(n.startswith("dualface_lite/") for n in names)
    assert any(n.startswith("tests/") for n in names)
    assert any(n.startswith("notebooks/") for n in names)


def test_allow_list_is_not_stale():
    """Every ALLOWED entry still names a file that uses it (drop entries that are no longer needed)."""
    for file, dotted in ALLOWED:
        text = (ROOT / file).read_text(encoding="utf-8")
        assert dotted.split(".")[-1] in text, f"ALLOWED has {file}: {dotted}, which the file no longer uses"


# ---- the checker itself, on crafted sources
@pytest.mark.parametrize(
    "source, expected",
    [
        ("from dualface_lite.fitting import _landmark_box", ["from dualface_lite.fitting import _landmark_box"]),
        ("from .render import _vertex_normals, public", ["from .render import _vertex_normals"]),
        ("from . import _secret", ["from . import _secret"]),
        ("from dualface_lite import render\nrender._vertex_normals(v, f)", ["render._vertex_normals"]),
        ("prior = MRFPrior()\nprior._x", ["prior._x"]),
        ("MRFPrior._x", ["MRFPrior._x"]),
        ("import plotly.io._base_renderers", ["import plotly.io._base_renderers"]),
        ("from plotly.io._base_renderers import MimetypeRenderer",
         ["from plotly.io._base_renderers import ... (private module _base_renderers)"]),
        ("a.b._c.d", ["a.b._c"]),
        # fine
        ("class A:\n    def __init__(self):\n        self._x = 1\n    def f(self):\n        return self._x", []),
        ("class A:\n    @classmethod\n    def f(cls):\n        return cls._y", []),
        ("def _helper():\n    pass\n\nimport mod\nmod._helper", []),  # defined in this file
        ("class A:\n    _cache = {}\n\nA()._cache", []),
        ("obj.__class__.__name__\nobj.__dict__", []),
        ("fig._repr_mimebundle_()\np._replace(x=1)\np._asdict()", []),
        ("from _common import helper", []),  # a sibling helper module (see `siblings`)
        ("_, x = 1, 2\nx.real", []),
    ],
)
def test_checker(source, expected):
    uses = private_uses("crafted.py", source, siblings={"_common"})
    assert [u.what for u in uses] == expected


# --------------------------------------------------------------------------- pytest's warning filter
def test_package_warnings_are_errors():
    """pyproject's ``filterwarnings = ["error:::dualface_lite"]`` turns the kit's warnings into errors.

    (Kept here with the other code-hygiene checks.)  Code that runs as a ``dualface_lite`` module
    warns -> the test fails; a warning attributed to another module stays a warning.
    """
    import warnings

    code = compile("import warnings\nwarnings.warn('the kit warns', UserWarning)\n",
                   str(ROOT / "dualface_lite" / "data" / "build.py"), "exec")
    with pytest.raises(UserWarning, match="the kit warns"):
        exec(code, {"__name__": "dualface_lite.data.build"})  # as if dualface_lite/data/build.py called warn()
    with pytest.raises(RuntimeWarning, match="invalid value"):
        warnings.warn_explicit("invalid value encountered in divide", RuntimeWarning,
                               str(ROOT / "dualface_lite" / "metrics.py"), 1, module="dualface_lite.metrics")
    with warnings.catch_warnings(record=True) as seen:
        warnings.warn_explicit("someone else's warning (test_package_warnings_are_errors)", UserWarning,
                               "elsewhere.py", 1, module="not_the_kit")
    assert [str(w.message) for w in seen] == ["someone else's warning (test_package_warnings_are_errors)"]
    # the kit's own warning class is an error wherever it is attributed (stacklevel=2 -> the caller)
    from dualface_lite.checks import DualfaceWarning

    with pytest.raises(DualfaceWarning, match="stale"):
        warnings.warn("a stale cache", DualfaceWarning, stacklevel=1)
