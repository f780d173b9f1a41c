"""launch/slam_keyframes.launch.py compiles, declares its arguments and wires the nodes.

launch and launch_ros are not installable here, so the file is read as source: its argument
table, the executables it starts (which setup.py must install) and the remappings that feed
the keyframe node from the segmentation node.
"""

import ast
from pathlib import Path
import re

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / 'launch' / 'slam_keyframes.launch.py'
EXPECTED_ARGUMENTS = {'image_topic', 'namespace', 'model', 'segmentation_config',
                      'keyframe_config', 'use_image', 'use_confidence', 'single_process',
                      'slam', 'camera_info_topic', 'slam_vocabulary', 'slam_mask_dynamic'}


def _tree():
    source = LAUNCH_FILE.read_text()
    compile(source, str(LAUNCH_FILE), 'exec')
    return ast.parse(source, str(LAUNCH_FILE))


def _node_calls(tree):
    """Return the keyword arguments of every launch_ros Node(...) call."""
    return [{k.arg: k.value for k in call.keywords} for call in ast.walk(tree)
            if isinstance(call, ast.Call) and getattr(call.func, 'id', None) == 'Node']


def _constants(tree):
    """Return the module's NAME = 'string' constants."""
    return {t.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant) for t in node.targets
            if isinstance(t, ast.Name)}


def test_arguments_are_declared_with_descriptions_and_boolean_defaults():
    """Every documented argument is in the table once, described, flags default to a bool."""
    tree = _tree()
    table = next(node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                 and any(getattr(t, 'id', None) == 'ARGUMENTS' for t in node.targets))
    arguments = {}
    for entry in table.elts:
        name, default, description = entry.elts
        arguments[ast.literal_eval(name)] = (default, ast.literal_eval(description))
    assert set(arguments) == EXPECTED_ARGUMENTS and len(table.elts) == len(arguments)
    for name, (_, description) in arguments.items():
        assert len(description) > 30, f'argument {name} has no real description'
    for flag in ('use_image', 'use_confidence', 'single_process', 'slam', 'slam_mask_dynamic'):
        assert ast.literal_eval(arguments[flag][0]) in ('true', 'false')
    assert ast.literal_eval(arguments['single_process'][0]) == 'false'
    assert ast.literal_eval(arguments['slam'][0]) == 'false'  # ORB-SLAM3 is optional (GPL)
    declared = [c for c in ast.walk(tree) if isinstance(c, ast.Call)
                and getattr(c.func, 'id', None) == 'DeclareLaunchArgument']
    assert declared and all({'default_value', 'description'} <= {k.arg for k in c.keywords}
                            for c in declared)


def test_executables_exist_in_setup():
    """Both modes start console scripts that setup.py installs."""
    calls = _node_calls(_tree())
    executables = {ast.literal_eval(c['executable']) for c in calls}
    assert executables == {'segmentation_node', 'keyframe_node', 'keyframe_pipeline',
                           'orbslam3_node'}
    setup = (ROOT / 'setup.py').read_text()
    scripts = dict(re.findall(r"'(\w+) = (semseg_ros[\w.]+:main)'", setup))
    assert scripts['keyframe_pipeline'] == 'semseg_ros.nodes.pipeline:main'
    assert scripts['keyframe_node'] == 'semseg_ros.nodes.keyframe_node:main'
    assert scripts['orbslam3_node'] == 'semseg_ros.nodes.orbslam3_node:main'
    assert executables <= set(scripts)
    assert "glob('launch/*.launch.py')" in setup


def test_keyframe_node_is_wired_to_the_segmentation_node():
    """Two processes: the keyframe node's inputs are remapped onto the segmentation node's."""
    tree = _tree()
    constants = _constants(tree)
    calls = {ast.literal_eval(c['executable']): c for c in _node_calls(tree)}
    keyframe = calls['keyframe_node']
    remaps = {}
    for pair in keyframe['remappings'].elts:
        source, target = pair.elts
        remaps[ast.literal_eval(source)] = target
    assert set(remaps) == {'label_mask', 'confidence', 'image'}
    for topic in ('label_mask', 'confidence'):
        target = remaps[topic]
        assert isinstance(target, ast.JoinedStr)  # f'{SEGMENTATION_NODE}/<topic>'
        text = ''.join(constants[v.value.id] if isinstance(v, ast.FormattedValue) else v.value
                       for v in target.values)
        assert text == f'segmentation_node/{topic}'
    assert calls['segmentation_node']['name'].id == 'SEGMENTATION_NODE'
    assert constants['SEGMENTATION_NODE'] == 'segmentation_node'
    # One process: no node name (it would rename both nodes), the camera remapped.
    assert 'name' not in calls['keyframe_pipeline']
    assert {'namespace', 'parameters', 'remappings'} <= set(calls['keyframe_pipeline'])


def test_pipeline_wiring_matches_the_launch_file():
    """The in-process wiring names the same topics as the two-process remappings."""
    from semseg_ros.nodes.pipeline import keyframe_wiring, SEGMENTATION_NAME
    assert SEGMENTATION_NAME == _constants(_tree())['SEGMENTATION_NODE']
    assert keyframe_wiring() == ['--ros-args',
                                 '-r', 'label_mask:=segmentation_node/label_mask',
                                 '-r', 'confidence:=segmentation_node/confidence']


def test_orbslam3_node_maps_the_keyframe_images_with_the_camera_info():
    """slam:=true: ORB-SLAM3 reads the keyframe node's ~/keyframe_image (relative to the
    namespace, in both modes the keyframe node is named keyframe_node) and camera_info_topic;
    the vocabulary argument is checked as an optional file."""
    tree = _tree()
    constants = _constants(tree)
    call = next(c for c in _node_calls(tree) if ast.literal_eval(c['executable']) ==
                'orbslam3_node')
    assert constants[call['name'].id] == 'orbslam3_node'
    remaps = {ast.literal_eval(pair.elts[0]): pair.elts[1] for pair in call['remappings'].elts}
    assert set(remaps) == {'image', 'camera_info', 'label_mask'}
    for topic, expected in (('image', 'keyframe_node/keyframe_image'),
                            ('label_mask', 'segmentation_node/label_mask')):
        text = ''.join(constants[v.value.id] if isinstance(v, ast.FormattedValue) else v.value
                       for v in remaps[topic].values)
        assert text == expected
    assert ast.unparse(remaps['camera_info']) == "LaunchConfiguration('camera_info_topic')"
    assert "optional_file(LaunchConfiguration('slam_vocabulary').perform(context)" in \
        ast.unparse(tree)
    from semseg_ros.nodes.orbslam3_node import NODE_PARAMETERS
    parameters = ast.unparse(call['parameters'])
    assert "'vocabulary'" in parameters and 'vocabulary' in NODE_PARAMETERS
    assert "'mask_dynamic': _flag(context, 'slam_mask_dynamic')" in parameters
    assert 'mask_dynamic' in NODE_PARAMETERS
