"""``adaptive-dff compare``: every policy calibrated to the same key-frame budgets, then scored.

The work is a list of *cells*, one per (policy, regions, budget, test clip),
in a fixed order. Before its cells run, each (policy, regions, budget) is
calibrated on the data set's calibration clips with
:func:`schedulers.calibrate`. Each finished cell (and calibration) is written
at once to the output folder (:mod:`adaptive_dff.compare.store`), so a rerun
skips it; ``shard=(i, n)`` keeps cells ``i-1, i-1+n, ...`` so a large
comparison can be split across machines and joined with :func:`merge`.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np

from adaptive_dff.compare.datasets import Dataset
from adaptive_dff.compare.evaluate import CellResult, model_cell, model_flow, model_pair_features, oracle_cell
from adaptive_dff.compare.store import ResultFolder

# name -> (scheduling policy class name in schedulers.POLICIES, propagation)
POLICIES = {
    "fixed_interval": ("fixed_interval", "warp"),
    "copy": ("fixed_interval", "copy"),  # Clockwork-style: key features reused without warping
    "frame_difference": ("frame_difference", "warp"),
    "flow_magnitude": ("flow_magnitude", "warp"),
    "decision_network": ("decision_network", "warp"),
    "propagation_quality": ("propagation_quality", "warp"),  # the shipped quality predictor, renewal rule
}
DEFAULT_POLICIES = ("fixed_interval", "copy", "frame_difference", "flow_magnitude")
DEFAULT_BUDGETS = (0.10, 0.20, 0.33)
DEFAULT_SWEEP = (0.05, 0.15, 0.25, 0.5)
DEFAULT_REGIONS = ("1x1", "2x2")
MODES = ("oracle", "model")
FLOWS = ("dis", "model")
PER_FRAME = "per_frame"


@dataclass
class CompareConfig:
    """Everything that decides a comparison's results (the output folder checks it).

    Attributes:
        mode: ``"oracle"`` (true labels on key frames, carried by flow) or
            ``"model"`` (the DFF model runs).
        policies: names from :data:`POLICIES`.
        budgets: the fair key-frame budgets, each in (0, 1].
        sweep: further budgets that trace each policy's curve.
        regions: region grids as ``"RxC"`` (DVSNet: ``"2x2"``).
        overlap: pixels shared by neighbouring regions.
        flow: oracle mode's flow: ``"dis"`` (OpenCV DIS) or ``"model"`` (the
            model's flow network). Model mode always uses the model's.
        model: a ``.keras`` DFF model file, or ``None`` for an untrained
            compact model (timings only; accuracy then means nothing).
        decision_model: a saved :class:`schedulers.DecisionModel` for the
            ``decision_network`` policy.
        seed: seed of the untrained model.
    """

    mode: str = "oracle"
    policies: tuple = DEFAULT_POLICIES
    budgets: tuple = DEFAULT_BUDGETS
    sweep: tuple = DEFAULT_SWEEP
    regions: tuple = DEFAULT_REGIONS
    overlap: int = 16
    flow: str = "dis"
    model: Optional[str] = None
    decision_model: Optional[str] = None
    seed: int = 0

    def check(self) -> "CompareConfig":
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {MODES}")
        if self.flow not in FLOWS:
            raise ValueError(f"unknown flow {self.flow!r}; choose one of {FLOWS}")
        if not self.policies:
            raise ValueError("give at least one policy")
        for name in self.policies:
            if name not in POLICIES:
                raise ValueError(f"unknown policy {name!r}; choose from {sorted(POLICIES)}")
        if len(set(self.policies)) != len(self.policies):
            raise ValueError(f"policies repeat: {list(self.policies)}")
        if "decision_network" in self.policies and not self.decision_model:
            raise ValueError("the decision_network policy needs a trained decision model: pass --decision-model PATH")
        if not self.budgets:
            raise ValueError("give at least one budget")
        for budget in tuple(self.budgets) + tuple(self.sweep):
            if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget <= 1:
                raise ValueError(f"a budget must be a key-frame fraction in (0, 1], got {budget!r}")
        rounded = [round(float(b), 4) for b in self.budgets]
        if len(set(rounded)) != len(rounded):
            raise ValueError(f"budgets repeat (to 4 decimals): {list(self.budgets)}")
        for grid in self.regions:
            parse_grid(grid, self.overlap)
        for path in (self.model, self.decision_model):
            if path and not os.path.isfile(path):
                raise FileNotFoundError(f"file {path!r} does not exist")
        return self

    def all_budgets(self) -> list:
        """``[(budget, kind)]``: the fair budgets, then the sweep's other points."""
        fair = [round(float(b), 4) for b in self.budgets]
        sweep = [round(float(b), 4) for b in self.sweep if round(float(b), 4) not in fair]
        return [(b, "budget") for b in fair] + [(b, "sweep") for b in sorted(set(sweep))]


