"""The ``adaptive-dff`` command line's arguments: one function per command adds its options.

Only ``argparse`` is imported here, so ``adaptive-dff --help`` is instant;
:mod:`adaptive_dff.cli` runs the commands.
"""

from __future__ import annotations

import argparse


def positive(value: str) -> int:
    """An ``argparse`` type: a whole number > 0."""
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def add_json_option(command: argparse.ArgumentParser) -> None:
    """``--json [FILE]`` on a command that reports figures."""
    command.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                         help="the same figures as JSON: on stdout (the table then goes to stderr), "
                              "or written to FILE")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (``--quiet`` / ``--verbose`` accepted before or after a command)."""
    parser = argparse.ArgumentParser(
        prog="adaptive-dff",
        description="Fast video recognition by Deep Feature Flow and key-frame scheduling.",
    )
    from adaptive_dff import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_demo, _compare, _evaluate, _export, _segment, _export_default, _macs, _train, _bench):
        add(sub)
    _add_verbosity(parser)
    return parser


def _demo(sub) -> None:
    """The ``demo`` command: a short tour on a generated clip."""
    demo = sub.add_parser("demo", help="a short end-to-end demo on a generated clip")
    demo.add_argument("--frames", type=positive, default=60, help="clip length (default 60)")
    demo.add_argument("--height", type=positive, default=256)
    demo.add_argument("--width", type=positive, default=512)
    demo.add_argument("--seed", type=int, default=0)


def _compare(sub) -> None:
    """The ``compare`` command, the main job: policies at equal key-frame budgets."""
    compare = sub.add_parser(
        "compare", help="the main job: scheduling policies at equal key-frame budgets, with plots",
        description="Calibrate every policy to the same key-frame budgets on calibration clips, score it on "
                    "test clips, and write results.csv, results.json, pareto.png and summary.md to --out. "
                    "Rerunning the same command continues an interrupted run.",
    )
    compare.add_argument("--dataset", default=None, help="synthetic (default: three generated scenarios), synthetic-objects (the same clips "
                              "labelled by object, 0 the background: for --metric j), camvid-val (CamVid's 15 fps clip) or "
                              "camvid-1fps (CamVid's train/ and test/ frames as six streams at 1 fps; the shipped model was "
                              "fitted on most of them, so model mode flatters it there)")
    compare.add_argument("--video", nargs="+", default=None, metavar="FILE", help="video files (or folders of numbered images) instead: unlabelled, labelled by "
                              "the model with --labels model, or by label folders with --labels FOLDER ...")
    compare.add_argument("--labels", nargs="+", default=None, metavar="SOURCE",
                         help="with --video: none (default; unlabelled); model (labelled by the model's own "
                              "per-frame predictions, --model or the shipped one, cached: every oracle arm and "
                              "optimal then run on real footage; scores are agreement with that model, not "
                              "accuracy against ground truth); or one label folder per --video, in order (ground "
                              "truth: one image of class ids per frame, palette or single-channel, 255 void)")
    compare.add_argument("--clip-frames", type=positive, default=None,
                         help="with --labels or --dataset camvid-1fps: test clips of this many frames (default 100)")
    compare.add_argument("--video-scale", type=float, default=None, metavar="F",
                         help="with --labels model: shrink every frame by F in (0, 1] first (default: as decoded)")
    compare.add_argument("--data-root", default=None, help="the real data folder (for camvid-val and camvid-1fps)")
    compare.add_argument("--mode", default="oracle", help="oracle (default) or model")
    compare.add_argument("--policies", nargs="+", default=None, metavar="NAME",
                         help="fixed_interval copy frame_difference flow_magnitude propagation_quality "
                              "propagation_quality_hindsight (its hindsight rule) decision_network, each optionally with @budget (a KeyBudget per clip) or @shared (one "
                              "SharedBudget over the test clips), and optimal (oracle mode: the ceiling) (default: "
                              "fixed_interval copy frame_difference@budget flow_magnitude@budget propagation_quality@budget, "
                              "optimal in oracle mode, and "
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
    compare.add_argument("--metric", choices=("miou", "j"), default="miou",
                         help="accuracy as mIoU (default) or j: region similarity J of object video (DAVIS), the "
                              "mean over each test clip's objects (class 0 the background) of their mean IoU over "
                              "the frames; the optimal schedule and headroom follow it")
    compare.add_argument("--model", default=None,
                         help="a .keras DFF model (model mode's default: the shipped CamVid model on camvid-val, camvid-1fps "
                              "and videos, an untrained compact model on the synthetic sets)")
    compare.add_argument("--decision-model", default=None,
                         help="the decision_network arm's model: a .keras DecisionModel or a quality predictor "
                              ".json (default: the shipped quality predictor, the best learned model that ships)")
    compare.add_argument("--quality-model", default=None,
                         help="the propagation_quality arms' predictor: a .json from adaptive-dff train quality "
                              "(default: the shipped one)")
    compare.add_argument("--frames", type=positive, default=None, help="synthetic clip length / video frame limit")
    compare.add_argument("--out", default=None, help="results folder (default: a new folder under runs/)")
    compare.add_argument("--jobs", type=positive, default=1, help="cells run in this many processes")
    compare.add_argument("--shard", default=None, metavar="i/n", help="run only shard i of n of the cells")
    compare.add_argument("--merge", nargs="+", default=None, metavar="DIR", help="join shard folders into --out")
    compare.add_argument("--seed", type=int, default=0)


def _evaluate(sub) -> None:
    """The ``evaluate`` command: a model's mIoU on CamVid."""
    evaluate = sub.add_parser("evaluate", help="a model's mIoU on CamVid: per frame, and under DFF on the val clip")
    evaluate.add_argument("--model", default=None, help="a .keras DFF model (default: the shipped model)")
    evaluate.add_argument("--data-root", default=None, help="the real data folder (holding camvid/)")
    evaluate.add_argument("--split", default="test", help="the split scored per frame (default test)")
    evaluate.add_argument("--interval", type=positive, default=5, help="key-frame interval on the val clip (default 5)")
    evaluate.add_argument("--json", default=None, help="also write the figures to this JSON file")
    evaluate.add_argument("--propagation-flow", default=None,
                          help="override the model's propagation flow: network (its flow net) or dis (OpenCV DIS)")


