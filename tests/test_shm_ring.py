"""transport/shm_ring.py and transport/_atomics.py: shared-memory SPSC rings, in and across
processes.

Every wait is bounded, every child process is joined or killed, and a fixture checks that no
``/dev/shm/qecd-<this pid>-*`` (nor a child's) region outlives a test.
"""

from __future__ import annotations

import collections
import gc
import multiprocessing as mp
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit

from qecd.transport.shm.atomics import load_acquire, monotonic_ns_py, spin_until_equal
from qecd.transport.shm.ring import (
    BUFFER_TOO_SMALL,
    CORRUPT,
    EMPTY,
    FULL,
    HEADER_SIZE,
    MAGIC,
    OK,
    PEER_DEAD,
    RING_HEADER_SIZE,
    TIMEOUT,
    TOO_LARGE,
    Region,
    RegionError,
    RingError,
    RingPair,
    list_regions,
    region_heartbeat_ns,
    ring_try_recv,
    sweep_stale_regions,
)

pytestmark = pytest.mark.timeout(60)

SPAWN = mp.get_context("spawn")
CHILD_START_S = 60  # a spawned child imports numpy and numba: seconds on a busy 2-core box


@pytest.fixture(autouse=True)
def no_region_outlives_the_test():
    mine = f"qecd-{os.getpid()}-"
    before = set(list_regions(mine))
    yield
    gc.collect()
    left = set(list_regions(mine)) - before
    assert not left, f"regions left behind in /dev/shm: {sorted(left)}"


def _join_or_kill(proc: mp.process.BaseProcess, timeout: float = 10.0) -> None:
    proc.join(timeout)
    if proc.exitcode is None:
        proc.kill()
        proc.join(5)


def _payload(i: int, n: int) -> np.ndarray:
    return ((np.arange(n) * 7 + i * 13) % 251).astype(np.uint8)


# -- region --------------------------------------------------------------------------------


def test_region_is_owner_only_named_qecd_and_carries_its_header():
    with RingPair.create(n_slots=8, slot_size=128) as pair:
        st_ = os.stat(f"/dev/shm/{pair.name}")
        assert stat.S_IMODE(st_.st_mode) == 0o600
        assert st_.st_uid == os.geteuid()
        assert pair.name.startswith(f"qecd-{os.getpid()}-")
        raw = pair.region.buf
        assert bytes(raw[:8]) == b"QECDRING"
        assert int.from_bytes(bytes(raw[40:48]), "little") == os.getpid()
        assert st_.st_size == HEADER_SIZE + 2 * (RING_HEADER_SIZE + 8 * 128)
        assert pair.tx.offset % 128 == 0 and pair.rx.offset % 128 == 0
        del raw


def test_bad_geometry_and_names_are_refused_with_the_field_named():
    for kwargs, field in (({"n_slots": 6}, "n_slots"), ({"slot_size": 100}, "slot_size"),
                          ({"slot_size": 32}, "slot_size"), ({"n_slots": 0}, "n_slots")):
        with pytest.raises(RegionError, match=field):
            RingPair.create(**kwargs)
    with pytest.raises(RegionError, match="'name'"):
        Region.create(1, 4, 64, name="not-qecd")
    with pytest.raises(RegionError, match="n_rings"):
        Region.create(3, 4, 64)


def test_attach_with_wrong_magic_version_or_geometry_fails_clearly():
    with RingPair.create(n_slots=8, slot_size=128) as pair:
        name, w = pair.name, pair.region.words
        with pytest.raises(RegionError, match="'n_slots': expected 16, got 8"):
            RingPair.attach(name, n_slots=16)
        with pytest.raises(RegionError, match="'slot_size': expected 64, got 128"):
            RingPair.attach(name, slot_size=64)
        w[0] = 0x1234
        with pytest.raises(RegionError, match="'magic'"):
            RingPair.attach(name)
        w[0] = MAGIC
        saved = int(w[1])
        w[1] = (saved & ~0xFFFFFFFF) | 2
        with pytest.raises(RegionError, match="'version': expected 1, got 2"):
            RingPair.attach(name)
        w[1] = saved
        w[2] = int(w[2]) + (1 << 32)  # n_slots 9 in the header: not a power of two
        with pytest.raises(RegionError, match="n_slots"):
            RingPair.attach(name)
        w[2] = int(w[2]) - (1 << 32)
        with RingPair.attach(name) as ok:
            assert ok.side == "server"
        del w
    with Region.create(1, 4, 64) as one_ring, pytest.raises(RegionError, match="n_rings"):
        RingPair.attach(one_ring.name)
    with pytest.raises(RegionError, match="no such region"):
        RingPair.attach(f"qecd-{os.getpid()}-does-not-exist")
    with pytest.raises(RegionError, match="'name'"):
        RingPair.attach("psm_123")


