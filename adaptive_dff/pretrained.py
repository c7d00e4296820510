"""The default model that ships inside the package, trained on CamVid.

Two files in ``adaptive_dff/weights/`` (see ``docs/model_card.md`` for the
data, the commands that rebuild them and their accuracy):

* ``camvid_dff.keras``: a :class:`adaptive_dff.DFFModel`, compact feature net
  + FlowNet-Quarter + segmentation head, 11 CamVid classes (0 Sky, 1
  Building, 2 Pole, 3 Road, 4 Pavement, 5 Tree, 6 SignSymbol, 7 Fence, 8 Car,
  9 Pedestrian, 10 Bicyclist; it never predicts void);
* ``camvid_decision.keras`` (+ ``.json``): a :class:`schedulers.DecisionModel`
  fitted on that model's flow-network features, DVSNet's 2x2 regions.

``manifest.json`` beside them holds each file's size and SHA-256, checked on
every load, so a truncated or altered file is reported as such (with the way
to restore it) rather than failing somewhere inside Keras.
"""

from __future__ import annotations

import json
import os

from schedulers.files import file_sha256, write_json_atomic

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
MANIFEST = os.path.join(WEIGHTS_DIR, "manifest.json")
DFF_FILE = "camvid_dff.keras"
DECISION_FILE = "camvid_decision.keras"

RESTORE = (
    "restore it with 'git checkout -- adaptive_dff/weights' in a source checkout or by reinstalling "
    "adaptive-dff, or rebuild it with the commands in docs/model_card.md"
)


def _manifest() -> dict:
    if not os.path.isfile(MANIFEST):
        raise FileNotFoundError(f"the default model's manifest {MANIFEST!r} is missing; {RESTORE}")
    try:
        with open(MANIFEST) as f:
            manifest = json.load(f)
        return dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"the default model's manifest {MANIFEST!r} is damaged ({error}); {RESTORE}") from None


def verified_path(name: str) -> str:
    """The path of the shipped file ``name``, after checking its size and SHA-256.

    Raises:
        FileNotFoundError: the file (or the manifest) is missing.
        ValueError: the file differs from what the manifest records.
    """
    entry = _manifest().get(name)
    if entry is None:
        raise ValueError(f"the default model's manifest {MANIFEST!r} does not list {name!r}; {RESTORE}")
    if not isinstance(entry, dict) or not {"bytes", "sha256"} <= set(entry):
        raise ValueError(f"the default model's manifest {MANIFEST!r} is damaged (entry {name!r}); {RESTORE}")
    path = os.path.join(WEIGHTS_DIR, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"the default model file {path!r} is missing; {RESTORE}")
    size = os.path.getsize(path)
    if size != entry["bytes"]:
        raise ValueError(f"the default model file {path!r} is damaged: {size} bytes where {entry['bytes']} "
                         f"were shipped; {RESTORE}")
    if file_sha256(path) != entry["sha256"]:
        raise ValueError(f"the default model file {path!r} is damaged: its SHA-256 differs from the shipped one; "
                         f"{RESTORE}")
    return path


def default_model_path() -> str:
    """The checked path of the default DFF model (``.keras``), e.g. for ``--model``."""
    return verified_path(DFF_FILE)


def default_decision_path() -> str:
    """The checked path of the default decision model (``.keras``; its ``.json`` beside it)."""
    verified_path(DECISION_FILE + ".json")
    return verified_path(DECISION_FILE)


def load_default():
    """The default :class:`adaptive_dff.DFFModel` (CamVid, 11 classes), checked and loaded.

    Frames of any size are accepted (see :class:`adaptive_dff.DFFModel`); it was
    trained and scored on CamVid's 480x360 frames of driving scenes.
    """
    from adaptive_dff.model import load_model

    return load_model(default_model_path())


def load_default_decision():
    """The default :class:`schedulers.DecisionModel`, fitted on the default DFF
    model's flow-network features over 2x2 regions (64 px overlap)."""
    from schedulers import DecisionModel

    return DecisionModel.load(default_decision_path())


def write_manifest(files: list) -> None:
    """Record size and SHA-256 of ``files`` (names in :data:`WEIGHTS_DIR`) in the manifest, atomically."""
    entries = {}
    for name in files:
        path = os.path.join(WEIGHTS_DIR, name)
        entries[name] = {"bytes": os.path.getsize(path), "sha256": file_sha256(path)}
    write_json_atomic(MANIFEST, {"files": entries}, indent=2, sort_keys=True)


def export_default(dff_path: str, decision_path: str) -> dict:
    """Install a trained DFF model and decision model as the shipped default.

    Both are loaded and checked first (11 CamVid classes; the decision model's
    input has as many channels as the DFF model's flow features), then copied
    into :data:`WEIGHTS_DIR` and the manifest rewritten. Returns the manifest
    entries.
    """
    import shutil

    import numpy as np

    from adaptive_dff.model import DFFModel, load_model
    from schedulers import DecisionModel
    from adaptive_dff.data.camvid import NUM_CLASSES

    model = load_model(dff_path)
    if not isinstance(model, DFFModel):
        raise ValueError(f"{dff_path!r} holds a {type(model).__name__}, not a DFF model (a 'train dff' run's model.keras)")
    classes = model.head.get_config().get("num_classes")
    if classes != NUM_CLASSES:
        raise ValueError(f"the default model predicts CamVid's {NUM_CLASSES} classes; {dff_path!r} predicts {classes}")
    decision = DecisionModel.load(decision_path)
    frame = np.zeros((128, 128, 3), np.uint8)
    _, key = model.key_step(frame)
    _, flow_out = model.propagate_step(frame, key)
    channels = int(flow_out["features"].shape[-1])
    wanted = int(decision.model_.input_shape[-1])
    if channels != wanted:
        raise ValueError(f"decision model {decision_path!r} reads {wanted} feature channels; the flow net of "
                         f"{dff_path!r} gives {channels}")
    os.makedirs(WEIGHTS_DIR, exist_ok=True)
    staged = os.path.join(WEIGHTS_DIR, "staged")
    os.makedirs(staged, exist_ok=True)
    try:
        _deflated_copy(dff_path, os.path.join(staged, DFF_FILE))
        decision.save(os.path.join(staged, DECISION_FILE))  # without optimizer state
        _deflated_copy(os.path.join(staged, DECISION_FILE), os.path.join(staged, DECISION_FILE + ".deflated"))
        os.replace(os.path.join(staged, DECISION_FILE + ".deflated"), os.path.join(staged, DECISION_FILE))
        names = [DFF_FILE, DECISION_FILE, DECISION_FILE + ".json"]
        for name in names:
            os.replace(os.path.join(staged, name), os.path.join(WEIGHTS_DIR, name))
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    write_manifest(names)
    return _manifest()


def _deflated_copy(source: str, target: str) -> None:
    """Copy a ``.keras`` archive (a zip file) with every member deflated at the highest level;
    Keras reads it as before, and trained float32 weights shrink by several percent."""
    import zipfile

    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        for item in src.infolist():
            dst.writestr(item.filename, src.read(item.filename))