def _export(sub) -> None:
    """The ``export`` command: the key-frame and propagation steps as a SavedModel (and TFLite)."""
    export_steps = sub.add_parser("export", help="save the key-frame and propagation steps as a TensorFlow SavedModel")
    export_steps.add_argument("--out", required=True, help="a new or empty folder, or an earlier export (replaced)")
    export_steps.add_argument("--model", default=None, help="a .keras DFF model (default: the shipped model)")
    export_steps.add_argument("--height", type=positive, default=360, help="frame height the signatures take (default 360)")
    export_steps.add_argument("--width", type=positive, default=480, help="frame width (default 480)")
    export_steps.add_argument("--propagation-flow", default=None, help="network or dis (default: the model's)")
    export_steps.add_argument("--tflite", action="store_true", help="also write key_step.tflite and propagate_step.tflite")


def _segment(sub) -> None:
    """The ``segment`` command: one video through the model under a policy."""
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
    segment.add_argument("--quality-model", default=None,
                         help="for propagation_quality: its predictor, a .json from adaptive-dff train quality "
                              "(default: the shipped one)")
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
    segment.add_argument("--calibration-frames", type=positive, default=30,
                         help="the first frames --key-fraction, or --budget's starting price for "
                              "propagation_quality, is calibrated on (default 30)")
    segment.add_argument("--regions", default="1x1", metavar="RxC", help="region grid, each with its own key frames (DVSNet: 2x2)")
    segment.add_argument("--overlap", type=int, default=64, help="pixels shared by neighbouring regions (default 64)")
    segment.add_argument("--compare-every-frame", action="store_true",
                         help="also run the model on every frame: agreement with its predictions, exact speedup")
    segment.add_argument("--fps", type=float, default=None, help="output frame rate when the source has none (image folders: 30)")
    segment.add_argument("--frames", type=positive, default=None, help="stop after this many frames")
    segment.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _export_default(sub) -> None:
    """The ``export-default`` command: install trained models as the shipped default."""
    export = sub.add_parser("export-default", help="install trained models as the shipped default (see docs/model_card.md)")
    export.add_argument("--dff", required=True, help="model.keras of a 'train dff' run (11 CamVid classes)")
    export.add_argument("--decision", required=True, help="model.keras of a 'train decision' run on that model")
    export.add_argument("--propagation-flow", default=None,
                        help="set the model's propagation flow: network (the flow net) or dis (OpenCV DIS)")
    export.add_argument("--dis-downscale", type=positive, default=None, help="with --propagation-flow dis (default 8)")
    export.add_argument("--dis-preset", default=None, help="with --propagation-flow dis: ultrafast (default), fast, medium")


