"""The ``corredit`` command.

Usage::

    corredit world info --json
    corredit data info PATH --json

Each subpackage contributes its subcommands from a small ``commands`` module exposing
``register(subparsers)``; this file only assembles them (heavy imports happen inside the
handlers, so ``corredit --help`` stays fast).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

__all__ = ["main", "build_parser"]

#: Modules that contribute subcommands, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "corredit.models.commands",
    "corredit.world.commands",
    "corredit.data.commands",
    "corredit.stats.commands",
    "corredit.correlation_commands",
    "corredit.experiment_commands",
    "corredit.status_commands",
    "corredit.forecast_commands",
    "corredit.locate.commands",
    "corredit.train_commands",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="corredit",
        description="Measure and control the correlation between knowledge edits.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that command group is not part of this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv`` and run the chosen handler (``args.func``). A user's
    error (a bad value, a missing file, an unknown name, a busy run folder) prints one
    line and returns 2; Ctrl-C prints one line and returns 130; anything else is a bug
    and shows its traceback. The process's heap is made steady first
    (:func:`corredit.heap.steady_heap`)."""
    from corredit.heap import steady_heap

    parser = build_parser()
    args = parser.parse_args(argv)
    steady_heap()
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print(f"corredit {args.command}: interrupted (a run resumes where it stopped when "
              f"rerun)", file=sys.stderr)
        return 130
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        print(f"corredit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)


def _is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` reports a mistake in the user's input rather than a bug."""
    from corredit.registry import UnknownNameError

    busy = getattr(sys.modules.get("corredit.results"), "RunFolderBusy", ())
    return isinstance(exc, (ValueError, FileNotFoundError, UnknownNameError)) or \
        bool(busy) and isinstance(exc, busy)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
