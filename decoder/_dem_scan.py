"""Compiled kernels that read a flattened DEM's text into merged fault columns.

:meth:`qecd.decoder.fault_table.FaultTable.from_dem` prints the flattened DEM (stim's own
text, probabilities round-trippable) and hands the bytes here. Walking the instructions
through stim's Python objects cost ~12 µs per ``error`` (3.3 s for the 7.9 MB, 181,000-error
DEM of a d=11 surface code over 53 rounds, most of a plan build); these kernels do the same
in tens of milliseconds.

The steps, each a kernel:

1. :func:`scan` walks the text once: for every ``error`` line, where its argument lies and
   its targets as codes (``D k`` as ``k``, ``L k`` as ``-2 - k``, ``^`` as ``-1``).
2. :func:`components` splits (``graph``) or XORs (hypergraph) each error's targets into
   components with sorted detector and observable lists (a repeated target cancels), drops
   components that flip no detector, and finds the first graph component with more than two
   detectors.
3. :func:`sort_components` orders components by their key (the detector tuple; for
   hypergraph columns the (detectors, observables) pair), ties in DEM order (a stable merge
   sort), so equal keys are adjacent and in the order the DEM lists them.
4. :func:`merge` folds each run of equal keys exactly as the reference rule does (same
   observables: independent errors combine, and the most likely error names the fault;
   different observables: the more likely fault wins), in the same floating-point order.

Only this module's caller knows the rules' meaning; see :class:`FaultTable` for them.

Example
-------
>>> import numpy as np
>>> text = np.frombuffer(b"error(0.1) D0 D1 ^ D1 L0\\ndetector D0\\nerror(0.2) D1 L0\\n", np.uint8)
>>> none = np.zeros(0, np.int64)
>>> n_err, n_tgt, bad = scan(text, none, none, none)
>>> (n_err, n_tgt, bad)
(2, 7, -1)
>>> arg_at, tgt_ptr = np.empty(2 * n_err, np.int64), np.zeros(n_err + 1, np.int64)
>>> tgt = np.empty(n_tgt, np.int64)
>>> _ = scan(text, arg_at, tgt_ptr, tgt)
>>> tgt.tolist()  # D k as k, L k as -2 - k, ^ as -1
[0, 1, -1, 1, -2, 1, -2]
>>> det_ptr, dets, obs_ptr, obs, err, p, bad = components(tgt_ptr, tgt, np.array([0.1, 0.2]), 1)
>>> [dets[det_ptr[c]:det_ptr[c + 1]].tolist() for c in range(len(err))], err.tolist()
([[0, 1], [1], [1]], [0, 0, 1])
>>> order = sort_components(det_ptr, dets, obs_ptr, obs, 0)
>>> rep, fp, idx = merge(order, det_ptr, dets, obs_ptr, obs, err, p, 0)
>>> idx.tolist(), [round(float(x), 2) for x in fp]  # D1 L0 at 0.1 and 0.2: combined, named by #1
([0, 1], [0.1, 0.26])
"""

from __future__ import annotations

import numba
import numpy as np

from qecd import _jit

_SEP = -1  #: target code of ``^``


@numba.njit(**_jit.ALLOCATING)
def scan(text, arg_at, tgt_ptr, tgt):  # pragma: no cover - compiled
    """Walk ``text`` (uint8, stim's flattened DEM). With zero-length outputs, count: returns
    ``(errors, targets, -1)``. With outputs of those sizes, fill them: ``arg_at`` (2 per
    error: start and end of the argument text), ``tgt_ptr`` (errors + 1 offsets into
    ``tgt``), ``tgt`` (target codes). The third value is the byte offset of text this
    scanner does not read (-1: none)."""
    fill = tgt_ptr.shape[0] > 0
    n = text.shape[0]
    i = 0
    e = 0
    t = 0
    while i < n:
        # a line: is it an error instruction?
        if (i + 5 < n and text[i] == 101 and text[i + 1] == 114 and text[i + 2] == 114
                and text[i + 3] == 111 and text[i + 4] == 114
                and (text[i + 5] == 40 or text[i + 5] == 91)):  # "error(" or "error["
            j = i + 5
            if text[j] == 91:  # a tag: skip to its closing bracket
                while j < n and text[j] != 93:
                    j += 1
                j += 1
            if j >= n or text[j] != 40:
                return e, t, i
            a0 = j + 1
            while j < n and text[j] != 41:
                j += 1
            if j >= n:
                return e, t, i
            if fill:
                arg_at[2 * e] = a0
                arg_at[2 * e + 1] = j
                tgt_ptr[e] = t
            j += 1
            while j < n and text[j] != 10:
                c = text[j]
                if c == 32 or c == 13 or c == 9:
                    j += 1
                elif c == 94:  # ^
                    if fill:
                        tgt[t] = _SEP
                    t += 1
                    j += 1
                elif c == 68 or c == 76:  # D k, L k
                    j += 1
                    if j >= n or text[j] < 48 or text[j] > 57:
                        return e, t, j
                    v = 0
                    while j < n and 48 <= text[j] <= 57:
                        v = v * 10 + (text[j] - 48)
                        j += 1
                    if fill:
                        tgt[t] = v if c == 68 else -2 - v
                    t += 1
                else:
                    return e, t, j
            e += 1
            if fill:
                tgt_ptr[e] = t
            i = j + 1
        else:
            while i < n and text[i] != 10:
                i += 1
            i += 1
    return e, t, -1


