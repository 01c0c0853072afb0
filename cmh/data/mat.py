"""MATLAB ``.mat`` files, v5 (scipy) and v7.3 (HDF5 via h5py), read by one function.

MATLAB stores arrays column-major. A v7.3 file is an HDF5 file whose datasets h5py reads row-major, so every
axis comes out reversed: an ``(n, d)`` MATLAB matrix reads as ``(d, n)`` and an ``(n, h, w, 3)`` image stack as
``(3, w, h, n)``. :func:`read_mat` detects MATLAB-written HDF5 (the ``MATLAB 7.3 MAT-file`` header in the
512-byte user block, or the ``MATLAB_class`` attribute MATLAB puts on every variable) and reverses the axes
back, so both versions return the shapes MATLAB shows. MATLAB sparse matrices (v5: scipy sparse; v7.3: a
group with ``data``/``ir``/``jc`` and a ``MATLAB_sparse`` attribute) come back as ``scipy.sparse.csr_matrix``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from cmh.errors import DataError

MAT73_MAGIC = b"MATLAB 7.3 MAT-file"


def check_file(path: str | Path, what: str = "data file") -> Path:
    """``path`` as a :class:`Path` if it is a readable file, else a one-line :class:`DataError`."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{what} '{p}' does not exist; check the path (or set CMH_DATA)")
    if p.is_dir():
        raise DataError(f"{what} '{p}' is a folder, expected a file")
    try:
        with open(p, "rb"):
            pass
    except OSError as exc:
        raise DataError(f"{what} '{p}' cannot be read ({exc.strerror}); check its permissions") from None
    return p


def is_hdf5(path: str | Path) -> bool:
    """True when ``path`` is an HDF5 file (a MATLAB v7.3 ``.mat`` is one)."""
    import h5py

    try:
        return bool(h5py.is_hdf5(str(path)))
    except OSError:
        return False


#: The fix for a damaged ``.mat`` file.
MAT_REMAKE = "copy it again or save it again in MATLAB (save FILE -v7.3)"


def _h5_open(p: Path) -> Any:
    """``h5py.File(p, "r")``; a truncated or corrupt file is a one-line :class:`DataError`."""
    import h5py

    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise _damaged(p, exc) from None


def _damaged(p: Path, exc: BaseException) -> DataError:
    detail = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
    return DataError(
        f"'{p}' is truncated or corrupt, not a readable HDF5/MATLAB v7.3 file ({detail}); {MAT_REMAKE}"
    )


def _not_mat(p: Path, exc: BaseException) -> DataError:
    detail = (str(exc).strip().splitlines() or [""])[0]
    return DataError(
        f"'{p}' is not a readable MATLAB file, or it is truncated or corrupt ({exc.__class__.__name__}"
        f"{': ' + detail if detail else ''}); check that it is a .mat, else {MAT_REMAKE}"
    )


