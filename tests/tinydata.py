"""The tiny dataset the training and pipeline tests share (built once per test session by the
``tiny_data_root`` fixture of conftest.py): 4 training people x 2 captures x 4 photos = 32 photos;
2 validation and 3 test people."""
from dualface_lite.data import DatasetConfig, SplitPlan

TINY = DatasetConfig(name="tinytrain", train=SplitPlan(4, 8, 4, 200_000), val=SplitPlan(2, 2, 1, 250_000),
                     test=SplitPlan(3, 3, 1, 300_000))

#: the training settings of the tests' tiny networks (``TrainConfig`` fields: 32 px crops, one epoch)
TINY_TRAINING = dict(name="tiny", dataset=TINY, input_size=32, batch_size=8, epochs=1, patience=1, lr=3e-3)
