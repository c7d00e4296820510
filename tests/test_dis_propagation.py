"""DIS propagation flow: grid averaging against numpy, a known translation, the model option and its errors."""

import numpy as np
import pytest
from helpers import tiny_dff

from adaptive_dff import load_model
from adaptive_dff.dis_propagation import DISGridFlow


def test_grid_flow_is_the_block_mean_of_the_dis_flow(monkeypatch):
    rng = np.random.default_rng(0)
    dis = DISGridFlow(downscale=4, stride=16)
    small = np.zeros((23, 30), np.uint8)  # a 90x120 frame at 1/4, grid of a 96x128 padded frame: 6x8
    field = rng.normal(size=(23, 30, 2)).astype(np.float32)
    monkeypatch.setattr(dis, "_flow", lambda a, b: field)
    ours = dis.grid_flow(small, small, (6, 8))
    padded = np.pad(field, ((0, 1), (0, 2), (0, 0)), mode="edge")  # 24x32: edge replication
    reference = padded.reshape(6, 4, 8, 4, 2).mean(axis=(1, 3)) * 4 / 16
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    assert ours.dtype == np.float32 and ours.shape == (6, 8, 2)


def test_a_translation_gives_its_flow_in_grid_pixels():
    rng = np.random.default_rng(1)
    texture = (rng.uniform(0, 255, (40, 50)) > 127).astype(np.uint8) * 255
    key = np.kron(texture, np.ones((8, 8), np.uint8))[:256, :384]  # blocky texture, 256x384
    key = np.stack([key] * 3, -1)
    dx, dy = 8, -4  # current[y, x] = key[y + dy, x + dx]
    current = np.roll(key, shift=(-dy, -dx), axis=(0, 1))
    dis = DISGridFlow(downscale=2, preset="medium", stride=16)
    flow = dis.grid_flow(dis.small(current), dis.small(key), (16, 24))
    inner = flow[3:-3, 3:-3]
    assert np.median(inner[..., 0]) == pytest.approx(dx / 16, abs=0.05)
    assert np.median(inner[..., 1]) == pytest.approx(dy / 16, abs=0.05)


def test_the_flow_of_a_pair_does_not_depend_on_the_pairs_before():
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (48, 64), dtype=np.uint8) for _ in range(3)]
    dis = DISGridFlow(downscale=1, stride=16)
    first = dis.grid_flow(frames[0], frames[1], (3, 4))
    dis.grid_flow(frames[2], frames[1], (3, 4))
    np.testing.assert_array_equal(dis.grid_flow(frames[0], frames[1], (3, 4)), first)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="divisor of the grid stride"):
        DISGridFlow(downscale=3)
    with pytest.raises(ValueError, match="preset"):
        DISGridFlow(preset="slow")
    with pytest.raises(ValueError, match="smaller than the frame"):
        dis = DISGridFlow(downscale=4)
        dis.grid_flow(np.zeros((40, 40), np.uint8), np.zeros((40, 40), np.uint8), (4, 4))
    with pytest.raises(ValueError, match="differ in size"):
        DISGridFlow().grid_flow(np.zeros((40, 40), np.uint8), np.zeros((40, 48), np.uint8), (4, 4))


def test_the_option_is_saved_with_the_model_and_checked(tmp_path):
    model = tiny_dff().with_propagation_flow("dis", dis_downscale=4)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = load_model(path)
    assert (loaded.propagation_flow, loaded.dis_downscale, loaded.dis_preset) == ("dis", 4, "ultrafast")
    assert loaded.dis_flow.downscale == 4
    back = loaded.with_propagation_flow("network")
    assert back.dis_flow is None and back.get_config()["propagation_flow"] == "network"
    with pytest.raises(ValueError, match="apply only to propagation_flow='dis'"):
        tiny_dff().with_propagation_flow("network", dis_downscale=8)
    with pytest.raises(ValueError, match="propagation_flow must be one of"):
        tiny_dff().with_propagation_flow("farneback")


@pytest.mark.parametrize("downscale, size, fits", [(8, (48, 64), False), (8, (96, 128), True), (4, (48, 64), True)])
def test_frames_too_small_for_the_shrunk_dis_flow_are_named_by_their_size(downscale, size, fits):
    flow = DISGridFlow(downscale=downscale)
    frame = np.random.default_rng(0).integers(0, 255, size + (3,), dtype=np.uint8)
    small = flow.small(frame)
    grid = (-(-size[0] // 16), -(-size[1] // 16))
    if fits:
        assert flow.grid_flow(small, small, grid).shape == grid + (2,)
        return
    with pytest.raises(ValueError, match=f"shrinks frames {downscale}x .* at least {12 * downscale} px per side; "
                                         f"this one is about {size[0]}x{size[1]}"):
        flow.grid_flow(small, small, grid)