def test_a_side_held_by_a_live_process_cannot_be_claimed_twice():
    with RingPair.create(n_slots=2, slot_size=64) as client:
        with RingPair.attach(client.name, side="server"):
            with pytest.raises(RegionError, match="attached by pid"):
                RingPair.attach(client.name, side="server")
        with RingPair.attach(client.name, side="server") as again:  # detached: free again
            assert again.peer_alive()


def test_regions_are_unlinked_on_gc_on_error_and_at_exit():
    pair = RingPair.create(n_slots=2, slot_size=64)
    name = pair.name
    del pair
    gc.collect()
    assert name not in list_regions()

    with pytest.raises(RuntimeError), RingPair.create(n_slots=2, slot_size=64) as pair:
        name = pair.name
        raise RuntimeError("a test failing inside the with block")
    assert name not in list_regions()

    code = ("from qecd.transport.shm.ring import RingPair\n"
            "p = RingPair.create(n_slots=2, slot_size=64)\n"
            "print(p.name, flush=True)\n")  # exits without close: the atexit hook unlinks
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=CHILD_START_S, check=True)
    assert out.stdout.strip().startswith("qecd-")
    assert out.stdout.strip() not in list_regions()


def test_a_creator_killed_without_cleanup_leaves_a_name_the_sweeper_removes():
    code = ("import os\nfrom qecd.transport.shm.ring import RingPair\n"
            "p = RingPair.create(n_slots=2, slot_size=64)\n"
            "print(p.name, flush=True)\nos._exit(0)\n")  # like SIGKILL: no atexit
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=CHILD_START_S, check=True)
    name = out.stdout.strip()
    try:
        assert name in list_regions()
        assert sweep_stale_regions(prefix=name) == [name]
        assert name not in list_regions()
    finally:
        if name.startswith("qecd-") and name in list_regions():
            os.unlink(f"/dev/shm/{name}")


# -- ring semantics, in process -------------------------------------------------------------


def test_fill_to_capacity_then_full_then_fifo_then_empty():
    with RingPair.create(n_slots=8, slot_size=128) as c, RingPair.attach(c.name) as s:
        msgs = [_payload(i, 10 + i) for i in range(8)]
        assert [c.tx.try_send(m) for m in msgs] == [OK] * 8
        assert c.tx.try_send(msgs[0]) == FULL
        assert c.tx.pending() == 8
        out = np.zeros(s.rx.max_payload, dtype=np.uint8)
        for m in msgs:
            n = s.rx.try_recv(out)
            assert n == len(m) and np.array_equal(out[:n], m)
        assert s.rx.try_recv(out) == EMPTY
        assert c.tx.try_send(msgs[0]) == OK  # credit came back


def test_wraparound_over_many_laps_keeps_order_and_content():
    with RingPair.create(n_slots=4, slot_size=64) as c, RingPair.attach(c.name) as s:
        out = np.zeros(48, dtype=np.uint8)
        sent = got = 0
        rng = np.random.default_rng(1)
        while got < 2000:  # 500 laps, random batch sizes, one slot or all four in flight
            for _ in range(int(rng.integers(1, 5))):
                if c.tx.try_send(_payload(sent, sent % 49)) == OK:
                    sent += 1
            for _ in range(int(rng.integers(1, 5))):
                n = s.rx.try_recv(out)
                if n == EMPTY:
                    break
                assert n == got % 49 and np.array_equal(out[:n], _payload(got, n))
                got += 1
        assert sent - got == c.tx.pending()


def test_every_length_from_zero_to_the_slot_maximum_round_trips():
    with RingPair.create(n_slots=2, slot_size=128) as c, RingPair.attach(c.name) as s:
        assert c.tx.max_payload == 112
        out = np.zeros(112, dtype=np.uint8)
        for n in range(113):
            m = _payload(n, n)
            assert c.tx.send(m, timeout=1.0) == OK
            assert s.rx.recv(out, timeout=1.0) == n
            assert np.array_equal(out[:n], m)
        s.send_bytes(b"")
        assert c.recv_bytes() == b""


def test_oversize_and_negative_lengths_are_rejected_with_a_status():
    with RingPair.create(n_slots=2, slot_size=64) as c:
        big = np.zeros(100, dtype=np.uint8)
        assert c.tx.try_send(big, 49) == TOO_LARGE  # slot carries 48
        assert c.tx.try_send(big[:10], 11) == TOO_LARGE  # longer than the array
        assert c.tx.try_send(big, -1) == TOO_LARGE
        assert c.tx.send(big, timeout=0.01) == TOO_LARGE
        with pytest.raises(RingError, match="TOO_LARGE"):
            c.send_bytes(bytes(49))
        assert c.tx.pending() == 0
        with pytest.raises(TypeError, match="uint8"):
            c.tx.try_send(np.zeros(4, dtype=np.int32))


