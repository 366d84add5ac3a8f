"""Stopping a long command (`course grade`) with Ctrl-C or SIGTERM, reliably.

SIGTERM (`kill`, `timeout`, a scheduler or a CI job that ends) counts as Ctrl-C: both raise
KeyboardInterrupt in the main thread, and the command records what finished and exits 130.

Two corners of CPython make a bare "raise KeyboardInterrupt from the handler" unreliable, and
this module covers both:

* Python runs a signal handler at the next bytecode of the main thread. When that bytecode is in
  a weakref callback or a `__del__` (imports run such callbacks), the exception is printed as
  "Exception ignored in ..." and lost: the command would go on as if never stopped. So the handler
  also *remembers* the stop, and `raise_if_stopped()`, called at safe points, raises it again.
* When the KeyboardInterrupt passes out of code run by `exec`/`eval` of a string (dataclasses and
  namedtuples build their methods that way while modules import), CPython sets a process-wide
  "unhandled KeyboardInterrupt" flag that catching the exception later does not clear; at exit,
  `python -m ...` then kills itself with SIGINT (status -2) instead of the 130 the CLI returned.
  `forget_caught_interrupt()` clears that flag once the CLI has handled the interruption.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_stopped = False


def _stop(signum, frame) -> None:
    global _stopped
    _stopped = True
    raise KeyboardInterrupt


def install() -> None:
    """From now on SIGTERM stops the command as Ctrl-C does, and either is remembered. Main thread
    only (elsewhere Python refuses handlers: nothing changes). A SIGINT that the parent ignores (a
    background job of a non-interactive shell) stays ignored, as Python itself leaves it."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, _stop)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _stop)


@contextlib.contextmanager
def installed():
    """`install()` for the time of a `with` block (a run in a process that goes on, as in the tests);
    the handlers before it come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    if before[signal.SIGTERM] is not _stop:       # nobody listened before: a stop from an earlier run is old
        reset()
    install()
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def stopped() -> bool:
    """Whether Ctrl-C or SIGTERM arrived since the handlers were installed (or `reset()`)."""
    return _stopped


def raise_if_stopped() -> None:
    """Raise the KeyboardInterrupt again when a stop arrived but its exception was lost."""
    if _stopped:
        raise KeyboardInterrupt


def reset() -> None:
    """Forget a stop (a caller that has handled it and goes on, like the tests)."""
    global _stopped
    _stopped = False


def forget_caught_interrupt() -> None:
    """Clear CPython's "unhandled KeyboardInterrupt" flag (see the module's docstring): the CLI
    caught the interruption and chose its exit status, 130. There is no public API for the flag;
    the interpreter resets it each time it starts running code compiled from a string, so running
    an empty one does it. tests/test_cli.py checks that `python -m autograde.cli` then exits 130."""
    exec("None", {})