def parse_grid(text: str, overlap: int = 0):
    from schedulers import RegionGrid

    try:
        rows, cols = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"a region grid is written RxC (e.g. 2x2), got {text!r}") from None
    return RegionGrid(rows, cols, overlap if rows * cols > 1 else 0)


@dataclass
class Cell:
    """One unit of work: a policy at a budget on one test clip of one data set."""

    dataset: str
    policy: str
    regions: str
    budget: float
    kind: str  # "budget" (a fair budget), "sweep" (a curve point) or "baseline" (per frame)
    clip: str

    @property
    def calibration_ident(self) -> str:
        return f"{self.dataset}__{self.policy}__{self.regions}__{self.budget:.4f}"

    @property
    def ident(self) -> str:
        return f"{self.calibration_ident}__{self.clip}"


def plan_cells(config: CompareConfig, test_clips: dict) -> list:
    """Every cell, in a fixed order, from ``{data set name: [test clip names]}``
    (in model mode the per-frame baseline comes first)."""
    cells = []
    for dataset, clips in test_clips.items():
        if config.mode == "model":
            cells += [Cell(dataset, PER_FRAME, "1x1", 1.0, "baseline", clip) for clip in clips]
        for policy in config.policies:
            for grid in config.regions:
                for budget, kind in config.all_budgets():
                    cells += [Cell(dataset, policy, grid, budget, kind, clip) for clip in clips]
    return cells


def parse_shard(text: Optional[str]) -> Optional[tuple]:
    if text is None:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard is written i/n (e.g. 2/4), got {text!r}") from None
    if not 1 <= i <= n:
        raise ValueError(f"--shard {text}: need 1 <= i <= n")
    return i, n


def versions() -> dict:
    import cv2
    import sklearn

    import adaptive_dff

    found = {"adaptive_dff": adaptive_dff.__version__, "python": sys.version.split()[0], "numpy": np.__version__,
             "opencv": cv2.__version__, "scikit-learn": sklearn.__version__}
    if "tensorflow" in sys.modules:
        import keras
        import tensorflow as tf

        found.update(tensorflow=tf.__version__, keras=keras.__version__)
    return found


