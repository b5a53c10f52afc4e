"""pytest-benchmark suite: what a server's build worker spends on a large HELLO.

The DEM is :func:`qecd.bench.hostile.big_dems`' 5 MB one (rotated surface code, d=11, 34
rounds, decomposed, ~115,000 ``error`` lines), as the build-stall and fuzz harnesses send it.
``test_fault_table_from_dem`` reads its faults (the step that took 3.3 s per 7.9 MB DEM in
Python); ``test_build_plan`` is the whole build the worker runs for a ``uf`` or
``pymatching`` HELLO (DEM parse, fault tables, windows, kernels' arrays).
"""

import functools

import pytest
import stim

from qecd.bench.hostile import big_dems
from qecd.decoder.fault_table import FaultTable
from qecd.decoder.pymatching_backend import PyMatchingDecoder
from qecd.decoder.union_find import UnionFindDecoder
from qecd.transport.server.session import SessionLimits, build_plan, plan_key
from qecd.transport.wire import Hello


@functools.cache
def _dem_text() -> str:
    return big_dems(1, (5.0, 5.0))[0]


def test_fault_table_from_dem(benchmark):
    dem = stim.DetectorErrorModel(_dem_text())
    benchmark.extra_info.update(dem_mb=round(len(_dem_text()) / 1e6, 2))
    t = benchmark.pedantic(FaultTable.from_dem, args=(dem,), kwargs={"graph": True},
                           rounds=5, warmup_rounds=1)
    assert t.num_faults > 10_000


@pytest.mark.parametrize("decoder", [UnionFindDecoder.name, PyMatchingDecoder.name])
def test_build_plan(benchmark, decoder):
    limits = SessionLimits()
    hello = Hello(dem=_dem_text(), decoder=decoder)
    key = plan_key(hello, limits)
    benchmark.extra_info.update(dem_mb=round(len(_dem_text()) / 1e6, 2), decoder=decoder)
    plan = benchmark.pedantic(build_plan, args=(key, hello, limits), rounds=3,
                              warmup_rounds=1)
    assert plan is not None
