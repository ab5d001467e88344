"""Building and reading the dataset (``dualface_lite.data``): local processes against a local Dask
cluster, and what the ``paper`` size would take.

Measured, each build forced into a fresh temporary folder (nothing served from the cache):

* ``lite`` on ``--workers`` local processes (the default executor) and on a Dask ``LocalCluster``
  with as many single-threaded worker processes: wall time, captures and photos per second per
  core, and whether the two give byte-identical records (they must);
* a sample of ``paper`` captures (its settings: one photo per capture, ``--sample`` captures) on the
  local processes -> seconds per capture per core -> the extrapolated time of the whole ``paper``
  dataset (4,007 captures) on 2 cores and on 64, and its disk size;
* reading: the time to open ``lite``'s training split and the process's own memory (anonymous
  resident memory, Linux) after opening, after reading 64 items, and after reading one whole field;
  the pages of the memory-mapped files are counted apart (shared with the page cache);
* the quality of ``S_hat`` (and ``S_0``) against the true surface per condition (the manifest's summary).

Usage: ``python benchmarks/bench_dataset.py [--workers 2] [--sample 60] [--no-dask] [--reading-only]``.
Writes ``benchmarks/results/dataset.json``. About 7 minutes on 2 cores.
"""
from __future__ import annotations

import _common

_common.pin_threads()

import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


from dualface_lite import load_model  # noqa: E402
from dualface_lite.data import SPLITS, DatasetConfig, SplitPlan, build_dataset, load_split  # noqa: E402


def _records(folder: Path) -> dict:
    files = json.loads((folder / "manifest.json").read_text())["files"]
    return {k: v["sha256"] for k, v in files.items() if not k.startswith("timings/")}


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _memory_mb() -> dict:
    """This process's resident memory (MiB): ``anon`` (its own allocations: arrays read into memory)
    and ``file`` (pages of memory-mapped files, shared with the page cache and dropped first when
    memory is short). Linux's /proc/self/status; psutil's total elsewhere."""
    try:
        status = Path("/proc/self/status").read_text().splitlines()
        kb = {ln.split(":")[0]: int(ln.split()[1]) for ln in status if ln.startswith(("RssAnon", "RssFile"))}
        return {"anon": round(kb["RssAnon"] / 1024, 1), "file": round(kb["RssFile"] / 1024, 1)}
    except (OSError, KeyError, ValueError):
        import psutil

        return {"anon": round(psutil.Process().memory_info().rss / 2**20, 1), "file": None}


