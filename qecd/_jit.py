"""The one place for Numba compile options, and the check that keeps its on-disk cache honest.

Every kernel module takes its options from here: :data:`KERNEL` for hot-path kernels (cached,
GIL released, no reference counting: they must not allocate), :data:`INLINE` for small helpers
inlined into them, :data:`ALLOCATING` for kernels that may allocate (numpy error model, Numba's
runtime kept).

Numba's ``cache=True`` revalidates a cached function only against its own source file. A
kernel that calls jitted functions of *other* modules (the compiled stream calls union-find;
the ring server calls the ring and the atomics) keeps a copy of their old machine code after
they change. :func:`invalidate_if_changed` fingerprints the dependency files and deletes the
dependent module's cache entries when the fingerprint moves; call it at import time, before
the module's first jitted call.

Example
-------
>>> import os, tempfile
>>> d = tempfile.mkdtemp()
>>> mod, dep = os.path.join(d, "m.py"), os.path.join(d, "dep.py")
>>> _ = open(mod, "w").write("x = 1"); _ = open(dep, "w").write("y = 1")
>>> invalidate_if_changed(mod, [dep])   # first time: records the fingerprint
False
>>> _ = open(dep, "w").write("y = 2")
>>> invalidate_if_changed(mod, [dep])   # dependency changed: stale entries removed
True
>>> invalidate_if_changed(mod, [dep], "pkg.m"), invalidate_if_changed(mod, [dep], "pkg.m")
(True, False)
"""

from __future__ import annotations

import glob
import hashlib
import os

#: hot-path kernels: cached on disk, GIL released, no NRT (no allocation, no refcount updates)
KERNEL: dict = {"cache": True, "nogil": True, "boundscheck": False, "_nrt": False}
#: small helpers of hot-path kernels, inlined into their callers
INLINE: dict = {"inline": "always", **KERNEL}
#: kernels that may allocate (the BP workspaces): numpy error model, NRT kept
ALLOCATING: dict = {"cache": True, "nogil": True, "error_model": "numpy"}
#: plain cached kernels that may allocate but release the GIL (benchmarks, meters)
CACHED: dict = {"cache": True, "nogil": True}


def _fingerprint(paths: list[str]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        try:
            with open(p, "rb") as f:
                h.update(f.read())
        except OSError:
            h.update(b"missing:" + p.encode())
    return h.hexdigest()


def invalidate_if_changed(module_file: str, dependency_files: list[str],
                          module_name: str | None = None) -> bool:
    """Delete ``module_file``'s Numba cache entries if its dependencies changed since the
    last call, or if it is now imported under another ``module_name`` (pass ``__name__``):
    a cached function's environment names its module, so an entry written while the file
    was imported as ``bench.x`` (e.g. ``pytest --doctest-modules bench/x.py``) fails to load
    as ``qecd.bench.x``. Returns True when entries were (or would have been) invalidated."""
    cache_dir = os.path.join(os.path.dirname(os.path.abspath(module_file)), "__pycache__")
    stem = os.path.splitext(os.path.basename(module_file))[0]
    stamp = os.path.join(cache_dir, f"{stem}.qecd-deps")
    now = _fingerprint(dependency_files)
    if module_name:
        now += f" {module_name}"
    try:
        with open(stamp) as f:
            before = f.read().strip()
    except OSError:
        before = None
    if before == now:
        return False
    stale = before is not None
    for path in glob.glob(os.path.join(cache_dir, f"{stem}.*.nb[ic]")):
        try:
            os.remove(path)
        except OSError:
            pass
    try:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{stamp}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(now)
        os.replace(tmp, stamp)
    except OSError:  # a read-only install: nothing is cached there either
        pass
    return stale
