"""Packed-bit code shards on disk: how ``cmh encode`` writes a database too large for one process and how
``cmh eval --codes-dir`` / ``cmh search --codes-dir`` read it back.

A shard directory holds ``manifest.json``::

    {"format": "cmh-code-shards", "version": 1, "bits": K, "count": N, "modality": "image" | "text",
     "shard_size": S, "shards": [{"file": "shard-00000.npy", "count": n, "sha256": "..."}, ...],
     "labels": {"file": "labels.npy", "sha256": "...", "classes": c} | absent,
     "source": {"model": {...}, "features": {...}}}

and the shards: ``.npy`` files of ``np.packbits(codes > 0, axis=1)``, uint8 ``(n, ceil(K / 8))`` (NumPy's
default bit order: column ``c`` of the codes is bit ``7 - c % 8`` of byte ``c // 8``; :func:`unpack_codes`
inverts it). Rows are in global order: shard ``k`` holds rows ``k·S … k·S + n − 1``.

Writing (:func:`write_shards`) is resumable shard by shard: ``progress.json`` lists the settings and the
checksum of every finished shard; a rerun with the same settings skips each finished shard whose file still
has its checksum and re-encodes the others; the manifest is written last, so a directory with a manifest is
complete. Reading (:func:`iter_shards`, :func:`load_codes`) checks counts and shapes (and, with
``verify=True``, the checksums).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cmh._atomic import atomic_path, atomic_write_text
from cmh.errors import CMHError, DataError

FORMAT = "cmh-code-shards"
VERSION = 1
MANIFEST = "manifest.json"
PROGRESS = "progress.json"
DEFAULT_SHARD_SIZE = 100_000
DEFAULT_BATCH = 8192


def pack_codes(codes: np.ndarray) -> np.ndarray:
    """±1 (or 0/1) codes ``(n, K)`` -> packed uint8 ``(n, ceil(K / 8))`` (``np.packbits(codes > 0, axis=1)``)."""
    return np.packbits(np.asarray(codes) > 0, axis=1)


def unpack_codes(packed: np.ndarray, bits: int) -> np.ndarray:
    """Packed uint8 rows -> ±1 int8 codes ``(n, bits)``."""
    b = np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=1, count=bits)
    return (b.astype(np.int8) * 2 - 1).astype(np.int8)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class FeatureRows:
    """A 2-d feature matrix on disk, read ``rows(lo, hi)`` at a time without loading all of it.

    ``.npy`` is memory-mapped; ``.h5``/``.hdf5`` and MATLAB v7.3 ``.mat`` (HDF5) read only the requested rows
    through h5py (MATLAB's column-major storage handled by :func:`cmh.data.mat.read_mat_slice`); other
    formats cmh reads (``.npz``, v5 ``.mat``, text) are loaded whole. ``key`` names the array inside a
    container (optional when it holds one).
    """

    def __init__(self, path: str | Path, key: str | None = None) -> None:
        from cmh.data.loaders import read_array
        from cmh.data.mat import check_file, is_hdf5, mat_variables

        p = check_file(path, "feature")
        self.path, self.key = p, key
        self._array: Any = None
        self._npy = False
        if p.suffix.lower() in (".h5", ".hdf5", ".hdf", ".mat") and is_hdf5(p):
            shapes = mat_variables(p)
            if key is None:
                if len(shapes) != 1:
                    raise DataError(
                        f"'{p.name}' holds {len(shapes)} arrays ({', '.join(sorted(shapes)) or 'none'}); "
                        "name one with --key"
                    )
                key = next(iter(shapes))
            if key not in shapes:
                raise DataError(f"'{p.name}' has no array '{key}' (it has: {', '.join(sorted(shapes))})")
            self.key, shape = key, shapes[key]
        elif p.suffix.lower() == ".npy":
            self._npy = True  # mapped afresh for every block, so read pages never pile up in this process
            shape = read_array(p, what="feature").shape
        else:
            self._array = read_array(p, key, what="feature")
            shape = self._array.shape
        if len(shape) != 2:
            raise DataError(f"features in '{p.name}' must be a 2-d (n, d) matrix, got shape {tuple(shape)}")
        self.n, self.d = int(shape[0]), int(shape[1])

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo:hi`` as dense float32 ``(hi - lo, d)``; NaN/inf is a :class:`DataError`."""
        import scipy.sparse as sp

        if self._npy:
            from cmh.data.loaders import read_array

            mapped = read_array(self.path, what="feature")
            x = np.array(mapped[lo:hi], dtype=np.float32)
            del mapped
        elif self._array is not None:
            x = self._array[lo:hi]
            x = x.toarray() if sp.issparse(x) else x
        else:
            from cmh.data.mat import read_mat_slice

            x = read_mat_slice(self.path, str(self.key), lo, hi)
        x = np.asarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            bad = int(lo + np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
            raise DataError(f"'{self.path.name}' row {bad} has NaN/inf features; clean the file first")
        return x

    def describe(self) -> dict[str, Any]:
        st = self.path.stat()
        return {
            "path": str(self.path.resolve()),
            "key": self.key,
            "rows": self.n,
            "dim": self.d,
            "bytes": st.st_size,
            "mtime_ns": st.st_mtime_ns,
        }


def _progress_bar(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


def write_shards(
    out: str | Path,
    encode: Callable[[np.ndarray], np.ndarray],
    features: FeatureRows,
    bits: int,
    modality: str,
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    batch_size: int = DEFAULT_BATCH,
    labels: np.ndarray | None = None,
    source: dict[str, Any] | None = None,
    progress: bool = True,
    restart: bool = False,
    on_shard: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Encode ``features`` with ``encode`` (float32 ``(b, d)`` -> ±1 ``(b, bits)``) into shards under ``out``.

    Resumable (see module docstring); ``source`` (e.g. the model's identity and the feature file) must match
    an unfinished run's to resume it (``restart=True`` discards it). ``labels`` ``(N, c)`` go to
    ``labels.npy``. ``on_shard(k)`` is called after shard ``k`` is on disk. Returns the manifest.
    """
    if modality not in ("image", "text"):
        raise CMHError(f"modality must be image or text, got '{modality}'")
    if shard_size < 1 or batch_size < 1:
        raise CMHError("--shard-size and --batch-size must be positive")
    out = Path(out)
    n = features.n
    if labels is not None and (labels.ndim != 2 or labels.shape[0] != n):
        raise DataError(f"labels have shape {labels.shape}; expected ({n}, classes), one row per feature row")
    settings = {
        "bits": int(bits),
        "count": n,
        "modality": modality,
        "shard_size": int(shard_size),
        "source": source or {},
    }
    manifest_file, progress_file = out / MANIFEST, out / PROGRESS
    if restart:
        manifest_file.unlink(missing_ok=True)
        progress_file.unlink(missing_ok=True)
    done: dict[str, str] = {}
    old_settings = None
    if manifest_file.is_file():
        old = read_manifest(out)
        old_settings = {k: old.get(k) for k in settings}
        done = {s["file"]: s["sha256"] for s in old["shards"]}
    elif progress_file.is_file():
        try:
            state = json.loads(progress_file.read_text(encoding="utf-8"))
        except ValueError:
            state = {}
        old_settings, done = state.get("settings"), dict(state.get("done") or {})
    if old_settings is not None and old_settings != json.loads(json.dumps(settings)):
        diff = sorted(
            k for k in settings if (old_settings or {}).get(k) != json.loads(json.dumps(settings[k]))
        )
        raise CMHError(
            f"'{out}' holds codes made with other settings ({', '.join(diff)}); use another --out or "
            "pass --restart to replace them"
        )
    out.mkdir(parents=True, exist_ok=True)

    n_shards = max(1, -(-n // shard_size))
    names = [f"shard-{k:05d}.npy" for k in range(n_shards)]
    counts = [min(n, (k + 1) * shard_size) - k * shard_size for k in range(n_shards)]
    sums: dict[str, str] = {}
    for name in names:  # a finished shard is kept only when its file still has its checksum
        if name in done and (out / name).is_file() and file_sha256(out / name) == done[name]:
            sums[name] = done[name]
    todo = [k for k in range(n_shards) if names[k] not in sums]
    nbytes = -(-bits // 8)
    with _progress_bar(progress) as bar:
        task = bar.add_task(f"encoding {modality} codes", total=n, completed=n - sum(counts[k] for k in todo))
        for k in todo:
            lo = k * shard_size
            packed = np.empty((counts[k], nbytes), dtype=np.uint8)
            for s in range(0, counts[k], batch_size):
                e = min(counts[k], s + batch_size)
                codes = np.asarray(encode(features.rows(lo + s, lo + e)))
                if codes.shape != (e - s, bits) or not np.all((codes == 1) | (codes == -1)):
                    raise CMHError(
                        f"the encoder returned {codes.shape} codes (or values outside ±1) for {e - s} rows; "
                        f"expected ({e - s}, {bits})"
                    )
                packed[s:e] = pack_codes(codes)
                bar.advance(task, e - s)
            with atomic_path(out / names[k]) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, packed)
            sums[names[k]] = file_sha256(out / names[k])
            atomic_write_text(
                progress_file,
                json.dumps({"settings": settings, "done": sums}, indent=1, sort_keys=True) + "\n",
            )
            if on_shard is not None:
                on_shard(k)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "bits": int(bits),
        "count": n,
        "modality": modality,
        "shard_size": int(shard_size),
        "shards": [{"file": f, "count": c, "sha256": sums[f]} for f, c in zip(names, counts, strict=True)],
        "source": source or {},
    }
    if labels is not None:
        with atomic_path(out / "labels.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(labels, dtype=np.uint8))
        manifest["labels"] = {
            "file": "labels.npy",
            "sha256": file_sha256(out / "labels.npy"),
            "classes": int(labels.shape[1]),
        }
    atomic_write_text(manifest_file, json.dumps(manifest, indent=1) + "\n")
    progress_file.unlink(missing_ok=True)
    return manifest


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The checked manifest of a shard directory (one-line errors for anything wrong)."""
    d = Path(directory)
    f = d / MANIFEST
    if not f.is_file():
        hint = " (an unfinished `cmh encode`: rerun it to finish)" if (d / PROGRESS).is_file() else ""
        raise DataError(f"'{d}' has no {MANIFEST}{hint}; write shards with `cmh encode --out {d}`")
    try:
        m = json.loads(f.read_text(encoding="utf-8"))
    except ValueError:
        raise DataError(f"'{f}' is not valid JSON; rerun `cmh encode`") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise DataError(f"'{f}' is not a {FORMAT} manifest")
    if int(m.get("version", 0)) > VERSION:
        raise DataError(f"'{f}' is version {m.get('version')}; this cmh reads up to {VERSION}: upgrade cmh")
    shards = m.get("shards")
    if not isinstance(shards, list) or sum(int(s.get("count", 0)) for s in shards) != int(m.get("count", -1)):
        raise DataError(
            f"'{f}': the shard counts do not add up to count={m.get('count')}; rerun `cmh encode`"
        )
    return m


def iter_shards(directory: str | Path, verify: bool = False) -> Iterator[np.ndarray]:
    """Packed uint8 code rows ``(n_k, ceil(bits / 8))`` of every shard, in global row order (memory-mapped).

    ``verify=True`` also checks each shard's sha256 against the manifest first.
    """
    d = Path(directory)
    m = read_manifest(d)
    nbytes = -(-int(m["bits"]) // 8)
    for s in m["shards"]:
        p = d / s["file"]
        if not p.is_file():
            raise DataError(f"shard '{p}' is missing; rerun `cmh encode` to write it again")
        if verify and file_sha256(p) != s["sha256"]:
            raise DataError(f"shard '{p}' does not match its checksum; rerun `cmh encode` to rewrite it")
        try:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError):
            raise DataError(f"shard '{p}' is not a readable .npy file; rerun `cmh encode`") from None
        if arr.dtype != np.uint8 or arr.shape != (int(s["count"]), nbytes):
            raise DataError(
                f"shard '{p}' holds {arr.dtype} {arr.shape}, expected uint8 ({s['count']}, {nbytes}); "
                "rerun `cmh encode`"
            )
        yield arr


def load_labels(directory: str | Path) -> np.ndarray | None:
    """The shard directory's labels ``(N, c)`` uint8, or ``None`` when it has none."""
    d = Path(directory)
    m = read_manifest(d)
    info = m.get("labels")
    if not info:
        return None
    labels = np.load(d / info["file"], allow_pickle=False)
    if labels.shape[0] != int(m["count"]):
        raise DataError(f"'{d / info['file']}' has {labels.shape[0]} rows, the codes {m['count']}")
    return labels


def load_codes(
    directory: str | Path, verify: bool = True
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """All codes of a shard directory as ±1 int8 ``(N, bits)``, its labels (or ``None``) and its manifest.

    The one place ``cmh eval --codes-dir`` and ``cmh search --codes-dir`` read shards (in memory; a streaming
    evaluator can consume :func:`iter_shards` instead).
    """
    m = read_manifest(directory)
    bits = int(m["bits"])
    parts = [unpack_codes(p, bits) for p in iter_shards(directory, verify=verify)]
    codes = np.concatenate(parts) if parts else np.zeros((0, bits), np.int8)
    return codes, load_labels(directory), m
