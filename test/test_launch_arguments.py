"""The launch files' arguments: readable defaults, a missing parameters file stops the launch,
plain logs. launch itself is not installable here: the files are parsed, and the functions
they call (semseg_ros.nodes.launch_arguments) run directly.
"""

import ast
import os
from pathlib import Path
import pty
import subprocess
import sys

import pytest

from semseg_ros.nodes.launch_arguments import (flag, optional_file, parameters_file,
                                               PLAIN_LOG_ENV)

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / 'config')
LAUNCH_FILES = sorted((REPO / 'launch').glob('*.launch.py'))


def test_a_config_is_a_shipped_name_or_a_path(tmp_path):
    """A bare name is looked up in config/; a path is taken as it is."""
    assert parameters_file('jetson_enet.yaml', CONFIG, 'config') == f'{CONFIG}/jetson_enet.yaml'
    own = tmp_path / 'robot.yaml'
    own.write_text('/**:\n  ros__parameters: {}\n')
    assert parameters_file(f' {own} ', CONFIG, 'config') == str(own)


@pytest.mark.parametrize('value,shown', [
    ('/a/missing.yaml', '/a/missing.yaml'), ('jetson.yaml', f'{CONFIG}/jetson.yaml'),
    ('', '(empty)')])
def test_a_missing_config_is_one_clear_error(value, shown):
    """The argument, the path looked for and the shipped files, in one line."""
    with pytest.raises(ValueError) as refused:
        parameters_file(value, CONFIG, 'config')
    message = str(refused.value)
    assert message.startswith(f'launch argument config: no parameters file {shown};')
    assert '(cpu_robot.yaml, gpu_mininet_v2.yaml, jetson_enet.yaml, jetson_rdsnet.yaml)' \
        in message and '\n' not in message


def test_flags_and_optional_files():
    """true/false only; an optional file may be empty, not missing."""
    assert flag(' True', 'x') is True and flag('false', 'x') is False
    with pytest.raises(ValueError, match="launch argument x must be 'true' or 'false'"):
        flag('yes', 'x')
    assert optional_file('', 'keyframe_config') == ''
    with pytest.raises(ValueError, match='keyframe_config: no such file /no/keyframes.yaml'):
        optional_file('/no/keyframes.yaml', 'keyframe_config')


def _calls(tree, name):
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, 'id', None) == name]


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=[p.name for p in LAUNCH_FILES])
def test_launch_files_show_plain_defaults_check_configs_and_log_plainly(path):
    """Every default a literal (--show-args prints it as it is); the parameters file checked;
    each node with plain (colourless) logs and no pseudo-terminal."""
    tree = ast.parse(path.read_text())
    table = next(node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                 and any(getattr(t, 'id', None) == 'ARGUMENTS' for t in node.targets))
    defaults = {ast.literal_eval(entry.elts[0]): ast.literal_eval(entry.elts[1])
                for entry in table.elts}
    assert all(isinstance(value, str) for value in defaults.values()), defaults
    config_argument = 'config' if 'config' in defaults else 'segmentation_config'
    parameters_file(defaults[config_argument], CONFIG, config_argument)  # the default exists
    checked = [call for call in _calls(tree, 'parameters_file')
               if ast.unparse(call.args[0]) ==
               f"LaunchConfiguration('{config_argument}').perform(context)"]
    assert checked, f'{path.name} does not check {config_argument}'
    nodes = _calls(tree, 'Node')
    assert nodes
    for node in nodes:
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        assert 'emulate_tty' not in keywords and keywords['additional_env'] == 'PLAIN_LOG_ENV'


def _log_on_a_terminal(env_extra):
    """Run a node that refuses its parameters on a pseudo-terminal; return what it wrote."""
    leader, follower = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(REPO), **env_extra)
    if not env_extra:
        env.pop('RCUTILS_COLORIZED_OUTPUT', None)
    process = subprocess.Popen(
        [sys.executable, '-m', 'semseg_ros.nodes.segmentation_node', '--ros-args',
         '-p', 'model:=segformer'], stdout=follower, stderr=follower, env=env)
    os.close(follower)
    output = b''
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert process.wait(60) == 2, output
    return output.decode(errors='replace')


def test_plain_log_env_keeps_terminal_logs_colourless():
    """On a terminal (what emulate_tty gives) rcutils colours its lines; PLAIN_LOG_ENV not."""
    coloured = _log_on_a_terminal({})
    plain = _log_on_a_terminal(PLAIN_LOG_ENV)
    assert '\x1b[' in coloured, coloured
    assert '[FATAL]' in plain and '\x1b[' not in plain, plain
