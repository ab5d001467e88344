import numpy as np
import pytest

import dualface_lite as df


@pytest.fixture(scope="session")
def model():
    """The Surrey Face Model; the tests need it (make model / DUALFACE_SFM_DIR)."""
    return df.load_model()


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


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

    root = tmp_path_factory.mktemp("datasets")
    build_dataset(TINY, root=root, workers=2, progress=False, model=model)
    return root
