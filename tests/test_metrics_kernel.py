"""The compiled CPU kernel (cmh.metrics._kernel) against the per-query reference loop and the torch path, to 1e-12,
on tie-heavy data, random shapes (bits 8-256, label widths 1-300), all-tied and zero-relevance cases."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cmh.metrics.retrieval as retrieval
from cmh.metrics import evaluate
from cmh.metrics.reference import reference_metrics

TOL = 1e-12


def make(nq, n, bits, classes, seed=0, density=0.15, flip=0.2):
    rng = np.random.default_rng(seed)
    q = rng.choice(np.array([-1, 1], np.int8), size=(nq, bits))
    base = q[rng.integers(0, nq, n)]
    db = np.where(rng.random((n, bits)) < flip, -base, base).astype(np.int8)  # near the queries: many ties
    ql = (rng.random((nq, classes)) < density).astype(np.uint8)
    dbl = (rng.random((n, classes)) < density).astype(np.uint8)
    return q, db, ql, dbl


def assert_same(a: dict, b: dict, tol: float = TOL) -> None:
    """Every key of two evaluate() results agrees to ``tol`` (lists and curves included)."""
    assert a.keys() == b.keys()
    for key, va in a.items():
        vb = b[key]
        if isinstance(va, dict):
            for sub in va:
                np.testing.assert_allclose(va[sub], vb[sub], atol=tol, rtol=0, err_msg=f"{key}.{sub}")
        else:
            np.testing.assert_allclose(va, vb, atol=tol, rtol=0, err_msg=key)


def check(q, db, ql, dbl, topk, pn, ndcg_k):
    kw = dict(topk=topk, pn_grid=pn, ndcg_k=ndcg_k, return_per_query=True)
    fast = evaluate(q, db, ql, dbl, **kw)
    assert_same(fast, evaluate(q, db, ql, dbl, _force_torch=True, **kw))
    ref = reference_metrics(q, db, ql, dbl, topk=topk, pn=pn, ndcg_k=ndcg_k)
    np.testing.assert_allclose(fast["ap_per_query"], ref["ap"], atol=TOL, rtol=0)
    np.testing.assert_allclose(fast["ap_tie_avg_per_query"], ref["ap_tie"], atol=TOL, rtol=0)
    for k in topk:
        assert abs(fast[f"map@{k}"] - ref[f"ap@{k}"].mean()) <= TOL
    for k in ndcg_k:
        assert abs(fast[f"ndcg@{k}"] - ref[f"ndcg@{k}"].mean()) <= TOL
    np.testing.assert_allclose(fast["p_at_n"]["precision"], ref["p_at_n"].mean(0), atol=TOL, rtol=0)
    return fast


@pytest.mark.parametrize(
    ("nq", "n", "bits", "classes"),
    [
        (7, 300, 64, 24),
        (5, 257, 128, 80),
        (4, 150, 8, 1),
        (3, 90, 200, 300),
        (6, 120, 256, 130),
        (2, 1, 16, 3),
        (3, 2_100, 64, 80),  # more than one block (BLOCK = 1,024) of the graded scan, the last one partial
    ],
)
def test_kernel_matches_reference_and_torch(nq, n, bits, classes):
    check(
        *make(nq, n, bits, classes, seed=n),
        topk=(1, 10, 60, 10_000),
        pn=[1, 5, 40, 10_000],
        ndcg_k=(1, 9, 100),
    )


def test_all_tied_and_zero_relevance():
    q, db, ql, dbl = make(6, 200, 32, 5, seed=1)
    db[:] = q[0]  # every item at the same distance from each query: the order is the index order
    ql[:2] = 0  # two queries without relevant items
    r = check(q, db, ql, dbl, topk=(1, 50, 200), pn=[1, 100, 200], ndcg_k=(10, 200))
    assert r["ap_per_query"][:2] == [0.0, 0.0] and r["n_zero_relevance"] >= 2
    rel = (dbl @ ql[2]) > 0
    hits = np.cumsum(rel)
    want = (hits[rel] / (np.flatnonzero(rel) + 1)).sum() / rel.sum()
    assert r["ap_per_query"][2] == pytest.approx(want, abs=TOL)


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 90),
    st.sampled_from([8, 13, 64, 100, 128, 256]),
    st.sampled_from([1, 2, 24, 81, 300]),
    st.floats(0.0, 0.6),
    st.sampled_from([0.0, 0.05, 0.3, 0.5]),
    st.integers(0, 10**6),
)
def test_kernel_properties(nq, n, bits, classes, density, flip, seed):
    q, db, ql, dbl = make(nq, n, bits, classes, seed=seed, density=density, flip=flip)
    ks = sorted({1, max(1, n // 3), n, n + 7})
    r = check(q, db, ql, dbl, topk=ks, pn=ks, ndcg_k=ks)
    # the stable mAP is map@n_db; P@n_db is the share of relevant items
    assert r["map"] == pytest.approx(r[f"map@{n}"], abs=TOL)
    share = ((ql.astype(int) @ dbl.T.astype(int)) > 0).mean(1).mean()
    assert r["p_at_n"]["precision"][-1] == pytest.approx(share, abs=TOL)


def test_metric_subsets_agree_with_the_full_set():
    """Every subset gives the full set's values bit for bit (mAP alone sums its terms over the records in index
    order, beside a top-k metric over the records in rank order: the same terms, the same fixed-point sum)."""
    q, db, ql, dbl = make(9, 400, 64, 12, seed=3)
    kw = dict(topk=(5, 50), pn_grid=[1, 20, 400], ndcg_k=(7,))
    full = evaluate(q, db, ql, dbl, **kw)
    for metrics in (
        ["map"],
        ["map@k"],
        ["p_at_n"],
        ["ndcg@k"],
        ["map_tie_avg", "p_r2"],
        ["pr_radius", "map"],
    ):
        part = evaluate(q, db, ql, dbl, metrics=metrics, **kw)
        for key, value in part.items():
            assert value == full[key], (metrics, key)


def test_without_numba_the_cpu_runs_the_torch_path(monkeypatch):
    q, db, ql, dbl = make(5, 120, 16, 4, seed=2)
    fast = evaluate(q, db, ql, dbl, return_per_query=True)
    monkeypatch.setattr(retrieval, "kernel_module", lambda: None)
    assert_same(evaluate(q, db, ql, dbl, return_per_query=True), fast)


def test_packing_is_bit_order_free():
    """Codes packed by np.packbits (big-endian bits, as on-disk shards) give the kernel's distances."""
    from cmh.metrics._kernel import pack_rows

    q, db, _, _ = make(3, 40, 70, 2, seed=4)
    a = pack_rows(q)
    b = pack_rows(np.packbits(q > 0, axis=1), bits=70)
    np.testing.assert_array_equal(a, b)
    d = np.bitwise_count(a[:, None, :] ^ pack_rows(db)[None]).sum(2)
    np.testing.assert_array_equal(d, (70 - q.astype(int) @ db.T.astype(int)) // 2)


@pytest.mark.slow
def test_compiled_once_then_loaded_from_the_cache(tmp_path):
    """A fresh process compiles the kernel into the cache; the next process loads it (no compile)."""
    script = (
        "import numpy as np; from cmh.metrics import evaluate; from cmh.metrics import _kernel as k\n"
        "r = np.random.default_rng(0); c = r.choice([-1, 1], (30, 64)); l = (r.random((30, 5)) < .3)\n"
        "evaluate(c[:5], c, l[:5], l, metrics=['map'])\n"
        "s = k.scan_kernel.stats; print(len(s.cache_hits), len(s.cache_misses))"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    runs = [
        subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    first, second = (tuple(map(int, r.stdout.split()[-2:])) for r in runs)
    assert first == (0, 1) and second == (1, 0)


@pytest.mark.parametrize("bits", [16, 64])
def test_faiss_topk_backend_equals_the_exact_path(bits):
    pytest.importorskip("faiss")
    from cmh.metrics.topk_faiss import evaluate_topk_faiss

    q, db, ql, dbl = make(20, 2500, bits, 10, seed=bits, flip=0.1)  # heavy ties at every distance
    topk, pn = (1, 30, 700), [1, 10, 100, 700]
    fast = evaluate_topk_faiss(q, db, ql, dbl, topk=topk, pn_grid=pn, num_threads=2)
    exact = evaluate(q, db, ql, dbl, metrics=["map@k", "p_at_n"], topk=topk, pn_grid=pn)
    for k in topk:
        assert fast[f"map@{k}"] == pytest.approx(exact[f"map@{k}"], abs=TOL)
    assert fast["p_at_n"]["n"] == exact["p_at_n"]["n"]
    np.testing.assert_allclose(fast["p_at_n"]["precision"], exact["p_at_n"]["precision"], atol=TOL)


def test_cli_eval_topk_backend_faiss(tmp_path):
    pytest.importorskip("faiss")
    import json

    from cmh.cli import main

    q, db, ql, dbl = make(15, 1200, 32, 6, seed=9, flip=0.1)
    path = tmp_path / "codes.npz"
    np.savez(path, query_image=q, database_text=db, query_labels=ql, database_labels=dbl)
    out_exact, out_faiss = tmp_path / "exact.json", tmp_path / "faiss.json"
    assert main(["eval", "--codes", str(path), "--out", str(out_exact)]) == 0
    assert main(["eval", "--codes", str(path), "--topk-backend", "faiss", "--out", str(out_faiss)]) == 0
    exact = json.loads(out_exact.read_text())["tasks"]["i2t"]
    fast = json.loads(out_faiss.read_text())["tasks"]["i2t"]
    assert "map" not in fast
    for k in (50, 500, 1000):
        assert fast[f"map@{k}"] == pytest.approx(exact[f"map@{k}"], abs=TOL)
    n = fast["p_at_n"]["n"]
    assert n == exact["p_at_n"]["n"][: len(n)]
    np.testing.assert_allclose(fast["p_at_n"]["precision"], exact["p_at_n"]["precision"][: len(n)], atol=TOL)


def test_long_relevant_runs_keep_the_fixed_point_sum_exact():
    """Thousands of relevant items per query (the AP sum carries past 2**52 several times): AP is exactly 1 when
    every item is relevant, and equals the reference when half are."""
    q, db, ql, dbl = make(3, 5000, 16, 2, seed=5, flip=0.3)
    ql[:], dbl[:] = 1, 1
    r = evaluate(q, db, ql, dbl, metrics=["map", "map@k"], topk=(4000,))
    assert r["map"] == 1.0 and r["map@4000"] == 1.0
    dbl[::2] = 0
    r = evaluate(q, db, ql, dbl, metrics=["map"], return_per_query=True)
    ref = reference_metrics(q, db, ql, dbl)
    np.testing.assert_allclose(r["ap_per_query"], ref["ap"], atol=TOL, rtol=0)


def test_large_databases_are_ranked_in_parts_bit_for_bit(monkeypatch):
    """An ordered scan of more than MAX_ROWS rows runs part by part with offsets (a counts pass first); every
    output equals one scan's exactly. Forced here with MAX_ROWS = 97 on 1,000 items."""
    from cmh.metrics import _kernel

    q, db, ql, dbl = make(9, 1000, 24, 12, seed=11, flip=0.15)
    kw = dict(topk=(5, 100, 999), pn_grid=[1, 97, 98, 500, 1000], ndcg_k=(3, 200), return_per_query=True)
    whole = evaluate(q, db, ql, dbl, **kw)
    monkeypatch.setattr(_kernel, "MAX_ROWS", 97)
    parts = evaluate(q, db, ql, dbl, **kw)
    assert_same(parts, whole, tol=0.0)


def test_wide_rank_loop_equals_the_packed_one(monkeypatch):
    """Ranks of 2**23 and more (sharded evaluations of huge databases) take the two-lookup AP loop; forced for
    every query with PACK_LIMIT = 0, it gives the same fixed-point sums as the packed loop."""
    from cmh.metrics import _kernel

    q, db, ql, dbl = make(7, 3000, 40, 6, seed=12, flip=0.25)
    packed = evaluate(q, db, ql, dbl, metrics=["map"], return_per_query=True)
    monkeypatch.setattr(_kernel, "PACK_LIMIT", 0)
    wide = evaluate(q, db, ql, dbl, metrics=["map"], return_per_query=True)
    assert wide["ap_per_query"] == packed["ap_per_query"]
    ref = reference_metrics(q, db, ql, dbl)
    np.testing.assert_allclose(wide["ap_per_query"], ref["ap"], atol=TOL, rtol=0)


@pytest.mark.parametrize(("bits", "classes"), [(32, 100), (32, 200), (600, 20)])
def test_grades_beside_the_distance_or_in_their_own_array(bits, classes):
    """NDCG grades ride in the record beside the distance (K < 512, c < 128) or in their own array; grades past
    32 take the histogram instead of the counting passes. Each layout equals the reference."""
    from cmh.metrics._kernel import record_layout

    q, db, ql, dbl = make(6, 700, bits, classes, seed=bits + classes, density=0.6, flip=0.3)
    assert record_layout(bits, classes) == (9 if bits < 512 and classes < 128 else 16)
    check(q, db, ql, dbl, topk=(10, 700), pn=[1, 20, 350, 700], ndcg_k=(5, 60, 700))
    shared = ql.astype(int) @ dbl.T.astype(int)
    assert (shared.max() > 32) == (classes >= 100)


@pytest.mark.parametrize(
    ("nq", "n", "bits", "classes"),
    [(1, 300, 24, 5), (7, 300, 64, 30), (6, 300, 200, 140), (3, 2_500, 64, 30)],
)
def test_floor_kernels_count_every_pair(nq, n, bits, classes):
    """Both floor kernels (one and two queries per database pass; an odd last query alone; databases of one
    block and of several, a partial one last) give the histogram of (distance, relevance) that the distances
    and label overlaps give directly."""
    from cmh.metrics._kernel import BLOCK, pack_rows, run_floor

    q, db, ql, dbl = make(nq, n, bits, classes, seed=nq)
    dist = (bits - q.astype(int) @ db.T.astype(int)) // 2
    rel = (ql.astype(int) @ dbl.T.astype(int) > 0).astype(int)
    want = np.zeros((nq, bits + 1, 2), np.int64)
    np.add.at(want, (np.repeat(np.arange(nq), n), dist.ravel(), rel.ravel()), 1)
    assert n < BLOCK or n % BLOCK
    packed = [pack_rows(x) for x in (q, db, ql, dbl)]
    np.testing.assert_array_equal(run_floor(*packed, bits), want)
    np.testing.assert_array_equal(run_floor(*packed, bits, pairs=True), want)


@pytest.mark.parametrize(("n", "bits", "classes"), [(2_500, 64, 30), (1_024, 200, 140), (700, 16, 3)])
def test_counts_pass_gives_the_direct_histograms(n, bits, classes):
    """The counts-only pass (order=False: counting metrics and the sharded counting pass; two stages per block
    of items) gives the per-distance counts of all and of relevant items and the per-grade counts that the
    distances and label overlaps give directly, across block boundaries."""
    from cmh.metrics._kernel import pack_rows, run_scan

    nq = 5
    q, db, ql, dbl = make(nq, n, bits, classes, seed=n)
    dist = (bits - q.astype(int) @ db.T.astype(int)) // 2
    shared = ql.astype(int) @ dbl.T.astype(int)
    rows = np.repeat(np.arange(nq), n)
    hist = np.zeros((nq, bits + 1), np.int64)
    relh = np.zeros((nq, bits + 1), np.int64)
    ghist = np.zeros((nq, classes + 1), np.int64)
    np.add.at(hist, (rows, dist.ravel()), 1)
    np.add.at(relh, (rows, dist.ravel()), (shared > 0).ravel().astype(np.int64))
    np.add.at(ghist, (rows, shared.ravel()), 1)
    packed = [pack_rows(x) for x in (q, db, ql, dbl)]
    none = np.zeros(0, np.int64)
    for graded in (False, True):
        out = run_scan(*packed, bits, classes, graded=graded, order=False, probes=none, tks=none, nks=none)
        np.testing.assert_array_equal(out["hist"], hist)
        np.testing.assert_array_equal(out["relh"], relh)
        if graded:
            np.testing.assert_array_equal(out["ghist"], ghist)


@pytest.mark.parametrize(("bits", "classes"), [(64, 12), (140, 150), (16, 3)])
def test_every_scan_layout_across_blocks(bits, classes):
    """The ordered scan runs in blocks of BLOCK items — without grades, with grades beside the distance (K < 512,
    c < 128) or in their own array: over 2,100 items (two full blocks and a partial one) the ungraded metrics are
    the same, bit for bit, with and without NDCG in the set, and mAP and NDCG equal the reference loop; the mAP sum
    read from the records in index order (no top-k metric asks for rank order) is the same with grades in them."""
    from cmh.metrics._kernel import BLOCK, pack_rows, record_layout, run_scan

    n = 2_100
    assert n > 2 * BLOCK and n % BLOCK
    q, db, ql, dbl = make(5, n, bits, classes, seed=bits + classes, density=0.3)
    topk, pn, ndcg_k = (7, 300), [1, 40, 450, n], (5, 90)
    kw = dict(topk=topk, pn_grid=pn, ndcg_k=ndcg_k, return_per_query=True)
    ungraded = ["map", "map@k", "p_at_n", "map_tie_avg", "pr_radius", "p_r2"]
    every, part = evaluate(q, db, ql, dbl, **kw), evaluate(q, db, ql, dbl, metrics=ungraded, **kw)
    assert_same(part, {key: every[key] for key in part}, tol=0.0)
    ref = reference_metrics(q, db, ql, dbl, topk=topk, pn=pn, ndcg_k=ndcg_k)
    np.testing.assert_allclose(every["ap_per_query"], ref["ap"], atol=TOL, rtol=0)
    for k in ndcg_k:
        assert abs(every[f"ndcg@{k}"] - ref[f"ndcg@{k}"].mean()) <= TOL
    assert record_layout(bits, classes) == (16 if classes >= 128 else 9)
    packed, none = [pack_rows(x) for x in (q, db, ql, dbl)], np.zeros(0, np.int64)
    apfix = [
        run_scan(*packed, bits, classes, graded=g, order=True, probes=none, tks=none, nks=none)["apfix"]
        for g in (False, True)
    ]
    np.testing.assert_array_equal(apfix[1], apfix[0])


@pytest.mark.parametrize(("nq", "bits", "classes"), [(131, 64, 12), (130, 140, 150), (97, 16, 3)])
def test_two_queries_per_pass_give_the_same_outputs(monkeypatch, nq, bits, classes):
    """Databases past PAIR_BYTES are scanned two queries per pass in one fused loop (forced here with
    PAIR_BYTES = 0; more than 64 queries, so that the kernel's 64 blocks hold pairs, odd blocks included, whose
    last query takes the two-stage scan): every metric is the same, bit for bit, with and without NDCG."""
    from cmh.metrics import _kernel

    q, db, ql, dbl = make(nq, 600, bits, classes, seed=nq + bits, density=0.3)
    kw = dict(topk=(7, 300), pn_grid=[1, 40, 450, 600], ndcg_k=(5, 90), return_per_query=True)
    ungraded = ["map", "map@k", "p_at_n", "map_tie_avg", "pr_radius", "p_r2"]
    one, one_ungraded = evaluate(q, db, ql, dbl, **kw), evaluate(q, db, ql, dbl, metrics=ungraded, **kw)
    monkeypatch.setattr(_kernel, "PAIR_BYTES", 0)
    assert_same(evaluate(q, db, ql, dbl, metrics=ungraded, **kw), one_ungraded, tol=0.0)
    assert_same(evaluate(q, db, ql, dbl, **kw), one, tol=0.0)