def _macs(sub) -> None:
    """The ``macs`` command: GMACs and cost ratios."""
    macs = sub.add_parser("macs", help="GMACs of every network and DFF's cost ratios")
    macs.add_argument("--height", type=positive, default=1024)
    macs.add_argument("--width", type=positive, default=2048)
    add_json_option(macs)


def _train(sub) -> None:
    """The ``train`` programs, which share their options."""
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


def _bench(sub) -> None:
    """The ``bench`` commands, each printing ratios measured in one run."""
    bench = sub.add_parser("bench", help="benchmarks printing ratios measured in one run")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    warp = bench_sub.add_parser("warp", help="our warp vs chunked cv2.remap and an element-wise op")
    warp.add_argument("--shape", type=positive, nargs=4, default=[1, 64, 128, 1024], metavar=("B", "H", "W", "C"))
    warp.add_argument("--repeats", type=positive, default=20)
    model = bench_sub.add_parser("model", help="latency of each DFF part, cost ratio r, ideal speedup")
    model.add_argument("--feature", default="resnet101", help="compact, resnet50 or resnet101")
    model.add_argument("--flow", default="flownet_s", help="flownet_s, flownet_half, flownet_quarter or flownet_inception")
    model.add_argument("--height", type=positive, default=512)
    model.add_argument("--width", type=positive, default=1024)
    model.add_argument("--repeats", type=positive, default=5)
    sched = bench_sub.add_parser("schedulers", help="decision cost of each policy vs a compact key-frame step")
    sched.add_argument("--repeats", type=positive, default=20)
    runner = bench_sub.add_parser("runner", help="FixedInterval speedup over per-frame inference vs DFF's ideal")
    runner.add_argument("--frames", type=positive, default=200)
    runner.add_argument("--interval", type=positive, default=10)
    runner.add_argument("--height", type=positive, default=256)
    runner.add_argument("--width", type=positive, default=512)
    export_bench = bench_sub.add_parser(
        "export", help="the exported SavedModel and its TFLite conversion vs the library: speed and agreement")
    export_bench.add_argument("--repeats", type=positive, default=10)
    export_bench.add_argument("--data-root", default=None, help="the real data folder (holding camvid/)")
    dff_bench = bench_sub.add_parser(
        "dff", help="the shipped model on CamVid's val clip: ms per stage, r, speedups at intervals 5 and 10")
    dff_bench.add_argument("--frames", type=positive, default=60)
    dff_bench.add_argument("--passes", type=positive, default=2)
    dff_bench.add_argument("--data-root", default=None, help="the real data folder (holding camvid/)")
    train_bench = bench_sub.add_parser("train", help="end-to-end DFF training step vs a per-frame step")
    train_bench.add_argument("--batch", type=positive, default=2)
    train_bench.add_argument("--height", type=positive, default=256)
    train_bench.add_argument("--width", type=positive, default=512)
    train_bench.add_argument("--repeats", type=positive, default=10)
    memory = bench_sub.add_parser("memory", help="resident memory growth over a long stream")
    memory.add_argument("--frames", type=positive, default=10_000)
    for command in (warp, model, sched, runner, export_bench, dff_bench, train_bench, memory):
        add_json_option(command)


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

