"""The shipped default model: it loads and predicts, fits the size limit, and is checked on load."""

import json
import os
import shutil

import numpy as np
import pytest

from adaptive_dff import pretrained


@pytest.fixture
def weights_copy(tmp_path, monkeypatch):
    """The shipped weights folder copied to a temporary place the module reads instead."""
    folder = tmp_path / "weights"
    shutil.copytree(pretrained.WEIGHTS_DIR, folder)
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", str(folder))
    monkeypatch.setattr(pretrained, "MANIFEST", str(folder / "manifest.json"))
    return folder


def test_the_default_model_loads_and_predicts_camvid_classes():
    model = pretrained.load_default()
    assert model.head.get_config()["num_classes"] == 11
    frame = np.random.default_rng(0).integers(0, 256, (360, 480, 3), dtype=np.uint8)
    logits, key = model.key_step(frame)
    assert logits.shape == (1, 360, 480, 11)
    logits, flow_out = model.propagate_step(frame, key)
    assert logits.shape == (1, 360, 480, 11)
    assert model.propagation_flow == "dis" and set(flow_out) == {"flow", "scale"}  # DIS flow: no flow-net features
    _, padded = model.pad_frames(frame)
    decision = pretrained.load_default_decision()
    assert decision.model_.input_shape[-1] == model.run_flow(padded, padded)["features"].shape[-1]


def test_the_shipped_files_fit_the_size_limit():
    with open(pretrained.MANIFEST) as f:
        files = json.load(f)["files"]
    assert set(files) == {pretrained.DFF_FILE, pretrained.DECISION_FILE, pretrained.DECISION_FILE + ".json"}
    assert sum(entry["bytes"] for entry in files.values()) <= 20_000_000  # the 20 MB


def test_a_missing_or_damaged_file_is_named_with_the_way_to_restore_it(weights_copy):
    path = weights_copy / pretrained.DFF_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"camvid_dff.keras' is damaged: \d+ bytes where \d+ were shipped.*git checkout"):
        pretrained.load_default()
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="SHA-256 differs from the shipped one.*docs/model_card.md"):
        pretrained.load_default()
    os.remove(path)
    with pytest.raises(FileNotFoundError, match="camvid_dff.keras' is missing; restore it"):
        pretrained.load_default()
    os.remove(weights_copy / (pretrained.DECISION_FILE + ".json"))
    with pytest.raises(FileNotFoundError, match="camvid_decision.keras.json' is missing"):
        pretrained.load_default_decision()
    (weights_copy / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="manifest .* is damaged"):
        pretrained.load_default_decision()
    os.remove(weights_copy / "manifest.json")
    with pytest.raises(FileNotFoundError, match="manifest .* is missing"):
        pretrained.load_default()


def test_export_installs_checked_models_that_load_back(tmp_path, monkeypatch):
    from helpers import tiny_dff

    from schedulers import DecisionModel

    folder = tmp_path / "weights"
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", str(folder))
    monkeypatch.setattr(pretrained, "MANIFEST", str(folder / "manifest.json"))
    frame = np.random.default_rng(1).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    model = tiny_dff(classes=11)
    _, key = model.key_step(frame)
    _, flow_out = model.propagate_step(frame, key)
    channels = flow_out["features"].shape[-1]
    model.save(tmp_path / "dff.keras")
    rng = np.random.default_rng(2)
    decision = DecisionModel(epochs=1).fit(rng.standard_normal((16, 8, 8, channels)).astype(np.float32),
                                            rng.uniform(0, 1, 16).astype(np.float32))
    decision.save(str(tmp_path / "decision.keras"))

    entries = pretrained.export_default(str(tmp_path / "dff.keras"), str(tmp_path / "decision.keras"))
    assert set(entries) == {pretrained.DFF_FILE, pretrained.DECISION_FILE, pretrained.DECISION_FILE + ".json"}
    np.testing.assert_array_equal(pretrained.load_default().key_step(frame)[0], model.key_step(frame)[0])
    X = rng.standard_normal((4, 8, 8, channels)).astype(np.float32)
    np.testing.assert_allclose(pretrained.load_default_decision().predict(X), decision.predict(X), rtol=1e-6)

    tiny_dff(classes=5).save(tmp_path / "five.keras")
    with pytest.raises(ValueError, match="predicts CamVid's 11 classes; .*five.keras' predicts 5"):
        pretrained.export_default(str(tmp_path / "five.keras"), str(tmp_path / "decision.keras"))
    wrong = DecisionModel(epochs=1).fit(rng.standard_normal((16, 8, 8, channels + 1)).astype(np.float32),
                                         rng.uniform(0, 1, 16).astype(np.float32))
    wrong.save(str(tmp_path / "wrong.keras"))
    with pytest.raises(ValueError, match=rf"reads {channels + 1} feature channels; the flow net .* gives {channels}"):
        pretrained.export_default(str(tmp_path / "dff.keras"), str(tmp_path / "wrong.keras"))
