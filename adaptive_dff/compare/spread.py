"""Several compare runs of the same clips side by side: each run's figures, and their mean and range.

A policy's figure on a few real clips moves with things that are not the
policy: the same predictor refitted with another seed on the same rows moves
the headroom captured at 10% on the sample videos by about 25 points
(docs/evidence.md, "Spread over fits"). To judge a change to a learned part fairly,
fit it several times (``adaptive-dff train quality ... --set fit_seed=N``),
run ``compare`` once per fit on the same data (``--quality-model``,
``--decision-model`` or ``--model FILE``, each run its own ``--out``), and
read the runs together::

    python -m adaptive_dff.compare.spread runs/fit-0 runs/fit-1 runs/fit-2
    python -m adaptive_dff.compare.spread runs/fit-* --policies propagation_quality@budget --csv spread.csv

Per (data set, regions, policy, kind, budget) that every run holds (kind:
``budget`` at the fair budgets, ``sweep`` between them): each run's key
fraction, accuracy, gain over the phase-fair fixed interval at the key
fraction it spent (``accuracy - fixed_at_key_fraction`` of ``results.csv``)
and the share of the headroom it captured (``headroom_captured``, against
the optimum named in ``ceiling``); then the mean, lowest and highest over
the runs, each figure on its own (the lowest gain and the lowest headroom
may come from different runs). A row where no run has a gain (model mode
has no phase-fair curve) shows each run's accuracy and key fraction
instead. The runs must hold the same data sets (names, fingerprints of
frames and labels, test clips) in the same mode and metric: figures of
other clips or units do not average. Their other settings may differ
(that is the point); those that do are printed with each run's value.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

from adaptive_dff.compare.store import csv_value
from schedulers.files import read_json, write_bytes_atomic

# Arms whose gain over the fixed interval is 0 by construction, or that have none.
WITHOUT_GAIN = ("fixed_interval", "per_frame")
SUMMARIES = ("mean", "lowest", "highest")
ROW_KEYS = ("dataset", "regions", "policy", "budget", "accuracy", "key_fraction")
# Settings runs read together must share (they measure the same thing), with the value a signature
# that leaves one out means (compare's signature leaves out the default metric).
SAME_SETTINGS = {"mode": None, "metric": "miou"}
CSV_COLUMNS = ("dataset", "regions", "policy", "kind", "budget", "ceiling", "run", "key_fraction", "accuracy",
               "gain", "headroom_captured")


@dataclass(frozen=True)
class Run:
    """One finished compare run: its folder and its ``results.json`` report."""

    folder: str
    report: dict

    @property
    def datasets(self) -> list:
        return self.report["signature"]["datasets"]

    def setting(self, key: str):
        """A :data:`SAME_SETTINGS` setting of the run, its default where the signature leaves it out."""
        return self.report["signature"]["config"].get(key, SAME_SETTINGS[key])

    @property
    def settings(self) -> dict:
        """The run's configuration as its signature records it (model files by digest), with the
        files' paths as given (``files`` of the report) beside them."""
        config = dict(self.report["signature"]["config"])
        for key, path in (self.report.get("files") or {}).items():
            config[f"{key} file"] = path
        return config


def read_run(folder: str) -> Run:
    """The finished compare run in ``folder``; ``ValueError`` naming the folder or file when it is
    none (no report yet, or a report that is damaged or of another kind)."""
    if not os.path.isdir(folder):
        raise ValueError(f"{folder!r} is not a folder" if os.path.exists(folder) else f"{folder!r} does not exist")
    path = os.path.join(folder, "results.json")
    try:
        report = read_json(path)
    except ValueError as error:
        raise ValueError(f"{path!r} cannot be read ({error}); rerun the run's compare command to write it "
                         "again") from None
    if report is None:
        raise ValueError(f"{folder!r} holds no results.json: not a compare run, or one that has not written "
                         "its report yet (rerun its compare command to finish it)")
    problem = _report_problem(report)
    if problem:
        raise ValueError(f"{path!r} is not a compare report: {problem}")
    return Run(folder, report)


def _report_problem(report) -> Optional[str]:
    """What keeps ``report`` from being read as a compare report, or ``None``."""
    if not isinstance(report, dict):
        return "not a JSON object"
    signature = report.get("signature")
    if not isinstance(signature, dict) or not isinstance(signature.get("config"), dict):
        return "no signature with a configuration"
    datasets = signature.get("datasets")
    if not isinstance(datasets, list) or not all(isinstance(d, dict) and "name" in d for d in datasets):
        return "no list of data sets in its signature"
    rows = report.get("rows")
    if not isinstance(rows, list):
        return "no rows"
    for number, row in enumerate(rows):
        if not isinstance(row, dict) or any(k not in row for k in ROW_KEYS):
            return f"row {number} lacks one of {', '.join(ROW_KEYS)}"
    return None


