"""``make demo`` in its reduced CI form: 8 bundled frames live through both real nodes."""

import importlib.util
import json
import os
from pathlib import Path
import subprocess
import sys

import cv2
import imageio.v2 as imageio
from rosbags.interfaces import QosDurability
from rosbags.rosbag2 import Reader

REPO = Path(__file__).resolve().parents[1]


def test_demo_produces_every_file(tmp_path):
    """GIF, contact sheet, recording, input bag and both reports, with sensible figures."""
    out = tmp_path / 'demo'
    result = subprocess.run(
        [sys.executable, '-m', 'semseg_ros.commands.demo', '--frames', '8', '--threads', '1',
         '--out', str(out)], cwd=REPO, env=dict(os.environ), capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f'Look at {out}/' in result.stdout
    report = json.loads((out / 'report.json').read_text())
    assert report['frames_published'] == 8
    assert 0 < report['frames_processed'] <= 8
    assert report['latency']['median_ms'] > 0
    assert 0.0 <= report['accuracy']['miou'] <= 1.0
    assert report['scored_frames'] > 0 and len(report['keyframes']) >= 1
    assert report['info']['launched'] == ['segmentation_node', 'keyframe_node']
    markdown = (out / 'report.md').read_text()
    for needle in ('latency image -> label mask, median', 'achieved FPS', 'dropped', 'mIoU',
                   '## Keyframes', '0016E5_07959.jpg'):
        assert needle in markdown
    if report['info']['weights'] == 'none':
        assert 'UNTRAINED' in markdown and 'UNTRAINED' in result.stderr
    frames = imageio.mimread(out / 'demo.gif')
    assert len(frames) == report['frames_processed'] - report['outputs_lost'].get(
        '/segmentation_node/label_mask', 0)
    assert frames[0].shape[1] == 3 * frames[0].shape[0] * 4 // 3  # three 4:3 panels
    still = cv2.imread(str(out / 'demo.png'))
    assert still.shape == (360, 3 * 480, 3)
    sheet = cv2.imread(str(out / 'keyframes.png'))
    assert sheet is not None and sheet.shape[0] > 100
    with Reader(out / 'replay_bag') as recording:
        topics = {c.topic: c.msgcount for c in recording.connections}
        label_info = [c for c in recording.connections
                      if c.topic == '/segmentation_node/label_info']
    assert topics['/camera/image_raw'] == 8 and topics['/segmentation_node/label_mask'] > 0
    # The class names, recorded as offered (latched), so the bag replays into Nav2 too.
    if importlib.util.find_spec('vision_msgs') is not None:
        [connection] = label_info
        assert connection.msgtype == 'vision_msgs/msg/LabelInfo' and connection.msgcount == 1
        [qos] = connection.ext.offered_qos_profiles
        assert qos.durability == QosDurability.TRANSIENT_LOCAL
    assert topics['/keyframe_node/scores'] > 0 and topics['/keyframe_node/keyframe'] >= 1
    with Reader(out / 'input_bag') as replayed:
        assert {c.topic for c in replayed.connections} == {'/camera/image_raw',
                                                           '/camera/labels'}
    # The CPU network runs as config/cpu_robot.yaml runs it: the INT8 graph.
    # The report names the runtime the node ran (its diagnostics) and the machine.
    runtime = report['info']['runtimes']['segmentation_node']
    assert runtime['precision'] == 'int8' and runtime['backend'] in ('onnxruntime', 'openvino')
    assert report['info']['precision'] == 'int8'
    assert f'(mininet_v2_cpu, int8 on {runtime["backend"]} [{runtime["providers"]}], ' \
        in markdown
    assert report['info']['machine'] in markdown and 'cores' in report['info']['machine']
    assert ' int8, weights ' in (out / 'logs' / 'segmentation_node.log').read_text()
    assert (out / 'logs' / 'keyframe_node.log').is_file()
