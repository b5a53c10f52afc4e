"""sinter integration: every qecd backend and window decoder as a sinter custom decoder.

Use from the command line::

    sinter collect --circuits c.stim --decoders qecd-uf qecd-pymatching-w10c5 \\
        --custom_decoders_module_function "qecd.decoder.sinter_plugin:sinter_decoders" ...

``sinter_decoders()`` answers for every name ``qecd-<decoder name>`` (see
:mod:`qecd.decoder.names`), building the decoder object on first lookup; the parameters are
in the name because sinter keys its rows by name. Decoders pickle (they hold only names) and
compile per DEM in the worker. Window decoders need detector time coordinates in the DEM
(stim's generated circuits have them). sinter itself is not imported.

Example
-------
>>> import numpy as np, stim
>>> decs = sinter_decoders()
>>> 'qecd-uf-w10c5' in decs, 'qecd-nonsense' in decs
(True, False)
>>> c = stim.Circuit.generated("repetition_code:memory", distance=3, rounds=3,
...                            after_clifford_depolarization=0.02)
>>> compiled = decs['qecd-pymatching'].compile_decoder_for_dem(
...     dem=c.detector_error_model(decompose_errors=True))
>>> compiled.decode_shots_bit_packed(
...     bit_packed_detection_event_data=np.zeros((2, 1), dtype=np.uint8)).tolist()
[[0], [0]]
"""

from __future__ import annotations

import numpy as np
import stim

from qecd.decoder.registry import DecoderName, backend_names, build_decoder, parse_decoder_name
from qecd.errors import DecoderError

PREFIX = "qecd-"


class _CompiledQecdDecoder:
    def __init__(self, decoder) -> None:
        self._decoder = decoder

    def decode_shots_bit_packed(self, *, bit_packed_detection_event_data: np.ndarray) -> np.ndarray:
        data = np.asarray(bit_packed_detection_event_data, dtype=np.uint8)
        return self._decoder.decode_batch_packed(data)


class QecdSinterDecoder:
    """A sinter decoder for one qecd decoder name (``uf``, ``pymatching-w10c5``, ...)."""

    def __init__(self, name: str | DecoderName) -> None:
        self.name = parse_decoder_name(str(name))

    def compile_decoder_for_dem(self, *, dem: stim.DetectorErrorModel) -> _CompiledQecdDecoder:
        return _CompiledQecdDecoder(build_decoder(self.name, dem))

    def __repr__(self) -> str:
        return f"QecdSinterDecoder({str(self.name)!r})"


class _DecoderTable(dict):
    """A dict that also answers for any valid ``qecd-<name>`` key, built on first use."""

    def _make(self, key: object) -> QecdSinterDecoder | None:
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


def sinter_decoders() -> dict[str, QecdSinterDecoder]:
    """The entry point for ``--custom_decoders_module_function``.

    Lists ``qecd-pymatching``, ``qecd-uf`` and ``qecd-bp-cluster`` and answers for any
    ``qecd-<backend>-w<W>c<C>`` on lookup.
    """
    table = _DecoderTable()
    for backend in backend_names():
        table[PREFIX + backend] = QecdSinterDecoder(backend)
    return table
