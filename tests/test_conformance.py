"""One conformance check over every policy in ``schedulers.POLICIES`` and every network class,
in the manner of scikit-learn's ``check_estimator`` and keras-hub's shared test case.

Policies: parameters round-trip through ``get_params`` / ``set_params``, ``clone``
gives an equal, independent, stateless copy, ``reset`` clears run-time state,
a policy pickles (state included), and decides on 1x1 and 2x2 region grids.
Networks: the declared ``output_spec`` matches the measured output, the config
and a ``.keras`` file round-trip, and the network runs under mixed precision.
"""

from __future__ import annotations

import pickle

import keras
import numpy as np
import pytest
from helpers import tiny_parts

import schedulers
from adaptive_dff.data import SyntheticVideo
from adaptive_dff.networks import FlowNetInception, FlowNetS, OutputSpec, SegmentationHead
from schedulers import Context, DecisionModel, RegionGrid, Tracker
from schedulers.base import Estimator


@pytest.fixture(scope="module")
def clip():
    video = SyntheticVideo(height=64, width=96, num_frames=6, seed=3, camera_speed=3.0)
    return [video.frame(t) for t in range(6)]


@pytest.fixture(scope="module")
def decision_model():
    rng = np.random.default_rng(0)
    # OpenCV pair features (4 channels), resized to the scheduler's 8x8 grid.
    return DecisionModel(conv_filters=2, dense_units=(4,), epochs=1, seed=0).fit(
        rng.normal(size=(16, 8, 8, 4)), rng.uniform(0.5, 1.0, 16))


def make_policy(name: str, decision_model):
    cls = schedulers.POLICIES[name]
    return cls(model=decision_model) if name == "decision_network" else cls()


def run(policy, frames, regions):
    tracker = Tracker(policy, regions=regions)
    return [tracker.step(f) for f in frames]


def fitted_state(obj) -> dict:
    return {k: v for k, v in vars(obj).items() if k.endswith("_") and not k.startswith("_")}


@pytest.mark.parametrize("name", sorted(schedulers.POLICIES))
def test_policy_conformance(name, clip, decision_model):
    policy = make_policy(name, decision_model)
    assert isinstance(policy, Estimator)
    params = policy.get_params()
    # get_params reads the constructor: every argument, nothing else.
    assert type(policy)(**params).get_params() == params
    # set_params round-trips and refuses unknown names.
    threshold = params[policy.threshold_param]
    assert policy.set_params(**{policy.threshold_param: threshold}) is policy
    assert policy.get_params() == params
    with pytest.raises(ValueError, match="no parameter 'nope'"):
        policy.set_params(nope=1)

    for grid in (RegionGrid(1, 1), RegionGrid(2, 2, overlap=8)):
        decisions = run(policy, clip, grid)
        assert all(d.update.shape == (len(grid),) and d.update.dtype == bool for d in decisions)
        assert all(d.scores.shape == (len(grid),) for d in decisions)
        assert decisions[0].update.all()

    # After a run: clone has the same parameters and none of the state; pickle keeps both.
    twin = policy.clone()
    assert type(twin) is type(policy) and twin is not policy and twin.get_params() == policy.get_params()
    assert fitted_state(twin) == {}
    copy = pickle.loads(pickle.dumps(policy))
    assert copy.get_params().keys() == policy.get_params().keys() and fitted_state(copy).keys() == fitted_state(policy).keys()
    # Same decisions from the clone, the unpickled copy and the original after reset.
    first = [d.update.tolist() for d in run(policy.reset(), clip, RegionGrid(2, 2, overlap=8))]
    assert [d.update.tolist() for d in run(twin, clip, RegionGrid(2, 2, overlap=8))] == first
    assert [d.update.tolist() for d in run(copy, clip, RegionGrid(2, 2, overlap=8))] == first
    assert fitted_state(policy.reset()) == {}


@pytest.mark.parametrize("estimator", [RegionGrid(2, 3, overlap=4), DecisionModel(dense_units=(8,), epochs=2)],
                         ids=["RegionGrid", "DecisionModel"])
def test_other_estimators_follow_the_same_convention(estimator):
    params = estimator.get_params()
    assert type(estimator)(**params).get_params() == params
    twin = estimator.clone()
    assert type(twin) is type(estimator) and twin.get_params() == params
    name = next(iter(params))
    value = params[name] + 1 if isinstance(params[name], int) else params[name]
    assert twin.set_params(**{name: value}).get_params()[name] == value
    assert estimator.get_params() == params  # the original is untouched
    assert pickle.loads(pickle.dumps(estimator)).get_params() == params


