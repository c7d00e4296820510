"""What the cells of a comparison need, built once per process.

:class:`Workspace` holds the data sets, loads the model (:func:`load_compare_model`),
chooses the flow, caches the per-frame references of unlabelled clips and the
calibrated thresholds in the results folder, builds policies, checks every
policy up front (:meth:`Workspace.preflight`) and runs one cell.
"""

from __future__ import annotations

import io
import logging
import os
import time
from dataclasses import asdict, replace
from typing import Optional, Sequence

import numpy as np

from adaptive_dff.compare.config import (
    ARMS, CEILING_ARMS, PAIR_TABLE, PER_FRAME, QUALITY_ARMS, CompareConfig, parse_arm, parse_grid,
)
from adaptive_dff.compare.datasets import Dataset
from adaptive_dff.compare.planning import Cell, pair_table_cell
from adaptive_dff.compare.scoring import (
    CellResult, model_cell, model_flow, model_pair_features, model_steps, oracle_cell, oracle_steps, side_by_side,
)
from adaptive_dff.compare.store import ResultFolder
from schedulers.calibration import usable_price
from schedulers.files import read_npz, save_keras_atomic, write_bytes_atomic, write_npz_atomic

logger = logging.getLogger(__name__)
STORED_CONFUSION_CLASSES = 32  # a pair table keeps each pair's confusion (for cells to reuse) up to this many classes
CARRIED_SUFFIX = ".carried.npz"
SIGNALS_SUFFIX = ".signals.npz"  # each pair's propagation-quality signals, beside the pair-table cell
CELL_COMPANIONS = (CARRIED_SUFFIX, SIGNALS_SUFFIX)  # files a cell may have beside its JSON (a merge copies them)


def starting_price_usable(calibration) -> bool:
    """Whether a stored calibration may start a budget's price (:func:`schedulers.calibration.usable_price`)."""
    return bool(calibration) and usable_price(calibration.get("met"), calibration.get("threshold")) is not None