@numba.njit(**_jit.ALLOCATING)
def _sorted_parity(vals, m):  # pragma: no cover - compiled
    """Sort ``vals[:m]`` in place and drop pairs of equal values (a target listed twice
    cancels); returns the new length."""
    for a in range(1, m):  # insertion sort: components are short
        x = vals[a]
        b = a - 1
        while b >= 0 and vals[b] > x:
            vals[b + 1] = vals[b]
            b -= 1
        vals[b + 1] = x
    k = 0
    a = 0
    while a < m:
        if a + 1 < m and vals[a + 1] == vals[a]:
            a += 2
        else:
            vals[k] = vals[a]
            k += 1
            a += 1
    return k


@numba.njit(**_jit.ALLOCATING)
def components(tgt_ptr, tgt, probs, graph):  # pragma: no cover - compiled
    """Components of every error with ``p > 0`` (see the module text). Returns
    ``(det_ptr, dets, obs_ptr, obs, err, p, bad)``: CSR detector and observable lists per
    component, its error index and probability, and ``bad``, the index of the first graph
    component with more than two detectors (-1: none; then the lists end there)."""
    n_err = tgt_ptr.shape[0] - 1
    n_t = tgt.shape[0]
    cap = n_t + 1
    det_ptr = np.zeros(cap + 1, np.int64)
    obs_ptr = np.zeros(cap + 1, np.int64)
    dets = np.empty(n_t, np.int64)
    obs = np.empty(n_t, np.int64)
    err = np.empty(cap, np.int64)
    pr = np.empty(cap, np.float64)
    dbuf = np.empty(n_t + 1, np.int64)
    obuf = np.empty(n_t + 1, np.int64)
    c = 0
    nd = 0
    no = 0
    for e in range(n_err):
        p = probs[e]
        if not p > 0.0:
            continue
        a = tgt_ptr[e]
        end = tgt_ptr[e + 1]
        while True:
            md = 0
            mo = 0
            while a < end and (graph == 0 or tgt[a] != _SEP):
                v = tgt[a]
                if v >= 0:
                    dbuf[md] = v
                    md += 1
                elif v <= -2:
                    obuf[mo] = -2 - v
                    mo += 1
                a += 1
            md = _sorted_parity(dbuf, md)
            mo = _sorted_parity(obuf, mo)
            if md > 0:
                for q in range(md):
                    dets[nd + q] = dbuf[q]
                for q in range(mo):
                    obs[no + q] = obuf[q]
                nd += md
                no += mo
                err[c] = e
                pr[c] = p
                c += 1
                det_ptr[c] = nd
                obs_ptr[c] = no
                if graph != 0 and md > 2:
                    return det_ptr[: c + 1], dets[:nd], obs_ptr[: c + 1], obs[:no], \
                        err[:c], pr[:c], c - 1
            if a >= end:
                break
            a += 1  # past the separator
    return det_ptr[: c + 1], dets[:nd], obs_ptr[: c + 1], obs[:no], err[:c], pr[:c], -1


@numba.njit(**_jit.INLINE)
def _cmp_lists(ptr, vals, x, y):  # pragma: no cover - compiled
    """Tuple order of lists ``x`` and ``y`` of a CSR: -1, 0 or 1."""
    a, a_end = ptr[x], ptr[x + 1]
    b, b_end = ptr[y], ptr[y + 1]
    while a < a_end and b < b_end:
        if vals[a] != vals[b]:
            return -1 if vals[a] < vals[b] else 1
        a += 1
        b += 1
    la = a_end - a
    lb = b_end - b
    if la == lb:
        return 0
    return -1 if la < lb else 1


@numba.njit(**_jit.ALLOCATING)
def _cmp_key(det_ptr, dets, obs_ptr, obs, with_obs, x, y):  # pragma: no cover - compiled
    r = _cmp_lists(det_ptr, dets, x, y)
    if r != 0 or with_obs == 0:
        return r
    return _cmp_lists(obs_ptr, obs, x, y)


