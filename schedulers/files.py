"""Atomic file writes, shared by all three packages (no TensorFlow here).

A result, checkpoint index or model file is written to a temporary file in
the same folder and renamed over the target with :func:`os.replace`, so a
reader (or a run killed part-way) sees the old file or the new one, never a
part of either; a failed write removes its temporary file and leaves the old
file as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path beside ``path`` (ending in ``suffix``, for writers
    that want an extension); when the block ends without an error it replaces
    ``path``, otherwise it is removed. Creates the folder if needed."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes files private; results are ordinary files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_json_atomic(path, payload, **dump_options) -> None:
    """Write ``payload`` as JSON to ``path`` atomically (``dump_options`` go to :func:`json.dump`)."""
    with atomic_path(path, ".json") as tmp, open(tmp, "w") as f:
        json.dump(payload, f, **dump_options)


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes, as hexadecimal."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_keras_atomic(model, path) -> None:
    """Save a Keras model (anything with ``.save(path)``) to a ``.keras`` file atomically."""
    with atomic_path(path, ".keras") as tmp:
        model.save(tmp)
