"""Compiled (numba) single-scan kernel behind :func:`cmh.metrics.evaluate` on the CPU, and the floor kernel.

One scan per query over the bit-packed database, in index order, computes the Hamming distance ``d`` (popcount of
XOR), the relevance (any shared label: AND of packed label words; the grade = popcount of the AND when NDCG is
asked for) and one per-distance counter word ``h[d] = a << 40 | r << 16 | d``: ``a`` items and ``r`` relevant
items seen so far at distance ``d``. Reading ``h[d]`` before the increment *is* the record of the item: every item
writes it to the next slot of a record buffer and the slot advances by the relevance (branch-free), so the scan
costs the floor's work plus one store. After the scan, with ``B_d`` = items at distances < d and ``RB_d`` =
relevant items at distances < d, the stable rank (ties by index) of a relevant item and the hits at it are
``rank = B_d + a + 1`` and ``hits = RB_d + r + 1``: AP·R = Σ hits / rank (docs/design.md's sort-free stable
mAP; no sort anywhere). With NDCG's grades beside the distance (``dbits`` < 16), the increment carries the grade
and the record is the word after it (``a + 1``, ``r + 1`` and the grade, :func:`_post`): no separate grade to
load and OR per item. The AP loop is one vectorised pass over the records (one table lookup ``T[d]`` that adds
both offsets to the record, one division). The top-k metrics need the records in rank order, which is (distance,
index) order: one scatter puts the r-th relevant item at distance d at position RB_d + r (the record holds r), so
P@n is a binary search and the top ranks are the first records — still no sort.

Sharding: ``B_d`` and ``RB_d`` can be passed in (per query and distance) — all items at smaller distances in every
shard plus those at distance d in earlier shards — so a shard's relevant items get their *global* ranks, and every
output below is additive over shards, with exact arithmetic, so a sharded evaluation equals the single-process one
bit for bit (:func:`run_scan` itself splits databases of more than :data:`MAX_ROWS` items this way):

- ``apfix`` (nq, 2): Σ hits/rank as fixed point (integer part, multiple of 2^-52 rest), each term rounded to 2^-52;
- ``pcnt`` (nq, P): relevant items with ``rank <= probes[p]`` (the hits at every probe; probes sorted);
- ``term`` (nq, kt) / ``gain`` (nq, kn): hits/rank and (2^g - 1)/log2(rank + 1) stored at position rank - 1 for
  ranks within the top kt / kn (ranks are unique, so shards fill disjoint cells);
- ``hist``/``relh`` (nq, K+1), ``ghist`` (nq, c+1): per-distance and per-grade counts.

The floor kernel (and the counts-only pass) and the scan read the database alike (query words held in registers,
the database as one flat row-major word array, so one- and two-word rows are contiguous loads), and the floor
takes the fastest form measured: per block of :data:`BLOCK` items, the keys 2·d + rel in one loop that compiles
to SIMD, then one increment per item (:func:`_front`, :func:`_count`; 0.70-0.84x the time of one fused loop at
the ``cmh bench eval`` sizes). The ordered scan takes the same two stages (:func:`_scan_block`): the SIMD loop
also computes each item's counter increment (with the grade shifted into place when NDCG asks for it), which
leaves the serial loop (:func:`_records`: read the counter word, store the record, write the counter back,
advance the slot) with next to no arithmetic of its own — 0.94-0.97x the time of the fused loop it replaced
where only relevance is tested, and 0.83-0.94x with NDCG's grades (A/B in one process, one thread, the
``cmh bench eval`` sizes). Past :data:`PAIR_BYTES` of packed database, where the records no longer stay near the
core, one fused loop per item for two queries at a time is faster (:func:`_scan_records_pair`, :func:`_pairs`).
The ratio of the floor and the scan is the cost of the exact metrics alone.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

#: 2**52: fixed-point scale of the AP sums (terms are in (0, 1])
FIX_SCALE = 4503599627370496.0
_FIX_MASK = (1 << 52) - 1
#: most database rows one ordered scan takes (the counters ``a`` and ``r`` are 23- and 24-bit fields of ``h[d]``);
#: :func:`run_scan` splits larger databases into parts of this size and ranks them with offsets, exactly
MAX_ROWS = (1 << 23) - 1
#: ranks below this use the one-lookup AP loop (rank and hits fields of one word); larger ranks (sharded
#: evaluations of more than 8 million items) take the two-lookup loop
PACK_LIMIT = 1 << 23
#: databases whose packed rows (codes and labels) take more than this are scanned two queries per pass in one
#: fused loop per item (:func:`_scan_records_pair`), smaller ones one query per pass in two stages per block
#: (:func:`_scan_records`); see :func:`_pairs`
PAIR_BYTES = 4 << 20
#: items per block of the two-stage passes (:func:`_front`): a block's keys or distances (8 KiB) stay in L1
BLOCK = 1024
_A_ONE = 1 << 40  # one item in the ``a`` field of h[d]
_KEPT = _A_ONE + (1 << 16)  # one relevant item in the ``a`` and ``r`` fields (a kept record's increment)
_R_MASK = (1 << 24) - 1


@intrinsic
def _popcount(typingctx, x):  # noqa: ARG001 - numba intrinsic signature
    """LLVM ``ctpop`` of a uint64 as int64 (one POPCNT instruction on x86-64)."""
    sig = types.int64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@njit(inline="always")
def _row_words(a, i):
    """The first two words of row ``i`` of a packed (n, W) array (the first twice when W = 1)."""
    return a[i, 0], a[i, min(1, a.shape[1] - 1)]


@njit(inline="always")
def _label_count(ql, i):
    """Labels of query ``i`` (the largest grade any item can share with it)."""
    c = 0
    for w in range(ql.shape[1]):
        c += _popcount(ql[i, w])
    return c


@njit(inline="always")
def _distance(q0, q1, qc, i, dbf, j, wm):
    """Hamming distance of query ``i`` (first words ``q0``, ``q1``) and item ``j`` of the flat database words
    ``dbf`` (n·W,). ``wm``: a tuple of W zeros makes W = 1 or 2 a compile-time constant (numba specialises on the
    tuple's length); ``()`` = any W, read from ``qc`` at run time."""
    nw = len(wm)
    if nw == 1:
        return _popcount(q0 ^ dbf[j])
    if nw == 2:
        return _popcount(q0 ^ dbf[2 * j]) + _popcount(q1 ^ dbf[2 * j + 1])
    w_ = qc.shape[1]
    x = 0
    for w in range(w_):
        x += _popcount(qc[i, w] ^ dbf[j * w_ + w])
    return x


@njit(inline="always")
def _grade(l0, l1, ql, i, dblf, j, lm, graded):
    """Shared labels (``graded``), else 1/0 for any shared label; arguments as :func:`_distance`'s."""
    nl = len(lm)
    if graded:
        if nl == 1:
            return _popcount(l0 & dblf[j])
        if nl == 2:
            return _popcount(l0 & dblf[2 * j]) + _popcount(l1 & dblf[2 * j + 1])
        l_ = ql.shape[1]
        g = 0
        for w in range(l_):
            g += _popcount(ql[i, w] & dblf[j * l_ + w])
        return g
    if nl == 1:
        return np.int64((l0 & dblf[j]) != 0)
    if nl == 2:
        return np.int64(((l0 & dblf[2 * j]) | (l1 & dblf[2 * j + 1])) != 0)
    l_ = ql.shape[1]
    acc = np.uint64(0)
    for w in range(l_):
        acc |= ql[i, w] & dblf[j * l_ + w]
    return np.int64(acc != 0)


@njit(inline="always")
def _front(qc, dbf, ql, dblf, i, b0, m, wm, lm, graded, keyed, kb, gb, ib, gshift):
    """The first stage of a two-stage pass over the ``m`` items from ``b0`` for query ``i``: ``kb[t]`` = the key
    ``2·d + rel`` (``keyed``: the counting passes, :func:`_count`), else the distance ``d`` and ``ib[t]`` = the
    counter increment ``A + rel·R`` of an ordered scan (:func:`_records`), plus the grade shifted left by
    ``gshift`` when ``graded`` and ``gshift`` > 0; else ``gb[t]`` = the grade when ``graded``. No item depends
    on another, so the loop compiles to SIMD (VPOPCNTQ where the CPU has it) and the second stage is left with
    the per-item work that does depend on earlier items, reading these from L1: the floor takes 0.70-0.84x the
    time of one fused loop (``cmh bench eval`` sizes, one thread)."""
    q0, q1 = _row_words(qc, i)
    l0, l1 = _row_words(ql, i)
    w_ = qc.shape[1]
    l_ = ql.shape[1]
    dv = dbf[b0 * w_ : (b0 + m) * w_]  # views indexed from 0: contiguous loads
    lv = dblf[b0 * l_ : (b0 + m) * l_]
    for t in range(m):
        g = _grade(l0, l1, ql, i, lv, t, lm, graded)
        x = _distance(q0, q1, qc, i, dv, t, wm)
        rel = np.int64(g > 0)
        if keyed:
            kb[t] = 2 * x + rel
            if graded:
                gb[t] = g
            continue
        kb[t] = x
        if graded and gshift > 0:  # the grade rides in the increment (record layout with dbits < 16)
            ib[t] = _A_ONE + (rel << 16) + (g << gshift)
        else:
            ib[t] = _A_ONE + (rel << 16)
            if graded:
                gb[t] = g


@njit(inline="always")
def _count(o, kb, m):
    """The second stage of a counting pass: ``o[kb[t]] += 1`` for t < m (unsigned indices: no negative-index
    wrap-around code)."""
    for t in range(m):
        o[np.uint64(kb[t])] += 1


@njit(inline="always")
def _grade_clear(dbits):
    """The mask that clears a record's grade bits (``dbits``..15) from a counter word."""
    return ~((1 << 16) - (1 << dbits))


@njit(inline="always")
def _records(h, rec, grec, nb, xb, ib, gb, m, mode, dbits):
    """The second stage of an ordered scan: for the ``m`` items of a block (distances ``xb``, increments ``ib``,
    grades ``gb`` from :func:`_front`) writes the record ``h[d]`` (``mode`` 1: the word after the increment, which
    carries the grade in bits ``dbits``..15, cleared again in ``h[d]``; 2: the grade to ``grec``), counts the item
    in ``h[d]`` and advances the record slot by the relevance (bit 16 of the increment; branch-free); returns the
    new slot. Unsigned indices: ``xb`` and ``nb`` come from memory or an earlier block, and numba's negative-index
    wrap-around code would sit in the loop that bounds the scan."""
    keep = _grade_clear(dbits)
    for t in range(m):
        ux = np.uint64(xb[t])
        un = np.uint64(nb)
        inc = ib[t]
        v = h[ux]
        w = v + inc
        if mode == 1:  # the increment carries the grade: the record is the counter after it (see _post)
            rec[un] = w
            h[ux] = w & keep
        else:
            rec[un] = v
            h[ux] = w
        if mode == 2:
            grec[un] = gb[t]
        nb += (inc >> 16) & 1
    return nb


@njit(inline="always")
def _scan_block(qc, dbf, ql, dblf, i, b0, m, wm, lm, graded, dbits, h, rec, grec, nb, xb, ib, gb):
    """Both stages of an ordered scan of query ``i`` over the block of ``m`` items from ``b0``; returns the
    record count (three copies of the serial loop, each with its branches resolved at compile time)."""
    if not graded:
        _front(qc, dbf, ql, dblf, i, b0, m, wm, lm, False, False, xb, gb, ib, 0)
        return _records(h, rec, grec, nb, xb, ib, gb, m, 0, dbits)
    if dbits < 16:
        _front(qc, dbf, ql, dblf, i, b0, m, wm, lm, True, False, xb, gb, ib, dbits)
        return _records(h, rec, grec, nb, xb, ib, gb, m, 1, dbits)
    _front(qc, dbf, ql, dblf, i, b0, m, wm, lm, True, False, xb, gb, ib, 0)
    return _records(h, rec, grec, nb, xb, ib, gb, m, 2, dbits)


@njit(cache=True, nogil=True, error_model="numpy")
def _scan_records(
    qc, dbf, ql, dblf, i, n, wm, lm, graded, dbits, rec, grec, h, xb, ib, gb
):  # pragma: no cover - compiled
    """One query's ordered scan, in blocks of :data:`BLOCK` items (``xb``, ``ib``, ``gb``: (BLOCK,) scratch for
    the first stage): ``h[d]`` (k1,) ends as ``items << 40 | relevant << 16 | d`` and ``rec[:nb]`` holds ``h[d]``
    as each relevant item found it (after its own increment when grades share the word: :func:`_post`); returns
    nb. Grades (``graded``) go into bits ``dbits``..15 of the record when ``dbits`` < 16 (the distance then takes
    ``dbits`` bits), else into ``grec[:nb]``."""
    for d in range(h.shape[0]):
        h[d] = d
    nb = 0
    for b0 in range(0, n, BLOCK):
        m = min(BLOCK, n - b0)
        nb = _scan_block(qc, dbf, ql, dblf, i, b0, m, wm, lm, graded, dbits, h, rec, grec, nb, xb, ib, gb)
    return nb


@njit(inline="always")
def _record(h, rec, grec, nb, x, g, mode, dbits):
    """One item of the fused scan (:func:`_scan_records_pair`) at distance ``x`` with grade (or relevance)
    ``g``: :func:`_records`' work for one item, with the increment and the shifted grade computed here."""
    rel = np.int64(g > 0)
    ux = np.uint64(x)
    un = np.uint64(nb)
    v = h[ux]
    w = v + _A_ONE + (rel << 16)
    if mode == 1:  # as in _records: the counter after the increment, with the grade
        w += g << dbits
        rec[un] = w
        h[ux] = w & _grade_clear(dbits)
    else:
        rec[un] = v
        h[ux] = w
    if mode == 2:
        grec[un] = g
    return nb + rel


@njit(inline="always")
def _pair_item(ctx, i, k, j, qw, lw, wm, lm, graded, mode, dbits, arrs, nb, nb2):
    """Item ``j`` for both queries of :func:`_scan_records_pair`: ``ctx`` = (qc, ql, dbf, dblf), ``qw``/``lw`` their
    first code and label words, ``arrs`` = (h, rec, grec, h2, rec2, grec2); returns the two record counts."""
    qc, ql, dbf, dblf = ctx
    h, rec, grec, h2, rec2, grec2 = arrs
    xa = _distance(qw[0], qw[1], qc, i, dbf, j, wm)
    xb = _distance(qw[2], qw[3], qc, k, dbf, j, wm)
    ga = _grade(lw[0], lw[1], ql, i, dblf, j, lm, graded)
    gb = _grade(lw[2], lw[3], ql, k, dblf, j, lm, graded)
    return _record(h, rec, grec, nb, xa, ga, mode, dbits), _record(h2, rec2, grec2, nb2, xb, gb, mode, dbits)


@njit(cache=True, nogil=True, error_model="numpy")
def _scan_records_pair(
    qc, dbf, ql, dblf, i, k, n, wm, lm, graded, dbits, rec, grec, h, rec2, grec2, h2
):  # pragma: no cover - compiled
    """:func:`_scan_records` of queries ``i`` and ``k`` in one pass over a large database, in one fused loop per
    item (each database word serves both queries while it is in a register; :func:`_pairs` says when); returns
    their record counts."""
    a0, a1 = _row_words(qc, i)
    la0, la1 = _row_words(ql, i)
    b0, b1 = _row_words(qc, k)
    lb0, lb1 = _row_words(ql, k)
    for d in range(h.shape[0]):
        h[d] = d
        h2[d] = d
    nb = 0
    nb2 = 0
    qw = (a0, a1, b0, b1)
    lw = (la0, la1, lb0, lb1)
    ctx = (qc, ql, dbf, dblf)
    arrs = (h, rec, grec, h2, rec2, grec2)
    if not graded:  # three copies of the loop, each with its branches resolved at compile time
        for j in range(n):
            nb, nb2 = _pair_item(ctx, i, k, j, qw, lw, wm, lm, False, 0, dbits, arrs, nb, nb2)
    elif dbits < 16:
        for j in range(n):
            nb, nb2 = _pair_item(ctx, i, k, j, qw, lw, wm, lm, True, 1, dbits, arrs, nb, nb2)
    else:
        for j in range(n):
            nb, nb2 = _pair_item(ctx, i, k, j, qw, lw, wm, lm, True, 2, dbits, arrs, nb, nb2)
    return nb, nb2


@njit(inline="always")
def _post(graded, dbits):
    """1 when the records hold the counter word after their item's increment (grades beside the distance, where
    the increment carries the grade: one load and one OR fewer per item than or-ing it into the word before), else
    0: then ``a``, ``r`` of a record are one more than the items before it, which :func:`_rank_order` and
    :func:`_ap_sum_records` take off."""
    return 1 if graded and dbits < 16 else 0


@njit(cache=True, nogil=True, error_model="numpy")
def _record_grade(rec, grec, b, dbits):  # pragma: no cover - compiled
    """The grade of record ``b`` (see :func:`_scan_records`)."""
    if dbits < 16:
        return (rec[b] >> dbits) & ((1 << (16 - dbits)) - 1)
    return grec[b]


@njit(inline="always")
def _add_interleaved(sub, gh, g0):
    """``gh[g]`` += the four rows of ``sub`` (4, c+1) for g >= ``g0``: four histograms filled in turn (item or
    record ``t`` into row ``t & 3``), so that equal grades in a row do not wait on each other's increments."""
    for g in range(g0, gh.shape[0]):
        gh[g] += sub[0, g] + sub[1, g] + sub[2, g] + sub[3, g]


@njit(cache=True, nogil=True, error_model="numpy")
def _grade_counts(rec, grec, nb, dbits, top, sub, gh):  # pragma: no cover - compiled
    """``gh[g]`` += relevant records of grade g >= 1. Grades cannot exceed ``top`` (the query's own label
    count): up to 8, one vectorised pass that adds ``1 << 8(g - 1)`` per record to a word of eight 8-bit
    counters, read out every 255 records (one read of the records, which may not fit the core's cache, and two
    operations per record); beyond, the 4 interleaved histograms ``sub`` (4, c+1) of :func:`_add_interleaved`."""
    if top <= 8:
        for b0 in range(0, nb, 255):
            b1 = min(b0 + 255, nb)
            part = rec[b0:b1]  # views indexed from 0: contiguous loads, not gathers
            gpart = grec[b0:b1] if dbits == 16 else grec
            acc = 0
            for b in range(b1 - b0):
                acc += np.int64(1) << (8 * (_record_grade(part, gpart, b, dbits) - 1))
            for g in range(1, top + 1):
                gh[g] += (acc >> (8 * (g - 1))) & 255
        return
    sub[:] = 0
    for b in range(nb):
        sub[b & 3, _record_grade(rec, grec, b, dbits)] += 1
    _add_interleaved(sub, gh, 1)


@njit(cache=True, nogil=True, error_model="numpy")
def _scan_counts(qc, dbf, ql, dblf, i, n, wm, lm, graded, h2, gh):  # pragma: no cover - compiled
    """One query's counts only: ``h2[2d + rel]`` (2·k1,) and the per-grade counts ``gh`` when ``graded`` (two
    stages per block, :func:`_front` then :func:`_count`, as the floor)."""
    for t in range(h2.shape[0]):
        h2[t] = 0
    kb = np.empty(BLOCK, np.int64)
    gb = np.empty(BLOCK, np.int64)
    # interleaved grade histograms (:func:`_add_interleaved`): most items share grade 0
    gsub = np.zeros((4, gh.shape[0] if graded else 0), np.int64)
    for b0 in range(0, n, BLOCK):
        m = min(BLOCK, n - b0)
        if graded:
            _front(qc, dbf, ql, dblf, i, b0, m, wm, lm, True, True, kb, gb, kb, 0)
            for t in range(m):
                gsub[np.uint64(t & 3), np.uint64(gb[t])] += 1
        else:
            _front(qc, dbf, ql, dblf, i, b0, m, wm, lm, False, True, kb, gb, kb, 0)
        _count(h2, kb, m)
    if graded:
        _add_interleaved(gsub, gh, 0)


@njit(inline="always")
def _carry(hi, frac, lo):
    """Add ``lo`` (a sum of at most 1,024 terms in units of 2^-52) to the fixed-point pair (integer ``hi``,
    fraction ``frac`` < 2^52); returns the new pair."""
    frac += lo & _FIX_MASK
    return hi + (lo >> 52) + (frac >> 52), frac & _FIX_MASK


@njit(cache=True, nogil=True, error_model="numpy")
def _ap_sum_records(
    rec, nb, offa, offr, n, pack_limit, dmask, post, tab, tab2
):  # pragma: no cover - compiled
    """Σ hits/rank over the records ``rec[:nb]`` in index order, in fixed point (hi, lo), as :func:`_ap_sum` over
    them in rank order (the same terms; used when no top-k metric needs that order, which costs a scatter);
    ``offa``/``offr`` = B_d / RB_d. One vectorised loop: ``w = v + T[d]`` turns the record into
    ``rank << 40 | hits << 16`` (ranks below ``pack_limit``, :data:`PACK_LIMIT`), else two lookups. Terms are
    rounded to 2^-52 and carried once per 1,024 (1,024 terms <= 2**52 fit in lo); ``dmask`` selects the distance
    bits of a record."""
    k1 = offa.shape[0]
    top_a = 0
    top_r = 0
    for d in range(k1):
        top_a = max(top_a, offa[d])
        top_r = max(top_r, offr[d])
    packed = top_a + n < pack_limit and top_r + n <= _R_MASK
    for d in range(k1):
        if packed:
            tab[d] = ((offa[d] + 1 - post) << 40) + ((offr[d] + 1 - post) << 16) - d
        else:
            tab[d] = offa[d] + 1 - post
            tab2[d] = offr[d] + 1 - post
    hi = 0
    frac = 0
    for b0 in range(0, nb, 1024):
        lo = 0
        part = rec[b0 : min(b0 + 1024, nb)]  # a view indexed from 0: contiguous loads, not gathers
        if packed:
            for b in range(part.shape[0]):
                w = part[b] + tab[part[b] & dmask]
                t = np.float64((w >> 16) & _R_MASK) / np.float64(w >> 40)
                lo += np.int64(t * FIX_SCALE + 0.5)
        else:
            for b in range(part.shape[0]):
                v = part[b]
                x = v & dmask
                t = np.float64(tab2[x] + ((v >> 16) & _R_MASK)) / np.float64(tab[x] + (v >> 40))
                lo += np.int64(t * FIX_SCALE + 0.5)
        hi, frac = _carry(hi, frac, lo)
    return hi, frac


@njit(cache=True, nogil=True, error_model="numpy")
def _ap_sum(srt, relh, loc, offa, offr):  # pragma: no cover - compiled
    """Σ hits/rank in fixed point (hi, lo) over the records in rank order (:func:`_rank_order`): the ``relh[d]``
    relevant items at distance d sit at ``loc[d]`` onwards, the r-th with rank = B_d + a + 1 (``a`` in the
    record) and hits = RB_d + r + 1 (``offa``/``offr`` = B_d / RB_d): one vectorised loop per distance, with its
    offsets constant. Terms are rounded to 2^-52 and carried once per 1,024 (1,024 terms <= 2**52 fit in lo)."""
    hi = 0
    frac = 0
    for d in range(relh.shape[0]):
        rank0 = offa[d] + 1
        for b0 in range(0, relh[d], 1024):
            part = srt[loc[d] + b0 : loc[d] + min(b0 + 1024, relh[d])]  # a view from 0: contiguous loads
            hits0 = offr[d] + 1 + b0
            lo = 0
            for k in range(part.shape[0]):
                t = np.float64(hits0 + k) / np.float64(rank0 + (part[k] >> 40))
                lo += np.int64(t * FIX_SCALE + 0.5)
            hi, frac = _carry(hi, frac, lo)
    return hi, frac


@njit(cache=True, nogil=True, error_model="numpy")
def _rank_order(rec, grec, nb, dbits, post, loc, srt, sgr):  # pragma: no cover - compiled
    """Copy the records ``rec[:nb]`` into ``srt[:nb]`` in rank order: the record of the r-th relevant item at
    distance d (``r`` is in the record) goes to ``loc[d] + r``, ``loc`` = this scan's relevant items at smaller
    distances. Position = (distance, index) order = ascending rank, with no sort (one scatter, no chain); the
    grades of ``grec`` follow to ``sgr`` when they have their own array (``dbits`` = 16)."""
    dmask = (1 << dbits) - 1
    graded = sgr.shape[0] > 0
    for b in range(nb):
        v = rec[b]
        pos = loc[v & dmask] + ((v >> 16) & _R_MASK) - post
        srt[pos] = v - post * _KEPT
        if graded:
            sgr[pos] = grec[b]


@njit(inline="always")
def _sorted_rank(srt, pos, offa, dmask):
    """Rank (1-based, stable) of the relevant item at position ``pos`` of :func:`_rank_order`'s ``srt``."""
    v = srt[pos]
    return offa[v & dmask] + (v >> 40) + 1


@njit(inline="always")
def _running_sum(s, c, ks, rank, term, out):
    """One term of a top-k sum met in rank order: first sets ``out[c]`` to the sum ``s`` so far for every
    ``ks[c]`` below ``rank``, then adds ``term``; returns (s, c)."""
    while c < ks.shape[0] and ks[c] < rank:
        out[c] = s
        c += 1
    return s + term, c


@njit(cache=True, nogil=True, error_model="numpy")
def _top_ranks(
    srt, sgr, nb, dbits, offa, offr, probes, tks, nks, disc, gains, dense, pc, tm, gn, tat, gat
):  # pragma: no cover - compiled
    """The top-k outputs of one query from its records in rank order (:func:`_rank_order`): adds to the probe
    counts ``pc`` (relevant items with rank <= ``probes[p]``: a binary search, ranks ascend with the position),
    and over the first relevant items only, for ranks <= ``tks[-1]`` / ``nks[-1]``, takes the terms hits/rank
    and the gains ``gains[g]`` times the discount ``disc``: ``dense`` stores them in ``tm`` / ``gn`` at position
    rank - 1 (a shard's rows, summed after the merge by :func:`prefix_at`), else sums them into ``tat[c]`` /
    ``gat[c]`` over ranks <= ``tks[c]`` / ``nks[c]``. The sums add the same terms in the same (rank) order as
    :func:`_sums_at` over the dense row, whose other cells are zeros, so the two agree bit for bit."""
    dmask = (1 << dbits) - 1
    lo = 0
    for p in range(probes.shape[0]):  # probes ascend, so the counts do: each search starts at the last count
        hi = nb
        while lo < hi:
            mid = (lo + hi) >> 1
            if _sorted_rank(srt, mid, offa, dmask) <= probes[p]:
                lo = mid + 1
            else:
                hi = mid
        pc[p] += lo
    kt = tks[-1] if tks.shape[0] else 0
    kn = nks[-1] if nks.shape[0] else 0
    top = max(kt, kn)
    st = 0.0
    sg = 0.0
    ct = 0
    cg = 0
    for pos in range(nb):
        v = srt[pos]
        x = v & dmask
        rank = offa[x] + (v >> 40) + 1
        if rank > top:
            break
        if rank <= kt:
            t = np.float64(offr[x] + ((v >> 16) & _R_MASK) + 1) / np.float64(rank)
            if dense:
                tm[rank - 1] = t
            else:
                st, ct = _running_sum(st, ct, tks, rank, t, tat)
        if rank <= kn:
            g = sgr[pos] if dbits == 16 else (v >> dbits) & ((1 << (16 - dbits)) - 1)
            gv = gains[g] * disc[rank - 1]
            if dense:
                gn[rank - 1] = gv
            else:
                sg, cg = _running_sum(sg, cg, nks, rank, gv, gat)
    if not dense:
        for c in range(ct, tat.shape[0]):
            tat[c] = st
        for c in range(cg, gat.shape[0]):
            gat[c] = sg


@njit(cache=True, nogil=True, error_model="numpy")
def _sums_at(row, ks, out):  # pragma: no cover - compiled
    """``out[c]`` = sum of ``row``'s first ``ks[c]`` entries (sequential, in rank order; ks sorted, clipped to
    the row length). The one summation order of the top-k sums: :func:`prefix_at`'s merged shard rows go through
    it, and :func:`_top_ranks` adds the same terms in the same order without the zeros, so a sharded evaluation
    and one process agree bit for bit."""
    s = 0.0
    p = 0
    for c in range(ks.shape[0]):
        end = min(ks[c], row.shape[0])
        while p < end:
            s += row[p]
            p += 1
        out[c] = s


@njit(parallel=True, cache=True, nogil=True)
def scan_kernel(
    qc, dbf, ql, dblf, wm, lm, graded, order, need_ap, off_all, off_rel, probes, tks, nks, disc, gains, pack_limit, dbits, pairs, hist, relh, ghist, apfix, pcnt, term, gain, term_at, gain_at
):  # fmt: skip  # pragma: no cover - compiled; exercised through evaluate()
    """Fill the per-query outputs (see the module docstring) for queries ``qc`` against the database.

    qc (nq, W), ql (nq, L): uint64 packed query codes / labels; dbf (n·W,), dblf (n·L,): the database's packed
    rows flattened (row-major); ``wm``/``lm``: width markers (:func:`width_marker`); ``graded``: count shared
    labels (NDCG); ``order``: compute the rank outputs (else counts only; then any n, else n <= MAX_ROWS);
    ``need_ap``: the mAP@all sum; ``pack_limit``: :data:`PACK_LIMIT`; ``dbits``: the distance bits of a record
    (9 when K < 512 and grades < 128 fit beside it, else 16: :func:`record_layout`); ``pairs``: scan two queries
    per pass over the database (:data:`PAIR_BYTES`); ``off_all``/``off_rel`` (nq, K+1) int64:
    given B_d / RB_d, or shape (0, 0) to take them from this scan's own histograms. ``tks``/``nks``: the sorted
    widths of map@k / NDCG@k; with ``term``/``gain`` of shape (nq, tks[-1]) / (nq, nks[-1]) ("dense", for shards)
    the kernel stores the per-rank terms there, else it sums them, in rank order, over the first k ranks into
    ``term_at`` (nq, len(tks)) / ``gain_at`` (nq, len(nks)) — bit for bit the sums :func:`prefix_at` takes of
    the dense rows. Outputs are zero-initialised by the caller. Blocks of queries run in parallel (numba ``prange``; ``numba.set_num_threads``)."""
    nq = qc.shape[0]
    n = dbf.shape[0] // qc.shape[1]
    k1 = hist.shape[1]
    nprobe = probes.shape[0]
    given = off_all.shape[0] > 0
    kt = tks[-1] if tks.shape[0] else 0
    kn = nks[-1] if nks.shape[0] else 0
    dense = term.shape[1] == kt and gain.shape[1] == kn
    tops = nprobe > 0 or kt > 0 or kn > 0
    nblocks = min(nq, 64)
    for blk in prange(nblocks):
        rec = np.empty(n if order else 0, np.int64)
        grec = np.empty(n if order and graded and dbits == 16 else 0, np.int64)
        rec2 = np.empty(n if order and pairs else 0, np.int64)  # the second query of a pair
        grec2 = np.empty(n if order and pairs and graded and dbits == 16 else 0, np.int64)
        h2 = np.empty(2 * k1, np.int64)
        srt = np.empty(n if order and tops else 0, np.int64)  # the records in rank order (_rank_order)
        sgr = np.empty(n if order and tops and graded and dbits == 16 else 0, np.int64)
        gsub = np.empty((4, ghist.shape[1]), np.int64)
        h = np.empty(2 * k1, np.int64)
        offa = np.empty(k1, np.int64)
        offr = np.empty(k1, np.int64)
        tab = np.empty(k1, np.int64)
        tab2 = np.empty(k1, np.int64)
        loc = np.empty(k1, np.int64)
        xb = np.empty(BLOCK, np.int64)  # the first stage of the scan (_front)
        ib = np.empty(BLOCK, np.int64)
        gb = np.empty(BLOCK, np.int64)
        i0 = blk * nq // nblocks
        i1 = (blk + 1) * nq // nblocks
        if not order:
            for i in range(i0, i1):
                _scan_counts(qc, dbf, ql, dblf, i, n, wm, lm, graded, h, ghist[i])
                for d in range(k1):
                    hist[i, d] = h[2 * d] + h[2 * d + 1]
                    relh[i, d] = h[2 * d + 1]
            continue
        step = 2 if pairs else 1
        for i in range(i0, i1, step):  # pairs: two queries per pass over the database; an odd last one alone
            k = i + 1 if pairs and i + 1 < i1 else -1
            if k >= 0:
                nb, nb2 = _scan_records_pair(
                    qc, dbf, ql, dblf, i, k, n, wm, lm, graded, dbits, rec, grec, h, rec2, grec2, h2
                )
            else:
                nb = _scan_records(qc, dbf, ql, dblf, i, n, wm, lm, graded, dbits, rec, grec, h, xb, ib, gb)
                nb2 = 0
            for j in range(i, i + 1 if k < 0 else i + 2):
                if j == i:
                    nbj, recj, grecj, hj = nb, rec, grec, h
                else:
                    nbj, recj, grecj, hj = nb2, rec2, grec2, h2
                _finish_query(
                    j, nbj, recj, grecj, hj, n, ql, graded, need_ap, given, off_all, off_rel, probes, tks, nks,
                    dense, tops, disc, gains, pack_limit, dbits, hist, relh, ghist, apfix, pcnt, term, gain,
                    term_at, gain_at, gsub, offa, offr, tab, tab2, srt, sgr, loc,
                )  # fmt: skip


@njit(cache=True, nogil=True, error_model="numpy")
def _finish_query(
    i, nb, rec, grec, h, n, ql, graded, need_ap, given, off_all, off_rel, probes, tks, nks, dense, tops, disc,
    gains, pack_limit, dbits, hist, relh, ghist, apfix, pcnt, term, gain, term_at, gain_at, gsub, offa,
    offr, tab, tab2, srt, sgr, loc,
):  # fmt: skip  # pragma: no cover - compiled
    """Query ``i``'s outputs from its scan (records ``rec[:nb]``, counter words ``h``): the histograms, grade
    counts, offsets, AP sum and top-k outputs (arguments as :func:`scan_kernel`'s, plus its scratch arrays)."""
    k1 = hist.shape[1]
    post = _post(graded, dbits)
    for d in range(k1):
        hist[i, d] = h[d] >> 40
        relh[i, d] = (h[d] >> 16) & _R_MASK
    if graded:
        ghist[i, 0] = n - nb
        _grade_counts(rec, grec, nb, dbits, _label_count(ql, i), gsub, ghist[i])
    acc = 0
    racc = 0
    # loc: this scan's relevant items at smaller distances (= offr unless offsets are given)
    for d in range(k1):
        loc[d] = racc
        offa[d] = off_all[i, d] if given else acc
        offr[d] = off_rel[i, d] if given else racc
        acc += hist[i, d]
        racc += relh[i, d]
    if tops:
        _rank_order(rec, grec, nb, dbits, post, loc, srt, sgr)
    if need_ap:
        if tops:
            hi, lo = _ap_sum(srt, relh[i], loc, offa, offr)
        else:
            hi, lo = _ap_sum_records(rec, nb, offa, offr, n, pack_limit, (1 << dbits) - 1, post, tab, tab2)
        apfix[i, 0] = hi
        apfix[i, 1] = lo
    if tops:
        _top_ranks(
            srt, sgr, nb, dbits, offa, offr, probes, tks, nks, disc, gains, dense, pcnt[i], term[i], gain[i],
            term_at[i], gain_at[i],
        )  # fmt: skip


@njit(parallel=True, cache=True, nogil=True)
def floor_kernel(qc, dbf, ql, dblf, wm, lm, out):  # pragma: no cover - compiled
    """The floor of any exact evaluation: popcount distance, any-shared-label relevance and one histogram of
    ``2·d + rel`` per query (out (nq, 2(K+1)) int64, zero-initialised) — nothing else, in the fastest form
    measured: per block of :data:`BLOCK` items, the keys in one SIMD loop, then the increments."""
    nq = qc.shape[0]
    n = dbf.shape[0] // qc.shape[1]
    for i in prange(nq):
        kb = np.empty(BLOCK, np.int64)
        for b0 in range(0, n, BLOCK):
            m = min(BLOCK, n - b0)
            _front(qc, dbf, ql, dblf, i, b0, m, wm, lm, False, True, kb, kb, kb, 0)
            _count(out[i], kb, m)


@njit(parallel=True, cache=True, nogil=True)
def floor_pairs_kernel(qc, dbf, ql, dblf, wm, lm, out):  # pragma: no cover - compiled
    """:func:`floor_kernel` with two queries per block of the database (the second query's keys read the block
    from L1): the same counts, at times faster once the database leaves the core's cache (the scan pairs queries
    past :data:`PAIR_BYTES`, :func:`_pairs`); ``cmh bench eval`` takes the faster of the two floors, so the ratio
    never flatters the scan."""
    nq = qc.shape[0]
    n = dbf.shape[0] // qc.shape[1]
    for pair in prange((nq + 1) // 2):
        i = 2 * pair
        k = min(i + 1, nq - 1)  # an odd last query pairs with itself; its second count is dropped
        ok = out[k] if k != i else np.zeros_like(out[i])
        ka = np.empty(BLOCK, np.int64)
        kb = np.empty(BLOCK, np.int64)
        for b0 in range(0, n, BLOCK):  # the second query's keys read the block from L1
            m = min(BLOCK, n - b0)
            _front(qc, dbf, ql, dblf, i, b0, m, wm, lm, False, True, ka, ka, ka, 0)
            _front(qc, dbf, ql, dblf, k, b0, m, wm, lm, False, True, kb, kb, kb, 0)
            _count(out[i], ka, m)
            _count(ok, kb, m)


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


def record_layout(bits: int, nclass: int) -> int:
    """The distance bits of a record (:func:`_scan_records`): 9 when the distance (<= K < 512) and the grade
    (<= c < 128) share the low 16 bits, so NDCG needs no second array; else 16 (grades in their own array)."""
    return 9 if bits < 512 and nclass < 128 else 16


def normalise_fixed(apfix: np.ndarray) -> np.ndarray:
    """Carry the fractional words (units of 2^-52) of summed fixed-point AP numerators into the integer part."""
    out = apfix.copy()
    out[:, 0] += out[:, 1] >> 52
    out[:, 1] &= _FIX_MASK
    return out


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
    tks: np.ndarray,
    nks: np.ndarray,
    need_ap: bool = True,
    offsets: tuple[np.ndarray, np.ndarray] | None = None,
    dense: bool = False,
) -> dict[str, np.ndarray]:
    """Allocate the outputs and run :func:`scan_kernel` on packed words (see :func:`pack_rows`); returns
    ``hist``, ``relh``, ``ghist``, ``apfix``, ``pcnt`` and, for the top-k sums, ``term_at``/``gain_at``
    (nq, len(tks)) / (nq, len(nks)), or with ``dense`` the per-rank ``term``/``gain`` rows (module docstring;
    shards return these, since only their merged rows may be summed). ``offsets``: the (B_d, RB_d) arrays
    (nq, K+1) of a shard, None for a whole database. An ordered scan of more than :data:`MAX_ROWS` rows runs
    part by part (a counts pass first when ``offsets`` is None), with the same outputs. Threads:
    ``numba.set_num_threads``."""
    probes, tks, nks = (np.ascontiguousarray(a, dtype=np.int64) for a in (probes, tks, nks))
    kw = dict(graded=graded, order=order, probes=probes, tks=tks, nks=nks, need_ap=need_ap)
    if order and dbc.shape[0] > MAX_ROWS:
        return _run_in_parts(qc, dbc, ql, dbl, bits, nclass, kw, offsets, dense)
    nq = qc.shape[0]
    k1 = bits + 1
    kt = int(tks[-1]) if order and tks.size else 0
    kn = int(nks[-1]) if order and nks.size else 0
    out = {
        "hist": np.zeros((nq, k1), np.int64),
        "relh": np.zeros((nq, k1), np.int64),
        "ghist": np.zeros((nq, nclass + 1 if graded else 0), np.int64),
        "apfix": np.zeros((nq, 2), np.int64),
        "pcnt": np.zeros((nq, probes.size), np.int64),
        "term": np.zeros((nq, kt if dense else 0)),
        "gain": np.zeros((nq, kn if dense else 0)),
        "term_at": np.zeros((nq, 0 if dense or not order else tks.size)),
        "gain_at": np.zeros((nq, 0 if dense or not order else nks.size)),
    }
    disc = 1.0 / np.log2(np.arange(2, kn + 2, dtype=np.float64))  # ranks 1..kn
    gains = 2.0 ** np.arange(nclass + 1 if graded else 0) - 1.0  # NDCG gain of each grade: pow once per call
    none = np.zeros((0, 0), np.int64)
    off_all, off_rel = (
        (none, none) if offsets is None else (np.ascontiguousarray(o, np.int64) for o in offsets)
    )
    wm, lm = width_marker(qc.shape[1]), width_marker(ql.shape[1])
    if dbc.shape[0]:
        scan_kernel(
            qc, _flat(dbc), ql, _flat(dbl), wm, lm, graded, order, need_ap, off_all, off_rel, probes,
            tks if order else tks[:0], nks if order else nks[:0], disc, gains, PACK_LIMIT,
            record_layout(bits, nclass if graded else 1), _pairs(dbc, dbl), *out.values(),
        )  # fmt: skip
    for key in ("term", "gain") if not dense else ("term_at", "gain_at"):
        del out[key]
    return out


def _pairs(dbc: np.ndarray, dbl: np.ndarray) -> bool:
    """Scan two queries per pass in one fused loop past :data:`PAIR_BYTES` of packed database. The two-stage
    scan is faster while its records stay near the core and slower once they stream past it: against the fused
    pair, A/B in one process, one thread, outputs identical, it took 0.86-0.95x the time at NUS-WIDE size
    (3 MiB of packed rows), 1.04-1.12x at 400,000 items (6.4 MiB) and 1.22-1.39x at 1,000,000 (16 MiB; a
    prefetch of the next block during the serial stage did not help); two queries per pass in the two-stage form
    gained only 1-5 % there."""
    return dbc.nbytes + dbl.nbytes > PAIR_BYTES


def _flat(a: np.ndarray) -> np.ndarray:
    """The rows of a packed (n, W) array as one C-contiguous (n·W,) array (a view when already contiguous)."""
    return np.ascontiguousarray(a).reshape(-1)


def _run_in_parts(
    qc: np.ndarray,
    dbc: np.ndarray,
    ql: np.ndarray,
    dbl: np.ndarray,
    bits: int,
    nclass: int,
    kw: dict,
    offsets: tuple[np.ndarray, np.ndarray] | None,
    dense: bool,
) -> dict[str, np.ndarray]:
    """:func:`run_scan` over parts of at most :data:`MAX_ROWS` rows: part ``p`` is ranked with the offsets of
    its first item (B_d plus the items at d in earlier parts), so the summed outputs equal one scan's (the
    top-k rows are merged before their sums are taken)."""
    parts = [slice(s, s + MAX_ROWS) for s in range(0, dbc.shape[0], MAX_ROWS)]
    if offsets is None:
        counts = [
            run_scan(qc, dbc[p], ql, dbl[p], bits, nclass, **{**kw, "order": False, "graded": False})
            for p in parts
        ]
        hist, relh = sum(c["hist"] for c in counts), sum(c["relh"] for c in counts)
        offsets = (np.cumsum(hist, 1) - hist, np.cumsum(relh, 1) - relh)
    run_all, run_rel = (np.array(o, dtype=np.int64) for o in offsets)
    out: dict[str, np.ndarray] = {}
    for p in parts:
        raw = run_scan(qc, dbc[p], ql, dbl[p], bits, nclass, offsets=(run_all, run_rel), dense=True, **kw)
        run_all += raw["hist"]
        run_rel += raw["relh"]
        out = {k: out[k] + v if k in out else v for k, v in raw.items()}
    out["apfix"] = normalise_fixed(out["apfix"])
    if not dense:
        out["term_at"] = prefix_at(out.pop("term"), kw["tks"])
        out["gain_at"] = prefix_at(out.pop("gain"), kw["nks"])
    return out


def run_floor(
    qc: np.ndarray, dbc: np.ndarray, ql: np.ndarray, dbl: np.ndarray, bits: int, *, pairs: bool = False
) -> np.ndarray:
    """:func:`floor_kernel` (``pairs``: :func:`floor_pairs_kernel`) on packed words: (nq, K+1, 2) counts of
    [non-relevant, relevant] per distance."""
    out = np.zeros((qc.shape[0], 2 * (bits + 1)), np.int64)
    kernel = floor_pairs_kernel if pairs else floor_kernel
    kernel(qc, _flat(dbc), ql, _flat(dbl), width_marker(qc.shape[1]), width_marker(ql.shape[1]), out)
    return out.reshape(qc.shape[0], bits + 1, 2)


@njit(parallel=True, cache=True, nogil=True)
def prefix_at(arr, ks):  # pragma: no cover - compiled
    """(nq, len(ks)) sums of each row's first k entries (sequential, in rank order), for the sorted ks <= the
    row length; rows in parallel."""
    out = np.zeros((arr.shape[0], ks.shape[0]))
    for i in prange(arr.shape[0]):
        _sums_at(arr[i], ks, out[i])
    return out


@njit(cache=True, nogil=True)
def tie_avg_ap(hist, relh, harm):  # pragma: no cover - compiled
    """(nq,) expected AP over all orders of tied items (McSherry & Najork, ECIR 2008) from the per-distance counts
    ``hist``/``relh`` (nq, K+1) of all and of relevant items; ``harm`` (n+1,): harmonic numbers H_0..H_n.

    For a tie group of ``m`` items (``r`` relevant) preceded by ``N`` items (``R`` relevant), the j-th slot is
    relevant with probability r/m and then holds on average ``R + 1 + (j-1)(r-1)/(m-1)`` hits, so the group adds
    ``(r/m) Σ_j [R + 1 + (j-1)(r-1)/(m-1)] / (N + j)``, where Σ_j 1/(N+j) = H_{N+m} - H_N and
    Σ_j (j-1)/(N+j) = m - (N+1)(H_{N+m} - H_N). 0 for a query with no relevant item; one thread (a few
    operations per query and distance: a parallel region would cost more to start than it saves)."""
    nq, k1 = hist.shape
    out = np.zeros(nq)
    for i in range(nq):
        before = 0
        relbefore = 0
        s = 0.0
        for d in range(k1):
            m = hist[i, d]
            r = relh[i, d]
            if r > 0:
                dh = harm[before + m] - harm[before]
                s1 = m - (before + 1) * dh
                frac = (r - 1) / (m - 1) if m > 1 else 0.0
                s += r / m * ((relbefore + 1) * dh + frac * s1)
            before += m
            relbefore += r
        if relbefore > 0:
            out[i] = s / relbefore
    return out


@njit(cache=True, nogil=True)
def ideal_dcg_at(ghist, ks, disc):  # pragma: no cover - compiled
    """(nq, len(ks)) ideal DCG@k (grades in decreasing order, gain 2^g - 1, discount ``disc``) from the per-grade
    counts ``ghist`` (nq, c+1), for the sorted ks <= len(disc); one thread. The items of one grade fill
    positions [p, e): they add gain times a difference of the discounts' prefix sums to every k > p."""
    nq, c1 = ghist.shape
    kmax = disc.shape[0]
    cdisc = np.zeros(kmax + 1)  # cdisc[p] = Σ disc[:p]
    for p in range(kmax):
        cdisc[p + 1] = cdisc[p] + disc[p]
    out = np.zeros((nq, ks.shape[0]))
    for i in range(nq):
        p = 0
        for g in range(c1 - 1, 0, -1):
            if p >= kmax:
                break
            m = ghist[i, g]
            if m == 0:
                continue
            e = min(p + m, kmax)
            gain = 2.0**g - 1.0
            for c in range(ks.shape[0]):
                if ks[c] > p:
                    out[i, c] += gain * (cdisc[min(e, ks[c])] - cdisc[p])
            p = e
    return out
