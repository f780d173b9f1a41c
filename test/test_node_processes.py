"""Tests of the helpers that start nodes as processes (no ROS needed)."""

import time

import pytest

from semseg_ros.live.node_processes import parameter_arguments, wait_until


def test_parameter_arguments_spell_booleans_as_ros_does():
    args = parameter_arguments({'use_image': False, 'threads': 2, 'model': 'enet'})
    assert args == ['-p', 'use_image:=false', '-p', 'threads:=2', '-p', 'model:=enet']


def test_wait_until_returns_once_the_condition_holds():
    start = time.monotonic()
    calls = []
    assert wait_until(lambda: len(calls) >= 3 or calls.append(1), 10.0, poll_s=0.01)
    assert len(calls) == 3
    assert time.monotonic() - start < 5.0


def test_wait_until_gives_up_after_the_timeout():
    assert not wait_until(lambda: False, 0.05, poll_s=0.01)


def test_wait_until_check_can_stop_the_wait_early():
    def died():
        raise RuntimeError('node died')

    with pytest.raises(RuntimeError, match='node died'):
        wait_until(lambda: False, 10.0, check=died)
