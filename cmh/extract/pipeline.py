"""``cmh extract image``: a folder/list of images -> ``features.npz``, batched, resumable, never silent.

Pipeline: :func:`cmh.extract.images.list_images` -> a torch ``DataLoader`` with worker processes decoding and
resizing (``uint8`` tensors) -> :class:`cmh.extract.backbones.Backbone` on the chosen device (float16 on a
GPU, channels-last float32 on the CPU) -> chunks of ``chunk_size`` rows written to ``<out>.partial/`` (one
``.npz`` per chunk plus ``manifest.json``). An interrupted run continues from the chunks on disk when called
again with the same inputs and settings. The final file is written to a temporary name and renamed
(atomic), then the partial folder is removed. Images that cannot be read are skipped, listed in
``<out>.skipped.txt`` and announced on stderr.

Output ``.npz`` keys: ``features`` float32 ``(n, d)``, ``paths`` (relative names, same row order),
``backbone``, ``weights``, ``feature_layer``, ``feature_dim``, ``resize``, ``crop``, ``precision``,
``n_skipped``, ``cmh_version``, ``created`` (all plain numpy arrays, no pickling).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from cmh._atomic import atomic_path
from cmh.base import resolve_device
from cmh.errors import CMHError
from cmh.extract.backbones import Backbone, build_backbone
from cmh.extract.images import ImageFiles, ImageTransform, list_images


@dataclass
class ExtractResult:
    """What :func:`extract_images` did."""

    out: Path
    n_images: int
    n_written: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    images_per_s: float = 0.0
    resumed_chunks: int = 0
    feature_dim: int = 0
    device: str = "cpu"


def default_workers() -> int:
    """``min(4, cpu count)`` loader processes."""
    return min(4, os.cpu_count() or 1)


def _warn(msg: str) -> None:
    print(f"cmh: warning: {msg}", file=sys.stderr, flush=True)


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def _progress(enabled: bool):  # noqa: ANN202 - a rich Progress
    """A rich progress bar on stderr with images/s."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:  # noqa: ANN001
            speed = task.finished_speed or task.speed
            return Text("  -- img/s" if speed is None else f"{speed:7.1f} img/s", style="cyan")

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )
    return progress


