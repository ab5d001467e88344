import os

# torch's OpenMP threads sleep while they wait instead of spinning (set before torch is first imported):
# on a 2-core machine that other work keeps busy, spinning threads made training steps several times slower
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import dualface_lite as df  # noqa: E402
import hang_guard  # noqa: E402


@pytest.fixture(scope="session")
def model():
    """The Surrey Face Model; the tests need it (make model / DUALFACE_SFM_DIR)."""
    return df.load_model()


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module whose torch work is small (one photo at a time, a tiny training): on a
    machine that other work keeps busy, two threads wait on each other (FAN 34 s against 20 s measured)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def sfm_folder(model):
    """A folder holding the verified SFM files (the kit's own copy)."""
    folder = df.paths.sfm_dir()
    assert df.fetch.missing_or_bad(folder) == []
    return folder


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory, model):
    """The folder holding the tiny dataset of ``tests/tinydata.py``, built once per session."""
    from dualface_lite.data import build_dataset
    from tinydata import TINY

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):   # make test's two processes: one build in their common folder
        root = root.parent                        # (the second waits for the first's, build_dataset's lock)
    root = root / "tiny-datasets"
    build_dataset(TINY, root=root, workers=2, progress=False, model=model)
    return root


#: ``make test`` runs the files on two pytest-xdist workers (``--dist loadgroup``), each file whole on one
#: worker (its module fixtures built once). The browser tests, the JupyterLab test and the chapter checks
#: share one worker: two Chromiums, or a kernel beside JupyterLab, would slow each other on 2 cores.
SHARED_WORKER = {"test_book_browser": "browser", "test_lab_browser": "browser", "test_notebooks": "browser"}
#: the groups that take longest (``make test --durations``), handed out first so that neither worker is
#: left alone with a long file at the end (with ``--no-loadscope-reorder`` the workers take the groups in
#: the order collected)
LONGEST_FIRST = ("browser", "test_reproduce", "test_wild", "test_train", "test_data")


def pytest_collection_modifyitems(items):
    """Two tiers: ``make test-fast`` runs the tests marked neither ``slow`` nor ``integration``.
    The chapter checks read the book build (``slow``); the browser tests drive chromium (``integration``).
    Each test joins its file's xdist group (:data:`SHARED_WORKER` joins some files into one), and the
    groups of :data:`LONGEST_FIRST` go first."""
    for item in items:
        if item.get_closest_marker("notebooks"):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.integration)
        item.add_marker(pytest.mark.xdist_group(_group(item)))
    last = len(LONGEST_FIRST)
    items.sort(key=lambda item: LONGEST_FIRST.index(g) if (g := _group(item)) in LONGEST_FIRST else last)
    # (a stable sort: each file keeps its own order)


def _group(item) -> str:
    """The xdist group of a test: its file's name without ``.py``, or the group :data:`SHARED_WORKER` names."""
    return SHARED_WORKER.get(item.path.stem, item.path.stem)


def _named_hang():
    """A timeout raised in a test or its fixtures is a hang guard that fired: fail with that name."""
    try:
        return (yield)
    except hang_guard.TIMEOUTS as e:
        hang_guard.fail(f"{type(e).__name__}: {e}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _named_hang())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _named_hang())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    return (yield from _named_hang())