@numba.njit(**_jit.ALLOCATING)
def sort_components(det_ptr, dets, obs_ptr, obs, with_obs):  # pragma: no cover - compiled
    """Component indices in key order, equal keys in index order (bottom-up merge sort)."""
    n = det_ptr.shape[0] - 1
    src = np.arange(n)
    dst = np.empty(n, np.int64)
    width = 1
    while width < n:
        lo = 0
        while lo < n:
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            a, b, k = lo, mid, lo
            while a < mid and b < hi:
                if _cmp_key(det_ptr, dets, obs_ptr, obs, with_obs, src[b], src[a]) < 0:
                    dst[k] = src[b]
                    b += 1
                else:
                    dst[k] = src[a]
                    a += 1
                k += 1
            while a < mid:
                dst[k] = src[a]
                a += 1
                k += 1
            while b < hi:
                dst[k] = src[b]
                b += 1
                k += 1
            lo = hi
        src, dst = dst, src
        width *= 2
    return src


@numba.njit(**_jit.ALLOCATING)
def merge(order, det_ptr, dets, obs_ptr, obs, err, pr, with_obs):  # pragma: no cover
    """Fold each run of equal keys in ``order``. Returns ``(rep, p, idx)`` per fault, in key
    order: the component whose lists the fault keeps, its probability and its DEM index."""
    n = order.shape[0]
    rep = np.empty(n, np.int64)
    fp = np.empty(n, np.float64)
    fi = np.empty(n, np.int64)
    f = -1
    best = 0.0
    for k in range(n):
        x = order[k]
        p = pr[x]
        if f < 0 or _cmp_key(det_ptr, dets, obs_ptr, obs, with_obs, rep[f], x) != 0:
            f += 1
            rep[f] = x
            fp[f] = p
            fi[f] = err[x]
            best = p
        elif _cmp_lists(obs_ptr, obs, rep[f], x) == 0:
            q = fp[f]
            fp[f] = q * (1 - p) + p * (1 - q)
            if p > best:
                fi[f] = err[x]
                best = p
        elif p > fp[f]:
            rep[f] = x
            fp[f] = p
            fi[f] = err[x]
            best = p
    return rep[: f + 1], fp[: f + 1], fi[: f + 1]


@numba.njit(**_jit.ALLOCATING)
def gather(rep, det_ptr, dets, obs_ptr, obs, n_obs):  # pragma: no cover - compiled
    """The faults' CSR detector lists (int32) and observable mask (uint8)."""
    n = rep.shape[0]
    indptr = np.zeros(n + 1, np.int32)
    total = 0
    for f in range(n):
        total += det_ptr[rep[f] + 1] - det_ptr[rep[f]]
    indices = np.empty(total, np.int32)
    mask = np.zeros((n, n_obs), np.uint8)
    k = 0
    for f in range(n):
        x = rep[f]
        for a in range(det_ptr[x], det_ptr[x + 1]):
            indices[k] = dets[a]
            k += 1
        indptr[f + 1] = k
        for a in range(obs_ptr[x], obs_ptr[x + 1]):
            mask[f, obs[a]] = 1
    return indptr, indices, mask


@numba.njit(**_jit.ALLOCATING)
def arg_texts(text, arg_at):  # pragma: no cover - compiled
    """Each error's argument text as a row of a zero-padded uint8 matrix (a NumPy ``S``
    string per row once viewed so), for NumPy's own correctly rounded parse."""
    n = arg_at.shape[0] // 2
    width = 1
    for e in range(n):
        width = max(width, arg_at[2 * e + 1] - arg_at[2 * e])
    out = np.zeros((n, width), np.uint8)
    for e in range(n):
        a = arg_at[2 * e]
        for k in range(arg_at[2 * e + 1] - a):
            out[e, k] = text[a + k]
    return out


@numba.njit(**_jit.ALLOCATING)
def window_columns(faults, det_indptr, det_indices, local, obs_mask):  # pragma: no cover
    """The columns of ``faults`` (in that order) seen by a window: each fault's detectors
    through ``local`` (global id to the window's, -1 outside it; those dropped), sorted, and
    its observables, as two CSRs ``(det_ptr, dets, obs_ptr, obs)`` that :func:`sort_components`
    takes."""
    n = faults.shape[0]
    det_ptr = np.zeros(n + 1, np.int64)
    obs_ptr = np.zeros(n + 1, np.int64)
    total = 0
    for k in range(n):
        f = faults[k]
        total += det_indptr[f + 1] - det_indptr[f]
    dets = np.empty(total, np.int64)
    obs = np.empty(n * obs_mask.shape[1], np.int64)
    nd = 0
    no = 0
    for k in range(n):
        f = faults[k]
        a = nd
        for q in range(det_indptr[f], det_indptr[f + 1]):
            v = local[det_indices[q]]
            if v >= 0:
                b = nd  # insertion into the sorted run dets[a:nd]
                while b > a and dets[b - 1] > v:
                    dets[b] = dets[b - 1]
                    b -= 1
                dets[b] = v
                nd += 1
        det_ptr[k + 1] = nd
        for j in range(obs_mask.shape[1]):
            if obs_mask[f, j]:
                obs[no] = j
                no += 1
        obs_ptr[k + 1] = no
    return det_ptr, dets[:nd], obs_ptr, obs[:no]
