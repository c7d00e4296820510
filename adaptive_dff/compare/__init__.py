"""``adaptive-dff compare``: a fair benchmark of key-frame scheduling policies.

Every policy is calibrated to the same key-frame budgets on calibration
clips, then scored on separate test clips, in one of two modes (oracle:
true labels carried by flow; model: the DFF model runs). Results are written
cell by cell, so an interrupted run continues where it stopped.

::

    from adaptive_dff.compare import CompareConfig, run_compare, synthetic_dataset

    report = run_compare(CompareConfig(budgets=(0.1, 0.2)), synthetic_dataset(), "runs/mine")

A data set is a plain :class:`Dataset` of :class:`Clip` objects, so your own
clips work the same way.
"""

from adaptive_dff.compare.datasets import (
    Clip, Dataset, camvid_val_dataset, synthetic_dataset, synthetic_datasets, video_dataset,
)
from adaptive_dff.compare.evaluate import CellResult, carry_labels, model_cell, oracle_cell
from adaptive_dff.compare.run import POLICIES, CompareConfig, merge, run_compare

__all__ = [
    "POLICIES",
    "CellResult",
    "Clip",
    "CompareConfig",
    "Dataset",
    "camvid_val_dataset",
    "carry_labels",
    "merge",
    "model_cell",
    "oracle_cell",
    "run_compare",
    "synthetic_dataset",
    "synthetic_datasets",
    "video_dataset",
]
