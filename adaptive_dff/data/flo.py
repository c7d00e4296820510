"""Middlebury ``.flo`` optical-flow files.

Layout: the float32 tag 202021.25, int32 width, int32 height, then
``height * width * 2`` float32 values (u = dx, v = dy) row by row, little
endian. ``u`` and ``v`` follow the project's convention when the file holds
the flow from image 0 to image 1: ``img0[y, x] ~ img1[y + v, x + u]``.
"""

from __future__ import annotations

import os

import numpy as np

from schedulers.files import write_bytes_atomic

TAG = 202021.25


def read_flo(path) -> np.ndarray:
    """Read a ``.flo`` file as float32 ``[H, W, 2]``; errors name the file and the problem."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"flow file {path!r} does not exist")
    with open(path, "rb") as f:
        header = f.read(12)
        if len(header) < 12:
            raise ValueError(f"flow file {path!r} is truncated: {len(header)} header bytes of 12")
        tag = np.frombuffer(header[:4], "<f4")[0]
        if tag != np.float32(TAG):
            raise ValueError(f"flow file {path!r} is not a .flo file (tag {tag!r}, expected {TAG})")
        width, height = (int(v) for v in np.frombuffer(header[4:], "<i4"))
        if not (0 < width < 1 << 16 and 0 < height < 1 << 16):
            raise ValueError(f"flow file {path!r} has an implausible size {width}x{height}")
        data = np.frombuffer(f.read(), "<f4")
    expected = width * height * 2
    if data.size != expected:
        raise ValueError(
            f"flow file {path!r} holds {data.size} values, expected {expected} for {width}x{height}"
        )
    return data.reshape(height, width, 2).astype(np.float32)


def write_flo(path, flow: np.ndarray) -> None:
    """Write ``[H, W, 2]`` flow as a ``.flo`` file (atomically)."""
    flow = np.asarray(flow, np.float32)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be [H, W, 2], got shape {flow.shape}")
    header = np.float32(TAG).astype("<f4").tobytes() + np.array([flow.shape[1], flow.shape[0]], "<i4").tobytes()
    write_bytes_atomic(path, header + flow.astype("<f4").tobytes())
