"""Where the kit keeps files it did not ship: the face model and caches.

Nothing here is a hidden global: each function reads the environment when it is
called, so a test (or a student) can point the kit elsewhere with an environment
variable.

* ``DUALFACE_SFM_DIR``  -- a folder that already holds the Surrey Face Model files
  (the kit copies from it instead of downloading).
* ``DUALFACE_HOME``     -- where the kit stores its own copy of the model and its
  caches (default: ``data/`` in the repository when run from a checkout,
  else ``~/.cache/dualface_lite``).
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def home() -> Path:
    """Root folder for the kit's downloaded model and caches."""
    env = os.environ.get("DUALFACE_HOME")
    if env:
        return Path(env).expanduser().resolve()
    if (REPO_ROOT / "pyproject.toml").exists() and (REPO_ROOT / "dualface_lite").is_dir():
        return REPO_ROOT / "data"
    return Path.home() / ".cache" / "dualface_lite"


def sfm_dir() -> Path:
    """Folder where the kit keeps its copy of the Surrey Face Model files."""
    return home() / "sfm"


def cache_dir(name: str = "") -> Path:
    """A cache folder (created on demand) for results keyed by their inputs."""
    p = home() / "cache" / name if name else home() / "cache"
    p.mkdir(parents=True, exist_ok=True)
    return p
