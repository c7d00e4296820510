"""The dependencies that ``schedulers`` imports only to fit a model or to run ``DecisionModel``.

A pipeline's run time (policies, budgets, trackers, ``calibrate``, a quality predictor's
``predict``) needs numpy and OpenCV alone, so an install without the package's other dependencies
serves a pipeline of another framework. The few places that need Keras, TensorFlow or
scikit-learn import them through :func:`require`, which names what is missing and what needs it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

PACKAGES = {"keras": "keras", "tensorflow": "tensorflow", "sklearn": "scikit-learn"}


def require(module: str, purpose: str) -> ModuleType:
    """``module`` imported (e.g. ``"sklearn.linear_model"``), or a ``ModuleNotFoundError`` that
    names ``purpose`` (what needs it) and the package to install when its top-level package is
    not installed. A package that is installed but broken (one of its own imports missing) raises
    as it does."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        top = module.split(".")[0]
        if error.name != top:
            raise
        package = PACKAGES.get(top, top)
        raise ModuleNotFoundError(
            f"{purpose} needs {package}, which is not installed (pip install {package}); the policies, "
            "budgets, trackers, calibrate and the quality predictors' predict run on numpy and OpenCV alone",
            name=top) from None