def machine() -> dict:
    return {"system": platform.system(), "machine": platform.machine(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "node": platform.node()}


class Workspace:
    """What cells need, built once per process: the data set, the model, the flow, the references."""

    def __init__(self, config: CompareConfig, datasets: Sequence[Dataset], folder: ResultFolder):
        self.config = config
        self.datasets = {d.name: d for d in datasets}
        self.folder = folder
        self._model = None
        self._flow = None
        self._references: dict = {}
        self._warm: set = set()
        self._decision_model = None

    def clip(self, dataset: str, name: str):
        return next(c for c in self.datasets[dataset].calibration + self.datasets[dataset].test if c.name == name)

    def model(self):
        if self._model is None:
            self._model = load_compare_model(self.config, list(self.datasets.values()), self.folder)
        return self._model

    def flow(self):
        """Flow for policies and for carrying labels: OpenCV DIS or the model's flow network."""
        if self._flow is None:
            if self.config.mode == "model" or self.config.flow == "model":
                self._flow = model_flow(self.model())
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
        key = (dataset.name, clip.name)
        if key not in self._references:
            path = self.folder.path("reference", dataset.name, clip.name + ".npz")
            if os.path.exists(path):
                with np.load(path) as data:
                    self._references[key] = list(data["labels"])
            else:
                from schedulers import FixedInterval

                _, predictions = model_cell(
                    self.model(), FixedInterval(1), None, clip.frames, [np.zeros(f.shape[:2], np.int32) for f in clip.frames],
                    num_classes=dataset.num_classes, ignore_index=None, labelled=True,
                )
                import io

                from adaptive_dff.compare.store import write_atomic

                buffer = io.BytesIO()
                np.savez_compressed(buffer, labels=np.stack(predictions).astype(np.uint8))
                write_atomic(path, buffer.getvalue())
                self._references[key] = predictions
        return self._references[key]

    def make_policy(self, name: str, threshold=None):
        import schedulers

        cls = schedulers.POLICIES[POLICIES[name][0]]
        if name == "decision_network":
            if self._decision_model is None:
                self._decision_model = schedulers.DecisionModel.load(self.config.decision_model)
            policy = cls(model=self._decision_model)
        else:
            policy = cls()
        if threshold is not None:
            policy.set_params(**{policy.threshold_param: threshold})
        return policy

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
            for name in self.config.policies:
                policy = self.make_policy(name)
                for grid in self.config.regions:
                    tracker = Tracker(policy, regions=parse_grid(grid, self.config.overlap),
                                      flow=self.flow() if getattr(policy, "needs_flow", False) else None,
                                      features=self.pair_features())
                    try:
                        for frame in frames:
                            tracker.step(frame)
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

    def run_cell(self, cell: Cell) -> dict:
        dataset = self.datasets[cell.dataset]
        clip = self.clip(cell.dataset, cell.clip)
        reference = self.reference(dataset, clip)
        start = time.perf_counter()
        if cell.policy == PER_FRAME:
            from schedulers import FixedInterval

            calibration = None
            policy, propagation, grid = FixedInterval(1), "warp", None
        else:
            calibration = self.calibrate(cell)
            policy = self.make_policy(cell.policy, calibration["threshold"])
            propagation = POLICIES[cell.policy][1]
            grid = parse_grid(cell.regions, self.config.overlap)
        if self.config.mode == "oracle":
            result = oracle_cell(
                policy, grid, clip.frames, reference, num_classes=dataset.num_classes,
                ignore_index=dataset.ignore_index, flow=self.flow(), propagation=propagation,
            )
        else:
            self.warm_up(clip, grid)
            result, _ = model_cell(
                self.model(), policy, grid, clip.frames, reference, num_classes=dataset.num_classes,
                ignore_index=dataset.ignore_index, labelled=clip.labelled, propagation=propagation,
            )
        payload = {"cell": asdict(cell), "threshold": None if calibration is None else calibration["threshold"],
                   "result": result.to_json(), "seconds": time.perf_counter() - start}
        self.folder.save_cell(cell.ident, payload)
        return payload


def load_compare_model(config: CompareConfig, datasets: Sequence[Dataset], folder: ResultFolder):
    """The model file given, or an untrained compact model saved in the folder (so reruns,
    other processes and shards use the very same weights)."""
    from adaptive_dff.model import compact_dff, load_model

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
            from training.runtime import save_model_atomic

            save_model_atomic(model, path)
    classes = model.head.get_config().get("num_classes")
    if classes is not None and classes != dataset.num_classes:
        raise ValueError(
            f"the model predicts {classes} classes but data set {dataset.name!r} has {dataset.num_classes}"
        )
    return model


# -- running ---------------------------------------------------------------------

_WORKSPACE: Optional[Workspace] = None


def _init_worker(config, datasets, out):
    global _WORKSPACE
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _WORKSPACE = Workspace(config, datasets, ResultFolder(out))


def _run_in_worker(cell: Cell) -> dict:
    return _WORKSPACE.run_cell(cell)


def file_digest(path: Optional[str]) -> Optional[str]:
    """SHA-256 of a file's bytes (``None`` for no file)."""
    if not path:
        return None
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def signature(config: CompareConfig, datasets: Sequence[Dataset]) -> dict:
    """What identifies a comparison: the configuration (model files by content, not by path) and,
    per data set, its description, the fingerprint of its frames and labels, and its test clips.
    Shards run on machines with the data in other folders still merge."""
    settings = asdict(config)
    for key in ("model", "decision_model"):
        settings[key] = file_digest(settings[key])
    return {"config": settings,
            "datasets": [{"name": d.name, "spec": d.spec, "fingerprint": d.fingerprint(), "labelled": d.labelled,
                          "test_clips": [c.name for c in d.test]} for d in datasets]}


def test_clips(signature: dict) -> dict:
    return {d["name"]: d["test_clips"] for d in signature["datasets"]}


def run_compare(
    config: CompareConfig, datasets, out: str, *, jobs: int = 1, shard: Optional[tuple] = None,
    log=print,
) -> dict:
    """Run (or continue) a comparison of ``config.policies`` on ``datasets`` (one
    :class:`Dataset` or a list) in the folder ``out``; returns the report."""
    from adaptive_dff.compare import report

    config.check()
    datasets = [datasets] if isinstance(datasets, Dataset) else list(datasets)
    if not datasets:
        raise ValueError("give at least one data set")
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise ValueError(f"data set names repeat: {names}")
    for dataset in datasets:
        dataset.check()
        height, width = dataset.test[0].frames[0].shape[:2]
        for grid in config.regions:
            try:
                parse_grid(grid, config.overlap).boxes(height, width)
            except ValueError as error:
                raise ValueError(f"data set {dataset.name!r}, regions {grid}: {error}") from None
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    folder = ResultFolder(out)
    identity = signature(config, datasets)
    folder.claim(identity)
    cells = plan_cells(config, test_clips(identity))
    if shard is not None:
        i, n = shard
        cells = cells[i - 1::n]
    todo = [c for c in cells if folder.cell(c.ident) is None]
    log(f"compare: {len(cells)} cells ({len(cells) - len(todo)} already done), mode {config.mode}, "
        f"data sets {', '.join(names)}, results in {out}")
    if not config.model and (config.mode == "model" or not all(d.labelled for d in datasets)):
        log("note: no --model given: an untrained compact model runs; its timings are real, "
            "its accuracy figures (and per-frame references for unlabelled clips) mean nothing")
    started = time.perf_counter()
    progress = _Progress(len(todo), log)
    workspace = Workspace(config, datasets, folder)
    if todo:
        workspace.preflight()
    if jobs == 1 or len(todo) <= 1:
        for cell in todo:
            progress.done(cell, workspace.run_cell(cell))
    else:
        if config.mode == "model":
            log("note: --jobs > 1 runs cells side by side; their timings share the CPU and are slower")
        import multiprocessing

        # Calibrations first, once each, so parallel cells do not repeat them.
        for cell in {c.calibration_ident: c for c in todo if c.policy != PER_FRAME}.values():
            workspace.calibrate(cell)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                                 initargs=(config, datasets, out)) as pool:
            for cell, payload in zip(todo, pool.map(_run_in_worker, todo)):
                progress.done(cell, payload)
    log(f"compare: finished {len(todo)} cells in {time.perf_counter() - started:.0f} s")
    return report.write(folder, config_extra={"versions": versions(), "machine": machine(), "jobs": jobs,
                                              "files": {"model": config.model, "decision_model": config.decision_model},
                                              "shard": None if shard is None else f"{shard[0]}/{shard[1]}"},
                        log=log)


