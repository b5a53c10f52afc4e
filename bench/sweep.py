"""``qecd bench sweep``: distance and error-rate sweeps of accuracy and decode time.

For every (d, p) the base spec is rebuilt with that distance and error rate, its shots are
sampled once (seeded) and decoded by every decoder with :func:`qecd.bench.accuracy.run_accuracy`,
so the decoders at one point see the same shots and their decode times are measured in the
same run as the reference's (pymatching for graph-like DEMs). With ``time_repeats`` > 1 the
shots are decoded several times, the decoders taking turns, and the fastest pass is kept.

Outputs
-------
- sinter's CSV format (:func:`write_sinter_csv`), so ``sinter plot`` and
  ``sinter.read_stats_from_csv_files`` read the rows. Decoder column ``qecd-<name>`` (the
  names of :mod:`qecd.decoder.sinter_plugin`); ``seconds`` is the decode time only
  (sampling is shared by all decoders and not counted); ``custom_counts`` holds the integer
  ``decode_ns`` (it adds up correctly when sinter merges rows).
- our own JSON report (``qecd.bench.sweep/1``), which also carries the time per round, the
  ratios to the reference, the machine and library versions.
- PNGs: :func:`plot_ler_vs_p` and :func:`plot_time_vs_distance`.

Strong ids hash (spec, decoder, seed): a rerun with the same seed reproduces the same rows
and ids, and the row at one point reproduces with ``qecd bench accuracy --spec <row spec>
--seed <seed> --shots <shots>`` (without ``max_errors``). sinter sums rows sharing a strong
id, so never concatenate two runs made with the same seed (their shots are the same shots);
runs with different seeds stay separate rows.

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

import argparse
import collections
import hashlib
import inspect
import json
import os
import shlex
import sys
import warnings
from collections.abc import Iterable
from typing import IO, Any

from qecd.bench.accuracy import REFERENCE_QLDPC, run_accuracy
from qecd.bench.machine import machine_info
from qecd.bench.plots import pyplot
from qecd.bench.stats import wilson_interval
from qecd.codes import parse_spec
from qecd.codes.spec import ExperimentSpec
from qecd.decoder.registry import parse_decoder_name
from qecd.decoder.sinter_plugin import PREFIX
from qecd.errors import SpecError

SCHEMA = "qecd.bench.sweep/1"
#: With ``max_errors``, shots are taken in chunks of 1024, 2048, ... until every decoder
#: has ``max_errors`` failures (or ``shots`` are used up).
FIRST_CHUNK = 1024


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


def _chunk_seed(seed: int, k: int) -> int:
    """Chunk 0 uses ``seed`` itself; later chunks a 63-bit hash of (seed, k)."""
    if k == 0:
        return seed
    h = hashlib.sha256(f"qecd-sweep-chunk:{seed}:{k}".encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def _run_point(spec: ExperimentSpec, decoders: list[str], shots: int, seed: int,
               max_errors: int | None, time_repeats: int) -> tuple[dict, dict[str, dict]]:
    """One sweep point: the last accuracy report and per-decoder totals over chunks.

    Each chunk is decoded ``time_repeats`` times (the same shots: same seed); failures come
    from the first pass, ``decode_s_passes[i]`` sums pass i's decode time over chunks.
    """
    totals: dict[str, dict] = {}
    done, k = 0, 0
    size = shots if max_errors is None else min(shots, FIRST_CHUNK)
    report: dict = {}
    while done < shots:
        n = min(size, shots - done)
        first: dict[str, int] = {}
        for i in range(time_repeats):
            report = run_accuracy(str(spec), decoders, shots=n, seed=_chunk_seed(seed, k))
            for r in report["decoders"]:
                t = totals.setdefault(r["name"], {"failures": 0, "shots": 0, "build_s": 0.0,
                                                  "decode_s_passes": [0.0] * time_repeats})
                if i == 0:
                    t["failures"] += r["failures"]
                    t["shots"] += r["shots"]
                    first[r["name"]] = r["failures"]
                elif r["failures"] != first[r["name"]]:
                    warnings.warn(f"{r['name']} is not deterministic: {r['failures']} failures "
                                  f"in timing pass {i}, {first[r['name']]} in pass 0 on the "
                                  "same shots; the row counts pass 0", stacklevel=3)
                t["decode_s_passes"][i] += r["decode_s"]
                t["build_s"] = max(t["build_s"], r["build_s"])
        done += n
        k += 1
        size *= 2
        if max_errors is not None and min(t["failures"] for t in totals.values()) >= max_errors:
            break
    report["chunks"] = k
    return report, totals


def _check_decoder(name: str) -> None:
    if name != REFERENCE_QLDPC:
        parse_decoder_name(name)


def decoder_settings(name: str) -> dict[str, Any]:
    """The settings a decoder name stands for (they go into sinter's ``json_metadata``).

    >>> decoder_settings("uf-w10c5")
    {'backend': 'uf', 'window': 10, 'commit': 5}
    """
    if name == REFERENCE_QLDPC:
        from qecd.bench.ldpc_reference import LdpcBpOsd

        sig = inspect.signature(LdpcBpOsd.__init__)
        opts = {k: p.default for k, p in sig.parameters.items()
                if p.kind is p.KEYWORD_ONLY}
        return {"backend": name, "bp_method": "minimum_sum", "osd_method": "osd_cs", **opts}
    dn = parse_decoder_name(name)
    return {"backend": dn.backend, "window": dn.window, "commit": dn.commit}


def strong_id(spec: str | ExperimentSpec, decoder: str, seed: int) -> str:
    """A stable id of one sweep row: sha256 hex of the canonical spec, decoder and seed.

    >>> a = strong_id("surface:d=3,p=0.001", "uf", 1)
    >>> a == strong_id("surface:d=3,r=3,p=0.001,noise=uniform,basis=z", "uf", 1), len(a)
    (True, 64)
    >>> a == strong_id("surface:d=3,p=0.001", "uf", 2)
    False
    """
    canon = str(parse_spec(spec) if isinstance(spec, str) else spec)
    key = json.dumps({"spec": canon, "decoder": decoder, "seed": int(seed)},
                     sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(key.encode()).hexdigest()


def run_sweep(base_spec: str, *, distances: list[int], ps: list[float], decoders: list[str],
              shots: int, seed: int, rounds_factor: int | None = None,
              max_errors: int | None = None, time_repeats: int = 1) -> list[dict]:
    """Accuracy and decode time of each decoder at every (d, p) of a sweep.

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
        Shots per point (the maximum when ``max_errors`` is given). Every decoder at a
        point decodes the same shots.
    seed : int
        Sampling seed, the same at every point (chunk 0 of a point uses it as is).
    rounds_factor : int, optional
        ``r = d * rounds_factor``.
    max_errors : int, optional
        Stop a point early (in chunks of 1024, 2048, ... shots) once every decoder has
        this many failures, like sinter's ``--max_errors``.
    time_repeats : int, optional
        Decode the shots of each point this many times, the decoders taking turns, and
        report the fastest pass (the failures are counted once). Every pass decodes the
        same shots, so slower passes measure other processes, not the decoder (the
        reasoning of ``timeit``): on this shared 2-core machine a pass is often slowed
        2-5x. Default 1.

    Returns
    -------
    list of dict
        One row per (d, p, decoder), in sweep order: ``spec``, ``family``, ``d``, ``r``,
        ``p``, ``b``, ``noise``, ``decoder``, ``reference``, ``shots``, ``errors``, ``ler``,
        ``ler_ci95`` (Wilson 95%), ``seconds`` (decode time, fastest timing pass),
        ``decode_ns``, ``build_s``, ``us_per_shot``, ``us_per_round``,
        ``us_per_round_passes``, ``time_ratio_to_reference``,
        ``ler_ratio_to_reference``, ``seed``, ``chunks``, ``strong_id``, ``settings``,
        ``json_metadata``.

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
    if max_errors is not None and (not isinstance(max_errors, int) or max_errors < 1):
        raise ValueError(f"max_errors: expected an integer >= 1 or None, got {max_errors!r}")
    if not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed: expected an integer in [0, 2**63), got {seed!r}")
    if not isinstance(time_repeats, int) or time_repeats < 1:
        raise ValueError(f"time_repeats: expected an integer >= 1, got {time_repeats!r}")
    specs = sweep_specs(base_spec, distances, ps, rounds_factor)
    for name in decoders:
        _check_decoder(name)
    rows: list[dict] = []
    for spec in specs:
        report, totals = _run_point(spec, decoders, shots, seed, max_errors, time_repeats)
        ref = report["reference"]
        sp = spec.as_dict()
        ident = {  # task identity for sinter: every spec field, basis spelled b
            "family": spec.family,
            **{k: v for k, v in sp.items() if k != "basis"},
            "b": sp.get("basis", "z"),  # the repetition code's memory experiment is Z basis
            "spec": str(spec),
            "sample_seed": seed,
        }
        for r in report["decoders"]:
            name = r["name"]
            t, tref = totals[name], totals[ref]
            n, fails = t["shots"], t["failures"]
            passes = t["decode_s_passes"]
            dec_s = min(passes)
            ratio = dec_s / min(tref["decode_s_passes"])
            settings = decoder_settings(name)
            rows.append({
                "spec": str(spec), "family": spec.family, "d": ident["d"], "r": sp["r"],
                "p": sp["p"], "b": ident["b"], "noise": ident["noise"],
                "decoder": name, "reference": ref, "shots": n, "errors": fails,
                "ler": fails / n, "ler_ci95": list(wilson_interval(fails, n)),
                "seconds": dec_s, "decode_ns": round(dec_s * 1e9),
                "build_s": t["build_s"],
                "us_per_shot": dec_s * 1e6 / n,
                "us_per_round": dec_s * 1e6 / n / sp["r"],
                "us_per_round_passes": [x * 1e6 / n / sp["r"] for x in passes],
                "time_ratio_to_reference": ratio,
                "ler_ratio_to_reference": fails / tref["failures"] if tref["failures"] else None,
                "seed": seed, "chunks": report["chunks"], "time_repeats": time_repeats,
                "strong_id": strong_id(spec, PREFIX + name, seed),
                "settings": settings,
                "json_metadata": {**ident, **settings},
            })
    return rows


# --------------------------------------------------------------------------- outputs

def task_stats(row: dict):
    """One sweep row as a ``sinter.TaskStats`` (decoder ``qecd-<name>``, discards 0).

    >>> rows = run_sweep("repetition:d=3", distances=[3], ps=[0.02], decoders=[],
    ...                  shots=200, seed=0)
    >>> s = task_stats(rows[0])
    >>> s.shots, s.decoder, sorted(s.custom_counts)
    (200, 'qecd-pymatching', ['decode_ns'])
    """
    import sinter

    return sinter.TaskStats(
        strong_id=row["strong_id"], decoder=PREFIX + row["decoder"],
        json_metadata=row["json_metadata"], shots=int(row["shots"]),
        errors=int(row["errors"]), discards=0, seconds=float(row["seconds"]),
        custom_counts=collections.Counter({"decode_ns": int(row["decode_ns"])}),
    )


def write_sinter_csv(rows: list[dict], path_or_file: str | os.PathLike | IO[str]) -> list:
    """Write rows as sinter CSV: ``sinter.CSV_HEADER`` then one ``TaskStats`` line each.

    Parameters
    ----------
    rows : list of dict
        From :func:`run_sweep`.
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
    """A fixed-width table of sweep rows (Markdown-friendly)."""
    lines = ["| d | r | p | decoder | shots | errors | LER | 95% CI | µs/round | time/ref |",
             "|--:|--:|--:|:--|--:|--:|--:|:--|--:|--:|"]
    for r in rows:
        lo, hi = r["ler_ci95"]
        lines.append(f"| {r['d']} | {r['r']} | {r['p']:g} | {r['decoder']} | {r['shots']} | "
                     f"{r['errors']} | {r['ler']:.2e} | [{lo:.2e}, {hi:.2e}] | "
                     f"{r['us_per_round']:.3f} | {r['time_ratio_to_reference']:.2f} |")
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


def plot_ler_vs_p(rows: list[dict], path: str | os.PathLike, title: str = "") -> str:
    """Logical error rate per shot vs p (log-log), one line per (decoder, d).

    Colour is the distance, marker and line style the decoder; error bars are 95% Wilson
    intervals. A point with no failures is drawn as an open downward triangle at its 95%
    upper bound. Lines are offset by up to a few percent in p so their bars do not overlap.

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
    >>> rows = run_sweep("repetition:d=3", distances=[3], ps=[0.02, 0.04], decoders=[],
    ...                  shots=200, seed=0)
    >>> p = plot_ler_vs_p(rows, os.path.join(tempfile.mkdtemp(), "ler.png"))
    >>> os.path.getsize(p) > 5000
    True
    """
    import numpy as np

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
            ler = np.array([r["ler"] for r in pts])
            lo = np.array([r["ler_ci95"][0] for r in pts])
            hi = np.array([r["ler_ci95"][1] for r in pts])
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
    ax.set_ylabel("logical error rate per shot")
    shots = sorted({r["shots"] for r in rows})
    shot_txt = f"{shots[0]} shots" if len(shots) == 1 else f"{shots[0]}-{shots[-1]} shots"
    fam = rows[0]["family"]
    ax.set_title(title or f"{fam} code, {rows[0]['noise']} noise, {_rounds_note(rows)}: "
                          f"{shot_txt} per point, 95% Wilson intervals", fontsize=10)
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


# --------------------------------------------------------------------------- CLI

def _int_list(text: str) -> list[int]:
    try:
        out = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 3,5,7, got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    return out


def _float_list(text: str) -> list[float]:
    try:
        out = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers like 0.001,0.003, got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"expected at least one number, got {text!r}")
    return out


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return v


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if not 0 <= v < 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**63), got {text!r}")
    return v


def add_sweep_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the sweep flags to ``parser`` and set ``func=sweep_main``; returns ``parser``.

    Multi-word flags take sinter's snake_case (``--rounds_factor``) and the dashed
    spelling (``--rounds-factor``).
    """
    a = parser.add_argument
    a("--spec", required=True,
      help="base experiment spec; d and p are replaced, e.g. surface:d=3,p=0.001")
    a("--distances", type=_int_list, default=[3, 5, 7], help="comma-separated (default 3,5,7)")
    a("--ps", type=_float_list, default=[0.001, 0.003, 0.005],
      help="comma-separated physical error rates (default 0.001,0.003,0.005)")
    a("--decoders", default="pymatching,uf",
      help="comma-separated decoder names (default pymatching,uf); the reference always runs")
    a("--shots", type=_positive_int, default=10_000,
      help="shots per point, the same for every decoder (default 10000)")
    a("--seed", type=_seed, default=0, help="sampling seed >= 0 (default 0)")
    a("--rounds_factor", "--rounds-factor", type=_positive_int, default=None,
      help="r = d * ROUNDS_FACTOR (default: the spec's r, or the family default r = d)")
    a("--max_errors", "--max-errors", type=_positive_int, default=None,
      help="stop a point once every decoder has this many failures (shots is the maximum)")
    a("--time_repeats", "--time-repeats", type=_positive_int, default=1,
      help="decode each point's shots this many times and report the fastest pass "
           "(failures counted once; default 1)")
    a("--csv", default="-", help="sinter CSV output path (default '-': stdout)")
    a("--json", default=None, help="write the qecd.bench.sweep/1 JSON report here")
    a("--plot", default=None, metavar="DIR",
      help="write ler_vs_p.png and time_vs_distance.png into this directory")
    parser.set_defaults(func=sweep_main)
    return parser


def add_sweep_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Define the ``sweep`` subcommand (for ``qecd bench``) on an argparse subparsers object."""
    p = subparsers.add_parser(
        "sweep", help="distance x p sweep of LER and decode time; sinter CSV, JSON, PNGs",
        description="Sweep d and p over a base spec; every decoder decodes the same shots at "
                    "each point. Writes sinter-compatible CSV (stdout by default), a JSON "
                    "report and plots.")
    return add_sweep_arguments(p)


def sweep_main(args: argparse.Namespace) -> int:
    """Run the sweep the parsed flags describe; the table goes to stderr when the CSV goes
    to stdout, else to stdout. Returns 0."""
    decoders = [d.strip() for d in args.decoders.split(",") if d.strip()]
    rows = run_sweep(args.spec, distances=args.distances, ps=args.ps, decoders=decoders,
                     shots=args.shots, seed=args.seed, rounds_factor=args.rounds_factor,
                     max_errors=args.max_errors, time_repeats=args.time_repeats)
    to_stdout = args.csv in (None, "-")
    info = sys.stderr if to_stdout else sys.stdout
    write_sinter_csv(rows, sys.stdout if to_stdout else args.csv)
    print(format_sweep(rows), file=info)
    if args.json:
        report = sweep_report(rows, base_spec=args.spec, distances=args.distances, ps=args.ps,
                              decoders=decoders, shots=args.shots, seed=args.seed,
                              rounds_factor=args.rounds_factor, max_errors=args.max_errors,
                              time_repeats=args.time_repeats,
                              command=shlex.join(sys.orig_argv))
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}", file=info)
    if args.plot:
        os.makedirs(args.plot, exist_ok=True)
        for fn, name in ((plot_ler_vs_p, "ler_vs_p.png"),
                         (plot_time_vs_distance, "time_vs_distance.png")):
            print(f"wrote {fn(rows, os.path.join(args.plot, name))}", file=info)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m qecd.bench.sweep [flags]``: the same flags as ``qecd bench sweep``."""
    from qecd.errors import QecdError

    parser = add_sweep_arguments(argparse.ArgumentParser(
        prog="python -m qecd.bench.sweep", description="qecd bench sweep (stand-alone)"))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except QecdError as e:
        print(f"qecd: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
