"""DVSNet's learned scheduler: a decision network per region (Xu et al., CVPR 2018).

The decision network reads features of the (current, key) pair of a region,
resized to a small grid, and regresses the *expected confidence score*: the
share of pixels where the warped prediction agrees with the per-frame
prediction. The region is recomputed when the predicted score falls below a
target. With ``dynamic=True`` the target falls by ``step_down`` after each
update and rises by ``step_up`` after each propagation (per region, bounded
to ``[min_target, max_target]``), as DVSNet's adaptive threshold does.

Features: with a DFF model they are the flow network's ``features`` output
(the runner passes them); in a pipeline without a flow network,
:class:`schedulers.pair_features.OpenCVPairFeatures` builds them from OpenCV DIS flow (dx, dy, flow
magnitude and the warp error of the key frame), so no TensorFlow is needed to
compute features. TensorFlow is imported only when a :class:`DecisionModel`
is built, fitted or loaded.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import numpy as np

from schedulers.base import Context, Decision, Estimator, Policy
from schedulers.files import check_keras_file, save_keras_atomic, write_json_atomic
from schedulers.optional import require
from schedulers.quality_predictor import load_quality_predictor
from schedulers.pair_features import OpenCVPairFeatures, resize_features
from schedulers.quality_signals import KEY_LABEL_SIGNAL, predicted_quality


class DecisionModel(Estimator):
    """A small Keras regressor with scikit-learn's habits (``fit``/``predict``/``score``).

    Architecture (DVSNet): one 3x3 conv (``conv_filters``, ReLU) over the
    ``[rows, cols, C]`` feature grid, then dense layers (``dense_units``,
    ReLU), then one sigmoid output: the expected confidence score in [0, 1].
    Inputs are standardised per channel with statistics learnt in ``fit``.

    Args:
        conv_filters: filters of the conv layer.
        dense_units: widths of the hidden dense layers.
        learning_rate, epochs, batch_size: Adam training settings.
        seed: seeds weight initialisation and shuffling.
    """

    def __init__(
        self,
        conv_filters: int = 32,
        dense_units: Sequence[int] = (64, 32),
        learning_rate: float = 1e-3,
        epochs: int = 30,
        batch_size: int = 64,
        seed: int = 0,
    ):
        self.conv_filters = conv_filters
        self.dense_units = tuple(dense_units)
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed

    def __getstate__(self) -> dict:
        # The traced prediction function is rebuilt on first use; the Keras model pickles itself.
        return {k: v for k, v in vars(self).items() if k != "_predict_fn"}

    @staticmethod
    def _check_xy(X, y=None):
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 4:
            raise ValueError(f"X must be [N, rows, cols, C] feature grids, got shape {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or inf")
        if y is None:
            return X, None
        y = np.asarray(y, dtype=np.float32).reshape(-1)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but y has {y.shape[0]}")
        if not np.all((y >= 0) & (y <= 1)):
            raise ValueError(f"y must be confidence scores in [0, 1], found values from {y.min()} to {y.max()}")
        return X, y

    def _build(self, input_shape):
        keras = require("keras", "DecisionModel")

        keras.utils.set_random_seed(self.seed)
        inputs = keras.Input(input_shape, name="pair_features")
        x = keras.layers.Conv2D(self.conv_filters, 3, padding="same", activation="relu", name="conv")(inputs)
        x = keras.layers.Flatten(name="flatten")(x)
        for i, units in enumerate(self.dense_units):
            x = keras.layers.Dense(units, activation="relu", name=f"dense{i + 1}")(x)
        outputs = keras.layers.Dense(1, activation="sigmoid", name="confidence")(x)
        return keras.Model(inputs, outputs, name="decision_network")

    def fit(self, X, y, *, validation_data=None, checkpoint_dir: Optional[str] = None,
            on_epoch_end=None) -> "DecisionModel":
        """Train on feature grids ``X`` ``[N, rows, cols, C]`` and scores ``y`` ``[N]`` in [0, 1].

        Epoch ``e`` visits the samples in the order of a permutation seeded by
        ``(seed, e)``, so training is a function of the data, the parameters
        and the epoch reached.

        Args:
            validation_data: ``(X_val, y_val)``, scored after every epoch
                (``val_loss``, ``val_mae`` in the history).
            checkpoint_dir: a folder for a TensorFlow checkpoint (weights,
                optimizer state, epoch) written after every epoch; when it
                holds one, training resumes from it and gives the same model
                as an uninterrupted run. The checkpoint index is replaced only
                after its data is written, so a kill at any moment leaves the
                previous epoch's checkpoint valid.
            on_epoch_end: ``on_epoch_end(epoch, logs)`` after each epoch (1-based
                epochs done; ``logs``: ``loss``, ``mae`` and the ``val_`` ones).

        ``history_`` holds the metrics of the epochs run by this call; ``resumed_from_``
        the epoch it started from.
        """
        keras = require("keras", "DecisionModel")

        X, y = self._check_xy(X, y)
        self.mean_ = X.mean(axis=(0, 1, 2))
        self.std_ = X.std(axis=(0, 1, 2)) + 1e-6
        self.model_ = self._build(X.shape[1:])
        self._predict_fn = None
        optimizer = keras.optimizers.Adam(self.learning_rate)
        self.model_.compile(optimizer=optimizer, loss="mse", metrics=["mae"])
        validation = None
        if validation_data is not None:
            X_val, y_val = self._check_xy(*validation_data)
            validation = ((X_val - self.mean_) / self.std_, y_val)
        manager, epoch_done = self._checkpoint(checkpoint_dir, optimizer)
        self.resumed_from_ = epoch_done
        X = (X - self.mean_) / self.std_
        self.history_ = {}
        for epoch in range(epoch_done, self.epochs):
            order = np.random.default_rng([self.seed, epoch]).permutation(len(y))
            logs = self.model_.fit(X[order], y[order], epochs=1, batch_size=self.batch_size, shuffle=False,
                                   validation_data=validation, verbose=0).history
            logs = {name: float(values[-1]) for name, values in logs.items()}
            for name, value in logs.items():
                self.history_.setdefault(name, []).append(value)
            if manager is not None:
                manager[1].assign(epoch + 1)
                manager[0].save(checkpoint_number=epoch + 1)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, logs)
        return self

    def _checkpoint(self, folder: Optional[str], optimizer):
        """``((CheckpointManager, epoch variable) or None, epochs already done)``; restores the latest."""
        if folder is None:
            return None, 0
        tf = require("tensorflow", "DecisionModel")

        optimizer.build(self.model_.trainable_variables)  # its slots exist now, so a restore fills them
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        checkpoint = tf.train.Checkpoint(model=self.model_, optimizer=optimizer, epoch=epoch)
        manager = tf.train.CheckpointManager(checkpoint, folder, max_to_keep=2)
        if manager.latest_checkpoint:
            try:
                checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.OpError) as error:
                raise ValueError(f"checkpoint {manager.latest_checkpoint!r} does not match this decision model "
                                 f"({str(error).splitlines()[0]}); choose another folder") from None
        return (manager, epoch), int(epoch.numpy())

    def _check_fitted(self):
        if not hasattr(self, "model_"):
            raise RuntimeError("this DecisionModel is not fitted yet: call fit(X, y) or DecisionModel.load(path)")

    def predict(self, X) -> np.ndarray:
        """Expected confidence scores ``[N]`` in [0, 1]."""
        self._check_fitted()
        X, _ = self._check_xy(X)
        expected = self.model_.input_shape[1:]
        if tuple(X.shape[1:]) != tuple(expected):
            raise ValueError(f"X has feature grids of shape {X.shape[1:]} but the model was fitted on {expected}")
        if getattr(self, "_predict_fn", None) is None:
            tf = require("tensorflow", "DecisionModel")

            # A traced function: a per-frame call costs a fraction of an eager Keras call.
            self._predict_fn = tf.function(lambda x: self.model_(x, training=False), reduce_retracing=True)
        out = self._predict_fn((X - self.mean_) / self.std_)
        return np.asarray(out).reshape(-1).astype(np.float64)

    def score(self, X, y) -> float:
        """Coefficient of determination R^2 of ``predict(X)`` against ``y`` (scikit-learn's convention)."""
        r2_score = require("sklearn.metrics", "DecisionModel.score").r2_score

        X, y = self._check_xy(X, y)
        return float(r2_score(y, self.predict(X)))

    def save(self, path: str) -> None:
        """Write the fitted model to ``path`` (a ``.keras`` file) and ``path + '.json'``
        (parameters and input statistics), each atomically."""
        self._check_fitted()
        path = os.fspath(path)
        if not path.endswith(".keras"):
            raise ValueError(f"path must end in .keras, got {path!r}")
        keras = require("keras", "DecisionModel")

        # An uncompiled copy: the file holds the network, not Adam's moments (a third of the size).
        inference = keras.models.clone_model(self.model_)
        inference.set_weights(self.model_.get_weights())
        save_keras_atomic(inference, path)
        meta = {"params": self.get_params(), "mean": self.mean_.tolist(), "std": self.std_.tolist()}
        write_json_atomic(path + ".json", meta)

    @classmethod
    def load(cls, path: str) -> "DecisionModel":
        """Load what :meth:`save` wrote; errors name the missing or damaged file."""
        keras = require("keras", "DecisionModel")

        path = check_keras_file(path, "decision model file", metadata=os.fspath(path) + ".json")
        try:
            with open(path + ".json") as f:
                meta = json.load(f)
            params = meta["params"]
            params["dense_units"] = tuple(params["dense_units"])
            self = cls(**params)
            self.mean_ = np.asarray(meta["mean"], np.float32)
            self.std_ = np.asarray(meta["std"], np.float32)
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"decision model metadata {path + '.json'!r} is damaged: {error}") from None
        try:
            self.model_ = keras.models.load_model(path)
            self._predict_fn = None
        except Exception as error:  # keras raises many types for a damaged archive
            raise ValueError(f"decision model file {path!r} could not be loaded: {error}") from None
        return self


