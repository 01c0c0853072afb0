"""``cmh bench TARGET``: speed/memory benchmarks; each target is a module in :mod:`cmh.bench`.

A target module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import cmh.bench


def _targets() -> dict[str, object]:
    return {
        m.name: importlib.import_module(f"cmh.bench.{m.name}")
        for m in pkgutil.iter_modules(cmh.bench.__path__)
        if not m.name.startswith("_")
    }


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="speed and memory benchmarks (ratios against reference code)")
    tsub = p.add_subparsers(dest="target", metavar="TARGET")
    for name, mod in _targets().items():
        tp = tsub.add_parser(name, help=getattr(mod, "HELP", ""))
        mod.add_arguments(tp)
        tp.set_defaults(func=mod.run)
