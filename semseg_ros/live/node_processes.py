"""Helpers for the tools that start nodes as processes (bag replay, the demo, the node bench).

Both build the nodes' ``--ros-args`` from a parameter dict and poll for a condition (a
subscription, a first message) while the nodes come up; they share these two helpers.
"""

import time
from typing import Callable, List, Mapping, Optional


def parameter_arguments(params: Mapping[str, object]) -> List[str]:
    """Return ``-p name:=value`` pairs for ``--ros-args`` (booleans as ROS spells them)."""
    arguments = []
    for name, value in params.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        arguments += ['-p', f'{name}:={text}']
    return arguments


def wait_until(condition: Callable[[], bool], timeout_s: float,
               check: Optional[Callable[[], None]] = None, poll_s: float = 0.05) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout_s`` passes (False).

    Args:
        condition: What to wait for.
        timeout_s: Longest wait.
        check: Called at every poll, e.g. to raise as soon as a node process has died.
        poll_s: Time between polls.
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        if check is not None:
            check()
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True
