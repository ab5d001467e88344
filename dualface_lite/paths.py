"""Where the kit keeps files it did not ship (the face model and caches), and how it writes them safely.

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

import ast
import functools
import hashlib
import os
import sys
import threading
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


def real_faces_dir() -> Path:
    """Folder of the real photos with hand-labelled landmarks (:func:`dualface_lite.fetch.fetch_real_faces`)."""
    return home() / "real_faces"


def cache_dir(name: str = "") -> Path:
    """A cache folder (created on demand) for results keyed by their inputs."""
    p = home() / "cache" / name if name else home() / "cache"
    p.mkdir(parents=True, exist_ok=True)
    return p


def result_dir(kind: str, name: str, root=None) -> Path:
    """The folder of one cached result: ``root / name``, by default ``cache_dir(kind) / name``
    (``kind``: ``"datasets"``, ``"networks"``). Not created here (its parent is)."""
    base = Path(root).expanduser() if root is not None else cache_dir(kind)
    return base / name


def write_atomic(path, data: bytes) -> None:
    """Write a file so that it is either absent or complete: a temporary file beside it, flushed to
    disk, renamed into place. The temporary file is named after the process and the thread, so that
    concurrent writers of one path never share it; an error on the way removes it, a killed process
    leaves at most a ``*.tmp-<pid>-<thread>`` file."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class FileLock:
    """An exclusive lock on the file ``path``, as a context manager (``fcntl.flock``: the system drops
    it when its process dies, even by SIGKILL). The file is removed on release, safely: a waiter that
    got the lock on a removed file tries again. Without ``flock`` (Windows) it does not lock.

    Parameters
    ----------
    path : the lock file (created; its parent must exist).
    waiting_for : when another process holds the lock, print "waiting for <waiting_for>" once to
        stderr; ``None`` waits silently.
    """

    def __init__(self, path, waiting_for: str | None = None):
        self.path, self.waiting_for, self.f = Path(path), waiting_for, None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:   # no flock (Windows): go on without the lock
            return self
        told = False
        while True:
            f = open(self.path, "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not told and self.waiting_for:
                    print(f"waiting for {self.waiting_for} (lock {self.path.name}) ...", file=sys.stderr)
                    told = True
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                same = os.fstat(f.fileno()).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                f.seek(0)
                f.truncate()
                f.write(f"{os.getpid()}\n")
                f.flush()
                self.f = f
                return self
            f.close()

    def __exit__(self, *exc):
        if self.f is not None:
            import fcntl

            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            fcntl.flock(self.f, fcntl.LOCK_UN)
            self.f.close()
            self.f = None


def _code_only(source: str) -> str:
    """The syntax tree of a module without its docstrings and comments."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def source_fingerprint(names, folder=None) -> str:
    """16 hex digits of the code of the source files ``names`` (e.g. ``"resnet.py"``: paths relative to
    ``folder``, default the package), not of their docstrings or comments: editing the documentation
    does not make a cached result stale, editing the code does. Parsing the files takes about 0.1 s,
    so the digest is remembered for the same text."""
    here = Path(__file__).resolve().parent if folder is None else Path(folder).resolve()
    return _fingerprint_of(tuple((here / name).read_text(encoding="utf-8") for name in names))


@functools.lru_cache(maxsize=32)
def _fingerprint_of(texts: tuple) -> str:
    """:func:`source_fingerprint` of the sources ``texts`` (remembered: the same text, the same digest)."""
    h = hashlib.sha256()
    for text in texts:
        h.update(_code_only(text).encode())
    return h.hexdigest()[:16]
