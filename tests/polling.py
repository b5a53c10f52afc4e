"""Polling for a condition that another thread or process makes true (shared by the tests)."""

import time


def wait_for(cond, timeout_s: float = 10.0, poll_s: float = 0.02) -> bool:
    """Poll ``cond()`` every ``poll_s`` until it is true or ``timeout_s`` passed; returns its
    last value, so ``assert wait_for(...)`` fails only when the condition never held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(poll_s)
    return bool(cond())
