"""The exit codes of every ``qecd`` command, in one place (README, "Exit codes").

A run that measures budgets exits with the worst outcome: a correctness failure outranks a
missed budget, which outranks a pass. Errors a user can fix (bad arguments, a missing
optional package, an unknown spec) exit 2 with one line on stderr, never a traceback.

>>> int(ExitCode.INCORRECT), ExitCode.worst([ExitCode.OK, ExitCode.BUDGET_MISSED]).name
(3, 'BUDGET_MISSED')
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class ExitCode(enum.IntEnum):
    """Process exit codes of ``qecd``.

    OK
        Ran, and every budget it judged held (or it judged none).
    BUDGET_MISSED
        Ran correctly, but a named budget was not met (service time, reaction time,
        backlog) or a CI gate ratio is over its limit.
    USAGE
        Bad arguments or input, a missing optional package: one line on stderr.
    INCORRECT
        Corrections lost, duplicated or different from the offline decode.
    NO_BASELINE
        ``qecd bench gate``: no baseline for this Python and machine (run
        ``make bench-baseline``).
    BROKEN_PIPE
        The reader of stdout went away (``qecd codes | head -1``): 128 + SIGPIPE, as a
        shell reports a process that SIGPIPE ended.
    """

    OK = 0
    BUDGET_MISSED = 1
    USAGE = 2
    INCORRECT = 3
    NO_BASELINE = 5
    BROKEN_PIPE = 141

    @staticmethod
    def worst(codes: Iterable[int]) -> ExitCode:
        """The most severe of run outcomes: INCORRECT > BUDGET_MISSED > OK."""
        rank = {ExitCode.OK: 0, ExitCode.BUDGET_MISSED: 1, ExitCode.INCORRECT: 2}
        return max((ExitCode(c) for c in codes), key=lambda c: rank.get(c, 3),
                   default=ExitCode.OK)
