"""Data for adaptive-dff: procedural video clips with exact flow and labels
(:mod:`adaptive_dff.data.synthetic`, imported here), CamVid's frames and labels
(:mod:`adaptive_dff.data.camvid`) and Middlebury ``.flo`` files
(:mod:`adaptive_dff.data.flo`).

numpy and OpenCV only; importing this package does not import TensorFlow.
See :mod:`adaptive_dff.data.synthetic` for the conventions.
"""

from adaptive_dff.data.synthetic import (
    BACKGROUND_CLASSES,
    CLASS_NAMES,
    NUM_CLASSES,
    OBJECT_CLASSES,
    SyntheticVideo,
    flow_to_grid,
    make_clips,
)

__all__ = [
    "BACKGROUND_CLASSES",
    "CLASS_NAMES",
    "NUM_CLASSES",
    "OBJECT_CLASSES",
    "SyntheticVideo",
    "flow_to_grid",
    "make_clips",
]
