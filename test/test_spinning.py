"""Signal handling of the node processes: a signal only sets a flag, handlers come back."""

import os
import signal

import time

import pytest
import rclpy
from std_msgs.msg import String

from semseg_ros.nodes.spinning import fastest_executor, StopOnSignal


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_signal_sets_the_flag_instead_of_interrupting(sig):
    """Inside StopOnSignal a SIGINT/SIGTERM raises nothing; outside, the old handler is back."""
    before = signal.getsignal(sig)
    with StopOnSignal() as stop:
        assert not stop.stopped.is_set()
        os.kill(os.getpid(), sig)  # delivered to this (main) thread before kill returns
        for _ in range(1000):  # the handler runs at the next bytecode boundary
            if stop.stopped.is_set():
                break
        assert stop.stopped.is_set()
    assert signal.getsignal(sig) is before


def test_fastest_executor_serves_subscriptions_and_timers():
    """The nodes' executor delivers a message and fires a timer, spun as run_nodes spins it."""
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node('fastest_executor_probe', context=context)
        received, fired = [], []
        node.create_subscription(String, 'fastest_executor_topic', received.append, 10)
        publisher = node.create_publisher(String, 'fastest_executor_topic', 10)
        node.create_timer(0.05, lambda: fired.append(True))
        executor = fastest_executor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + 10
        while not (received and fired) and time.monotonic() < deadline:
            publisher.publish(String(data='frame'))
            executor.spin_once(timeout_sec=0.1)
        assert [msg.data for msg in received[:1]] == ['frame'] and fired
        executor.shutdown()
        node.destroy_node()
    finally:
        context.try_shutdown()
