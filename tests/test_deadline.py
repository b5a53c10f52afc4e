"""bench/deadline.py: LER(t) = P(late or wrong) and the streaming tail latency per shot."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qecd.bench.deadline import (
    deadline_summary,
    default_deadlines_us,
    format_deadline,
    ler_vs_deadline,
    plot_ler_vs_deadline,
    shot_latencies,
)


def _reference_latencies(corr, R, shots, first_round):
    """Slow and obvious: per shot, last receipt minus the final round's send time."""
    out = []
    for s in range(shots):
        mine = [(r, ts, rv) for r, ts, rv in corr if (r - first_round) // R == s
                and r >= first_round]
        final = [ts for r, ts, _ in mine if (r - first_round) % R == R - 1]
        out.append(max(rv for _, _, rv in mine) - final[-1] if final else math.inf)
    return out


@settings(max_examples=60, deadline=None)
@given(R=st.integers(1, 4), shots=st.integers(1, 6), first=st.integers(0, 5),
       data=st.data())
def test_shot_latencies_match_a_slow_reference(R, shots, first, data):
    rounds = list(range(first + shots * R))
    picked = data.draw(st.lists(st.sampled_from(rounds), unique=True, max_size=len(rounds)))
    corr = []
    for r in sorted(picked):
        ts = 1000 * r
        corr.append((r, ts, ts + data.draw(st.integers(1, 5000))))
    got = shot_latencies(np.array([c[0] for c in corr], dtype=np.int64),
                         np.array([c[1] for c in corr], dtype=np.int64),
                         np.array([c[2] for c in corr], dtype=np.int64),
                         rounds_per_shot=R, shots=shots, first_round=first)
    assert got.tolist() == _reference_latencies(corr, R, shots, first)


def test_warm_up_rounds_before_first_round_are_ignored():
    lat = shot_latencies(np.array([1, 3, 5]), np.array([10, 30, 50]), np.array([11, 33, 57]),
                         rounds_per_shot=2, shots=2, first_round=2)
    assert lat.tolist() == [3.0, 7.0]


def test_ler_of_t_counts_late_or_wrong_and_falls_to_the_ler_without_deadline():
    rng = np.random.default_rng(1)
    lat = rng.lognormal(mean=np.log(5e3), sigma=1.0, size=5000)
    lat[:7] = np.inf  # missing corrections: late at every deadline
    failed = rng.random(5000) < 0.02
    s = deadline_summary(lat, failed)
    rows = s["rows"]
    ts = [r["t_us"] for r in rows]
    assert ts == sorted(ts)
    lers = [r["ler"] for r in rows]
    assert all(a >= b for a, b in zip(lers, lers[1:], strict=False))  # never rises with t
    for r in rows:
        late = lat > r["t_us"] * 1e3
        assert r["late"] == late.sum() and r["late_or_wrong"] == (late | failed).sum()
        assert r["ler_ci95"][0] <= r["ler"] <= r["ler_ci95"][1]
    assert rows[0]["ler"] == 1 - ((lat <= ts[0] * 1e3) & ~failed).mean()
    # past the slowest arrival only the missing shots and the logical errors remain
    assert rows[-1]["late_or_wrong"] == (np.isinf(lat) | failed).sum()
    assert s["missing"] == 7 and s["ler_no_deadline"] == failed.mean()
    assert s["tail_latency_us"]["p50"] == pytest.approx(np.median(lat[7:]) / 1e3)


def test_default_deadlines_cover_the_measured_range_and_the_cycle():
    t = default_deadlines_us(np.array([3e3, 4e5, np.inf]), cycle_us=1.0)
    assert t[0] <= 3.0 and t[-1] >= 400.0 and 1.0 in t and 10.0 in t and 100.0 in t


def test_bad_shapes_raise_value_errors_naming_the_fields():
    with pytest.raises(ValueError, match="latency_ns/failed"):
        ler_vs_deadline(np.zeros(3), np.zeros(2, bool), [1.0])
    with pytest.raises(ValueError, match="corr_round/corr_ts_ns/corr_recv_ns"):
        shot_latencies(np.zeros(2), np.zeros(3), np.zeros(2), rounds_per_shot=1, shots=1)


def test_report_text_and_plot(tmp_path):
    s = deadline_summary(np.array([2e3, 4e3, 9e3, 30e3] * 100),
                         np.array([False, False, True, False] * 100))
    text = format_deadline(s)
    assert "p99" in text and "t=5 µs" in text and "t=10 µs 5.00e-01" in text
    p = plot_ler_vs_deadline({"a": s, "b": s}, tmp_path / "l.png", cycle_us=1.0)
    assert (tmp_path / "l.png").stat().st_size > 10_000 and p.endswith("l.png")


@pytest.mark.slow
def test_latency_run_reports_ler_of_t_over_the_rings():
    from qecd.bench.latency import run_latency

    r = run_latency("repetition:d=3,r=3,p=0.02", shots=400, ping=100, pin=False,
                    stall_s=0, cycle_us=2.0)
    d = r["deadline"]
    assert d["shots"] == 400 and d["missing"] == 0
    assert d["ler_no_deadline"] == r["ler_wire"]
    assert d["rows"][-1]["ler"] == pytest.approx(r["ler_wire"])  # every shot on time by then
    assert len(r["_series"]["shot_latency_ns"]) == 400
    assert d["tail_latency_us"]["p50"] > 0
