"""The book and the READMEs state what *is*, for a reader who never saw the project's history.

No build history in the chapters (markdown, code and comments), the book's pages, the READMEs or the built
HTML: no "issue" followed by a number, "former", "earlier `lite`", "this machine", "session", "TODO".
History belongs in the git log and CHANGELOG.md (not checked).
"""
from __future__ import annotations

import html
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"

#: phrases that tell the project's history instead of what is
HISTORY = re.compile(r"\bissues?\s*#?\d+|\bformer(ly)?\b|\bearlier\s+`?lite\b|\bthis machine\b(?!-)|\bsessions?\b"
                     r"|\bTODO\b", re.IGNORECASE)


def history_phrases(text: str) -> list[str]:
    """Each build-history phrase in ``text``, with 30 characters of context either side."""
    return [text[max(0, m.start() - 30):m.end() + 30].replace("\n", " ") for m in HISTORY.finditer(text)]


def _sources() -> dict[str, str]:
    texts = {}
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        texts[nb_path.name] = "\n".join(c.source for c in nb.cells)
    pages = sorted((ROOT / "book").glob("*.md")) + [ROOT / "README.md"]
    pages += sorted(p for p in ROOT.glob("*/**/README.md") if not {".venv", "node_modules", "_build", "data"}
                    & set(p.relative_to(ROOT).parts))
    for p in pages:
        texts[str(p.relative_to(ROOT))] = p.read_text()
    return texts


def test_the_pattern_catches_build_history():
    for phrase in ("built in issue 11's `lite`", "before Issue 9 the fit", "the kit's former default",
                   "an earlier `lite` dataset", "on this machine (no internet)", "TODO: glue it",
                   "in the last session", "see issue #12"):
        assert history_phrases(phrase), phrase
    for phrase in ("the transformer", "an earlier chapter", "this machine-learning kit", "the issues list",
                   "JupyterLab's kernel"):
        assert not history_phrases(phrase), phrase


def test_sources_hold_no_build_history():
    found = {name: hits for name, text in _sources().items() if (hits := history_phrases(text))}
    assert not found, found
    assert len(_sources()) >= 8 + 4 + 2            # the chapters, the book's pages, the READMEs


@pytest.mark.slow
def test_built_book_holds_no_build_history():
    """The built HTML (chapters with their outputs, the API reference from the docstrings)."""
    pages = sorted(p for p in HTML.rglob("*.html") if "_static" not in p.parts and "_sources" not in p.parts)
    assert len(pages) >= 12, f"build the book first (make book): {len(pages)} pages in {HTML}"
    found = {}
    for p in pages:
        text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", p.read_text(), flags=re.S)
        text = html.unescape(re.sub(r"<[^>]+>", " ", text))
        if hits := history_phrases(text):
            found[str(p.relative_to(HTML))] = hits
    assert not found, found


def section_numbers(markdown_sources) -> tuple[int | None, list[str]]:
    """The chapter number (its ``# N.`` title) and the numbers of its ``## N.k`` sections, in order."""
    chapter, sections = None, []
    for text in markdown_sources:
        for line in text.splitlines():
            m = re.match(r"#\s+(\d+)\.\s", line)
            if m:
                chapter = int(m.group(1))
            m = re.match(r"##\s+(\d+\.\d+)\s", line)
            if m:
                sections.append(m.group(1))
    return chapter, sections


def test_the_sections_of_each_chapter_run_without_a_gap():
    """``## N.1``, ``## N.2``, ... in order: a section whose heading went missing leaves a gap."""
    assert section_numbers(["# 7. Title", "## 7.1 a\n## 7.3 b"]) == (7, ["7.1", "7.3"])
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        chapter, sections = section_numbers(c.source for c in nb.cells if c.cell_type == "markdown")
        if chapter is None or not sections:
            continue
        assert sections == [f"{chapter}.{k}" for k in range(1, len(sections) + 1)], path.name
