"""Graphs are built whole or not at all; where signals request stops (a node), in a child
process that a stop request ends at once."""

import threading
import time

import numpy as np
import onnxruntime as ort
import pytest
import torch

from semseg_ros.core.backends import (build_graph, graph_metadata, GraphBuildError,
                                      InferenceGraph)
from semseg_ros.core.stopping import (clear_stop_request, request_stop,
                                      set_signals_request_stops, StopRequested)
from semseg_ros.models import create_model

WIDTH, HEIGHT = 64, 48


@pytest.fixture()
def network():
    """An untrained mininet_v2_cpu in eval mode."""
    torch.manual_seed(0)
    return create_model('mininet_v2_cpu', 11).eval()


def _metadata(precision='fp32'):
    return graph_metadata('mininet_v2_cpu', 'test', WIDTH, HEIGHT, precision, 11)


@pytest.mark.parametrize('isolated', [True, False], ids=['in a child', 'in this process'])
def test_the_build_gives_the_graph_the_network_computes(network, tmp_path, isolated):
    """The graph lands at its path, alone in its folder, and labels as the network does."""
    path = build_graph(network, tmp_path / 'g.onnx', WIDTH, HEIGHT, False, _metadata(),
                       isolated=isolated)
    assert [p.name for p in tmp_path.iterdir()] == ['g.onnx']
    image = np.random.default_rng(0).integers(0, 256, (1, HEIGHT, WIDTH, 3), np.uint8)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    labels = session.run(None, {'image': image})[0]
    with torch.no_grad():
        want = InferenceGraph(network, False)(torch.from_numpy(image)).numpy()
    assert labels.shape == want.shape and (labels == want).mean() > 0.999


@pytest.mark.parametrize('isolated', [True, False], ids=['in a child', 'in this process'])
def test_a_failed_build_names_its_error_and_leaves_nothing(network, tmp_path, isolated):
    """The exporter's error comes back in one line; no graph and no work folder stay."""
    with pytest.raises(GraphBuildError,
                       match=r'building the int4 graph failed: ValueError: .*int4'):
        build_graph(network, tmp_path / 'g.onnx', WIDTH, HEIGHT, False, _metadata(), 'int4',
                    isolated=isolated)
    assert list(tmp_path.iterdir()) == []


def test_a_stop_request_ends_the_build_at_once_and_leaves_nothing(network, tmp_path):
    """Where signals request stops, the build runs in a child; asked to stop mid-build, the
    child is killed within a poll period or two."""
    outcome = {}

    def build():
        try:
            build_graph(network, tmp_path / 'g.onnx', WIDTH, HEIGHT, False, _metadata())
            outcome['result'] = 'built'
        except StopRequested:
            outcome['result'] = 'stopped'
            outcome['at'] = time.monotonic()
    thread = threading.Thread(target=build)
    set_signals_request_stops(True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        # The child has started once its log exists in the work folder.
        while not list(tmp_path.glob('*.build/log.txt')) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert list(tmp_path.glob('*.build/log.txt')), 'the build never started'
        time.sleep(1.0)  # inside the child's imports or the export
        asked = time.monotonic()
        request_stop()
        thread.join(30)
    finally:
        set_signals_request_stops(False)
        clear_stop_request()
    assert outcome.get('result') == 'stopped', outcome
    assert outcome['at'] - asked < 2.0
    assert list(tmp_path.iterdir()) == []


def test_a_stop_requested_before_the_build_starts_none(network, tmp_path):
    """A request made earlier (a signal during the model's loading) builds nothing."""
    request_stop()
    try:
        with pytest.raises(StopRequested):
            build_graph(network, tmp_path / 'g.onnx', WIDTH, HEIGHT, False, _metadata())
    finally:
        clear_stop_request()
    assert list(tmp_path.iterdir()) == []