def test_a_short_receive_buffer_leaves_the_message_in_the_ring():
    with RingPair.create(n_slots=2, slot_size=64) as c, RingPair.attach(c.name) as s:
        c.send_bytes(b"0123456789")
        small = np.zeros(4, dtype=np.uint8)
        assert s.rx.try_recv(small) == BUFFER_TOO_SMALL
        assert s.recv_bytes() == b"0123456789"


def test_a_torn_or_stale_slot_is_never_read_as_a_message():
    n_slots, slot_size = 4, 64
    with RingPair.create(n_slots=n_slots, slot_size=slot_size) as c, \
            RingPair.attach(c.name) as s:
        w, b, tx, rx, n, size = c.kernel_args()
        out = np.zeros(48, dtype=np.uint8)
        for i in range(n_slots + 1):  # one full lap and one more: message p = 5 is next
            c.send_bytes(bytes([i]))
            assert s.recv_bytes() == bytes([i])
        p = n_slots + 1
        slot = tx + RING_HEADER_SIZE + (p % n_slots) * slot_size
        sw = slot // 8
        assert int(w[sw]) == p + 1 - n_slots  # the previous lap's doorbell
        # a producer that wrote payload and length but died before the doorbell
        b[slot + 16:slot + 16 + 8] = 0xEE
        w[sw + 1] = 8
        assert ring_try_recv(w, b, tx, n, size, out) == EMPTY
        # doorbells no correct producer writes: two laps old, a lap ahead, garbage
        for bogus in (p + 1 - 2 * n_slots, p + 1 + n_slots, 0xDEADBEEF):
            w[sw] = bogus % (1 << 64)
            assert ring_try_recv(w, b, tx, n, size, out) == CORRUPT
        w[sw] = p + 1 - n_slots
        assert ring_try_recv(w, b, tx, n, size, out) == EMPTY
        # the real message overwrites the torn bytes and is the only thing ever received
        c.send_bytes(b"real")
        assert s.recv_bytes() == b"real"
        # a published slot whose length exceeds the slot is corrupt, not a message
        c.send_bytes(b"x")
        w[(tx + RING_HEADER_SIZE + ((p + 1) % n_slots) * slot_size) // 8 + 1] = 49
        assert ring_try_recv(w, b, tx, n, size, out) == CORRUPT
        del w, b


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n_slots=st.sampled_from([1, 2, 4, 8]),
    ops=st.lists(st.one_of(st.binary(min_size=0, max_size=60), st.none()), max_size=80),
)
def test_random_send_recv_interleavings_match_a_deque_model(n_slots, ops):
    with RingPair.create(n_slots=n_slots, slot_size=64) as c, RingPair.attach(c.name) as s:
        model: collections.deque[bytes] = collections.deque()
        out = np.zeros(48, dtype=np.uint8)
        for op in ops:
            if op is None:  # receive
                n = s.rx.try_recv(out)
                if model:
                    assert n >= 0 and out[:n].tobytes() == model.popleft()
                else:
                    assert n == EMPTY
            else:
                arr = np.frombuffer(op, dtype=np.uint8).copy()
                status = c.tx.try_send(arr)
                if len(op) > 48:
                    assert status == TOO_LARGE
                elif len(model) == n_slots:
                    assert status == FULL
                else:
                    assert status == OK
                    model.append(op)
            assert c.tx.pending() == len(model)


def test_waits_bump_their_sides_heartbeat():
    with RingPair.create(n_slots=2, slot_size=64) as c, RingPair.attach(c.name) as s:
        t0 = monotonic_ns_py()
        assert s.rx.recv(np.zeros(48, dtype=np.uint8), timeout=0.002) == TIMEOUT
        assert region_heartbeat_ns(s.region.words, 1) >= t0
        assert c.peer_alive(max_heartbeat_age=60.0)


def test_a_peer_that_detached_cleanly_is_reported_dead_after_a_timeout():
    with RingPair.create(n_slots=1, slot_size=64) as c:
        s = RingPair.attach(c.name)
        assert c.tx.send(np.zeros(1, dtype=np.uint8), timeout=0.1) == OK
        assert c.tx.send(np.zeros(1, dtype=np.uint8), timeout=0.002) == TIMEOUT  # alive
        s.close()
        assert not c.peer_alive()
        assert c.tx.send(np.zeros(1, dtype=np.uint8), timeout=0.002) == PEER_DEAD
        with pytest.raises(RingError, match="PEER_DEAD"):
            c.recv_bytes(timeout=0.002)


# -- across processes -----------------------------------------------------------------------

# Spin-test scratch words: the last two words of the one slot's payload.
_FLAG, _ACK = -2, -1


