"""Optional dependencies: the research tools (sinter, ldpc, Dask) and their install hint.

qecd's service needs only its runtime dependencies. Sweeps, the sinter plugin and the qLDPC
reference need the ``research`` extra; code that needs one of those modules asks
:func:`require` for it, so a missing one is a one-line :class:`MissingExtraError` naming the
install command instead of a traceback (``qecd`` prints it as ``qecd: error: ...``).

Example
-------
>>> require("numpy", purpose="this example").__name__
'numpy'
>>> try:
...     require("qecd_no_such_module", purpose="qecd bench sweep")
... except MissingExtraError as e:
...     print(str(e).split("; ")[1])
install it with: pip install "qecd[research]"
"""

from __future__ import annotations

import importlib
from types import ModuleType

from qecd.errors import QecdError

#: The one install hint for every research tool.
INSTALL_HINT = 'pip install "qecd[research]"'

#: Top-level modules that the ``research`` extra provides (``qecd`` maps a missing one of
#: these to :data:`INSTALL_HINT`).
RESEARCH_MODULES = frozenset({"sinter", "ldpc", "dask", "distributed", "dask_jobqueue",
                              "tqdm", "matplotlib"})


class MissingExtraError(QecdError, ImportError):
    """An optional module that a qecd feature needs is not installed."""


def install_hint(module: str, purpose: str) -> str:
    """The one-line message for a missing ``module`` needed by ``purpose``."""
    return (f"{purpose} needs the Python module {module!r}, which is not installed; "
            f"install it with: {INSTALL_HINT}")


def require(module: str, *, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` with the install hint.

    Parameters
    ----------
    module : str
        Dotted module name, e.g. ``"dask.distributed"``.
    purpose : str
        What needs it, as the user would call it (``"qecd bench sweep"``).

    Returns
    -------
    module
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        missing = (e.name or module).split(".")[0]
        if missing != module.split(".")[0] and missing not in RESEARCH_MODULES:
            raise
        raise MissingExtraError(install_hint(e.name or module, purpose)) from None
