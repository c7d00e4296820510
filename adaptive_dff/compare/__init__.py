"""``adaptive-dff compare``: a fair benchmark of key-frame scheduling policies.

Every policy meets the same key-frame budgets (a threshold calibrated on
calibration clips, or a budget's control law), then is scored on separate test clips, in one of two modes (oracle:
true labels carried by flow; model: the DFF model runs). Results are written
cell by cell, so an interrupted run continues where it stopped.

::

    from adaptive_dff.compare import CompareConfig, run_compare, synthetic_dataset

    report = run_compare(CompareConfig(budgets=(0.1, 0.2)), synthetic_dataset(), "runs/mine")

A data set is a plain :class:`Dataset` of :class:`Clip` objects, so your own
clips work the same way.

Modules, each with one job: :mod:`~adaptive_dff.compare.config` (what is
compared: the arms, budgets, defaults), :mod:`~adaptive_dff.compare.datasets`,
:mod:`~adaptive_dff.compare.planning` (cells, shards, the run's signature),
:mod:`~adaptive_dff.compare.scoring` (one policy on one clip),
:mod:`~adaptive_dff.compare.objects` (region similarity J, ``--metric j``),
:mod:`~adaptive_dff.compare.workspace` (model, flow, references, calibration
for the cells), :mod:`~adaptive_dff.compare.run` (running and merging),
:mod:`~adaptive_dff.compare.store` (the results folder) and
:mod:`~adaptive_dff.compare.report` (rows, tables, plot).
"""

from adaptive_dff.compare.config import ARMS, CompareConfig, resolve_defaults
from adaptive_dff.compare.datasets import (
    Clip, Dataset, camvid_1fps_dataset, camvid_val_dataset, compare_datasets, synthetic_dataset, synthetic_datasets,
    video_dataset,
)
from adaptive_dff.compare.run import merge, run_compare
from adaptive_dff.compare.scoring import CellResult, carry_labels, model_cell, oracle_cell

__all__ = [
    "ARMS",
    "CellResult",
    "Clip",
    "CompareConfig",
    "Dataset",
    "camvid_1fps_dataset",
    "camvid_val_dataset",
    "carry_labels",
    "compare_datasets",
    "merge",
    "model_cell",
    "oracle_cell",
    "resolve_defaults",
    "run_compare",
    "synthetic_dataset",
    "synthetic_datasets",
    "video_dataset",
]