def test_a_fitted_decision_model_clones_unfitted_and_pickles_fitted(decision_model):
    X = np.random.default_rng(1).normal(size=(3, 8, 8, 4))
    assert not hasattr(decision_model.clone(), "model_")
    copy = pickle.loads(pickle.dumps(decision_model))
    np.testing.assert_allclose(copy.predict(X), decision_model.predict(X), rtol=1e-6)


def test_a_policy_that_reads_full_resolution_flow_gets_it_from_either_runner(clip):
    """Context.flow_stride says the flow's resolution; needs_full_resolution_flow makes it 1."""
    from helpers import tiny_dff

    from adaptive_dff.runner import VideoRunner

    class Recording(schedulers.FlowMagnitude):
        needs_full_resolution_flow = True

        def score(self, context: Context) -> np.ndarray:
            seen.append((context.flow_stride, [f.shape for f in context.flow], [r.shape[:2] for r in context.regions]))
            return super().score(context)

    seen: list = []
    list(VideoRunner(tiny_dff(), Recording(), regions=RegionGrid(2, 2, overlap=8)).run(clip[:3]))
    run(Recording(), clip[:3], RegionGrid(2, 2, overlap=8))
    assert len(seen) == 4
    for stride, flows, regions in seen:
        assert stride == 1 and [f[:2] for f in flows] == regions

    coarse: list = []

    class Coarse(schedulers.FlowMagnitude):
        def score(self, context: Context) -> np.ndarray:
            coarse.append((context.flow_stride, context.flow[0].shape))
            return super().score(context)

    model = tiny_dff()
    list(VideoRunner(model, Coarse()).run(clip[:2]))
    assert coarse == [(model.output_stride, (64 // 16, 96 // 16, 2))]


# -- networks ------------------------------------------------------------------------

NETWORKS = sorted(tiny_parts())


def network_input(network, rng, batch=1, height=128, width=128):
    if isinstance(network, SegmentationHead):
        return rng.standard_normal((batch, height // 16, width // 16, network.input_channels)).astype(np.float32)
    image = lambda: rng.uniform(0, 255, (batch, height, width, 3)).astype(np.float32)  # noqa: E731
    return {"current": image(), "key": image()} if isinstance(network, (FlowNetS, FlowNetInception)) else image()


def main_output(output):
    return output["scale"] if isinstance(output, dict) else output


@pytest.mark.parametrize("kind", NETWORKS)
def test_network_conformance(kind, tmp_path):
    network = tiny_parts()[kind]
    spec = network.output_spec
    assert isinstance(spec, OutputSpec)
    assert (network.output_channels, network.output_stride, network.size_divisor) == (spec.channels, spec.stride, spec.size_divisor)
    rng = np.random.default_rng(0)
    # Declared against measured: an input of whole size divisors gives [B, H / stride, W / stride, channels].
    side = max(spec.size_divisor, 16)
    x = network_input(network, rng, batch=2, height=side, width=2 * side)
    out = network(x, training=False)
    in_h = side if not isinstance(network, SegmentationHead) else side // 16
    assert tuple(main_output(out).shape) == (2, in_h // spec.stride, 2 * in_h // spec.stride, spec.channels)
    if isinstance(out, dict):
        assert tuple(out["flow"].shape) == (2, in_h // spec.stride, 2 * in_h // spec.stride, 2)

    # The config and a .keras file round-trip.
    again = type(network).from_config(network.get_config())
    assert again.get_config() == network.get_config() and again.output_spec == spec
    path = tmp_path / f"{kind}.keras"
    network.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(network) and loaded.output_spec == spec
    for a, b in zip(keras.tree.flatten(out), keras.tree.flatten(loaded(x, training=False))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    # Mixed precision: float16 inside, the declared shapes, finite outputs; flow and logits stay float32.
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        half = type(network).from_config(network.get_config())
        half_out = half(x, training=False)
    finally:
        keras.config.set_dtype_policy(previous)
    assert tuple(main_output(half_out).shape) == tuple(main_output(out).shape)
    assert all(np.all(np.isfinite(np.asarray(t, np.float32))) for t in keras.tree.flatten(half_out))
    if isinstance(half_out, dict):
        assert half_out["flow"].dtype == "float32"
    if isinstance(network, SegmentationHead):
        assert half_out.dtype == "float32"
