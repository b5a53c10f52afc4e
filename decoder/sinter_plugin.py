"""sinter integration: every qecd backend and window decoder as a ``sinter.Decoder``.

Use from sinter's command line (see README; ``sinter`` is the venv's ``.venv/bin/sinter``)::

    .venv/bin/sinter collect --circuits circuits/*.stim --metadata_func auto \\
        --decoders qecd-uf qecd-uf-w10c5 qecd-pymatching \\
        --custom_decoders_module_function "qecd.decoder.sinter_plugin:sinter_decoders" ...

or from Python: ``sinter.collect(..., custom_decoders=sinter_decoders())``, and the same table
with ``sinter.predict_observables``, ``sinter.predict_on_disk`` and ``sinter.predict_discards_*``.

A name is ``qecd-<decoder name>`` (:mod:`qecd.decoder.registry`): ``qecd-uf`` decodes whole shots
with the ``uf`` backend, ``qecd-uf-w10c5`` streams each shot round by round through sliding
windows of 10 rounds committing 5. The parameters are in the name because sinter keys its
rows by name. Each :class:`QecdSinterDecoder` is a real ``sinter.Decoder``: it compiles once
per DEM (:meth:`~QecdSinterDecoder.compile_decoder_for_dem`, the bit-packed batch path sinter
prefers) and also decodes through b8 files (:meth:`~QecdSinterDecoder.decode_via_files`, the
path of sinter's ``predict_on_disk`` and streaming-to-disk). Decoders pickle (they hold only
their name) and compile in the worker.

Which names the table answers for (:func:`sinter_decoders`):

- **lookups** (``name in table``, ``table[name]``, ``table.get(name)``): every valid
  ``qecd-<backend>`` and ``qecd-<backend>-w<W>c<C>`` (``1 <= C <= W``), built on first use;
- **listed keys**, which are all a plain-dict copy (``dict(table)``, ``{**table}``, what
  sinter's command line makes of it) keeps: every backend, every window name with
  ``W <= WINDOW_GRID_MAX`` (32 rounds: ``W = 2d`` up to d = 16), and any ``qecd-*`` name
  given to the running ``sinter collect --decoders`` (so the command line takes every valid
  name, and its "Available custom decoders" message stays short: under ``sinter collect``
  the table lists the backends and those names only).

Refused by design, with a :class:`~qecd.errors.DecoderError` naming the decoder: window
decoders need every detector to carry a time coordinate (stim's generated circuits do); graph
backends (``pymatching``, ``uf``) need graph-like errors (``decompose_errors=True``). A DEM with
no detectors or no observables needs no decoder: every name predicts no flips for it.

Example
-------
>>> import numpy as np, sinter, stim
>>> decs = sinter_decoders()
>>> 'qecd-uf-w10c5' in decs, decs.get('qecd-uf-w90c45') is not None, 'qecd-nonsense' in decs
(True, True, False)
>>> isinstance(decs['qecd-pymatching'], sinter.Decoder), 'qecd-uf-w10c5' in dict(decs)
(True, True)
>>> c = stim.Circuit.generated("repetition_code:memory", distance=3, rounds=3,
...                            after_clifford_depolarization=0.02)
>>> compiled = decs['qecd-pymatching'].compile_decoder_for_dem(
...     dem=c.detector_error_model(decompose_errors=True))
>>> compiled.decode_shots_bit_packed(
...     bit_packed_detection_event_data=np.zeros((2, 1), dtype=np.uint8)).tolist()
[[0], [0]]
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Iterable

import numpy as np
import stim

from qecd.decoder.registry import DecoderName, backend_names, build_decoder, parse_decoder_name
from qecd.errors import DecoderError, DemError
from qecd.extras import require

sinter = require("sinter", purpose="qecd's sinter decoders (qecd.decoder.sinter_plugin)")

#: Every qecd decoder's sinter name is this prefix plus its qecd decoder name.
PREFIX = "qecd-"
#: Window names with ``W <= WINDOW_GRID_MAX`` (every ``1 <= C <= W``) are listed keys of
#: :func:`sinter_decoders`, so that plain-dict copies of the table keep them.
WINDOW_GRID_MAX = 32
#: Shots decoded per batch on the file path (bounds memory for sinter's large batches).
FILE_CHUNK_SHOTS = 1 << 14


class _NoFlips:
    """The decoder of a DEM with no detectors or no observables: predicts no flips."""

    def __init__(self, num_observables: int) -> None:
        self.num_observables = num_observables

    def decode_batch_packed(self, packed: np.ndarray) -> np.ndarray:
        return np.zeros((packed.shape[0], (self.num_observables + 7) // 8), dtype=np.uint8)


class QecdCompiledDecoder(sinter.CompiledDecoder):
    """One qecd decoder compiled for one DEM (what ``compile_decoder_for_dem`` returns)."""

    def __init__(self, name: str, decoder: object, num_detectors: int,
                 num_observables: int) -> None:
        self.name = name
        self._decoder = decoder
        self.num_detectors = num_detectors
        self.num_observables = num_observables

    def decode_shots_bit_packed(self, *, bit_packed_detection_event_data: np.ndarray
                                ) -> np.ndarray:
        """Predict observable flips of bit-packed shots.

        Parameters
        ----------
        bit_packed_detection_event_data : numpy.ndarray
            uint8, shape ``(shots, ceil(num_detectors / 8))``, little bit order (stim's b8).

        Returns
        -------
        numpy.ndarray
            uint8, shape ``(shots, ceil(num_observables / 8))``, little bit order.
        """
        data = np.asarray(bit_packed_detection_event_data)
        nbytes = (self.num_detectors + 7) // 8
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != nbytes:
            raise DecoderError(
                f"{self.name}: bit_packed_detection_event_data: expected uint8 of shape "
                f"(shots, {nbytes}) for {self.num_detectors} detectors, got {data.dtype} "
                f"of shape {data.shape}")
        return self._decoder.decode_batch_packed(data)


class QecdSinterDecoder(sinter.Decoder):
    """The ``sinter.Decoder`` of one qecd decoder name (``uf``, ``pymatching-w10c5``, ...).

    Parameters
    ----------
    name : str or DecoderName
        A qecd decoder name, without or with the ``qecd-`` prefix.

    Examples
    --------
    >>> d = QecdSinterDecoder("qecd-uf-w4c2")
    >>> d, d.sinter_name
    (QecdSinterDecoder('uf-w4c2'), 'qecd-uf-w4c2')
    """

    def __init__(self, name: str | DecoderName) -> None:
        if isinstance(name, DecoderName):
            self.name = name
        else:
            text = str(name)
            self.name = parse_decoder_name(text[len(PREFIX):] if text.startswith(PREFIX)
                                           else text)

    @property
    def sinter_name(self) -> str:
        """The name sinter knows this decoder by (``qecd-<name>``)."""
        return PREFIX + str(self.name)

    def compile_decoder_for_dem(self, *, dem: stim.DetectorErrorModel) -> QecdCompiledDecoder:
        """Build this decoder for ``dem`` (once per task; see :class:`QecdCompiledDecoder`).

        Raises
        ------
        DecoderError
            A window decoder given detectors without time coordinates, or a graph backend
            given errors with more than two detectors (decompose them).
        """
        nd, no = dem.num_detectors, dem.num_observables
        if nd == 0 or no == 0:
            return QecdCompiledDecoder(self.sinter_name, _NoFlips(no), nd, no)
        layout = None
        if self.name.window is not None:
            from qecd.codes.layout import RoundLayout

            try:
                layout = RoundLayout.from_dem(dem)
            except DemError as e:
                raise DecoderError(
                    f"{self.sinter_name}: sliding windows need every detector to carry a time "
                    f"coordinate (its last coordinate is its round): {e}. Use the whole-shot "
                    f"decoder {PREFIX}{self.name.backend} for this DEM") from None
        try:
            dec = build_decoder(self.name, dem, layout)
        except DemError as e:
            raise DecoderError(f"{self.sinter_name}: cannot decode this DEM: {e}") from None
        return QecdCompiledDecoder(self.sinter_name, dec, nd, no)

    def decode_via_files(self, *, num_shots: int, num_dets: int, num_obs: int,
                         dem_path: pathlib.Path, dets_b8_in_path: pathlib.Path,
                         obs_predictions_b8_out_path: pathlib.Path,
                         tmp_dir: pathlib.Path) -> None:
        """Decode b8 detection events from a file into b8 predictions (sinter's disk path).

        Reads ``num_shots`` shots of ``ceil(num_dets / 8)`` bytes from ``dets_b8_in_path``
        (a file or a named pipe) in batches of :data:`FILE_CHUNK_SHOTS`, and writes
        ``ceil(num_obs / 8)`` bytes per shot to ``obs_predictions_b8_out_path``. Nothing is
        written to ``tmp_dir``.

        Raises
        ------
        DecoderError
            The DEM's sizes differ from ``num_dets``/``num_obs``, or the input ends early.
        """
        dem = stim.DetectorErrorModel.from_file(dem_path)
        if (dem.num_detectors, dem.num_observables) != (num_dets, num_obs):
            raise DecoderError(
                f"{self.sinter_name}: num_dets/num_obs: expected the DEM's "
                f"{dem.num_detectors}/{dem.num_observables}, got {num_dets}/{num_obs}")
        compiled = self.compile_decoder_for_dem(dem=dem)
        det_bytes = (num_dets + 7) // 8
        with open(dets_b8_in_path, "rb") as fin, open(obs_predictions_b8_out_path, "wb") as fout:
            done = 0
            while done < num_shots:
                n = min(FILE_CHUNK_SHOTS, num_shots - done)
                raw = _read_exactly(fin, n * det_bytes)
                if len(raw) != n * det_bytes:
                    raise DecoderError(
                        f"{self.sinter_name}: {dets_b8_in_path}: expected {num_shots} shots of "
                        f"{det_bytes} bytes ({num_shots * det_bytes} bytes), the input ended "
                        f"after {done * det_bytes + len(raw)} bytes")
                dets = np.frombuffer(raw, dtype=np.uint8).reshape(n, det_bytes)
                compiled.decode_shots_bit_packed(
                    bit_packed_detection_event_data=dets).astype(np.uint8).tofile(fout)
                done += n

    def __reduce__(self) -> tuple:
        return (QecdSinterDecoder, (str(self.name),))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, QecdSinterDecoder) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("QecdSinterDecoder", self.name))

    def __repr__(self) -> str:
        return f"QecdSinterDecoder({str(self.name)!r})"


def _read_exactly(f, n: int) -> bytes:
    """Up to ``n`` bytes, fewer only at end of input (pipes return short reads)."""
    parts, got = [], 0
    while got < n:
        b = f.read(n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


class SinterDecoderTable(dict):
    """``{sinter name: QecdSinterDecoder}`` that also answers for every valid ``qecd-*``
    name through ``in``, ``[]`` and ``get`` (built and kept on first lookup)."""

    @staticmethod
    def _make(key: object) -> QecdSinterDecoder | None:
        if not isinstance(key, str) or not key.startswith(PREFIX):
            return None
        try:
            return QecdSinterDecoder(key[len(PREFIX):])
        except DecoderError:
            return None

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or self._make(key) is not None

    def __missing__(self, key: str) -> QecdSinterDecoder:
        dec = self._make(key)
        if dec is None:
            raise KeyError(key)
        self[key] = dec
        return dec

    def get(self, key: object, default: object = None) -> object:
        try:
            return self[key]
        except KeyError:
            return default

    def __reduce__(self) -> tuple:
        return (SinterDecoderTable, (dict(self),))


def _window_grid(max_window: int) -> list[DecoderName]:
    return [DecoderName(b, w, c) for b in backend_names()
            for w in range(1, max_window + 1) for c in range(1, w + 1)]


def window_grid_names(max_window: int = WINDOW_GRID_MAX) -> list[str]:
    """Every ``qecd-<backend>-w<W>c<C>`` with ``1 <= C <= W <= max_window``.

    >>> names = window_grid_names(2)
    >>> [n for n in names if n.startswith("qecd-uf-w")]
    ['qecd-uf-w1c1', 'qecd-uf-w2c1', 'qecd-uf-w2c2']
    """
    return [PREFIX + str(n) for n in _window_grid(max_window)]


def _sinter_collect_decoder_names(argv: list[str]) -> list[str] | None:
    """The ``qecd-*`` names on a ``sinter collect`` command line's ``--decoders``, or None
    when ``argv`` is not such a command line."""
    argv0 = argv[0] if argv else ""
    is_sinter = (os.path.basename(argv0) == "sinter"
                 or argv0.endswith(os.path.join("sinter", "__main__.py")))
    if not (is_sinter and len(argv) > 1 and argv[1] == "collect"):
        return None
    names, taking = [], False
    for tok in argv[2:]:
        if tok.startswith("--"):
            taking = tok == "--decoders"
        elif taking and tok.startswith(PREFIX):
            names.append(tok)
    return names


def sinter_decoders(names: Iterable[str] = ()) -> SinterDecoderTable:
    """The entry point for ``--custom_decoders_module_function`` and ``custom_decoders=``.

    Parameters
    ----------
    names : iterable of str, optional
        Further ``qecd-*`` names to list as keys (any valid name is answered on lookup
        anyway; listing matters only for plain-dict copies of the table).

    Returns
    -------
    SinterDecoderTable
        Keys: every backend (``qecd-pymatching``, ``qecd-uf``, ``qecd-bp-cluster``), every
        window name up to :data:`WINDOW_GRID_MAX` rounds and ``names``. Under
        ``sinter collect`` the keys are the backends and the ``qecd-*`` names on its
        ``--decoders`` (sinter copies the table into a plain dict and lists every key when
        a name is unknown).

    Raises
    ------
    DecoderError
        A name in ``names``, or a ``qecd-*`` name on ``sinter collect``'s ``--decoders``, is
        not a valid qecd decoder name (the reason says why, e.g. ``expected 1 <= commit <=
        window``).

    Examples
    --------
    >>> t = sinter_decoders(["qecd-uf-w100c50"])
    >>> "qecd-uf-w100c50" in {**t}, "qecd-uf-w32c1" in {**t}, "qecd-uf-w33c1" in {**t}
    (True, True, False)
    """
    table = SinterDecoderTable()
    for backend in backend_names():
        table[PREFIX + backend] = QecdSinterDecoder(DecoderName(backend))
    on_cli = _sinter_collect_decoder_names(sys.argv)
    for dn in _window_grid(WINDOW_GRID_MAX) if on_cli is None else []:
        table[PREFIX + str(dn)] = QecdSinterDecoder(dn)
    for name in on_cli or []:  # a malformed name fails here with qecd's reason (sinter's
        try:                   # own message would ask whether custom_decoders was given)
            table[name] = QecdSinterDecoder(name[len(PREFIX):])
        except DecoderError as e:
            raise DecoderError(f"sinter collect --decoders {name}: {e}") from None
    for name in names:
        if not str(name).startswith(PREFIX):
            raise DecoderError(f"names: expected qecd-<decoder name>, got {name!r}")
        table[name] = QecdSinterDecoder(name)
    return table

