"""The verdict block that ends ``make run``, ``qecd bench latency`` and ``qecd emulate``.

One line per budget the run measured, then one line on the machine, then the overall word:

- **service time**: the p99 per-round service time against the budget;
- **reaction time**: the p99 reaction time against the budget, with a floor measured in the
  same run stated beside it: the platform's own stall reference (a bare spin loop on the same
  CPUs: the p99 wait until both CPUs run again, :mod:`qecd.bench.stall_meter`) for the
  latency harness, the bare transport round trip for the emulator. The floor never excuses a
  miss; it says whether the machine (or the wire) alone already takes more than the budget;
- **backlog**: whether the service kept up with the offered rate (paced runs only);
- **correctness**: corrections lost, duplicated or different from the offline decode.

A budget the run could not judge (no ``--budget-us``, an unpaced run, no samples) says so
and why; it never counts as met. ``PASS`` only when every judged budget held; otherwise
``FAIL`` naming each budget not met. The machine line says whether the machine was loaded
while the run ran (:class:`LoadProbe`: CPU time other processes took, CPU steal, load
average, and the stall meter's blocked share when measured): a loaded machine does not change
the verdict, but a reader learns why a budget may have been missed.

Exit codes (:class:`~qecd.exit_codes.ExitCode`): 0 PASS, 1 a budget not met, 3 a correctness
failure (it outranks a latency one).

Example
-------
>>> v = Verdict([service_check(1.6, 10.0), reaction_check(8.0, 10.0, 30.0, "platform"),
...              backlog_check(True, 1e6, 1e6), correctness_check(0, 0, 0, 2000)])
>>> print(format_verdict(v).splitlines()[0])
verdict: PASS (every budget judged held: service time, reaction time, backlog, correctness)
>>> v = Verdict([service_check(1.6, 10.0), backlog_check(False, 1e6, 7e5)])
>>> print(format_verdict(v).splitlines()[0]), int(v.exit_code)
verdict: FAIL (backlog not met)
(None, 1)
"""

from __future__ import annotations

import math
import os
import resource
import time
from dataclasses import dataclass, field

from qecd.exit_codes import ExitCode

MET, NOT_MET, NOT_JUDGED = "met", "NOT MET", "not judged"

#: a machine counts as loaded when other processes took more than this many CPUs on average
LOADED_OTHER_CPUS = 0.25
#: ... or the hypervisor stole more than this share of CPU time
LOADED_STEAL_SHARE = 0.02
#: ... or the stall meter's bare spin loop was blocked more than this share of its time. This
#: VM alone (timer ticks, its agent, kdamond) blocks a spinning CPU ~1-2% of the time with
#: nothing else running (docs/benchmarks.md), so below 5% the machine is called quiet and the
#: platform's own stalls are reported beside the reaction time instead
LOADED_BLOCKED_SHARE = 0.05


@dataclass(frozen=True)
class Check:
    """One budget: its name, status (:data:`MET`, :data:`NOT_MET`, :data:`NOT_JUDGED`), what
    was measured against what, and the exit code when not met."""

    name: str
    status: str
    detail: str
    fail_code: ExitCode = ExitCode.BUDGET_MISSED

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail}


def _us(v: float) -> str:
    return f"{v:,.1f}" if v < 1000 else f"{v:,.0f}"


def service_check(p99_us: float | None, budget_us: float | None, *, scope: str = "") -> Check:
    """The p99 per-round service time against ``budget_us``.

    >>> service_check(12.5, 10.0).status, service_check(3.0, None).status
    ('NOT MET', 'not judged')
    """
    where = f" ({scope})" if scope else ""
    if budget_us is None:
        return Check("service time", NOT_JUDGED, f"no budget given (--budget-us){where}")
    if p99_us is None:
        return Check("service time", NOT_JUDGED, f"no samples{where}")
    ok = p99_us < budget_us
    return Check("service time", MET if ok else NOT_MET,
                 f"p99 {_us(p99_us)} us {'<' if ok else '>='} budget {budget_us:g} us{where}")


