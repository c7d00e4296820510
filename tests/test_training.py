"""Training: configs, .flo files, FlyingChairs-style pairs, and the flow program
(smoke run, exact resumption, kill and rerun, refusing another model's folder,
two-device mirrored run)."""

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from training.config import load_config, validate
from training.flo import read_flo, write_flo
from training.pairs import ChairsPairs

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_DETERMINISTIC_OPS": "1"}


def cli(*args, check=True, timeout=300):
    run = subprocess.run(
        [sys.executable, "-m", "adaptive_dff.cli", *args], capture_output=True, text=True, env=ENV, timeout=timeout
    )
    if check and run.returncode != 0:
        raise AssertionError(f"adaptive-dff {' '.join(args)} failed:\n{run.stdout}\n{run.stderr}")
    return run


def test_config_presets_files_overrides_and_errors(tmp_path):
    smoke = load_config("flow", "smoke", ["steps=7", "mixed_precision=false"])
    assert smoke["steps"] == 7 and smoke["mixed_precision"] is False and smoke["height"] == 128
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"steps": 5, "learning_rate": 0.01}))
    assert load_config("flow", str(path))["learning_rate"] == 0.01
    with pytest.raises(ValueError, match=r"unknown config keys for 'train flow': \['stpes'\]"):
        validate("flow", {"stpes": 3})
    with pytest.raises(ValueError, match="config key 'steps' must be of type int, got 'many'"):
        load_config("flow", "smoke", ["steps=many"])
    with pytest.raises(ValueError, match="config key 'batch_size' must be >= 1"):
        validate("flow", {"batch_size": 0})
    with pytest.raises(ValueError, match="neither a preset of 'train flow'"):
        load_config("flow", "huge")
    path.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_config("flow", str(path))


def test_flo_round_trip_and_damaged_files(tmp_path):
    rng = np.random.default_rng(0)
    flow = rng.standard_normal((7, 9, 2)).astype(np.float32)
    write_flo(tmp_path / "a.flo", flow)
    np.testing.assert_array_equal(read_flo(tmp_path / "a.flo"), flow)
    data = (tmp_path / "a.flo").read_bytes()
    (tmp_path / "short.flo").write_bytes(data[:-8])
    with pytest.raises(ValueError, match="holds 124 values, expected 126 for 9x7"):
        read_flo(tmp_path / "short.flo")
    (tmp_path / "tag.flo").write_bytes(b"XXXX" + data[4:])
    with pytest.raises(ValueError, match="is not a .flo file"):
        read_flo(tmp_path / "tag.flo")
    with pytest.raises(FileNotFoundError):
        read_flo(tmp_path / "missing.flo")


@pytest.mark.data
def test_real_flo_files_follow_the_convention(data_root):
    """img0[y, x] ~ img1[y + v, x + u]: warping img1 by the flow rebuilds img0."""
    folder = data_root / "flyingchairs_examples"
    path = sorted(folder.glob("*-gt.flo"))[0]
    flow = read_flo(path)
    img0 = cv2.imread(str(path).replace("-gt.flo", "-img0.ppm")).astype(np.float32)
    img1 = cv2.imread(str(path).replace("-gt.flo", "-img1.ppm"))
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    warped = cv2.remap(img1, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR)
    assert np.abs(warped - img0).mean() < 0.6 * np.abs(img1 - img0).mean()


def test_chairs_pairs_are_deterministic_and_their_flow_is_right():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(2)]
    images = [cv2.GaussianBlur(im, (0, 0), 3) for im in images]  # textures that interpolate well
    pairs = ChairsPairs(images, height=96, width=128, seed=3)
    a, b = pairs[5], pairs[5]
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(pairs[6]["image0"], a["image0"])
    errors, baseline = [], []
    for i in range(6):
        p = pairs[i]
        gx, gy = np.meshgrid(np.arange(128, dtype=np.float32), np.arange(96, dtype=np.float32))
        warped = cv2.remap(p["image1"], gx + p["flow"][..., 0], gy + p["flow"][..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
        errors.append(np.median(np.abs(warped.astype(float) - p["image0"])))
        baseline.append(np.median(np.abs(p["image1"].astype(float) - p["image0"])))
    assert np.mean(errors) < 0.3 * np.mean(baseline)
    with pytest.raises(ValueError, match="source image 0 must be uint8"):
        ChairsPairs([np.zeros((64, 64, 3), np.float32)])


def flow_args(out, *extra):
    return ["train", "flow", "--out", str(out), "--config", "smoke", *extra]


def final_weights(out):
    from adaptive_dff import load_model

    model = load_model(os.path.join(out, "model.keras"))
    return [w.numpy() if hasattr(w, "numpy") else np.asarray(w) for w in model.weights]


@pytest.mark.data
def test_flow_smoke_run_writes_model_metrics_and_logs(tmp_path, data_root):
    out = tmp_path / "run"
    run = cli(*flow_args(out, "--set", "steps=4", "--set", "checkpoint_every=2", "--data-root", str(data_root)))
    assert "EPE on 9 FlyingChairs examples" in run.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metrics"]["steps"] == 4 and metrics["metrics"]["zero_flow_epe"] > 0
    assert metrics["config"]["steps"] == 4 and "tensorflow" in metrics["versions"]
    assert sorted(p.name for p in (out / "checkpoints").glob("*.index")) == ["ckpt-2.index", "ckpt-4.index"]
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    again = cli(*flow_args(out, "--set", "steps=4", "--set", "checkpoint_every=2"))
    assert "already trained to step 4 of 4" in again.stdout


def test_resuming_gives_the_same_model_as_an_uninterrupted_run(tmp_path):
    common = ("--set", "checkpoint_every=2", "--set", "height=128", "--set", "width=128")
    cli(*flow_args(tmp_path / "straight", "--set", "steps=6", *common))
    cli(*flow_args(tmp_path / "resumed", "--set", "steps=4", *common))
    second = cli(*flow_args(tmp_path / "resumed", "--set", "steps=6", *common))
    assert "resuming from step 4" in second.stdout
    for a, b in zip(final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_killed_and_rerun_continues_from_the_last_checkpoint(tmp_path):
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "adaptive_dff.cli", *flow_args(out, "--set", "steps=400", "--set", "checkpoint_every=3")]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.time() + 240
    while time.time() < deadline and not list((out / "checkpoints").glob("ckpt-6.index")):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert list((out / "checkpoints").glob("ckpt-6.index")), "no checkpoint appeared before the kill"
    assert not (out / "model.keras").exists()
    rerun = cli(*flow_args(out, "--set", "steps=12", "--set", "checkpoint_every=3"))
    resumed = int(rerun.stdout.split("resuming from step ")[1].split()[0])
    assert resumed >= 6 and resumed % 3 == 0
    assert json.loads((out / "metrics.json").read_text())["metrics"]["steps"] == 12


def test_an_out_folder_of_another_model_is_refused_untouched(tmp_path):
    out = tmp_path / "run"
    cli(*flow_args(out, "--set", "steps=2"))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    refused = cli(*flow_args(out, "--set", "steps=4", "--set", "flow_net=flownet_s"), check=False)
    assert refused.returncode == 2
    assert "holds a checkpoint of a different model" in refused.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    code = f"""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
from training.config import load_config
from training import flow
config = load_config("flow", "smoke", ["steps=3", "batch_size=1"])
metrics = flow.run(config, {str(tmp_path / 'mirrored')!r}, strategy=strategy)
assert metrics["steps"] == 3 and metrics["final_loss_grid_epe"] > 0
print("replicas", strategy.num_replicas_in_sync)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "replicas 2" in run.stdout
