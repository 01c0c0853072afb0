"""The JSON report every ``cmh bench`` target writes with ``--json FILE``: arguments, machine, results."""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

from cmh._atomic import atomic_write_text


def machine_info() -> dict[str, Any]:
    """CPU count, processor, platform and Python version of this machine (threads are the caller's)."""
    import torch

    return {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def write_report(path: str | Path, args: argparse.Namespace, **results: Any) -> None:
    """Write ``{"args": ..., "machine": ..., **results}`` as indented JSON to ``path`` (atomically)."""
    payload = {
        "args": {k: v for k, v in vars(args).items() if k != "func"},
        "machine": machine_info(),
        **results,
    }
    atomic_write_text(path, json.dumps(payload, indent=2, default=str))
