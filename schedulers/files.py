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
import zipfile
from typing import Iterator

import numpy as np


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
    """Write ``payload`` as JSON to ``path`` atomically: indented by 2, keys sorted, values JSON
    does not know written as their ``str`` (``dump_options`` go to :func:`json.dump` and override these)."""
    options = {"indent": 2, "sort_keys": True, "default": str, **dump_options}
    with atomic_path(path, ".json") as tmp, open(tmp, "w") as f:
        json.dump(payload, f, **options)


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


def check_file(path, what: str, kind: str = "a file") -> str:
    """``path`` as a string when it names a file: else an ``IsADirectoryError`` ("... is a folder,
    not ``kind``") or a ``FileNotFoundError``, ``what`` naming the file ("model file", ...)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what} {path!r} is a folder, not {kind}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    return path


def check_keras_file(path, what: str, metadata: str = "") -> str:
    """``path`` as a string when it names a ``.keras`` file Keras can open: else a named error for a
    folder, a missing file (:func:`check_file`), a missing ``metadata`` file beside it (its name,
    when the format keeps one) or a file that is no zip archive (Keras would say "File not found" of
    a file that is there). ``what`` names the file in the messages ("model file", ...)."""
    path = check_file(path, what, "a .keras file")
    if metadata and not os.path.isfile(metadata):
        raise FileNotFoundError(f"{what} {path!r} has no metadata file beside it ({metadata!r})")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{what} {path!r} is not a .keras file (a .keras file is a zip archive; this one is not: "
                         "damaged, or another kind of file)")
    return path


def read_json(path):
    """The JSON in ``path``, ``None`` when there is no such file; a damaged file is a
    ``ValueError`` naming it."""
    path = os.fspath(path)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path!r} is damaged ({error}); delete it to recompute it") from None


def write_npz_atomic(path, **arrays) -> None:
    """Write ``arrays`` to the ``.npz`` file ``path`` atomically (uncompressed)."""
    with atomic_path(path, ".npz") as tmp:
        np.savez(tmp, **arrays)


def read_npz(path, keys, log=None, optional=()):
    """The arrays ``keys`` of the ``.npz`` file ``path`` as a dict, or ``None`` when there is no
    such file or it is damaged or lacks a key (a cache to rebuild: ``log``, when given, is told
    which file and why; a file that lacks a key was most likely written by an earlier version).
    The ``optional`` keys the file holds are in the dict too (those it lacks are not)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        return None
    try:
        with np.load(path) as stored:
            missing = [k for k in keys if k not in stored.files]
            if not missing:
                return {k: stored[k] for k in tuple(keys) + tuple(optional) if k in stored.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:  # damaged, truncated, foreign
        if log is not None:
            log(f"cache {path!r} is unreadable ({type(error).__name__}: {error}); rebuilding it")
        return None
    if log is not None:
        log(f"cache {path!r} has no {', '.join(missing)} (written by an earlier version); rebuilding it")
    return None


def _differences(old, new, path: str = "") -> list:
    """``[(path, old value, new value)]`` where two JSON records differ, in the order their keys
    and items appear (``"a.b[2].c"``): dictionaries and lists are followed key by key and item by
    item, so a difference names the one value that differs, not a whole list; a key or item only
    one side has is ``"absent"`` on the other."""
    if old == new:
        return []
    here = path or "the record"
    if isinstance(old, dict) and isinstance(new, dict):
        pairs = [(f"{path}.{key}" if path else str(key), old.get(key, _ABSENT), new.get(key, _ABSENT))
                 for key in list(old) + [k for k in new if k not in old]]
    elif isinstance(old, list) and isinstance(new, list):
        pairs = [(f"{path}[{i}]", old[i] if i < len(old) else _ABSENT, new[i] if i < len(new) else _ABSENT)
                 for i in range(max(len(old), len(new)))]
    else:
        return [(here, old, new)]
    found = []
    for key, a, b in pairs:
        found += [(key, a, b)] if _ABSENT in (a, b) and a is not b else _differences(a, b, key)
    return found


class _Absent:
    def __repr__(self) -> str:
        return "absent"


_ABSENT = _Absent()
SHOWN_DIFFERENCES = 8  # a refused folder's message names at most this many differing values


def _holds_only(out: str, record_file: str) -> bool:
    """Whether the folder ``out`` holds no file but ``out/record_file`` (empty subfolders aside)."""
    for root, _, names in os.walk(out):
        if any(os.path.join(root, n) != os.path.join(out, record_file) for n in names):
            return False
    return True


def claim_folder(out, record_file: str, record: dict, what: str, *, write: bool = True) -> None:
    """Make the folder ``out`` belong to ``record``, kept as JSON in ``out/record_file``.

    A folder holding another record is refused with a ``ValueError`` that
    names the values that differ, the first :data:`SHOWN_DIFFERENCES` of them
    (``"--out DIR holds <what> (key: old there, new now); ..."``, see
    :func:`_differences`); a folder holding this record is accepted as it is (a
    rerun continues it); an empty or new one gets the record written, unless
    ``write`` is false (check only, write once every other check passed), and so
    does one that holds another record but no other file (a run that stopped on
    bad input before any work: nothing to lose, and the corrected rerun may go on)."""
    out = os.fspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out!r} exists and is not a folder")
    record = json.loads(json.dumps(record, default=str))  # as it reads back: lists, not tuples
    path = os.path.join(out, record_file)
    previous = read_json(path)
    if previous is None:
        if write:
            write_json_atomic(path, record)
        return
    if previous != record and _holds_only(out, record_file):
        if write:
            write_json_atomic(path, record)
        return
    if previous != record:
        found = _differences(previous, record)
        details = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, a, b in found[:SHOWN_DIFFERENCES])
        if len(found) > SHOWN_DIFFERENCES:
            details += f"; and {len(found) - SHOWN_DIFFERENCES} more"
        raise ValueError(f"--out {out!r} holds {what} ({details}); choose another folder, "
                         "or rerun with the same options to continue it")
