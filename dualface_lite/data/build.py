"""Building the dataset: photo + range scan -> ``S_0`` -> NICP -> ``S_hat`` (paper section IV-A,
Fig. 2), one capture at a time, on any ``concurrent.futures.Executor``, safe against a crash.

The unit of work is a capture (:func:`build_capture`): the first photo's landmark fit ``S_0``
is registered onto the capture's range scan (the Fig. 2 step, :mod:`dualface_lite.groundtruth`),
and every other photo of the capture gets its own ``S_0`` and colours.

:func:`build_dataset` runs the captures on local processes (default), on any executor you pass,
or on a Dask cluster (``scheduler="tcp://..."`` or a ``dask.distributed.Client``), and:

* writes each finished capture at once, atomically (a temporary file renamed into place), to
  ``.<name>-<key>.build/parts/<split>/<row>-<sha>.npz``: the name carries the SHA-256 of the
  bytes, so a truncated or corrupted part is found and built again;
* resumes: a build killed part-way (even by SIGKILL) starts again from the parts it left; the
  result is byte-identical to an uninterrupted build (each capture depends only on its seeds,
  computed with one BLAS thread);
* holds a lock (``.<name>-<key>.lock``) so two builds of the same settings wait for each other
  instead of writing the same files;
* stops its own worker processes when the process that started them dies;
* assembles the parts into the memory-mapped tables of :mod:`dualface_lite.data.store` with a
  manifest of checksums, and renames the finished folder into place: an unfinished build is
  never served.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import sys
import threading
import time
import warnings
import zipfile
from concurrent.futures import Executor, as_completed
from pathlib import Path

import numpy as np

from ..checks import DualfaceWarning
from ..fitting import fit_landmarks
from ..groundtruth import ground_truth
from ..model import MorphableModel
from ..paths import FileLock, source_fingerprint, write_atomic
from ..registration import surface_distance
from ..synth import CONDITIONS, make_person
from .config import DATA_FORMAT_VERSION, SPLITS, DatasetConfig, as_config, dataset_dir
from .store import (TIMING_FIELDS, field_specs, read_manifest, subject_for, table_file, timing_file,
                    verify_dataset)

__all__ = ["build_capture", "build_dataset", "code_fingerprint", "model_fingerprint"]

#: the modules whose code makes the records (a change is reported on a cache hit, and parts
#: left by a build with other code are not reused)
_CODE_FILES = ("camera.py", "checks.py", "render.py", "model.py", "synth.py", "scans.py", "fitting.py",
               "registration.py", "groundtruth.py", "metrics.py", "data/config.py", "data/build.py",
               "data/store.py")
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                "NUMEXPR_NUM_THREADS", "BLIS_NUM_THREADS")


# ---------------------------------------------------------------------------
# one capture (Fig. 2)
# ---------------------------------------------------------------------------

def build_capture(config, split: str, row: int, model: MorphableModel) -> dict:
    """Capture ``row`` of a split (the order of :meth:`DatasetConfig.captures`), by the paper's
    data preparation (section IV-A, Fig. 2).

    Photo 0 + range scan -> landmark fit ``S_0`` with colours (eq. (4)) ->
    :func:`dualface_lite.groundtruth.ground_truth` with the config's settings -> ``S_hat``;
    photos 1.. of the capture -> their own ``S_0`` and colours.

    Returns ``{"photos": {...}, "capture": {...}}``, numpy arrays in the object frame (mm) with
    the fields of :func:`dualface_lite.data.store.field_specs` (photo fields with a leading axis
    of the capture's photos) and the wall times ``fit_seconds`` / ``nicp_seconds``; the capture
    also holds ``scan_vertices`` / ``scan_faces`` when ``config.keep_scans``.
    """
    config = as_config(config)
    plan = config.plan(split)
    caps = config.captures(split)
    if isinstance(row, bool) or not isinstance(row, (int, np.integer)) or not 0 <= row < len(caps):
        raise ValueError(f"row must be an integer in [0, {len(caps) - 1}] (a capture of {split}), got {row!r}")
    person_row, cap_index = caps[int(row)]
    seed, condition = config.people(split)[person_row]
    person = make_person(seed, condition, model=model, population=config.population)

    photos = []
    for j in range(plan.photos):
        s = subject_for(config, seed, condition, model=model, with_scan=(j == 0), capture=cap_index, photo=j,
                        person=person)
        t0 = time.perf_counter()
        fit = fit_landmarks(model, s.landmarks, image=s.image, **config.fit_kwargs())
        t_fit = time.perf_counter() - t0
        photos.append(dict(
            image=s.image, landmarks=s.landmarks.astype(np.float32), s0=np.asarray(fit.vertices, np.float32),
            colors=np.asarray(fit.colors, np.float32), visible=np.asarray(fit.visible, bool),
            pose=np.asarray(s.pose, np.float32), fit_pose=np.asarray(fit.angles, np.float32),
            fit_alpha=np.asarray(fit.alpha, np.float32), fit_expr=np.asarray(fit.expr, np.float32),
            fit_landmark_error=np.float32(fit.landmark_error), capture_row=np.int32(row),
            photo_index=np.int16(j), fit_seconds=np.float32(t_fit)))
        if j == 0:
            first = s
    V = np.asarray(first.scan.vertices, dtype=np.float64)
    F = np.asarray(first.scan.faces, dtype=np.int64)
    gt = ground_truth(model, photos[0]["s0"], (V, F), first.camera, first.landmarks, **config.ground_truth_kwargs())
    covered = surface_distance(first.vertices, V, F) <= config.covered_distance   # NICP's own closest-point query
    capture = dict(s_hat=gt.s_hat.astype(np.float32), true=first.vertices.astype(np.float32), covered=covered,
                   scan_landmarks=gt.scan_landmarks.astype(np.float32), expr=first.expr.astype(np.float32),
                   person_row=np.int32(person_row), capture_index=np.int16(cap_index),
                   nicp_seconds=np.float32(gt.seconds))
    if config.keep_scans:
        capture["scan_vertices"] = V.astype(np.float32)
        capture["scan_faces"] = F.astype(np.int32)
    return {"photos": {k: np.stack([p[k] for p in photos]) for k in photos[0]}, "capture": capture}


# ---------------------------------------------------------------------------
# fingerprints and files
# ---------------------------------------------------------------------------

def model_fingerprint(model: MorphableModel) -> str:
    """16 hex digits of the face model's arrays (a dataset is tied to the model that made it)."""
    h = hashlib.sha256()
    for a in (model.mean, model.basis, model.sigma, model.expressions, model.triangles, model.ibug68,
              model.ibug_defined):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def code_fingerprint() -> str:
    """16 hex digits of the code (not the docstrings or comments) of the source files that make the
    records."""
    return source_fingerprint(_CODE_FILES)


def _npz_bytes(arrays: dict) -> bytes:
    """Like ``np.savez`` (a zip of ``.npy`` files, no pickle) with fixed timestamps, in memory."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, a in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w") as out:
                np.lib.format.write_array(out, np.asarray(a), allow_pickle=False)
    return buf.getvalue()


def _part_bytes(rec: dict) -> bytes:
    flat = {f"photos.{k}": v for k, v in rec["photos"].items()}
    flat.update({f"capture.{k}": v for k, v in rec["capture"].items()})
    return _npz_bytes(flat)


def _write_part(parts: Path, split: str, row: int, rec: dict) -> Path:
    data = _part_bytes(rec)
    d = parts / split
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{row:06d}-{hashlib.sha256(data).hexdigest()[:16]}.npz"
    write_atomic(path, data)
    return path


def _read_part(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        flat = {k: z[k] for k in z.files}
    rec = {"photos": {}, "capture": {}}
    for k, v in flat.items():
        table, name = k.split(".", 1)
        rec[table][name] = v
    return rec


def _good_parts(parts: Path, config: DatasetConfig) -> tuple[dict, int]:
    """``({(split, row): path}, number dropped)``: the parts whose bytes match the checksum in
    their name; every other file in ``parts`` (bad, temporary, or not part of the plan) is removed."""
    from ..fetch import sha256

    expected = {(s, r) for s in SPLITS for r in range(config.plan(s).captures)}
    good, dropped = {}, 0
    for p in sorted(parts.glob("*/*")) if parts.is_dir() else []:
        if ".tmp-" in p.name:            # a write that a dead build did not finish: never a part
            p.unlink()
            continue
        stem, _, sha = p.name.removesuffix(".npz").partition("-")
        key = (p.parent.name, int(stem)) if stem.isdigit() and p.name.endswith(".npz") else None
        if key in expected and key not in good and sha256(p)[:16] == sha:
            good[key] = p
        else:
            dropped += 1
            p.unlink()
    return good, dropped


# ---------------------------------------------------------------------------
# the lock and the workers
# ---------------------------------------------------------------------------

_LOCAL: dict = {}   # per worker process: the model of the local pool, and whether BLAS is limited


def _exit_with_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:     # the build process died: this worker was re-parented
            os._exit(1)


def _init_local_worker(model: MorphableModel, parent: int) -> None:
    _LOCAL["model"] = model
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="exit-with-parent").start()


def _one_blas_thread() -> None:
    """Limit BLAS to one thread for good in a worker *process* (the build's own process limits itself
    only while it builds: see :func:`_build_locked`)."""
    import multiprocessing as mp

    if mp.parent_process() is not None and not _LOCAL.get("limited"):
        try:
            from threadpoolctl import threadpool_limits

            _LOCAL["limits"] = threadpool_limits(1)
        except ImportError:
            pass
        _LOCAL["limited"] = True


def _blas_limit():
    """A context that limits BLAS to one thread in this process (a no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1)


def _capture_task(config: DatasetConfig, split: str, row: int, model):
    """What a worker runs: one capture, with one BLAS thread (the same bits on every executor)."""
    _one_blas_thread()
    return split, row, build_capture(config, split, row, model if model is not None else _LOCAL["model"])


class _single_thread_env:
    """Set the BLAS/OpenMP thread variables to 1 while local worker processes start (they read
    them when numpy loads), then restore them."""

    def __enter__(self):
        self.saved = {v: os.environ.get(v) for v in _THREAD_VARS}
        os.environ.update({v: "1" for v in _THREAD_VARS})

    def __exit__(self, *exc):
        for v, old in self.saved.items():
            if old is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = old


def _n_workers(workers, n_tasks: int) -> int:
    if workers is None:
        try:
            workers = len(os.sched_getaffinity(0))
        except AttributeError:
            workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a positive integer (or None for all CPUs), got {workers!r}")
    return int(max(1, min(workers, n_tasks)))


def _is_dask_client(obj) -> bool:
    return type(obj).__module__.split(".")[0] == "distributed" and hasattr(obj, "get_executor") \
        and hasattr(obj, "scatter")


# ---------------------------------------------------------------------------
# the whole dataset
# ---------------------------------------------------------------------------

def _versions() -> dict:
    import scipy
    import trimesh

    from .. import __version__

    return dict(python=platform.python_version(), numpy=np.__version__, scipy=scipy.__version__,
                trimesh=trimesh.__version__, dualface_lite=__version__)


def _assemble(out: Path, config: DatasetConfig, model: MorphableModel, parts: dict) -> None:
    """The parts -> the store's tables (:mod:`dualface_lite.data.store`), in plan order."""
    specs = field_specs(config, model)
    for split in SPLITS:
        plan = config.plan(split)
        n = {"photos": plan.n_photos, "captures": plan.captures, "people": plan.people}
        tables = {}
        for table, fields_ in specs.items():
            (out / split / table).mkdir(parents=True, exist_ok=True)
            tables[table] = {name: np.lib.format.open_memmap(table_file(out, split, table, name), mode="w+",
                                                             dtype=dt, shape=(n[table], *shape))
                             for name, (shape, dt) in fields_.items()}
        times = {name: np.zeros(n[t], np.float32) for name, t in TIMING_FIELDS.items()}
        for row in range(plan.captures):
            rec = _read_part(parts[split, row])
            sl = slice(row * plan.photos, (row + 1) * plan.photos)
            for name, a in tables["photos"].items():
                a[sl] = rec["photos"][name]
            for name, a in tables["captures"].items():
                a[row] = rec["capture"][name]
            times["fit_seconds"][sl] = rec["photos"]["fit_seconds"]
            times["nicp_seconds"][row] = rec["capture"]["nicp_seconds"]
            if config.keep_scans:
                d = out / "scans" / split
                d.mkdir(parents=True, exist_ok=True)
                (d / f"{row:06d}.npz").write_bytes(_npz_bytes({"vertices": rec["capture"]["scan_vertices"],
                                                                "faces": rec["capture"]["scan_faces"]}))
        people = config.people(split)
        tables["people"]["seed"][:] = [s for s, _ in people]
        tables["people"]["condition"][:] = [CONDITIONS.index(c) for _, c in people]
        for t in tables.values():
            for a in t.values():
                a.flush()
        del tables
        (out / "timings").mkdir(exist_ok=True)
        for name, a in times.items():
            np.save(timing_file(out, split, name), a, allow_pickle=False)


def _summary(folder: Path, split: str) -> dict:
    """Per-condition means of the errors against the true surface (mm), per photo (S0) and per
    capture (S_hat)."""
    from ..metrics import per_condition
    from .store import FaceData

    d = FaceData(folder, split)
    if len(d) == 0:
        return {}
    e0 = np.stack([np.linalg.norm(d.read("s0", i) - d.read("true", i), axis=1).mean() for i in range(len(d))])
    first = d.photo_index == 0
    cap = d.first_photos()
    eh = np.linalg.norm(cap.s_hat - cap.true, axis=2)
    cov = cap.covered
    e0_first = e0[first]
    per_capture = dict(
        s0_first_photo_mm=e0_first, s_hat_mm=eh.mean(1),
        s_hat_covered_mm=np.array([e[c].mean() if c.any() else np.nan for e, c in zip(eh, cov)]),
        covered_fraction=cov.mean(1), scan_landmarks=np.isfinite(cap.scan_landmarks[:, :, 0]).sum(1))
    out = {}
    t_photo = per_condition(e0, d.condition, CONDITIONS)
    t_cap = {k: per_condition(v, cap.condition, CONDITIONS) for k, v in per_capture.items()}
    for code, name in enumerate(CONDITIONS):
        if name in t_photo:
            out[name] = dict(people=int(len(np.unique(d.person_row[d.condition == code]))),
                             captures=int((cap.condition == code).sum()), photos=int((d.condition == code).sum()),
                             s0_mm=t_photo[name], **{k: t_cap[k][name] for k in per_capture})
    return out


def _write_manifest(out: Path, config: DatasetConfig, model_fp: str, build_seconds: float, workers,
                    executor_name: str, resumed: int) -> None:
    from ..fetch import sha256

    files = sorted(p for p in out.rglob("*") if p.is_file())
    nicp = np.concatenate([np.load(timing_file(out, s, "nicp_seconds")) for s in SPLITS])
    sizes = {s: {"people": config.plan(s).people, "captures": config.plan(s).captures,
                 "photos": config.plan(s).n_photos} for s in SPLITS}
    man = dict(
        format=DATA_FORMAT_VERSION, name=config.name, key=config.key(), config=config.to_dict(), sizes=sizes,
        conditions=list(CONDITIONS), build_seconds=round(build_seconds, 2), workers=workers,
        executor=executor_name, resumed_captures=resumed,
        nicp_seconds_mean=round(float(nicp.mean()), 4) if nicp.size else None,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), model_fingerprint=model_fp,
        code_fingerprint=code_fingerprint(), versions=_versions(),
        files={p.relative_to(out).as_posix(): dict(bytes=p.stat().st_size, sha256=sha256(p)) for p in files},
    )
    (out / "manifest.json").write_text(json.dumps(man, indent=2))
    man["summary"] = {s: _summary(out, s) for s in SPLITS}
    (out / "manifest.json").write_text(json.dumps(man, indent=2))


