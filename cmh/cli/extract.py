"""``cmh extract``: placeholder until its module lands."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this command's parser(s) to ``sub``."""
