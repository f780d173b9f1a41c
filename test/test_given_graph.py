"""A graph given as onnx_path must be the configured network's: model, input size, classes.

Graphs are really exported (untrained networks, small sizes); the Segmenter and the node
refuse any mismatch in one line.
"""

import pytest

from ros_testing import NodeProcess
from semseg_ros.core.backends import export_inference_graph, graph_metadata
from semseg_ros.core.segmenter import Segmenter, SegmenterConfig
from semseg_ros.export.onnx_export import save_onnx
from semseg_ros.models import create_model

MODEL = 'mininet_v2_cpu'


def export(folder, model=MODEL, num_classes=11, size=(64, 64)):
    """Export an untrained deploy graph as `semseg export` does; return its path."""
    path = folder / f'{model}_{num_classes}_{size[0]}x{size[1]}.onnx'
    network = create_model(model, num_classes=num_classes).eval()
    return export_inference_graph(network, path, *size, False, graph_metadata(
        model, 'untrained', *size, 'fp32', num_classes))


@pytest.fixture(scope='module')
def graphs(tmp_path_factory):
    """The right graph, and graphs of another size, class count and model, and one unlabelled."""
    import onnx
    folder = tmp_path_factory.mktemp('given_graphs')
    right = export(folder)
    unlabelled = folder / 'unlabelled.onnx'
    save_onnx(onnx.load(str(right)), unlabelled, metadata={})
    return {'right': right, 'size': export(folder, size=(128, 64)),
            'classes': export(folder, num_classes=19), 'model': export(folder, model='enet'),
            'unlabelled': unlabelled}


def make(onnx_path):
    """A Segmenter configured for MODEL, 11 CamVid classes, 64x64, given ``onnx_path``."""
    return Segmenter(SegmenterConfig(model=MODEL, weights='none', input_width=64,
                                     input_height=64, threads=1, onnx_path=str(onnx_path)))


@pytest.mark.parametrize('kind,expected', [
    ('size', 'input size 128x64 (configured: 64x64)'),
    ('classes', 'classes 19 (configured: 11)'),
    ('model', 'model enet (configured: mininet_v2_cpu)'),
    ('unlabelled', 'does not record its model, input size, classes'),
])
def test_a_graph_for_another_configuration_is_refused(graphs, kind, expected):
    """Each mismatch named, with the command that exports a fitting graph."""
    with pytest.raises(ValueError) as refused:
        make(graphs[kind])
    message = str(refused.value)
    assert expected in message and str(graphs[kind]) in message
    assert 'semseg export --model mininet_v2_cpu --size 64x64' in message
    assert '\n' not in message


def test_the_right_graph_runs(graphs):
    """The graph exported for the configuration is taken as it is."""
    import numpy as np
    labels = make(graphs['right']).segment(np.zeros((48, 80, 3), np.uint8)).labels
    assert labels.shape == (48, 80) and labels.max() < 11


def test_the_node_refuses_it_in_one_line_and_exits_2(graphs, tmp_path):
    """A 19-class graph under the 11-class configuration: one fatal line, exit code 2."""
    node = NodeProcess(tmp_path, 'classes', [
        '-p', 'weights:=none', '-p', 'input_width:=64', '-p', 'input_height:=64',
        '-p', f'onnx_path:={graphs["classes"]}'])
    code = node.wait_exit()
    log = node.log()
    fatal = [line for line in log.splitlines() if '[FATAL]' in line]
    assert code == 2 and len(fatal) == 1, log
    assert 'classes 19 (configured: 11)' in fatal[0] and 'Traceback' not in log