def build_dataset(config="lite", root=None, workers: int | None = None, progress: bool = True,
                  force: bool = False, model: MorphableModel | None = None, executor=None,
                  scheduler: str | None = None) -> Path:
    """Build the dataset of ``config`` (paper section IV-A, Fig. 2) and return its folder.

    Parameters
    ----------
    config : a :class:`~dualface_lite.data.DatasetConfig`, or ``"lite"`` / ``"paper"``.
    root : parent folder (default ``paths.cache_dir("datasets")``); the dataset goes
        to ``root / f"{config.name}-{config.key()}"``.
    workers : local processes (default: the CPUs this process may use); each loads the model
        once, uses one BLAS thread and exits if this process dies. Ignored with ``executor`` or
        ``scheduler``. The arrays do not depend on it.
    progress : show a tqdm bar over the captures (done, rate, time left).
    force : rebuild even when a finished build is there (parts of an unfinished build are reused).
    model : the face model (default ``load_model()``).
    executor : any ``concurrent.futures.Executor`` (a process pool you manage, a thread pool,
        ``dask.distributed.Client(...).get_executor()``), or a ``dask.distributed.Client`` (the
        model is then sent to each worker once). Yours: it is not shut down.
    scheduler : the address of a Dask scheduler (``"tcp://host:8786"``): connects a client,
        runs there, disconnects. Needs the ``cluster`` extra (``pip install dualface_lite[cluster]``);
        the workers need ``dualface_lite`` installed (not the face model files).

    Notes
    -----
    Local workers are *spawned* processes, which import the calling script again: a script that
    calls ``build_dataset`` needs the usual ``if __name__ == "__main__":`` guard (notebooks and
    the CLI need nothing).

    A finished build (manifest present, every file's SHA-256 matching, same face model) is
    returned at once; if the code that makes the records changed since (its hash is in the
    manifest) a warning says so, and ``force=True`` rebuilds. See the module's docstring for
    what happens on a crash.
    """
    config = as_config(config)
    _n_workers(workers, 1)  # check the argument before anything else
    if executor is not None and not (isinstance(executor, Executor) or _is_dask_client(executor)):
        raise ValueError(f"executor must be a concurrent.futures.Executor or a dask.distributed.Client, "
                         f"got {type(executor).__name__}")
    if scheduler is not None and (executor is not None or not isinstance(scheduler, str)):
        raise ValueError("scheduler must be an address string (tcp://host:port), and not given with executor")
    folder = dataset_dir(config, root)
    if model is None:
        from ..model import load_model

        model = load_model()
    model_fp = model_fingerprint(model)

    def finished() -> bool:
        if force or not folder.is_dir() or not verify_dataset(folder):
            return False
        man = read_manifest(folder)
        if man.get("model_fingerprint") != model_fp:
            return False
        if man.get("code_fingerprint") != code_fingerprint():
            warnings.warn(f"the code that makes the dataset changed since {folder.name} was built; "
                          f"serving the cached build (pass force=True, or --force, to rebuild)",
                          DualfaceWarning, stacklevel=3)
        return True

    if finished():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(folder.parent / f".{folder.name}.lock", "another build of this dataset" if progress else None):
        if finished():            # another build of the same settings finished while we waited
            return folder
        return _build_locked(config, folder, model, model_fp, workers, progress, executor, scheduler)


