"""Compiled (numba) single-scan kernel behind :func:`cmh.metrics.evaluate` on the CPU, and the floor kernel.

One scan per query over the bit-packed database, in index order, computes the Hamming distance ``d`` (popcount of
XOR), the relevance (any shared label: AND of packed label words; the grade = popcount of the AND when NDCG is
asked for), the per-distance histograms of all and of relevant items, and, for every relevant item, the number
``a`` of items at its own distance that precede it (the histogram count at that moment). After the scan, with
``B_d`` = items at distances < d and ``RB_d`` = relevant items at distances < d, the stable rank (ties by index) of
a relevant item and the hits at it are ``rank = B_d + a + 1`` and ``hits = RB_d + r + 1`` (``r`` = relevant items
at its distance before it): AP·R = Σ hits / rank (DESIGN §3's sort-free stable mAP; no sort anywhere).

Sharding: ``B_d`` and ``RB_d`` can be passed in (per query and distance) — all items at smaller distances in every
shard plus those at distance d in earlier shards — so a shard's relevant items get their *global* ranks, and every
output below is additive over shards, with exact arithmetic, so a sharded evaluation equals the single-process one
bit for bit:

- ``apfix`` (nq, 2): Σ hits/rank as fixed point (integer part, multiple of 2^-52 rest), each term rounded to 2^-52;
- ``pcnt`` (nq, P): relevant items with ``rank <= probes[p]`` (the hits at every probe; probes sorted);
- ``term`` (nq, kt) / ``gain`` (nq, kn): hits/rank and (2^g - 1)/log2(rank + 1) stored at position rank - 1 for
  ranks within the top kt / kn (ranks are unique, so shards fill disjoint cells);
- ``hist``/``relh`` (nq, K+1), ``ghist`` (nq, c+1): per-distance and per-grade counts.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

#: 2**52: fixed-point scale of the AP sums (terms are in (0, 1])
FIX_SCALE = 4503599627370496.0
_FIX_MASK = (1 << 52) - 1


@intrinsic
def _popcount(typingctx, x):  # noqa: ARG001 - numba intrinsic signature
    """LLVM ``ctpop`` of a uint64 as int64 (one POPCNT instruction on x86-64)."""
    sig = types.int64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@njit(inline="always")
def _distance(qc, dbc, i, j, wm):
    """Hamming distance of query i and item j. ``wm``: a tuple of W zeros makes the word count W a compile-time
    constant (numba specialises on the tuple's length; the word loop is unrolled); ``()`` = read it at run time."""
    nw = len(wm)
    if nw == 0:
        nw = qc.shape[1]
    x = 0
    for w in range(nw):
        x += _popcount(qc[i, w] ^ dbc[j, w])
    return x


@njit(inline="always")
def _grade(ql, dbl, i, j, lm, graded):
    """Shared labels (``graded``), else 1/0 for any shared label; ``lm`` as ``wm`` of :func:`_distance`."""
    nl = len(lm)
    if nl == 0:
        nl = ql.shape[1]
    g = 0
    if graded:
        for w in range(nl):
            g += _popcount(ql[i, w] & dbl[j, w])
    else:
        for w in range(nl):
            if ql[i, w] & dbl[j, w] != 0:
                g = 1
    return g


@njit(cache=True, nogil=True, error_model="numpy")
def _scan_query(qc, dbc, ql, dbl, i, wm, lm, graded, order, buf, hc, gh):  # pragma: no cover - compiled
    """One query's scan: fills ``hc`` (all items per distance, then relevant items per distance at offset K+1),
    ``gh`` (items per grade, when graded) and, with ``order``, ``buf`` (a << 32 | d << 16 | g for the relevant
    items, a = items seen before at distance d); returns the number of relevant items. Branch-free: the relevance
    is a coin flip for the branch predictor, so every item's record is written and the position advances by it."""
    n = dbc.shape[0]
    k1 = hc.shape[0] // 2
    for t in range(2 * k1):
        hc[t] = 0
    nb = 0
    if order:
        for j in range(n):
            x = _distance(qc, dbc, i, j, wm)
            g = _grade(ql, dbl, i, j, lm, graded)
            a = hc[x]
            rel = np.int64(g > 0)
            buf[nb] = (a << 32) | (x << 16) | g
            nb += rel
            hc[x] = a + 1
            hc[k1 + x] += rel
            if graded:
                gh[g] += 1
    else:
        for j in range(n):
            x = _distance(qc, dbc, i, j, wm)
            g = _grade(ql, dbl, i, j, lm, graded)
            rel = np.int64(g > 0)
            hc[x] += 1
            hc[k1 + x] += rel
            if graded:
                gh[g] += 1
    return nb


@njit(cache=True, nogil=True, error_model="numpy")
def _rank_query(
    buf, nb, offa, offr, probes, disc, seen, ptr, nxt, dif, pc, tm, gn, limit
):  # pragma: no cover
    """One query's ranks from its relevant-item records ``buf[:nb]`` and the per-distance offsets: adds to the
    probe counts ``pc``, stores top-rank terms ``tm``/gains ``gn``; returns the AP·R sum in fixed point (hi, lo).
    Records at distances whose first rank exceeds ``limit`` are skipped (top-k metrics only: the AP sum is then
    not needed, and every probe and top width is <= limit)."""
    k1 = offa.shape[0]
    nprobe = probes.shape[0]
    kt = tm.shape[0]
    kn = gn.shape[0]
    big = np.int64(1) << 62
    # probe p's count (relevant items with rank <= probes[p]) = Σ_d of the relevant items at d seen when d's
    # ranks pass probes[p] (rare events), plus d's total for the probes it never passes
    for d in range(k1):
        p = np.searchsorted(probes, offa[d] + 1)
        ptr[d] = p
        nxt[d] = probes[p] if p < nprobe else big
        seen[d] = 0
    hi = 0
    frac = 0
    lean = nprobe == 0 and kt == 0 and kn == 0 and limit >= big
    for b0 in range(0, nb, 1024):  # 1024 terms <= 2**52 each fit in lo: carry once per block, not per term
        lo = 0
        if lean:  # mAP@all only: nothing but the AP terms
            for b in range(b0, min(b0 + 1024, nb)):
                v = buf[b]
                x = (v >> 16) & 0xFFFF
                r = seen[x]
                seen[x] = r + 1
                t = np.float64(offr[x] + r + 1) / np.float64(offa[x] + (v >> 32) + 1)
                lo += np.int64(t * FIX_SCALE + 0.5)
        else:
            for b in range(b0, min(b0 + 1024, nb)):
                v = buf[b]
                x = (v >> 16) & 0xFFFF
                if offa[x] >= limit:
                    continue
                r = seen[x]
                seen[x] = r + 1
                rank = offa[x] + (v >> 32) + 1
                t = np.float64(offr[x] + r + 1) / np.float64(rank)
                lo += np.int64(t * FIX_SCALE + 0.5)
                if rank > nxt[x]:
                    p = ptr[x]
                    while p < nprobe and probes[p] < rank:
                        pc[p] += r
                        p += 1
                    ptr[x] = p
                    nxt[x] = probes[p] if p < nprobe else big
                if rank <= kt:
                    tm[rank - 1] = t
                if rank <= kn:
                    gn[rank - 1] = (2.0 ** (v & 0xFFFF) - 1.0) * disc[rank - 1]
        frac += lo & _FIX_MASK
        hi += (lo >> 52) + (frac >> 52)
        frac &= _FIX_MASK
    for p in range(nprobe):
        dif[p] = 0
    for d in range(k1):
        if ptr[d] < nprobe:
            dif[ptr[d]] += seen[d]
    run = 0
    for p in range(nprobe):  # d's total counts for every probe from the first it never passed
        run += dif[p]
        pc[p] += run
    return hi, frac


@njit(parallel=True, cache=True, nogil=True)
def scan_kernel(
    qc, dbc, ql, dbl, wm, lm, graded, order, need_ap, off_all, off_rel, probes, disc, hist, relh, ghist, apfix, pcnt, term, gain
):  # fmt: skip  # pragma: no cover - compiled; exercised through evaluate()
    """Fill the per-query outputs (see the module docstring) for queries ``qc`` against database ``dbc``.

    qc (nq, W), dbc (n, W): uint64 packed codes; ql (nq, L), dbl (n, L): uint64 packed labels; ``wm``/``lm``:
    width markers (:func:`width_marker`); ``graded``: count shared labels (NDCG); ``order``: compute the rank
    outputs (else counts only); ``need_ap``: the mAP@all sum (else only ranks up to the probes/top widths).
    ``off_all``/``off_rel`` (nq, K+1) int64: given B_d / RB_d, or shape (0, 0) to take
    them from this scan's own histograms. Outputs are zero-initialised by the caller. Blocks of queries run in
    parallel (numba ``prange``; ``numba.set_num_threads``)."""
    nq = qc.shape[0]
    n = dbc.shape[0]
    k1 = hist.shape[1]
    nprobe = probes.shape[0]
    given = off_all.shape[0] > 0
    nblocks = min(nq, 64)
    # without mAP@all only the ranks up to the largest probe / top width matter
    limit = np.int64(1) << 62 if need_ap else max(term.shape[1], gain.shape[1], probes[-1] if nprobe else 0)
    for blk in prange(nblocks):
        buf = np.empty(n if order else 0, np.int64)
        hc = np.empty(2 * k1, np.int64)
        offa = np.empty(k1, np.int64)
        offr = np.empty(k1, np.int64)
        seen = np.empty(k1, np.int64)
        ptr = np.empty(k1, np.int64)
        nxt = np.empty(k1, np.int64)
        dif = np.empty(nprobe, np.int64)
        for i in range(blk * nq // nblocks, (blk + 1) * nq // nblocks):
            nb = _scan_query(qc, dbc, ql, dbl, i, wm, lm, graded, order, buf, hc, ghist[i])
            acc = 0
            racc = 0
            for d in range(k1):
                hist[i, d] = hc[d]
                relh[i, d] = hc[k1 + d]
                if given:
                    offa[d] = off_all[i, d]
                    offr[d] = off_rel[i, d]
                else:
                    offa[d] = acc
                    offr[d] = racc
                    acc += hc[d]
                    racc += hc[k1 + d]
            if order:
                hi, lo = _rank_query(
                    buf, nb, offa, offr, probes, disc, seen, ptr, nxt, dif, pcnt[i], term[i], gain[i], limit
                )
                apfix[i, 0] = hi
                apfix[i, 1] = lo


@njit(parallel=True, cache=True, nogil=True)
def floor_kernel(qc, dbc, ql, dbl, wm, lm, out):  # pragma: no cover - compiled
    """The floor of any exact evaluation: popcount distance, any-shared-label relevance and one histogram of
    ``2·d + rel`` per query (out (nq, 2(K+1)) int64, zero-initialised) — nothing else."""
    nq = qc.shape[0]
    n = dbc.shape[0]
    for i in prange(nq):
        o = out[i]
        for j in range(n):
            o[2 * _distance(qc, dbc, i, j, wm) + _grade(ql, dbl, i, j, lm, False)] += 1


def pack_rows(x: np.ndarray, bits: int | None = None) -> np.ndarray:
    """(n, m) ±1 codes / 0-1 labels (bit = ``x > 0``), or (n, ceil(bits/8)) uint8 rows already packed with
    ``np.packbits(codes > 0, axis=1)`` when ``bits`` is given, as C-contiguous (n, ceil(m/64)) uint64 words.

    The bit order inside a word is irrelevant to popcounts of XOR/AND as long as both sides are packed alike
    (padding bits are zero on both)."""
    by = x if bits is not None else np.packbits(x > 0, axis=1)
    n, nbytes = by.shape
    words = max(1, -(-nbytes // 8))
    out = np.zeros((n, words * 8), dtype=np.uint8)
    out[:, :nbytes] = by
    return out.view(np.uint64)


def width_marker(words: int) -> tuple[int, ...]:
    """The width marker of :func:`_distance`: compile-time for 1 or 2 words (K <= 128 bits, c <= 128 classes, the
    common cases), run-time beyond — so at most 3 × 3 compiled variants of each kernel."""
    return (0,) * words if words <= 2 else ()


def run_scan(
    qc: np.ndarray,
    dbc: np.ndarray,
    ql: np.ndarray,
    dbl: np.ndarray,
    bits: int,
    nclass: int,
    *,
    graded: bool,
    order: bool,
    probes: np.ndarray,
    kt: int,
    kn: int,
    need_ap: bool = True,
    offsets: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Allocate the outputs and run :func:`scan_kernel` on packed words (see :func:`pack_rows`); returns
    ``hist``, ``relh``, ``ghist``, ``apfix``, ``pcnt``, ``term``, ``gain`` (module docstring). ``offsets``: the
    (B_d, RB_d) arrays (nq, K+1) of a shard, None for a whole database. Threads: ``numba.set_num_threads``."""
    nq = qc.shape[0]
    k1 = bits + 1
    probes = np.ascontiguousarray(probes, dtype=np.int64)
    out = {
        "hist": np.zeros((nq, k1), np.int64),
        "relh": np.zeros((nq, k1), np.int64),
        "ghist": np.zeros((nq, nclass + 1 if graded else 0), np.int64),
        "apfix": np.zeros((nq, 2), np.int64),
        "pcnt": np.zeros((nq, probes.size), np.int64),
        "term": np.zeros((nq, kt if order else 0)),
        "gain": np.zeros((nq, kn if order else 0)),
    }
    disc = 1.0 / np.log2(np.arange(2, kn + 2, dtype=np.float64))
    none = np.zeros((0, 0), np.int64)
    off_all, off_rel = (
        (none, none) if offsets is None else (np.ascontiguousarray(o, np.int64) for o in offsets)
    )
    wm, lm = width_marker(qc.shape[1]), width_marker(ql.shape[1])
    if dbc.shape[0]:
        scan_kernel(
            qc, dbc, ql, dbl, wm, lm, graded, order, need_ap, off_all, off_rel, probes, disc, *out.values()
        )
    return out


def run_floor(qc: np.ndarray, dbc: np.ndarray, ql: np.ndarray, dbl: np.ndarray, bits: int) -> np.ndarray:
    """:func:`floor_kernel` on packed words: (nq, K+1, 2) counts of [non-relevant, relevant] per distance."""
    out = np.zeros((qc.shape[0], 2 * (bits + 1)), np.int64)
    floor_kernel(qc, dbc, ql, dbl, width_marker(qc.shape[1]), width_marker(ql.shape[1]), out)
    return out.reshape(qc.shape[0], bits + 1, 2)


@njit(cache=True, nogil=True)
def prefix_at(arr, ks):  # pragma: no cover - compiled
    """(nq, len(ks)) sums of each row's first k entries (sequential, in rank order), for the sorted ks."""
    nq = arr.shape[0]
    out = np.zeros((nq, ks.shape[0]))
    for i in range(nq):
        s = 0.0
        c = 0
        for p in range(arr.shape[1]):
            while c < ks.shape[0] and ks[c] == p:
                out[i, c] = s
                c += 1
            s += arr[i, p]
        while c < ks.shape[0]:
            out[i, c] = s
            c += 1
    return out


@njit(cache=True, nogil=True)
def ideal_dcg_at(ghist, ks, disc):  # pragma: no cover - compiled
    """(nq, len(ks)) ideal DCG@k (grades in decreasing order, gain 2^g - 1, discount ``disc``) from the per-grade
    counts ``ghist`` (nq, c+1), for the sorted ks <= len(disc)."""
    nq, c1 = ghist.shape
    kmax = disc.shape[0]
    out = np.zeros((nq, ks.shape[0]))
    for i in range(nq):
        s = 0.0
        p = 0
        c = 0
        for g in range(c1 - 1, 0, -1):
            gain = 2.0**g - 1.0
            for _ in range(ghist[i, g]):
                if p >= kmax:
                    break
                while c < ks.shape[0] and ks[c] == p:
                    out[i, c] = s
                    c += 1
                s += gain * disc[p]
                p += 1
        while c < ks.shape[0]:
            out[i, c] = s
            c += 1
    return out
