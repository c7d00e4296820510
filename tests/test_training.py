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
from adaptive_dff.data.flo import read_flo, write_flo
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


def test_chairs_pairs_motion_scale_and_photometric_changes():
    rng = np.random.default_rng(2)
    images = [cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), (0, 0), 3) for _ in range(2)]
    plain = ChairsPairs(images, height=96, width=128, seed=4)
    jittered = ChairsPairs(images, height=96, width=128, seed=4, photometric=0.2)
    for i in range(3):
        a, b = plain[i], jittered[i]
        np.testing.assert_array_equal(a["flow"], b["flow"])  # the geometry is untouched
        change = np.abs(a["image1"].astype(float) - b["image1"]).mean()
        assert 1.0 < change < 0.5 * 255 * 0.2 + 10
    small = ChairsPairs(images, height=96, width=128, seed=4, motion_scale=(0.2, 0.2), background_shift=24)
    large = ChairsPairs(images, height=96, width=128, seed=4, motion_scale=(2.0, 2.0), background_shift=24)
    magnitude = [np.mean([np.linalg.norm(p[i]["flow"], axis=-1).mean() for i in range(6)]) for p in (small, large)]
    assert magnitude[1] > 4 * magnitude[0]
    with pytest.raises(ValueError, match="motion_scale must be"):
        ChairsPairs(images, motion_scale=(2.0, 1.0))
    with pytest.raises(ValueError, match="photometric must be in"):
        ChairsPairs(images, photometric=1.5)


def test_flow_loss_is_the_full_resolution_epe_of_the_evaluation():
    from training.flow import full_resolution_epe

    rng = np.random.default_rng(5)
    grid = rng.normal(0, 2, (2, 6, 8, 2)).astype(np.float32)
    flow = rng.normal(0, 20, (2, 96, 128, 2)).astype(np.float32)
    loss = full_resolution_epe(grid, flow).numpy()
    for b in range(2):
        upsampled = cv2.resize(grid[b], (128, 96), interpolation=cv2.INTER_LINEAR) * 16
        np.testing.assert_allclose(loss[b], np.linalg.norm(upsampled - flow[b], axis=-1).mean(), rtol=1e-5)


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

    def recorded():  # ckpt-6 written and recorded as the latest (the index file comes before the record)
        state = out / "checkpoints" / "checkpoint"
        return state.exists() and "ckpt-6" in state.read_text()

    while time.time() < deadline and not recorded():
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
assert metrics["steps"] == 3 and metrics["final_loss_epe"] > 0
print("replicas", strategy.num_replicas_in_sync)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "replicas 2" in run.stdout


