"""A process-wide request to stop, honoured only where stopping is safe.

A node's signal handler used to raise an exception at whatever Python line the main thread
was running. During the first start that is usually inside the ONNX exporter, and an
exception there can land halfway through one of torch's lazy imports: the half-imported
module stays behind, the exporter fails later with an unrelated AttributeError ("module
'torch._dynamo' has no attribute 'exc'"), and the node reported a fatal model error (exit
2) for a plain Ctrl-C, or left state behind that crashed the interpreter at exit (SIGSEGV).
Now a signal only calls :func:`request_stop`; long work checks :func:`stop_requested` at
points of its own (the graph build runs in a child process, waited for here) and ends with
:class:`StopRequested`, which unwinds only through the package's code.
"""

import threading

_REQUESTED = threading.Event()
# Set while signal handlers turn signals into stop requests (a node's StopOnSignal).
_SIGNALS_REQUEST_STOPS = threading.Event()


class StopRequested(BaseException):
    """Long work ended early because the process was asked to stop (not an error).

    A ``BaseException``, so that ``except Exception`` handlers that report failures let it
    pass.
    """


def request_stop() -> None:
    """Ask every long piece of work in this process to end at its next safe point."""
    _REQUESTED.set()


def clear_stop_request() -> None:
    """Withdraw the request (its asker is done: e.g. a node's handlers were uninstalled)."""
    _REQUESTED.clear()


def stop_requested() -> bool:
    """Whether :func:`request_stop` was called."""
    return _REQUESTED.is_set()


def raise_if_stop_requested() -> None:
    """Raise :class:`StopRequested` if a stop was requested."""
    if _REQUESTED.is_set():
        raise StopRequested()


def set_signals_request_stops(active: bool) -> None:
    """Say whether this process's signal handlers now request stops instead of raising.

    Long work that cannot check for a stop itself (a graph build deep in torch's exporter)
    then runs where a stop can end it: in a child process.
    """
    if active:
        _SIGNALS_REQUEST_STOPS.set()
    else:
        _SIGNALS_REQUEST_STOPS.clear()


def signals_request_stops() -> bool:
    """Whether signals request stops here (else a Ctrl-C raises KeyboardInterrupt as usual)."""
    return _SIGNALS_REQUEST_STOPS.is_set()