def mat_variables(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Variable names of a ``.mat`` file and their MATLAB shapes, without reading the data."""
    p = check_file(path, "MATLAB file")
    if is_hdf5(p):
        import h5py

        with _h5_open(p) as f:
            matlab = _written_by_matlab(p, f)
            out = {}
            for k, v in f.items():
                if k.startswith("#"):
                    continue
                if isinstance(v, h5py.Group) and "MATLAB_sparse" in v.attrs:
                    jc = v["jc"]
                    out[k] = (int(v.attrs["MATLAB_sparse"]), int(jc.shape[0]) - 1)
                elif isinstance(v, h5py.Dataset):
                    out[k] = tuple(reversed(v.shape)) if matlab else tuple(v.shape)
            return out
    import scipy.io as sio

    try:
        return {name: tuple(shape) for name, shape, _ in sio.whosmat(str(p))}
    except Exception as exc:  # scipy raises several types for corrupt files
        raise _not_mat(p, exc) from None


def read_mat(
    path: str | Path, names: Iterable[str] | None = None, optional: Iterable[str] = ()
) -> dict[str, Any]:
    """Read variables ``names`` (all when ``None``) of a v5 or v7.3 ``.mat`` file in MATLAB's axis order.

    Returns ``{name: array}`` (numpy arrays; sparse variables as ``scipy.sparse.csr_matrix``). A name in
    ``names`` that is missing raises a one-line :class:`DataError` naming the variables the file has; names in
    ``optional`` are returned when present and silently skipped otherwise. Name matching is exact first, then
    case-insensitive (``yall`` finds ``YAll``); the returned keys are the requested spellings.
    """
    p = check_file(path, "MATLAB file")
    wanted = None if names is None else list(names)
    opt = list(optional)
    if is_hdf5(p):
        return _read_h5(p, wanted, opt)
    return _read_v5(p, wanted, opt)


def _resolve(p: Path, have: list[str], wanted: list[str] | None, optional: list[str]) -> dict[str, str]:
    """Map requested names to the file's names (exact, then case-insensitive); error on missing required ones."""
    if wanted is None:
        return {h: h for h in have}
    lower = {h.lower(): h for h in have}
    out: dict[str, str] = {}
    missing = []
    for name in [*wanted, *optional]:
        hit = name if name in have else lower.get(name.lower())
        if hit is not None:
            out[name] = hit
        elif name in wanted:
            missing.append(name)
    if missing:
        has = ", ".join(sorted(have)) or "no variables"
        raise DataError(
            f"'{p.name}' lacks variable(s) {', '.join(missing)} (it has: {has}); "
            "check the file or name the right variable with 'key'"
        )
    return out


def _read_v5(p: Path, wanted: list[str] | None, optional: list[str]) -> dict[str, Any]:
    import scipy.io as sio

    try:
        have = [name for name, _, _ in sio.whosmat(str(p))]
    except Exception as exc:
        raise _not_mat(p, exc) from None
    mapping = _resolve(p, have, wanted, optional)
    try:
        raw = sio.loadmat(str(p), variable_names=sorted(set(mapping.values())))
    except Exception as exc:
        raise DataError(
            f"'{p}' is truncated or corrupt, not a readable MATLAB v5 file ({exc.__class__.__name__}); "
            f"{MAT_REMAKE}"
        ) from None
    out: dict[str, Any] = {}
    for name, key in mapping.items():
        x = raw[key]
        out[name] = x.tocsr() if sp.issparse(x) else np.asarray(x)
    return out


def _written_by_matlab(p: Path, f: Any) -> bool:
    with open(p, "rb") as fh:
        if fh.read(len(MAT73_MAGIC)) == MAT73_MAGIC:
            return True
    return any("MATLAB_class" in v.attrs for v in f.values())


def _read_h5(p: Path, wanted: list[str] | None, optional: list[str]) -> dict[str, Any]:
    import h5py

    with _h5_open(p) as f:
        have = [k for k in f.keys() if not k.startswith("#")]
        mapping = _resolve(p, have, wanted, optional)
        matlab = _written_by_matlab(p, f)
        out: dict[str, Any] = {}
        for name, key in mapping.items():
            node = f[key]
            if isinstance(node, h5py.Group) and "MATLAB_sparse" in node.attrs:
                out[name] = _h5_sparse(node)
            elif isinstance(node, h5py.Dataset):
                try:
                    x = np.asarray(node[()])
                except OSError as exc:
                    raise _damaged(p, exc) from None
                if matlab and x.ndim >= 2:
                    x = np.ascontiguousarray(x.transpose(tuple(range(x.ndim))[::-1]))
                matlab_class = node.attrs.get("MATLAB_class", b"") if matlab else b""
                if matlab_class in (b"logical", "logical"):
                    x = x.astype(np.uint8)
                elif matlab_class in (b"char", "char") and x.ndim == 2:
                    x = _char_rows(x)
                out[name] = x
            else:
                raise DataError(
                    f"variable '{key}' of '{p.name}' is a {type(node).__name__} (e.g. a MATLAB struct or cell), "
                    "not a numeric array; save it as a plain matrix"
                )
        return out


def _char_rows(x: np.ndarray) -> np.ndarray:
    """A MATLAB v7.3 char matrix (UTF-16 code units, ``(rows, length)``) as ``rows`` strings, so that it
    reads as text (as scipy reads v5 char arrays), not as numbers."""
    codes = np.ascontiguousarray(x.astype("<u4"))
    return codes.view(f"<U{max(1, x.shape[1])}")[:, 0] if x.shape[1] else np.full(x.shape[0], "")


def _h5_sparse(g: Any) -> sp.csr_matrix:
    """A MATLAB v7.3 sparse matrix (CSC: ``ir`` row indices, ``jc`` column pointers) as CSR."""
    n_rows = int(g.attrs["MATLAB_sparse"])
    jc = np.asarray(g["jc"][()], dtype=np.int64)
    ir = np.asarray(g["ir"][()], dtype=np.int64) if "ir" in g else np.zeros(0, np.int64)
    data = np.asarray(g["data"][()]) if "data" in g else np.ones(len(ir))
    return sp.csc_matrix((data, ir, jc), shape=(n_rows, len(jc) - 1)).tocsr()


def read_mat_slice(path: str | Path, name: str, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` (first MATLAB axis) of one variable, reading only those rows from a v7.3 file.

    For the DCMH ``images`` variable (``(n, h, w, 3)`` uint8 pixels, several GB) this lets feature extraction
    stream the images in batches. v5 files are read whole (scipy cannot slice) and then sliced.
    """
    p = check_file(path, "MATLAB file")
    if not is_hdf5(p):
        return read_mat(p, [name])[name][start:stop]
    with _h5_open(p) as f:
        have = [k for k in f.keys() if not k.startswith("#")]
        key = _resolve(p, have, [name], [])[name]
        node = f[key]
        try:
            if not _written_by_matlab(p, f):
                return np.asarray(node[start:stop])
            x = np.asarray(node[..., start:stop])  # MATLAB's first axis is HDF5's last
        except OSError as exc:
            raise _damaged(p, exc) from None
        return np.ascontiguousarray(x.transpose(tuple(range(x.ndim))[::-1]))
