"""The work of a comparison: its cells in a fixed order, shards of them, and its signature.

A *cell* is one policy at one budget on one test clip of one data set. The
*signature* identifies a comparison (configuration and data), so a results
folder of another comparison is refused and only shards of one run merge.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Sequence

from adaptive_dff.compare.config import CEILING_ARMS, PAIR_TABLE, PER_FRAME, SHARED_CLIP, CompareConfig, parse_arm
from adaptive_dff.compare.datasets import Dataset
from schedulers.files import file_sha256


@dataclass
class Cell:
    """One unit of work: a policy at a budget on one test clip of one data set."""

    dataset: str
    policy: str
    regions: str
    budget: float
    kind: str  # "budget" (a fair budget), "sweep" (a curve point), "baseline" (per frame) or "table" (pair table)
    clip: str

    @property
    def calibration_ident(self) -> str:
        return f"{self.dataset}__{self.policy}__{self.regions}__{self.budget:.4f}"

    @property
    def ident(self) -> str:
        return f"{self.calibration_ident}__{self.clip}"


def pair_table_cell(dataset: str, clip: str) -> Cell:
    """The cell of a test clip's pair table (oracle mode)."""
    return Cell(dataset, PAIR_TABLE, "1x1", 0.0, "table", clip)


def plan_cells(config: CompareConfig, test_clips: dict) -> list:
    """Every cell, in a fixed order, from ``{data set name: [test clip names]}``
    (in model mode the per-frame baseline comes first; in oracle mode each test
    clip's pair table, which the optimal arm and the phase-fair fixed interval
    and copy are read from; the optimal arm has no cells of its own; a
    shared-budget arm has one cell per budget that runs all the test clips side
    by side)."""
    cells = []
    for dataset, clips in test_clips.items():
        if config.mode == "model":
            cells += [Cell(dataset, PER_FRAME, "1x1", 1.0, "baseline", clip) for clip in clips]
        if config.needs_pair_tables():
            cells += [pair_table_cell(dataset, clip) for clip in clips]
        for policy in config.chosen_policies():
            if policy in CEILING_ARMS:
                continue
            for grid in config.regions:
                for budget, kind in config.all_budgets():
                    if parse_arm(policy)[1] == "shared":  # one cell: every test clip side by side
                        cells.append(Cell(dataset, policy, grid, budget, kind, SHARED_CLIP))
                    else:
                        cells += [Cell(dataset, policy, grid, budget, kind, clip) for clip in clips]
    return cells


def parse_shard(text: Optional[str]) -> Optional[tuple]:
    """``(i, n)`` from ``"i/n"`` (shard ``i`` of ``n``, 1-based); ``None`` for ``None``."""
    if text is None:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard is written i/n (e.g. 2/4), got {text!r}") from None
    if not 1 <= i <= n:
        raise ValueError(f"--shard {text}: need 1 <= i <= n")
    return i, n


# What a signature records only when a propagation_quality arm runs (not options of CompareConfig).
ARM_RECORDS = ("shipped_quality", "renewal_floor")


def signature(config: CompareConfig, datasets: Sequence[Dataset]) -> dict:
    """What identifies a comparison: the configuration (model files by content, not by path) and,
    per data set, its description, the fingerprint of its frames and labels, and its test clips.
    Shards run on machines with the data in other folders still merge."""
    settings = asdict(config)
    for key in ("model", "decision_model", "quality_model"):
        settings[key] = file_sha256(settings[key]) if settings[key] else None
    for key, default in (("quality_model", None), ("metric", "miou")):
        if settings[key] == default:  # as before the option, so earlier runs' folders still continue
            del settings[key]
    if config.runs_quality_arm():
        from schedulers.quality import RAMP_FLOOR

        if "quality_model" not in settings:
            # the shipped predictor the arms run on (compare gives key labels): a folder begun on another
            # continues no further
            from schedulers.quality_predictor import DEFAULT_LABELS_FILE

            settings["shipped_quality"] = file_sha256(DEFAULT_LABELS_FILE)
        # the renewal rule's floor (added after earlier runs): a folder begun without it continues no further
        settings["renewal_floor"] = RAMP_FLOOR
    return {"config": settings,
            "datasets": [{"name": d.name, "spec": d.spec, "fingerprint": d.fingerprint(), "labelled": d.labelled,
                          "test_clips": [c.name for c in d.test]} for d in datasets]}


def test_clips(signature: dict) -> dict:
    """``{data set name: [test clip names]}`` of a signature."""
    return {d["name"]: d["test_clips"] for d in signature["datasets"]}


def config_of(signature: dict) -> CompareConfig:
    """The configuration a signature records (model files left out: it holds their digests, as it
    holds the shipped quality predictor's; and the renewal rule's floor, a constant of the code)."""
    return CompareConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in signature["config"].items()
                            if k not in ("model", "decision_model", "quality_model") + ARM_RECORDS})
