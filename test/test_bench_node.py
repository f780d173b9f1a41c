"""``semseg bench --node``: the node as its own process, timed in turns with the Segmenter alone.

Only that the benchmark runs and reports consistent figures is tested here; the figures
themselves are measured with it on a quiet machine (README), never asserted.
"""

import json
import os

import pytest

from semseg_ros import cli

SMALL = ['--model', 'mininet_v2_cpu', '--weights', 'none', '--backend', 'torch',
         '--size', '128x64', '--camera', '160x120', '--threads', '1']


def test_node_bench_reports_both_measurements(tmp_path, capsys):
    """Frames go through a real node process; JSON and the printed lines agree."""
    out = tmp_path / 'node.json'
    profile_before = os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE')
    code = cli.main(['bench', '--node', *SMALL, '--frames', '16', '--warmup', '4',
                     '--rate', '8', '--json', str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    record = json.loads(out.read_text())
    node, segmenter = record['node'], record['segmenter']
    assert record['config']['rate_hz'] == 8 and record['config']['camera_width'] == 160
    assert node['counted'] == 12 and 1 <= node['served'] <= 12
    assert 0 < segmenter['median_ms'] <= segmenter['p95_ms']
    assert 0 < node['median_ms'] <= node['p95_ms']
    assert record['node_over_segmenter'] == pytest.approx(
        node['median_ms'] / segmenter['median_ms'], rel=1e-2)
    # The Segmenter was timed between the node's frames (one call a counted frame) and back
    # to back; the transport echo answered the same camera.
    assert 0 < record['segmenter_back_to_back']['median_ms']
    transport = record['transport']
    assert transport['counted'] == 12 and 1 <= transport['served'] <= 12
    assert 0 < transport['median_ms'] <= transport['p95_ms']
    assert record['transport_over_segmenter'] == pytest.approx(
        transport['median_ms'] / segmenter['median_ms'], rel=1e-2)
    assert f'transport floor   median {transport["median_ms"]:.2f} ms' in printed.out
    assert 'machine' in record and record['providers']
    assert f'node served {node["served"]}/12 counted frames' in printed.out
    assert 'end-to-end / Segmenter median' in printed.out
    # Best effort over the package's Fast DDS profile, set for the benchmark's participants only.
    assert record['config']['reliable'] is False
    assert 'Fast DDS profile' in printed.out and 'fastdds_large_images.xml' in printed.out
    assert os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE') == profile_before


def test_node_bench_names_bad_weights_before_starting_a_node(tmp_path, capsys):
    """A weights file that does not exist is named; exit code 1, nothing written."""
    out = tmp_path / 'node.json'
    code = cli.main(['bench', '--node', '--weights', str(tmp_path / 'missing.pt'),
                     '--json', str(out)])
    assert code == 1
    assert 'missing.pt' in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize('argv, message', [
    (['--frames', '5', '--warmup', '5'], '--frames must exceed --warmup'),
    (['--backend', 'torch', '--precision', 'int8'], 'onnxruntime or openvino backend only'),
    (['--size', '100x60'], 'multiples of 8'),
    (['--image', '/no/such/frame.png'], '/no/such/frame.png: not a readable image'),
])
def test_node_bench_refuses_bad_options(argv, message, capsys):
    """Bad options stop it with exit code 2 and a message naming the problem."""
    with pytest.raises(SystemExit) as stopped:
        cli.main(['bench', '--node', *argv])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_node_that_fails_to_start_is_reported_with_its_output():
    """A node refusing its parameters ends the benchmark with the node's own FATAL line."""
    from semseg_ros.core.segmenter import SegmenterConfig
    from semseg_ros.live.node_bench import gradient_frame, NodeBenchConfig, time_node

    class BadConfig(NodeBenchConfig):
        def node_arguments(self):
            return super().node_arguments() + ['-p', 'overlay_alpha:=5.0']

    config = BadConfig(SegmenterConfig(weights='none', backend='torch', input_width=128,
                                       input_height=64), rate_hz=5, frames=4, warmup=1)
    with pytest.raises(RuntimeError) as failed:
        time_node(config, gradient_frame(160, 120))
    assert 'the segmentation node did not start' in str(failed.value)
    assert 'overlay_alpha' in str(failed.value)
