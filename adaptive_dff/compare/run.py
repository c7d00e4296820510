"""``adaptive-dff compare``: every policy calibrated to the same key-frame budgets, then scored.

The work is a list of *cells*, one per (policy, regions, budget, test clip),
in a fixed order (:mod:`adaptive_dff.compare.planning`). Before its cells run,
each (policy, regions, budget) is calibrated on the data set's calibration
clips with :func:`schedulers.calibrate`. Each finished cell (and calibration)
is written at once to the output folder (:mod:`adaptive_dff.compare.store`),
so a rerun skips it; ``shard=(i, n)`` keeps cells ``i-1, i-1+n, ...`` so a
large comparison can be split across machines and joined with :func:`merge`.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Optional, Sequence

from adaptive_dff.compare import report
from adaptive_dff.compare.ceiling_rows import PHASE_FAIR
from adaptive_dff.compare.config import PAIR_TABLE, CompareConfig, parse_grid, resolve_defaults
from adaptive_dff.compare.datasets import Dataset
from adaptive_dff.compare.planning import Cell, config_of, plan_cells, signature, test_clips
from adaptive_dff.compare.scoring import CellResult
from adaptive_dff.compare.store import ResultFolder
from adaptive_dff.compare.workspace import CELL_COMPANIONS, Workspace
from adaptive_dff.environment import machine, versions
from schedulers.base import check_int
from schedulers.files import write_bytes_atomic
from schedulers.quality_predictor import load_quality_predictor

logger = logging.getLogger(__name__)

_WORKSPACE: Optional[Workspace] = None


def _init_worker(config, datasets, out):
    global _WORKSPACE
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _WORKSPACE = Workspace(config, datasets, ResultFolder(out))


def _run_in_worker(cell: Cell) -> dict:
    return _WORKSPACE.run_cell(cell)


def run_compare(
    config: CompareConfig, datasets, out: str, *, jobs: int = 1, shard: Optional[tuple] = None,
    log: Callable = logger.info,
) -> dict:
    """Run (or continue) a comparison of ``config.policies`` on ``datasets`` (one
    :class:`Dataset` or a list) in the folder ``out``; returns the report.

    What ``config`` leaves open is chosen by :func:`resolve_defaults` for these data sets."""
    datasets = [datasets] if isinstance(datasets, Dataset) else list(datasets)
    if not datasets:
        raise ValueError("give at least one data set")
    config = resolve_defaults(config, [d.spec.get("kind") for d in datasets], log).check()
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
    if config.flow == "exact":
        from adaptive_dff.compare.exact_flow import check_exact_flow

        check_exact_flow(datasets)
    check_int(jobs, "jobs", 1)
    if config.quality_model:
        load_quality_predictor(config.quality_model)  # a wrong file is named before anything is written
    folder = ResultFolder(out)
    identity = signature(config, datasets)
    folder.claim(identity)
    cells = plan_cells(config, test_clips(identity))
    if shard is not None:
        i, n = shard
        cells = cells[i - 1::n]
    workspace = Workspace(config, datasets, folder)
    todo = [c for c in cells if not workspace.is_done(c, folder.cell(c.ident))]
    log(f"compare: {len(cells)} cells ({len(cells) - len(todo)} already done), mode {config.mode}, "
        f"data sets {', '.join(names)}, results in {out}")
    if not config.model and (config.mode == "model" or not all(d.labelled for d in datasets)):
        log("note: no --model given: an untrained compact model runs; its timings are real, "
            "its accuracy figures (and per-frame references for unlabelled clips) mean nothing")
    started = time.perf_counter()
    progress = _Progress(len(todo), log, phase_fair=config.needs_pair_tables(), metric=config.metric)
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
        wanted = [workspace.calibration_cell(c) for c in todo]
        for cell in {c.calibration_ident: c for c in wanted if c is not None}.values():
            workspace.calibrate(cell)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                                 initargs=(config, datasets, out)) as pool:
            for cell, payload in zip(todo, pool.map(_run_in_worker, todo)):
                progress.done(cell, payload)
    log(f"compare: finished {len(todo)} cells in {time.perf_counter() - started:.0f} s")
    return report.write(folder, config_extra={"versions": versions(), "machine": machine(), "jobs": jobs,
                                              "files": {"model": config.model, "decision_model": config.decision_model,
                                                        "quality_model": config.quality_model},
                                              "shard": None if shard is None else f"{shard[0]}/{shard[1]}"},
                        log=log)


class _Progress:
    """One line per finished cell with the count, elapsed time and an estimate of the rest.

    With pair tables (``phase_fair``), a whole-frame fixed interval's or copy's line is its own
    schedule, keys from frame 0 (phase 0); the report gives the mean over phases, so the line says so.
    """

    def __init__(self, total: int, log, phase_fair: bool = False, metric: str = "miou"):
        self.total, self.log, self.count, self.start = total, log, 0, time.perf_counter()
        self.phase_fair, self.metric = phase_fair, metric

    def done(self, cell: Cell, payload: dict) -> None:
        self.count += 1
        elapsed = time.perf_counter() - self.start
        left = elapsed / self.count * (self.total - self.count)
        if cell.policy == PAIR_TABLE:
            self.log(f"[{self.count:>{len(str(self.total))}}/{self.total}] {cell.dataset} {cell.clip}: pair table "
                     f"(every key carried up to the window)  ({elapsed:.0f} s, ~{left:.0f} s left)")
            return
        result = CellResult.from_json(payload["result"])
        phase = (" at phase 0 (the report: the mean over phases)"
                 if self.phase_fair and cell.policy in PHASE_FAIR and cell.regions == "1x1" else "")
        self.log(f"[{self.count:>{len(str(self.total))}}/{self.total}] {cell.dataset} {cell.clip}: "
                 f"{cell.policy} {cell.regions} budget {cell.budget:.2f}: key {result.key_fraction:.3f} "
                 f"{'J' if self.metric == 'j' else 'acc'} {result.score(self.metric):.3f}{phase}  ({elapsed:.0f} s, ~{left:.0f} s left)")


def merge(dirs: Sequence[str], out: str, log: Callable = logger.info) -> dict:
    """Join the folders of several shards (same configuration) into ``out`` and write its report."""
    if not dirs:
        raise ValueError("--merge needs at least one results folder")
    folders = [ResultFolder(d) for d in dirs]
    signatures = [f.signature() for f in folders]
    for d, s in zip(dirs[1:], signatures[1:]):
        if s != signatures[0]:
            raise ValueError(f"{d!r} holds a different configuration from {dirs[0]!r}; only shards of one run merge")
    target = ResultFolder(out)
    target.claim(signatures[0])
    workspace = Workspace(config_of(signatures[0]), [], target)
    stale = 0
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
            if workspace.is_done(Cell(**payload["cell"]), payload):
                for suffix in CELL_COMPANIONS:  # before the cell, as a run writes them
                    source = folder.path("cells", ident + suffix)
                    if os.path.isfile(source):
                        with open(source, "rb") as f:
                            write_bytes_atomic(target.path("cells", ident + suffix), f.read())
                target.save_cell(ident, payload)
            else:
                stale += 1
    if stale:
        log(f"merge: {stale} budget cells stored before budgets took a starting price were left out; "
            f"run compare again with --out {out} (and this configuration) to fill them")
    return report.write(target, config_extra={"versions": versions(), "machine": machine(), "merged_from": list(dirs)},
                        log=log)
