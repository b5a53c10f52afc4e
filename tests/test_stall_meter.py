"""bench/stall_meter.py: the platform-stall floor reported beside every latency run."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from qecd.bench.stall_meter import measure_stalls, wait_quantile_ns


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(1e3, 5e6), min_size=0, max_size=40), st.floats(0.5, 0.999))
def test_wait_quantile_solves_its_defining_equation(gaps, q):
    g = np.array(gaps)
    dur = max(1e7, 2 * g.sum())
    w = wait_quantile_ns(g, dur, q)
    share = np.maximum(0.0, g - w).sum() / dur  # P(a random instant waits more than w)
    if w > 0:
        assert abs(share - (1 - q)) < 1e-9
    else:
        assert share <= (1 - q) + 1e-12


def test_meter_reports_every_cpu_and_a_combined_floor():
    r = measure_stalls([None, None], seconds=0.05)
    assert len(r["cpus"]) == 2
    for c in r["cpus"]:
        assert c["clock_reads"] > 1000 and 0 <= c["blocked_share"] <= c["lost_share"] < 1
        assert c["max_stall_us"] >= 0 and "_gaps" not in c
    assert r["wait_p99_us_all_cpus"] >= max(c["wait_p99_us"] for c in r["cpus"])
