"""cmh.metrics.evaluate against sklearn (AP and NDCG, stable tie order), the per-query NumPy reference, and
brute-force loops on tiny cases (precision/recall by Hamming radius, tie-averaged AP over every tie order)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, ndcg_score

from cmh.errors import CMHError
from cmh.metrics import RetrievalEvaluator, evaluate
from cmh.metrics.reference import reference_metrics

TOPK, PN, NDCG = (1, 10, 37, 5000), [1, 7, 50, 100, 5000], (1, 5, 40)


def make(nq: int, n: int, bits: int, classes: int, seed: int = 0, density: float = 0.15, flip: float = 0.0):
    """Random ±1 codes (database items near the queries when ``flip`` > 0 -> heavy ties) and multi-hot labels."""
    rng = np.random.default_rng(seed)
    q = rng.choice(np.array([-1, 1], np.int8), size=(nq, bits))
    db = rng.choice(np.array([-1, 1], np.int8), size=(n, bits))
    if flip:
        base = q[rng.integers(0, nq, n)]
        db = np.where(rng.random((n, bits)) < flip, -base, base).astype(np.int8)
    ql = (rng.random((nq, classes)) < density).astype(np.uint8)
    dbl = (rng.random((n, classes)) < density).astype(np.uint8)
    return q, db, ql, dbl


def check_against_reference(q, db, ql, dbl, **kw):
    ref = reference_metrics(q, db, ql, dbl, topk=TOPK, pn=PN, ndcg_k=NDCG)
    for force in (False, True):
        r = evaluate(
            q,
            db,
            ql,
            dbl,
            topk=TOPK,
            pn_grid=PN,
            ndcg_k=NDCG,
            return_per_query=True,
            _force_torch=force,
            **kw,
        )
        np.testing.assert_allclose(r["ap_per_query"], ref["ap"], atol=1e-9)
        np.testing.assert_allclose(r["ap_tie_avg_per_query"], ref["ap_tie"], atol=1e-9)
        assert r["map"] == pytest.approx(ref["ap"].mean(), abs=1e-9)
        for k in TOPK:
            assert r[f"map@{k}"] == pytest.approx(ref[f"ap@{k}"].mean(), abs=1e-9)
        for k in NDCG:
            assert r[f"ndcg@{k}"] == pytest.approx(ref[f"ndcg@{k}"].mean(), abs=1e-9)
        np.testing.assert_allclose(r["p_at_n"]["precision"], ref["p_at_n"].mean(0), atol=1e-12)
        assert r["n_zero_relevance"] == int((ref["n_rel"] == 0).sum())
    return r


@pytest.mark.parametrize("bits", [8, 16, 64, 128])
def test_matches_sklearn_stable_order(bits):
    q, db, ql, dbl = make(25, 301, bits, 6, seed=bits, flip=0.1)
    r = evaluate(q, db, ql, dbl, return_per_query=True)
    n = db.shape[0]
    d = 0.5 * (bits - db.astype(np.float64) @ q.astype(np.float64).T)
    for i in range(q.shape[0]):
        rel = (dbl @ ql[i]) > 0
        want = average_precision_score(rel, -(d[:, i] * n + np.arange(n))) if rel.any() else 0.0
        assert r["ap_per_query"][i] == pytest.approx(want, abs=1e-6)
    # the ties are real: many items share a distance with another item
    assert np.mean([len(np.unique(d[:, i])) for i in range(q.shape[0])]) < n / 5


@pytest.mark.parametrize(
    ("nq", "n", "bits", "classes"),
    [(1, 1, 8, 1), (1, 50, 8, 3), (17, 203, 32, 5), (9, 1001, 64, 24), (5, 77, 100, 70), (12, 64, 12, 2)],
)
def test_matches_reference(nq, n, bits, classes):
    check_against_reference(*make(nq, n, bits, classes, seed=n, flip=0.2))


# -- brute force on tiny cases: plain loops, no shared code with cmh.metrics ----------------------------


def hamming(a, b) -> int:
    return sum(int(x != y) for x, y in zip(a, b, strict=True))


def relevant(qlab, dblab) -> bool:
    return any(x and y for x, y in zip(qlab, dblab, strict=True))


def ap_of_order(order, rel) -> float:
    """AP of one ranking (``order`` = database indices, best first); 0 when nothing is relevant."""
    hits, total = 0, 0.0
    for pos, j in enumerate(order, start=1):
        if rel[j]:
            hits += 1
            total += hits / pos
    r = sum(rel)
    return total / r if r else 0.0


def brute_pr_radius(q, db, ql, dbl):
    """Per radius r = 0..K: precision of the items within r (averaged over queries that retrieve one, 0.0
    when none does), recall (over queries with a relevant item), and the number of empty queries."""
    nq, bits = q.shape
    prec, rec, empty = [], [], []
    for r in range(bits + 1):
        ps, rs, n_empty = [], [], 0
        for i in range(nq):
            got = rel_got = n_rel = 0
            for j in range(len(db)):
                rel = relevant(ql[i], dbl[j])
                n_rel += rel
                if hamming(q[i], db[j]) <= r:
                    got += 1
                    rel_got += rel
            if got:
                ps.append(rel_got / got)
            else:
                n_empty += 1
            if n_rel:
                rs.append(rel_got / n_rel)
        prec.append(sum(ps) / len(ps) if ps else 0.0)
        rec.append(sum(rs) / len(rs) if rs else 0.0)
        empty.append(n_empty)
    return prec, rec, empty


@pytest.mark.parametrize(
    ("nq", "n", "bits", "classes", "seed", "density", "flip"),
    [
        (1, 1, 8, 1, 0, 0.5, 0.0),
        (4, 30, 8, 3, 1, 0.3, 0.2),
        (6, 25, 12, 2, 2, 0.4, 0.0),  # random codes: nothing within radius 0 or 1
        (5, 40, 6, 5, 3, 0.08, 0.3),  # sparse labels: queries without any relevant item
    ],
)
def test_pr_radius_matches_brute_force(nq, n, bits, classes, seed, density, flip):
    q, db, ql, dbl = make(nq, n, bits, classes, seed=seed, density=density, flip=flip)
    prec, rec, empty = brute_pr_radius(q, db, ql, dbl)
    for force in (False, True):
        r = evaluate(q, db, ql, dbl, metrics=["pr_radius", "p_r2"], _force_torch=force)["pr_radius"]
        assert r["radius"] == list(range(bits + 1))
        np.testing.assert_allclose(r["precision"], prec, atol=1e-12)
        np.testing.assert_allclose(r["recall"], rec, atol=1e-12)
        assert r["n_empty"] == empty
        p2 = evaluate(q, db, ql, dbl, metrics=["p_r2"], _force_torch=force)
        assert p2["p_r2"] == pytest.approx(prec[min(2, bits)], abs=1e-12)
        assert p2["p_r2_n_empty"] == empty[min(2, bits)]


def test_pr_radius_brute_force_cases_cover_the_edge_cases():
    """The cases above include radii where every query is empty and queries with no relevant item."""
    q, db, ql, dbl = make(6, 25, 12, 2, seed=2, density=0.4)
    assert brute_pr_radius(q, db, ql, dbl)[2][0] == 6
    q, db, ql, dbl = make(5, 40, 6, 5, seed=3, density=0.08, flip=0.3)
    assert any(not any(relevant(ql[i], dbl[j]) for j in range(40)) for i in range(5))


def test_map_tie_avg_is_the_mean_ap_over_every_order_of_tied_items():
    """Enumerate every ranking of 7 items that sorts them by distance (all orders inside each tie group):
    the mean of their APs is the tie-averaged AP."""
    nq, n = 3, 7
    spread = []
    for seed, force in itertools.product(range(6), (False, True)):
        q, db, ql, dbl = make(nq, n, 4, 3, seed=seed, density=0.4, flip=0.3)
        r = evaluate(q, db, ql, dbl, metrics=["map_tie_avg"], return_per_query=True, _force_torch=force)
        want = []
        for i in range(nq):
            d = [hamming(q[i], db[j]) for j in range(n)]
            rel = [relevant(ql[i], dbl[j]) for j in range(n)]
            aps = [
                ap_of_order(order, rel)
                for order in itertools.permutations(range(n))
                if all(d[a] <= d[b] for a, b in itertools.pairwise(order))
            ]
            want.append(sum(aps) / len(aps))
            spread.append(max(aps) - min(aps))
        np.testing.assert_allclose(r["ap_tie_avg_per_query"], want, atol=1e-12)
        assert r["map_tie_avg"] == pytest.approx(sum(want) / nq, abs=1e-12)
    assert max(spread) > 0.05  # the ties are real: the order inside a tie group changes AP


@pytest.mark.parametrize(
    ("nq", "n", "bits", "classes", "seed"), [(5, 2, 8, 3, 0), (8, 60, 8, 4, 1), (4, 300, 16, 6, 2)]
)
def test_ndcg_matches_sklearn(nq, n, bits, classes, seed):
    """sklearn's NDCG with gains 2^g - 1 (g = shared labels) and scores encoding cmh's order (distance,
    then database index; ``ignore_ties=True`` since the scores have no ties)."""
    q, db, ql, dbl = make(nq, n, bits, classes, seed=seed, density=0.35, flip=0.2)
    d = 0.5 * (bits - q.astype(np.float64) @ db.astype(np.float64).T)  # (nq, n)
    gains = 2.0 ** (ql.astype(np.float64) @ dbl.astype(np.float64).T) - 1
    scores = -(d * n + np.arange(n))
    ks = (1, 2, 5, 40, n + 3)
    for force in (False, True):
        r = evaluate(q, db, ql, dbl, metrics=["ndcg@k"], ndcg_k=ks, _force_torch=force)
        for k in ks:
            want = ndcg_score(gains, scores, k=k, ignore_ties=True)
            assert r[f"ndcg@{k}"] == pytest.approx(want, abs=1e-12), (k, force)


def test_zero_relevance_queries_counted_as_zero():
    q, db, ql, dbl = make(10, 200, 16, 8, seed=3)
    ql[:4] = 0  # four queries without labels: R = 0
    r = check_against_reference(q, db, ql, dbl)
    assert r["n_zero_relevance"] >= 4
    assert r["ap_per_query"][:4] == [0.0] * 4
    assert r["map"] == pytest.approx(np.mean(r["ap_per_query"]))


def test_chunking_does_not_change_results():
    q, db, ql, dbl = make(40, 700, 32, 10, seed=5, flip=0.15)
    big = evaluate(q, db, ql, dbl, memory_budget_mb=1024, return_per_query=True)
    tiny = evaluate(q, db, ql, dbl, memory_budget_mb=1e-6, return_per_query=True)
    assert big.keys() == tiny.keys()
    for key, value in big.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                assert tiny[key][sub] == pytest.approx(v, abs=1e-12), (key, sub)
        else:
            assert tiny[key] == pytest.approx(value, abs=1e-12), key


def test_output_is_json_and_has_all_keys():
    q, db, ql, dbl = make(6, 2500, 64, 24, seed=1)
    r = evaluate(torch.from_numpy(q).float(), db, ql, torch.from_numpy(dbl))
    json.dumps(r)
    for key in (
        "map",
        "map_tie_avg",
        "map@50",
        "map@500",
        "map@1000",
        "p_r2",
        "ndcg@50",
        "ndcg@100",
        "ndcg@1000",
        "n_queries",
        "n_database",
        "n_zero_relevance",
        "bits",
    ):
        assert key in r
    assert r["pr_radius"]["radius"] == list(range(65))
    assert r["p_at_n"]["n"][0] == 1 and r["p_at_n"]["n"][-1] == 2500
    assert (r["n_queries"], r["n_database"], r["bits"]) == (6, 2500, 64)


def test_metric_subset_and_unknown_metric():
    q, db, ql, dbl = make(5, 100, 16, 4)
    r = evaluate(q, db, ql, dbl, metrics=["map_tie_avg", "p_r2"])
    assert "map" not in r and "map_tie_avg" in r and "p_r2" in r
    with pytest.raises(CMHError, match="did you mean 'map_tie_avg'"):
        evaluate(q, db, ql, dbl, metrics=["map_tie_avgg"])


def test_perfect_codes_give_map_one():
    rng = np.random.default_rng(0)
    cls = rng.integers(0, 4, 300)
    centers = rng.choice(np.array([-1, 1], np.int8), size=(4, 32))
    labels = np.eye(4, dtype=np.uint8)[cls]
    r = evaluate(centers[cls[:20]], centers[cls], labels[:20], labels)
    assert r["map"] == pytest.approx(1.0) and r["map_tie_avg"] == pytest.approx(1.0)
    assert r["p_r2"] == pytest.approx(1.0) and r["ndcg@50"] == pytest.approx(1.0)


def test_evaluator_accumulates_chunks():
    q, db, ql, dbl = make(30, 400, 16, 5, seed=2, flip=0.1)
    ev = RetrievalEvaluator(db, dbl, topk=(10,))
    for s in range(0, 30, 7):
        ev.update(q[s : s + 7], ql[s : s + 7])
    assert ev.compute() == evaluate(q, db, ql, dbl, topk=(10,))
    ev.reset()
    with pytest.raises(CMHError):
        ev.compute()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda a: {**a, "q": (a["q"] > 0).astype(np.int8)}, "0/1 codes; convert"),
        (lambda a: {**a, "q": np.where(a["q"] > 0, np.nan, -1.0)}, "NaN"),
        (lambda a: {**a, "q": a["q"] * 2}, "only -1 and \\+1"),
        (lambda a: {**a, "q": a["q"][:, :8]}, "16 bits|8 bits"),
        (lambda a: {**a, "ql": a["ql"][:3]}, "query labels have 3 rows"),
        (lambda a: {**a, "dbl": a["dbl"][:, :2]}, "classes"),
        (lambda a: {**a, "dbl": a["dbl"][:10]}, "database labels have 10 rows"),
        (lambda a: {**a, "q": a["q"][0]}, "2-D"),
    ],
)
def test_input_errors_are_one_line(change, match):
    q, db, ql, dbl = make(5, 50, 16, 4)
    a = change({"q": q, "db": db, "ql": ql, "dbl": dbl})
    with pytest.raises(CMHError, match=match) as e:
        evaluate(a["q"], a["db"], a["ql"], a["dbl"])
    assert "\n" not in str(e.value)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 12),
    st.integers(1, 120),
    st.sampled_from([8, 16, 24]),
    st.integers(1, 5),
    st.integers(0, 10**6),
)
def test_properties(nq, n, bits, classes, seed):
    q, db, ql, dbl = make(nq, n, bits, classes, seed=seed, density=0.4, flip=0.25)
    r = evaluate(q, db, ql, dbl, topk=(n,), pn_grid=[1, n], ndcg_k=(n,), return_per_query=True)
    # tie-averaged mAP does not depend on the database order; the stable-order mAP is mAP@n_db
    perm = np.random.default_rng(seed).permutation(n)
    rp = evaluate(q, db[perm], ql, dbl[perm])
    assert rp["map_tie_avg"] == pytest.approx(r["map_tie_avg"], abs=1e-12)
    assert r["map"] == pytest.approx(r[f"map@{n}"], abs=1e-12)
    # recall within radius K is 1; P@n_db = mean share of relevant items; all metrics in [0, 1]
    has = np.array([((dbl @ ql[i]) > 0).any() for i in range(nq)])
    if has.any():
        assert r["pr_radius"]["recall"][-1] == pytest.approx(1.0)
    share = np.mean([((dbl @ ql[i]) > 0).mean() for i in range(nq)])
    assert r["p_at_n"]["precision"][-1] == pytest.approx(share)
    for key in ("map", "map_tie_avg", "p_r2", f"ndcg@{n}"):
        assert 0.0 <= r[key] <= 1.0 + 1e-12


def test_threads_do_not_change_results():
    q, db, ql, dbl = make(23, 900, 64, 12, seed=7, flip=0.2)
    kw = dict(
        topk=(5, 300), pn_grid=[1, 10, 900], ndcg_k=(7, 900), return_per_query=True, memory_budget_mb=0.05
    )
    one = evaluate(q, db, ql, dbl, num_threads=1, **kw)
    two = evaluate(q, db, ql, dbl, num_threads=2, **kw)
    assert one == two
    ref = reference_metrics(q, db, ql, dbl, topk=(5, 300), pn=[1, 10, 900], ndcg_k=(7, 900))
    np.testing.assert_allclose(two["ap_tie_avg_per_query"], ref["ap_tie"], atol=1e-9)
    np.testing.assert_allclose(two["ap_per_query"], ref["ap"], atol=1e-9)
    with pytest.raises(CMHError, match="num_threads"):
        evaluate(q, db, ql, dbl, num_threads=0)
