"""The SavedModel export: loaded in a fresh process with TensorFlow and numpy only,
its outputs equal the library's; wrong frame sizes and foreign folders are refused."""

import json
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny_dff

from adaptive_dff.data import SyntheticVideo
from adaptive_dff.export import MARKER, export_saved_model, to_tflite

HEIGHT, WIDTH = 96, 160

# Runs in a fresh interpreter: only tensorflow and numpy, never adaptive_dff.
DEPLOY = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf

    folder, inputs, outputs = sys.argv[1:4]
    data = dict(np.load(inputs))
    steps = tf.saved_model.load(folder)
    key = steps.signatures["key_step"](frame=tf.constant(data["key_frame"]))
    if "flow" in data:
        prop = steps.signatures["propagate_step"](key_features=key["features"], flow=tf.constant(data["flow"]))
    else:
        prop = steps.signatures["propagate_step"](frame=tf.constant(data["frame"]),
                                                  key_frame=tf.constant(data["key_frame"]),
                                                  key_features=key["features"])
    try:
        steps.signatures["key_step"](frame=tf.constant(data["key_frame"][:-8]))
        size_error = ""
    except tf.errors.InvalidArgumentError as error:
        size_error = error.message
    assert "adaptive_dff" not in sys.modules
    np.savez(outputs, key_logits=key["logits"].numpy(), key_labels=key["labels"].numpy(),
             key_features=key["features"].numpy(), prop_logits=prop["logits"].numpy(),
             prop_labels=prop["labels"].numpy(), size_error=np.array(size_error))
""")


@pytest.fixture(scope="module")
def frames():
    video = SyntheticVideo(height=HEIGHT, width=WIDTH, num_frames=4, seed=5)
    return video.frame(0), video.frame(3)


def _deploy(folder, tmp_path, **inputs) -> dict:
    script = tmp_path / "deploy.py"
    script.write_text(DEPLOY)
    np.savez(tmp_path / "inputs.npz", **inputs)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    done = subprocess.run([sys.executable, str(script), str(folder), str(tmp_path / "inputs.npz"),
                           str(tmp_path / "outputs.npz")], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(tmp_path / "outputs.npz"))


@pytest.mark.slow  # each export saves and traces the networks: tens of seconds on a CPU
@pytest.mark.parametrize("propagation_flow", ["dis", "network"])
def test_a_fresh_process_runs_the_export_with_the_librarys_outputs(tmp_path, frames, propagation_flow):
    model = tiny_dff().with_propagation_flow(propagation_flow, **({"dis_downscale": 4} if propagation_flow == "dis" else {}))
    key_frame, frame = frames
    description = export_saved_model(model, tmp_path / "export", HEIGHT, WIDTH)
    assert description["propagation_flow"] == propagation_flow
    assert json.loads((tmp_path / "export" / MARKER).read_text())["grid"] == [8, 16]
    key_logits, key = model.key_step(key_frame)
    prop_logits, out = model.propagate_step(frame, key)
    inputs = {"key_frame": key_frame, "frame": frame}
    if propagation_flow == "dis":
        inputs["flow"] = out["flow"].numpy()[0]
    got = _deploy(tmp_path / "export", tmp_path, **inputs)
    np.testing.assert_allclose(got["key_logits"], key_logits.numpy()[0], atol=1e-4)
    np.testing.assert_allclose(got["key_features"], key.features.numpy()[0], atol=1e-4)
    np.testing.assert_allclose(got["prop_logits"], prop_logits.numpy()[0], atol=1e-4)
    assert np.mean(got["key_labels"] == np.argmax(key_logits.numpy()[0], -1)) > 0.999
    assert np.mean(got["prop_labels"] == np.argmax(prop_logits.numpy()[0], -1)) > 0.999
    assert f"frame must be {HEIGHT}x{WIDTH}x3" in str(got["size_error"])


def test_export_refuses_a_folder_of_something_else(tmp_path):
    model = tiny_dff()
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty and holds no adaptive-dff export"):
        export_saved_model(model, folder, HEIGHT, WIDTH)
    assert os.listdir(folder) == ["notes.txt"] and (folder / "notes.txt").read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["mine"]  # nothing staged left behind
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        export_saved_model(model, tmp_path / "file", HEIGHT, WIDTH)
    with pytest.raises(ValueError, match="height"):
        export_saved_model(model, tmp_path / "new", 0, WIDTH)
    with pytest.raises(TypeError, match="DFFModel"):
        export_saved_model(object(), tmp_path / "new", HEIGHT, WIDTH)
    with pytest.raises(ValueError, match="no adaptive-dff export"):
        to_tflite(folder)


@pytest.mark.slow
def test_export_replaces_an_earlier_export(tmp_path):
    model = tiny_dff()
    folder = tmp_path / "export"
    export_saved_model(model, folder, HEIGHT, WIDTH, propagation_flow="dis")
    export_saved_model(model, folder, 64, 64, propagation_flow="network")
    description = json.loads((folder / MARKER).read_text())
    assert (description["height"], description["propagation_flow"]) == (64, "network")
    assert sorted(os.listdir(tmp_path)) == ["export"]
    steps = tf.saved_model.load(str(folder))
    assert set(steps.signatures) == {"key_step", "propagate_step"}


@pytest.mark.slow
def test_tflite_converts_both_steps_with_builtin_ops(tmp_path, frames):
    model = tiny_dff().with_propagation_flow("dis", dis_downscale=4)
    export_saved_model(model, tmp_path / "export", HEIGHT, WIDTH)
    lite = to_tflite(tmp_path / "export")
    key_frame, _ = frames
    key_logits, key = model.key_step(key_frame)
    runner = tf.lite.Interpreter(model_content=lite["key_step"]).get_signature_runner()
    out = runner(frame=key_frame)
    logits = next(v for v in out.values() if v.ndim == 3 and v.shape[-1] == 5)
    np.testing.assert_allclose(logits, key_logits.numpy()[0], atol=1e-3)
    flow = np.zeros((8, 16, 2), np.float32)
    prop = tf.lite.Interpreter(model_content=lite["propagate_step"]).get_signature_runner()
    out = prop(key_features=key.features.numpy()[0], flow=flow)
    logits = next(v for v in out.values() if v.ndim == 3 and v.shape[-1] == 5)
    np.testing.assert_allclose(logits, key_logits.numpy()[0], atol=1e-3)  # zero flow, no scale: the key's logits


def test_the_export_command_names_a_foreign_folder(tmp_path, capsys):
    from adaptive_dff.cli import main

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"x")
    assert main(["export", "--out", str(folder)]) == 2
    assert "not empty and holds no adaptive-dff export" in capsys.readouterr().err
    assert os.listdir(folder) == ["a.jpg"]


@pytest.mark.slow
@pytest.mark.data
def test_bench_dff_prints_the_stage_table_r_and_the_speedups(data_root, caplog):
    from adaptive_dff.bench import dff

    caplog.set_level(logging.INFO, logger="adaptive_dff")
    report = dff.run(str(data_root), frames=11, passes=1)
    out = caplog.text
    for text in ("every frame", "interval 5", "interval 10", "r = ", "ideal l / (1 + (l - 1) r)", "flow", "prepare"):
        assert text in out
    for name in ("shipped", "before"):
        assert 0 < report[name]["r"] < 1.5
        assert set(report[name]["speedups"]) == {5, 10}
