"""The output folder of ``adaptive-dff compare``: one file per finished cell, written atomically.

Layout of ``--out DIR``::

    compare.json        the configuration this folder belongs to (checked on every rerun)
    calibration/*.json  one chosen threshold per (policy, regions, budget)
    cells/*.json        one result per (policy, regions, budget, clip), written as each finishes
    cells/*.carried.npz beside a test clip's pair-table cell: each pair's confusion and cost,
                        from which whole-frame cells are scored
    cells/*.signals.npz beside it too: each pair's propagation-quality signals, from which
                        ``python -m adaptive_dff.bench.online_bound`` judges a quality predictor
    results.csv         one row per (data set, policy, regions, budget)
    results.json        the rows, versions, machine and full configuration
    pareto.png          accuracy against key-frame fraction and against frames per second
    summary.md          the tables at the fair budgets, and how to read them

A rerun of the same command skips the cells already in ``cells/``; a folder
holding another configuration is refused before any work starts.
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Optional

from schedulers.files import claim_folder, read_json, write_bytes_atomic, write_json_atomic


def _policies(record: dict):
    """The resolved policies of a ``compare.json`` record (``None`` when it has none)."""
    return record.get("signature", {}).get("config", {}).get("policies")


def _without_policies(record: dict) -> dict:
    """A ``compare.json`` record's signature with its configuration's policies left out, and what the
    signature records only for some policies (:data:`adaptive_dff.compare.planning.ARM_RECORDS`)."""
    from adaptive_dff.compare.planning import ARM_RECORDS

    signature = record.get("signature", {})
    return {**signature,
            "config": {k: v for k, v in signature.get("config", {}).items() if k not in ("policies",) + ARM_RECORDS}}


class ResultFolder:
    """One compare run's folder (see the module docstring)."""

    def __init__(self, out: str):
        if os.path.exists(out) and not os.path.isdir(out):
            raise ValueError(f"--out {out!r} exists and is not a folder")
        self.out = out

    def path(self, *parts: str) -> str:
        return os.path.join(self.out, *parts)

    # -- configuration ------------------------------------------------------

    def claim(self, signature: dict) -> None:
        """Refuse a folder of another configuration; else record this one. A folder that differs
        only in its policies (e.g. started before the default policies changed) is refused with
        the ``--policies`` that continue it."""
        previous = read_json(self.path("compare.json"))
        record = json.loads(json.dumps({"signature": signature}, default=str))  # as it reads back
        if isinstance(previous, dict) and previous != record:
            there, now = _policies(previous), _policies(record)
            if isinstance(there, list) and there != now and _without_policies(previous) == _without_policies(record):
                raise ValueError(f"--out {self.out!r} holds a run of the policies {' '.join(there)} (now "
                                 f"{' '.join(now or [])}); rerun with --policies {' '.join(there)} to continue "
                                 "it, or choose another folder")
        claim_folder(self.out, "compare.json", {"signature": signature}, "results of a different configuration")

    def signature(self) -> dict:
        data = read_json(self.path("compare.json"))
        if data is None:
            raise ValueError(f"{self.out!r} is not a compare results folder (no compare.json)")
        return data["signature"]

    # -- cells and calibrations ------------------------------------------------

    def cell(self, cell_id: str) -> Optional[dict]:
        return read_json(self.path("cells", cell_id + ".json"))

    def has_cell(self, cell_id: str) -> bool:
        """Whether the cell is finished (its file written), without reading it."""
        return os.path.isfile(self.path("cells", cell_id + ".json"))

    def save_cell(self, cell_id: str, payload: dict) -> None:
        write_json_atomic(self.path("cells", cell_id + ".json"), payload)

    def _entries(self, subfolder: str) -> dict:
        """``{name: payload}`` of the JSON files in ``subfolder`` (temporary files left out)."""
        folder = self.path(subfolder)
        if not os.path.isdir(folder):
            return {}
        return {
            name[:-5]: read_json(os.path.join(folder, name))
            for name in sorted(os.listdir(folder)) if name.endswith(".json") and not name.startswith(".")
        }

    def cells(self) -> dict:
        return self._entries("cells")

    def calibration(self, cal_id: str) -> Optional[dict]:
        return read_json(self.path("calibration", cal_id + ".json"))

    def save_calibration(self, cal_id: str, payload: dict) -> None:
        write_json_atomic(self.path("calibration", cal_id + ".json"), payload)

    def calibrations(self) -> dict:
        return self._entries("calibration")

    # -- outputs ------------------------------------------------------------

    def write_csv(self, rows: list, columns: list) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: csv_value(row.get(k)) for k in columns})
        write_bytes_atomic(self.path("results.csv"), buffer.getvalue().encode())


def csv_value(value):
    """A CSV cell: floats to 6 significant digits, ``None`` empty, anything else as it is."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value
