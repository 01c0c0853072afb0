"""Atomic file writes: a temporary file in the target folder, then :func:`os.replace`.

A crash or an error while writing never leaves a partial file at the target path (the temporary file is
removed), and the finished file gets the usual permissions (``0o666`` minus the process umask), not the
private ``0o600`` of :func:`tempfile.mkstemp`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it becomes ``path``, on an error it is removed.

    The caller writes the whole file to the yielded path (any writer: ``np.savez``, ``torch.save``, ...).
    Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """:func:`torch.save` ``obj`` to ``path`` atomically (checkpoints, saved models); returns ``path``."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def read_torch_file(path: str | Path, missing: str, unreadable: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a missing file raises :class:`CMHError` with
    ``missing``, an unreadable one with ``unreadable`` (``{error}`` is replaced by the exception's class name)."""
    import torch

    from cmh.errors import CMHError

    if not Path(path).is_file():
        raise CMHError(missing)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file for the user
        raise CMHError(unreadable.format(error=exc.__class__.__name__)) from None
