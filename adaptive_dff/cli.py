"""The ``adaptive-dff`` command.

Heavy imports (TensorFlow) happen inside the subcommands, so ``--help`` is
instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence


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
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="a short end-to-end demo on a generated clip")
    demo.add_argument("--frames", type=_positive, default=60, help="clip length (default 60)")
    demo.add_argument("--height", type=_positive, default=256)
    demo.add_argument("--width", type=_positive, default=512)
    demo.add_argument("--seed", type=int, default=0)

    macs = sub.add_parser("macs", help="GMACs of every network and DFF's cost ratios")
    macs.add_argument("--height", type=_positive, default=1024)
    macs.add_argument("--width", type=_positive, default=2048)

    train = sub.add_parser("train", help="training programs (resume from the last checkpoint in --out)")
    train_sub = train.add_subparsers(dest="program", required=True)
    flow = train_sub.add_parser("flow", help="flow-network pretraining on FlyingChairs-style pairs")
    dff = train_sub.add_parser("dff", help="end-to-end DFF on (key, current) pairs, 0 <= offset <= 9")
    decision = train_sub.add_parser("decision", help="DVSNet's decision network from any videos")
    features = train_sub.add_parser("features", help="the feature net + head on single frames")
    for program in (features, flow, dff, decision):
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
    model.add_argument("--flow", default="flownet_s", help="flownet_s, flownet_half or flownet_inception")
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
    train_bench = bench_sub.add_parser("train", help="end-to-end DFF training step vs a per-frame step")
    train_bench.add_argument("--batch", type=_positive, default=2)
    train_bench.add_argument("--height", type=_positive, default=256)
    train_bench.add_argument("--width", type=_positive, default=512)
    train_bench.add_argument("--repeats", type=_positive, default=10)
    memory = bench_sub.add_parser("memory", help="resident memory growth over a long stream")
    memory.add_argument("--frames", type=_positive, default=10_000)
    return parser


def _data_root(given: Optional[str]) -> Optional[str]:
    if given:
        if not os.path.isdir(given):
            raise FileNotFoundError(f"--data-root {given!r} is not a folder")
        return given
    candidate = os.environ.get("ADAPTIVE_DFF_DATA") or os.path.join("..", "shared", "data")
    return candidate if os.path.isdir(candidate) else None


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
                print("note: no FlyingChairs examples found; pass --data-root to report end-point error")
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if args.command == "demo":
            from adaptive_dff.demo import run_demo

            run_demo(frames=args.frames, height=args.height, width=args.width, seed=args.seed)
        elif args.command == "train":
            _train(args)
        elif args.command == "macs":
            from adaptive_dff.bench.costs import cost_table

            print(cost_table(args.height, args.width))
        elif args.bench == "warp":
            from adaptive_dff.bench import warp

            warp.run(shape=tuple(args.shape), repeats=args.repeats)
        elif args.bench == "model":
            from adaptive_dff.bench import model

            model.run(feature=args.feature, flow=args.flow, height=args.height, width=args.width, repeats=args.repeats)
        elif args.bench == "schedulers":
            from adaptive_dff.bench import schedulers

            schedulers.run(repeats=args.repeats)
        elif args.bench == "runner":
            from adaptive_dff.bench import runner

            runner.run(frames=args.frames, interval=args.interval, height=args.height, width=args.width)
        elif args.bench == "train":
            from adaptive_dff.bench import train as train_bench

            train_bench.run(batch=args.batch, height=args.height, width=args.width, repeats=args.repeats)
        elif args.bench == "memory":
            from adaptive_dff.bench import runner

            runner.run_memory(frames=args.frames)
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"adaptive-dff: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
