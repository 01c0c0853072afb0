"""The ``cmh`` command line (also ``python -m cmh``).

Each sub-command lives in its own module of this package and exposes ``register(subparsers)``.
Errors derived from :class:`cmh.errors.CMHError` (and missing files) print one line and exit 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cmh.errors import CMHError

#: Sub-command modules, in the order ``cmh --help`` lists them.
COMMAND_MODULES = (
    "run",
    "evaluate",
    "encode",
    "search",
    "gallery",
    "sweep",
    "listing",
    "data",
    "extract",
    "compare",
    "bench",
)


def build_parser() -> argparse.ArgumentParser:
    from cmh import __version__

    parser = argparse.ArgumentParser(
        prog="cmh",
        description="Cross-modal hashing: train methods, evaluate them under one protocol, build leaderboards.",
    )
    parser.add_argument("--version", action="version", version=f"cmh {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"cmh.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cmh`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except (CMHError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        if args.debug:
            raise
        msg = str(exc) if isinstance(exc, CMHError) else f"{exc.strerror}: '{exc.filename}'; check the path"
        print(f"cmh: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cmh: interrupted", file=sys.stderr)
        return 130