class DecisionNetworkScheduler(Policy):
    """Update a region when its predicted confidence score falls below ``target``.

    Args:
        model: a fitted :class:`DecisionModel` (reads feature grids of the
            pair), or a :class:`schedulers.QualityPredictor` (reads the
            region's :class:`schedulers.QualitySignals` at the downsample and
            grid limit it was fitted for; a region whose signals are not finite scores
            -inf and is updated).
        target: confidence target in [0, 1]; higher means more key frames.
        dynamic: adapt the target per region (down after an update, up after
            a propagation), as DVSNet.
        step_down, step_up: the dynamic target's steps.
        min_target, max_target: bounds of the dynamic target.
        feature_size: ``(rows, cols)`` grid the features are resized to.
        features: ``features(current, key, flow) -> [h, w, C]`` used when the
            context carries no flow-network features; ``None``:
            :class:`OpenCVPairFeatures` (built on first use, in ``features_``).

    Decision scores are the predicted confidences (lower = more change).
    """

    needs_flow = True
    threshold_param = "target"
    update_when_below = True
    follows_one_stream = True  # the signals since each region's key (a quality predictor's), dynamic targets

    def __init__(
        self,
        model: Optional[DecisionModel] = None,
        target: float = 0.9,
        dynamic: bool = False,
        step_down: float = 0.02,
        step_up: float = 0.005,
        min_target: float = 0.5,
        max_target: float = 0.99,
        feature_size: Sequence[int] = (8, 8),
        features=None,
    ):
        self.model = model
        self.target = target
        self.dynamic = dynamic
        self.step_down = step_down
        self.step_up = step_up
        self.min_target = min_target
        self.max_target = max_target
        self.feature_size = feature_size
        self.features = features

    @property
    def reads_key_labels(self) -> bool:
        """A quality predictor fitted on ``key_label_disagreement`` reads the key frames' labels."""
        return KEY_LABEL_SIGNAL in tuple(getattr(self.model, "signal_names", ()))

    @property
    def needs_flow_features(self) -> bool:
        """Feature grids for a :class:`DecisionModel`; a quality predictor reads signals of the flow."""
        return not hasattr(self.model, "check_signals")

    def region_features(self, context: Context) -> np.ndarray:
        """``[R, rows, cols, C]`` features of every region, resized to ``feature_size``."""
        grids = []
        for r in range(context.num_regions):
            if context.flow_features is not None:
                raw = context.flow_features[r]
            else:
                if self.features is not None:
                    features = self.features
                else:
                    if getattr(self, "features_", None) is None:
                        self.features_ = OpenCVPairFeatures()
                    features = self.features_
                # A coarse flow cannot drive a full-size warp error: the fallback then computes its own.
                flow = None if context.flow is None or context.flow_stride != 1 else context.flow[r]
                raw = features(context.regions[r], context.key_regions[r], flow)
            grids.append(resize_features(raw, self.feature_size))
        return np.stack(grids)

    def score(self, context: Context) -> np.ndarray:
        if self.model is None:
            raise ValueError("DecisionNetworkScheduler needs a fitted DecisionModel or QualityPredictor: "
                             "pass model=...")
        if not self.needs_flow_features:
            quality = predicted_quality(self, self.model, self.model.signals_downsample, context)
            return np.where(np.isfinite(quality), quality, -np.inf)
        return self.model.predict(self.region_features(context))

    def _check_params(self) -> float:
        base = self.decision_threshold()
        if not 0 <= base <= 1:
            raise ValueError(f"target must be in [0, 1], got {base}")
        if self.dynamic:
            if not 0 <= self.min_target <= self.max_target <= 1:
                raise ValueError(
                    f"need 0 <= min_target <= max_target <= 1, got min_target={self.min_target}, "
                    f"max_target={self.max_target}"
                )
            if self.step_down < 0 or self.step_up < 0:
                raise ValueError(f"step_down and step_up must be >= 0, got {self.step_down}, {self.step_up}")
        return base

    def decide(self, context: Context) -> Decision:
        base = self._check_params()
        if not self.dynamic:
            decision = super().decide(context)
            decision.extras["targets"] = np.full(context.num_regions, base)
            return decision
        scores = self.region_scores(context)
        targets = getattr(self, "targets_", None)
        if targets is None or len(targets) != context.num_regions:
            # The dynamic target lives in [min_target, max_target], from the start.
            targets = np.full(context.num_regions, float(np.clip(base, self.min_target, self.max_target)))
        update = scores < targets
        self.targets_ = np.clip(
            np.where(update, targets - self.step_down, targets + self.step_up),
            self.min_target, self.max_target,
        )
        return Decision(update=update, scores=scores, frame_index=context.frame_index,
                        extras={"targets": targets})


def load_decision_model(path):
    """The model of a :class:`schedulers.DecisionNetworkScheduler` saved at ``path``: a ``.keras``
    :class:`schedulers.DecisionModel` (flow-network features; imports TensorFlow), or else a
    quality predictor's JSON file (:meth:`QualityPredictor.load`, checked against the
    :class:`schedulers.QualitySignals` of the downsample and grid limit it records)."""
    path = os.fspath(path)
    if path.endswith(".keras"):
        return DecisionModel.load(path)
    return load_quality_predictor(path)