def _data_identity(entry: dict) -> tuple:
    return entry.get("name"), entry.get("fingerprint"), tuple(entry.get("test_clips") or ())


def check_same_data(runs: Sequence[Run]) -> None:
    """``ValueError`` naming the run and data set where ``runs`` do not hold the same data sets with
    the same frames, labels and test clips as the first run, or the setting where they do not
    measure alike (:data:`SAME_SETTINGS`: oracle or model mode, mIoU or J)."""
    if not runs:
        raise ValueError("give at least one compare run")
    first = runs[0]
    names = [d.get("name") for d in first.datasets]
    for run in runs[1:]:
        for key in SAME_SETTINGS:
            ours, theirs = first.setting(key), run.setting(key)
            if ours != theirs:
                raise ValueError(f"{run.folder!r} is a run of {key} {theirs!r}, {first.folder!r} of {key} {ours!r}: "
                                 "runs read together must measure alike")
        there = [d.get("name") for d in run.datasets]
        if there != names:
            raise ValueError(f"{run.folder!r} holds the data sets {there}, {first.folder!r} holds {names}: "
                             "runs read together must score the same clips")
        for ours, theirs in zip(first.datasets, run.datasets):
            if _data_identity(ours) != _data_identity(theirs):
                what = "test clips" if ours.get("fingerprint") == theirs.get("fingerprint") else "frames or labels"
                raise ValueError(f"{run.folder!r}: data set {theirs.get('name')!r} has other {what} than in "
                                 f"{first.folder!r}: runs read together must score the same clips")


def differences(runs: Sequence[Run]) -> dict:
    """``{setting: [value per run]}`` for the settings that differ between ``runs``."""
    settings = [r.settings for r in runs]
    keys = sorted(set().union(*settings))
    return {k: [s.get(k) for s in settings] for k in keys
            if len({json.dumps(s.get(k), sort_keys=True, default=str) for s in settings}) > 1}


def _key(row: dict) -> tuple:
    budget = row.get("budget")
    return row["dataset"], row["regions"], row["policy"], row.get("kind"), None if budget is None else float(budget)


def _gain(row: dict) -> Optional[float]:
    accuracy, fixed = row.get("accuracy"), row.get("fixed_at_key_fraction")
    return None if accuracy is None or fixed is None else float(accuracy) - float(fixed)


def _summaries(values: Sequence[Optional[float]]) -> dict:
    """``{"mean", "lowest", "highest"}`` over the values that are finite numbers (all ``None`` when
    none is)."""
    known = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not known:
        return dict.fromkeys(SUMMARIES)
    return {"mean": sum(known) / len(known), "lowest": min(known), "highest": max(known)}


def spread(runs: Sequence[Run], policies: Optional[Sequence[str]] = None) -> tuple:
    """``(rows, missing)``. ``rows``: one per (data set, regions, policy, kind, budget) that every
    run holds, in the first run's order: ``{"dataset", "regions", "policy", "kind", "budget",
    "ceiling", "runs": [{"key_fraction", "accuracy", "gain", "headroom_captured"} per run],
    "accuracy": {"mean", "lowest", "highest"}, "gain": {...}, "headroom_captured": {...}}`` (a
    run's gain or headroom is ``None`` where its key fraction lies outside the curves, or in a run
    without them; summaries are over the runs that have one). ``policies``: those to keep
    (default: all but :data:`WITHOUT_GAIN`). ``missing``: the keys some runs hold and others do not
    (e.g. a run not finished)."""
    check_same_data(runs)
    wanted = None if policies is None else set(policies)

    def kept(row):
        return row["policy"] in wanted if wanted is not None else row["policy"] not in WITHOUT_GAIN

    by_run = [{_key(r): r for r in run.report["rows"] if kept(r)} for run in runs]
    if wanted is not None:
        unknown = sorted(wanted - {k[2] for rows in by_run for k in rows})
        if unknown:
            held = sorted({r["policy"] for r in runs[0].report["rows"]})
            raise ValueError(f"no run holds the policies {unknown}; the first holds {held}")
    order = list(dict.fromkeys(k for rows in by_run for k in rows))  # the first run's keys first
    common = [k for k in order if all(k in rows for rows in by_run)]
    missing = [k for k in order if k not in common]
    if not common:
        raise ValueError(f"the runs hold no (data set, regions, policy, budget) in common: {runs[0].folder!r} "
                         f"holds the policies {sorted({k[2] for k in by_run[0]})}")
    out = []
    for key in common:
        rows = [rows[key] for rows in by_run]
        per_run = [{"key_fraction": r.get("key_fraction"), "accuracy": r.get("accuracy"), "gain": _gain(r),
                    "headroom_captured": r.get("headroom_captured")} for r in rows]
        dataset, regions, policy, kind, budget = key
        out.append({"dataset": dataset, "regions": regions, "policy": policy, "kind": kind, "budget": budget,
                    "ceiling": next((r["ceiling"] for r in rows if r.get("ceiling")), None), "runs": per_run,
                    "accuracy": _summaries([r["accuracy"] for r in per_run]),
                    "gain": _summaries([r["gain"] for r in per_run]),
                    "headroom_captured": _summaries([r["headroom_captured"] for r in per_run])})
    return out, missing