def reaction_check(p99_us: float | None, budget_us: float | None,
                   reference_us: float | None, reference: str, *,
                   floor: str = "the platform") -> Check:
    """The p99 reaction time against ``budget_us``, with the same run's floor
    ``reference_us`` stated beside it (``reference`` names it: what was measured, how).

    The budget is judged as it stands: a machine whose own stalls exceed it fails the budget,
    and the line says that the platform alone takes more than the budget, or else that the
    excess is beyond the platform's stalls.

    >>> c = reaction_check(900.0, 10.0, 300.0, "platform stall reference")
    >>> c.status, c.detail.split("; ")[0]
    ('NOT MET', 'p99 900.0 us >= budget 10 us')
    >>> c.detail.split("; ")[1]
    'platform stall reference p99 300.0 us: the platform alone takes more than the budget'
    """
    if budget_us is None:
        return Check("reaction time", NOT_JUDGED, "no budget given (--budget-us)")
    if p99_us is None:
        return Check("reaction time", NOT_JUDGED, "no samples")
    ok = p99_us < budget_us
    detail = f"p99 {_us(p99_us)} us {'<' if ok else '>='} budget {budget_us:g} us; {reference}"
    if reference_us is None:
        detail += ": not measured"
    else:
        detail += f" p99 {_us(reference_us)} us"
        if not ok:
            detail += (f": {floor} alone takes more than the budget"
                       if reference_us >= budget_us else
                       f": the excess is beyond what {floor} takes by itself")
    return Check("reaction time", MET if ok else NOT_MET, detail)


def backlog_check(kept_up: bool | None, offered_per_s: float | None,
                  served_per_s: float | None, *, how: str = "",
                  trend: str | None = None) -> Check:
    """Did the service keep up with the offered rate? ``kept_up`` None: not judged (an
    unpaced run offers no rate). ``trend`` (``backlog.trend``) words a run that did not:
    ``"standing"`` a flat queue over the bound, ``"lagging"`` over it at the end without
    clear growth; anything else (or None) GREW.

    >>> backlog_check(False, 1e6, 7.04e5).detail
    'GREW: offered 1,000,000 rounds/s, served 704,000 rounds/s'
    >>> backlog_check(False, 1e6, 9.998e5, trend="standing").detail
    'STANDING QUEUE: offered 1,000,000 rounds/s, served 999,800 rounds/s'
    """
    if kept_up is None or not offered_per_s:
        return Check("backlog", NOT_JUDGED, "unpaced run: no offered rate to keep up with")
    rates = f"offered {offered_per_s:,.0f} rounds/s" + (
        f", served {served_per_s:,.0f} rounds/s" if served_per_s else "")
    if how:
        rates += f" ({how})"
    word = "kept up: " if kept_up else {"standing": "STANDING QUEUE: ",
                                        "lagging": "LAGGED: "}.get(trend or "", "GREW: ")
    return Check("backlog", MET if kept_up else NOT_MET, word + rates)


def correctness_check(lost: int, duplicated: int, mismatches: int, expected: int, *,
                      errors: int = 0) -> Check:
    """Corrections lost, duplicated or different from the offline decode (and ERROR replies
    received) must all be 0.

    >>> correctness_check(0, 1, 0, 50).status
    'NOT MET'
    """
    ok = not (lost or duplicated or mismatches or errors)
    detail = (f"{lost} lost, {duplicated} duplicated, {mismatches} mismatches vs the offline "
              f"decode of {expected:,} corrections")
    if errors:
        detail += f", {errors} ERROR replies"
    return Check("correctness", MET if ok else NOT_MET, detail, ExitCode.INCORRECT)


@dataclass(frozen=True)
class Load:
    """How busy the machine was during a run (:class:`LoadProbe`)."""

    seconds: float
    cpus: int
    other_cpus: float  #: CPUs' worth of time other processes took, on average
    own_cpus: float  #: this process and its waited-for children
    steal_share: float  #: share of all CPU time the hypervisor took
    loadavg_1m: float
    blocked_share: float | None = None  #: the stall meter's, when the run measured it

    @property
    def loaded(self) -> bool:
        return (self.other_cpus > LOADED_OTHER_CPUS or self.steal_share > LOADED_STEAL_SHARE
                or (self.blocked_share or 0.0) > LOADED_BLOCKED_SHARE)

    def describe(self) -> str:
        parts = [f"other processes took {self.other_cpus:.2f} of {self.cpus} CPUs over "
                 f"{self.seconds:.0f} s", f"steal {100 * self.steal_share:.1f}%",
                 f"load average {self.loadavg_1m:.2f}"]
        if self.blocked_share is not None:
            parts.append(f"a bare spin loop was blocked {100 * self.blocked_share:.2f}% of "
                         "the time")
        return "; ".join(parts)

    def as_dict(self) -> dict:
        return {"seconds": self.seconds, "cpus": self.cpus, "other_cpus": self.other_cpus,
                "own_cpus": self.own_cpus, "steal_share": self.steal_share,
                "loadavg_1m": self.loadavg_1m, "blocked_share": self.blocked_share,
                "loaded": self.loaded}


