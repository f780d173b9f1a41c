"""The launch file: it compiles and declares the documented arguments (runs without launch)."""

import ast
from pathlib import Path

LAUNCH_FILE = Path(__file__).resolve().parents[1] / 'launch' / 'segmentation.launch.py'
EXPECTED_ARGUMENTS = {'model', 'config', 'image_topic', 'namespace', 'use_compressed'}


def _launch_tree():
    source = LAUNCH_FILE.read_text()
    compile(source, str(LAUNCH_FILE), 'exec')
    return ast.parse(source, str(LAUNCH_FILE))


def _declared_arguments(tree):
    """Return {name: description} of the (name, default, description) ARGUMENTS table."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == 'ARGUMENTS' for t in node.targets):
            arguments = {}
            for entry in node.value.elts:
                name, _default, description = entry.elts
                text = ast.literal_eval(description)
                arguments[ast.literal_eval(name)] = text
            return arguments
    raise AssertionError(f'{LAUNCH_FILE}: no ARGUMENTS table')


def test_launch_file_declares_arguments_with_descriptions():
    """Every documented argument is declared once, with a description."""
    arguments = _declared_arguments(_launch_tree())
    assert set(arguments) == EXPECTED_ARGUMENTS
    for name, description in arguments.items():
        assert len(description) > 20, f'argument {name} has no real description'


def test_launch_file_starts_the_node_executable():
    """It defines generate_launch_description and starts the installed segmentation_node."""
    tree = _launch_tree()
    functions = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in functions
    keywords = {k.arg: k.value for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, 'id', None) == 'Node' for k in n.keywords}
    assert ast.literal_eval(keywords['executable']) == 'segmentation_node'
    assert {'parameters', 'remappings', 'namespace'} <= set(keywords)
    declare_calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                     and getattr(n.func, 'id', None) == 'DeclareLaunchArgument']
    assert declare_calls and all(
        {'default_value', 'description'} <= {k.arg for k in c.keywords} for c in declare_calls)


def test_launch_file_is_installed_by_setup():
    """setup.py installs launch/*.launch.py under share/semseg_ros/launch."""
    setup = (LAUNCH_FILE.parents[1] / 'setup.py').read_text()
    assert "glob('launch/*.launch.py')" in setup
