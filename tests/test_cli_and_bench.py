"""The command line and the benchmarks, on tiny shapes (speed is not asserted)."""

import logging
import pathlib
import re
import subprocess
import sys

import pytest

from adaptive_dff.bench.model import ideal_speedup
from adaptive_dff.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_bench_warp_prints_ratios_and_agrees_with_remap(caplog):
    from adaptive_dff.bench import warp

    caplog.set_level(logging.INFO, logger="adaptive_dff")
    result = warp.run(shape=(2, 8, 12, 9), repeats=2)
    out = caplog.text
    assert "ours vs cv2.remap (4-channel chunks):" in out and "ours / element-wise multiply:" in out
    assert result["max_abs_diff"] < 1e-5
    assert result["speedup_vs_remap"] > 0 and result["ratio_vs_elementwise"] > 0


def test_bench_model_reports_r_and_ideal_speedup(capsys):
    assert main(["bench", "model", "--feature", "compact", "--flow", "flownet_inception",
                 "--height", "128", "--width", "128", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    r = float(re.search(r"measured r = .* = ([0-9.]+)", out).group(1))
    assert r > 0
    speedup = float(re.search(r"l=10: ([0-9.]+)x", out).group(1))
    assert speedup == pytest.approx(ideal_speedup(10, r), rel=1e-2)


def test_ideal_speedup_formula():
    assert ideal_speedup(1, 0.3) == 1.0
    assert ideal_speedup(10, 0.0) == 10.0
    assert ideal_speedup(5, 0.25) == pytest.approx(5 / 2.0)


def test_bench_model_rejects_unknown_parts_and_sizes(capsys):
    assert main(["bench", "model", "--feature", "vgg"]) == 2
    assert "feature must be one of" in capsys.readouterr().err
    assert main(["bench", "model", "--feature", "compact", "--flow", "flownet_inception", "--height", "100"]) == 2
    assert "multiples of 128" in capsys.readouterr().err


def test_macs_and_bench_json_hold_the_figures_of_the_table(capsys, tmp_path):
    import json

    assert main(["macs", "--height", "128", "--width", "256", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # stdout is the JSON alone; the table went to stderr
    assert report["command"] == "macs" and report["arguments"]["height"] == 128
    figures = report["results"]
    assert "| feature: compact |" in captured.err and "| resnet101 | flownet_s |" in captured.err
    for name, gmacs in figures["feature_gmacs"].items():
        assert f"| feature: {name} | {gmacs:.2f} |" in captured.err
    row = next(r for r in figures["ratios"] if (r["feature"], r["flow"]) == ("resnet101", "flownet_s"))
    assert row["ours"] == pytest.approx(figures["feature_gmacs"]["resnet101"] / figures["flow_gmacs"]["flownet_s"])
    assert row["dff"] == 12.71 and row["ours_over_dff"] == pytest.approx(row["ours"] / 12.71)

    path = tmp_path / "model.json"
    assert main(["bench", "model", "--feature", "compact", "--flow", "flownet_inception",
                 "--height", "128", "--width", "128", "--repeats", "1", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    results = json.loads(path.read_text())["results"]
    assert f"measured r = (flow + warp + head) / (feature + head) = {results['r']:.4f}" in out
    assert results["ideal_speedup"]["10"] == pytest.approx(ideal_speedup(10, results["r"]))


def test_every_bench_command_takes_json():
    """The README says each benchmark takes --json: every bench subcommand's parser has it."""
    import argparse

    from adaptive_dff.cli_args import build_parser

    parser = build_parser()
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    bench = next(a for a in top.choices["bench"]._actions if isinstance(a, argparse._SubParsersAction))
    assert {"warp", "model", "schedulers", "runner", "export", "dff", "train", "memory"} <= set(bench.choices)
    for name in bench.choices:
        assert parser.parse_args(["bench", name, "--json", "out.json"]).json == "out.json", name


def test_help_does_not_import_tensorflow():
    code = "import sys; from adaptive_dff.cli import build_parser; build_parser(); assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_command_without_the_dependencies_stops_before_any_work(tmp_path):
    """An install made for the schedulers alone (numpy and OpenCV): a command names the packages it
    lacks and stops at once, with no traceback and nothing written; --help still works."""
    from tests.blocked_imports import WITHOUT_HEAVY_DEPENDENCIES

    out = tmp_path / "run"
    for argv in (["demo", "--frames", "4"], ["compare", "--out", str(out)]):
        code = WITHOUT_HEAVY_DEPENDENCIES + f"from adaptive_dff.cli import main; sys.exit(main({argv!r}))"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert (f"adaptive-dff {argv[0]} needs the package's dependencies, and tensorflow, keras, scikit-learn, "
                "matplotlib, pillow, tensorboard are not installed") in done.stderr
    assert not out.exists()
    code = WITHOUT_HEAVY_DEPENDENCIES + "from adaptive_dff.cli import main; main(['compare', '--help'])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and "--policies" in done.stdout, done.stderr


def test_a_broken_import_inside_an_installed_dependency_is_not_called_missing(monkeypatch):
    """Only a dependency that is not installed gets the named error: an import that fails inside an
    installed one (a moved TensorFlow module, say) keeps its own error."""
    import adaptive_dff.demo

    def broken(**_):
        raise ModuleNotFoundError("No module named 'tensorflow.moved'", name="tensorflow.moved")

    monkeypatch.setattr(adaptive_dff.demo, "run_demo", broken)
    with pytest.raises(ModuleNotFoundError, match="tensorflow.moved"):
        main(["demo", "--frames", "4"])


def test_version_prints_the_package_version():
    import adaptive_dff

    done = subprocess.run([sys.executable, "-m", "adaptive_dff.cli", "--version"], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert done.stdout.strip() == f"adaptive-dff {adaptive_dff.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", adaptive_dff.__version__)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{adaptive_dff.__version__}"' in pyproject  # one version, in both places


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_another_keras_backend_is_a_clear_error_at_import(backend):
    import os

    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)}
    for code in ("import adaptive_dff", "from adaptive_dff.cli import main", "import training.runtime"):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
        assert done.returncode != 0
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("ImportError: adaptive-dff needs Keras on its TensorFlow backend")
        assert repr(backend) in last and "KERAS_BACKEND=tensorflow" in last
    env["KERAS_BACKEND"] = "tensorflow"
    done = subprocess.run([sys.executable, "-c", "import adaptive_dff"], env=env, cwd=ROOT)
    assert done.returncode == 0


def test_keras_json_backend_is_read_without_importing_keras(tmp_path, monkeypatch):
    import adaptive_dff

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delitem(sys.modules, "keras", raising=False)
    assert adaptive_dff.keras_backend() == "tensorflow"  # no keras.json
    (tmp_path / "keras.json").write_text('{"backend": "jax", "floatx": "float32"}')
    assert adaptive_dff.keras_backend() == "jax"
    with pytest.raises(ImportError, match="'jax' \\(by Keras's configuration"):
        adaptive_dff.require_tensorflow_backend()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"^python3 -m venv .*$", readme, flags=re.M)
    assert len(commands) == 2, "the README gives exactly two set-up commands"
    test_command = [c for c in commands if "pytest" in c]
    assert len(test_command) == 1 and test_command[0] in ci


def test_bench_schedulers_reports_shares_of_a_key_frame_step(caplog):
    from adaptive_dff.bench import schedulers

    caplog.set_level(logging.INFO, logger="adaptive_dff")
    result = schedulers.run(sizes=((64, 128),), repeats=2)
    shares = result["64x128"]["share_of_key_frame_step"]
    assert result["64x128"]["ms"]["key-frame step, compact model"] > 0
    assert shares["key-frame step, compact model"] == 1.0
    assert {"FixedInterval(10)", "FrameDifference(pixel)", "FlowMagnitude", "DecisionNetworkScheduler(features)",
            "DecisionNetworkScheduler(quality)", "PropagationQuality", "PropagationQuality(key labels)",
            "KeyBudget(PropagationQuality(key labels))"} <= set(shares)
    assert "of a key-frame step" in caplog.text
    states = result["64x128"]["key_labels_decision_by_state_ms"]
    assert set(states) == {"in a tight loop", "after writing 50 MB", "after a key-frame step"}
    assert all(ms > 0 for ms in states.values()) and "by what ran before it" in caplog.text


def test_console_prints_each_record_once_when_the_root_logger_is_configured_on_the_way(capsys):
    """absl (under TensorFlow's checkpoint saver) calls ``logging.basicConfig`` in the middle of a
    command; the packages' records must not reach that root handler too."""
    import io

    from adaptive_dff.console import PACKAGES, console_logging

    root_stream = io.StringIO()
    root_handler = logging.StreamHandler(root_stream)
    logger = logging.getLogger("training.flow")
    before = [logging.getLogger(name).propagate for name in PACKAGES]
    try:
        with console_logging():
            logging.getLogger().addHandler(root_handler)  # what basicConfig does
            logger.info("step 11/20 loss 10.9")
            logging.getLogger("schedulers.budget").warning("a region kept")
        out, err = capsys.readouterr()
        assert out.count("step 11/20 loss 10.9") == 1 and err.count("warning: a region kept") == 1
        assert root_stream.getvalue() == ""
        assert [logging.getLogger(name).propagate for name in PACKAGES] == before  # as before the command
    finally:
        logging.getLogger().removeHandler(root_handler)


def test_interleaved_timing_draws_a_new_order_every_round():
    """Each round runs every candidate once; no candidate keeps its place (a call after
    TensorFlow's work pays for its spinning threads, so a fixed order would bias the medians)."""
    from adaptive_dff.bench.timing import time_interleaved

    calls = []
    names = [f"c{i}" for i in range(5)]
    times = time_interleaved({n: (lambda n=n: calls.append(n)) for n in names}, repeats=30, warmup=0)
    assert set(times) == set(names) and all(t >= 0 for t in times.values())
    rounds = [calls[i:i + 5] for i in range(0, len(calls), 5)]
    assert len(rounds) == 30 and all(sorted(r) == names for r in rounds)
    assert {r[0] for r in rounds} == set(names)  # every candidate comes first in some round
    followers = {(a, b) for r in rounds for a, b in zip(r, r[1:])}
    assert all(len({a for a, b in followers if b == n}) >= 2 for n in names)
    again = []
    time_interleaved({n: (lambda n=n: again.append(n)) for n in names}, repeats=30, warmup=0)
    assert again == calls  # seeded: the same orders each run


def test_bench_runner_and_memory_on_a_short_clip(caplog):
    from adaptive_dff.bench import runner

    caplog.set_level(logging.INFO, logger="adaptive_dff")
    result = runner.run(frames=12, interval=4, height=128, width=128)
    assert result["ideal"] == pytest.approx(ideal_speedup(4, result["r"]))
    assert result["speedup"] > 0
    growth = runner.run_memory(frames=30, height=64, width=128, warmup=5)
    assert len(growth) == 2
    for figures in growth.values():
        assert figures["growth_mb"] == pytest.approx(figures["rss_after_mb"] - figures["rss_before_mb"])
    assert "% of ideal" in caplog.text and "growth MB" in caplog.text
    # progress before the table: the run says what it starts on
    assert caplog.text.index("  VideoRunner(compact model, FixedInterval(10)) ...") < caplog.text.index("growth MB")


def test_bench_train_compares_the_two_steps(caplog):
    from adaptive_dff.bench import train

    caplog.set_level(logging.INFO, logger="adaptive_dff")
    result = train.run(batch=1, height=128, width=128, repeats=1)
    assert result["ratio"] > 0 and set(result["times_ms"]) == {"end-to-end DFF step", "per-frame step"}
    assert "target <= 1.6x" in caplog.text
