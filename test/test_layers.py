"""The package's layers: the core never imports rclpy, and imports point down only."""

import ast
from pathlib import Path
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'semseg_ros'

# Each layer may import only itself and the layers listed for it.
ALLOWED = {
    'models': {'models'},
    'core': {'models', 'core'},
    'keyframes': {'models', 'core', 'keyframes'},
    'data': {'models', 'core', 'data'},
    'training': {'models', 'core', 'data', 'training'},
    'bags': {'models', 'core', 'data', 'keyframes', 'bags'},
    'nodes': {'models', 'core', 'keyframes', 'data', 'bags', 'nodes'},
}
PURE_LAYERS = ['models', 'core', 'keyframes', 'data', 'training']


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
