"""Where a result was computed: library versions and the machine, recorded beside results."""

from __future__ import annotations

import os
import platform
import sys


def versions() -> dict:
    """Versions of Python, this package and the libraries it computes with
    (TensorFlow and Keras only when already imported, so this stays cheap)."""
    import cv2
    import numpy as np
    import sklearn

    import adaptive_dff

    found = {"adaptive_dff": adaptive_dff.__version__, "python": sys.version.split()[0], "numpy": np.__version__,
             "opencv": cv2.__version__, "scikit-learn": sklearn.__version__}
    if "tensorflow" in sys.modules:
        import keras
        import tensorflow as tf

        found.update(tensorflow=tf.__version__, keras=keras.__version__)
    return found


def machine() -> dict:
    """The operating system, processor, CPU count and host name."""
    return {"system": platform.system(), "machine": platform.machine(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "node": platform.node()}
