"""The procedural video generator: exact flow, labels, visibility, determinism."""

import pickle
import subprocess
import sys

import cv2
import numpy as np
import pytest

from adaptive_dff.data import (
    BACKGROUND_CLASSES,
    CLASS_NAMES,
    NUM_CLASSES,
    OBJECT_CLASSES,
    SyntheticVideo,
    flow_to_grid,
    make_clips,
)

H, W = 128, 256


def small(**kwargs) -> SyntheticVideo:
    args = dict(height=H, width=W, num_frames=40)
    args.update(kwargs)
    return SyntheticVideo(**args)


def remap(image: np.ndarray, flow: np.ndarray, interpolation: int) -> np.ndarray:
    """``out[y, x] = image[y + dy, x + dx]`` with cv2.remap, zero outside."""
    h, w = flow.shape[:2]
    map_x = (np.arange(w, dtype=np.float32)[None, :] + flow[..., 0]).astype(np.float32)
    map_y = (np.arange(h, dtype=np.float32)[:, None] + flow[..., 1]).astype(np.float32)
    return cv2.remap(image, map_x, map_y, interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``image`` [H, W, C] sampled bilinearly at float64 points, edge-clamped."""
    h, w = image.shape[:2]
    x = np.clip(x, 0, w - 1)
    y = np.clip(y, 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(int), w - 2)
    y0 = np.minimum(np.floor(y).astype(int), h - 2)
    ax, ay = (x - x0)[..., None], (y - y0)[..., None]
    img = image.astype(np.float64)
    top = img[y0, x0] * (1 - ax) + img[y0, x0 + 1] * ax
    bottom = img[y0 + 1, x0] * (1 - ax) + img[y0 + 1, x0 + 1] * ax
    return top * (1 - ay) + bottom * ay


def targets(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = flow.shape[:2]
    return np.arange(w)[None, :] + flow[..., 0].astype(np.float64), np.arange(h)[:, None] + flow[..., 1].astype(np.float64)


# ---------------------------------------------------------------- basics


def test_shapes_dtypes_and_class_list():
    v = small(num_frames=5)
    assert len(v) == 5
    frame, label, flow, valid = v.frame(2), v.label(2), v.flow(2, 0), v.valid(2, 0)
    assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
    assert label.shape == (H, W) and label.dtype == np.uint8
    assert flow.shape == (H, W, 2) and flow.dtype == np.float32
    assert valid.shape == (H, W) and valid.dtype == bool
    assert label.max() < NUM_CLASSES == len(CLASS_NAMES)
    assert set(BACKGROUND_CLASSES) | set(OBJECT_CLASSES) == set(range(NUM_CLASSES))
    assert len(OBJECT_CLASSES) >= 4
    items = list(v)
    assert len(items) == 5
    np.testing.assert_array_equal(items[3][0], v.frame(3))
    np.testing.assert_array_equal(items[3][1], v.label(3))
    # returned arrays are copies: editing them does not change the clip
    frame[:] = 0
    assert v.frame(2).any()


def test_instances_agree_with_labels():
    v = small(num_objects=6, seed=4)
    scene = v._scene(0)
    for t in (0, 17):
        inst, label = v.instances(t), v.label(t)
        assert np.isin(label[inst == 0], BACKGROUND_CLASSES).all()
        for j, obj in enumerate(scene.objects, start=1):
            assert (label[inst == j] == obj.cls).all()


def test_pair_matches_the_single_calls():
    v = small(seed=3)
    p = v.pair(key_index=10, current_index=16)
    np.testing.assert_array_equal(p["key"], v.frame(10))
    np.testing.assert_array_equal(p["current"], v.frame(16))
    np.testing.assert_array_equal(p["label_key"], v.label(10))
    np.testing.assert_array_equal(p["label_current"], v.label(16))
    np.testing.assert_array_equal(p["flow"], v.flow(16, 10))
    np.testing.assert_array_equal(p["valid"], v.valid(16, 10))
    assert (p["key_index"], p["current_index"]) == (10, 16)


# ---------------------------------------------------------------- determinism


def test_same_seed_is_bit_identical_and_seeds_differ():
    a, b, c = small(seed=7), small(seed=7), small(seed=8)
    for t in (0, 13, 39):
        np.testing.assert_array_equal(a.frame(t), b.frame(t))
        np.testing.assert_array_equal(a.label(t), b.label(t))
    np.testing.assert_array_equal(a.flow(13, 5), b.flow(13, 5))
    np.testing.assert_array_equal(a.valid(13, 5), b.valid(13, 5))
    diff = np.abs(a.frame(0).astype(int) - c.frame(0).astype(int)).mean()
    assert diff > 10, diff
    assert not np.array_equal(a.label(0), c.label(0))


def test_random_access_order_does_not_matter():
    forward, backward = small(seed=5), small(seed=5)
    order = list(range(0, 40, 3))
    first = {t: (forward.frame(t), forward.label(t)) for t in order}
    flows = {t: forward.flow(t, 0) for t in order[:5]}
    for t in reversed(order):  # the small cache is evicted many times over
        frame, label = backward.frame(t), backward.label(t)
        np.testing.assert_array_equal(frame, first[t][0])
        np.testing.assert_array_equal(label, first[t][1])
    for t in reversed(order[:5]):
        np.testing.assert_array_equal(backward.flow(t, 0), flows[t])
    # a pickled copy (e.g. sent to a data-loading worker) renders the same
    clone = pickle.loads(pickle.dumps(forward))
    np.testing.assert_array_equal(clone.frame(21), first[21][0])


# ---------------------------------------------------------------- flow against the content


@pytest.mark.parametrize("seed,key,current", [(0, 10, 15), (1, 30, 21), (2, 0, 9), (3, 5, 35)])
def test_warping_key_labels_by_the_flow_reproduces_current_labels(seed, key, current):
    v = small(seed=seed)
    flow, valid = v.flow(current, key), v.valid(current, key)
    label_key, label_cur = v.label(key), v.label(current)
    warped = remap(label_key, flow, cv2.INTER_NEAREST)
    assert valid.mean() > 0.2
    agree = (warped == label_cur)[valid]
    assert agree.mean() >= 0.985, agree.mean()
    # Every disagreement is a nearest-neighbour rounding at a label boundary:
    # the 3x3 neighbourhood of the rounded sampling point is not uniform.
    qx, qy = targets(flow)
    rx = np.rint(qx).astype(int).clip(0, W - 1)
    ry = np.rint(qy).astype(int).clip(0, H - 1)
    padded = np.pad(label_key, 1, mode="edge")
    neighbours = np.stack([padded[ry + 1 + a, rx + 1 + b] for a in (-1, 0, 1) for b in (-1, 0, 1)])
    at_boundary = (neighbours != neighbours[4]).any(axis=0)
    wrong = valid & (warped != label_cur)
    assert not (wrong & ~at_boundary).any(), np.argwhere(wrong & ~at_boundary)[:5]


@pytest.mark.parametrize("seed,key,current", [(0, 10, 14), (2, 20, 11), (3, 0, 30)])
def test_warping_key_frame_by_the_flow_reproduces_current_frame(seed, key, current):
    v = small(seed=seed, brightness=0.3)
    flow, valid = v.flow(current, key), v.valid(current, key)
    assert v.gain(key) != v.gain(current)
    key_frame = v.frame(key).astype(np.float32)
    cur = v.frame(current).astype(np.float32) / v.gain(current)
    warped = remap(key_frame, flow, cv2.INTER_LINEAR) / v.gain(key)
    # away from the image border of the valid area and from label boundaries
    label = v.label(current)
    edges = cv2.dilate(cv2.Canny(label * 30, 1, 1), np.ones((5, 5), np.uint8)) > 0
    inner = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~edges
    assert inner.mean() > 0.2
    error = np.abs(warped - cur)[inner].mean()
    assert error < 3.0, error
    # the check discriminates: no motion compensation is far worse
    unwarped = np.abs(key_frame / v.gain(key) - cur)[inner].mean()
    assert unwarped > 3 * error, (unwarped, error)


def test_flow_to_self_is_zero_and_fully_valid():
    v = small(seed=1)
    for t in (0, 22):
        assert not v.flow(t, t).any()
        assert v.valid(t, t).all()


@pytest.mark.parametrize("i,j,k", [(5, 9, 14), (20, 12, 3)])
def test_flow_composes(i, j, k):
    v = small(seed=6)
    f_ij, f_jk, f_ik = v.flow(i, j), v.flow(j, k), v.flow(i, k)
    valid_ij, valid_jk = v.valid(i, j), v.valid(j, k)
    qx, qy = targets(f_ij)
    inside = (qx >= 0) & (qx <= W - 1) & (qy >= 0) & (qy <= H - 1)
    # The flow is affine within a layer, so bilinear sampling of flow(j, k)
    # is exact where the four neighbours of the sampling point lie on the
    # layer of the pixel and are valid from j to k.
    x0 = np.floor(qx).astype(int).clip(0, W - 2)
    y0 = np.floor(qy).astype(int).clip(0, H - 2)
    layer_i, layer_j = v.instances(i), v.instances(j)
    both = valid_ij & inside
    for dy in (0, 1):
        for dx in (0, 1):
            both &= valid_jk[y0 + dy, x0 + dx] & (layer_j[y0 + dy, x0 + dx] == layer_i)
    assert both.mean() > 0.4
    # (sampled in float64 here: cv2.remap quantises positions to 1/32 px)
    composed = f_ij + bilinear(f_jk, qx, qy)
    error = np.linalg.norm(composed - f_ik, axis=-1)[both]
    assert error.max() < 1e-3, error.max()


def test_static_scene_has_zero_flow():
    v = small(seed=2, camera_speed=0.0, object_speed=0.0)
    assert np.abs(v.flow(30, 3)).max() < 1e-6
    assert v.valid(30, 3).all()
    np.testing.assert_array_equal(v.label(30), v.label(3))


# ---------------------------------------------------------------- visibility


def test_valid_excludes_occlusions_and_exits_over_a_long_gap():
    object_behind_object = 0
    for seed in range(3):
        v = small(seed=seed, num_objects=8, object_speed=3.0)
        i, k = 39, 0
        flow, valid = v.flow(i, k), v.valid(i, k)
        qx, qy = targets(flow)
        inside = (qx >= 0) & (qx <= W - 1) & (qy >= 0) & (qy <= H - 1)
        assert 0.1 < valid.mean() < 0.95, valid.mean()
        assert not (valid & ~inside).any()
        assert (~inside).mean() > 0.02  # points that left the frame
        occluded = inside & ~valid
        assert occluded.mean() > 0.005  # covered or uncovered by a moving object
        inst_i, inst_k = v.instances(i), v.instances(k)
        rx = np.rint(qx).astype(int).clip(0, W - 1)
        ry = np.rint(qy).astype(int).clip(0, H - 1)
        other = inst_k[ry, rx]
        object_behind_object += int((occluded & (inst_i > 0) & (other > 0) & (other != inst_i)).sum())
    assert object_behind_object > 0


def test_objects_overlap_in_frames():
    # Objects 1..n are the same whatever num_objects, so a clip with fewer
    # objects shows the lower ones unoccluded by the higher ones.
    many = small(seed=0, num_objects=8)
    hidden = 0
    for n in range(1, 8):
        few = small(seed=0, num_objects=n)
        for t in range(0, 40, 6):
            full, shown = few.instances(t), many.instances(t)
            assert not ((shown == n) & (full != n)).any()  # higher layers never reveal more
            hidden += int(((full == n) & (shown > n)).sum())
    assert hidden > 0


# ---------------------------------------------------------------- scenes and brightness


def test_scene_cut():
    v = small(seed=9, scene_cuts=(20,))
    assert v.scene_index(19) == 0 and v.scene_index(20) == 1
    for i, k in [(19, 20), (20, 19), (35, 2)]:
        assert not v.valid(i, k).any()
        assert not v.flow(i, k).any()
    assert v.valid(25, 21).mean() > 0.5
    assert v.valid(10, 14).mean() > 0.5
    def change(a, b):
        return np.abs(v.frame(a).astype(int) - v.frame(b).astype(int)).mean()
    assert change(19, 20) > 3 * max(change(18, 19), change(20, 21))


def test_brightness_changes_over_time():
    static = dict(seed=4, camera_speed=0.0, object_speed=0.0, num_frames=90)
    v = small(brightness=0.2, **static)
    gains = np.array([v.gain(t) for t in range(90)])
    assert gains.min() >= 0.8 - 1e-9 and gains.max() <= 1.2 + 1e-9
    assert gains.max() - gains.min() > 0.2
    lo, hi = int(gains.argmin()), int(gains.argmax())
    dark, bright = v.frame(lo).astype(np.float64), v.frame(hi).astype(np.float64)
    assert bright.mean() > dark.mean() * 1.2
    # the scene is still, so frames differ by the gain only (up to rounding
    # each to uint8: 0.5 / 0.8 + 0.5 / 1.2 grey levels)
    np.testing.assert_allclose(dark / gains[lo], bright / gains[hi], atol=1.05)
    flat = small(brightness=0.0, **static)
    np.testing.assert_array_equal(flat.frame(lo), flat.frame(hi))
    assert flat.gain(lo) == 1.0


def test_all_classes_present_with_distinct_colours():
    v = small(seed=1, num_objects=6)
    labels = np.stack([v.label(t) for t in (0, 10, 20)])
    frames = np.stack([v.frame(t) for t in (0, 10, 20)])
    assert set(np.unique(labels)) == set(range(NUM_CLASSES))
    means = np.array([frames[labels == c].mean(axis=0) for c in range(NUM_CLASSES)])
    distances = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert distances[~np.eye(NUM_CLASSES, dtype=bool)].min() > 15, means


# ---------------------------------------------------------------- helpers


def flow_to_grid_reference(flow, s):
    h, w = flow.shape[0] // s, flow.shape[1] // s
    out = np.zeros((h, w, 2), np.float64)
    for y in range(h):
        for x in range(w):
            out[y, x] = flow[y * s:(y + 1) * s, x * s:(x + 1) * s].reshape(-1, 2).mean(axis=0) / s
    return out


@pytest.mark.parametrize("stride", [1, 4, 16])
def test_flow_to_grid_against_numpy(stride):
    rng = np.random.default_rng(stride)
    flow = rng.normal(scale=10.0, size=(3, 32, 48, 2)).astype(np.float32)
    grid = flow_to_grid(flow, stride)
    assert grid.shape == (3, 32 // stride, 48 // stride, 2) and grid.dtype == np.float32
    for b in range(3):
        np.testing.assert_allclose(grid[b], flow_to_grid_reference(flow[b], stride), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(flow_to_grid(flow[1], stride), grid[1], rtol=1e-6, atol=1e-6)


def test_flow_to_grid_of_a_real_flow():
    v = SyntheticVideo(height=64, width=128, num_frames=10, seed=3)
    flow = v.flow(6, 2)
    np.testing.assert_allclose(flow_to_grid(flow, 16), flow_to_grid_reference(flow, 16), rtol=1e-5, atol=1e-5)


def test_make_clips():
    clips = make_clips(3, seed=11, height=64, width=96, num_frames=7)
    assert len(clips) == 3 and all(len(c) == 7 and c.width == 96 for c in clips)
    assert len({c.seed for c in clips}) == 3
    assert not np.array_equal(clips[0].frame(0), clips[1].frame(0))
    again = make_clips(2, seed=11, height=64, width=96, num_frames=7)
    assert [c.seed for c in again] == [c.seed for c in clips[:2]]
    assert make_clips(1, seed=12, height=64, width=96)[0].seed != clips[0].seed


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(height=8), "height"),
        (dict(width="wide"), "width"),
        (dict(num_frames=0), "num_frames"),
        (dict(num_objects=-1), "num_objects"),
        (dict(num_objects=1.5), "num_objects"),
        (dict(seed=-3), "seed"),
        (dict(brightness=1.0), "brightness"),
        (dict(camera_speed=-1.0), "camera_speed"),
        (dict(object_speed=float("nan")), "object_speed"),
        (dict(scene_cuts=(0,)), "scene cut 0"),
        (dict(scene_cuts=(50,)), "scene cut 50.*40 frames"),
        (dict(scene_cuts=(10, 10)), "strictly increasing"),
        (dict(scene_cuts=5), "scene_cuts"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small(**kwargs)


def test_bad_indices():
    v = small(num_frames=10)
    with pytest.raises(ValueError, match=r"t=10 .*10 frames"):
        v.frame(10)
    with pytest.raises(ValueError, match=r"t=-1"):
        v.label(-1)
    with pytest.raises(ValueError, match=r"k=12"):
        v.flow(0, 12)
    with pytest.raises(ValueError, match=r"i=2.5|i must be an integer"):
        v.valid(2.5, 0)
    with pytest.raises(ValueError, match=r"current_index=99"):
        v.pair(0, 99)
    with pytest.raises(ValueError, match="stride"):
        flow_to_grid(np.zeros((20, 32, 2), np.float32), 16)
    with pytest.raises(ValueError, match=r"\[\.\.\., H, W, 2\]"):
        flow_to_grid(np.zeros((16, 16, 3), np.float32), 16)
    with pytest.raises(ValueError, match="n must be >= 1"):
        make_clips(0, seed=0)


def test_import_does_not_load_tensorflow():
    code = "import adaptive_dff.data, sys; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_object_size_and_scene_motion():
    """object_size scales the objects; with object_motion="scene" an object still on its own path
    moves on screen with the background's pan (its exact flow matches the background's at the centre)."""
    from adaptive_dff.data import SyntheticVideo

    small = SyntheticVideo(height=64, width=96, num_frames=4, seed=3, object_size=(0.05, 0.06))
    large = SyntheticVideo(height=64, width=96, num_frames=4, seed=3, object_size=(0.2, 0.21))
    assert (large.instances(0) > 0).sum() > 3 * (small.instances(0) > 0).sum()
    video = SyntheticVideo(height=64, width=96, num_frames=6, seed=3, object_speed=0.0, camera_speed=3.0,
                           brightness=0.0, object_motion="scene", num_objects=1)
    still = SyntheticVideo(height=64, width=96, num_frames=6, seed=3, object_speed=0.0, camera_speed=3.0,
                           brightness=0.0, num_objects=1)
    layers = video.instances(3)
    assert (layers == 1).any()
    flow = video.flow(3, 0)
    background = video.flow(3, 0)[layers == 0].mean(axis=0)
    assert np.abs(flow[layers == 1].mean(axis=0)).max() > 1.0  # carried by the pan
    assert np.abs(flow[layers == 1].mean(axis=0) - background).max() < 2.0
    assert np.abs(still.flow(3, 0)[still.instances(3) == 1]).max() < 0.5  # on screen paths: only the zoom and roll
    for bad in ((0.0, 0.1), (0.3, 0.2), (0.1, 0.6), "big", (0.1,)):
        with pytest.raises(ValueError, match="object_size"):
            SyntheticVideo(object_size=bad)
    with pytest.raises(ValueError, match="object_motion must be one of"):
        SyntheticVideo(object_motion="world")
