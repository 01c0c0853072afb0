"""What every ``cmh bench`` target shares: the ``--json FILE`` report (arguments, machine, results) and
the peak-memory measurement from the kernel's counters (:class:`PeakRSS`)."""

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


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (Linux), e.g. ``VmRSS`` or ``VmHWM``."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class PeakRSS:
    """Peak resident-memory growth of a block, in MiB, from the kernel's counters (Linux).

    ``with PeakRSS() as peak: work()`` then ``peak.mib``: the high-water mark (``VmHWM``, reset on entry
    through ``/proc/self/clear_refs``) minus the resident size on entry — every allocation counts (NumPy,
    BLAS work buffers, torch), at no cost to the timed code. ``mib`` is None where ``/proc`` is missing.
    """

    def __enter__(self) -> PeakRSS:
        self.mib: float | None = None
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
            self._before: int | None = status_kib("VmRSS")
        except OSError:
            self._before = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._before is not None:
            self.mib = (status_kib("VmHWM") - self._before) / 1024


def write_report(path: str | Path, args: argparse.Namespace, **results: Any) -> None:
    """Write ``{"args": ..., "machine": ..., **results}`` as indented JSON to ``path`` (atomically)."""
    payload = {
        "args": {k: v for k, v in vars(args).items() if k != "func"},
        "machine": machine_info(),
        **results,
    }
    atomic_write_text(path, json.dumps(payload, indent=2, default=str))
