"""A graph given as onnx_path must be the configured network's: model, input size, classes.

Graphs are really exported (untrained networks, small sizes, by the Segmenter into the test
run's graph cache, where other tests' graphs of the same configuration are shared); the
Segmenter and the node refuse any mismatch in one line.
"""

import pytest

from ros_testing import NodeProcess
from semseg_ros.core.segmenter import Segmenter, SegmenterConfig
from semseg_ros.export.onnx_export import save_onnx

MODEL = 'mininet_v2_cpu'


def export(model=MODEL, class_set='camvid', size=(64, 64)):
    """Return the untrained deploy graph (labels only) of a configuration, built once."""
    segmenter = Segmenter(SegmenterConfig(model=model, weights='none', class_set=class_set,
                                          input_width=size[0], input_height=size[1],
                                          backend='onnxruntime', threads=1))
    return segmenter.backend._graphs.path(False)


@pytest.fixture(scope='module')
def graphs(tmp_path_factory):
    """The right graph, and graphs of another size, class count and model, and one unlabelled."""
    import onnx
    folder = tmp_path_factory.mktemp('given_graphs')
    right = export()
    unlabelled = folder / 'unlabelled.onnx'
    save_onnx(onnx.load(str(right)), unlabelled, metadata={})
    return {'right': right, 'size': export(size=(128, 64)),
            'classes': export(class_set='cityscapes'), 'model': export(model='rds_net'),
            'unlabelled': unlabelled}


def make(onnx_path):
    """A Segmenter configured for MODEL, 11 CamVid classes, 64x64, given ``onnx_path``."""
    return Segmenter(SegmenterConfig(model=MODEL, weights='none', input_width=64,
                                     input_height=64, threads=1, onnx_path=str(onnx_path)))


@pytest.mark.parametrize('kind,expected', [
    ('size', 'input size 128x64 (configured: 64x64)'),
    ('classes', 'classes 19 (configured: 11)'),
    ('model', 'model rds_net (configured: mininet_v2_cpu)'),
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