def _build_locked(config, folder, model, model_fp, workers, progress, executor, scheduler) -> Path:
    from tqdm.auto import tqdm

    work = folder.parent / f".{folder.name}.build"
    parts = work / "parts"
    stamp = {"key": config.key(), "model": model_fp, "code": code_fingerprint()}
    old = None
    try:
        old = json.loads((work / "stamp.json").read_text())
    except (OSError, ValueError):
        pass
    if old != stamp and work.exists():     # parts of other code or another model: not reusable
        shutil.rmtree(work)
    for leftover in ("out", "old"):
        shutil.rmtree(work / leftover, ignore_errors=True)
    parts.mkdir(parents=True, exist_ok=True)
    write_atomic(work / "stamp.json", json.dumps(stamp).encode())

    done, dropped = _good_parts(parts, config)
    todo = [(s, r) for s in SPLITS for r in range(config.plan(s).captures) if (s, r) not in done]
    total = sum(config.plan(s).captures for s in SPLITS)
    resumed = len(done)
    if progress and (resumed or dropped):
        print(f"resuming {folder.name}: {resumed} of {total} captures already built"
              + (f", {dropped} damaged part(s) to build again" if dropped else ""), file=sys.stderr)

    t_start = time.perf_counter()
    client = own_client = own_pool = None
    n_workers, executor_name = None, "local processes"
    if todo:
        if scheduler is not None:
            from dask.distributed import Client

            client = own_client = Client(scheduler)
        elif _is_dask_client(executor):
            client = executor
        if client is not None:
            ex = client.get_executor()
            model_arg = client.scatter(model, broadcast=True, hash=False)
            n_workers, executor_name = len(client.scheduler_info().get("workers", {})), "dask"
        elif executor is not None:
            ex, model_arg = executor, model
            executor_name = type(executor).__name__
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            n_workers = _n_workers(workers, len(todo))
            ex = own_pool = ProcessPoolExecutor(n_workers, mp_context=mp.get_context("spawn"),
                                                initializer=_init_local_worker, initargs=(model, os.getpid()))
            model_arg = None
        bar = tqdm(total=total, initial=resumed, desc=f"dataset {config.name}", unit="capture",
                   disable=not progress, smoothing=0.1)
        futures = []
        try:
            # one BLAS thread here too while the build runs: a thread pool works in this process
            with _single_thread_env(), _blas_limit():   # (local workers start on the first submits)
                futures = [ex.submit(_capture_task, config, s, r, model_arg) for s, r in todo]
                for fut in as_completed(futures):
                    split, row, rec = fut.result()
                    done[split, row] = _write_part(parts, split, row, rec)
                    bar.update(1)
        except BaseException as e:
            for fut in futures:
                fut.cancel()
            from concurrent.futures.process import BrokenProcessPool

            if isinstance(e, BrokenProcessPool):
                raise RuntimeError("a dataset worker process died (out of memory? or a script that calls "
                                   "build_dataset without the `if __name__ == \"__main__\":` guard); "
                                   "run again to resume") from e
            raise
        finally:
            bar.close()
            if own_pool is not None:
                own_pool.shutdown(wait=True, cancel_futures=True)
            if own_client is not None:
                own_client.close()

    out = work / "out"
    out.mkdir()
    _assemble(out, config, model, done)
    _write_manifest(out, config, model_fp, time.perf_counter() - t_start, n_workers, executor_name, resumed)
    if folder.exists():                    # force=True, or a damaged build: out of the way first
        os.replace(folder, work / "old")
    os.replace(out, folder)
    shutil.rmtree(work)
    return folder