@njit(nogil=True)
def _spin_counted(words, index, value, max_polls):
    """Nothing but acquire loads in the loop: no call, no pause, no clock, so nothing but the
    acquire keeps LLVM from hoisting the load (a plain load may legally be hoisted; Numba 0.68
    happens not to hoist this one, so this checks the acquire path, not the trap itself)."""
    for k in range(max_polls):
        if np.int64(load_acquire(words, index)) == value:
            return k
    return -1


def _spin_child(name: str) -> None:
    region = Region.attach(name)
    w = region.words
    words_n = w.shape[0]
    _spin_counted(w, words_n + _FLAG, 7, 10)  # compile before saying "spinning"
    w[words_n + _ACK] = 1
    seen = _spin_counted(w, words_n + _FLAG, 12345, 40_000_000_000)  # ~10 s or more
    w[words_n + _ACK] = 2 if seen > 0 else 3
    del w
    region.close()


def test_a_jitted_spin_loop_sees_a_store_from_another_process():
    with Region.create(1, 1, 64) as region:
        w = region.words
        n = w.shape[0]
        proc = SPAWN.Process(target=_spin_child, args=(region.name,), daemon=True)
        proc.start()
        try:
            assert spin_until_equal(w, n + _ACK, 1, CHILD_START_S * 10**9) == 1
            time.sleep(0.05)  # the child is inside its compiled spin loop by now
            w[n + _FLAG] = 12345  # a plain store from this process
            assert spin_until_equal(w, n + _ACK, 2, 20 * 10**9) == 2, int(w[n + _ACK])
        finally:
            _join_or_kill(proc)
            del w
        assert proc.exitcode == 0


def _echo_child(name: str, count: int) -> None:
    with RingPair.attach(name, side="server") as pair:
        buf = np.zeros(pair.rx.max_payload, dtype=np.uint8)
        for _ in range(count):
            n = pair.rx.recv(buf, timeout=20.0)
            if n < 0:
                raise SystemExit(10 - n)
            st_ = pair.tx.send(buf, n, timeout=20.0)
            if st_ != OK:
                raise SystemExit(20 - st_)


def test_cross_process_echo_of_thousands_of_messages_preserves_content_and_order(wait_for):
    count, window = 3000, 6
    with RingPair.create(n_slots=8, slot_size=128, side="client") as pair:
        proc = SPAWN.Process(target=_echo_child, args=(pair.name, count), daemon=True)
        proc.start()
        try:
            assert wait_for(pair.peer_alive, CHILD_START_S, poll_s=0.005), \
                "timed out waiting for the echo child to attach"
            rng = np.random.default_rng(7)
            sent_msgs: collections.deque[np.ndarray] = collections.deque()
            out = np.zeros(112, dtype=np.uint8)
            sent = received = 0
            while received < count:
                while sent < count and len(sent_msgs) < window:
                    m = rng.integers(0, 256, int(rng.integers(0, 113)), dtype=np.uint8)
                    assert pair.tx.send(m, timeout=10.0) == OK
                    sent_msgs.append(m)
                    sent += 1
                n = pair.rx.recv(out, timeout=10.0)
                assert n >= 0, f"recv status {n} after {received} replies"
                expect = sent_msgs.popleft()
                assert n == len(expect) and np.array_equal(out[:n], expect)
                received += 1
        finally:
            _join_or_kill(proc)
        assert proc.exitcode == 0


def _stalled_consumer_child(name: str) -> None:
    with RingPair.attach(name, side="server") as pair:
        pair.send_bytes(b"ready", timeout=10.0)
        time.sleep(30)  # never consumes; the parent kills it long before


def test_a_consumer_killed_with_sigkill_is_detected_as_dead_by_the_producer(wait_for):
    with RingPair.create(n_slots=4, slot_size=64, side="client") as pair:
        proc = SPAWN.Process(target=_stalled_consumer_child, args=(pair.name,), daemon=True)
        proc.start()
        try:
            assert pair.recv_bytes(timeout=CHILD_START_S) == b"ready"
            msg = np.ones(16, dtype=np.uint8)
            while pair.tx.try_send(msg) == OK:
                pass
            assert pair.tx.send(msg, timeout=0.01) == TIMEOUT  # full, consumer alive
            os.kill(proc.pid, signal.SIGKILL)
            assert wait_for(lambda: not pair.peer_alive(), 10.0, poll_s=0.005), \
                "timed out waiting for the killed child to be seen dead"
            info = pair.region.side_info(1)
            assert info.pid == proc.pid and not info.pid_alive  # a zombie until joined
            assert pair.tx.send(msg, timeout=0.01) == PEER_DEAD
            assert pair.rx.recv(np.zeros(48, dtype=np.uint8), timeout=0.01) == PEER_DEAD
        finally:
            _join_or_kill(proc)
        assert proc.exitcode == -signal.SIGKILL
