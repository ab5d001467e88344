"""The training data of the paper's Fig. 2, organised as FRGC v2.0: people, captures, photos.

Three modules, one concern each:

* :mod:`dualface_lite.data.config` -- the settings (:class:`DatasetConfig`, one
  :class:`SplitPlan` per split) and the cache key;
* :mod:`dualface_lite.data.build` -- one capture by Fig. 2 (:func:`build_capture`), and the
  whole dataset on local processes, any executor or a Dask cluster, resumable after a crash
  (:func:`build_dataset`);
* :mod:`dualface_lite.data.store` -- the files on disk and their readers (:func:`load_split`,
  :class:`FaceData`, memory-mapped);

and, for training, :class:`FaceDataset` (:mod:`dualface_lite.data.torchdata`, a
``torch.utils.data.Dataset`` of face crops and targets; torch is imported only then).
"""
from .build import build_capture, build_dataset
from .config import DATA_FORMAT_VERSION, SIZES, SPLITS, DatasetConfig, SplitPlan, dataset_dir
from .store import DatasetNotBuiltError, FaceData, load_scan, load_split, subject_for, verify_dataset

__all__ = ["DatasetConfig", "SplitPlan", "FaceData", "FaceDataset", "build_capture", "build_dataset",
           "load_split", "dataset_dir", "verify_dataset", "subject_for", "load_scan", "SIZES", "SPLITS",
           "DATA_FORMAT_VERSION", "DatasetNotBuiltError"]


def __getattr__(name):  # FaceDataset needs torch: `import dualface_lite.data` does not
    if name == "FaceDataset":
        from .torchdata import FaceDataset

        return FaceDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