def fake_camvid(root, names=("0001TP_000010", "0001TP_000020"), size=(64, 96)):
    """A tiny CamVid-shaped folder: train/, trainannot/, val/, valannot/."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / "camvid" / split).mkdir(parents=True, exist_ok=True)
        (root / "camvid" / (split + "annot")).mkdir(parents=True, exist_ok=True)
        for name in names:
            cv2.imwrite(str(root / "camvid" / split / f"{name}.png"), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
            cv2.imwrite(str(root / "camvid" / (split + "annot") / f"{name}.png"), rng.integers(0, 12, size, dtype=np.uint8))
    return root


def test_camvid_checks_name_each_problem(tmp_path):
    from adaptive_dff.data.camvid import load_split

    root = fake_camvid(tmp_path / "data")
    frames, labels = load_split(str(root), "train")
    assert len(frames) == 2 and frames[0].shape == (64, 96, 3) and labels[0].dtype == np.uint8
    with pytest.raises(FileNotFoundError, match=r"CamVid folder .*test.* does not exist"):
        load_split(str(root), "test")
    label = root / "camvid" / "trainannot" / "0001TP_000020.png"
    cv2.imwrite(str(label), np.full((64, 96), 12, np.uint8))
    with pytest.raises(ValueError, match="holds value 12; classes are 0..10 and 11 is void"):
        load_split(str(root), "train")
    cv2.imwrite(str(label), np.zeros((32, 96), np.uint8))
    with pytest.raises(ValueError, match="is 96x64 but its label is 96x32"):
        load_split(str(root), "train")
    label.unlink()
    with pytest.raises(ValueError, match="has no label"):
        load_split(str(root), "train")
    (root / "camvid" / "val" / "0001TP_000010.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot be decoded"):
        load_split(str(root), "val")


def test_moved_pair_has_exact_flow_and_void_outside():
    from training.pairs import moved_pair

    rng = np.random.default_rng(2)
    image = cv2.GaussianBlur(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8), (0, 0), 2)
    label = np.kron(rng.integers(0, 11, (6, 8)), np.ones((10, 10), int)).astype(np.uint8)
    pair = moved_pair(image, label, rng, strength=1.0, void=11)
    gx, gy = np.meshgrid(np.arange(80, dtype=np.float32), np.arange(60, dtype=np.float32))
    map_x, map_y = gx + pair["flow"][..., 0], gy + pair["flow"][..., 1]
    inside = (map_x >= 0) & (map_x <= 79) & (map_y >= 0) & (map_y <= 59)
    rebuilt = cv2.remap(pair["label_key"], map_x, map_y, cv2.INTER_NEAREST)
    np.testing.assert_array_equal(rebuilt[inside], pair["label_current"][inside])
    # Nearest sampling keeps points up to half a pixel outside; beyond that is void.
    outside = (map_x < -0.51) | (map_x > 79.51) | (map_y < -0.51) | (map_y > 59.51)
    assert np.all(pair["label_current"][outside] == 11) and outside.any()
    assert np.abs(pair["flow"]).max() > 1.0
    still = moved_pair(image, label, rng, strength=0.0)
    assert np.abs(still["flow"]).max() < 1e-4 and np.array_equal(still["label_current"], label)


def test_dff_smoke_run_on_synthetic_pairs(tmp_path):
    out = tmp_path / "dff"
    run = cli("train", "dff", "--out", str(out), "--config", "smoke")
    assert "mIoU: per frame" in run.stdout
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics["steps"] == 6 and {"propagated_miou_k1", "propagated_miou_k5", "propagated_miou_k9"} <= set(metrics)
    from adaptive_dff import DFFModel, load_model

    assert isinstance(load_model(out / "model.keras"), DFFModel)


def test_dff_on_camvid_without_data_fails_before_writing(tmp_path):
    out = tmp_path / "never"
    run = cli("train", "dff", "--out", str(out), "--config", "smoke", "--set", "source=camvid",
              "--data-root", str(tmp_path), check=False)
    assert run.returncode == 2 and "CamVid folder" in run.stderr and "does not exist" in run.stderr
    assert not out.exists()


@pytest.mark.data
def test_dff_smoke_on_camvid_reports_val_clip_miou(tmp_path, data_root):
    out = tmp_path / "dff-camvid"
    cli("train", "dff", "--out", str(out), "--config", "smoke", "--set", "source=camvid", "--set", "train_limit=20",
        "--data-root", str(data_root))
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert 0 <= metrics["per_frame_miou"] <= 1 and metrics["evaluated_starts"] == 8  # 101-frame clip, stride 12


def test_decision_smoke_builds_trains_and_reuses_its_data_set(tmp_path):
    out = tmp_path / "decision"
    run = cli("train", "decision", "--out", str(out), "--config", "smoke")
    assert "built 40 samples from 4 videos" in run.stdout
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert 0 <= metrics["held_out_mae"] <= 1 and metrics["held_out_samples"] == 10
    from schedulers import DecisionModel

    assert DecisionModel.load(out / "model.keras").predict(np.load(out / "dataset.npz")["X"][:3]).shape == (3,)
    assert sorted(p.name for p in (out / "checkpoints").glob("*.index")) == ["ckpt-2.index", "ckpt-3.index"]
    assert scalar_tags(out / "tensorboard") >= {"loss", "mae", "held_out_mae", "held_out_loss", "eval/held_out_mae"}
    stamp = os.path.getmtime(out / "model.keras")
    again = cli("train", "decision", "--out", str(out), "--config", "smoke")
    assert "reusing the data set" in again.stdout and "already trained" in again.stdout
    assert os.path.getmtime(out / "model.keras") == stamp  # not fitted again


def test_decision_run_signature_follows_the_videos_and_model_by_content(tmp_path):
    from training.decision import signature

    video = tmp_path / "clip"
    video.mkdir()
    for t in range(3):
        cv2.imwrite(str(video / f"{t}.png"), np.full((8, 8, 3), 40 * t, np.uint8))
    model = tmp_path / "model.keras"
    model.write_bytes(b"weights one")
    config = load_config("decision", "smoke", [f"videos={video}@0:3", f"model={model}"])
    before = signature(config)
    assert signature(load_config("decision", "smoke", [f"videos={video}@0:2", f"model={model}"])) != before
    cv2.imwrite(str(video / "1.png"), np.full((8, 8, 3), 7, np.uint8))  # the same path, other frames
    assert signature(config) != before
    changed = signature(config)
    model.write_bytes(b"weights two")
    assert signature(config) != changed and signature(config)["model"] == before["model"]


def scalar_tags(folder) -> set:
    import tensorflow as tf

    tags = set()
    for path in folder.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags |= {value.tag for value in event.summary.value}
    return tags


def test_decision_fit_resumes_from_its_checkpoint_to_the_same_model(tmp_path):
    from schedulers import DecisionModel

    rng = np.random.default_rng(0)
    X = rng.standard_normal((48, 4, 4, 6)).astype(np.float32)
    y = 1 / (1 + np.exp(-X[:, 0, 0, :2].sum(-1)))
    held = (X[:8], y[:8])
    straight = DecisionModel(epochs=5, batch_size=16, seed=3).fit(X, y, validation_data=held,
                                                                  checkpoint_dir=str(tmp_path / "a"))
    seen = []
    DecisionModel(epochs=2, batch_size=16, seed=3).fit(X, y, checkpoint_dir=str(tmp_path / "b"))
    resumed = DecisionModel(epochs=5, batch_size=16, seed=3).fit(
        X, y, validation_data=held, checkpoint_dir=str(tmp_path / "b"), on_epoch_end=lambda e, logs: seen.append(e))
    assert resumed.resumed_from_ == 2 and seen == [3, 4, 5] and len(straight.history_["val_mae"]) == 5
    for a, b in zip(straight.model_.get_weights(), resumed.model_.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert straight.history_["val_mae"][-1] == pytest.approx(resumed.history_["val_mae"][-1], rel=1e-5)
    fresh = DecisionModel(epochs=5, batch_size=16, seed=3, conv_filters=8)
    with pytest.raises(ValueError, match="does not match this decision model"):
        fresh.fit(X, y, checkpoint_dir=str(tmp_path / "b"))


def test_decision_killed_part_way_through_fitting_resumes(tmp_path):
    out = tmp_path / "killed"
    common = ("train", "decision", "--out", str(out), "--config", "smoke")
    cli(*common, "--set", "epochs=1")  # builds the data set (and fits one epoch)
    (out / "model.keras").unlink()
    (out / "metrics.json").unlink()
    args = [sys.executable, "-m", "adaptive_dff.cli", *common, "--set", "epochs=100000"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.time() + 240
    reached = 0
    while time.time() < deadline and reached < 4:
        time.sleep(0.2)
        found = [int(p.name.split("-")[1].split(".")[0]) for p in (out / "checkpoints").glob("ckpt-*.index")]
        reached = max(found, default=0)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert reached >= 4, "no checkpoint appeared before the kill"
    assert not (out / "model.keras").exists()
    import tensorflow as tf

    last = int(tf.train.latest_checkpoint(str(out / "checkpoints")).rsplit("-", 1)[1])
    rerun = cli(*common, "--set", f"epochs={last + 2}")
    assert f"resuming from epoch {last}" in rerun.stdout
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics["resumed_from_epoch"] == last and metrics["epochs"] == last + 2


def test_decision_video_items_take_frame_spans(tmp_path):
    from training.config import load_config
    from training.decision import _videos, parse_video_item

    assert parse_video_item("clips/a.mp4") == ("clips/a.mp4", 0, None)
    assert parse_video_item("camvid/val@0:34") == ("camvid/val", 0, 34)
    assert parse_video_item("runs@2/clip.mp4") == ("runs@2/clip.mp4", 0, None)  # an @ inside a folder name
    for bad in ("a.mp4@5", "a.mp4@x:3", "a.mp4@4:4"):
        with pytest.raises(ValueError, match="a.mp4"):
            parse_video_item(bad)

    folders = []
    for name, shade in (("one", 0), ("two", 100)):
        folder = tmp_path / name
        folder.mkdir()
        for t in range(12):
            cv2.imwrite(str(folder / f"f{t:03d}.png"), np.full((32, 48, 3), shade + t, np.uint8))
        folders.append(folder)
    config = load_config("decision", "smoke", ["height=32", "width=48", "max_frames=5", "max_offset=2"])
    config["videos"] = f"{folders[0]}@3:10,{folders[1]}"
    clips = _videos(config)
    assert [name for name, _ in clips] == ["one@3:10", "two"]
    assert [int(f[0, 0, 0]) for f in clips[0][1]] == [3, 4, 5, 6, 7]  # frames 3.. capped by max_frames
    assert [int(f[0, 0, 0]) for f in clips[1][1]] == [100, 101, 102, 103, 104]
    config["videos"] = f"{folders[0]}@8:20,{folders[1]}"
    config["max_frames"] = 20
    with pytest.raises(ValueError, match=r"one@8:20'.*frames up to 19, the video has 12"):
        _videos(config)


@pytest.mark.data
def test_decision_on_real_videos_and_bad_video_lists(tmp_path, data_root):
    videos = ",".join([str(data_root / "videos" / "box.mp4"), str(data_root / "camvid" / "val") + "@10:40"])
    out = tmp_path / "real"
    cli("train", "decision", "--out", str(out), "--config", "smoke", "--set", f"videos={videos}")
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics["held_out_video"] == "val@10:40" and metrics["train_samples"] > 0
    single = cli("train", "decision", "--out", str(tmp_path / "one"), "--config", "smoke",
                 "--set", f"videos={data_root / 'videos' / 'box.mp4'}", check=False)
    assert single.returncode == 2 and "needs at least two videos" in single.stderr
    missing = cli("train", "decision", "--out", str(tmp_path / "two"), "--config", "smoke",
                  "--set", f"videos={tmp_path / 'no.mp4'},{tmp_path / 'no2.mp4'}", check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert not (tmp_path / "one").exists() and not (tmp_path / "two").exists()


def test_features_then_dff_from_its_weights(tmp_path):
    features = tmp_path / "features"
    run = cli("train", "features", "--out", str(features), "--config", "smoke")
    assert "per-frame mIoU on 20 evaluation frames" in run.stdout
    from adaptive_dff import load_model

    trained = load_model(features / "model.keras")
    dff = tmp_path / "dff"
    cli("train", "dff", "--out", str(dff), "--config", "smoke", "--set", "steps=1",
        "--set", f"features_init={features / 'model.keras'}")
    assert json.loads((dff / "metrics.json").read_text())["metrics"]["steps"] == 1
    bad = cli("train", "dff", "--out", str(tmp_path / "bad"), "--config", "smoke",
              "--set", f"features_init={tmp_path / 'missing.keras'}", check=False)
    assert bad.returncode == 2 and "does not exist" in bad.stderr
    assert trained.head.num_classes == 7


def test_masked_cross_entropy_against_numpy():
    import tensorflow as tf

    from training.losses import masked_cross_entropy

    rng = np.random.default_rng(4)
    logits = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    label = rng.integers(0, 6, (2, 3, 4))  # 5 is void
    ours = masked_cross_entropy(tf.constant(label), tf.constant(logits), void=5).numpy()
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    for b in range(2):
        keep = label[b] != 5
        picked = np.take_along_axis(log_p[b], np.where(keep, label[b], 0)[..., None], -1)[..., 0]
        assert ours[b] == pytest.approx(-picked[keep].mean(), rel=1e-5)


def test_class_weighted_cross_entropy_and_median_frequency_weights():
    import tensorflow as tf

    from training.losses import masked_cross_entropy, median_frequency_weights

    rng = np.random.default_rng(5)
    logits = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    label = rng.integers(0, 6, (2, 3, 4))
    weights = rng.uniform(0.5, 3.0, 5).astype(np.float32)
    ours = masked_cross_entropy(tf.constant(label), tf.constant(logits), void=5, class_weights=weights).numpy()
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    for b in range(2):
        keep = label[b] != 5
        picked = np.take_along_axis(log_p[b], np.where(keep, label[b], 0)[..., None], -1)[..., 0]
        assert ours[b] == pytest.approx(-(picked * weights[np.where(keep, label[b], 0)])[keep].sum() / keep.sum(),
                                        rel=1e-5)
    # By hand: image A (4 px): class 0 x3, class 1 x1; image B (4 px): class 0 x2, void x2; class 2 absent.
    a = np.array([[0, 0], [0, 1]])
    b = np.array([[0, 0], [9, 9]])
    f0, f1 = 5 / 6, 1 / 4  # class 0: 5 px over 6 kept px of the images holding it; class 1: 1 px over 4
    median = np.median([f0, f1])
    np.testing.assert_allclose(median_frequency_weights([a, b], 3, void=9), [median / f0, median / f1, 1.0],
                               rtol=1e-6)


def test_training_augmentation_scales_pads_with_void_and_keeps_labels_aligned():
    from training.features import augment

    rng = np.random.default_rng(0)
    label = np.repeat(np.arange(8, dtype=np.uint8), 8)[None].repeat(40, 0)  # vertical stripes, 8 px each
    frame = (label[..., None] * 30).repeat(3, -1).astype(np.uint8)  # the image encodes the label
    config = {"scale_min": 0.5, "scale_max": 0.5, "colour_jitter": 0.0}
    image, crop = augment(rng, frame, label, 32, 48, config, void=11)
    assert image.shape == (32, 48, 3) and image.dtype == np.float32 and crop.shape == (32, 48)
    assert (crop == 11).any() and np.all(image[crop == 11] == 0)  # padded: black and void
    inside = crop != 11
    # Away from stripe edges, the bilinear image still encodes the nearest-neighbour label.
    edges = np.abs(np.diff(crop.astype(int), axis=1, prepend=crop[:, :1])) > 0
    edges |= np.roll(edges, -1, axis=1)
    keep = inside & ~edges
    np.testing.assert_allclose(image[..., 0][keep], crop[keep] * 30.0, atol=16)
    jittered, _ = augment(np.random.default_rng(1), frame, label, 32, 48,
                          {"scale_min": 1.0, "scale_max": 1.0, "colour_jitter": 0.3}, void=11)
    assert jittered.min() >= 0 and jittered.max() <= 255


def test_poly_learning_rate_follows_the_optimizer_steps():
    from training.runtime import learning_rate_at, learning_rate_schedule

    config = {"learning_rate": 0.01, "steps": 100, "lr_schedule": "poly"}
    schedule = learning_rate_schedule(config)
    for step in (0, 37, 99, 100):
        assert float(schedule(step)) == pytest.approx(learning_rate_at(config, step), rel=1e-5)
    assert learning_rate_at(config, 50) == pytest.approx(0.01 * 0.5 ** 0.9)
    assert learning_rate_schedule({**config, "lr_schedule": "constant"}) == 0.01
    with pytest.raises(ValueError, match="lr_schedule"):
        validate("flow", {"lr_schedule": "cosine"})
    with pytest.raises(ValueError, match="scale_min <= scale_max"):
        validate("features", {"scale_min": 2.0, "scale_max": 1.0})


def test_mixed_precision_and_xla_options_train(tmp_path):
    run = cli(*flow_args(tmp_path / "mixed", "--set", "steps=2", "--set", "mixed_precision=true",
                         "--set", "jit_compile=true"))
    metrics = json.loads((tmp_path / "mixed" / "metrics.json").read_text())
    assert metrics["config"]["mixed_precision"] is True and np.isfinite(metrics["metrics"]["final_loss_epe"])
    assert "mixed precision on a CPU is slower" in run.stderr
