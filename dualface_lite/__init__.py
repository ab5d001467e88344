"""dualface_lite: the dual-network face reconstruction of Fan et al. (IEEE TMM),
rebuilt stage by stage for teaching. One module per stage:

- :mod:`dualface_lite.model`   the PCA morphable model (Surrey Face Model)
- :mod:`dualface_lite.camera`  cameras and projection (one convention, see there)
- :mod:`dualface_lite.render`  a vectorized software rasterizer
- :mod:`dualface_lite.synth`   synthetic subjects: photo, landmarks, range scan
- :mod:`dualface_lite.viz`     plotly figures for the book
"""
from . import camera, fetch, paths
from .model import MorphableModel, load_model

__version__ = "0.1.0"


def __getattr__(name):  # stage modules load on first use, so `import dualface_lite` stays light
    import importlib

    if name in {"render", "synth", "viz"}:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MorphableModel", "load_model", "camera", "fetch", "paths", "render", "synth", "viz"]
