"""Python's garbage collector, kept off the serving path.

CPython's cyclic collector runs when enough container objects were allocated, wherever the
allocation happens: under a fuzz (streams opening and closing, plans arriving, ERROR replies)
the loop paused for 4-10 ms in young-generation collections and 56-200 ms in full ones,
several times a minute (a ``gc.callbacks`` probe in the server during
``qecd bench hostile fuzz``).

While a server serves, :class:`GcPauses` turns automatic collection off and runs it from the
loop's housekeeping instead:

- **young collections** (generations 0 and 1) once ``young_objects`` container objects
  accumulated, each followed by :func:`gc.freeze`: what survived is moved out of the
  collector's sight, so no later collection scans it again (each young collection scans only
  what was allocated since the previous one: ~1 ms);
- **a full collection** (unfreeze, collect everything, freeze again) at most every
  ``full_every_s`` and only when the loop was idle for a whole housekeeping interval (no
  packet). Reference cycles among objects that were still alive at a young collection (and
  so frozen) are reclaimed only then; the server's own objects are freed by reference counts
  as before, so what waits is cyclic garbage alone.

>>> import gc
>>> g = GcPauses(young_objects=10)
>>> g.start(); gc.isenabled()
False
>>> junk = [[] for _ in range(50)]; g.tick(idle=False); g.young_collections
1
>>> g.stop(); gc.isenabled()
True
"""

from __future__ import annotations

import gc
import time

__all__ = ["GcPauses"]


class GcPauses:
    """Collections at the loop's housekeeping, not at allocation (see module docs).

    Parameters
    ----------
    young_objects : int
        Container objects allocated (net) since the last young collection that trigger the
        next one.
    full_every_s : float
        Least time between two full collections (each also waits for an idle interval).
    """

    def __init__(self, young_objects: int = 20_000, full_every_s: float = 300.0) -> None:
        self.young_objects = int(young_objects)
        self.full_every_s = float(full_every_s)
        self.young_collections = 0  #: young collections run
        self.full_collections = 0  #: full collections run
        self.last_full_ms = 0.0  #: how long the last full collection took
        self._was_enabled = True
        self._last_full = time.monotonic()

    def start(self) -> None:
        """Stop automatic collection (the server starts serving)."""
        self._was_enabled = gc.isenabled()
        gc.collect()
        gc.freeze()
        gc.disable()
        self._last_full = time.monotonic()

    def tick(self, idle: bool) -> None:
        """The loop's housekeeping: a young collection if due, a full one if due and
        ``idle`` (no packet since the previous tick)."""
        if gc.get_count()[0] >= self.young_objects:
            gc.collect(1)
            gc.freeze()
            self.young_collections += 1
        if idle and time.monotonic() - self._last_full >= self.full_every_s:
            t = time.perf_counter()
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self.full_collections += 1
            self.last_full_ms = (time.perf_counter() - t) * 1e3
            self._last_full = time.monotonic()

    def stop(self) -> None:
        """Automatic collection as before :meth:`start` (the server stopped serving)."""
        gc.unfreeze()
        if self._was_enabled:
            gc.enable()
