"""Do the fast tests catch a 15% fault? Each fault below scales one computed quantity of the package by
1.15 (an error measure, a shading, a rank weight, an interval, a regularisation weight, ...), in a copy of
the checkout in a temporary folder; the fast tier (``pytest -m "not slow and not integration"``) then runs
on that copy and must fail. First a control: on the copy without a fault the fast tier must pass (else a
test that fails anyway would make every fault look caught). The script prints one line per fault and exits 1
if any fault went unnoticed.

Usage (after ``make env model``; about 1-5 minutes per fault on 2 cores, each run stops at its first
failure)::

    .venv/bin/python tests/check_faults.py               # every fault
    .venv/bin/python tests/check_faults.py delta shading # the faults whose names contain these words

Not a test itself (pytest collects only ``test_*.py``): it runs the fast tier once per fault.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: (name, file in the package, the exact code, the same code with the fault); each ``code`` must occur
#: exactly once in its file
FAULTS = [
    ("vertex error (metrics.vertex_errors' mean)", "metrics.py",
     "return float(vertex_errors(pred, gt, align).mean())",
     "return float(1.15 * vertex_errors(pred, gt, align).mean())"),
    ("batched vertex errors (metrics.mean_vertex_errors)", "metrics.py",
     "return np.linalg.norm(a - b, axis=2).mean(1)",
     "return 1.15 * np.linalg.norm(a - b, axis=2).mean(1)"),
    ("landmark error (metrics.landmark_error)", "metrics.py",
     "return float(np.linalg.norm(a - b, axis=1).mean())",
     "return float(1.15 * np.linalg.norm(a - b, axis=1).mean())"),
    ("shading (render: SH irradiance times albedo)", "render.py",
     "return np.clip(albedo * (_sh_basis(n) @ lighting.sh.astype(np.float64)), 0.0, 1.0)",
     "return np.clip(1.15 * albedo * (_sh_basis(n) @ lighting.sh.astype(np.float64)), 0.0, 1.0)"),
    ("rank weight delta (mrf.delta_weights)", "mrf.py",
     "return (1.0 - np.arange(k + 1) / (k + 1.0)).astype(np.float32)",
     "return (1.0 - 1.15 * np.arange(k + 1) / (k + 1.0)).astype(np.float32)"),
    ("bootstrap interval (evaluation.bootstrap_ci)", "evaluation.py",
     "return Interval(float(v.mean()), float(lo), float(hi), float(level), int(v.size))",
     "return Interval(float(v.mean()), float(lo - 0.075 * (hi - lo)), float(hi + 0.075 * (hi - lo)), "
     "float(level), int(v.size))"),
    ("eq. (7) normalisation (evaluation.normalized_errors)", "evaluation.py",
     "top = e.max(axis=1, keepdims=True)",
     "top = e.max(axis=1, keepdims=True) / 1.15"),
    ("eq. (7) for heat maps (evaluation.normalized_vertex_errors)", "evaluation.py",
     "top = e.max(axis=(-2, -1), keepdims=True)",
     "top = e.max(axis=(-2, -1), keepdims=True) / 1.15"),
    ("regularisation weight of eq. (4) (fitting.solve_shape's lambda)", "fitting.py",
     "d = np.concatenate([np.full(n_id, lam), np.full(K - n_id, lam_expr)])",
     "d = np.concatenate([np.full(n_id, 1.15 * lam), np.full(K - n_id, lam_expr)])"),
    ("cumulative error distribution (metrics.ced)", "metrics.py",
     "return x, (n if counts else n / e.size)", "return x, (n if counts else 1.15 * n / e.size)"),
    ("landmark NME (landmarks.normalized_mean_error)", "landmarks.py",
     "return float(np.linalg.norm(a - b, axis=1).mean() / np.linalg.norm(b[36] - b[45]))",
     "return float(1.15 * np.linalg.norm(a - b, axis=1).mean() / np.linalg.norm(b[36] - b[45]))"),
    ("scan-to-mesh distances (evaluation.scan_to_mesh)", "evaluation.py",
     "return ScanDistances(np.asarray(dist, dtype=np.float64), R, t, its)",
     "return ScanDistances(1.15 * np.asarray(dist, dtype=np.float64), R, t, its)"),
    ("learning-rate schedule (train: the cosine after the warm-up)", "train.py",
     "return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - w) / max(1, total - w))))",
     "return 0.575 * (1 + math.cos(math.pi * min(1.0, (step - w) / max(1, total - w))))"),
    ("pinhole projection (camera: the focal length)", "camera.py",
     "return np.stack([self.center[0] + self.focal * V[:, 0], self.center[1] - self.focal * V[:, 1]], axis=1)",
     "return np.stack([self.center[0] + 1.15 * self.focal * V[:, 0], self.center[1] - 1.15 * self.focal * V[:, 1]],"
     " axis=1)"),
    ("expression ridge of eq. (4) (fitting.DEFAULT_LAM_EXPR)", "fitting.py",
     "DEFAULT_LAM_EXPR = 0.01 ", "DEFAULT_LAM_EXPR = 0.0115 "),
    ("Lm2Vertex's default ridge", "baselines.py", "ridge: float = 1e-2,", "ridge: float = 1.15e-2,"),
    ("ground truth: NICP's reject distance (groundtruth.DEFAULT_REJECT_DISTANCE)", "groundtruth.py",
     "DEFAULT_REJECT_DISTANCE = 10.0", "DEFAULT_REJECT_DISTANCE = 11.5"),
    ("ground truth: the landmark outlier filter (groundtruth.DEFAULT_LANDMARK_MAX_RESIDUAL)", "groundtruth.py",
     "DEFAULT_LANDMARK_MAX_RESIDUAL = 15.0", "DEFAULT_LANDMARK_MAX_RESIDUAL = 17.25"),
    ("NICP's default reject distance (registration.nicp)", "registration.py",
     "reject_distance: float | None = 10.0,", "reject_distance: float | None = 11.5,"),
]


def _copy(dst: Path) -> None:
    """The checkout's tracked files (the package, the tests, and the chapters and pages some tests read)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)


