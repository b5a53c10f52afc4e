"""``qecd bench sweep``: distance x error-rate sweeps of logical error rate and decode time.

A sweep is a list of :class:`~qecd.bench.sweep_tasks.SweepTask` (one per spec and decoder:
:func:`sweep_tasks`), each cut into seeded shot chunks. The chunks run on Dask
(:mod:`qecd.bench.sweep_dask`, what the command line does) or here in this process
(:func:`run_sweep`); either way a task's totals are those of its chunks ``0..K-1`` and do not
depend on where the chunks ran. Every decoder of a point decodes the same shots (chunk seeds
do not depend on the decoder), and the reference decoder (pymatching for graph-like DEMs,
ldpc BP+OSD for qLDPC ones) always runs.

Outputs
-------
- sinter's CSV (:mod:`qecd.bench.sweep_store`; :func:`write_sinter_csv` for finished rows),
  read by ``sinter plot``/``combine`` and ``sinter.read_stats_from_csv_files``. Decoder
  column ``qecd-<name>`` (the names of :mod:`qecd.decoder.sinter_plugin`); ``seconds`` is
  the decode time only; ``custom_counts`` holds integer ``decode_ns``, ``sample_ns`` and
  ``chunks`` (they add up when sinter merges rows).
- the failing shots of each chunk in ``<csv>.failures.jsonl`` beside the CSV
  (:mod:`qecd.bench.sweep_paired`), so a resumed sweep still pairs its decoders.
- rows (:func:`rows_from_progress`) for our JSON report (``qecd.bench.sweep/2``): LER with
  Wilson intervals, time per round, the time ratio and the paired LER ratio to the reference
  (with its 95% interval from the shots both decoded, as ``qecd bench accuracy`` reports it),
  the machine.
- PNGs: :func:`plot_ler_vs_p` and :func:`plot_time_vs_distance`.

Example
-------
>>> import io
>>> rows = run_sweep("repetition:d=3,p=0.01", distances=[3], ps=[0.01, 0.02],
...                  decoders=["pymatching"], shots=200, seed=1)
>>> [(r["d"], r["p"], r["decoder"], r["shots"]) for r in rows]
[(3, 0.01, 'pymatching', 200), (3, 0.02, 'pymatching', 200)]
>>> f = io.StringIO()
>>> stats = write_sinter_csv(rows, f)
>>> import sinter
>>> f.getvalue().splitlines()[0] == sinter.CSV_HEADER
True
>>> stats[0].decoder, stats[0].json_metadata["d"], stats[0].json_metadata["b"]
('qecd-pymatching', 3, 'z')
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable
from typing import IO, Any

from qecd.bench.machine import machine_info
from qecd.bench.plots import pyplot
from qecd.bench.stats import wilson_interval
from qecd.bench.sweep_paired import paired_fields
from qecd.bench.sweep_store import CsvWriter, TaskProgress
from qecd.bench.sweep_tasks import (
    DEFAULT_CHUNK_SHOTS,
    LDPC_REFERENCE,
    SweepTask,
    decoder_settings,
    run_chunk,
)
from qecd.codes import build_experiment, parse_spec
from qecd.codes.spec import ExperimentSpec
from qecd.decoder.registry import REFERENCE_GRAPH_DECODER
from qecd.errors import SpecError

SCHEMA = "qecd.bench.sweep/2"
REFERENCE_GRAPH = REFERENCE_GRAPH_DECODER

__all__ = ["SCHEMA", "decoder_settings", "format_sweep", "plot_ler_vs_p",
           "plot_time_vs_distance", "rows_from_progress", "run_sweep", "sweep_report",
           "sweep_specs", "sweep_tasks", "task_stats", "write_sinter_csv"]


# --------------------------------------------------------------------------- the sweep

def sweep_specs(base_spec: str, distances: Iterable[int], ps: Iterable[float],
                rounds_factor: int | None = None) -> list[ExperimentSpec]:
    """The spec of every sweep point, distances outer, error rates inner.

    Fields written in ``base_spec`` are kept; ``d`` and ``p`` are replaced. ``r`` is
    ``d * rounds_factor`` when given, else the ``r`` written in ``base_spec``, else the
    family default (``r = d`` for surface and repetition codes).

    Parameters
    ----------
    base_spec : str
        A spec of a family with a ``d`` field (``surface``, ``repetition``).
    distances : iterable of int
    ps : iterable of float
    rounds_factor : int, optional

    Returns
    -------
    list of ExperimentSpec

    Examples
    --------
    >>> [str(s) for s in sweep_specs("repetition:d=3", [3, 5], [0.01], rounds_factor=2)]
    ['repetition:d=3,r=6,p=0.01,noise=uniform', 'repetition:d=5,r=10,p=0.01,noise=uniform']
    >>> str(sweep_specs("surface:d=3,r=2", [5], [0.002])[0])
    'surface:d=5,r=2,p=0.002,noise=uniform,basis=z'
    """
    base = parse_spec(base_spec)
    if "d" not in base.as_dict():
        raise SpecError("spec", "a family with a 'd' field (surface, repetition) to sweep d",
                        base_spec)
    if rounds_factor is not None and (not isinstance(rounds_factor, int) or rounds_factor < 1):
        raise SpecError("rounds_factor", "an integer >= 1", rounds_factor)
    _, _, body = base_spec.partition(":")
    written = {kv.split("=", 1)[0].strip() for kv in body.split(",") if kv.strip()}
    kept = {k: v for k, v in base.params if k in written}
    specs = []
    for d in distances:
        for p in ps:
            fields = dict(kept, d=d, p=float(p))
            if rounds_factor is not None:
                fields["r"] = int(d) * rounds_factor
            text = f"{base.family}:" + ",".join(f"{k}={_fmt(v)}" for k, v in fields.items())
            specs.append(parse_spec(text))
    if not specs:
        raise SpecError("distances/ps", "at least one distance and one error rate",
                        f"{list(distances)} x {list(ps)}")
    return specs


def _fmt(v: Any) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def reference_for(spec: str | ExperimentSpec) -> str:
    """The reference decoder of a spec: pymatching when its DEM is graph-like, else
    ldpc's BP+OSD (``ldpc-bposd``).

    >>> reference_for("repetition:d=3")
    'pymatching'
    """
    return REFERENCE_GRAPH if build_experiment(spec).graph_like else LDPC_REFERENCE


def sweep_tasks(base_spec: str, *, distances: list[int], ps: list[float],
                decoders: list[str], max_shots: int, seed: int,
                rounds_factor: int | None = None, max_errors: int | None = None,
                chunk_shots: int = DEFAULT_CHUNK_SHOTS, time_repeats: int = 1
                ) -> list[SweepTask]:
    """Every (point, decoder) task of a sweep: points as :func:`sweep_specs`, and at each the
    reference decoder first, then ``decoders`` in order (duplicates dropped).

    Examples
    --------
    >>> ts = sweep_tasks("repetition:d=3", distances=[3], ps=[0.01], decoders=["uf"],
    ...                  max_shots=100, seed=0)
    >>> [(t.spec, t.decoder) for t in ts]
    [('repetition:d=3,r=3,p=0.01,noise=uniform', 'pymatching'), \
('repetition:d=3,r=3,p=0.01,noise=uniform', 'uf')]
    """
    specs = sweep_specs(base_spec, distances, ps, rounds_factor)
    tasks = []
    for spec in specs:
        names = dict.fromkeys([reference_for(spec), *decoders])
        tasks += [SweepTask(str(spec), name, seed=seed, max_shots=max_shots,
                            max_errors=max_errors, chunk_shots=chunk_shots,
                            time_repeats=time_repeats) for name in names]
    return tasks


def run_tasks_here(tasks: list[SweepTask], csv: IO[str] | CsvWriter | None = None, *,
                   prior: dict[str, TaskProgress] | None = None) -> dict[str, TaskProgress]:
    """Run the tasks' chunks one after another in this process (the same totals as on Dask).

    Parameters
    ----------
    tasks : list of SweepTask
    csv : text file, CsvWriter or None
        Committed chunks go here (a bare file gets sinter's header first).
    prior : dict, optional
        Committed progress to resume from.

    Returns
    -------
    dict
        ``{strong_id: TaskProgress}``.
    """
    writer = csv if isinstance(csv, CsvWriter) or csv is None else CsvWriter(
        csv, write_header=True)
    out = {}
    for t in tasks:
        p = (prior or {}).get(t.strong_id, TaskProgress())
        while not t.is_done(p.shots, p.errors):
            r = run_chunk(t, p.chunks)
            if writer is not None:
                writer.write(t, r)
            p = p.plus(r)
        out[t.strong_id] = p
    return out


def run_sweep(base_spec: str, *, distances: list[int], ps: list[float], decoders: list[str],
              shots: int, seed: int, rounds_factor: int | None = None,
              max_errors: int | None = None, time_repeats: int = 1,
              chunk_shots: int = DEFAULT_CHUNK_SHOTS) -> list[dict]:
    """Accuracy and decode time of each decoder at every (d, p), run in this process.

    The command line runs the same tasks on Dask (:mod:`qecd.bench.sweep_dask`) and gets the
    same shots and errors.

    Parameters
    ----------
    base_spec : str
        Base experiment spec, e.g. ``"surface:d=3,p=0.001,noise=si1000"``; ``d`` and ``p``
        are replaced at each point (see :func:`sweep_specs` for ``r``).
    distances : list of int
    ps : list of float
    decoders : list of str
        Decoder names (``pymatching``, ``uf``, ``uf-w10c5``...). The reference decoder
        (pymatching for graph-like DEMs) is always run and always returned.
    shots : int
        Shots per task (the maximum when ``max_errors`` is given). Every decoder at a
        point decodes the same shots.
    seed : int
        Sweep seed; chunk ``k`` of a point is sampled with a seed derived from (spec, seed, k).
    rounds_factor : int, optional
        ``r = d * rounds_factor``.
    max_errors : int, optional
        Stop a task at the first chunk that brings its failures to this many, like sinter's
        ``--max_errors`` (decoders of one point may then stop at different shot counts).
    time_repeats : int, optional
        Decode each chunk this many times and keep the fastest decode time (the failures
        are counted once). Every pass decodes the same shots, so slower passes measure other
        processes, not the decoder (the reasoning of ``timeit``): on this shared 2-core
        machine a pass is often slowed 2-5x. Default 1.
    chunk_shots : int, optional
        Shots per chunk (default :data:`~qecd.bench.sweep_tasks.DEFAULT_CHUNK_SHOTS`).

    Returns
    -------
    list of dict
        One row per task (see :func:`rows_from_progress`), in sweep order.

    Examples
    --------
    >>> rows = run_sweep("repetition:d=3", distances=[3, 5], ps=[0.02], decoders=[],
    ...                  shots=200, seed=0, rounds_factor=2)
    >>> [(r["d"], r["r"], r["decoder"]) for r in rows]
    [(3, 6, 'pymatching'), (5, 10, 'pymatching')]
    >>> all(r["ler_ci95"][0] <= r["ler"] <= r["ler_ci95"][1] for r in rows)
    True
    """
    if not isinstance(shots, int) or shots < 1:
        raise ValueError(f"shots: expected an integer >= 1, got {shots!r}")
    tasks = sweep_tasks(base_spec, distances=distances, ps=ps, decoders=decoders,
                        max_shots=shots, seed=seed, rounds_factor=rounds_factor,
                        max_errors=max_errors, chunk_shots=chunk_shots,
                        time_repeats=time_repeats)
    return rows_from_progress(tasks, run_tasks_here(tasks))


# --------------------------------------------------------------------------- outputs

def rows_from_progress(tasks: list[SweepTask], progress: dict[str, TaskProgress]
                       ) -> list[dict]:
    """One report row per task with committed shots, in task order.

    Row keys: ``spec``, ``family``, ``d``, ``r``, ``p``, ``b``, ``noise``, ``decoder``,
    ``reference``, ``shots``, ``errors``, ``ler``, ``ler_ci95`` (Wilson 95%), ``seconds``
    (decode time), ``decode_ns``, ``sample_ns``, ``us_per_shot``, ``us_per_round``,
    ``time_ratio_to_reference`` (None without the reference; the decode times come from the
    same shots, possibly on other workers), the paired LER ratio to the reference
    (:func:`~qecd.bench.sweep_paired.paired_fields`: ``ler_ratio_to_reference``,
    ``ler_ratio_to_reference_ci95``, ``paired_shots``, ``both_failed``,
    ``only_this_failed``, ``only_reference_failed``, ``ler_ratio_note``), ``seed``,
    ``chunks``, ``time_repeats``, ``strong_id``, ``settings``, ``json_metadata``.

    Examples
    --------
    >>> tasks = sweep_tasks("repetition:d=3", distances=[3], ps=[0.05],
    ...                     decoders=["pymatching-w2c1"], max_shots=400, seed=3,
    ...                     chunk_shots=200)
    >>> ref, win = rows_from_progress(tasks, run_tasks_here(tasks))
    >>> ref["ler_ratio_to_reference_ci95"], ref["paired_shots"] == ref["shots"] == 400
    ([1.0, 1.0], True)
    >>> win["both_failed"] + win["only_this_failed"] == win["errors"]
    True
    >>> lo, hi = win["ler_ratio_to_reference_ci95"]
    >>> lo <= win["ler_ratio_to_reference"] <= hi
    True
    """
    by_spec: dict[str, dict[str, TaskProgress]] = collections.defaultdict(dict)
    for t in tasks:
        if t.strong_id in progress:
            by_spec[t.spec][t.decoder] = progress[t.strong_id]
    rows = []
    for t in tasks:
        p = progress.get(t.strong_id)
        if p is None or p.shots == 0:
            continue
        spec = parse_spec(t.spec)
        sp = spec.as_dict()
        ref = reference_for(spec)
        rp = by_spec[t.spec].get(ref)
        per_shot = p.decode_ns / p.shots
        rows.append({
            "spec": t.spec, "family": spec.family, "d": sp.get("d"), "r": sp["r"],
            "p": sp["p"], "b": sp.get("basis", "z"), "noise": sp.get("noise"),
            "decoder": t.decoder, "reference": ref, "shots": p.shots, "errors": p.errors,
            "ler": p.errors / p.shots, "ler_ci95": list(wilson_interval(p.errors, p.shots)),
            "seconds": p.decode_ns / 1e9, "decode_ns": p.decode_ns, "sample_ns": p.sample_ns,
            "us_per_shot": per_shot / 1e3, "us_per_round": per_shot / 1e3 / sp["r"],
            "time_ratio_to_reference": (per_shot / (rp.decode_ns / rp.shots)
                                        if rp and rp.shots and rp.decode_ns else None),
            **paired_fields(p, rp, is_reference=t.decoder == ref),
            "seed": t.seed, "chunks": p.chunks, "time_repeats": t.time_repeats,
            "strong_id": t.strong_id, "settings": decoder_settings(t.decoder),
            "json_metadata": t.json_metadata,
        })
    return rows


def task_stats(row: dict):
    """One sweep row as a ``sinter.TaskStats`` (decoder ``qecd-<name>``, discards 0).

    >>> rows = run_sweep("repetition:d=3", distances=[3], ps=[0.02], decoders=[],
    ...                  shots=200, seed=0)
    >>> s = task_stats(rows[0])
    >>> s.shots, s.decoder, sorted(s.custom_counts)
    (200, 'qecd-pymatching', ['chunks', 'decode_ns', 'sample_ns'])
    """
    import sinter

    name = row["decoder"]
    return sinter.TaskStats(
        strong_id=row["strong_id"],
        decoder=name if name == LDPC_REFERENCE else "qecd-" + name,
        json_metadata=row["json_metadata"], shots=int(row["shots"]),
        errors=int(row["errors"]), discards=0, seconds=float(row["seconds"]),
        custom_counts=collections.Counter({"decode_ns": int(row["decode_ns"]),
                                           "sample_ns": int(row["sample_ns"]),
                                           "chunks": int(row["chunks"])}),
    )


def write_sinter_csv(rows: list[dict], path_or_file: str | os.PathLike | IO[str]) -> list:
    """Write rows as sinter CSV: ``sinter.CSV_HEADER`` then one ``TaskStats`` line each.

    Parameters
    ----------
    rows : list of dict
        From :func:`run_sweep` or :func:`rows_from_progress`.
    path_or_file : str, path-like or text file
        A path (overwritten) or an open text file (e.g. ``sys.stdout``).

    Returns
    -------
    list of sinter.TaskStats
        The stats written, in row order.

    Examples
    --------
    >>> import os, tempfile, sinter
    >>> rows = run_sweep("repetition:d=3", distances=[3], ps=[0.02], decoders=[],
    ...                  shots=200, seed=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "s.csv")
    >>> _ = write_sinter_csv(rows, path)
    >>> [s.shots for s in sinter.read_stats_from_csv_files(path)]
    [200]
    """
    import sinter

    stats = [task_stats(r) for r in rows]
    text = sinter.CSV_HEADER + "\n" + "".join(s.to_csv_line() + "\n" for s in stats)
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, "w") as f:
            f.write(text)
    else:
        path_or_file.write(text)
        path_or_file.flush()
    return stats


def sweep_report(rows: list[dict], **settings: Any) -> dict:
    """Our JSON report: the settings of the run, the machine, and every row."""
    return {"schema": SCHEMA, **settings, "machine": machine_info(), "rows": rows}


def format_sweep(rows: list[dict]) -> str:
    """A fixed-width table of sweep rows (Markdown-friendly): the LER with its Wilson
    interval, time per round, and the time and paired LER ratios to the reference with the
    latter's 95% interval; rows with a ``ler_ratio_note`` are marked and the notes follow.

    >>> rows = run_sweep("repetition:d=3", distances=[3], ps=[0.05], decoders=["pymatching-w2c1"],
    ...                  shots=200, seed=3)
    >>> print(format_sweep(rows).splitlines()[0])
    | d | r | p | decoder | shots | errors | LER | 95% CI | µs/round | time/ref | LER/ref | \
paired 95% CI |
    """
    lines = ["| d | r | p | decoder | shots | errors | LER | 95% CI | µs/round | time/ref "
             "| LER/ref | paired 95% CI |",
             "|--:|--:|--:|:--|--:|--:|--:|:--|--:|--:|--:|:--|"]
    notes: dict[str, list[str]] = {}
    for r in rows:
        lo, hi = r["ler_ci95"]
        ratio = r["time_ratio_to_reference"]
        ler_ratio = r.get("ler_ratio_to_reference")
        ci = r.get("ler_ratio_to_reference_ci95")
        mark = ""
        if r.get("ler_ratio_note"):
            where = f"d={r['d']} p={r['p']:g} {r['decoder']}"
            notes.setdefault(r["ler_ratio_note"], []).append(where)
            mark = f" ({list(notes).index(r['ler_ratio_note']) + 1})"
        lines.append(f"| {r['d']} | {r['r']} | {r['p']:g} | {r['decoder']} | {r['shots']} | "
                     f"{r['errors']} | {r['ler']:.2e} | [{lo:.2e}, {hi:.2e}] | "
                     f"{r['us_per_round']:.3f} | "
                     f"{'-' if ratio is None else f'{ratio:.2f}'} | "
                     f"{'-' if ler_ratio is None else f'{ler_ratio:.3f}'} | "
                     f"{'-' if ci is None else f'[{ci[0]:.3f}, {ci[1]:.3f}]'}{mark} |")
    for i, (note, where) in enumerate(notes.items(), 1):
        lines.append(f"({i}) {note}: {', '.join(where)}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots

def _decoders_in_order(rows: list[dict]) -> list[str]:
    ref = rows[0]["reference"]
    names = list(dict.fromkeys(r["decoder"] for r in rows))
    return sorted(names, key=lambda n: (n != ref, names.index(n)))


def _rounds_note(rows: list[dict]) -> str:
    ratios = {r["r"] / r["d"] for r in rows}
    if len(ratios) == 1:
        k = ratios.pop()
        return "r = d" if k == 1 else (f"r = {k:g}d" if k == int(k) else f"r/d = {k:g}")
    rs = {r["r"] for r in rows}
    return f"r = {rs.pop()}" if len(rs) == 1 else "r varies"


def plot_ler_vs_p(rows: list[dict], path: str | os.PathLike, title: str = "",
                  per: str = "shot") -> str:
    """Logical error rate per shot (or per round) vs p (log-log), one line per (decoder, d).

    Colour is the distance, marker and line style the decoder; error bars are 95% Wilson
    intervals. A point with no failures is drawn as an open downward triangle at its 95%
    upper bound. Lines are offset by up to a few percent in p so their bars do not overlap.
    ``per="round"`` converts each rate and bound as sinter's plots do
    (``sinter.shot_error_rate_to_piece_error_rate`` with ``r`` pieces per shot).

    Parameters
    ----------
    rows : list of dict
        From :func:`run_sweep`.
    path : str or path-like
        PNG file to write.
    title : str, optional
    per : {"shot", "round"}

    Returns
    -------
    str
        ``path``.

    Examples
    --------
    >>> import os, tempfile
    >>> rows = run_sweep("repetition:d=3", distances=[3], ps=[0.02, 0.04], decoders=[],
    ...                  shots=200, seed=0)
    >>> p = plot_ler_vs_p(rows, os.path.join(tempfile.mkdtemp(), "ler.png"))
    >>> os.path.getsize(p) > 5000
    True
    """
    import numpy as np

    if per not in ("shot", "round"):
        raise ValueError(f"per: expected 'shot' or 'round', got {per!r}")

    def unit(rate: float, r: dict) -> float:
        if per == "shot":
            return rate
        from sinter import shot_error_rate_to_piece_error_rate

        return shot_error_rate_to_piece_error_rate(rate, pieces=r["r"])

    plt = pyplot()
    decoders = _decoders_in_order(rows)
    ds = sorted({r["d"] for r in rows})
    markers = "os^Dvx*P"
    styles = ["-", "--", ":", "-."]
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    n_series = len(decoders) * len(ds)
    for i, dec in enumerate(decoders):
        for j, d in enumerate(ds):
            shift = 1.0 + 0.02 * (i * len(ds) + j - (n_series - 1) / 2)
            pts = sorted((r for r in rows if r["decoder"] == dec and r["d"] == d),
                         key=lambda r: r["p"])
            if not pts:
                continue
            color = f"C{j % 10}"
            p = np.array([r["p"] for r in pts]) * shift
            ler = np.array([unit(r["ler"], r) for r in pts])
            lo = np.array([unit(r["ler_ci95"][0], r) for r in pts])
            hi = np.array([unit(r["ler_ci95"][1], r) for r in pts])
            seen = ler > 0
            ax.errorbar(p[seen], ler[seen], yerr=[ler[seen] - lo[seen], hi[seen] - ler[seen]],
                        color=color, marker=markers[i % len(markers)],
                        linestyle=styles[i % len(styles)], capsize=3, markersize=5,
                        label=f"{dec}, d={d}")
            if (~seen).any():
                ax.plot(p[~seen], hi[~seen], linestyle="none", marker="v", markersize=7,
                        markerfacecolor="none", color=color)
    if any(r["errors"] == 0 for r in rows):
        ax.plot([], [], linestyle="none", marker="v", markerfacecolor="none", color="grey",
                label="no failures: 95% upper bound")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("physical error rate p")
    ax.set_ylabel(f"logical error rate per {per}")
    shots = sorted({r["shots"] for r in rows})
    shot_txt = f"{shots[0]} shots" if len(shots) == 1 else f"{shots[0]}-{shots[-1]} shots"
    fam = rows[0]["family"]
    ax.set_title(title or f"{fam} code, {rows[0]['noise']} noise, {_rounds_note(rows)}: "
                          f"{shot_txt} per point\nlogical error rate per {per}, "
                          "95% Wilson intervals",
                 fontsize=10)
    ax.legend(fontsize=8, ncol=2 if len(decoders) * len(ds) > 6 else 1)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def plot_time_vs_distance(rows: list[dict], path: str | os.PathLike, title: str = "") -> str:
    """Decode time per round (µs, log y) vs d, one panel per p, one line per decoder.

    The reference (pymatching for graph-like codes) is the dashed black line; every other
    point is labelled with its time ratio to the reference, measured on the same shots in
    the same run. Time per round = batch decode time / shots / r (build and warm-up
    excluded; the fastest timing pass when ``time_repeats`` > 1).

    Parameters
    ----------
    rows : list of dict
        From :func:`run_sweep`.
    path : str or path-like
        PNG file to write.
    title : str, optional

    Returns
    -------
    str
        ``path``.

    Examples
    --------
    >>> import os, tempfile
    >>> rows = run_sweep("repetition:d=3", distances=[3, 5], ps=[0.02], decoders=[],
    ...                  shots=200, seed=0)
    >>> p = plot_time_vs_distance(rows, os.path.join(tempfile.mkdtemp(), "t.png"))
    >>> os.path.getsize(p) > 5000
    True
    """
    plt = pyplot()
    decoders = _decoders_in_order(rows)
    ref = rows[0]["reference"]
    ps = sorted({r["p"] for r in rows})
    ds = sorted({r["d"] for r in rows})
    fig, axes = plt.subplots(1, len(ps), figsize=(3.6 * len(ps) + 1.2, 4.4), sharey=True,
                             squeeze=False)
    for ax, p in zip(axes[0], ps, strict=True):
        for i, dec in enumerate(decoders):
            pts = sorted((r for r in rows if r["decoder"] == dec and r["p"] == p),
                         key=lambda r: r["d"])
            if not pts:
                continue
            x = [r["d"] for r in pts]
            y = [r["us_per_round"] for r in pts]
            if dec == ref:
                ax.plot(x, y, "k--", marker="o", markerfacecolor="none",
                        label=f"{dec} (reference)")
            else:
                ax.plot(x, y, "-", marker="os^Dv"[i % 5], color=f"C{i % 10}", label=dec)
                for r in pts:
                    if r["time_ratio_to_reference"] is None:
                        continue
                    ax.annotate(f"×{r['time_ratio_to_reference']:.2g}",
                                (r["d"], r["us_per_round"]), textcoords="offset points",
                                xytext=(4, 4), fontsize=7, color=f"C{i % 10}")
        ax.set_title(f"p = {p:g}", fontsize=10)
        ax.set_xlabel("code distance d")
        ax.set_xticks(ds)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("decode time per round (µs)")
    axes[0][0].legend(fontsize=8)
    shots = sorted({r["shots"] for r in rows})
    fig.suptitle(title or f"{rows[0]['family']} code, {_rounds_note(rows)}: batch decode time "
                          f"/ shots / r, same {shots[0]}"
                          f"{'+' if len(shots) > 1 else ''} shots per decoder "
                          f"(×: ratio to {ref})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
