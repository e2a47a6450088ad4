"""What every script shares: the exit codes, Ctrl-C handling and argparse value types.

Exit codes, the same for every script:

- 0 (:data:`EXIT_OK`): done;
- 1 (:data:`EXIT_FAILED`): the stage stopped on its inputs (data, checkpoint, earlier outputs),
  explained in one ``error: ...`` line; for batch commands (``predict.py``), some items failed;
- 2 (:data:`EXIT_USAGE`): the command itself is wrong: a bad flag value (argparse's usage
  error) or a setting the package refuses (:class:`~pneumocam.errors.ConfigError`);
- 130 (:data:`EXIT_INTERRUPTED`): Ctrl-C.

Each script ends in ``run_main(main)``: an interrupted run prints one line and exits with
130 (the shell's code for SIGINT) instead of a traceback. Every output file is written
atomically (:mod:`pneumocam.atomic`), so an interrupted stage leaves the previous complete
files or none, never a half-written one.

The argparse types turn a bad value into argparse's usual one-line usage error (exit 2)
before any work starts: ``--n-boot 0``, ``--lr inf``, ``--run-name ../x``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Callable, Collection
from typing import Any

from . import paths
from .errors import ConfigError, PneumocamError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def report_error(exc: PneumocamError) -> int:
    """Print ``error: <message>`` on stderr and return the exit code for it (1, or 2 for a
    :class:`~pneumocam.errors.ConfigError`)."""
    print(f"error: {exc}", file=sys.stderr, flush=True)
    return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED


def run_main(main: Callable[[], int], resume_hint: str = "rerun the same command") -> None:
    """``sys.exit(main())``, with Ctrl-C reported in one line and exit status 130."""
    try:
        code = main()
    except KeyboardInterrupt:
        print(f"\ninterrupted; {resume_hint}.", file=sys.stderr, flush=True)
        code = EXIT_INTERRUPTED
    sys.exit(code)


def config_defaults(config_class: type) -> dict[str, Any]:
    """``{field: default}`` of a configuration dataclass: the one place a stage's defaults are
    written; its script's argparse reads them from here (fields without a default are left out)."""
    return {f.name: f.default for f in dataclasses.fields(config_class)
            if f.default is not dataclasses.MISSING}


def check_choice(flag: str, value: Any, choices: Collection[Any]) -> None:
    """Refuse a setting outside ``choices``, naming its flag ``--<flag>`` and the choices.

    Raises:
        ConfigError: ``--<flag> <value!r>: expected one of <choices>.``
    """
    if value not in choices:
        raise ConfigError(f"--{flag} {value!r}: expected one of {choices}.")


def check_at_least(config: Any, minimum: int, *fields: str) -> None:
    """Refuse the first of ``config``'s ``fields`` below ``minimum`` (a None field, an unset
    optional setting, passes); the flag is the field's name with dashes.

    Raises:
        ConfigError: ``--<field-name> must be >= <minimum>.``
    """
    for name in fields:
        value = getattr(config, name)
        if value is not None and value < minimum:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= {minimum}.")


def _number(text: str, kind: type, minimum: float, expected: str, *, above: bool = False
            ) -> float | int:
    """``text`` as ``kind`` (int, or a finite float) of at least ``minimum`` (strictly above it
    with ``above``); any other value is argparse's usage error ``expected <expected>, got ...``."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    if value < minimum or (above and value == minimum):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer of at least 1 (counts: epochs, batch size, bootstrap resamples)."""
    return int(_number(text, int, 1, "an integer of at least 1"))


def non_negative_int(text: str) -> int:
    """An integer of at least 0 (seeds, worker counts, figure counts)."""
    return int(_number(text, int, 0, "a non-negative integer"))


def positive_float(text: str) -> float:
    """A finite number above 0 (learning rate)."""
    return float(_number(text, float, 0, "a finite number above 0", above=True))


def non_negative_float(text: str) -> float:
    """A finite number of at least 0 (weight decay)."""
    return float(_number(text, float, 0, "a finite number of at least 0"))


def run_name(text: str) -> str:
    """A run name (see :data:`pneumocam.paths.RUN_NAME_RULE`)."""
    try:
        return paths.check_run_name(text)
    except ConfigError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a run name: use {paths.RUN_NAME_RULE}") from None
