"""Plumbing shared by the benchmark scripts (run them as ``python benchmarks/NAME.py``).

Each script does, in this order::

    import _common
    _common.pin_threads()                  # before numpy is imported: BLAS threads from --threads
    import numpy as np
    ...
    ap = _common.parser(__doc__, "fitting")  # --out results/fitting.json, --threads
    ...
    _common.write_results(args.out, result)  # mkdir, JSON, "wrote ..."

Importing this module also puts the repository root on ``sys.path``, so the scripts import the
checkout's ``dualface_lite`` without an install.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: BLAS, OpenMP (torch) and OpenCV's own thread pool (the Haar cascade of the face check)
_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENCV_FOR_THREADS_NUM")

#: How long the networks behind the committed results that chapter 6 reads (``prior_scaling.json``,
#: ``shift.json``, ``lm2vertex_resnet.json``) trained: epochs on all 300 ``lite`` training people, 336
#: optimiser steps (``TrainConfig.lite()`` trains 4). The default of those benchmarks' ``--epochs``, so
#: that a run adds to its stored results like for like.
RECORDED_EPOCHS = 6


def threads_from_argv(argv, default: str = "1") -> str:
    """The value of ``--threads`` in ``argv`` (``default`` when absent)."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return default


def pin_threads(default: str = "1", argv=None) -> str:
    """Set the BLAS/OpenMP/OpenCV thread count from ``--threads`` (or ``default``) through the
    environment; call it before numpy is imported, or it has no effect. Returns the count."""
    n = threads_from_argv(sys.argv[1:] if argv is None else argv, default)
    for var in _THREAD_VARS:
        os.environ[var] = n
    return n


def parser(doc: str | None, name: str, threads: str = "1", seeds=None) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has: ``--out`` (default
    ``benchmarks/results/<name>.json``) and ``--threads`` (read early by :func:`pin_threads`); with
    ``seeds`` (a list), a benchmark that collects runs (:func:`stored_runs`): ``--seeds`` (default
    ``seeds``) and ``--summary`` (only print the stored runs' summary)."""
    ap = argparse.ArgumentParser(description=(doc or name).strip().split("\n")[0])
    ap.add_argument("--out", type=Path, default=RESULTS / f"{name}.json", help="where the JSON results go")
    ap.add_argument("--threads", default=threads, help=f"BLAS / torch threads (default {threads})")
    if seeds is not None:
        ap.add_argument("--seeds", type=int, nargs="*", default=list(seeds))
        ap.add_argument("--summary", action="store_true", help="only print the summary of the stored runs")
    return ap


def machine_info() -> dict:
    """What the numbers were measured on: CPU, cores, thread settings, load, versions."""
    import numpy as np

    info = dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                cpu_count=os.cpu_count(), python=platform.python_version(), numpy=np.__version__,
                blas_threads=os.environ.get("OPENBLAS_NUM_THREADS"), load_average=list(os.getloadavg()))
    if "torch" in sys.modules:
        info["torch"] = sys.modules["torch"].__version__
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
        # the vector instructions torch's CPU kernels use: trained figures move with them
        info["cpu_capability"] = sys.modules["torch"].backends.cpu.get_cpu_capability()
    return info


def median_ms(fn, repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` runs after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def write_results(path, result: dict, indent: int = 1) -> Path:
    """Write ``result`` as JSON to ``path`` (folders made as needed) and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=indent) + "\n")
    print(f"wrote {path}")
    return path


def stored_runs(path) -> list:
    """The ``runs`` of a results file that collects runs (``[]`` when there is none yet)."""
    path = Path(path)
    return json.loads(path.read_text())["runs"] if path.is_file() else []


def with_run(runs: list, run: dict, key) -> list:
    """``runs`` with ``run`` in place of any run of the same ``key(run)``, sorted by ``key``."""
    return sorted([r for r in runs if key(r) != key(run)] + [run], key=key)
