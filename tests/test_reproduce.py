"""data_scripts/reproduce.py: the whole method in one command, at tiny size on the CPU (the same path as the
paper size on a GPU). It builds the dataset, trains the three networks, writes the report; a second run takes
every step from the cache; bad options are refused."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "data_scripts" / "reproduce.py"


def _run(*args, timeout):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)      # a hang guard (conftest.py names it so)


@pytest.mark.slow
@pytest.mark.integration
def test_tiny_end_to_end_then_from_the_cache(tmp_path):
    args = ["--size", "tiny", "--out", str(tmp_path / "report"), "--root", str(tmp_path / "nets"),
            "--data-root", str(tmp_path / "data"), "--n-boot", "200", "--workers", "2", "--no-scans",
            "--quiet"]
    first = _run(*args, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    out = tmp_path / "report"
    for name in ("report.json", "summary.md", "reproduce.json", "ced_s_hat.png", "gallery.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "reproduce.json").read_text())
    assert summary["size"] == "tiny" and summary["test_photos"] == 6
    assert summary["steps"]["networks"]["cached"] == {"ResNet": False, "ResNetGC": False, "Ours": False}
    assert set(summary["steps"]["networks"]["device"].values()) == {"cpu"}
    report = json.loads((out / "report.json").read_text())
    errors = report["evaluation"]["per_face"]["s_hat"]
    assert {"Lm2Vertex", "ResNet", "GC", "MRFGC", "ResNetGC", "Ours"} <= set(errors)
    assert all(len(v) == 6 and all(0 < e < 20 for e in v) for v in errors.values())   # mm, one per test photo
    second = _run(*args, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads((out / "reproduce.json").read_text())
    assert again["steps"]["networks"]["cached"] == {"ResNet": True, "ResNetGC": True, "Ours": True}
    assert again["steps"]["networks"]["trained_seconds"] == summary["steps"]["networks"]["trained_seconds"]
    assert again["steps"]["dataset"]["folder"] == summary["steps"]["dataset"]["folder"]
    assert json.loads((out / "report.json").read_text())["evaluation"]["per_face"] == report["evaluation"]["per_face"]
    assert "ResNetGC cached" in second.stdout


@pytest.mark.integration
def test_bad_options_are_refused():
    r = _run("--size", "huge", timeout=120)
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = _run("--size", "tiny", "--workers", "0", timeout=120)
    assert r.returncode == 2 and "--workers must be at least 1" in r.stderr
