"""Key-frame scheduling policies for video recognition.

A policy sees a context (frame index, current frame, key frames and, when it
asks for them, the flow) and decides per region whether to recompute or to
propagate. This package imports without TensorFlow.

The policies, regions, calibration and the embedding helper are the subject of
the scheduler milestone; this package holds the import name until then.
"""

__all__: list[str] = []