class Workspace:
    """What cells need, built once per process: the data set, the model, the flow, the references."""

    def __init__(self, config: CompareConfig, datasets: Sequence[Dataset], folder: ResultFolder):
        self.config = config
        self.datasets = {d.name: d for d in datasets}
        self.folder = folder
        self._model = None
        self._flow = None
        self._references: dict = {}
        self._carried_pairs: dict = {}
        self._warm: set = set()
        self._decision_model = None
        self._quality_model = None

    def clip(self, dataset: str, name: str):
        return next(c for c in self.datasets[dataset].calibration + self.datasets[dataset].test if c.name == name)

    def model(self):
        if self._model is None:
            self._model = load_compare_model(self.config, list(self.datasets.values()), self.folder)
        return self._model

    def flow(self):
        """Flow for policies and for carrying labels: OpenCV DIS, the model's flow network,
        or (``flow="exact"``) the generator's own flow of each clip."""
        if self._flow is None:
            if self.config.mode == "model" or self.config.flow == "model":
                self._flow = model_flow(self.model())
            elif self.config.flow == "exact":
                from adaptive_dff.compare.exact_flow import ExactFlow

                grids = [parse_grid(g, self.config.overlap) for g in self.config.regions]
                self._flow = ExactFlow(list(self.datasets.values()), grids)
            else:
                from schedulers import DISFlow

                self._flow = DISFlow()
        return self._flow

    def pair_features(self):
        return model_pair_features(self.model()) if self.config.mode == "model" else None

    def reference(self, dataset: Dataset, clip) -> list:
        """True labels, or (unlabelled data) the model's per-frame predictions, saved once."""
        if clip.labelled:
            return list(clip.labels)
        return self.model_predictions(dataset, clip)

    def model_predictions(self, dataset: Dataset, clip) -> list:
        """The model's per-frame predictions of ``clip`` (a key frame every frame), saved once."""
        key = (dataset.name, clip.name)
        if key not in self._references:
            path = self.folder.path("reference", dataset.name, clip.name + ".npz")
            stored = read_npz(path, ("labels",), logger.warning)
            if stored is not None:
                self._references[key] = list(stored["labels"])
            else:
                from schedulers import FixedInterval

                _, predictions = model_cell(
                    self.model(), FixedInterval(1), None, clip.frames, [np.zeros(f.shape[:2], np.int32) for f in clip.frames],
                    num_classes=dataset.num_classes, ignore_index=None, labelled=True,
                )
                buffer = io.BytesIO()
                np.savez_compressed(buffer, labels=np.stack(predictions).astype(np.uint8))
                write_bytes_atomic(path, buffer.getvalue())
                self._references[key] = predictions
        return self._references[key]

    def calibration_cell(self, cell: Cell):
        """The cell whose calibrated threshold ``cell`` uses, or ``None``: a calibrated arm's own;
        for an ``@budget`` or ``@shared`` arm whose policy's scores are costs (the price rule),
        the bare arm's, which becomes the budget's starting price; none for other budget arms,
        the per-frame baseline and pair tables."""
        if cell.policy in (PER_FRAME, PAIR_TABLE) or cell.policy in CEILING_ARMS:
            return None
        name, mode = parse_arm(cell.policy)
        if mode is None:
            return cell
        if getattr(self.make_policy(name), "score_is_cost", False) is True:
            return replace(cell, policy=name)
        return None

    def is_done(self, cell: Cell, payload) -> bool:
        """Whether a stored cell payload stands: a cost policy's budget arm stored before budgets
        took a starting price (no ``starting_price`` in it) is run again."""
        if payload is None:
            return False
        calibrated = self.calibration_cell(cell)
        return calibrated is None or calibrated is cell or "starting_price" in payload

    def make_policy(self, name: str, threshold=None, budget=None):
        """A fresh policy of the arm ``name``, with ``threshold`` set when given; an
        ``@budget`` arm wraps it in a :class:`schedulers.KeyBudget` of target ``budget``
        and starting price ``threshold`` (``@shared`` arms get the bare policy:
        :meth:`run_shared` shares one budget)."""
        import schedulers

        name, mode = parse_arm(name)
        if mode == "budget":  # a threshold is the price rule's starting price (see calibration_cell)
            return schedulers.KeyBudget(self.make_policy(name), target=0.1 if budget is None else budget,
                                        price=threshold)
        cls = schedulers.POLICIES[ARMS[name][0]]
        if name == "decision_network":
            if self._decision_model is None:
                path = self.config.decision_model
                self._decision_model = (schedulers.load_decision_model(path) if path  # the best that ships:
                                        else schedulers.load_default_quality(key_labels=True))
            policy = cls(model=self._decision_model)
        elif name in QUALITY_ARMS and self.config.quality_model:
            policy = cls(predictor=self.quality_model(), rule=QUALITY_ARMS[name])
        elif name in QUALITY_ARMS:
            policy = cls(rule=QUALITY_ARMS[name])
        else:
            policy = cls()
        if threshold is not None:
            policy.set_params(**{policy.threshold_param: threshold})
        return policy

    def calibration_labels(self, dataset: Dataset, policy) -> Optional[list]:
        """Per calibration clip of ``dataset`` the key labels its cells give ``policy`` (or the
        policy it wraps) when it reads them, else ``None``: in oracle mode the true labels (or, for
        unlabelled clips, the model's per-frame predictions: :meth:`reference`), in model mode the
        model's per-frame predictions, as the video runner gives them."""
        from schedulers.base import reads_key_labels

        if not reads_key_labels(policy):
            return None
        if self.config.mode == "model":
            return [self.model_predictions(dataset, clip) for clip in dataset.calibration]
        return [self.reference(dataset, clip) for clip in dataset.calibration]

    def calibrate(self, cell: Cell) -> dict:
        """The calibrated threshold of ``cell``'s (policy, regions, budget), computed once and saved."""
        found = self.folder.calibration(cell.calibration_ident)
        if found is not None:
            return found
        import warnings

        from schedulers import calibrate

        policy = self.make_policy(cell.policy)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = calibrate(
                policy, clips=[c.frames for c in self.datasets[cell.dataset].calibration],
                labels=self.calibration_labels(self.datasets[cell.dataset], policy),
                target_key_fraction=cell.budget, regions=parse_grid(cell.regions, self.config.overlap),
                flow=self.flow() if getattr(policy, "needs_flow", False) else None,
                features=self.pair_features(),
            )
        threshold = result.threshold
        payload = {
            "dataset": cell.dataset, "policy": cell.policy, "regions": cell.regions, "budget": cell.budget,
            "threshold_param": policy.threshold_param,
            "threshold": int(threshold) if policy.integer_threshold else float(threshold),
            "key_fraction": result.key_fraction, "met": result.met, "trials": len(result.trials),
            "warning": str(caught[0].message) if caught else None,
        }
        self.folder.save_calibration(cell.calibration_ident, payload)
        return payload

    def preflight(self) -> None:
        """Run every policy on the first frames of each data set, so a policy that cannot
        work here (a decision model fitted on other features, a bad grid) fails before any long work."""
        from schedulers import Tracker

        for dataset in self.datasets.values():
            frames = dataset.calibration[0].frames[:2]
            for name in self.config.chosen_policies():
                if name in CEILING_ARMS:
                    continue
                policy = self.make_policy(name)
                labels = self.calibration_labels(dataset, policy)
                labels = [None] * len(frames) if labels is None else labels[0][:2]
                for grid in self.config.regions:
                    tracker = Tracker(policy, regions=parse_grid(grid, self.config.overlap),
                                      flow=self.flow() if getattr(policy, "needs_flow", False) else None,
                                      features=self.pair_features())
                    try:
                        for frame, label in zip(frames, labels):
                            tracker.step(frame, label)
                    except (ValueError, TypeError) as error:
                        raise ValueError(f"policy {name} cannot run on data set {dataset.name!r} "
                                         f"with regions {grid}: {error}") from None

    def warm_up(self, clip, grid) -> None:
        """Trace and compile the model's stages for this clip's region sizes, so no
        compilation lands inside a timed frame (once per frame size and grid)."""
        from schedulers import FixedInterval

        from adaptive_dff.runner import VideoRunner

        key = (clip.frames[0].shape, repr(grid))
        if key in self._warm:
            return
        for propagation in ("warp", "copy"):
            runner = VideoRunner(self.model(), FixedInterval(2), regions=grid, propagation=propagation)
            for frame in clip.frames[:3]:
                runner.step(frame)
        self._warm.add(key)

    def run_shared(self, cell: Cell, dataset: Dataset, grid, propagation: str, price=None) -> CellResult:
        """Every test clip of ``dataset`` side by side, frame by frame, under one
        :class:`schedulers.SharedBudget` of target ``cell.budget`` (starting at ``price``);
        the clips' sums."""
        from schedulers import SharedBudget

        shared = SharedBudget(self.make_policy(parse_arm(cell.policy)[0]), target=cell.budget, regions=grid,
                              price=price)
        steps = []
        for clip in dataset.test:
            reference = self.reference(dataset, clip)
            policy = shared.stream(clip.name, regions=grid)
            if self.config.mode == "oracle":
                steps.append(oracle_steps(policy, grid, clip.frames, reference, num_classes=dataset.num_classes,
                                          ignore_index=dataset.ignore_index, flow=self.flow(),
                                          propagation=propagation))
            else:
                self.warm_up(clip, grid)
                steps.append(model_steps(self.model(), policy, grid, clip.frames, reference,
                                         num_classes=dataset.num_classes, ignore_index=dataset.ignore_index,
                                         labelled=clip.labelled, propagation=propagation))
        results = side_by_side(steps)
        results = [r[0] if isinstance(r, tuple) else r for r in results]
        total = results[0]
        for result in results[1:]:
            total = total + result
        return total

    def run_cell(self, cell: Cell) -> dict:
        """Score ``cell`` (calibrating its threshold first if needed), save it and return its payload."""
        dataset = self.datasets[cell.dataset]
        if cell.policy == PAIR_TABLE:
            return self.run_pair_table(cell, dataset, self.clip(cell.dataset, cell.clip))
        budget_mode = None if cell.policy == PER_FRAME else parse_arm(cell.policy)[1]
        if budget_mode != "shared":
            clip = self.clip(cell.dataset, cell.clip)
            reference = self.reference(dataset, clip)
        start = time.perf_counter()
        calibrated = self.calibration_cell(cell)
        calibration = None if calibrated is None else self.calibrate(calibrated)
        threshold = None if calibration is None else calibration["threshold"]
        if calibrated is not cell and not starting_price_usable(calibration):
            threshold = None  # a budget arm then guesses its first price, as without calibration
        if cell.policy == PER_FRAME:
            from schedulers import FixedInterval

            policy, propagation, grid = FixedInterval(1), "warp", None
        else:  # an @budget arm meets its budget itself; a threshold is its starting price
            policy = self.make_policy(cell.policy, threshold, budget=cell.budget)
            propagation = ARMS[parse_arm(cell.policy)[0]][1]
            grid = parse_grid(cell.regions, self.config.overlap)
        if budget_mode == "shared":
            result = self.run_shared(cell, dataset, grid, propagation, price=threshold)
        elif self.config.mode == "oracle":
            whole_frames = cell.policy != PER_FRAME and len(grid) == 1
            result = oracle_cell(
                policy, grid, clip.frames, reference, num_classes=dataset.num_classes,
                ignore_index=dataset.ignore_index, flow=self.flow(), propagation=propagation,
                pairs=self.carried_pairs(dataset, clip, propagation) if whole_frames else None,
            )
        else:
            self.warm_up(clip, grid)
            result, _ = model_cell(
                self.model(), policy, grid, clip.frames, reference, num_classes=dataset.num_classes,
                ignore_index=dataset.ignore_index, labelled=clip.labelled, propagation=propagation,
            )
        payload = {"cell": asdict(cell), "threshold": threshold,
                   **({"starting_price": threshold} if calibrated is not None and calibrated is not cell else {}),
                   "result": result.to_json(), "seconds": time.perf_counter() - start}
        self.folder.save_cell(cell.ident, payload)
        return payload


    def carried_pairs(self, dataset: Dataset, clip, propagation: str):
        """The :class:`~adaptive_dff.compare.optimal.CarriedPairs` of a test clip's pair table for
        ``propagation`` when its pair-table cell is finished and kept them, else ``None`` (a shard
        without that cell, a table still being built by another process, many classes). Misses are
        asked again on the next cell."""
        from adaptive_dff.compare.optimal import CarriedPairs

        key = (dataset.name, clip.name)
        if key not in self._carried_pairs:
            table_cell = pair_table_cell(dataset.name, clip.name)
            if not self.folder.has_cell(table_cell.ident):  # not its JSON, which holds the whole tables
                return None
            names = [f"{p}_{a}" for p in ("warp", "copy") for a in CarriedPairs.ARRAYS]
            stored = read_npz(self.folder.path("cells", table_cell.ident + CARRIED_SUFFIX), names, logger.warning)
            shape = (len(clip.frames), self.config.window + 1)
            if stored is None or any(v.shape[:2] != shape for v in stored.values()) or \
                    stored["warp_confusion"].shape[2:] != (dataset.num_classes,) * 2:
                return None
            self._carried_pairs[key] = {p: CarriedPairs(*(stored[f"{p}_{a}"] for a in CarriedPairs.ARRAYS))
                                        for p in ("warp", "copy")}
        return self._carried_pairs[key][propagation]

    def pair_signal_set(self):
        """The :class:`schedulers.QualitySignals` kept beside each pair table: every signal (the key
        labels' too), at the downsample and grid limit of ``--quality-model`` when one is given (so
        ``replay`` and ``online_bound`` judge that file on its own signals), else of the shipped
        predictors."""
        from schedulers import QualitySignals

        model = self.quality_model()
        if model is None:
            return QualitySignals(key_labels=True)
        return QualitySignals(downsample=model.signals_downsample, key_labels=True,
                              max_pixels=model.signals_max_pixels)

    def quality_model(self):
        """The predictor of ``--quality-model`` (loaded once, checked against its own signals), or
        ``None``."""
        if self.config.quality_model and self._quality_model is None:
            from schedulers import load_quality_predictor

            self._quality_model = load_quality_predictor(self.config.quality_model)
        return self._quality_model

    def run_pair_table(self, cell: Cell, dataset: Dataset, clip) -> dict:
        """The clip's pair tables (labels carried along this comparison's flow, and copied),
        saved in the cell's payload; its result holds the clip's frames and the time spent."""
        from adaptive_dff.compare.optimal import CarriedPairs, build_pair_table, write_pair_signals
        from adaptive_dff.compare.scoring import CellResult

        start = time.perf_counter()
        tables, carried = {}, {}
        keep = dataset.num_classes <= STORED_CONFUSION_CLASSES
        for propagation in ("warp", "copy"):
            began = time.perf_counter()
            table = build_pair_table(clip.frames, self.reference(dataset, clip), num_classes=dataset.num_classes,
                                     ignore_index=dataset.ignore_index, flow=self.flow(), window=self.config.window,
                                     propagation=propagation, confusions=keep,
                                     signals=self.pair_signal_set() if propagation == "warp" else None)
            tables[propagation] = {"tp": table.tp.tolist(), "predicted": table.predicted.tolist(),
                                   "truth": table.truth.tolist(), "ms": (time.perf_counter() - began) * 1e3}
            if keep:
                carried.update({f"{propagation}_{a}": getattr(table.carried, a) for a in CarriedPairs.ARRAYS})
            if table.signals is not None:
                write_pair_signals(self.folder.path("cells", cell.ident + SIGNALS_SUFFIX), table.signals)
        if keep:  # written before the cell, so a finished pair-table cell has them
            write_npz_atomic(self.folder.path("cells", cell.ident + CARRIED_SUFFIX), **carried)
        result = CellResult(confusion=np.zeros((dataset.num_classes,) * 2, np.int64), frames=len(clip.frames))
        payload = {"cell": asdict(cell), "threshold": None, "result": result.to_json(), "tables": tables,
                   "seconds": time.perf_counter() - start}
        self.folder.save_cell(cell.ident, payload)
        return payload


