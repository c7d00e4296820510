"""``QualityPredictor``: signals of a region -> expected accuracy of its carried result.

Three kinds: ``"ridge"`` (scikit-learn ridge regression), ``"mlp"`` (a small
scikit-learn multi-layer perceptron, squared loss, linear output clipped to
[0, 1]) and ``"network"`` (DVSNet's decision network on these signals: the
dense head of Xu et al., CVPR 2018, ReLU layers and one sigmoid output,
fitted with Keras and Adam on the squared error; it runs the same on a GPU
or a CPU). Whatever fits them, they are kept as plain arrays so that
predicting is a few numpy products (no scikit-learn or TensorFlow call per
frame) and the file is a small JSON document, independent of either
library's version:

``{"format": "adaptive-dff-quality-predictor", "format_version": 1,
"signals": {"names": [...], "version": N, "downsample": D, "max_pixels": P}, "kind": ..., "hidden": [...],
"alpha": ..., "seed": ..., "mean": [...], "scale": [...], "layers": [{"weights": [[...]], "bias": [...]}, ...],
"output": "clip" | "sigmoid", "target": ..., "metrics": {...}}``

Inputs are ``sign(x) log(1 + |x|)`` of each signal, standardised with the
training statistics; hidden layers use ReLU; the output is clipped to [0, 1]
(ridge, mlp) or passed through a sigmoid (network).
A row with a non-finite signal is predicted NaN (the policy updates it).

A file written for other signals (names, version, downsample or
``max_pixels``, the limit of the signals' grid; ``null`` or absent, as in
files written before the limit: none) or by another format version is
refused with an error naming both.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import numpy as np

from schedulers.files import check_file, write_json_atomic
from schedulers.optional import require
from schedulers.quality_signals import DEFAULT_MAX_PIXELS

FORMAT = "adaptive-dff-quality-predictor"
FORMAT_VERSION = 1
KINDS = ("ridge", "mlp", "network")
OUTPUTS = ("clip", "sigmoid")
DEFAULT_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", "quality_default.json")
# The shipped predictor that also reads the key frames' labels (key_label_disagreement).
DEFAULT_LABELS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", "quality_labels_default.json")


def _grid_limit(max_pixels: Optional[int]) -> str:
    return "no limit of the grid" if max_pixels is None else f"a grid of at most {max_pixels} pixels"


def _max_pixels(value) -> Optional[int]:
    """``max_pixels`` of a signal set: ``None`` (no limit) or a positive integer (``ValueError``
    otherwise)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"max_pixels must be a positive integer or null (no limit), got {value!r}")
    return int(value)


def _transform(X: np.ndarray) -> np.ndarray:
    """``sign(x) log(1 + |x|)`` of each element (the sign carried by ``copysign``: one operation fewer)."""
    return np.copysign(np.log1p(np.abs(X)), X)