def _proc_stat() -> tuple[int, int] | None:
    """(busy jiffies, steal jiffies) summed over CPUs, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    v = [int(x) for x in fields[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return user + nice + system + irq + softirq + steal, steal


def _own_cpu_s() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class LoadProbe:
    """Measure the machine's load over a run: start it before, :meth:`stop` after (once the
    run's child processes were waited for, so their CPU time counts as the run's own).

    >>> probe = LoadProbe(); load = probe.stop()
    >>> load.cpus >= 1 and load.other_cpus >= 0.0
    True
    """

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self._stat0 = _proc_stat()
        self._own0 = _own_cpu_s()

    def stop(self, *, blocked_share: float | None = None) -> Load:
        wall = max(time.monotonic() - self._t0, 1e-9)
        cpus = os.cpu_count() or 1
        own = (_own_cpu_s() - self._own0) / wall
        stat1 = _proc_stat()
        other = steal = 0.0
        if self._stat0 is not None and stat1 is not None:
            hz = os.sysconf("SC_CLK_TCK")
            busy = (stat1[0] - self._stat0[0]) / hz / wall
            steal = (stat1[1] - self._stat0[1]) / hz / wall / cpus
            other = max(0.0, busy - own)
        try:
            la = os.getloadavg()[0]
        except OSError:
            la = 0.0
        return Load(wall, cpus, other, own, steal, la, blocked_share)


@dataclass(frozen=True)
class Verdict:
    """Every check of a run, and the machine's load; PASS only when every judged check held
    and at least one was judged."""

    checks: list[Check]
    load: Load | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def not_met(self) -> list[Check]:
        return [c for c in self.checks if c.status == NOT_MET]

    @property
    def passed(self) -> bool:
        return not self.not_met and any(c.status == MET for c in self.checks)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.worst([c.fail_code for c in self.not_met])

    def as_dict(self) -> dict:
        return {"passed": self.passed, "exit_code": int(self.exit_code),
                "checks": [c.as_dict() for c in self.checks],
                "not_met": [c.name for c in self.not_met],
                "load": None if self.load is None else self.load.as_dict(),
                "notes": list(self.notes)}


def format_verdict(v: Verdict) -> str:
    """The verdict block: the overall word first, one line per check, the machine's load.

    >>> v = Verdict([service_check(1.6, 10.0), correctness_check(0, 0, 0, 10)])
    >>> print(format_verdict(v))  # doctest: +NORMALIZE_WHITESPACE
    verdict: PASS (every budget judged held: service time, correctness)
      service time   met        p99 1.6 us < budget 10 us
      correctness    met        0 lost, 0 duplicated, 0 mismatches vs the offline decode of
                                10 corrections
    """
    judged = [c.name for c in v.checks if c.status != NOT_JUDGED]
    if v.passed:
        head = f"verdict: PASS (every budget judged held: {', '.join(judged)})"
    elif v.not_met:
        head = f"verdict: FAIL ({', '.join(c.name for c in v.not_met)} not met)"
    else:
        head = "verdict: FAIL (no budget could be judged)"
    if v.load is not None and v.load.loaded:
        head = head[:-1] + "; the machine was LOADED)"
    lines = [head]
    for c in v.checks:
        lines.append(f"  {c.name:<14} {c.status:<10} {c.detail}")
    if v.load is not None:
        lines.append(f"  {'machine':<14} {'LOADED' if v.load.loaded else 'quiet':<10} "
                     f"{v.load.describe()}")
    lines += [f"  note: {n}" for n in v.notes]
    return "\n".join(lines)


def latency_verdict(r: dict, load: Load | None = None) -> Verdict:
    """The verdict of a ``qecd.bench.latency/1`` report (``qecd bench latency``, ``make run``).

    The reaction reference is the report's ``platform_stalls`` (``wait_p99_us_all_cpus``);
    the backlog is ``backlog.kept_up`` (shm: the server's lag; zmq: the client-side lag of
    each correction), or the sends' lateness when a report has no ``kept_up``."""
    lat = r["latency_us"]
    budget = (r.get("budget") or {}).get("budget_us")
    stalls = r.get("platform_stalls") or None
    ref = None if stalls is None else stalls.get("wait_p99_us_all_cpus")
    backlog = r.get("backlog") or {}
    kept_up = backlog.get("kept_up")
    trend = backlog.get("trend")
    tenths = backlog.get("lag_by_tenth_us") or []
    how = "the lag behind schedule was drained by the end" if kept_up else (
        "the lag behind schedule grew to the end" if kept_up is False else "")
    if kept_up is False and tenths:
        how = {"standing": "the lag behind schedule stayed flat but over 10 packet intervals",
               "lagging": "the lag behind schedule was over 10 packet intervals at the end",
               }.get(trend or "", "the lag behind schedule grew")
        how += ("; by tenth of the run " + ", ".join(f"{x:,.0f}" for x in tenths) + " us")
    if kept_up is None and r.get("cycle_us") and "late_sends" in backlog:
        sent = max(int(r.get("rounds") or 0), 1)
        kept_up = (backlog.get("late_sends") or 0) <= 0.01 * sent
        how = f"{backlog.get('late_sends') or 0:,} of {sent:,} rounds sent over a cycle late"
    checks = [
        service_check((lat.get("service") or {}).get("p99_us"), budget),
        reaction_check((lat.get("reaction") or {}).get("p99_us"), budget, ref,
                       "platform stall reference (a bare spin loop on the same CPUs, same run)"),
        backlog_check(kept_up, r.get("offered_rounds_per_s"), r.get("throughput_rounds_per_s"),
                      how=how, trend=trend),
        correctness_check(int(r["lost"]), int(r["duplicated"]),
                          int(r["mismatches_vs_offline"]), int(r["corrections_expected"])),
    ]
    if load is not None and stalls is not None and load.blocked_share is None:
        blocked = max((c.get("blocked_share", 0.0) for c in stalls.get("cpus", [])), default=0.0)
        blocked = min(blocked, 1.0)  # the meter divides by its nominal seconds: a stall that
        # runs past the end of the window reads as more than 100%
        load = Load(load.seconds, load.cpus, load.other_cpus, load.own_cpus, load.steal_share,
                    load.loadavg_1m, blocked)
    return Verdict(checks, load)


