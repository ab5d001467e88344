"""The (mean, sd) written beside each trained-figure assertion are the spread recorded in
benchmarks/results/trained_spread.json (by benchmarks/bench_trained_spread.py): when the spread is measured
again, the tests' bounds must follow."""
import json
from pathlib import Path

import pytest

import trained_figures as TF
from test_mrf import MRF_LITE
from test_pipeline import TABLE_III
from test_train import IMAGE_MATTERS

SPREAD = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "trained_spread.json"


def _flat(table: dict, prefix: str) -> dict:
    out = {}
    for k, v in table.items():
        out.update(_flat(v, f"{prefix}.{k}") if isinstance(v, dict) else {f"{prefix}.{k}": v})
    return out


def test_the_bounds_are_the_recorded_spread():
    record = json.loads(SPREAD.read_text())
    summary = record["summary"]
    written = {**_flat(IMAGE_MATTERS, "image_matters"), **_flat(MRF_LITE, "mrf_lite"),
               **_flat(TABLE_III, "table_iii")}
    assert set(written) == set(summary), set(written) ^ set(summary)
    for key, (mean, sd) in written.items():
        s = summary[key]
        assert (mean, sd) == (pytest.approx(s["mean"], abs=5e-5), pytest.approx(s["sd"], abs=5e-5)), key
        assert s["n"] == len(record["runs"]) and s["floor"] == pytest.approx(TF.floor(mean, sd), abs=3e-4), key
    # at least 5 seeds, at 1 and at 2 threads
    assert len({r["seed"] for r in record["runs"]}) >= 5
    assert {r["threads"] for r in record["runs"]} == {1, 2}
