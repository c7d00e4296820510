"""The ``adaptive-dff`` command.

Heavy imports (TensorFlow) happen inside the subcommands, so ``--help`` is
instant.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

from adaptive_dff import console


logger = logging.getLogger("adaptive_dff.cli")


def _positive(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adaptive-dff",
        description="Fast video recognition by Deep Feature Flow and key-frame scheduling.",
    )
    from adaptive_dff import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="a short end-to-end demo on a generated clip")
    demo.add_argument("--frames", type=_positive, default=60, help="clip length (default 60)")
    demo.add_argument("--height", type=_positive, default=256)
    demo.add_argument("--width", type=_positive, default=512)
    demo.add_argument("--seed", type=int, default=0)

    compare = sub.add_parser(
        "compare", help="the main job: scheduling policies at equal key-frame budgets, with plots",
        description="Calibrate every policy to the same key-frame budgets on calibration clips, score it on "
                    "test clips, and write results.csv, results.json, pareto.png and summary.md to --out. "
                    "Rerunning the same command continues an interrupted run.",
    )
    compare.add_argument("--dataset", default=None, help="synthetic (default: three generated scenarios) or camvid-val")
    compare.add_argument("--video", nargs="+", default=None, metavar="FILE", help="video files (or folders of numbered images) instead: unlabelled, or labelled by "
                              "the model with --labels model")
    compare.add_argument("--labels", default=None, metavar="SOURCE",
                         help="with --video: none (default; unlabelled) or model (labelled by the model's own "
                              "per-frame predictions, --model or the shipped one, cached: every oracle arm and "
                              "optimal then run on real footage; scores are agreement with that model, not "
                              "accuracy against ground truth)")
    compare.add_argument("--clip-frames", type=_positive, default=None,
                         help="with --labels model: test clips of this many frames (default 100)")
    compare.add_argument("--video-scale", type=float, default=None, metavar="F",
                         help="with --labels model: shrink every frame by F in (0, 1] first (default: as decoded)")
    compare.add_argument("--data-root", default=None, help="the real data folder (for camvid-val)")
    compare.add_argument("--mode", default="oracle", help="oracle (default) or model")
    compare.add_argument("--policies", nargs="+", default=None, metavar="NAME",
                         help="fixed_interval copy frame_difference flow_magnitude propagation_quality "
                              "decision_network, each optionally with @budget (a KeyBudget per clip) or @shared (one "
                              "SharedBudget over the test clips), and optimal (oracle mode: the ceiling) (default: "
                              "fixed_interval copy frame_difference flow_magnitude, optimal in oracle mode, and "
                              "decision_network with --decision-model or in model mode with the shipped model)")
    compare.add_argument("--budgets", nargs="+", type=float, default=None, help="fair key-frame budgets (default 0.10 0.20 0.33)")
    compare.add_argument("--sweep", nargs="*", type=float, default=None,
                         help="more budgets tracing the curves (default 0.05 0.15 0.25 0.5; none: --sweep)")
    compare.add_argument("--regions", nargs="+", default=None, metavar="RxC", help="region grids (default 1x1 2x2)")
    compare.add_argument("--flow", default="dis",
                         help="oracle mode's flow: dis (OpenCV, default), model, or exact (the generated sets' own flow)")
    compare.add_argument("--window", type=float, default=None,
                         help="frames a key carries at most, for the optimal arm and the phase-fair curves (default 30)")
    compare.add_argument("--cost-ratio", type=float, default=None,
                         help="oracle mode's speedup panel: cost of a propagated frame over a key frame (default 0.08, the shipped model's on a CPU)")
    compare.add_argument("--model", default=None,
                         help="a .keras DFF model (model mode's default: the shipped CamVid model on camvid-val "
                              "and videos, an untrained compact model on the synthetic sets)")
    compare.add_argument("--decision-model", default=None,
                         help="the decision_network arm's model: a .keras DecisionModel or a quality predictor "
                              ".json (default: the shipped quality predictor, the best learned model that ships)")
    compare.add_argument("--frames", type=_positive, default=None, help="synthetic clip length / video frame limit")
    compare.add_argument("--out", default=None, help="results folder (default: a new folder under runs/)")
    compare.add_argument("--jobs", type=_positive, default=1, help="cells run in this many processes")
    compare.add_argument("--shard", default=None, metavar="i/n", help="run only shard i of n of the cells")
    compare.add_argument("--merge", nargs="+", default=None, metavar="DIR", help="join shard folders into --out")
    compare.add_argument("--seed", type=int, default=0)

    evaluate = sub.add_parser("evaluate", help="a model's mIoU on CamVid: per frame, and under DFF on the val clip")
    evaluate.add_argument("--model", default=None, help="a .keras DFF model (default: the shipped model)")
    evaluate.add_argument("--data-root", default=None, help="the real data folder (holding camvid/)")
    evaluate.add_argument("--split", default="test", help="the split scored per frame (default test)")
    evaluate.add_argument("--interval", type=_positive, default=5, help="key-frame interval on the val clip (default 5)")
    evaluate.add_argument("--json", default=None, help="also write the figures to this JSON file")
    evaluate.add_argument("--propagation-flow", default=None,
                          help="override the model's propagation flow: network (its flow net) or dis (OpenCV DIS)")

    export_steps = sub.add_parser("export", help="save the key-frame and propagation steps as a TensorFlow SavedModel")
    export_steps.add_argument("--out", required=True, help="a new or empty folder, or an earlier export (replaced)")
    export_steps.add_argument("--model", default=None, help="a .keras DFF model (default: the shipped model)")
    export_steps.add_argument("--height", type=_positive, default=360, help="frame height the signatures take (default 360)")
    export_steps.add_argument("--width", type=_positive, default=480, help="frame width (default 480)")
    export_steps.add_argument("--propagation-flow", default=None, help="network or dis (default: the model's)")
    export_steps.add_argument("--tflite", action="store_true", help="also write key_step.tflite and propagate_step.tflite")

    segment = sub.add_parser(
        "segment", help="a video in, an annotated video, a per-frame CSV and a summary out",
        description="Run the DFF model (the shipped CamVid model by default) under a key-frame policy over a "
                    "video file or a folder of numbered images; write an annotated video at the source's frame "
                    "rate and size, a CSV with one row per frame (OUT with .csv), and print a summary.",
    )
    segment.add_argument("video", help="a video file, or a folder of numbered images")
    segment.add_argument("--out", required=True, help="the annotated video to write (.mp4 or .avi)")
    segment.add_argument("--csv", default=None, help="the per-frame CSV (default: OUT with .csv)")
    segment.add_argument("--overwrite", action="store_true", help="replace existing output files")
    segment.add_argument("--model", default=None, help="a .keras DFF model (default: the shipped CamVid model)")
    segment.add_argument("--classes", default=None,
                         help="class names: 'camvid' or NAME,NAME,... (default: CamVid's for the shipped model, "
                              "'class 0', 'class 1', ... otherwise; classes without a known colour get generated ones)")
    segment.add_argument("--policy", default="fixed_interval",
                         help="fixed_interval (default), frame_difference, flow_magnitude, propagation_quality or "
                              "decision_network")
    segment.add_argument("--decision-model", default=None,
                         help="for decision_network: a .keras DecisionModel or a quality predictor .json "
                              "(default: the shipped quality predictor)")
    threshold = segment.add_mutually_exclusive_group()
    threshold.add_argument("--threshold", type=float, default=None,
                           help="the policy's threshold (fixed_interval: the interval; default: the policy's own)")
    threshold.add_argument("--budget", type=float, default=None,
                           help="a key-frame fraction in (0, 1] held online by schedulers.KeyBudget around the "
                                "policy (keys where its score ranks worst, or for propagation_quality where it "
                                "passes a price, which starts at its threshold calibrated to the budget on the "
                                "first --calibration-frames frames)")
    threshold.add_argument("--key-fraction", type=float, default=None,
                           help="a key-frame budget in (0, 1]: the threshold is calibrated on the first "
                                "--calibration-frames frames of the source")
    segment.add_argument("--calibration-frames", type=_positive, default=30,
                         help="the first frames --key-fraction, or --budget's starting price for "
                              "propagation_quality, is calibrated on (default 30)")
    segment.add_argument("--regions", default="1x1", metavar="RxC", help="region grid, each with its own key frames (DVSNet: 2x2)")
    segment.add_argument("--overlap", type=int, default=64, help="pixels shared by neighbouring regions (default 64)")
    segment.add_argument("--compare-every-frame", action="store_true",
                         help="also run the model on every frame: agreement with its predictions, exact speedup")
    segment.add_argument("--fps", type=float, default=None, help="output frame rate when the source has none (image folders: 30)")
    segment.add_argument("--frames", type=_positive, default=None, help="stop after this many frames")
    segment.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    export = sub.add_parser("export-default", help="install trained models as the shipped default (see docs/model_card.md)")
    export.add_argument("--dff", required=True, help="model.keras of a 'train dff' run (11 CamVid classes)")
    export.add_argument("--decision", required=True, help="model.keras of a 'train decision' run on that model")
    export.add_argument("--propagation-flow", default=None,
                        help="set the model's propagation flow: network (the flow net) or dis (OpenCV DIS)")
    export.add_argument("--dis-downscale", type=_positive, default=None, help="with --propagation-flow dis (default 8)")
    export.add_argument("--dis-preset", default=None, help="with --propagation-flow dis: ultrafast, fast (default), medium")

    macs = sub.add_parser("macs", help="GMACs of every network and DFF's cost ratios")
    macs.add_argument("--height", type=_positive, default=1024)
    macs.add_argument("--width", type=_positive, default=2048)

    train = sub.add_parser("train", help="training programs (resume from the last checkpoint in --out)")
    train_sub = train.add_subparsers(dest="program", required=True)
    flow = train_sub.add_parser("flow", help="flow-network pretraining on FlyingChairs-style pairs")
    dff = train_sub.add_parser("dff", help="end-to-end DFF on (key, current) pairs, 0 <= offset <= 9")
    decision = train_sub.add_parser("decision", help="DVSNet's decision network from any videos")
    features = train_sub.add_parser("features", help="the feature net + head on single frames")
    quality = train_sub.add_parser("quality", help="the propagation-quality predictor from labelled clips and unlabelled videos")
    for program in (features, flow, dff, decision, quality):
        program.add_argument("--out", required=True, help="run folder: checkpoints, logs, final model")
        program.add_argument("--config", default="default", help="a preset (smoke, default) or a JSON file")
        program.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
        program.add_argument(
            "--data-root", default=None,
            help="the real data folder (default: $ADAPTIVE_DFF_DATA, else ../shared/data if it exists)",
        )

    bench = sub.add_parser("bench", help="benchmarks printing ratios measured in one run")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    warp = bench_sub.add_parser("warp", help="our warp vs chunked cv2.remap and an element-wise op")
    warp.add_argument("--shape", type=_positive, nargs=4, default=[1, 64, 128, 1024], metavar=("B", "H", "W", "C"))
    warp.add_argument("--repeats", type=_positive, default=20)
    model = bench_sub.add_parser("model", help="latency of each DFF part, cost ratio r, ideal speedup")
    model.add_argument("--feature", default="resnet101", help="compact, resnet50 or resnet101")
    model.add_argument("--flow", default="flownet_s", help="flownet_s, flownet_half, flownet_quarter or flownet_inception")
    model.add_argument("--height", type=_positive, default=512)
    model.add_argument("--width", type=_positive, default=1024)
    model.add_argument("--repeats", type=_positive, default=5)
    sched = bench_sub.add_parser("schedulers", help="decision cost of each policy vs a compact key-frame step")
    sched.add_argument("--repeats", type=_positive, default=20)
    runner = bench_sub.add_parser("runner", help="FixedInterval speedup over per-frame inference vs DFF's ideal")
    runner.add_argument("--frames", type=_positive, default=200)
    runner.add_argument("--interval", type=_positive, default=10)
    runner.add_argument("--height", type=_positive, default=256)
    runner.add_argument("--width", type=_positive, default=512)
    export_bench = bench_sub.add_parser(
        "export", help="the exported SavedModel and its TFLite conversion vs the library: speed and agreement")
    export_bench.add_argument("--repeats", type=_positive, default=10)
    export_bench.add_argument("--data-root", default=None, help="the real data folder (holding camvid/)")
    dff_bench = bench_sub.add_parser(
        "dff", help="the shipped model on CamVid's val clip: ms per stage, r, speedups at intervals 5 and 10")
    dff_bench.add_argument("--frames", type=_positive, default=60)
    dff_bench.add_argument("--passes", type=_positive, default=2)
    dff_bench.add_argument("--data-root", default=None, help="the real data folder (holding camvid/)")
    train_bench = bench_sub.add_parser("train", help="end-to-end DFF training step vs a per-frame step")
    train_bench.add_argument("--batch", type=_positive, default=2)
    train_bench.add_argument("--height", type=_positive, default=256)
    train_bench.add_argument("--width", type=_positive, default=512)
    train_bench.add_argument("--repeats", type=_positive, default=10)
    memory = bench_sub.add_parser("memory", help="resident memory growth over a long stream")
    memory.add_argument("--frames", type=_positive, default=10_000)
    for command in (macs, warp, model, sched, runner, train_bench, memory):
        command.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                             help="the same figures as JSON: on stdout (the table then goes to stderr), "
                                  "or written to FILE")
    _add_verbosity(parser)
    return parser


def _add_verbosity(parser: argparse.ArgumentParser, top: bool = True) -> None:
    """``--quiet`` and ``--verbose`` on the command and on every subcommand (before or after it)."""
    group = parser.add_mutually_exclusive_group()
    default = False if top else argparse.SUPPRESS
    group.add_argument("-q", "--quiet", action="store_true", default=default, help="show warnings and errors only")
    group.add_argument("-v", "--verbose", action="store_true", default=default, help="also show debugging messages")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_verbosity(child, top=False)


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
    from adaptive_dff.compare.datasets import compare_datasets, dataset_kind
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
                           seed=args.seed, **{k: tuple(v) for k, v in given.items() if v is not None},
                           **{k: v for k, v in numbers.items() if v is not None})
    kind = dataset_kind(args.dataset, args.video, args.labels)
    config = resolve_defaults(config, [kind]).check()
    if config.flow == "exact" and kind != "synthetic":
        from adaptive_dff.compare.exact_flow import NoExactFlowError

        raise NoExactFlowError(f"--flow exact needs a data set with exact flow (the generated ones); "
                               f"{args.dataset or 'the videos'} has none")
    shard = parse_shard(args.shard)
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

        if config["videos"] and not config["video_model"]:
            from adaptive_dff.pretrained import default_model_path

            config["video_model"] = default_model_path()
        quality.run(config, args.out, data_root=root)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with console.console_logging(console.level_from(args.quiet, args.verbose)):
        return _run(args)


def _run(args) -> int:
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
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as error:
        print(f"adaptive-dff: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
