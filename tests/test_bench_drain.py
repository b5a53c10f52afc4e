"""bench/drain.py: the longest stall of a paced run and the drain of its backlog, read from
the server's records and the emulator's doorbells (synthetic timelines with known answers)."""

import numpy as np
import pytest

from qecd.bench.drain import drain_summary, format_drain


def _served(n, cycle_ns, stall_at, stall_ns, per_round_ns, *, batch=1):
    """A 1-round-per-packet timeline: rounds written on schedule, the server idle until a
    round is written, stopped for ``stall_ns`` before round ``stall_at``, then serving
    ``per_round_ns`` each (``batch`` rounds per clock read while behind)."""
    send = np.arange(n, dtype=np.int64) * cycle_ns
    write = send + 100
    pickup = np.zeros(n, np.int64)
    service = np.zeros(n, np.int64)
    t = 0
    k = 0
    while k < n:
        start = max(t, write[k]) + (stall_ns if k == stall_at else 0)
        waiting = int(np.searchsorted(write, start, side="right")) - k
        m = max(1, min(batch, waiting))
        pickup[k:k + m] = start
        service[k:k + m] = per_round_ns  # the span shared, as the ring loop records it
        t = start + m * per_round_ns
        k += m
    return send, write, pickup - send, service


# the timelines are synthetic (no clock is read): every figure below follows from them
STALL_NS, PER_ROUND_NS, CYCLE_NS = 2_000_000, 50, 1000


def test_the_longest_stall_and_its_drain_rate_are_found():
    send, write, lag, svc = _served(5000, CYCLE_NS, 2000, STALL_NS, PER_ROUND_NS)
    d = drain_summary(send, write, lag, svc, cycle_us=1.0)["longest_stall"]
    assert d["round"] == 2000
    # the stall, plus the previous round's service it follows
    assert d["stall_us"] == pytest.approx((STALL_NS + PER_ROUND_NS) / 1e3)
    assert d["backlog_rounds"] == STALL_NS // CYCLE_NS  # the rounds written during the stall
    assert d["caught_up"]
    assert d["rounds_per_us"] == pytest.approx(1e3 / PER_ROUND_NS)  # 20 rounds per us
    assert d["x_real_time"] == pytest.approx(CYCLE_NS / PER_ROUND_NS)


def test_batched_records_give_the_same_drain_rate():
    """Rounds served in batches share a pickup and a closing clock read: the rate over the
    drain is the same as one read per round."""
    send, write, lag, svc = _served(5000, CYCLE_NS, 2000, STALL_NS, PER_ROUND_NS, batch=6)
    d = drain_summary(send, write, lag, svc, cycle_us=1.0)["longest_stall"]
    assert d["stall_us"] == pytest.approx((STALL_NS + PER_ROUND_NS) / 1e3)
    # the last batch's closing span falls within the drain: 0.2% under one read per round
    assert d["rounds_per_us"] == pytest.approx(1e3 / PER_ROUND_NS, rel=0.005)


def test_a_server_slower_than_the_offered_rate_never_catches_up():
    send, write, lag, svc = _served(3000, 1000, 1000, 500_000, 1500)
    r = drain_summary(send, write, lag, svc, cycle_us=1.0)
    assert r["longest_stall"]["caught_up"] is False
    assert r["longest_stall"]["x_real_time"] < 1
    assert "still behind" in format_drain(r)


def test_an_unpaced_run_has_no_real_time_ratio_and_short_runs_have_no_stall():
    send, write, lag, svc = _served(500, 1000, 100, 50_000, 50)
    assert drain_summary(send, write, lag, svc, cycle_us=0.0)["longest_stall"][
        "x_real_time"] is None
    one = drain_summary(send[:1], write[:1], lag[:1], svc[:1], cycle_us=1.0)
    assert one["longest_stall"] is None and format_drain(one).startswith("drain: (no stall")


def test_a_drain_ends_at_its_chunks_end_not_after_the_pause_before_the_next():
    """The emulator streams in chunks with a pause between them, each restarting its
    schedule. A stall near a chunk's end used to be measured as draining until a round of
    the next chunk was caught up, pause included: 3,261 rounds in 38 ms (0.1x real time)
    in a run whose loop serves a backlog at several rounds per µs."""
    n, cut, pause = 5000, 3000, 30_000_000
    send, write, lag, svc = _served(n, CYCLE_NS, cut - 500, STALL_NS, PER_ROUND_NS)
    # the second chunk: scheduled after a pause, served at once
    send2 = np.arange(n - cut, dtype=np.int64) * CYCLE_NS + send[cut - 1] + pause
    pickup = np.concatenate([(send + lag)[:cut], send2 + 100])
    send = np.concatenate([send[:cut], send2])
    write = np.concatenate([write[:cut], send2 + 100])
    svc = np.concatenate([svc[:cut], np.full(n - cut, PER_ROUND_NS)])
    d = drain_summary(send, write, pickup - send, svc, cycle_us=1.0)["longest_stall"]
    assert d["round"] == cut - 500
    assert d["caught_up"]
    # the backlog (2,000 rounds) outlasts the chunk's last 500: the whole rest of the chunk
    # is the drain, served at 20 rounds per µs
    assert d["rounds"] == 499
    assert d["rounds_per_us"] == pytest.approx(1e3 / PER_ROUND_NS, rel=0.01)
