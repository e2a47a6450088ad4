"""What every script shares: Ctrl-C handling and argparse value types that refuse bad flags.

Each script ends in ``run_main(main)``: an interrupted run prints one line and exits with
130 (the shell's code for SIGINT) instead of a traceback. Every output file is written
atomically (:mod:`pneumocam.atomic`), so an interrupted stage leaves the previous complete
files or none, never a half-written one.

The argparse types turn a bad value into argparse's usual one-line usage error (exit 2)
before any work starts: ``--n-boot 0``, ``--lr inf``, ``--run-name ../x``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

from . import paths
from .errors import ConfigError

EXIT_INTERRUPTED = 130


def run_main(main: Callable[[], int], resume_hint: str = "rerun the same command") -> None:
    """``sys.exit(main())``, with Ctrl-C reported in one line and exit status 130."""
    try:
        code = main()
    except KeyboardInterrupt:
        print(f"\ninterrupted; {resume_hint}.", file=sys.stderr, flush=True)
        code = EXIT_INTERRUPTED
    sys.exit(code)


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer of at least 1 (counts: epochs, batch size, bootstrap resamples)."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer of at least 0 (seeds, worker counts, figure counts)."""
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0 (learning rate)."""
    value = float(_number(text, float))
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a finite number above 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number of at least 0 (weight decay)."""
    value = float(_number(text, float))
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number of at least 0, got {text!r}")
    return value


def run_name(text: str) -> str:
    """A run name (see :data:`pneumocam.paths.RUN_NAME_RULE`)."""
    try:
        return paths.check_run_name(text)
    except ConfigError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a run name: use {paths.RUN_NAME_RULE}") from None
