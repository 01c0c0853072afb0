"""Split protocols with seeds (docs/data.md).

- :func:`random_split` — MIRFLICKR-25K / NUS-WIDE / MS-COCO as in DCMH and SSAH (Table 1 of the SSAH
  paper): ``n_query`` rows sampled at random form the query set, the database is all the rest, and
  ``n_train`` training rows are sampled from the database.
- :func:`fixed_split` — Wikipedia style: the published test pairs are the queries, the training pairs
  are both the database and the training set.
"""

from __future__ import annotations

import numpy as np

from cmh.data.dataset import Split
from cmh.errors import DataError

#: The paper protocols: (query size, train size), database = the rest.
PROTOCOLS: dict[str, tuple[int, int]] = {
    "mirflickr25k": (2000, 10000),
    "nus-wide": (2100, 10500),
    "coco": (5000, 10000),
}


def random_split(n: int, n_query: int, n_train: int, seed: int = 0, protocol: str = "random") -> Split:
    """Query: ``n_query`` random rows; database: the rest; train: ``n_train`` random database rows."""
    if n_query <= 0 or n_train <= 0:
        raise DataError(f"split sizes must be positive, got query={n_query}, train={n_train}")
    if n_query >= n:
        raise DataError(f"query size {n_query} leaves no database rows out of {n}; use a smaller query set")
    if n_train > n - n_query:
        raise DataError(
            f"train size {n_train} exceeds the {n - n_query} database rows; use at most {n - n_query}"
        )
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    query = np.sort(perm[:n_query])
    database = np.sort(perm[n_query:])
    train = np.sort(rng.choice(database, size=n_train, replace=False))
    return Split(train=train, query=query, database=database, protocol=protocol, seed=seed)


def fixed_split(train_idx: np.ndarray, query_idx: np.ndarray, protocol: str = "fixed") -> Split:
    """Wikipedia style: database = train = ``train_idx``; queries = ``query_idx``."""
    train = np.asarray(train_idx, dtype=np.int64)
    return Split(
        train=train, query=np.asarray(query_idx, dtype=np.int64), database=train, protocol=protocol, seed=None
    )


def protocol_split(n: int, protocol: str, seed: int = 0) -> Split:
    """A paper protocol by name (see :data:`PROTOCOLS`); the train size is capped at the database size."""
    if protocol not in PROTOCOLS:
        from cmh.errors import did_you_mean

        raise DataError(f"unknown split protocol '{protocol}'{did_you_mean(protocol, PROTOCOLS)}")
    n_query, n_train = PROTOCOLS[protocol]
    return random_split(n, n_query, min(n_train, n - n_query), seed=seed, protocol=protocol)