def extract_images(
    images: str | Path,
    out: str | Path,
    backbone: str | Backbone = "efficientnet-lite0",
    *,
    weights: str | Path | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    device: str = "auto",
    fp16: bool | None = None,
    chunk_size: int = 1024,
    restart: bool = False,
    progress: bool = True,
    random_init: bool = False,
    on_chunk: Callable[[int], None] | None = None,
) -> ExtractResult:
    """Extract one feature row per readable image under ``images`` (folder or list file) into ``out`` (.npz).

    ``backbone`` is a name (built with ``weights``/``random_init``) or a ready :class:`Backbone` (which is then
    moved/converted in place: device, float16 on CUDA, channels-last on the CPU).
    ``fp16=None`` means float16 on CUDA and float32 elsewhere. ``on_chunk(k)`` is called after chunk ``k`` is
    on disk (tests use it to simulate an interruption). Returns an :class:`ExtractResult`.
    """
    if batch_size < 1 or chunk_size < 1:
        raise CMHError("--batch-size and --chunk-size must be positive")
    out = Path(out)
    root, names = list_images(images)
    workers = default_workers() if workers is None else max(0, int(workers))
    dev = resolve_device(device)
    half = (dev.type == "cuda") if fp16 is None else bool(fp16)
    if half and dev.type != "cuda":
        raise CMHError("float16 extraction needs a CUDA device; drop --fp16 or use --device cuda")
    model = (
        backbone
        if isinstance(backbone, Backbone)
        else build_backbone(backbone, weights, random_init=random_init)
    )
    model = model.eval().to(dev)
    if half:
        model = model.half()
    channels_last = dev.type == "cpu"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    transform: ImageTransform = model.transform
    precision = "float16" if half else "float32"

    partial = out.with_name(out.name + ".partial")
    manifest = {
        "format": 1,
        "backbone": model.name,
        "weights": model.weights,
        "resize": transform.resize,
        "crop": transform.crop,
        "precision": precision,
        "chunk_size": int(chunk_size),
        "n": len(names),
        "paths_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest(),
        "feature_dim": model.feature_dim,
        "root": str(root.resolve()),
    }
    if restart and partial.exists():
        shutil.rmtree(partial)
    if partial.exists():
        try:
            old = json.loads((partial / "manifest.json").read_text())
        except (OSError, ValueError):
            old = None
        if old != manifest:
            diff = sorted(k for k in manifest if old is None or old.get(k) != manifest[k])
            raise CMHError(
                f"'{partial}' holds an unfinished run with other settings ({', '.join(diff) or 'no manifest'}); "
                "rerun with the same settings to resume, or pass --restart to discard it"
            )
    else:
        partial.mkdir(parents=True)
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=1))

    n = len(names)
    n_chunks = (n + chunk_size - 1) // chunk_size
    chunk_file = [partial / f"chunk_{k:06d}.npz" for k in range(n_chunks)]
    todo = [k for k in range(n_chunks) if not chunk_file[k].exists()]
    resumed = n_chunks - len(todo)
    batches: list[list[int]] = []
    for k in todo:
        lo, hi = k * chunk_size, min(n, (k + 1) * chunk_size)
        batches += [list(range(s, min(hi, s + batch_size))) for s in range(lo, hi, batch_size)]
    dataset = ImageFiles([root / name for name in names], transform)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers if batches else 0,
        pin_memory=dev.type == "cuda",
    )
    done_before = n - sum(len(b) for b in batches)
    bar = _progress(progress)
    t0 = time.perf_counter()
    current: dict[int, list] = {}
    with bar, torch.inference_mode():
        task = bar.add_task(f"{model.name} features", total=n, completed=done_before)
        for idx, x, ok, err in loader:
            x = x.to(dev, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            feats = model(x).float().cpu().numpy()
            k = int(idx[0]) // chunk_size
            part = current.setdefault(k, [])
            part.append((idx.numpy(), feats, ok.numpy(), list(err)))
            bar.advance(task, len(idx))
            lo, hi = k * chunk_size, min(n, (k + 1) * chunk_size)
            if sum(len(p[0]) for p in part) == hi - lo:
                rows = np.concatenate([p[0] for p in part])
                order = np.argsort(rows, kind="stable")
                errors = [e for p in part for e in p[3]]
                _atomic_savez(
                    chunk_file[k],
                    index=rows[order],
                    features=np.concatenate([p[1] for p in part])[order].astype(np.float32),
                    ok=np.concatenate([p[2] for p in part])[order],
                    errors=np.array([errors[i] for i in order], dtype=str),
                )
                del current[k]
                if on_chunk is not None:
                    on_chunk(k)
    seconds = time.perf_counter() - t0

    feats, oks, errs = [], [], []
    for k in range(n_chunks):
        with np.load(chunk_file[k]) as z:
            feats.append(z["features"])
            oks.append(z["ok"])
            errs.append(z["errors"])
    features = np.concatenate(feats).astype(np.float32, copy=False)
    ok = np.concatenate(oks).astype(bool)
    errors = np.concatenate(errs)
    skipped = [(names[i], str(errors[i])) for i in np.flatnonzero(~ok)]
    if not ok.any():
        raise CMHError(
            f"none of the {n} images could be read (first: {skipped[0][0]}: {skipped[0][1]}); "
            "check the files and the --images path"
        )
    skipped_file = out.with_name(out.name + ".skipped.txt")
    if skipped:
        skipped_file.write_text("".join(f"{name}\t{why}\n" for name, why in skipped), encoding="utf-8")
        _warn(f"{len(skipped)} of {n} images could not be read and were skipped; see {skipped_file}")
    elif skipped_file.exists():
        skipped_file.unlink()
    from cmh import __version__

    _atomic_savez(
        out,
        features=features[ok],
        paths=np.array([nm for nm, good in zip(names, ok, strict=True) if good], dtype=str),
        backbone=np.array(model.name),
        weights=np.array(model.weights),
        feature_layer=np.array(model.feature_layer),
        feature_dim=np.array(model.feature_dim, dtype=np.int64),
        resize=np.array(transform.resize, dtype=np.int64),
        crop=np.array(transform.crop, dtype=np.int64),
        precision=np.array(precision),
        n_skipped=np.array(len(skipped), dtype=np.int64),
        cmh_version=np.array(__version__),
        created=np.array(datetime.now(timezone.utc).isoformat(timespec="seconds")),
    )
    shutil.rmtree(partial, ignore_errors=True)
    processed = n - done_before
    return ExtractResult(
        out=out,
        n_images=n,
        n_written=int(ok.sum()),
        skipped=skipped,
        seconds=seconds,
        images_per_s=processed / seconds if seconds > 0 and processed else 0.0,
        resumed_chunks=resumed,
        feature_dim=model.feature_dim,
        device=str(dev),
    )


def load_features(path: str | Path) -> tuple[np.ndarray, list[str], dict[str, object]]:
    """Read a ``cmh extract image`` file -> ``(features (n, d) float32, paths, metadata dict)``."""
    path = Path(path)
    if not path.is_file():
        raise CMHError(f"feature file '{path}' not found; create it with `cmh extract image`")
    with np.load(path) as z:
        if "features" not in z or "paths" not in z:
            raise CMHError(f"'{path}' is not a `cmh extract image` file (needs 'features' and 'paths')")
        meta = {k: z[k].item() for k in z.files if k not in ("features", "paths") and z[k].ndim == 0}
        return z["features"].astype(np.float32, copy=False), [str(p) for p in z["paths"]], meta
