"""dualface_lite: the dual-network face reconstruction of Fan et al. (IEEE TMM),
rebuilt stage by stage for teaching. One module per stage:

- :mod:`dualface_lite.model`   the PCA morphable model (Surrey Face Model)
- :mod:`dualface_lite.camera`  cameras and projection (one convention, see there)
- :mod:`dualface_lite.render`  a vectorized software rasterizer
- :mod:`dualface_lite.synth`   synthetic subjects: photo, landmarks, range scan
- :mod:`dualface_lite.fitting` eq. (4): the landmark fit, personalized template S0 with colours
- :mod:`dualface_lite.baselines` Lm2Vertex, the paper's landmark-regression baseline
- :mod:`dualface_lite.scans`   range images to meshes, FRGC .abs files
- :mod:`dualface_lite.registration` optimal-step non-rigid ICP, ``nicp`` (Fig. 2)
- :mod:`dualface_lite.groundtruth` the Fig. 2 step: S0 registered onto a scan -> S_hat
- :mod:`dualface_lite.data`    the dataset of Fig. 2 as FRGC: people, captures, photos (config, build, store)
- :mod:`dualface_lite.mrf`     the learnable MRF prior: one shallow net per vertex
- :mod:`dualface_lite.resnet`  the appearance-to-structure network T_L of eq. (3), Table I's head
- :mod:`dualface_lite.train`   training T_L on one CPU, one GPU or many (torchrun), cached
- :mod:`dualface_lite.pipeline` the dual networks assembled: ``DualNetwork``, the variants of Table III
- :mod:`dualface_lite.metrics` mean vertex error after rigid alignment
- :mod:`dualface_lite.evaluation` eq. (7), CED, bootstrap intervals, paired comparisons, scan-to-mesh
- :mod:`dualface_lite.viz`     plotly figures for the book
- :mod:`dualface_lite.landmarks` 68 landmarks on real photos (dlib, face-alignment, .pts files)
- :mod:`dualface_lite.io`      PLY / OBJ (textured) / GLB export
- :mod:`dualface_lite.cli`     the ``dualface`` command
"""
from . import camera, fetch, paths
from .model import MorphableModel, load_model

__version__ = "0.1.0"


_MODULES = {"render", "synth", "viz", "fitting", "baselines", "metrics", "scans", "data", "mrf", "resnet", "train",
            "pipeline", "evaluation", "registration", "groundtruth", "checks", "landmarks", "io", "cli"}
_FUNCTIONS = {"fit_landmarks": "fitting", "Fit": "fitting", "MRFPrior": "mrf", "MRFGC": "mrf",
              "DualNetwork": "pipeline"}


def __getattr__(name):  # stage modules load on first use, so `import dualface_lite` stays light
    import importlib

    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(f"{__name__}.{_FUNCTIONS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# df.nicp is the registration *function* of the public API; its module is
# `dualface_lite.registration` (e.g. `from dualface_lite.registration import NICPResult`), so that
# `import dualface_lite.<module>` always gives a module.
from .registration import nicp  # noqa: E402

__all__ = ["MorphableModel", "load_model", "fit_landmarks", "Fit", "nicp", "MRFPrior", "MRFGC", "DualNetwork", "camera",
           "fetch", "paths", *sorted(_MODULES)]
