"""How long did the server stop, and how fast did it catch up? (the ``drain`` block of a run)

A paced stream offers one round per cycle. When the server stops (a stall of its CPU, or of
the VM), rounds pile up in the request ring; when it resumes it must serve them *and* the
rounds still arriving, so its backlog shrinks at (served rate - offered rate). A tail
latency figure is then mostly the drain, not the stall: a 2 ms stall drained at 2x real
time keeps rounds late for 2 ms more, at 10x for 0.2 ms.

From the server's per-packet records and the emulator's doorbell times (one round per
packet), per packet ``k``:

- *pickup* ``= send_ns[k] + lag_ns[k]`` (the server's clock read before its work began; the
  records' lag is measured from the scheduled send time ``send_ns``), and *done* ``= pickup
  + service_ns[k]`` (rounds a ring loop served between two clock reads share the span, so
  their done times are the span's start plus an even share of it);
- the **stall** before ``k``: ``done[k] - max(done[k - 1], write_ns[k])``, the time the
  round waited in the ring, already written, with nothing completed (its own service
  included, so a round served at once contributes its service time, ~0.1-1 µs);
- the **drain** after the longest stall: from its end (``done[k]``) to the completion of
  the first later round done within ``caught_up_us`` of its doorbell; ``rounds`` completed
  in that time (the round that caught up included),
  ``rounds_per_us`` their rate, and ``x_real_time`` that rate against the offered one
  (``rounds_per_us * cycle_us``): above 1 the backlog shrinks, at 10 it drains in a ninth
  of the time it took to build.

Example
-------
A 1 µs cycle; the server stops for 50 µs at round 100, then serves 0.05 µs per round.

>>> import numpy as np
>>> n = 400
>>> send = np.arange(n, dtype=np.int64) * 1000
>>> pickup = send + 200
>>> t = pickup[100] + 50_000
>>> for k in range(100, n):
...     pickup[k] = max(send[k] + 200, t); t = pickup[k] + 50
>>> d = drain_summary(send, send + 100, pickup - send, np.full(n, 50), cycle_us=1.0)
>>> d["longest_stall"]["round"], round(d["longest_stall"]["stall_us"], 1)
(100, 50.1)
>>> d["longest_stall"]["backlog_rounds"], round(d["longest_stall"]["x_real_time"])
(50, 20)
"""

from __future__ import annotations

import numpy as np

#: a round is caught up when picked up within this long of its doorbell (and 10 cycles)
CAUGHT_UP_US = 10.0
#: stalls at least this long are counted in ``stalls_over_100us``
COUNT_OVER_US = 100.0


def stall_series(write_ns: np.ndarray, pickup_ns: np.ndarray,
                 done_ns: np.ndarray) -> np.ndarray:
    """Per round, the time it waited (already written) with nothing completed; int64 ns."""
    prev_done = np.concatenate([[np.iinfo(np.int64).min], done_ns[:-1]])
    return done_ns - np.maximum(prev_done, write_ns)


def drain_summary(send_ns: np.ndarray, write_ns: np.ndarray, lag_ns: np.ndarray,
                  service_ns: np.ndarray, *, cycle_us: float) -> dict:
    """The longest stall of a run and how its backlog drained.

    Parameters
    ----------
    send_ns, write_ns : numpy.ndarray of int64
        Per round (one round per packet, in order): scheduled send time and the time the
        emulator rang its doorbell (``CLOCK_MONOTONIC``).
    lag_ns, service_ns : numpy.ndarray of int64
        The server's records of the same packets: pickup minus ``send_ns``, and service.
    cycle_us : float
        The offered cycle (0: unpaced, no drain rate is defined).

    Returns
    -------
    dict
        ``longest_stall``: ``round`` (index among the timed rounds), ``stall_us``,
        ``backlog_rounds`` (written and not yet served when it ended), ``drain_us``,
        ``rounds`` served while behind, ``rounds_per_us``, ``x_real_time``, ``caught_up``
        (False: the run ended still behind); ``stalls_over_100us``; ``caught_up_us``.
    """
    send_ns = np.asarray(send_ns, dtype=np.int64)
    n = len(send_ns)
    caught_us = max(CAUGHT_UP_US, 10 * cycle_us)
    out: dict = {"rounds": n, "cycle_us": cycle_us, "caught_up_us": caught_us,
                 "longest_stall": None, "stalls_over_100us": 0}
    if n < 2:
        return out
    write_ns = np.asarray(write_ns, dtype=np.int64)
    pickup = send_ns + np.asarray(lag_ns, dtype=np.int64)
    done = pickup + np.asarray(service_ns, dtype=np.int64)
    stalls = stall_series(write_ns, pickup, done)
    out["stalls_over_100us"] = int((stalls >= COUNT_OVER_US * 1e3).sum())
    k = int(np.argmax(stalls))
    end = int(done[k])
    # the stream's schedule restarts where the emulator paused between two chunks (a jump
    # of the scheduled send times): the drain is looked for within the stall's chunk, and
    # a chunk whose last round was served ended its backlog (the pause holds no rounds)
    seg = _chunk_end(send_ns, k, cycle_us)
    s0 = int(np.searchsorted(done[:seg], end, side="right"))  # first round completed after
    backlog = int(np.searchsorted(write_ns[:seg], end, side="right")) - s0
    behind = (done[s0:seg] - write_ns[s0:seg]) > caught_us * 1e3
    caught_up = bool(len(behind)) and (not behind.all() or seg < n)
    m = s0 + (int(np.argmin(behind)) if not behind.all() else len(behind) - 1)
    rounds = m - s0 + 1 if m >= s0 else 0
    drain_ns = int(done[m] - end) if rounds else 0
    rate = rounds / (drain_ns / 1e3) if drain_ns > 0 else None
    out["longest_stall"] = {
        "round": k, "stall_us": float(stalls[k]) / 1e3, "backlog_rounds": max(0, backlog),
        "drain_us": drain_ns / 1e3, "rounds": rounds, "rounds_per_us": rate,
        "x_real_time": rate * cycle_us if rate is not None and cycle_us else None,
        "caught_up": bool(caught_up),
    }
    return out


def _chunk_end(send_ns: np.ndarray, k: int, cycle_us: float) -> int:
    """One past the last round of the chunk holding round ``k``: the first later round
    scheduled more than two cycles after the one before it (or the end)."""
    if cycle_us <= 0:
        return len(send_ns)
    jumps = np.flatnonzero(np.diff(send_ns[k:]) > 2 * cycle_us * 1e3)
    return k + 1 + int(jumps[0]) if len(jumps) else len(send_ns)


def format_drain(d: dict | None) -> str:
    """One line for the human report."""
    if not d or not d.get("longest_stall"):
        return "drain: (no stall measured)"
    s = d["longest_stall"]
    rate = ("-" if s["rounds_per_us"] is None else
            f"{s['rounds']} rounds in {s['drain_us']:.1f} us = {s['rounds_per_us']:.2f} "
            "rounds/us")
    x = "" if s["x_real_time"] is None else f" ({s['x_real_time']:.1f}x real time)"
    tail = "" if s["caught_up"] else "; still behind at the end of the run"
    return (f"drain: longest stall while streaming {s['stall_us']:.1f} us at round "
            f"{s['round']}, {s['backlog_rounds']} rounds waiting; drained {rate}{x}{tail}; "
            f"{d['stalls_over_100us']} stalls >= {COUNT_OVER_US:g} us")