def csv_text(rows: Sequence[dict], runs: Sequence[Run]) -> str:
    """``rows`` of :func:`spread` in long form (:data:`CSV_COLUMNS`): one line per run, named by its
    folder, then one per summary (``run`` = ``mean``, ``lowest``, ``highest``; their key fraction
    is the runs' mean, lowest and highest)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()

    for row in rows:
        base = {k: row[k] for k in ("dataset", "regions", "policy", "kind", "budget", "ceiling")}
        for run, figures in zip(runs, row["runs"]):
            writer.writerow({k: csv_value(v) for k, v in {**base, "run": run.folder, **figures}.items()})
        fractions = _summaries([r["key_fraction"] for r in row["runs"]])
        for name in SUMMARIES:
            writer.writerow({k: csv_value(v) for k, v in {
                **base, "run": name, "key_fraction": fractions[name], "accuracy": row["accuracy"][name],
                "gain": row["gain"][name],
                "headroom_captured": row["headroom_captured"][name]}.items()})
    return buffer.getvalue()


def _figure(gain: Optional[float], headroom: Optional[float]) -> str:
    if gain is None:
        return "-"
    return f"{gain:+.3f}" + ("" if headroom is None else f" ({headroom * 100:.0f}%)")


def _accuracy(accuracy: Optional[float], key_fraction: Optional[float]) -> str:
    if accuracy is None:
        return "-"
    return f"{accuracy:.3f}" + ("" if key_fraction is None else f" ({key_fraction:.3f})")


def table_lines(rows: Sequence[dict], runs: Sequence[Run]) -> list:
    """The text table: per (data set, regions, policy), one line per budget with each run's gain
    (headroom captured) and the mean, lowest and highest over the runs; where no run has a gain (a
    run without pair tables, e.g. model mode), each run's accuracy (key fraction) and the mean,
    lowest and highest accuracy."""
    lines, group = [], None
    names = [f"R{i + 1}" for i in range(len(runs))]
    for row in rows:
        if (row["dataset"], row["regions"], row["policy"]) != group:
            group = row["dataset"], row["regions"], row["policy"]
            against = "" if row["ceiling"] is None else f" (headroom against the {row['ceiling']} optimum)"
            lines += ["", f"{row['dataset']}, {row['regions']}, {row['policy']}{against}:",
                      "  budget  " + "  ".join(f"{n:>14}" for n in names)
                      + f"  {'mean':>14}  {'lowest':>14}  {'highest':>14}"]
        if all(r["gain"] is None for r in row["runs"]):
            cells = [_accuracy(r["accuracy"], r["key_fraction"]) for r in row["runs"]]
            cells += ["-" if row["accuracy"][s] is None else f"{row['accuracy'][s]:.3f}" for s in SUMMARIES]
        else:
            cells = [_figure(r["gain"], r["headroom_captured"]) for r in row["runs"]]
            cells += [_figure(row["gain"][s], row["headroom_captured"][s]) for s in SUMMARIES]
        kind = "" if row["kind"] in (None, "budget") else f" {row['kind']}"
        budget = "-" if row["budget"] is None else f"{row['budget']:.2f}"
        lines.append(f"  {budget:>6}  " + "  ".join(f"{c:>14}" for c in cells) + kind)
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaptive_dff.compare.spread",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN", help="compare run folders of the same data")
    parser.add_argument("--policies", nargs="+", default=None,
                        help=f"policies to show (default: all but {', '.join(WITHOUT_GAIN)})")
    parser.add_argument("--csv", default=None, metavar="FILE", help="also write the table in long form to FILE")
    args = parser.parse_args(argv)
    try:
        runs = [read_run(folder) for folder in args.runs]
        rows, missing = spread(runs, args.policies)
    except ValueError as error:
        parser.error(str(error))
    out = sys.stdout
    print("Gain over the phase-fair fixed interval at the key fraction spent (headroom captured); where no run "
          "has one, accuracy (key fraction):", file=out)
    for i, run in enumerate(runs):
        print(f"  R{i + 1} = {run.folder}", file=out)
    for setting, values in differences(runs).items():
        print(f"  {setting} differs: " + ", ".join(f"R{i + 1} {v}" for i, v in enumerate(values)), file=out)
    for line in table_lines(rows, runs):
        print(line, file=out)
    if missing:
        print("\nleft out, not held by every run: "
              + "; ".join(f"{d} {g} {p} {'-' if b is None else f'{b:g}'} {k}" for d, g, p, k, b in missing),
              file=out)
    if args.csv:
        write_bytes_atomic(args.csv, csv_text(rows, runs).encode())
        print(f"\nwrote {args.csv}", file=out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