class QualityPredictor:
    """Regress the carried accuracy of a region (in [0, 1]) from its signals.

    Args:
        signal_names: the names of the columns of ``X`` (a
            :class:`schedulers.QualitySignals`' ``names``).
        signals_version: that signal set's version.
        signals_downsample: the ``downsample`` the signals were computed at
            (their flow signals are in pixels of that grid).
        signals_max_pixels: the most pixels of that grid
            (:class:`schedulers.QualitySignals`' ``max_pixels``; ``None``: no limit).
        kind: ``"ridge"``, ``"mlp"`` or ``"network"``.
        hidden: hidden layer widths of the MLP and the network.
        alpha: L2 penalty (every kind; the network's on its weights).
        seed: the initialisation (and the network's shuffling and
            validation split).
        max_epochs: the network's longest training (it stops earlier).
    """

    def __init__(self, signal_names: Sequence[str] = (), signals_version: int = 0, kind: str = "mlp",
                 hidden: Sequence[int] = (32, 16), alpha: float = 1e-3, seed: int = 0,
                 signals_downsample: int = 4, max_epochs: int = 150,
                 signals_max_pixels: Optional[int] = DEFAULT_MAX_PIXELS):
        self.signal_names = tuple(signal_names)
        self.signals_version = signals_version
        self.signals_downsample = signals_downsample
        self.signals_max_pixels = _max_pixels(signals_max_pixels)
        self.max_epochs = max_epochs
        self.kind = kind
        self.hidden = tuple(hidden)
        self.alpha = alpha
        self.seed = seed

    def get_params(self) -> dict:
        return {"signal_names": self.signal_names, "signals_version": self.signals_version, "kind": self.kind,
                "hidden": self.hidden, "alpha": self.alpha, "seed": self.seed,
                "signals_downsample": self.signals_downsample, "max_epochs": self.max_epochs,
                "signals_max_pixels": self.signals_max_pixels}

    # -- checks -------------------------------------------------------------------

    def _check_X(self, X) -> np.ndarray:
        X = np.asarray(X, np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.signal_names):
            raise ValueError(f"X must be [N, {len(self.signal_names)}] signals ({', '.join(self.signal_names)}), "
                             f"got shape {X.shape}")
        return X

    def check_signals(self, signals) -> None:
        """Raise ``ValueError`` unless ``signals`` (names, version, downsample, grid limit) are the ones
        fitted on."""
        names, version = tuple(signals.names), int(signals.version)
        downsample = int(getattr(signals, "downsample", self.signals_downsample))
        max_pixels = getattr(signals, "max_pixels", self.signals_max_pixels)
        if (names != self.signal_names or version != int(self.signals_version)
                or downsample != int(self.signals_downsample) or max_pixels != self.signals_max_pixels):
            raise ValueError(
                f"this quality predictor was fitted on signals {list(self.signal_names)} (version "
                f"{self.signals_version}, downsample {self.signals_downsample}, "
                f"{_grid_limit(self.signals_max_pixels)}); these are {list(names)} "
                f"(version {version}, downsample {downsample}, {_grid_limit(max_pixels)}): refit it on them"
            )

    # -- fitting and predicting ---------------------------------------------------

    def fit(self, X, y) -> "QualityPredictor":
        """Fit on signals ``X`` ``[N, S]`` (finite) and accuracies ``y`` ``[N]`` in [0, 1]."""
        X = self._check_X(X)
        y = np.asarray(y, np.float64).reshape(-1)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or inf; leave such rows out of the training data")
        if not np.all((y >= 0) & (y <= 1)):
            raise ValueError(f"y must be accuracies in [0, 1], found {y.min()}..{y.max()}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        Z = _transform(X)
        self.mean_ = Z.mean(axis=0)
        self.scale_ = Z.std(axis=0) + 1e-9
        Z = (Z - self.mean_) / self.scale_
        self.output_ = "clip"
        if self.kind == "ridge":
            Ridge = require("sklearn.linear_model", "QualityPredictor.fit (ridge)").Ridge

            model = Ridge(alpha=self.alpha * len(y)).fit(Z, y)
            self.layers_ = [(model.coef_.reshape(-1, 1), np.array([model.intercept_]))]
        elif self.kind == "network":
            self.layers_ = self._fit_network(Z, y)
            self.output_ = "sigmoid"
        else:
            MLPRegressor = require("sklearn.neural_network", "QualityPredictor.fit (mlp)").MLPRegressor

            model = MLPRegressor(hidden_layer_sizes=self.hidden, alpha=self.alpha, random_state=self.seed,
                                 max_iter=400, early_stopping=True, n_iter_no_change=20, learning_rate_init=3e-3)
            model.fit(Z, y)
            self.layers_ = [(np.asarray(w), np.asarray(b)) for w, b in zip(model.coefs_, model.intercepts_)]
        return self

    def _fit_network(self, Z: np.ndarray, y: np.ndarray) -> list:
        """DVSNet's dense decision head fitted with Keras on standardised inputs ``Z`` ``[N, S]``:
        Adam on the squared error, batches of 512, up to ``max_epochs`` epochs, stopped (best weights
        kept) when the error on a tenth of the rows, held aside by ``seed``, has not improved for 10
        epochs. Keeps the Keras model in ``network_``; returns the ``[(weights [in, out], bias [out])]``
        of its dense layers."""
        keras = require("keras", "QualityPredictor.fit (network)")

        keras.utils.set_random_seed(self.seed)
        order = np.random.default_rng(self.seed).permutation(len(y))
        aside = order[: max(len(y) // 10, 1)]
        fit = order[len(aside):]
        inputs = keras.Input((Z.shape[1],), name="signals")
        x = inputs
        regulariser = keras.regularizers.L2(self.alpha) if self.alpha > 0 else None
        for i, units in enumerate(self.hidden):
            x = keras.layers.Dense(units, activation="relu", kernel_regularizer=regulariser, name=f"dense{i + 1}")(x)
        outputs = keras.layers.Dense(1, activation="sigmoid", name="quality")(x)
        model = keras.Model(inputs, outputs, name="quality_network")
        model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
        stop = keras.callbacks.EarlyStopping(patience=10, restore_best_weights=True)
        model.fit(Z[fit].astype(np.float32), y[fit].astype(np.float32), batch_size=512, epochs=self.max_epochs,
                  validation_data=(Z[aside].astype(np.float32), y[aside].astype(np.float32)),
                  callbacks=[stop], verbose=0)
        self.network_ = model
        dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
        return [(np.asarray(layer.kernel, np.float64), np.asarray(layer.bias, np.float64)) for layer in dense]

    def _check_fitted(self):
        if not hasattr(self, "layers_"):
            raise RuntimeError("this QualityPredictor is not fitted: call fit(X, y) or QualityPredictor.load(path)")

    def predict(self, X) -> np.ndarray:
        """``[N]`` expected accuracies in [0, 1]; NaN for rows with a non-finite signal."""
        self._check_fitted()
        X = self._check_X(X)
        finite_cells = np.isfinite(X)
        finite = finite_cells.all(axis=1)
        every_row = bool(finite.all())
        Z = (_transform(X if every_row else np.where(finite_cells, X, 0.0)) - self.mean_) / self.scale_
        for i, (weights, bias) in enumerate(self.layers_):
            Z = Z @ weights + bias
            if i < len(self.layers_) - 1:
                Z = np.maximum(Z, 0.0)
        if getattr(self, "output_", "clip") == "sigmoid":
            out = 0.5 * (1.0 + np.tanh(0.5 * Z[:, 0]))  # the logistic function, without overflow
        else:
            out = np.clip(Z[:, 0], 0.0, 1.0)
        return out if every_row else np.where(finite, out, np.nan)

    def mean_absolute_error(self, X, y) -> float:
        return float(np.mean(np.abs(self.predict(X) - np.asarray(y, np.float64).reshape(-1))))

    # -- files --------------------------------------------------------------------

    def to_json(self, target: str = "", metrics: Optional[dict] = None) -> dict:
        self._check_fitted()
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "signals": {"names": list(self.signal_names), "version": int(self.signals_version),
                        "downsample": int(self.signals_downsample),
                        "max_pixels": None if self.signals_max_pixels is None else int(self.signals_max_pixels)},
            "kind": self.kind, "hidden": list(self.hidden), "alpha": self.alpha, "seed": self.seed,
            "mean": self.mean_.tolist(), "scale": self.scale_.tolist(),
            "layers": [{"weights": w.tolist(), "bias": b.tolist()} for w, b in self.layers_],
            "output": getattr(self, "output_", "clip"), "target": target, "metrics": metrics or {},
        }

    def save(self, path, target: str = "", metrics: Optional[dict] = None) -> None:
        """Write the fitted predictor to ``path`` (JSON, atomically), with what it predicts and its metrics."""
        write_json_atomic(path, self.to_json(target, metrics))

    @classmethod
    def load(cls, path, signals=None) -> "QualityPredictor":
        """Read what :meth:`save` wrote; with ``signals`` also check they are the ones fitted on."""
        path = check_file(path, "quality predictor file")
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as error:
            raise ValueError(f"quality predictor file {path!r} is not readable JSON: {error}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path!r} is not a quality predictor file (format {FORMAT!r})")
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"quality predictor file {path!r} has format version {data.get('format_version')!r}; "
                             f"this library reads version {FORMAT_VERSION}")
        try:
            self = cls(data["signals"]["names"], data["signals"]["version"], data["kind"], data["hidden"],
                       data["alpha"], data["seed"], signals_downsample=int(data["signals"].get("downsample", 2)),  # files without it: 2
                       signals_max_pixels=_max_pixels(data["signals"].get("max_pixels")))  # without it: no limit
            self.mean_ = np.asarray(data["mean"], np.float64)
            self.scale_ = np.asarray(data["scale"], np.float64)
            self.layers_ = [(np.asarray(layer["weights"], np.float64), np.asarray(layer["bias"], np.float64))
                            for layer in data["layers"]]
            self.output_ = data.get("output", "clip")
            self.target = data.get("target", "")
            self.metrics = data.get("metrics", {})
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"quality predictor file {path!r} is damaged: {error!r}") from None
        width = len(self.signal_names)
        shapes_ok = self.mean_.shape == (width,) and self.scale_.shape == (width,) and self.layers_
        if shapes_ok:
            rows = width
            for w, b in self.layers_:
                if w.ndim != 2 or w.shape[0] != rows or b.shape != (w.shape[1],):
                    shapes_ok = False
                    break
                rows = w.shape[1]
            shapes_ok = shapes_ok and rows == 1
        if self.output_ not in OUTPUTS:
            raise ValueError(f"quality predictor file {path!r} is damaged: output {self.output_!r} is not one of "
                             f"{OUTPUTS}")
        if not shapes_ok:
            raise ValueError(f"quality predictor file {path!r} is damaged: its arrays do not fit {width} signals")
        if self.kind not in KINDS:
            raise ValueError(f"quality predictor file {path!r} is damaged: kind {self.kind!r} is not one of {KINDS}")
        arrays = {"mean": self.mean_, "scale": self.scale_,
                  **{f"layer {i} {part}": array for i, pair in enumerate(self.layers_)
                     for part, array in zip(("weights", "bias"), pair)}}
        for name, array in arrays.items():
            if not np.all(np.isfinite(array)):
                raise ValueError(f"quality predictor file {path!r} is damaged: its {name} hold "
                                 f"{int(np.count_nonzero(~np.isfinite(array)))} values that are not finite")
        if np.any(self.scale_ <= 0):
            raise ValueError(f"quality predictor file {path!r} is damaged: its scale holds values at or below 0 "
                             f"(signal {self.signal_names[int(np.argmax(self.scale_ <= 0))]!r})")
        if signals is not None:
            try:
                self.check_signals(signals)
            except ValueError as error:
                raise ValueError(f"quality predictor file {path!r}: {error}") from None
        return self