def run_fault(name: str, file: str, code: str | None, faulty: str | None, home: Path) -> tuple[int, str, float]:
    """Run the fast tier on a copy of the checkout with the fault (none when ``code`` is None), with the kit's
    data folder ``home``; (pytest's exit status: 1 when a test failed, the last line, seconds)."""
    with tempfile.TemporaryDirectory(prefix="dualface-fault-") as tmp:
        tmp = Path(tmp)
        _copy(tmp)
        path = tmp / "dualface_lite" / file
        src = path.read_text(encoding="utf-8")
        if code is not None:
            if src.count(code) != 1:
                raise SystemExit(f"{name}: the code to change occurs {src.count(code)} times in {file}, not once")
            path.write_text(src.replace(code, faulty), encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=str(tmp), DUALFACE_HOME=str(home))
        imported = subprocess.run([sys.executable, "-c", "import dualface_lite; print(dualface_lite.__file__)"],
                                  cwd=tmp, env=env, capture_output=True, text=True).stdout.strip()
        if not imported.startswith(str(tmp)):
            raise SystemExit(f"the copy's package was not the one imported ({imported})")
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "pytest", "-m", "not slow and not integration", "-x", "-q",
                            "-p", "no:cacheprovider", "tests"], cwd=tmp, env=env, capture_output=True, text=True)
        lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
        return r.returncode, (lines[-1] if lines else r.stderr[-300:]), time.monotonic() - t0


def _home() -> Path:
    """The kit's data folder of this checkout (the face model), for the copies."""
    sys.path.insert(0, str(ROOT))
    from dualface_lite import paths

    return paths.home()


def main(words) -> int:
    chosen = [f for f in FAULTS if not words or any(w.lower() in f[0].lower() for w in words)]
    missed, home = [], _home()
    # the control: without a fault the fast tier must pass on the copy, else every fault would look caught
    status, last, sec = run_fault("no fault", "metrics.py", None, None, home=home)
    print(f"control (no fault): {last} ({sec:.0f} s)", flush=True)
    if status != 0:
        raise SystemExit("the fast tier does not pass on the copy without any fault: fix that first")
    for fault in chosen:
        status, last, sec = run_fault(*fault, home=home)
        caught = status == 1
        print(f"{'caught' if caught else 'MISSED'}  {fault[0]}  ({sec:.0f} s: {last})", flush=True)
        if not caught:
            missed.append(fault[0])
    print(f"{len(chosen) - len(missed)} of {len(chosen)} faults caught by the fast tier")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