class _Progress:
    """One line per finished cell with the count, elapsed time and an estimate of the rest."""

    def __init__(self, total: int, log):
        self.total, self.log, self.count, self.start = total, log, 0, time.perf_counter()

    def done(self, cell: Cell, payload: dict) -> None:
        self.count += 1
        elapsed = time.perf_counter() - self.start
        left = elapsed / self.count * (self.total - self.count)
        result = CellResult.from_json(payload["result"])
        self.log(f"[{self.count:>{len(str(self.total))}}/{self.total}] {cell.dataset} {cell.clip}: "
                 f"{cell.policy} {cell.regions} budget {cell.budget:.2f}: key {result.key_fraction:.3f} "
                 f"acc {result.accuracy:.3f}  ({elapsed:.0f} s, ~{left:.0f} s left)")


def merge(dirs: Sequence[str], out: str, log=print) -> dict:
    """Join the folders of several shards (same configuration) into ``out`` and write its report."""
    from adaptive_dff.compare import report

    if not dirs:
        raise ValueError("--merge needs at least one results folder")
    folders = [ResultFolder(d) for d in dirs]
    signatures = [f.signature() for f in folders]
    for d, s in zip(dirs[1:], signatures[1:]):
        if s != signatures[0]:
            raise ValueError(f"{d!r} holds a different configuration from {dirs[0]!r}; only shards of one run merge")
    target = ResultFolder(out)
    target.claim(signatures[0])
    for folder in folders:
        if os.path.abspath(folder.out) == os.path.abspath(out):
            continue
        for ident, payload in folder.calibrations().items():
            known = target.calibration(ident)
            if known is not None and known["threshold"] != payload["threshold"]:
                raise ValueError(f"{folder.out!r} calibrated {ident} to {payload['threshold']} but another shard "
                                 f"to {known['threshold']}; the shards did not run the same comparison")
            target.save_calibration(ident, payload)
        for ident, payload in folder.cells().items():
            target.save_cell(ident, payload)
    return report.write(target, config_extra={"versions": versions(), "machine": machine(), "merged_from": list(dirs)},
                        log=log)
