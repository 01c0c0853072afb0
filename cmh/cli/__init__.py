"""The ``cmh`` command line (also ``python -m cmh``).

Each sub-command lives in its own module of this package and exposes ``register(subparsers)``.
Errors derived from :class:`cmh.errors.CMHError`, file-system errors and command-line mistakes (an unknown
option, a value argparse rejects) print one line and exit 2; ``--debug`` shows the traceback instead.
Warnings print as one ``cmh: warning: ...`` line each.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

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
    "records",
    "bench",
)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (``cmh run: error: ...; see `cmh run --help```)
    and exit 2, like every other bad input (argparse prints the whole usage block)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}; see `{self.prog} --help`", file=sys.stderr)
        raise SystemExit(2)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"cmh: warning: {message} ({category.__name__})", file=sys.stderr if file is None else file)


def build_parser() -> argparse.ArgumentParser:
    from cmh import __version__

    parser = OneLineParser(
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
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            return int(args.func(args) or 0)
    except (CMHError, OSError) as exc:
        if args.debug:
            raise
        print(f"cmh: error: {error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cmh: interrupted", file=sys.stderr)
        return 130


def error_line(exc: BaseException) -> str:
    """The one-line message for an error: a :class:`CMHError`'s text, or the path and reason of an OSError."""
    if isinstance(exc, CMHError):
        return " ".join(str(exc).split("\n"))
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or exc.__class__.__name__}: '{exc.filename}'; check the path"
    return f"{exc.__class__.__name__}: {exc}".splitlines()[0]
