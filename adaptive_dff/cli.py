"""The ``adaptive-dff`` command: runs what :mod:`adaptive_dff.cli_args` parses.

Heavy imports (TensorFlow) happen inside the subcommands, so ``--help`` is
instant.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from typing import Optional, Sequence

from adaptive_dff import console
from adaptive_dff.cli_args import build_parser

logger = logging.getLogger("adaptive_dff.cli")
# The package's dependencies that the schedulers do not need (module: package). An install without
# them (``pip install --no-deps``, for a pipeline of another framework) serves the schedulers alone;
# a command then stops before any work and names what is missing.
DEPENDENCIES = {"tensorflow": "tensorflow", "keras": "keras", "sklearn": "scikit-learn",
                "matplotlib": "matplotlib", "PIL": "pillow", "tensorboard": "tensorboard"}


def missing_dependencies() -> list:
    """The packages of :data:`DEPENDENCIES` that are not installed (their module cannot be found)."""
    def installed(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            return False

    return [package for module, package in DEPENDENCIES.items() if not installed(module)]


def _data_root(given: Optional[str]) -> Optional[str]:
    if given:
        if not os.path.isdir(given):
            raise FileNotFoundError(f"--data-root {given!r} is not a folder")
        return given
    candidate = os.environ.get("ADAPTIVE_DFF_DATA") or os.path.join("..", "shared", "data")
    return candidate if os.path.isdir(candidate) else None


def _evaluate(args) -> None:
    from adaptive_dff.evaluate import evaluate_camvid
    from adaptive_dff.model import load_model
    from adaptive_dff.pretrained import default_model_path

    root = _data_root(args.data_root)
    if root is None:
        raise ValueError("evaluate needs the data folder: pass --data-root PATH (or set ADAPTIVE_DFF_DATA)")
    path = args.model or default_model_path()
    logger.info(f"model: {path}")
    model = load_model(path)
    if args.propagation_flow:
        model.with_propagation_flow(args.propagation_flow)
    logger.info(f"propagation flow: {getattr(model, 'propagation_flow', 'network')}")
    result = evaluate_camvid(model, root, split=args.split, interval=args.interval)
    if args.json:
        from schedulers.files import write_json_atomic

        write_json_atomic(args.json, {"model": path, **result})


def _segment(args) -> None:
    from adaptive_dff.segment import run_command

    run_command(args)


def _export(args) -> None:
    from adaptive_dff.export import export_saved_model, to_tflite
    from adaptive_dff.model import load_model
    from adaptive_dff.pretrained import default_model_path

    model = load_model(args.model or default_model_path())
    description = export_saved_model(model, args.out, args.height, args.width, propagation_flow=args.propagation_flow)
    logger.info(f"SavedModel for {args.width}x{args.height} frames, propagation flow {description['propagation_flow']}: "
          f"{args.out} (signatures key_step, propagate_step; see adaptive_dff_export.json)")
    if args.tflite:
        from schedulers.files import write_bytes_atomic

        for name, content in to_tflite(args.out).items():
            write_bytes_atomic(os.path.join(args.out, f"{name}.tflite"), content)
            logger.info(f"{name}.tflite: {len(content) / 1e6:.2f} MB")


def _compare(args) -> None:
    import time

    from adaptive_dff.compare.config import CompareConfig, resolve_defaults
    from adaptive_dff.compare.datasets import LABELLED_KIND, compare_datasets, dataset_kind
    from adaptive_dff.compare.planning import parse_shard
    from adaptive_dff.compare.run import merge, run_compare

    if args.merge:
        if not args.out:
            raise ValueError("--merge needs --out, the folder to write the joined results to")
        merge(args.merge, args.out)
        return
    given = {"policies": args.policies or None, "budgets": args.budgets or None, "sweep": args.sweep,
             "regions": args.regions or None}
    numbers = {"window": args.window, "cost_ratio": args.cost_ratio}
    if numbers["window"] is not None and float(numbers["window"]).is_integer():
        numbers["window"] = int(numbers["window"])
    config = CompareConfig(mode=args.mode, flow=args.flow, model=args.model, decision_model=args.decision_model,
                           quality_model=args.quality_model, metric=args.metric,
                           seed=args.seed, **{k: tuple(v) for k, v in given.items() if v is not None},
                           **{k: v for k, v in numbers.items() if v is not None})
    kind = dataset_kind(args.dataset, args.video, args.labels)
    config = resolve_defaults(config, [kind]).check()
    if config.metric == "j" and args.dataset != "synthetic-objects" and kind != LABELLED_KIND:
        raise ValueError("--metric j scores objects, 0 the background: give object labels (--dataset "
                         "synthetic-objects, or --video with label folders); "
                         f"{args.dataset or ('the videos' if args.video else 'synthetic')} is labelled by class")
    if config.flow == "exact" and kind != "synthetic":
        from adaptive_dff.compare.exact_flow import NoExactFlowError

        raise NoExactFlowError(f"--flow exact needs a data set with exact flow (the generated ones); "
                               f"{args.dataset or 'the videos'} has none")
    shard = parse_shard(args.shard)
    if config.quality_model:
        from schedulers import load_quality_predictor

        load_quality_predictor(config.quality_model)  # named before any video is decoded
    if config.decision_model:
        from schedulers import load_decision_model

        load_decision_model(config.decision_model)  # named before --out is made: a rerun with a good file is not refused
    datasets = compare_datasets(args.dataset, videos=args.video, data_root=_data_root(args.data_root),
                                frames=args.frames, seed=args.seed, model=config.model, labels=args.labels,
                                clip_frames=args.clip_frames, video_scale=args.video_scale)
    out = args.out or os.path.join("runs", time.strftime("compare-%Y%m%d-%H%M%S"))
    run_compare(config, datasets, out, jobs=args.jobs, shard=shard)


def _train(args) -> None:
    from training.config import load_config

    config = load_config(args.program, args.config, args.set)
    root = _data_root(args.data_root)
    if args.program == "flow":
        from training import flow

        if not config["eval_examples"]:
            if root and os.path.isdir(os.path.join(root, "flyingchairs_examples")):
                config["eval_examples"] = os.path.join(root, "flyingchairs_examples")
            else:
                logger.info("note: no FlyingChairs examples found; pass --data-root to report end-point error")
        if config["source"] == "camvid" and not config["data_root"]:
            config["data_root"] = root or ""
        flow.run(config, args.out)
    elif args.program == "dff":
        from training import dff

        if config["source"] == "camvid" and not config["data_root"]:
            config["data_root"] = root or ""
        dff.run(config, args.out)
    elif args.program == "features":
        from training import features

        if config["source"] == "camvid" and not config["data_root"]:
            config["data_root"] = root or ""
        features.run(config, args.out)
    elif args.program == "decision":
        from training import decision

        decision.run(config, args.out)
    elif args.program == "quality":
        from training import quality

        if config["videos"] and not config["video_model"] and not config["label_folders"]:
            from adaptive_dff.pretrained import default_model_path

            config["video_model"] = default_model_path()
        quality.run(config, args.out, data_root=root)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with console.console_logging(console.level_from(args.quiet, args.verbose)):
        return _run(args)


def _run(args) -> int:
    missing = missing_dependencies()
    if missing:
        print(f"adaptive-dff: error: adaptive-dff {args.command} needs the package's dependencies, and "
              f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: install the package "
              "with them (pip install . from the repository); an install without them serves the schedulers "
              "alone", file=sys.stderr)
        return 2
    try:
        if args.command == "demo":
            from adaptive_dff.demo import run_demo

            run_demo(frames=args.frames, height=args.height, width=args.width, seed=args.seed)
        elif args.command == "train":
            _train(args)
        elif args.command == "compare":
            _compare(args)
        elif args.command == "evaluate":
            _evaluate(args)
        elif args.command == "segment":
            _segment(args)
        elif args.command == "export-default":
            from adaptive_dff.pretrained import export_default

            exported = export_default(args.dff, args.decision, propagation_flow=args.propagation_flow,
                                      dis_downscale=args.dis_downscale, dis_preset=args.dis_preset)
            for name, entry in exported.items():
                logger.info(f"{name}: {entry['bytes'] / 1e6:.2f} MB, sha256 {entry['sha256'][:16]}...")
        elif args.command == "export":
            _export(args)
        elif args.command == "macs":
            from adaptive_dff.bench.costs import cost_figures, format_cost_table

            def macs_run():
                figures = cost_figures(args.height, args.width)
                logger.info(format_cost_table(figures))
                return figures

            console.reported(args, "macs", macs_run)
        elif args.bench == "warp":
            from adaptive_dff.bench import warp

            console.reported(args, "bench warp", lambda: warp.run(shape=tuple(args.shape), repeats=args.repeats))
        elif args.bench == "model":
            from adaptive_dff.bench import model

            console.reported(args, "bench model", lambda: model.run(
                feature=args.feature, flow=args.flow, height=args.height, width=args.width, repeats=args.repeats))
        elif args.bench == "schedulers":
            from adaptive_dff.bench import schedulers

            console.reported(args, "bench schedulers", lambda: schedulers.run(repeats=args.repeats))
        elif args.bench == "runner":
            from adaptive_dff.bench import runner

            console.reported(args, "bench runner", lambda: runner.run(
                frames=args.frames, interval=args.interval, height=args.height, width=args.width))
        elif args.bench == "export":
            from adaptive_dff.bench import export as export_bench

            root = _data_root(args.data_root)
            if root is None:
                raise ValueError("bench export needs the data folder: pass --data-root PATH (or set ADAPTIVE_DFF_DATA)")
            console.reported(args, "bench export", lambda: export_bench.run(root, repeats=args.repeats))
        elif args.bench == "dff":
            from adaptive_dff.bench import dff as dff_bench

            root = _data_root(args.data_root)
            if root is None:
                raise ValueError("bench dff needs the data folder: pass --data-root PATH (or set ADAPTIVE_DFF_DATA)")
            console.reported(args, "bench dff", lambda: dff_bench.run(root, frames=args.frames, passes=args.passes))
        elif args.bench == "train":
            from adaptive_dff.bench import train as train_bench

            console.reported(args, "bench train", lambda: train_bench.run(
                batch=args.batch, height=args.height, width=args.width, repeats=args.repeats))
        elif args.bench == "memory":
            from adaptive_dff.bench import runner

            console.reported(args, "bench memory", lambda: runner.run_memory(frames=args.frames))
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError) as error:
        print(f"adaptive-dff: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
