"""The package's layers: the core never imports rclpy, and imports point down only."""

import ast
from pathlib import Path
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'semseg_ros'

# Each layer may import only itself and the layers listed for it. The inference core is one
# layer in three packages: core/ (inference and backends) builds its graphs with export/
# (export and quantization), which runs core's graph modules; messages/ (ROS message
# conversion) stands alone.
_INFERENCE = {'models', 'core', 'export', 'messages'}
ALLOWED = {
    'models': {'models'},
    'core': {'models', 'core', 'export'},
    'export': {'models', 'core', 'export'},
    'messages': {'messages'},
    'keyframes': _INFERENCE | {'keyframes'},
    'data': _INFERENCE | {'data'},
    'training': _INFERENCE | {'data', 'training'},
    'bags': _INFERENCE | {'data', 'keyframes', 'bags'},
    'nodes': _INFERENCE | {'keyframes', 'data', 'bags', 'nodes'},
    'live': _INFERENCE | {'keyframes', 'data', 'bags', 'nodes', 'live'},
    'commands': _INFERENCE | {'keyframes', 'data', 'training', 'bags', 'nodes', 'live',
                              'commands'},
}
PURE_LAYERS = ['models', 'core', 'export', 'messages', 'keyframes', 'data', 'training', 'bags']


def _package_imports(path):
    """Yield the semseg_ros sub-package each import in a file points at."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split('.')
            if parts[0] == 'semseg_ros' and len(parts) > 1:
                yield parts[1]


def test_imports_point_down():
    """No module imports a layer above its own."""
    violations = []
    for layer, allowed in ALLOWED.items():
        for path in sorted((PACKAGE / layer).rglob('*.py')):
            for target in _package_imports(path):
                if target in ALLOWED and target not in allowed:
                    violations.append(f'{path.relative_to(ROOT)} imports semseg_ros.{target}')
    assert not violations, 'imports against the layering:\n' + '\n'.join(violations)


def test_every_package_has_a_layer():
    """Each sub-package of semseg_ros is a layer above; only cli.py sits at the top."""
    packages = {p.name for p in PACKAGE.iterdir() if (p / '__init__.py').is_file()}
    assert packages == set(ALLOWED), f'packages without a layer: {packages - set(ALLOWED)}'
    modules = sorted(p.name for p in PACKAGE.glob('*.py'))
    assert modules == ['__init__.py', 'cli.py'], modules


def test_only_the_dispatcher_imports_commands():
    """The library never imports a command module: commands sit on top of everything."""
    for path in sorted(PACKAGE.rglob('*.py')):
        if path.parent.name == 'commands' or path.name == 'cli.py':
            continue
        assert 'commands' not in set(_package_imports(path)), \
            f'{path.relative_to(ROOT)} imports semseg_ros.commands'


def test_core_imports_no_rclpy():
    """Importing every pure layer, module by module, never loads rclpy."""
    modules = []
    for layer in PURE_LAYERS:
        for path in sorted((PACKAGE / layer).rglob('*.py')):
            rel = path.relative_to(ROOT).with_suffix('')
            modules.append('.'.join(rel.parts).removesuffix('.__init__'))
    code = ('import importlib, sys\n'
            f'for name in {modules!r}:\n'
            '    importlib.import_module(name)\n'
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rosidl_runtime_py'))\n"  # noqa: E501
            'print(loaded)\n'
            'sys.exit(1 if loaded else 0)\n')
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, \
        f'core imported rclpy or failed:\n{result.stdout}{result.stderr}'
    assert len(modules) > 5