def emulate_verdict(rep: dict, budget_us: float | None, load: Load | None = None) -> Verdict:
    """The verdict of a ``qecd.emulate/1`` report (``qecd emulate``).

    Service time is judged on this run's streams (the worst stream's p99, exact over its
    rounds), not on everything the server did since it started; the reaction reference is the
    bare HEARTBEAT round trip of the same connection; in paced mode the backlog kept up when
    the sends finished within 5% of their schedule."""
    worst = max(((s.get("p99_us") or 0.0) for s in rep["service_time"].get("by_stream", [])),
                default=None)
    n = len(rep["service_time"].get("by_stream", []))
    rtt = (rep.get("bare_round_trip") or {}).get("p99_us")
    kept_up = served = offered = None
    thr = rep.get("throughput") or {}
    if rep.get("cycle_us"):
        offered = rep["streams"] * 1e6 / rep["cycle_us"]
        served = thr.get("rounds_per_s")
        kept_up = bool(served and served >= 0.95 * offered)
    if offered and (served is None or not math.isfinite(served)):
        backlog = Check("backlog", NOT_JUDGED, "the run did not finish streaming (no served "
                        "rate)")
    else:
        backlog = backlog_check(kept_up, offered, served,
                                how=f"{thr.get('late_sends', 0):,} sends over a cycle late"
                                if kept_up is not None else "")
    errors = sum((rep.get("errors_received") or {}).values())
    correct = correctness_check(
        int(rep["lost"]), int(rep["duplicated"]),
        int(rep["mismatches"]) + int(rep.get("correction_mismatches", 0))
        + int(rep.get("unexpected", 0)), int(rep["corrections_expected"]), errors=errors)
    if not rep.get("ok", True) and correct.status == MET:  # a failure none of those counts
        correct = Check("correctness", NOT_MET, "; ".join(rep["failures"]), ExitCode.INCORRECT)
    checks = [
        service_check(worst, budget_us, scope=f"worst of this run's {n} stream(s)"),
        reaction_check((rep.get("reaction_time") or {}).get("p99_us"), budget_us, rtt,
                       "bare HEARTBEAT round trip (same connection, same run)",
                       floor="the transport"),
        backlog,
        correct,
    ]
    notes = [f"failure: {f}" for f in rep.get("failures", [])]
    if load is not None:
        notes.append("a server on this machine counts among the other processes")
    return Verdict(checks, load, notes)
