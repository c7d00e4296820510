"""How the command line shows the library's log records, its progress bars and JSON reports.

Library code never prints: it logs through :mod:`logging` under its module's
name (``adaptive_dff...``, ``training...``, ``schedulers...``), and functions
that report progress take ``log`` (a ``log(message)`` callable, by default
their logger's ``info``). Each package's logger holds a
:class:`logging.NullHandler`, so an application that does not configure
logging sees nothing; one that does gets every record, e.g.
``logging.getLogger("training").setLevel(logging.INFO)``.

The ``adaptive-dff`` command installs :func:`console_logging` for the
duration of a command: records at ``INFO`` and ``DEBUG`` are printed as
plain lines on stdout (what the command printed before it logged),
``WARNING`` and above on stderr, prefixed with ``warning:`` or ``error:``.
``--quiet`` shows warnings and errors only, ``--verbose`` adds the
``DEBUG`` records. Python warnings raised in the three packages (a video
that stops decoding early, say) are shown as such ``warning:`` lines too.
While it is installed the packages' records stop there and do not reach the
root logger's handlers (so an application that calls ``adaptive_dff.cli.main``
under its own root logging sees them on the console only).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import sys
import time
import warnings
from typing import Iterator

PACKAGES = ("adaptive_dff", "training", "schedulers")


class ConsoleHandler(logging.Handler):
    """``INFO``/``DEBUG`` records as plain lines on (the current) ``sys.stdout``; ``WARNING`` and
    above on ``sys.stderr`` with their level as a prefix. Streams are looked up at each record, so
    :func:`contextlib.redirect_stdout` and test captures apply."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if record.levelno >= logging.WARNING:
                prefix = "error: " if record.levelno >= logging.ERROR else "warning: "
                stream = sys.stderr
                message = message if message.lower().startswith(prefix.strip()) else prefix + message
            else:
                stream = sys.stdout
            stream.write(message + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging's own convention
            self.handleError(record)


@contextlib.contextmanager
def console_logging(level: int = logging.INFO) -> Iterator[ConsoleHandler]:
    """Show the three packages' records at ``level`` and above on the console while the block runs;
    afterwards the loggers are as they were. Meanwhile their records stop at the console and do not
    reach the root logger: a library that configures it on the way (TensorFlow's checkpoint saver
    does, through absl's ``logging.basicConfig``) would print each of them a second time."""
    handler = ConsoleHandler(level)
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = []
    for name in PACKAGES:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        logger.setLevel(level)
        logger.addHandler(handler)
        logger.propagate = False
    shown = warnings.showwarning
    warnings.showwarning = _show_own_warnings(shown)
    try:
        yield handler
    finally:
        warnings.showwarning = shown
        for logger, previous, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(previous)
            logger.propagate = propagate


def _show_own_warnings(shown):
    """A ``warnings.showwarning`` that turns a warning of the three packages (of a category they
    define, as a truncated video's, or raised in their files) into a ``warning:`` line of the
    console, without Python's file and source line; any other warning goes to ``shown``."""
    roots = []
    for name in PACKAGES:  # the packages' own folders, found without importing them
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):  # not installed (the schedulers alone, say)
            spec = None
        roots += [os.path.join(os.path.abspath(p), "") for p in (spec.submodule_search_locations or [])] if spec else []
    roots = tuple(roots)

    def show(message, category, filename, lineno, file=None, line=None):
        ours = getattr(category, "__module__", "").split(".")[0] in PACKAGES  # e.g. VideoDecodeWarning
        if ours or os.path.abspath(os.fspath(filename)).startswith(roots):
            logging.getLogger(PACKAGES[0]).warning(str(message))
        else:
            shown(message, category, filename, lineno, file, line)

    return show


def level_from(quiet: bool = False, verbose: bool = False) -> int:
    """The console level of ``--quiet`` (``WARNING``), ``--verbose`` (``DEBUG``) or neither (``INFO``)."""
    if quiet and verbose:
        raise ValueError("give --quiet or --verbose, not both")
    return logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO


class Progress:
    """A one-line progress bar with the time left, on ``stream`` (stderr): redrawn in place on a
    terminal, else printed at every tenth of the way."""

    def __init__(self, total: int, stream=None, enabled: bool = True):
        """``total``: frames expected (0: unknown, no time left then)."""
        self.total, self.stream, self.enabled = total, stream or sys.stderr, enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self.last_tenth = -1

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        if self.total > 0:
            share = min(done / self.total, 1.0)
            bar = "#" * int(30 * share) + "-" * (30 - int(30 * share))
            left = (self.total - done) / rate if rate > 0 else float("nan")
            text = f"[{bar}] {done}/{self.total} frames  {rate:.1f} frames/s  ~{_duration(left)} left"
            tenth = int(10 * share)
        else:
            text = f"{done} frames  {rate:.1f} frames/s  {_duration(elapsed)} elapsed"
            tenth = done // 100
        if self.tty:
            self.stream.write("\r" + text + "\033[K")
            self.stream.flush()
        elif tenth != self.last_tenth:
            self.last_tenth = tenth
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# What the command line shows besides log records: a progress bar, JSON reports.


def jsonable(value):
    """``json.dumps`` fallback for numpy scalars and arrays."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def reported(args, name: str, run):
    """Run ``run()`` (which logs its table) and, with ``--json``, report what it returns as JSON:
    ``{"command", "arguments", "version", "results"}`` on stdout (the table moved to stderr) or in a
    file. ``args`` is the command's :class:`argparse.Namespace`."""
    import json

    if not getattr(args, "json", None):
        return run()
    if args.json == "-":
        with contextlib.redirect_stdout(sys.stderr):
            results = run()
    else:
        results = run()
    from adaptive_dff import __version__

    arguments = {k: v for k, v in vars(args).items() if k not in ("command", "bench", "json")}
    text = json.dumps({"command": name, "arguments": arguments, "version": __version__, "results": results},
                      indent=2, default=jsonable)
    if args.json == "-":
        print(text)  # the data itself, shown even with --quiet
    else:
        from schedulers.files import write_bytes_atomic

        write_bytes_atomic(args.json, (text + "\n").encode())
    return results
