"""Sharded evaluation (cmh.metrics.sharded) equals one process exactly: in-memory, packed, on-disk shards and two
torch.distributed gloo ranks."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from cmh.errors import CMHError
from cmh.metrics import evaluate
from cmh.metrics.sharded import evaluate_distributed, evaluate_sharded

KW = dict(
    topk=(1, 20, 150, 5000), pn_grid=[1, 10, 100, 333, 5000], ndcg_k=(3, 60, 5000), return_per_query=True
)


def make(nq=11, n=420, bits=64, classes=30, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.choice(np.array([-1, 1], np.int8), size=(nq, bits))
    base = q[rng.integers(0, nq, n)]
    db = np.where(rng.random((n, bits)) < 0.2, -base, base).astype(np.int8)  # many ties across shards
    ql = (rng.random((nq, classes)) < 0.1).astype(np.uint8)
    dbl = (rng.random((n, classes)) < 0.1).astype(np.uint8)
    ql[0] = 0  # one query without relevant items
    return q, db, ql, dbl


CUTS = (0, 97, 97, 300, 420)  # three shards and an empty one


def split(db, dbl, packed=False):
    parts = []
    for a, b in zip(CUTS[:-1], CUTS[1:], strict=True):
        codes = np.packbits(db[a:b] > 0, axis=1) if packed else db[a:b]
        parts.append((codes, dbl[a:b]))
    return parts


@pytest.mark.parametrize("bits", [64, 100])
def test_shards_equal_one_process_exactly(bits):
    q, db, ql, dbl = make(bits=bits)
    want = evaluate(q, db, ql, dbl, **KW)
    assert evaluate_sharded(q, ql, split(db, dbl), **KW) == want
    assert evaluate_sharded(q, ql, split(db, dbl, packed=True), **KW) == want
    no_labels = [(c, None) for c, _ in split(db, dbl, packed=True)]
    assert evaluate_sharded(q, ql, no_labels, db_labels=dbl, **KW) == want
    packed_q = np.packbits(q > 0, axis=1)
    assert evaluate_sharded(packed_q, ql, split(db, dbl), bits=bits, **KW) == want
    for metrics in (["map"], ["map_tie_avg", "pr_radius", "p_r2"], ["ndcg@k", "p_at_n"]):
        part = {**KW, "metrics": metrics}
        assert evaluate_sharded(q, ql, split(db, dbl), **part) == evaluate(q, db, ql, dbl, **part)


class DiskShards:
    """Packed shards in .npy files, memory-mapped one at a time (re-iterable, as a manifest reader would be)."""

    def __init__(self, paths, labels):
        self.paths, self.labels = paths, labels

    def __iter__(self):
        for path, lab in zip(self.paths, self.labels, strict=True):
            yield np.load(path, mmap_mode="r"), np.load(lab, mmap_mode="r")


def write_shards(tmp_path, db, dbl, cuts):
    paths, labs = [], []
    for s, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        paths.append(tmp_path / f"codes_{s}.npy")
        labs.append(tmp_path / f"labels_{s}.npy")
        np.save(paths[-1], np.packbits(db[a:b] > 0, axis=1))
        np.save(labs[-1], dbl[a:b])
    return DiskShards(paths, labs)


def test_three_disk_shards_equal_one_process(tmp_path):
    q, db, ql, dbl = make(seed=1)
    shards = write_shards(tmp_path, db, dbl, (0, 150, 151, 420))
    seen = []
    got = evaluate_sharded(q, ql, shards, progress=seen.append, **KW)
    assert got == evaluate(q, db, ql, dbl, **KW)
    assert len(seen) == 6  # three shards, read twice


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank, world, port, tmp, cuts):
    """One gloo rank: rank 0 holds shards [cuts[0], cuts[1]) and [cuts[1], cuts[2]), rank 1 [cuts[2], cuts[3])."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        q, db, ql, dbl = make(seed=2)
        mine = [(db[a:b], dbl[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
        mine = mine[:2] if rank == 0 else mine[2:]
        res = evaluate_distributed(q, ql, mine, num_threads=1, **KW)
        with open(f"{tmp}/rank{rank}.json", "w") as f:
            json.dump(res, f)
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_equal_one_process(tmp_path):
    q, db, ql, dbl = make(seed=2)
    mp.spawn(_rank_main, args=(2, _free_port(), str(tmp_path), (0, 130, 211, 420)), nprocs=2, join=True)
    want = json.loads(json.dumps(evaluate(q, db, ql, dbl, **KW)))
    for rank in range(2):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == want


def test_bad_shards_are_one_line_errors():
    q, db, ql, dbl = make()
    with pytest.raises(CMHError, match="re-iterable"):
        evaluate_sharded(q, ql, (s for s in split(db, dbl)))
    with pytest.raises(CMHError, match="bits"):
        evaluate_sharded(q, ql, [(db[:, :32], dbl)])
    packed = np.packbits(db > 0, axis=1)
    with pytest.raises(CMHError, match="past bit 60"):
        evaluate_sharded(q[:, :60], ql, [(packed, dbl)])
    with pytest.raises(CMHError, match="shard 0 labels"):
        evaluate_sharded(q, ql, [(db, dbl[:10])])
    with pytest.raises(CMHError, match="db_labels"):
        evaluate_sharded(q, ql, [(db, None)])
    with pytest.raises(CMHError, match="empty"):
        evaluate_sharded(q, ql, [])