def _reading(folder: Path) -> dict:
    """Open the training split, read 64 items, then one whole field: time and memory at each step."""
    m0 = _memory_mb()
    t0 = time.perf_counter()
    tr = load_split(folder, "train")
    t_open = time.perf_counter() - t0
    m_open = _memory_mb()
    items = [tr.item(i) for i in range(0, len(tr), max(1, len(tr) // 64))[:64]]
    item_mb = sum(a.nbytes for it in items for a in it.values()) / 2**20
    m_items = _memory_mb()
    del items
    field_mb = tr.s0.nbytes / 2**20
    m_field = _memory_mb()
    out = dict(open_seconds=round(t_open, 4), memory_mb_before=m0, memory_mb_after_open=m_open,
               memory_mb_after_64_items=m_items, items_mb=round(item_mb, 1),
               memory_mb_after_s0_field=m_field, s0_field_mb=round(field_mb, 1))
    print(f"open the train split ({len(tr)} photos): {1e3 * t_open:.1f} ms; own memory (anon) {m0['anon']:.0f} -> "
          f"{m_open['anon']:.0f} MiB (open) -> {m_items['anon']:.0f} (64 items, {item_mb:.0f} MiB of arrays) -> "
          f"{m_field['anon']:.0f} (the s0 field, {field_mb:.0f} MiB); mapped file pages {m0['file']} -> "
          f"{m_field['file']} MiB")
    return out


def _build(cfg, root, model, **kw) -> tuple[Path, float]:
    t0 = time.perf_counter()
    folder = build_dataset(cfg, root=root, model=model, force=True, progress=False, **kw)
    return folder, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = _common.parser(__doc__, "dataset")
    ap.add_argument("--workers", type=int, default=2, help="local processes, and Dask workers (default 2)")
    ap.add_argument("--sample", type=int, default=60, help="paper-setting captures timed for the extrapolation")
    ap.add_argument("--no-dask", action="store_true", help="skip the Dask cluster build")
    ap.add_argument("--reading-only", action="store_true",
                    help="only the reading figures, on the lite dataset in the kit's cache (built if missing)")
    args = ap.parse_args(argv)
    if args.reading_only:
        folder = build_dataset(DatasetConfig.lite(), progress=True)
        res = {"machine": _common.machine_info(), "reading": _reading(folder)}
        _common.write_results(args.out.with_name(args.out.stem + "_reading.json"), res)
        return 0
    model = load_model()
    nw = int(args.workers)
    lite = DatasetConfig.lite()
    n_cap = sum(lite.plan(s).captures for s in SPLITS)
    n_photo = sum(lite.plan(s).n_photos for s in SPLITS)
    res = {"machine": _common.machine_info(), "workers": nw, "lite": {"captures": n_cap, "photos": n_photo}}
    tmp = Path(tempfile.mkdtemp(prefix="bench_dataset_"))
    try:
        print(f"lite: {n_cap} captures, {n_photo} photos; {nw} local processes ...", flush=True)
        local, t_local = _build(lite, tmp / "local", model, workers=nw)
        res["lite"].update(local_seconds=round(t_local, 1), bytes=_bytes(local),
                           captures_per_second_per_core=round(n_cap / t_local / nw, 3),
                           photos_per_second_per_core=round(n_photo / t_local / nw, 3))
        print(f"  {t_local:.1f} s, {n_cap / t_local / nw:.2f} captures/s/core, {_bytes(local) / 2**20:.0f} MiB",
              flush=True)
        if not args.no_dask:
            from dask.distributed import LocalCluster

            print(f"lite on a local Dask cluster ({nw} worker processes, 1 thread each) ...", flush=True)
            with LocalCluster(n_workers=nw, threads_per_worker=1, processes=True, dashboard_address=None,
                              silence_logs=40) as cluster:
                dask_folder, t_dask = _build(lite, tmp / "dask", model, scheduler=cluster.scheduler_address)
            same = _records(dask_folder) == _records(local)
            res["lite"].update(dask_seconds=round(t_dask, 1), dask_over_local=round(t_dask / t_local, 3),
                               dask_byte_identical=same)
            print(f"  {t_dask:.1f} s ({t_dask / t_local:.2f}x local), byte-identical: {same}", flush=True)
            shutil.rmtree(dask_folder)

        res["reading"] = _reading(local)
        man = json.loads((local / "manifest.json").read_text())
        res["quality"] = man["summary"]
        print("mean vertex error against the true surface (mm):")
        for split in SPLITS:
            for cond, r in man["summary"][split].items():
                print(f"  {split:5s} {cond:12s} S0 {r['s0_mm']:.2f}  S_hat {r['s_hat_mm']:.2f} "
                      f"(covered {r['s_hat_covered_mm']:.2f})")
        shutil.rmtree(local)

        # paper: a sample with its settings (one photo per capture, ~8.6 captures per person)
        paper = DatasetConfig.paper()
        per_person = paper.train.captures / paper.train.people
        n_people = max(3, round(args.sample / per_person))
        sample = DatasetConfig.paper(name="papersample", train=SplitPlan(n_people, int(args.sample), 1, 200_000),
                                     val=SplitPlan(0, 0), test=SplitPlan(3, 3, 1, 300_000))
        n_s = sum(sample.plan(s).captures for s in SPLITS)
        print(f"paper sample: {n_s} captures of 1 photo on {nw} local processes ...", flush=True)
        folder, t_s = _build(sample, tmp / "paper", model, workers=nw)
        core_s = t_s * nw / n_s
        n_paper = sum(paper.plan(s).captures for s in SPLITS)
        per_capture_bytes = _bytes(folder) / n_s
        res["paper"] = dict(captures=n_paper, sample_captures=n_s, sample_seconds=round(t_s, 1),
                            core_seconds_per_capture=round(core_s, 3),
                            extrapolated_minutes_2_cores=round(n_paper * core_s / 2 / 60, 1),
                            extrapolated_minutes_64_cores=round(n_paper * core_s / 64 / 60, 1),
                            extrapolated_gib=round(n_paper * per_capture_bytes / 2**30, 2))
        print(f"  {core_s:.2f} core-seconds per capture -> paper ({n_paper} captures): "
              f"{n_paper * core_s / 2 / 60:.0f} min on 2 cores, {n_paper * core_s / 64 / 60:.1f} min on 64; "
              f"{n_paper * per_capture_bytes / 2**30:.2f} GiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _common.write_results(args.out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
