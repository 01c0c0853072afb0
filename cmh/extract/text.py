"""``cmh extract text``: tags or captions -> bag-of-words, as the cross-modal hashing benchmarks build them.

- ``--field tags`` (DCMH, Jiang & Li, CVPR 2017, Sec. 4.1: MIRFLICKR-25K texts are binary presence vectors of
  the 1,386 most frequent tags; NUS-WIDE uses the 1,000 most frequent): each item's tags (a list, or a string
  split on commas/whitespace) are lower-cased; the ``N`` tags present in the most items are kept; values are
  0/1.
- ``--field captions`` (SSAH, Li et al., CVPR 2018, Sec. 4.1: MS-COCO texts are 2,000-d bag-of-words vectors):
  all captions of an item are joined; words are lower-cased tokens of >= 2 letters/digits with scikit-learn's
  English stop words removed; the ``N`` words present in the most items are kept; values are 0/1 by default
  (``binary=False`` gives counts).

Ties in frequency are broken alphabetically, so the vocabulary is deterministic; columns are ordered by
frequency (most frequent first). The matrix is stored sparse: the ``.npz`` holds ``data``, ``indices``,
``indptr``, ``shape`` and ``format`` (readable by ``scipy.sparse.load_npz``) plus ``vocabulary``, ``keys``
(one id per row, to align with images), ``field`` and ``binary``; the vocabulary is also written one term
per line to ``<out>.vocab.txt``.

Input formats (rows sharing a key are merged in order of first appearance, so one caption per line works):

- ``.jsonl``: one object per line; ``field`` holds a string or a list of strings; ``key`` (default: the
  first of ``image``, ``id``, ``key``, ``name`` present) identifies the item;
- ``.csv``: a header row; columns ``field`` and ``key`` as above;
- ``.txt``: one item per line (keys are the line numbers ``0, 1, ...``).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from cmh.errors import CMHError, DataError

KEY_CANDIDATES = ("image", "id", "key", "name", "file", "filename")
_TAG_SPLIT = re.compile(r"[,\s]+")


@dataclass
class TextFeatures:
    """A bag-of-words matrix with its vocabulary and row keys."""

    matrix: sp.csr_matrix  # (n, vocab) float32
    vocabulary: list[str]
    keys: list[str]
    field: str
    binary: bool

    def aligned_to(self, keys: Sequence[str]) -> sp.csr_matrix:
        """Rows reordered to match ``keys`` (e.g. image paths); :class:`DataError` if any key is missing."""
        pos = {k: i for i, k in enumerate(self.keys)}
        missing = [k for k in keys if k not in pos]
        if missing:
            raise DataError(
                f"{len(missing)} of {len(keys)} items have no text row (e.g. '{missing[0]}'); the text file's keys "
                f"(e.g. '{self.keys[0]}') must name the same items as the images"
            )
        return self.matrix[[pos[k] for k in keys]]


def read_items(path: str | Path, field: str, key: str | None = None) -> tuple[list[str], list[list[str]]]:
    """Read ``(keys, texts per key)`` from a jsonl/csv/txt file (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise CMHError(f"text input '{path}' not found")
    suffix = path.suffix.lower()
    groups: dict[str, list[str]] = {}
    if suffix == ".txt":
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            groups[str(i)] = [line]
        return list(groups), list(groups.values())
    if suffix in (".jsonl", ".ndjson", ".json"):
        records = []
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise CMHError(
                    f"{path}:{lineno}: not valid JSON; --input takes JSON Lines (one object per line)"
                ) from None
    elif suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            records = list(csv.DictReader(fh))
    else:
        raise CMHError(f"unsupported text input '{path.name}'; use .jsonl, .csv or .txt")
    if not records:
        raise CMHError(f"'{path}' holds no rows")
    first = records[0]
    if not isinstance(first, dict) or field not in first:
        have = sorted(first) if isinstance(first, dict) else []
        raise CMHError(f"'{path}' has no field '{field}' (fields: {', '.join(have)}); pass --field NAME")
    if key is None:
        key = next((k for k in KEY_CANDIDATES if k in first), None)
    if key is not None and key not in first:
        raise CMHError(
            f"'{path}' has no key field '{key}' (fields: {', '.join(sorted(first))}); pass --key NAME"
        )
    for i, rec in enumerate(records):
        value = rec.get(field)
        texts = [str(v) for v in value] if isinstance(value, list) else ["" if value is None else str(value)]
        groups.setdefault(str(i) if key is None else str(rec.get(key)), []).extend(texts)
    return list(groups), list(groups.values())


def _tag_tokens(doc: str) -> list[str]:
    return [t for t in _TAG_SPLIT.split(doc.lower()) if t]


def bag_of_words(
    texts: Sequence[Sequence[str]],
    mode: str = "captions",
    vocab_size: int = 2000,
    binary: bool = True,
) -> tuple[sp.csr_matrix, list[str]]:
    """Items (each a list of strings) -> ``(csr float32 (n, <= vocab_size), vocabulary)``.

    ``mode`` is ``"tags"`` (whole tags, no stop words) or ``"captions"`` (word tokens, English stop words
    removed); the ``vocab_size`` terms present in the most items are kept (ties alphabetical).
    """
    from sklearn.feature_extraction.text import CountVectorizer

    if vocab_size < 1:
        raise CMHError(f"--vocab-size must be positive, got {vocab_size}")
    if mode == "tags":
        docs = [" ".join(_tag_tokens(" ".join(t))) for t in texts]
        kwargs = {"tokenizer": str.split, "token_pattern": None, "lowercase": False}
    elif mode == "captions":
        docs = [" ".join(t) for t in texts]
        kwargs = {"stop_words": "english", "lowercase": True}
    else:
        raise CMHError(f"unknown text mode '{mode}'; use tags or captions")
    vec = CountVectorizer(binary=False, dtype=np.float32, **kwargs)
    try:
        counts = vec.fit_transform(docs).tocsr()
    except ValueError:
        raise CMHError("the texts contain no words to build a vocabulary from") from None
    terms = vec.get_feature_names_out()
    doc_freq = np.asarray((counts > 0).sum(axis=0)).ravel()
    order = np.lexsort((terms, -doc_freq))[:vocab_size]  # most frequent first, ties alphabetical
    matrix = counts[:, order].tocsr()
    if binary:
        matrix.data[:] = 1.0
    matrix.sort_indices()
    return matrix.astype(np.float32), [str(t) for t in terms[order]]


def extract_text(
    input: str | Path,
    out: str | Path | None = None,
    field: str = "captions",
    vocab_size: int = 2000,
    *,
    mode: str | None = None,
    key: str | None = None,
    binary: bool = True,
) -> TextFeatures:
    """Read ``input``, build the bag of words (``mode`` defaults to ``tags`` when ``field == "tags"``, else
    ``captions``) and, when ``out`` is given, write ``out`` (.npz) and ``<out>.vocab.txt``."""
    mode = mode or ("tags" if field == "tags" else "captions")
    keys, texts = read_items(input, field, key)
    matrix, vocab = bag_of_words(texts, mode=mode, vocab_size=vocab_size, binary=binary)
    feats = TextFeatures(matrix=matrix, vocabulary=vocab, keys=keys, field=field, binary=binary)
    if out is not None:
        save_text_features(feats, out)
    return feats


def save_text_features(feats: TextFeatures, out: str | Path) -> None:
    """Write the CSR parts, vocabulary and keys to ``out`` (atomic) and ``<out>.vocab.txt``."""
    from cmh.extract.pipeline import _atomic_savez

    out = Path(out)
    m = feats.matrix
    _atomic_savez(
        out,
        format=np.array("csr"),
        shape=np.array(m.shape, dtype=np.int64),
        data=m.data.astype(np.float32),
        indices=m.indices.astype(np.int32),
        indptr=m.indptr.astype(np.int64),
        vocabulary=np.array(feats.vocabulary, dtype=str),
        keys=np.array(feats.keys, dtype=str),
        field=np.array(feats.field),
        binary=np.array(feats.binary),
    )
    out.with_name(out.name + ".vocab.txt").write_text(
        "".join(f"{t}\n" for t in feats.vocabulary), encoding="utf-8"
    )


def load_text_features(path: str | Path) -> TextFeatures:
    """Read a file written by :func:`save_text_features`."""
    path = Path(path)
    if not path.is_file():
        raise CMHError(f"text feature file '{path}' not found; create it with `cmh extract text`")
    with np.load(path) as z:
        need = {"data", "indices", "indptr", "shape", "vocabulary", "keys"}
        if not need <= set(z.files):
            raise CMHError(
                f"'{path}' is not a `cmh extract text` file (missing {sorted(need - set(z.files))})"
            )
        m = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
        return TextFeatures(
            matrix=m,
            vocabulary=[str(v) for v in z["vocabulary"]],
            keys=[str(k) for k in z["keys"]],
            field=str(z["field"]) if "field" in z.files else "",
            binary=bool(z["binary"]) if "binary" in z.files else True,
        )