def load_compare_model(config: CompareConfig, datasets: Sequence[Dataset], folder: ResultFolder):
    """The model file given, or an untrained compact model saved in the folder (so reruns,
    other processes and shards use the very same weights)."""
    from adaptive_dff.model import DFFModel, compact_dff, load_model

    num_classes = {d.num_classes for d in datasets}
    if len(num_classes) > 1:
        raise ValueError(f"one model cannot serve data sets with {sorted(num_classes)} classes; compare them apart")
    dataset = datasets[0]

    if config.model:
        model = load_model(config.model)
    else:
        path = folder.path("untrained-model.keras")
        if os.path.exists(path):
            model = load_model(path)
        else:
            import keras

            keras.utils.set_random_seed(config.seed)
            model = compact_dff(num_classes=dataset.num_classes)
            model.key_step(np.zeros((64, 64, 3), np.uint8))  # build the weights
            save_keras_atomic(model, path)
    if not isinstance(model, DFFModel):
        raise ValueError(f"{config.model!r} holds a {type(model).__name__}, not a DFF model (adaptive_dff.DFFModel)")
    if model.num_classes != dataset.num_classes:
        raise ValueError(
            f"the model predicts {model.num_classes} classes but data set {dataset.name!r} has {dataset.num_classes}"
        )
    return model