def load_quality_predictor(path) -> QualityPredictor:
    """The predictor in the JSON file ``path`` (from ``adaptive-dff train quality``), checked
    against the :class:`schedulers.QualitySignals` of the downsample and grid limit it records: a named
    ``ValueError`` for a ``.keras`` file (a :class:`schedulers.DecisionModel`), a file of another
    version or fitted on other signals."""
    from schedulers.quality_signals import QualitySignals

    path = os.fspath(path)
    if path.endswith(".keras"):
        raise ValueError(f"{path!r} is a .keras file; a quality predictor is a .json from 'adaptive-dff train "
                         "quality' (a .keras DecisionModel goes to --decision-model)")
    predictor = QualityPredictor.load(path)
    try:
        predictor.check_signals(QualitySignals.for_predictor(predictor))
    except ValueError as error:
        raise ValueError(f"quality predictor file {path!r}: {error}") from None
    return predictor


def load_default_quality(key_labels: bool = False) -> QualityPredictor:
    """The shipped predictor (``schedulers/weights/quality_default.json``; rebuilt by
    ``adaptive-dff train quality``), checked against the default :class:`QualitySignals`. With
    ``key_labels``, the shipped one that also reads the key frames' labels
    (``quality_labels_default.json``, ``train quality --set key_labels=true``): a pipeline using it
    gives each key frame's labels (:meth:`schedulers.Tracker.label_keys`)."""
    from schedulers.quality_signals import QualitySignals

    path = DEFAULT_LABELS_FILE if key_labels else DEFAULT_FILE
    if not os.path.isfile(path):
        raise FileNotFoundError(f"the shipped quality predictor {path!r} is missing; rebuild it with "
                                "'adaptive-dff train quality --out DIR' and copy DIR/quality.json there")
    predictor = QualityPredictor.load(path)
    signals = QualitySignals(key_labels=key_labels)
    try:
        predictor.check_signals(signals)
    except ValueError as error:
        raise ValueError(f"the shipped quality predictor {path!r}: {error}") from None
    return predictor
