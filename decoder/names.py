"""Decoder names: a backend, optionally with a sliding window, in one token.

``uf`` decodes whole shots with the ``uf`` backend; ``uf-w10c5`` streams with window 10
and commit 5. The same names key sinter rows (``qecd-uf-w10c5``), benchmark reports and
HELLO packets.

>>> parse_decoder_name("bp-cluster-w8c4")
DecoderName(backend='bp-cluster', window=8, commit=4)
>>> str(parse_decoder_name("uf"))
'uf'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qecd.decoder.registry import backend_names
from qecd.errors import DecoderError

_NAME = re.compile(r"^(?P<backend>[a-z][a-z0-9_-]*?)(?:-w(?P<w>\d+)c(?P<c>\d+))?$")


@dataclass(frozen=True)
class DecoderName:
    """A parsed decoder name: backend plus optional window and commit (rounds)."""

    backend: str
    window: int | None = None
    commit: int | None = None

    def __str__(self) -> str:
        if self.window is None:
            return self.backend
        return f"{self.backend}-w{self.window}c{self.commit}"


def parse_decoder_name(name: str) -> DecoderName:
    """Parse ``backend`` or ``backend-w<W>c<C>``; raises DecoderError naming what is allowed."""
    m = _NAME.match(name.strip()) if isinstance(name, str) else None
    allowed = ", ".join(backend_names())
    if m is None or m["backend"] not in backend_names():
        raise DecoderError(
            f"decoder name: expected one of {allowed}, optionally followed by -w<W>c<C> "
            f"(e.g. uf-w10c5), got {name!r}"
        )
    if m["w"] is None:
        return DecoderName(m["backend"])
    w, c = int(m["w"]), int(m["c"])
    if not 1 <= c <= w:
        raise DecoderError(f"decoder name {name!r}: expected 1 <= commit <= window")
    return DecoderName(m["backend"], w, c)
